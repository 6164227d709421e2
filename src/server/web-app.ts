import { existsSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { PlainHttpHandler } from "./server.js";

/**
 * First path segments of the dashboard's client-side routes (web/src/routes.ts): a GET of one of them
 * (or of `/`) answers index.html, so a reload or a deep link opens the right page.
 */
export const DASHBOARD_ROUTES = ["overview", "identities", "hierarchy", "roles", "check"] as const;

/** Never answered here, even if a file of that name were in the build: the API, probes, metrics and RPC paths. */
const RESERVED = /^\/(?:api(?:\/|$)|healthz$|readyz$|metrics$|canopy\.|grpc\.)/;

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

/**
 * Where `npm run build` puts the dashboard (vite: web/vite.config.ts): `dist/web` under the package root,
 * found by walking up to package.json so the same answer holds for src/ (tests) and dist/src/ (npm start).
 */
export function defaultWebRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, "dist", "web");
}

/**
 * The admin dashboard's static files as a plain HTTP handler (GET/HEAD only): hashed `/assets/*` cached
 * for a year, index.html never cached, `/` and the client-side routes answered with index.html. A
 * missing build (dist made by tsc alone) answers 503 with what to run instead of failing. Paths of the
 * API, probes, metrics and RPCs are passed on untouched.
 */
export function createWebApp(opts: { root?: string } = {}): PlainHttpHandler {
  const root = resolve(opts.root ?? defaultWebRoot());
  const isFile = (p: string) => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  return (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    let path: string;
    try {
      path = decodeURIComponent((req.url ?? "/").split("?", 1)[0]);
    } catch {
      return false;
    }
    if (RESERVED.test(path) || path.includes("\0")) return false;
    const first = path.split("/")[1] ?? "";
    const isRoute = path === "/" || path === "/index.html" || (DASHBOARD_ROUTES as readonly string[]).includes(first);
    let file = join(root, path);
    if (!file.startsWith(root + sep)) return false;
    if (isRoute && !isFile(file)) file = join(root, "index.html");
    else if (!isFile(file)) return false;
    const isIndex = file === join(root, "index.html");
    const send = (status: number, headers: Record<string, string>, body: Buffer | string) => {
      res.writeHead(status, { "x-content-type-options": "nosniff", "content-length": String(Buffer.byteLength(body)), ...headers });
      if (req.method === "HEAD") res.end();
      else res.end(body);
    };
    readFile(file).then(
      (body) => {
        const cache = isIndex ? "no-store" : path.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache";
        const extra: Record<string, string> = isIndex ? { "x-frame-options": "DENY", "referrer-policy": "no-referrer" } : {};
        send(200, { "content-type": CONTENT_TYPES[extname(file)] ?? "application/octet-stream", "cache-control": cache, ...extra }, body);
      },
      () =>
        isIndex
          ? send(503, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" }, "The Canopy dashboard is not built: run `npm run build` (it builds the server and the dashboard into dist/).\n")
          : send(404, { "content-type": "text/plain; charset=utf-8" }, "not found\n"),
    );
    return true;
  };
}
