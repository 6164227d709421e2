/**
 * Request logs (src/server/observability.ts, src/server/logger.ts): one info line per RPC and REST
 * request from every door (Connect adapter, fast path, REST) with service/method or operation, code or
 * status, duration_ms, request_id (the client's x-request-id when sane, echoed back) and peer; and no API
 * key anywhere in the log, whichever header carried it and whether it was valid or not.
 */
import { Writable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssignmentService, BulkCreateAssignmentsRequestSchema, type BulkCreateAssignmentsRequest } from "../../src/gen/canopy/v1/assignment_pb.js";
import { CheckService } from "../../src/gen/canopy/v1/check_pb.js";
import { createLogger, withRedaction } from "../../src/server/logger.js";
import { backendReady, startTestServer, type TestServer } from "./harness.js";

const ready = await backendReady();

/** A pino logger (the service's own configuration) writing JSON lines into memory. */
function memoryLogger() {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString("utf8"));
      done();
    },
  });
  const logger = createLogger("info", stream);
  return {
    logger,
    text: () => chunks.join(""),
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    lines: (): Array<Record<string, any>> =>
      chunks
        .join("")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
  };
}

type Protocol = "grpc" | "connect-binary" | "connect-json";

/** Check clients over `protocol` sending `headers` on every call (the key's header among them). */
function checkClient(url: string, protocol: Protocol, headers: Record<string, string>) {
  const set: Interceptor = (next) => (req) => {
    for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
    return next(req);
  };
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl: url, interceptors: [set] })
      : createConnectTransport({ baseUrl: url, httpVersion: "1.1", useBinaryFormat: protocol === "connect-binary", interceptors: [set] });
  return { check: createClient(CheckService, transport), assignments: createClient(AssignmentService, transport) };
}

async function codeOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 0;
  } catch (e) {
    return ConnectError.from(e).code;
  }
}

describe.skipIf(!ready)("request logs", () => {
  const log = memoryLogger();
  let s: TestServer;
  let envId: string;
  const ids: Record<string, string> = {};
  /** a well-formed key that does not exist */
  const badKey = "cnpy_" + "Zq3".repeat(14);

  beforeAll(async () => {
    s = await startTestServer({ logger: log.logger });
    const admin = s.clients(s.adminKey);
    const dev = (await admin.admin.listEnvironments({})).environments.find((e) => e.name === "development")!;
    envId = dev.id;
    const c = s.clients(s.adminKey, { environment: envId });
    await c.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }] });
    ids.viewer = (await c.catalog.createRole({ name: "viewer", permissionKeys: ["doc.read"] })).role!.id;
    ids.team = (await c.hierarchy.createNode({ parentId: dev.rootNodeId, type: "team", name: "T" })).node!.id;
    ids.alice = (await c.identities.createIdentity({ identity: { email: "alice@example.com", displayName: "Alice" } })).identity!.id;
    ids.bob = (await c.identities.createIdentity({ identity: { email: "bob@example.com", displayName: "Bob" } })).identity!.id;
    await c.assignments.createAssignment({ assignment: { identityId: ids.alice, roleId: ids.viewer, nodeId: ids.team } });
  });

  afterAll(async () => {
    await s?.close();
  });

  const check = () => ({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team });
  /** the log lines of one request id */
  const linesOf = (requestId: string) => log.lines().filter((l) => l.request_id === requestId);

  it("one line per Check on each path, with the client's request id echoed back", async () => {
    const fastBefore = s.app.fastPathCalls();
    const cases: Array<[Protocol, Record<string, string>, string, number, string]> = [
      ["grpc", { "x-api-key": s.devKey }, "fast", 0, "OK"],
      ["grpc", { authorization: `Bearer ${s.devKey}` }, "fast", 0, "OK"],
      ["grpc", { "x-api-key": badKey }, "fast", Code.Unauthenticated, "Unauthenticated"],
      ["grpc", { authorization: `Bearer ${badKey}` }, "fast", Code.Unauthenticated, "Unauthenticated"],
      ["connect-binary", { "x-api-key": s.devKey }, "fast", 0, "OK"],
      ["connect-binary", { authorization: `Bearer ${badKey}` }, "fast", Code.Unauthenticated, "Unauthenticated"],
      ["connect-json", { "x-api-key": s.devKey }, "connect", 0, "OK"],
      ["connect-json", { authorization: `Bearer ${s.devKey}` }, "connect", 0, "OK"],
      ["connect-json", { "x-api-key": badKey }, "connect", Code.Unauthenticated, "Unauthenticated"],
      ["connect-json", { authorization: `bearer ${badKey}` }, "connect", Code.Unauthenticated, "Unauthenticated"],
    ];
    let i = 0;
    for (const [protocol, headers, transport, code, name] of cases) {
      const requestId = `check-${protocol}-${i++}`;
      const c = checkClient(s.url, protocol, { ...headers, "x-request-id": requestId });
      let echoed: string | null = null;
      let got = 0;
      try {
        await c.check.check(check(), { onHeader: (h) => (echoed = h.get("x-request-id")) });
      } catch (e) {
        // a failed call carries it in the error's metadata (gRPC trailers, Connect error headers)
        const err = ConnectError.from(e);
        got = err.code;
        echoed = err.metadata.get("x-request-id");
      }
      expect(got, requestId).toBe(code);
      expect(echoed, requestId).toBe(requestId);
      const lines = linesOf(requestId);
      expect(lines, requestId).toHaveLength(1);
      expect(lines[0], requestId).toMatchObject({ level: 30, msg: "rpc", transport, service: "canopy.v1.CheckService", method: "Check", code: name, request_id: requestId, peer: "127.0.0.1" });
      expect(typeof lines[0].duration_ms).toBe("number");
      expect(lines[0].duration_ms).toBeGreaterThanOrEqual(0);
    }
    expect(s.app.fastPathCalls()).toBe(fastBefore + 6);
  });

  it("a request without an id (or with an unusable one) gets a generated one, logged and echoed", async () => {
    const c = checkClient(s.url, "grpc", { "x-api-key": s.devKey, "x-request-id": s.devKey });
    let echoed: string | null = null;
    await c.check.checkBulk({ items: [check(), { ...check(), identityId: ids.bob }] }, { onHeader: (h) => (echoed = h.get("x-request-id")) });
    expect(echoed).toMatch(/^[0-9a-f]{16}$/);
    expect(linesOf(echoed!)).toMatchObject([{ transport: "fast", method: "CheckBulk", code: "OK" }]);
  });

  it("a stream logs one line when it ends", async () => {
    const c = checkClient(s.url, "grpc", { "x-api-key": s.adminKey, "canopy-environment": envId, "x-request-id": "bulk-stream-1" });
    async function* source(): AsyncIterable<BulkCreateAssignmentsRequest> {
      yield create(BulkCreateAssignmentsRequestSchema, { items: [{ identityId: ids.bob, roleId: ids.viewer, nodeId: ids.team }] });
    }
    let results = 0;
    for await (const m of c.assignments.bulkCreateAssignments(source())) if (m.kind.case === "result") results++;
    expect(results).toBe(1);
    expect(linesOf("bulk-stream-1")).toMatchObject([{ transport: "connect", service: "canopy.v1.AssignmentService", method: "BulkCreateAssignments", code: "OK" }]);
  });

  it("REST: one line per request with operation, status and error code; x-request-id echoed", async () => {
    const evaluate = (requestId: string, headers: Record<string, string>) =>
      fetch(`${s.url}/api/v1/permissions/evaluate`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": requestId, ...headers },
        body: JSON.stringify({ identity_id: ids.alice, permission: "doc.read", node_id: ids.team }),
      });
    const cases: Array<[string, Record<string, string>, number, string | undefined]> = [
      ["rest-good", { "x-api-key": s.devKey }, 200, undefined],
      ["rest-bearer", { authorization: `Bearer ${s.devKey}` }, 200, undefined],
      ["rest-bad", { "x-api-key": badKey }, 401, "auth.invalid_api_key"],
      ["rest-bad-bearer", { authorization: `Bearer ${badKey}` }, 401, "auth.invalid_api_key"],
    ];
    for (const [requestId, headers, status, code] of cases) {
      const res = await evaluate(requestId, headers);
      expect(res.status, requestId).toBe(status);
      expect(res.headers.get("x-request-id"), requestId).toBe(requestId);
      const lines = linesOf(requestId);
      expect(lines, requestId).toHaveLength(1);
      expect(lines[0], requestId).toMatchObject({ msg: "rest", transport: "rest", operation: "evaluatePermission", http_method: "POST", status, request_id: requestId, peer: "127.0.0.1" });
      expect(lines[0].code, requestId).toBe(code);
      expect(typeof lines[0].duration_ms).toBe("number");
    }
    const missing = await fetch(`${s.url}/api/v1/nowhere?key=${badKey}`, { headers: { "x-api-key": badKey } });
    expect(missing.status).toBe(404);
    const generated = missing.headers.get("x-request-id")!;
    expect(generated).toMatch(/^[0-9a-f]{16}$/);
    expect(linesOf(generated)).toMatchObject([{ operation: "unmatched", status: 404, code: "request.route_not_found" }]);
  });

  it("no API key appears anywhere in the log (good, bad, Bearer; every path)", () => {
    const text = log.text();
    expect(log.lines().filter((l) => l.msg === "rpc").length).toBeGreaterThanOrEqual(12);
    expect(log.lines().filter((l) => l.msg === "rest").length).toBeGreaterThanOrEqual(5);
    for (const key of [s.devKey, s.adminKey, badKey]) {
      expect(text).not.toContain(key);
      // nor a recognisable part of one
      expect(text).not.toContain(key.slice(5, 21));
    }
    expect(text).not.toMatch(/cnpy_/);
  });

  it("the service's logger redacts key headers even if a future call logs them", () => {
    const base = memoryLogger();
    const logger = withRedaction(base.logger);
    logger.info({ headers: { "x-api-key": badKey, authorization: `Bearer ${badKey}` }, req: { headers: { "x-api-key": badKey } } }, "a careless line");
    base.logger.info({ apiKey: badKey, nested: { secret: badKey } }, "and another");
    expect(base.text()).not.toContain(badKey);
    expect(base.lines()[0]).toMatchObject({ headers: { "x-api-key": "[redacted]", authorization: "[redacted]" } });
  });
});

describe.skipIf(!ready)("CANOPY_LOG_REQUESTS=false", () => {
  it("writes no request lines, but still echoes x-request-id", async () => {
    const log = memoryLogger();
    const s = await startTestServer({ logger: log.logger, env: { CANOPY_LOG_REQUESTS: "false" } });
    try {
      const c = checkClient(s.url, "grpc", { "x-api-key": s.devKey, "x-request-id": "quiet-1" });
      let echoed: string | null = null;
      const code = await codeOf(c.check.check({ identityId: "x", permission: "p", nodeId: "n" }, { onHeader: (h) => (echoed = h.get("x-request-id")) }));
      expect(code).toBe(0);
      expect(echoed).toBe("quiet-1");
      const rest = await fetch(`${s.url}/api/v1/permissions/evaluate`, { method: "POST", headers: { "x-api-key": s.devKey, "content-type": "application/json" }, body: "{}" });
      expect(rest.status).toBe(400);
      expect(log.lines().filter((l) => l.msg === "rpc" || l.msg === "rest")).toEqual([]);
    } finally {
      await s.close();
    }
  });
});
