import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const repo = fileURLToPath(new URL("..", import.meta.url));

/**
 * The admin dashboard: web/ built into dist/web, which src/server/web-app.ts serves at `/`. The app imports
 * the generated descriptors straight from src/gen (one contract for server and browser), so the dev
 * server may read the repository root. `npm run dev:web` proxies the RPCs to a Canopy on :8080.
 */
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  plugins: [react()],
  build: { outDir: `${repo}dist/web`, emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 1000 },
  server: {
    fs: { allow: [repo] },
    proxy: { "^/canopy\\.v1\\..*": "http://127.0.0.1:8080" },
  },
});
