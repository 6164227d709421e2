import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import { expect } from "vitest";
import type { App } from "../../src/app.js";

/**
 * The /api/v1 REST surface for the e2e suite. Every response a test receives goes through an
 * {@link OpenApiRecorder}: its status must be documented for the operation (path template + method)
 * and its body must be valid against the documented schema, else the request itself fails the test.
 * The recorder remembers each (operation, status) it saw, so the file that owns it can prove at its
 * end that every documented status was produced.
 */

export const API = "/api/v1";

/** A response as the tests see it: status, headers (lowercase names), the parsed JSON body (undefined when empty) and its text. */
export interface RestResponse {
  status: number;
  headers: Headers;
  // the shape depends on the operation; the recorder has validated it against the document
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  text: string;
}

export interface RestRequest {
  /** X-API-Key; null sends no key at all (the client's default key otherwise) */
  key?: string | null;
  /** sends `authorization: Bearer <bearer>` instead of X-API-Key */
  bearer?: string;
  /** canopy-environment header (an admin key acting in an environment) */
  environment?: string;
  /** serialized as JSON with content-type application/json */
  body?: unknown;
  /** sent byte for byte (content-type application/json unless `contentType` says otherwise) */
  raw?: string;
  /** overrides the content-type; null sends none */
  contentType?: string | null;
  headers?: Record<string, string>;
}

interface Operation {
  operationId: string;
  method: string;
  template: string;
  pattern: RegExp;
  literal: boolean;
  statuses: string[];
}

/** `2026-05-01T00:00:00.000Z`: every timestamp the server answers is UTC with milliseconds (docs/REST.md). */
const UTC_MILLIS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const isUtcMillis = (s: string): boolean => UTC_MILLIS.test(s) && !Number.isNaN(Date.parse(s)) && new Date(s).toISOString() === s;

const pointer = (...segments: string[]): string => segments.map((s) => encodeURIComponent(s.replace(/~/g, "~0").replace(/\//g, "~1"))).join("/");

const describeErrors = (errors: ErrorObject[] | null | undefined): string =>
  (errors ?? []).map((e) => `${e.instancePath || "(body)"} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`).join("; ");

/**
 * Validates responses against the server's OpenAPI 3.1 document (registered in Ajv as "openapi";
 * each response schema is compiled as `{$ref: "openapi#/paths/…/responses/<status>/…/schema"}`), and
 * records which (operation, status) pairs were produced.
 */
export class OpenApiRecorder {
  readonly operations: Operation[] = [];
  private readonly ajv: Ajv2020;
  private readonly validators = new Map<string, ValidateFunction>();
  private readonly produced = new Map<string, number>();
  /** `status code` of every error envelope answered (e.g. `409 rbac.assignment_conflict`) */
  readonly errorCodes = new Set<string>();
  /** requests that matched no operation (unknown path, or a known path with another method) */
  readonly unrouted: Array<{ method: string; path: string; status: number }> = [];

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  constructor(readonly doc: any) {
    this.ajv = new Ajv2020({ strict: false, allErrors: true, logger: false, formats: { "date-time": isUtcMillis } });
    this.ajv.addSchema(doc, "openapi");
    for (const [template, item] of Object.entries(doc.paths as Record<string, Record<string, { operationId: string; responses: Record<string, unknown> }>>)) {
      const source = template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{\w+\}/g, "[^/]+");
      for (const [method, op] of Object.entries(item)) {
        this.operations.push({
          operationId: op.operationId,
          method: method.toUpperCase(),
          template,
          pattern: new RegExp(`^${source}$`),
          literal: !template.includes("{"),
          statuses: Object.keys(op.responses),
        });
      }
    }
  }

  /** The operation serving `method path` the way the router picks it: a literal path before a template. */
  operationFor(method: string, path: string): Operation | undefined {
    const matches = this.operations.filter((o) => o.method === method && o.pattern.test(path));
    return matches.find((o) => o.literal) ?? matches[0];
  }

  private validator(ref: string): ValidateFunction {
    let v = this.validators.get(ref);
    if (!v) this.validators.set(ref, (v = this.ajv.compile({ $ref: ref })));
    return v;
  }

  /**
   * Checks one response against the document and records it; throws (failing the calling test) when
   * the status is not documented for the operation or the body does not match the documented schema.
   */
  check(method: string, url: string, status: number, headers: Headers, text: string): unknown {
    const path = new URL(url, "http://x").pathname;
    const where = `${method} ${path} → ${status} ${text.slice(0, 400)}`;
    const type = headers.get("content-type") ?? "";
    let body: unknown;
    if (text.length > 0) {
      if (!/^application\/json\b/.test(type)) throw new Error(`${where}: a body with content-type ${JSON.stringify(type)}, not JSON`);
      body = JSON.parse(text);
    }
    const code = (body as { error?: { code?: unknown } } | undefined)?.error?.code;
    if (typeof code === "string") this.errorCodes.add(`${status} ${code}`);
    const op = this.operationFor(method, path);
    if (!op) {
      // no operation: an unknown path (404) or a known path with another method (405, with Allow)
      const known = this.operations.some((o) => o.pattern.test(path));
      const expected = known ? 405 : 404;
      if (status !== expected) throw new Error(`${where}: matches no documented operation, so it must be ${expected}`);
      if (status === 405 && !headers.get("allow")) throw new Error(`${where}: 405 without an Allow header`);
      this.assertValid("openapi#/components/schemas/Error", body, where);
      this.unrouted.push({ method, path, status });
      return body;
    }
    if (!op.statuses.includes(String(status))) {
      throw new Error(`${where}: status ${status} is not documented for ${op.operationId} (documented: ${op.statuses.join(", ")})`);
    }
    const response = this.doc.paths[op.template][op.method.toLowerCase()].responses[String(status)];
    if (response.content?.["application/json"]?.schema) {
      if (body === undefined) throw new Error(`${where}: the document promises a JSON body for ${op.operationId} ${status}, the response has none`);
      this.assertValid(`openapi#${pointer("", "paths", op.template, op.method.toLowerCase(), "responses", String(status), "content", "application/json", "schema")}`, body, where);
    } else if (text.length > 0) {
      throw new Error(`${where}: ${op.operationId} ${status} is documented without a body`);
    }
    const k = `${op.operationId} ${status}`;
    this.produced.set(k, (this.produced.get(k) ?? 0) + 1);
    return body;
  }

  private assertValid(ref: string, body: unknown, where: string): void {
    const v = this.validator(ref);
    if (!v(body)) throw new Error(`${where}: the body does not match the documented schema (${ref}): ${describeErrors(v.errors)}`);
  }

  /** Every documented `operationId status` that no response has produced yet. */
  missing(): string[] {
    const out: string[] = [];
    for (const o of this.operations) for (const s of o.statuses) if (!this.produced.has(`${o.operationId} ${s}`)) out.push(`${o.operationId} ${s} (${o.method} ${o.template})`);
    return out;
  }

  /** How many documented (operation, status) pairs there are. */
  documentedCount(): number {
    return this.operations.reduce((n, o) => n + o.statuses.length, 0);
  }
}

/** Fetches and parses the OpenAPI document (the recorder checks this response too once it exists). */
export async function fetchOpenApi(baseUrl: string): Promise<{ doc: unknown; response: { status: number; headers: Headers; text: string } }> {
  const res = await fetch(`${baseUrl}${API}/openapi.json`);
  const text = await res.text();
  return { doc: JSON.parse(text), response: { status: res.status, headers: res.headers, text } };
}

export type RestClient = ReturnType<typeof createRestClient>;

/** A plain-fetch client of one server whose every response is checked and recorded by `recorder`. */
export function createRestClient(baseUrl: string, recorder: OpenApiRecorder, defaultKey: string) {
  async function call(method: string, path: string, req: RestRequest = {}): Promise<RestResponse> {
    const headers: Record<string, string> = { ...req.headers };
    const key = req.key === undefined ? defaultKey : req.key;
    if (req.bearer !== undefined) headers.authorization = `Bearer ${req.bearer}`;
    else if (key !== null) headers["x-api-key"] = key;
    if (req.environment) headers["canopy-environment"] = req.environment;
    let payload: string | undefined;
    if (req.raw !== undefined) payload = req.raw;
    else if (req.body !== undefined) payload = JSON.stringify(req.body);
    const type = req.contentType === undefined ? (payload !== undefined ? "application/json" : null) : req.contentType;
    if (type !== null) headers["content-type"] = type;
    const url = `${baseUrl}${API}${path}`;
    const res = await fetch(url, { method, headers, body: payload });
    const text = await res.text();
    const body = recorder.check(method, url, res.status, res.headers, text);
    return { status: res.status, headers: res.headers, body, text };
  }
  return {
    call,
    get: (path: string, req?: RestRequest) => call("GET", path, req),
    post: (path: string, body?: unknown, req: RestRequest = {}) => call("POST", path, { ...req, body }),
    put: (path: string, body?: unknown, req: RestRequest = {}) => call("PUT", path, { ...req, body }),
    patch: (path: string, body?: unknown, req: RestRequest = {}) => call("PATCH", path, { ...req, body }),
    del: (path: string, req?: RestRequest) => call("DELETE", path, req),
    /** the same client with another default key (and canopy-environment header) */
    as: (key: string | null, environment?: string) => ({
      call: (method: string, path: string, req: RestRequest = {}) => call(method, path, { key, environment, ...req }),
      get: (path: string, req: RestRequest = {}) => call("GET", path, { key, environment, ...req }),
      post: (path: string, body?: unknown, req: RestRequest = {}) => call("POST", path, { key, environment, ...req, body }),
      put: (path: string, body?: unknown, req: RestRequest = {}) => call("PUT", path, { key, environment, ...req, body }),
      patch: (path: string, body?: unknown, req: RestRequest = {}) => call("PATCH", path, { key, environment, ...req, body }),
      del: (path: string, req: RestRequest = {}) => call("DELETE", path, { key, environment, ...req }),
    }),
  };
}

/** Asserts a success status and returns the body (the message shows the error envelope otherwise). */
export function ok(res: RestResponse, status = 200) {
  expect(res.status, res.text.slice(0, 500)).toBe(status);
  return res.body;
}

/** Asserts the error envelope: status, stable code, and `field` (when given; null = no field). */
export function expectError(res: RestResponse, status: number, code: string, field?: string | null): void {
  expect({ status: res.status, statusCode: res.body?.error?.statusCode, code: res.body?.error?.code }, res.text.slice(0, 500)).toEqual({ status, statusCode: status, code });
  if (field === null) expect(res.body.error.field).toBeUndefined();
  else if (field !== undefined) expect(res.body.error.field, res.text).toBe(field);
  expect(res.body.error.message.length).toBeGreaterThan(0);
}

/** The `canopy-revision` header as a number (every write answers with it). */
export function revisionOf(res: RestResponse): number {
  const h = res.headers.get("canopy-revision");
  expect(h, `no canopy-revision header on ${res.status} ${res.text.slice(0, 200)}`).toMatch(/^\d+$/);
  return Number(h);
}

/** Waits (event-loop turns, then short sleeps) until `cond` holds; throws after `ms` so a stuck test fails instead of hanging. */
export async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (let i = 0; !cond(); i++) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => (i < 50 ? setImmediate(r) : setTimeout(r, 5)));
  }
}

/**
 * Holds back every write that reaches the server's runtime (the one queue all writes pass through)
 * until `release()`, counting them; released writes enter the queue in the order they arrived. Lets a
 * test line up "request authenticated and waiting to write" before "environment deleted" without
 * holding a database connection meanwhile (SQLite has one).
 */
export function holdWrites(app: App) {
  const rt = app.canopy.runtime;
  const original = rt.write;
  let arrived = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  rt.write = function (this: typeof rt, ...args: Parameters<typeof original>) {
    arrived++;
    return gate.then(() => original.apply(this, args));
  } as typeof original;
  return {
    arrived: () => arrived,
    release() {
      delete (rt as { write?: unknown }).write; // the prototype's method again
      release();
    },
  };
}

/** Counts the requests that have started waiting for a `min_revision` (their waiter is registered once counted). */
export function countRevisionWaits(app: App) {
  const rt = app.canopy.runtime;
  const original = rt.awaitRevision;
  let waiting = 0;
  rt.awaitRevision = function (this: typeof rt, ...args: Parameters<typeof original>) {
    const p = original.apply(this, args);
    waiting++;
    return p;
  } as typeof original;
  return {
    waiting: () => waiting,
    restore: () => void delete (rt as { awaitRevision?: unknown }).awaitRevision,
  };
}

/**
 * The seed documents' example bodies, byte for byte (docs "Assign Roles › Quickstart": the single-create
 * and bulk-create examples). Only the example ids are replaced before sending ({@link seedBody}).
 */
export const SEED_SINGLE = `{
  "identity_id": "9d7e3a6f-2c4b-4e1a-9f5d-1a3c4b5d6e7f",
  "node_id":     "0aa1b2c3-d4e5-4f6a-7b8c-9d0e1f2a3b4c",
  "role_id":     "5e1f2a3b-4c5d-4e6f-7a8b-9c0d1e2f3a4b",
  "effective_from": "2026-05-01T00:00:00Z",
  "effective_to":   "2026-12-31T23:59:59Z"
}`;

export const SEED_BULK = `{
  "assignments": [
    {
      "identity_id": "9d7e3a6f-2c4b-4e1a-9f5d-1a3c4b5d6e7f",
      "node_id":     "0aa1b2c3-d4e5-4f6a-7b8c-9d0e1f2a3b4c",
      "role_id":     "5e1f2a3b-4c5d-4e6f-7a8b-9c0d1e2f3a4b"
    },
    {
      "identity_id": "ab1cd2ef-3456-4789-abcd-ef1234567890",
      "node_id":     "0aa1b2c3-d4e5-4f6a-7b8c-9d0e1f2a3b4c",
      "role_id":     "5e1f2a3b-4c5d-4e6f-7a8b-9c0d1e2f3a4b"
    }
  ]
}`;

const SEED_IDS = {
  identity: "9d7e3a6f-2c4b-4e1a-9f5d-1a3c4b5d6e7f",
  identity2: "ab1cd2ef-3456-4789-abcd-ef1234567890",
  node: "0aa1b2c3-d4e5-4f6a-7b8c-9d0e1f2a3b4c",
  role: "5e1f2a3b-4c5d-4e6f-7a8b-9c0d1e2f3a4b",
} as const;

/** A seed body with its example ids replaced by real ones; nothing else changes. */
export function seedBody(text: string, ids: { identity: string; identity2?: string; node: string; role: string }): string {
  let out = text;
  for (const [name, example] of Object.entries(SEED_IDS) as Array<[keyof typeof SEED_IDS, string]>) {
    const real = ids[name];
    if (real !== undefined) out = out.split(example).join(real);
  }
  expect(out, "an example id was left in the seed body").not.toMatch(/9d7e3a6f|ab1cd2ef|0aa1b2c3|5e1f2a3b/);
  return out;
}
