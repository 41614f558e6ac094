import { defineConfig } from "vite";

// Served by `caliop serve` / `caliop api` under /admin/; `npm run dev` proxies
// the API to a local `caliop serve` on its default port.
export default defineConfig({
  base: "/admin/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: { outDir: "dist", sourcemap: true, assetsInlineLimit: 0 },
  server: { proxy: { "/v1": process.env.CALIOP_API ?? "http://127.0.0.1:8080" } },
  preview: { proxy: { "/v1": process.env.CALIOP_API ?? "http://127.0.0.1:8080" } },
});
