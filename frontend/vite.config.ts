// The dashboard's build: one deterministic bundle written into the Python package.
// Hashed file names (the server caches /assets/* for a year); no module-preload
// polyfill, so index.html holds no inline script (the CSP forbids them).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  // `npm run dev` serves the page with hot reload over an `ml-dash serve` on port 8000.
  server: { proxy: { "/api": "http://127.0.0.1:8000", "/health": "http://127.0.0.1:8000" } },
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "../src/ml_dash/dashboard/static",
    emptyOutDir: true,
    manifest: "manifest.json",
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: "es2022",
    cssCodeSplit: false,
    assetsInlineLimit: 0,
    reportCompressedSize: false,
    rolldownOptions: { output: { codeSplitting: false } },
  },
});
