import { defineConfig } from "vitest/config";

// Browser tests: a real `caliop serve` (started per test file by e2e/harness.ts)
// driven through Debian's Chromium with playwright-core.
export default defineConfig({
  test: {
    include: ["e2e/**/*.test.ts"],
    environment: "node",
    testTimeout: 120_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    pool: "forks",
  },
});
