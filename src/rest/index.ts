import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Canopy } from "../domain/canopy.js";
import type { Logger } from "../domain/runtime.js";
import { openApiDocument } from "./openapi.js";
import { createRestRouter, type RestOutcome, type RestRouter } from "./router.js";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";

type IncomingRequest = IncomingMessage | Http2ServerRequest;
import { restRoutes } from "./routes.js";

/** The package version for the document's info.version: the nearest package.json above this module (src/ or dist/src/). */
function packageVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)), i = 0; i < 4; dir = dirname(dir), i++) {
    const file = join(dir, "package.json");
    if (existsSync(file)) return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
  }
  return "0.0.0";
}

const version = packageVersion();

/** The /api/v1 REST surface (docs/REST.md) with its OpenAPI document, ready to sit in front of Connect. */
export function createRestApi(deps: { canopy: Canopy; logger: Logger; maxRequestBytes: number; onOutcome?: (req: IncomingRequest, outcome: RestOutcome) => void }): RestRouter {
  let document: unknown;
  const routes = restRoutes(deps.canopy, () => (document ??= openApiDocument(routes, version)));
  return createRestRouter({ ...deps, routes });
}

export { REST_PREFIX, type RestOutcome } from "./router.js";
export { openApiDocument } from "./openapi.js";
