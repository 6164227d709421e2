/**
 * Size limits and deadlines, end to end on real servers.
 *
 * CANOPY_MAX_REQUEST_BYTES bounds every request on every transport: gRPC (@grpc/grpc-js and Connect's
 * gRPC client), gRPC-Web, Connect JSON and binary over HTTP/1.1 and HTTP/2, the Check fast path (gRPC and
 * Connect binary, with and without content-length), REST (413) and each message of a BulkCreateAssignments
 * stream. Each oversized request is RESOURCE_EXHAUSTED (REST: 413) and leaves every table exactly as it was
 * (a stream keeps what it reported before the oversized message, and nothing else).
 *
 * CANOPY_DEFAULT_DEADLINE_MS applies to unary calls sent without a deadline: a long bulk batch stops
 * between its transactions with DEADLINE_EXCEEDED, a min_revision wait ends (UNAVAILABLE, as for a
 * client deadline) on the Connect path and on the fast path; a client's own deadline replaces it, and a
 * stream gets none.
 */
import * as http from "node:http";
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendReady, startTestServer, BACKEND, type Protocol, type TestServer } from "./harness.js";
import { snapshotDatabase } from "./db-snapshot.js";
import { queryRows } from "./db.js";
import { loadCanopyProtos, type GrpcError } from "./grpc-js-client.js";
import { loadConfig } from "../../src/config.js";
import { AssignmentService } from "../../src/gen/canopy/v1/assignment_pb.js";
import { CheckBulkRequestSchema, CheckRequestSchema } from "../../src/gen/canopy/v1/check_pb.js";

const ready = await backendReady();

const MAX_BYTES = 16 * 1024;
/** well-formed, names nothing */
const UNKNOWN = "01900000-0000-7000-8000-00000000dead";

interface Fixture {
  role: string;
  root: string;
  identities: string[];
}

async function seed(s: TestServer, identities: number, roles = 1): Promise<Fixture & { roles: string[] }> {
  const dev = s.clients(s.devKey);
  const long = { timeoutMs: 120_000 };
  await dev.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }] }, long);
  const roleIds: string[] = [];
  for (let i = 0; i < roles; i++) roleIds.push((await dev.catalog.createRole({ name: `reader-${i}`, permissionKeys: ["doc.read"] }, long)).role!.id);
  const root = (await dev.hierarchy.getHierarchySchema({}, long)).rootNodeId;
  const ids: string[] = [];
  // batches of 200 stay under the small CANOPY_MAX_REQUEST_BYTES of the size-limit server
  for (let start = 0; start < identities; start += 200) {
    const made = await dev.identities.batchCreateIdentities(
      { identities: Array.from({ length: Math.min(200, identities - start) }, (_, i) => ({ email: `u${start + i}@example.com` })) },
      long,
    );
    ids.push(...made.results.map((r) => r.identity!.id));
  }
  return { role: roleIds[0], roles: roleIds, root, identities: ids };
}

/* eslint-disable @typescript-eslint/no-explicit-any */
/** grpc-js clients on `port` whose calls carry no deadline unless given one. */
function grpcJs(port: number, key: string) {
  const protos = loadCanopyProtos();
  const made: grpc.Client[] = [];
  const client = (service: "CheckService" | "AssignmentService") => {
    const c = new protos[service](`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.max_send_message_length": -1 }) as grpc.Client & Record<string, any>;
    made.push(c);
    return c;
  };
  const md = () => {
    const m = new grpc.Metadata();
    m.set("x-api-key", key);
    return m;
  };
  return {
    md,
    client,
    /** resolves with the response, or with the error */
    call(service: "CheckService" | "AssignmentService", method: string, request: object, deadlineMs?: number): Promise<any> {
      const c = client(service);
      const options = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
      return new Promise((resolve) => c[method](request, md(), options, (err: GrpcError | null, res: unknown) => resolve(err ?? res)));
    },
    close: () => made.forEach((c) => c.close()),
  };
}

/** A raw HTTP/1.1 POST: `chunks` are written one by one (no content-length: chunked) unless `length` is set. */
function rawPost(url: string, path: string, headers: Record<string, string>, chunks: Buffer[], length = false): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const total = chunks.reduce((n, c) => n + c.length, 0);
    const req = http.request(`${url}${path}`, { method: "POST", agent: false, headers: { ...headers, ...(length ? { "content-length": String(total) } : {}) } }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d)).on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    // the server may answer (and close) before the upload is done
    req.on("error", (err: NodeJS.ErrnoException) => (err.code === "EPIPE" || err.code === "ECONNRESET" ? undefined : reject(err)));
    for (const c of chunks) req.write(c);
    req.end();
  });
}

async function connectCode(p: Promise<unknown>): Promise<Code> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err).code;
  }
  throw new Error("the call unexpectedly succeeded");
}

describe.skipIf(!ready)(`CANOPY_MAX_REQUEST_BYTES on every transport (${BACKEND})`, () => {
  let s: TestServer;
  let f: Fixture;
  /** items whose binary encoding is well over MAX_BYTES, each of which would be created */
  let big: Array<{ identityId: string; roleId: string; nodeId: string }>;

  beforeAll(async () => {
    s = await startTestServer({ env: { CANOPY_MAX_REQUEST_BYTES: String(MAX_BYTES) } });
    f = await seed(s, 400);
    big = f.identities.slice(0, 300).map((identityId) => ({ identityId, roleId: f.role, nodeId: f.root }));
    expect(toBinary(CheckRequestSchema, create(CheckRequestSchema, { identityId: "x".repeat(MAX_BYTES) })).length).toBeGreaterThan(MAX_BYTES);
  });
  afterAll(async () => {
    await s?.close();
  });

  it("refuses an oversized unary batch over Connect (JSON, HTTP/1.1 and HTTP/2), binary Connect, gRPC and gRPC-Web: RESOURCE_EXHAUSTED, storage untouched", async () => {
    const before = await snapshotDatabase(s);
    const protocols: Protocol[] = ["connect-h1", "connect-h2", "grpc", "grpc-web"];
    for (const protocol of protocols) {
      const code = await connectCode(s.clients(s.devKey, { protocol }).assignments.batchCreateAssignments({ items: big }));
      expect([protocol, code]).toEqual([protocol, Code.ResourceExhausted]);
    }
    const binary = createClient(
      AssignmentService,
      createConnectTransport({ baseUrl: s.url, httpVersion: "2", useBinaryFormat: true, interceptors: [(next) => (req) => (req.header.set("x-api-key", s.devKey), next(req))] }),
    );
    expect(await connectCode(binary.batchCreateAssignments({ items: big }))).toBe(Code.ResourceExhausted);
    const g = grpcJs(s.port, s.devKey);
    try {
      const err = await g.call("AssignmentService", "BatchCreateAssignments", { items: big.map((i) => ({ identity_id: i.identityId, role_id: i.roleId, node_id: i.nodeId })) });
      expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(err.details).toMatch(`larger than configured readMaxBytes ${MAX_BYTES}`);
    } finally {
      g.close();
    }
    expect(await snapshotDatabase(s)).toEqual(before);
    // the limit, not the request, is what failed: a small batch of the same items is created
    const small = await s.clients(s.devKey).assignments.batchCreateAssignments({ items: big.slice(0, 3) });
    expect(small.summary).toMatchObject({ total: 3, succeeded: 3 });
  });

  it("refuses an oversized Check and CheckBulk on the fast path (gRPC, Connect binary with and without content-length)", async () => {
    const before = await snapshotDatabase(s);
    const calls = s.app.fastPathCalls();
    const g = grpcJs(s.port, s.devKey);
    try {
      // an identity id far over 64 characters would be INVALID_ARGUMENT: the size limit comes first
      const err = await g.call("CheckService", "Check", { identity_id: "x".repeat(MAX_BYTES), permission: "doc.read", node_id: f.root });
      expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      const bulk = await g.call("CheckService", "CheckBulk", { items: Array.from({ length: 300 }, () => ({ identity_id: UNKNOWN, permission: "doc.read", node_id: f.root })) });
      expect(bulk.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    } finally {
      g.close();
    }
    const body = Buffer.from(toBinary(CheckRequestSchema, create(CheckRequestSchema, { identityId: "x".repeat(MAX_BYTES), permission: "doc.read", nodeId: f.root })));
    const headers = { "content-type": "application/proto", "x-api-key": s.devKey };
    for (const withLength of [true, false]) {
      const chunks = [body.subarray(0, 4096), body.subarray(4096, 12_000), body.subarray(12_000)];
      const res = await rawPost(s.url, "/canopy.v1.CheckService/Check", headers, chunks, withLength);
      expect([withLength, res.status, JSON.parse(res.body).code]).toEqual([withLength, 429, "resource_exhausted"]);
    }
    const bulkBody = Buffer.from(toBinary(CheckBulkRequestSchema, create(CheckBulkRequestSchema, { items: Array.from({ length: 300 }, () => ({ identityId: UNKNOWN, permission: "doc.read", nodeId: f.root })) })));
    const bulkRes = await rawPost(s.url, "/canopy.v1.CheckService/CheckBulk", headers, [bulkBody], true);
    expect(JSON.parse(bulkRes.body).code).toBe("resource_exhausted");
    // all five were answered by the fast path, not passed on to Connect
    expect(s.app.fastPathCalls()).toBe(calls + 5);
    expect(await snapshotDatabase(s)).toEqual(before);
  });

  it("answers 413 to an oversized REST body, declared or chunked, and stores nothing", async () => {
    const before = await snapshotDatabase(s);
    const body = Buffer.from(JSON.stringify({ assignments: big.map((i) => ({ identity_id: i.identityId, role_id: i.roleId, node_id: i.nodeId })) }));
    expect(body.length).toBeGreaterThan(MAX_BYTES);
    const headers = { "content-type": "application/json", "x-api-key": s.devKey };
    for (const withLength of [true, false]) {
      const res = await rawPost(s.url, "/api/v1/assignments/bulk-create", headers, [body.subarray(0, 8000), body.subarray(8000)], withLength);
      expect([withLength, res.status, JSON.parse(res.body).error.code]).toEqual([withLength, 413, "request.body_too_large"]);
    }
    expect(await snapshotDatabase(s)).toEqual(before);
  });

  it("ends a BulkCreateAssignments stream at an oversized message: RESOURCE_EXHAUSTED, the earlier items stay, nothing of it is stored", async () => {
    const items = f.identities.slice(300, 400).map((id) => ({ identity_id: id, role_id: f.role, node_id: f.root }));
    const g = grpcJs(s.port, s.devKey);
    const call = g.client("AssignmentService").BulkCreateAssignments(g.md()) as grpc.ClientDuplexStream<unknown, any>;
    const reported: string[] = [];
    const ended = new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
    let first: () => void;
    const firstDone = new Promise<void>((resolve) => (first = resolve));
    call.on("data", (m: any) => {
      if (m.kind === "result" && m.result.status?.code === 0) reported.push(m.result.assignment.id);
      if (reported.length === 10) first();
    });
    call.write({ items: items.slice(0, 10) });
    await firstDone;
    const before = await snapshotDatabase(s);
    // 300 items of another role: far over the limit in one message
    call.write({ items: big.map((i) => ({ identity_id: i.identityId, role_id: i.roleId, node_id: i.nodeId })) });
    call.write({ items: items.slice(10, 20) });
    const err = await ended;
    g.close();
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(reported).toHaveLength(10);
    expect(await snapshotDatabase(s)).toEqual(before);
    const stored = await queryRows<{ id: string }>(s, "select id from assignments where id in (" + reported.map(() => "?").join(",") + ")", reported);
    expect(stored.map((r) => r.id).sort()).toEqual([...reported].sort());
  });
});

describe.skipIf(!ready)(`CANOPY_DEFAULT_DEADLINE_MS (${BACKEND})`, () => {
  const DEADLINE_MS = 50;
  const ITEMS = 2000;
  let s: TestServer;
  let f: Fixture & { roles: string[] };

  beforeAll(async () => {
    // one transaction per item: a batch of ITEMS takes far longer than the default deadline
    s = await startTestServer({
      env: { CANOPY_DEFAULT_DEADLINE_MS: String(DEADLINE_MS), CANOPY_WRITE_CHUNK_SIZE: "1", CANOPY_MAX_BATCH_ITEMS: String(ITEMS) },
      limits: { revisionWaitMs: 120_000 },
    });
    f = await seed(s, ITEMS, 2);
  });
  afterAll(async () => {
    await s?.close();
  });

  it("stops a long batch sent without a deadline between transactions (DEADLINE_EXCEEDED); a client deadline replaces the default", async () => {
    const dev = s.clients(s.devKey);
    const items = (role: string) => f.identities.map((identityId) => ({ identityId, roleId: role, nodeId: f.root }));
    const err = await dev.assignments.batchCreateAssignments({ items: items(f.roles[0]) }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.DeadlineExceeded);
    expect((err as ConnectError).rawMessage).toBe(`the call took longer than the server's default deadline of ${DEADLINE_MS} ms`);
    // what was committed before the deadline stays (whole transactions of this batch), the rest was never written
    await s.app.canopy.runtime.settle();
    const stored = (await queryRows<{ identity_id: string }>(s, "select identity_id from assignments where role_id = ?", [f.roles[0]])).map((r) => r.identity_id);
    expect(stored.length).toBeLessThan(ITEMS);
    // the items of the transactions that ran, in order: a prefix of the batch
    expect(stored.sort()).toEqual(f.identities.slice(0, stored.length).sort());

    const done = await dev.assignments.batchCreateAssignments({ items: items(f.roles[1]) }, { timeoutMs: 120_000 });
    expect(done.summary).toMatchObject({ total: ITEMS, succeeded: ITEMS, failed: 0 });
  }, 180_000);

  it("ends a min_revision wait without a deadline on the Connect path and on the fast path", async () => {
    const dev = s.clients(s.devKey);
    const revision = (await dev.hierarchy.getHierarchySchema({})).revision;
    const ahead = revision + 1000n;
    // Connect (JSON over HTTP/1.1): ListAssignments waits in the consistency interceptor
    const listed = await dev.assignments.listAssignments({ minRevision: ahead }).catch((e: unknown) => ConnectError.from(e));
    expect((listed as ConnectError).code).toBe(Code.Unavailable);
    expect((listed as ConnectError).metadata.get("canopy-error-reason")).toBe("consistency.behind");
    // the fast path (gRPC from grpc-js, no deadline)
    const g = grpcJs(s.port, s.devKey);
    const calls = s.app.fastPathCalls();
    try {
      const err = await g.call("CheckService", "Check", { identity_id: f.identities[0], permission: "doc.read", node_id: f.root, min_revision: String(ahead) });
      expect(err.code).toBe(grpc.status.UNAVAILABLE);
      expect(err.metadata.get("canopy-error-reason")).toEqual(["consistency.behind"]);
    } finally {
      g.close();
    }
    expect(s.app.fastPathCalls()).toBe(calls + 1);
    // without the default deadline each wait would last CANOPY_REVISION_WAIT_MS (120 s), past this test's timeout
  }, 30_000);

  it("gives a stream no default deadline: an import that outlasts it completes", async () => {
    const g = grpcJs(s.port, s.devKey);
    const call = g.client("AssignmentService").BulkCreateAssignments(g.md()) as grpc.ClientDuplexStream<unknown, any>;
    const results: number[] = [];
    let summary: any;
    const status = new Promise<grpc.status>((resolve) => {
      call.on("error", (e: grpc.ServiceError) => resolve(e.code));
      call.on("status", (st: grpc.StatusObject) => st.code === grpc.status.OK && resolve(st.code));
    });
    call.on("data", (m: any) => (m.kind === "result" ? results.push(m.result.status?.code ?? 0) : (summary = m.summary.summary)));
    const node = (await s.clients(s.devKey).hierarchy.createNode({ parentId: f.root, type: "team", name: "stream" })).node!.id;
    call.write({ items: [{ identity_id: f.identities[0], role_id: f.roles[0], node_id: node }] });
    await new Promise((resolve) => setTimeout(resolve, DEADLINE_MS * 6));
    call.write({ items: [{ identity_id: f.identities[1], role_id: f.roles[0], node_id: node }] });
    call.end();
    expect(await status).toBe(grpc.status.OK);
    g.close();
    expect(results).toEqual([0, 0]);
    expect(summary).toEqual({ total: 2, succeeded: 2, failed: 0 });
  });
});

describe("limit and lifecycle settings are validated", () => {
  it("takes non-negative integers for the deadline and the grace period (0 = none), and refuses anything else by name", () => {
    expect(loadConfig({})).toMatchObject({ defaultDeadlineMs: 30_000, shutdownGraceMs: 10_000, maxRequestBytes: 4 * 1024 * 1024, socketPath: undefined, socketMode: 0o660 });
    expect(loadConfig({ CANOPY_DEFAULT_DEADLINE_MS: "0", CANOPY_SHUTDOWN_GRACE_MS: "0" })).toMatchObject({ defaultDeadlineMs: 0, shutdownGraceMs: 0 });
    expect(() => loadConfig({ CANOPY_DEFAULT_DEADLINE_MS: "-1" })).toThrow(/CANOPY_DEFAULT_DEADLINE_MS must be a non-negative integer/);
    expect(() => loadConfig({ CANOPY_DEFAULT_DEADLINE_MS: "1.5" })).toThrow(/CANOPY_DEFAULT_DEADLINE_MS/);
    expect(() => loadConfig({ CANOPY_SHUTDOWN_GRACE_MS: "soon" })).toThrow(/CANOPY_SHUTDOWN_GRACE_MS must be a non-negative integer/);
    expect(() => loadConfig({ CANOPY_MAX_REQUEST_BYTES: "0" })).toThrow(/CANOPY_MAX_REQUEST_BYTES must be a positive integer/);
  });
});
