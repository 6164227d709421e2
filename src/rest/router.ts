import type * as http from "node:http";
import type * as http2 from "node:http2";
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import type { Canopy } from "../domain/canopy.js";
import type { EnvironmentContext, Principal } from "../domain/auth.js";
import type { IdentityScope } from "../domain/identity-service.js";
import type { Logger } from "../domain/runtime.js";
import { InvalidArgumentError } from "../domain/errors.js";
import { authenticateCall, awaitMinRevision, callEnvironment, identityScopeFor, type HeaderGetter } from "../api/call.js";
import { scopeFor } from "../api/interceptors.js";
import { RestError, toRestError } from "./errors.js";
import type { Schema } from "./schemas.js";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

/** Where the REST surface lives on the shared port. */
export const REST_PREFIX = "/api/v1";

/** A query parameter: `integer`, `boolean` or `string` (optionally with `enum`). */
export interface QueryParam {
  type: "integer" | "boolean" | "string";
  description: string;
  enum?: string[];
  minimum?: number;
}

/** What a route handler gets: the authenticated caller, parsed params, query and validated body. */
export interface RouteContext {
  canopy: Canopy;
  principal: Principal;
  header: HeaderGetter;
  params: Record<string, string>;
  query: Record<string, string | number | boolean | undefined>;
  // validated against the route's body schema before the handler runs
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  signal: AbortSignal;
  /** the environment of a data-plane call (the key's, or the admin's canopy-environment header) */
  environment(): Promise<EnvironmentContext>;
  /** identity routes may run without an environment (admin key without the header) */
  identityScope(): Promise<IdentityScope>;
}

export interface Reply {
  status: number;
  body?: unknown;
  /** sent as the `canopy-revision` header (every write returns the revision it produced) */
  revision?: number;
  headers?: Record<string, string>;
}

/** One REST operation: the OpenAPI document is generated from these (src/rest/openapi.ts). */
export interface RestRoute {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** template under REST_PREFIX, e.g. `/assignments/{id}` */
  path: string;
  operationId: string;
  summary: string;
  tag: string;
  /** the gRPC method this adapts: its scope is required (null = public, no key) */
  rpc: { service: string; method: string } | null;
  query?: Record<string, QueryParam>;
  body?: Schema;
  /** false: an empty body stands for `{}` */
  bodyRequired?: boolean;
  /** success statuses with their response schema (none = no body) */
  responses: Record<number, { description: string; schema?: Schema }>;
  /** error statuses this operation can answer (documented; the e2e tests produce each) */
  errors: number[];
  handle(ctx: RouteContext): Promise<Reply>;
}

interface Compiled {
  route: RestRoute;
  pattern: RegExp;
  names: string[];
  validate?: ValidateFunction;
}

const JSON_TYPE = /^application\/(?:[\w.+-]*\+)?json\s*(?:;|$)/i;

/** `assignments/0/effective_from` → `assignments[0].effective_from` */
function fieldOf(pointer: string, extra?: string): string {
  const parts = pointer.split("/").filter(Boolean);
  if (extra !== undefined) parts.push(extra);
  let out = "";
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

function schemaError(e: ErrorObject): RestError {
  switch (e.keyword) {
    case "additionalProperties": {
      const field = fieldOf(e.instancePath, String(e.params.additionalProperty));
      return new RestError(400, "request.unknown_field", `${field}: unknown field`, field);
    }
    case "required": {
      const field = fieldOf(e.instancePath, String(e.params.missingProperty));
      return new RestError(400, "validation.required_field", `${field}: is required`, field);
    }
    default: {
      const field = fieldOf(e.instancePath) || "body";
      const allowed = e.keyword === "enum" ? ` (${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")})` : "";
      return new RestError(400, "validation.invalid_field", `${field}: ${e.message ?? "is invalid"}${allowed}`, field);
    }
  }
}

function parseQuery(search: URLSearchParams, declared: Record<string, QueryParam>): Record<string, string | number | boolean | undefined> {
  const out: Record<string, string | number | boolean | undefined> = {};
  for (const name of new Set(search.keys())) {
    if (!(name in declared)) throw new RestError(400, "request.unknown_parameter", `${name}: unknown query parameter`, name);
    if (search.getAll(name).length > 1) throw new RestError(400, "validation.invalid_field", `${name}: given more than once`, name);
  }
  for (const [name, p] of Object.entries(declared)) {
    const raw = search.get(name);
    if (raw === null) continue;
    if (p.type === "integer") {
      if (!/^\d{1,15}$/.test(raw)) throw new InvalidArgumentError(name, `must be a non-negative integer (got ${JSON.stringify(raw.slice(0, 32))})`);
      out[name] = Number(raw);
    } else if (p.type === "boolean") {
      if (raw !== "true" && raw !== "false") throw new InvalidArgumentError(name, "must be true or false");
      out[name] = raw === "true";
    } else {
      if (p.enum && !p.enum.includes(raw)) throw new InvalidArgumentError(name, `must be one of ${p.enum.join(", ")}`);
      out[name] = raw;
    }
  }
  return out;
}

/** Reads the body up to `max` bytes; more is 413 (the rest of the upload is not read). */
function readBody(req: Request, max: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max) {
    return Promise.reject(new RestError(413, "request.body_too_large", `request body of ${declared} bytes is larger than the limit of ${max} bytes`, "body"));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on("data", (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > max) {
        done = true;
        reject(new RestError(413, "request.body_too_large", `request body is larger than the limit of ${max} bytes`, "body"));
        return;
      }
      chunks.push(chunk);
    });
    req.once("end", () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks));
    });
    req.once("error", (err) => {
      if (done) return;
      done = true;
      reject(err);
    });
  });
}

/**
 * The /api/v1 JSON surface on the shared port: matches a route, authenticates the key with the
 * scope of the RPC the route adapts, waits for `min_revision`, reads and validates the body, and
 * calls the route, which calls the same domain services as the Connect handlers.
 * `handle` returns false for paths outside REST_PREFIX (they go to Connect).
 */
/** What the router reports once per answered request (logs and metrics; `operationId` "" = no route matched). */
export interface RestOutcome {
  operationId: string;
  method: string;
  status: number;
  /** the error envelope's code, "" on success */
  code: string;
}

export function createRestRouter(deps: { canopy: Canopy; logger: Logger; maxRequestBytes: number; routes: RestRoute[]; onOutcome?: (req: Request, outcome: RestOutcome) => void }) {
  const { canopy, logger, maxRequestBytes } = deps;
  const ajv = new Ajv2020({ strict: true, strictTypes: false, allErrors: false, formats: { "date-time": true } });
  const compiled: Compiled[] = deps.routes.map((route) => {
    const names: string[] = [];
    const source = route.path.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{(\w+)\}/g, (_, n: string) => {
      names.push(n);
      return "([^/]+)";
    });
    return { route, names, pattern: new RegExp(`^${REST_PREFIX}${source}$`), validate: route.body ? ajv.compile(route.body) : undefined };
  });

  function send(res: Response, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent || res.destroyed) return;
    const h: Record<string, string> = { "cache-control": "no-store", ...headers };
    if (body === undefined) {
      res.writeHead(status, h);
      res.end();
      return;
    }
    const bytes = Buffer.from(JSON.stringify(body), "utf8");
    h["content-type"] = "application/json; charset=utf-8";
    h["content-length"] = String(bytes.length);
    res.writeHead(status, h);
    res.end(bytes);
  }

  async function run(req: Request, res: Response, url: URL, signal: AbortSignal, matched: { operationId: string }): Promise<void> {
    const method = (req.method ?? "GET").toUpperCase();
    let match: { c: Compiled; m: RegExpExecArray } | undefined;
    const allowed: string[] = [];
    for (const c of compiled) {
      const m = c.pattern.exec(url.pathname);
      if (!m) continue;
      if (c.route.method === method) {
        match = { c, m };
        break;
      }
      allowed.push(c.route.method);
    }
    if (!match) {
      if (allowed.length > 0) throw new RestError(405, "request.method_not_allowed", `${method} is not supported on ${url.pathname}; use ${allowed.join(", ")}`, "", { allow: allowed.join(", ") });
      throw new RestError(404, "request.route_not_found", `no REST operation at ${url.pathname} (the operations are listed at ${REST_PREFIX}/openapi.json)`);
    }
    const { c, m } = match;
    const route = c.route;
    matched.operationId = route.operationId;
    const header: HeaderGetter = (name) => {
      const v = req.headers[name];
      return v === undefined ? null : Array.isArray(v) ? v.join(", ") : v;
    };
    const params: Record<string, string> = {};
    c.names.forEach((n, i) => {
      try {
        params[n] = decodeURIComponent(m[i + 1]);
      } catch {
        throw new InvalidArgumentError(n, "is not valid percent-encoding");
      }
    });
    const principal = route.rpc ? await authenticateCall(canopy, header, scopeFor(route.rpc.service, route.rpc.method)) : (undefined as unknown as Principal);
    const query = parseQuery(url.searchParams, route.query ?? {});
    if (typeof query.min_revision === "number" && query.min_revision > 0) {
      await awaitMinRevision(canopy, principal, header, BigInt(query.min_revision), () => signal);
    }
    let body: unknown;
    if (route.body) {
      const raw = await readBody(req, maxRequestBytes);
      if (raw.length === 0) {
        if (route.bodyRequired !== false) throw new RestError(400, "request.body_required", "a JSON body is required", "body");
        body = {};
      } else {
        const type = header("content-type");
        if (!type || !JSON_TYPE.test(type)) throw new RestError(415, "request.unsupported_media_type", `send the body as JSON with content-type: application/json (got ${JSON.stringify(type ?? "")})`, "content-type");
        try {
          body = JSON.parse(raw.toString("utf8"));
        } catch (err) {
          throw new RestError(400, "request.invalid_json", `body is not valid JSON: ${(err as Error).message}`, "body");
        }
      }
      if (!c.validate!(body)) throw schemaError(c.validate!.errors![0]);
    }
    const ctx: RouteContext = {
      canopy,
      principal,
      header,
      params,
      query,
      body,
      signal,
      environment: () => callEnvironment(canopy, principal, header),
      identityScope: () => identityScopeFor(canopy, principal, header),
    };
    const reply = await route.handle(ctx);
    const headers: Record<string, string> = { ...reply.headers };
    if (reply.revision !== undefined) headers["canopy-revision"] = String(reply.revision);
    send(res, reply.status, reply.body, headers);
    deps.onOutcome?.(req, { operationId: route.operationId, method: route.method, status: reply.status, code: "" });
  }

  return {
    routes: deps.routes,
    /** Serves the request when its path is under REST_PREFIX; returns false otherwise. */
    handle(req: Request, res: Response): boolean {
      const target = req.url ?? "/";
      if (target !== REST_PREFIX && !target.startsWith(`${REST_PREFIX}/`) && !target.startsWith(`${REST_PREFIX}?`)) return false;
      const url = new URL(target, "http://canopy.invalid");
      const abort = new AbortController();
      res.once("close", () => {
        if (!res.writableFinished) abort.abort();
      });
      const matched = { operationId: "" };
      run(req, res, url, abort.signal, matched).catch((err: unknown) => {
        const r = toRestError(err, logger, `${req.method} ${url.pathname}`);
        // an early answer (401, 413, …) leaves the upload unread: close the connection after it
        const hasBody = Number(req.headers["content-length"] ?? 0) > 0 || req.headers["transfer-encoding"] !== undefined;
        if (hasBody && !req.readableEnded && "shouldKeepAlive" in res) (res as http.ServerResponse).shouldKeepAlive = false;
        send(res, r.status, r.body, r.headers);
        deps.onOutcome?.(req, { operationId: matched.operationId, method: req.method ?? "", status: r.status, code: r.body.error.code });
      });
      return true;
    },
  };
}

export type RestRouter = ReturnType<typeof createRestRouter>;
