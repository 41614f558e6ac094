import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The users' app: served by `caliop serve` at / (index.html for any app path);
// `npm run dev:mail` proxies the API to a local `caliop serve`. It shares src/
// with the admin app (API client, i18n, UI kit, device sign-in).
export default defineConfig({
  root: fileURLToPath(new URL("./mail", import.meta.url)),
  base: "/",
  publicDir: false,
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: { outDir: "../dist-mail", emptyOutDir: true, sourcemap: true, assetsInlineLimit: 0 },
  worker: { format: "es" },
  server: {
    fs: { allow: [fileURLToPath(new URL(".", import.meta.url))] },
    proxy: { "/v1": process.env.CALIOP_API ?? "http://127.0.0.1:8080" },
  },
  preview: { proxy: { "/v1": process.env.CALIOP_API ?? "http://127.0.0.1:8080" } },
});
