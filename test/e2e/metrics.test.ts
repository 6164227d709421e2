/**
 * GET /metrics (src/server/observability.ts): after known calls through each door — Connect (JSON over
 * HTTP/1.1, so the adapter answers), gRPC on the fast path, REST — the scrape shows exact deltas of the
 * go-grpc-prometheus RPC series, the REST series and the domain series (decisions, bulk items, closure
 * rebuilds), plus the process's default metrics. Values only, never timing.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BulkCreateAssignmentsRequestSchema, type BulkCreateAssignmentsRequest } from "../../src/gen/canopy/v1/assignment_pb.js";
import { AdminService } from "../../src/gen/canopy/v1/admin_pb.js";
import { CheckService } from "../../src/gen/canopy/v1/check_pb.js";
import { backendReady, startTestServer, type Clients, type TestServer } from "./harness.js";

const ready = await backendReady();

type Labels = Record<string, string>;

/** One sample of the text exposition. */
interface Sample {
  name: string;
  labels: Labels;
  value: number;
}

function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Labels = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** A scrape: the value of a series with exactly these labels (0 when absent, as a counter not yet touched). */
class Scrape {
  constructor(
    readonly samples: Sample[],
    readonly contentType: string,
  ) {}

  value(name: string, labels: Labels = {}): number {
    const want = Object.entries(labels);
    const hit = this.samples.find((s) => s.name === name && Object.keys(s.labels).length === want.length && want.every(([k, v]) => s.labels[k] === v));
    return hit?.value ?? 0;
  }

  has(name: string): boolean {
    return this.samples.some((s) => s.name === name);
  }
}

async function scrape(url: string): Promise<Scrape> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  return new Scrape(parseExposition(await res.text()), res.headers.get("content-type") ?? "");
}

const rpc = (service: string, method: string, type = "unary") => ({ grpc_service: `canopy.v1.${service}`, grpc_method: method, grpc_type: type });
const handled = (service: string, method: string, code: string, type = "unary") => ({ ...rpc(service, method, type), grpc_code: code });

/** Connect with JSON over HTTP/1.1: never taken by the fast path (binary only), so the Connect adapter answers. */
function connectJson(url: string, key: string) {
  const transport = createConnectTransport({
    baseUrl: url,
    httpVersion: "1.1",
    useBinaryFormat: false,
    interceptors: [(next) => (req) => (req.header.set("x-api-key", key), next(req))],
  });
  return { check: createClient(CheckService, transport), admin: createClient(AdminService, transport) };
}

describe.skipIf(!ready)("GET /metrics", () => {
  let s: TestServer;
  let envId: string;
  let connect: { check: Client<typeof CheckService>; admin: Client<typeof AdminService> };
  let grpc: Clients;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    s = await startTestServer();
    const admin = s.clients(s.adminKey);
    const dev = (await admin.admin.listEnvironments({})).environments.find((e) => e.name === "development")!;
    envId = dev.id;
    const c = s.clients(s.adminKey, { environment: envId });
    ids.root = dev.rootNodeId;
    await c.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }] });
    ids.viewer = (await c.catalog.createRole({ name: "viewer", permissionKeys: ["doc.read"] })).role!.id;
    ids.region = (await c.hierarchy.createNode({ parentId: ids.root, type: "region", name: "EMEA" })).node!.id;
    ids.other = (await c.hierarchy.createNode({ parentId: ids.root, type: "region", name: "APAC" })).node!.id;
    ids.team = (await c.hierarchy.createNode({ parentId: ids.region, type: "team", name: "Zürich" })).node!.id;
    for (const name of ["alice", "bob", "carol", "dave", "erin", "frank", "gina"]) {
      ids[name] = (await c.identities.createIdentity({ identity: { email: `${name}@example.com`, displayName: name } })).identity!.id;
    }
    await c.assignments.createAssignment({ assignment: { identityId: ids.alice, roleId: ids.viewer, nodeId: ids.region } });
    connect = connectJson(s.url, s.devKey);
    grpc = s.clients(s.devKey, { protocol: "grpc" }); // gRPC over HTTP/2: Check and CheckBulk on the fast path
  });

  afterAll(async () => {
    await s?.close();
  });

  const aliceCan = () => ({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team });
  const bobCan = () => ({ identityId: ids.bob, permission: "doc.read", nodeId: ids.team });

  it("serves the text format without an API key, with the process's default metrics", async () => {
    const m = await scrape(s.url);
    expect(m.contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
    for (const name of ["process_cpu_user_seconds_total", "process_start_time_seconds", "nodejs_heap_size_total_bytes", "nodejs_eventloop_lag_seconds", "nodejs_version_info"]) {
      expect(m.has(name), name).toBe(true);
    }
    expect(m.value("nodejs_heap_size_total_bytes")).toBeGreaterThan(0);
    // the domain's series exist from the start
    expect(m.has("canopy_checks_total")).toBe(true);
    expect(m.has("canopy_bulk_items_total")).toBe(true);
    expect(m.value("canopy_revision_lag")).toBe(0);
    const post = await fetch(`${s.url}/metrics`, { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });

  it("Check through the Connect adapter and through the fast path count in the same series, with decisions", async () => {
    const before = await scrape(s.url);
    const fastBefore = s.app.fastPathCalls();
    expect((await connect.check.check(aliceCan())).allowed).toBe(true);
    expect((await grpc.check.check(bobCan())).allowed).toBe(false);
    expect((await grpc.check.check(aliceCan())).allowed).toBe(true);
    const bulk = await grpc.check.checkBulk({ items: [aliceCan(), bobCan(), { ...bobCan(), identityId: ids.carol }] });
    expect(bulk.results.map((r) => r.allowed)).toEqual([true, false, false]);
    const connectBulk = await connect.check.checkBulk({ items: [aliceCan(), aliceCan()] });
    expect(connectBulk.results.map((r) => r.allowed)).toEqual([true, true]);
    expect(s.app.fastPathCalls()).toBe(fastBefore + 3);
    const after = await scrape(s.url);
    const delta = (name: string, labels: Labels) => after.value(name, labels) - before.value(name, labels);
    expect(delta("grpc_server_started_total", rpc("CheckService", "Check"))).toBe(3);
    expect(delta("grpc_server_handled_total", handled("CheckService", "Check", "OK"))).toBe(3);
    expect(delta("grpc_server_handling_seconds_count", rpc("CheckService", "Check"))).toBe(3);
    expect(delta("grpc_server_started_total", rpc("CheckService", "CheckBulk"))).toBe(2);
    expect(delta("grpc_server_handled_total", handled("CheckService", "CheckBulk", "OK"))).toBe(2);
    expect(delta("grpc_server_handling_seconds_count", rpc("CheckService", "CheckBulk"))).toBe(2);
    // a histogram's +Inf bucket counts every call
    expect(delta("grpc_server_handling_seconds_bucket", { ...rpc("CheckService", "Check"), le: "+Inf" })).toBe(3);
    // items of CheckBulk one by one: 2 + 1 + 1 allowed (Check, Check, bulk, bulk×2), 1 + 2 denied
    expect(delta("canopy_checks_total", { decision: "allowed" })).toBe(5);
    expect(delta("canopy_checks_total", { decision: "denied" })).toBe(3);
  });

  it("error codes by name on both paths: a bad key, a missing field, a key without the scope", async () => {
    const before = await scrape(s.url);
    const bad = connectJson(s.url, "cnpy_not-a-real-key-at-all");
    const badGrpc = s.clients("cnpy_not-a-real-key-at-all", { protocol: "grpc" });
    const code = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (e) {
        return ConnectError.from(e).code;
      }
      return 0;
    };
    expect(await code(bad.check.check(aliceCan()))).toBe(Code.Unauthenticated);
    expect(await code(badGrpc.check.check(aliceCan()))).toBe(Code.Unauthenticated);
    expect(await code(badGrpc.check.checkBulk({ items: [aliceCan()] }))).toBe(Code.Unauthenticated);
    expect(await code(grpc.check.check({ permission: "doc.read", nodeId: ids.team }))).toBe(Code.InvalidArgument);
    expect(await code(connect.admin.listEnvironments({}))).toBe(Code.PermissionDenied);
    const after = await scrape(s.url);
    const delta = (name: string, labels: Labels) => after.value(name, labels) - before.value(name, labels);
    expect(delta("grpc_server_handled_total", handled("CheckService", "Check", "Unauthenticated"))).toBe(2);
    expect(delta("grpc_server_handled_total", handled("CheckService", "CheckBulk", "Unauthenticated"))).toBe(1);
    expect(delta("grpc_server_handled_total", handled("CheckService", "Check", "InvalidArgument"))).toBe(1);
    expect(delta("grpc_server_handled_total", handled("AdminService", "ListEnvironments", "PermissionDenied"))).toBe(1);
    expect(delta("grpc_server_handled_total", handled("CheckService", "Check", "OK"))).toBe(0);
    expect(delta("canopy_checks_total", { decision: "allowed" }) + delta("canopy_checks_total", { decision: "denied" })).toBe(0);
  });

  it("REST requests by operation and status, and their decisions", async () => {
    const before = await scrape(s.url);
    const post = (path: string, body: unknown, key: string | null = s.devKey) =>
      fetch(`${s.url}/api/v1${path}`, { method: "POST", headers: { "content-type": "application/json", ...(key ? { "x-api-key": key } : {}) }, body: JSON.stringify(body) });
    expect((await post("/permissions/evaluate", { identity_id: ids.alice, permission: "doc.read", node_id: ids.team })).status).toBe(200);
    expect((await post("/permissions/evaluate", { identity_id: ids.alice, permission: "doc.read", node_id: ids.team }, "cnpy_wrong-key")).status).toBe(401);
    expect((await post("/permissions/evaluate", { identity_id: ids.alice, permission: "doc.read", node_id: ids.team }, null)).status).toBe(401);
    const bulk = await post("/permissions/bulk-evaluate", { checks: [{ identity_id: ids.alice, permission: "doc.read", node_id: ids.team }, { identity_id: ids.bob, permission: "doc.read", node_id: ids.team }] });
    expect(bulk.status).toBe(200);
    expect((await fetch(`${s.url}/api/v1/no-such-thing`)).status).toBe(404);
    const after = await scrape(s.url);
    const delta = (name: string, labels: Labels) => after.value(name, labels) - before.value(name, labels);
    expect(delta("http_requests_total", { operation: "evaluatePermission", status: "200" })).toBe(1);
    expect(delta("http_requests_total", { operation: "evaluatePermission", status: "401" })).toBe(2);
    expect(delta("http_requests_total", { operation: "bulkEvaluatePermissions", status: "200" })).toBe(1);
    expect(delta("http_requests_total", { operation: "unmatched", status: "404" })).toBe(1);
    expect(delta("http_request_duration_seconds_count", { operation: "evaluatePermission" })).toBe(3);
    expect(delta("canopy_checks_total", { decision: "allowed" })).toBe(2);
    expect(delta("canopy_checks_total", { decision: "denied" })).toBe(1);
    // REST does not count as an RPC
    expect(delta("grpc_server_started_total", rpc("CheckService", "Check"))).toBe(0);
  });

  it("bulk items by outcome: the stream, the unary batch (independent, atomic, replayed) and REST bulk-create", async () => {
    const c = s.clients(s.adminKey, { environment: envId, protocol: "grpc" });
    const item = (identity: string, nodeId = ids.other) => ({ identityId: ids[identity], roleId: ids.viewer, nodeId });
    const before = await scrape(s.url);

    // stream: 2 messages, 3 created, 1 failed (unknown role)
    const messages: Array<MessageInitShape<typeof BulkCreateAssignmentsRequestSchema>> = [
      { items: [item("bob"), item("carol")] },
      { items: [item("dave"), { ...item("erin"), roleId: "no-such-role" }] },
    ];
    async function* source(): AsyncIterable<BulkCreateAssignmentsRequest> {
      for (const m of messages) yield create(BulkCreateAssignmentsRequestSchema, m);
    }
    let streamed = 0;
    for await (const m of c.assignments.bulkCreateAssignments(source())) if (m.kind.case === "result") streamed++;
    expect(streamed).toBe(4);

    // unary batch: 1 created, 1 failed; atomic with a failure: nothing created, 2 failed; replay: nothing new
    const batch = await c.assignments.batchCreateAssignments({ items: [item("frank"), { ...item("gina"), nodeId: "no-such-node" }], idempotencyKey: "metrics-1" });
    expect(batch.summary).toMatchObject({ succeeded: 1, failed: 1 });
    const replay = await c.assignments.batchCreateAssignments({ items: [item("frank"), { ...item("gina"), nodeId: "no-such-node" }], idempotencyKey: "metrics-1" });
    expect(replay.replayed).toBe(true);
    const atomic = await c.assignments.batchCreateAssignments({ items: [item("gina"), { ...item("gina"), nodeId: "no-such-node" }], atomic: true });
    expect(atomic.summary).toMatchObject({ succeeded: 0, failed: 2 });

    // REST bulk-create: 1 created
    const rest = await fetch(`${s.url}/api/v1/assignments/bulk-create`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": s.adminKey, "canopy-environment": envId },
      body: JSON.stringify({ assignments: [{ identity_id: ids.gina, role_id: ids.viewer, node_id: ids.other }] }),
    });
    expect(rest.status).toBe(200);

    const after = await scrape(s.url);
    const delta = (name: string, labels: Labels) => after.value(name, labels) - before.value(name, labels);
    expect(delta("canopy_bulk_items_total", { outcome: "created" })).toBe(3 + 1 + 1);
    expect(delta("canopy_bulk_items_total", { outcome: "failed" })).toBe(1 + 1 + 2);
    expect(delta("grpc_server_started_total", rpc("AssignmentService", "BulkCreateAssignments", "bidi_stream"))).toBe(1);
    expect(delta("grpc_server_handled_total", handled("AssignmentService", "BulkCreateAssignments", "OK", "bidi_stream"))).toBe(1);
    expect(delta("grpc_server_handled_total", handled("AssignmentService", "BatchCreateAssignments", "OK"))).toBe(3);
    expect(delta("http_requests_total", { operation: "bulkCreateAssignments", status: "200" })).toBe(1);
  });

  it("closure rebuilds: one per hierarchy write applied, none for a refused one", async () => {
    const c = s.clients(s.adminKey, { environment: envId });
    const before = await scrape(s.url);
    await c.hierarchy.moveNode({ id: ids.team, newParentId: ids.other });
    await expect(c.hierarchy.moveNode({ id: ids.region, newParentId: ids.region })).rejects.toThrow();
    const after = await scrape(s.url);
    expect(after.value("canopy_closure_rebuilds_total") - before.value("canopy_closure_rebuilds_total")).toBe(1);
    expect(after.value("canopy_closure_rebuild_seconds_count") - before.value("canopy_closure_rebuild_seconds_count")).toBe(1);
    expect(after.value("grpc_server_handled_total", handled("HierarchyService", "MoveNode", "OK")) - before.value("grpc_server_handled_total", handled("HierarchyService", "MoveNode", "OK"))).toBe(1);
    // the moved subtree answers from the rebuilt closure
    expect((await connect.check.check(aliceCan())).allowed).toBe(false);
  });

  it("labels stay bounded: only known services and methods appear", async () => {
    const m = await scrape(s.url);
    const services = new Set(m.samples.filter((x) => x.name.startsWith("grpc_server_")).map((x) => x.labels.grpc_service));
    for (const service of services) expect(service).toMatch(/^(canopy\.v1\.\w+Service|grpc\.health\.v1\.Health|grpc\.reflection\.v1(alpha)?\.ServerReflection|unknown)$/);
    const codes = new Set(m.samples.filter((x) => x.name === "grpc_server_handled_total").map((x) => x.labels.grpc_code));
    for (const code of codes) expect(["OK", "InvalidArgument", "Unauthenticated", "PermissionDenied", "NotFound", "FailedPrecondition"]).toContain(code);
  });
});

describe.skipIf(!ready)("CANOPY_METRICS=false", () => {
  it("serves no /metrics (the path falls through to the Connect adapter)", async () => {
    const s = await startTestServer({ env: { CANOPY_METRICS: "false" } });
    try {
      const res = await fetch(`${s.url}/metrics`);
      expect(res.status).toBe(404);
      expect(await res.text()).not.toContain("grpc_server_started_total");
    } finally {
      await s.close();
    }
  });
});
