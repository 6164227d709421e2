/**
 * CANOPY_SOCKET: the same API on a Unix domain socket, beside the TCP port or (CANOPY_PORT=off) alone.
 * Every protocol of the shared port works over it — gRPC with @grpc/grpc-js (`unix:///path`, through the
 * Check fast path and through Connect), Connect over HTTP/1.1 and HTTP/2, REST with node:http — and
 * answers the same values as over TCP. The socket file is created with CANOPY_SOCKET_MODE (0660), a
 * stale file is replaced, a live socket or a non-socket file stops the start, and close removes it.
 */
import { spawn } from "node:child_process";
import { statSync, existsSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendReady, startTestServer, BACKEND, T0, type TestServer } from "./harness.js";
import { createScratch, devKeyOf, startProcess } from "./process-support.js";
import { loadCanopyProtos, type GrpcError } from "./grpc-js-client.js";
import { loadConfig } from "../../src/config.js";
import { startApp } from "../../src/app.js";
import { HierarchyService } from "../../src/gen/canopy/v1/hierarchy_pb.js";
import { AssignmentService } from "../../src/gen/canopy/v1/assignment_pb.js";

const ready = await backendReady();
const scratch = createScratch();
afterAll(() => scratch.cleanup());

const silent = { info() {}, warn() {}, error() {} };
const HOUR = 3_600_000;

/* eslint-disable @typescript-eslint/no-explicit-any */
/** A grpc-js unary call on `unix://<path>`: resolves with the response object, or the error. */
function grpcOverSocket(path: string, key: string) {
  const protos = loadCanopyProtos();
  const clients: grpc.Client[] = [];
  return {
    call<T = any>(service: "CheckService" | "AssignmentService" | "HierarchyService", method: string, request: object): Promise<T> {
      const client = new protos[service](`unix://${path}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
      clients.push(client);
      const md = new grpc.Metadata();
      md.set("x-api-key", key);
      return new Promise<T>((resolve, reject) =>
        client[method](request, md, { deadline: Date.now() + 30_000 }, (err: GrpcError | null, res: T) => (err ? reject(err) : resolve(res))),
      );
    },
    close: () => clients.forEach((c) => c.close()),
  };
}

/** A plain HTTP/1.1 request over the socket; resolves with status and parsed JSON body. */
function restOverSocket(path: string, key: string, method: string, target: string, body?: object): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: path, method, path: target, headers: { "x-api-key": key, "content-type": "application/json" } }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d)).on("end", () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined }));
    });
    req.on("error", reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

function connectOverSocket(path: string, key: string, httpVersion: "1.1" | "2") {
  // the host is only the :authority / Host header: the connection goes to the socket
  const common = { baseUrl: "http://canopy.local", interceptors: [(next: AnyFn) => (req: Parameters<AnyFn>[0]) => (req.header.set("x-api-key", key), next(req))] };
  return httpVersion === "2"
    ? createConnectTransport({ ...common, httpVersion, nodeOptions: { createConnection: () => net.connect(path) } })
    : createConnectTransport({ ...common, httpVersion, nodeOptions: { socketPath: path } });
}

type AnyFn = Parameters<Interceptor>[0];

/** A socket file nobody listens on: a child process listens on it and is SIGKILLed. */
async function staleSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(path)}, () => console.log("up"))`], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
  child.kill("SIGKILL");
  await new Promise((resolve) => child.once("exit", resolve));
}

describe.skipIf(!ready)(`Unix domain socket beside the TCP port (${BACKEND})`, () => {
  let s: TestServer;
  let path: string;
  const f = { root: "", node: "", role: "", identity: "", assignment: "" };

  beforeAll(async () => {
    path = join(scratch.dir("canopy-sock-"), "canopy.sock");
    await staleSocket(path);
    expect(statSync(path).isSocket()).toBe(true);
    s = await startTestServer({ env: { CANOPY_SOCKET: path } });
    const dev = s.clients(s.devKey);
    await dev.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }, { key: "doc.write" }] });
    f.role = (await dev.catalog.createRole({ name: "reader", permissionKeys: ["doc.read"] })).role!.id;
    f.root = (await dev.hierarchy.getHierarchySchema({})).rootNodeId;
    f.node = (await dev.hierarchy.createNode({ parentId: f.root, type: "region", name: "EMEA" })).node!.id;
    f.identity = (await dev.identities.createIdentity({ identity: { email: "ada@example.com" } })).identity!.id;
    f.assignment = (await dev.assignments.createAssignment({ assignment: { identityId: f.identity, roleId: f.role, nodeId: f.root } })).assignment!.id;
  });
  afterAll(async () => {
    await s?.close();
  });

  it("replaced the stale socket file and created its own with mode 0660", () => {
    const st = statSync(path);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
    expect(s.app.socketPath).toBe(path);
  });

  it("answers gRPC from @grpc/grpc-js on unix:// (Check through the fast path, ListAssignments through Connect)", async () => {
    const g = grpcOverSocket(path, s.devKey);
    try {
      const before = s.app.fastPathCalls();
      const allowed = await g.call("CheckService", "Check", { identity_id: f.identity, permission: "doc.read", node_id: f.node });
      expect(allowed).toMatchObject({ allowed: true, denial_reason: "DENIAL_REASON_UNSPECIFIED" });
      const denied = await g.call("CheckService", "Check", { identity_id: f.identity, permission: "doc.write", node_id: f.node });
      expect(denied).toMatchObject({ allowed: false, denial_reason: "DENIAL_REASON_PERMISSION_NOT_GRANTED" });
      expect(s.app.fastPathCalls()).toBe(before + 2);
      const listed = await g.call("AssignmentService", "ListAssignments", { identity_id: f.identity });
      expect(listed.assignments.map((a: { id: string }) => a.id)).toEqual([f.assignment]);
      const unauthenticated = await grpcOverSocket(path, "cnpy_wrong")
        .call("CheckService", "Check", { identity_id: f.identity, permission: "doc.read", node_id: f.node })
        .catch((e: GrpcError) => e);
      expect((unauthenticated as GrpcError).code).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      g.close();
    }
  });

  it("answers Connect over HTTP/1.1 and HTTP/2 on the socket, with the same values as over TCP", async () => {
    const overTcp = await s.clients(s.devKey).hierarchy.getSubtree({ id: f.root });
    for (const [i, version] of (["1.1", "2"] as const).entries()) {
      const t = connectOverSocket(path, s.devKey, version);
      const subtree = await createClient(HierarchyService, t).getSubtree({ id: f.root });
      expect(subtree).toEqual(overTcp);
      expect(subtree.nodes.map((n) => n.id)).toEqual([f.root, f.node]);
      // a write over the socket (one window per protocol, so the two are not duplicates)
      const window = { effectiveFrom: timestampFromMs(T0 + i * HOUR), effectiveTo: timestampFromMs(T0 + (i + 1) * HOUR) };
      const created = await createClient(AssignmentService, t).createAssignment({ assignment: { identityId: f.identity, roleId: f.role, nodeId: f.node, ...window } });
      expect((await s.clients(s.devKey).assignments.getAssignment({ id: created.assignment!.id })).assignment).toEqual(created.assignment);
    }
  });

  it("answers REST over the socket", async () => {
    const schema = await restOverSocket(path, s.devKey, "GET", "/api/v1/hierarchy/schema");
    expect(schema.status).toBe(200);
    expect(schema.body.root_node_id).toBe(f.root);
    const evaluated = await restOverSocket(path, s.devKey, "POST", "/api/v1/permissions/evaluate", { identity_id: f.identity, permission: "doc.read", scope: "node", node_id: f.node });
    expect(evaluated.status).toBe(200);
    expect(evaluated.body.allowed).toBe(true);
  });

  it("refuses to start on a socket another process listens on, and on a path that is not a socket", async () => {
    const db = await scratch.database();
    const config = loadConfig({ CANOPY_PORT: "0", CANOPY_DATABASE_URL: db.url, CANOPY_SOCKET: path });
    await expect(startApp(config, { logger: silent })).rejects.toThrow(`another process is listening on ${path}`);
    // the live server is untouched
    expect(statSync(path).isSocket()).toBe(true);
    expect((await restOverSocket(path, s.devKey, "GET", "/api/v1/hierarchy/schema")).status).toBe(200);

    const file = join(scratch.dir(), "not-a-socket");
    writeFileSync(file, "keep me");
    const other = loadConfig({ CANOPY_PORT: "0", CANOPY_DATABASE_URL: (await scratch.database()).url, CANOPY_SOCKET: file });
    await expect(startApp(other, { logger: silent })).rejects.toThrow(`${file} exists and is not a socket`);
    expect(statSync(file).isFile()).toBe(true);
  });
});

describe.skipIf(!ready)(`CANOPY_PORT=off: the socket only (${BACKEND})`, () => {
  it("serves only on the socket, and SIGTERM removes the socket file", async () => {
    const db = await scratch.database();
    const path = join(scratch.dir("canopy-sock-"), "only.sock");
    const r = await startProcess(scratch, db.url, { CANOPY_PORT: "off", CANOPY_SOCKET: path, CANOPY_SOCKET_MODE: "600" });
    expect(r.url).toBe("");
    expect(r.stdout()).toContain(`"socket":"${path}"`);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const dev = devKeyOf(r);
    const root = (await createClient(HierarchyService, connectOverSocket(path, dev, "1.1")).getHierarchySchema({})).rootNodeId;
    const g = grpcOverSocket(path, dev);
    const check = await g.call("CheckService", "Check", { identity_id: "01900000-0000-7000-8000-00000000dead", permission: "doc.read", node_id: root });
    expect(check).toMatchObject({ allowed: false, denial_reason: "DENIAL_REASON_UNKNOWN_IDENTITY" });
    g.close();
    r.child.kill("SIGTERM");
    expect(await r.exited).toEqual({ code: 0, signal: null });
    expect(existsSync(path)).toBe(false);
  });

  it("is a configuration error without CANOPY_SOCKET, as are a bad mode and an overlong path", () => {
    expect(() => loadConfig({ CANOPY_PORT: "off" })).toThrow(/CANOPY_PORT=off needs CANOPY_SOCKET/);
    expect(() => loadConfig({ CANOPY_PORT: "of" })).toThrow(/CANOPY_PORT must be 0..65535 or off/);
    expect(() => loadConfig({ CANOPY_SOCKET: "/tmp/c.sock", CANOPY_SOCKET_MODE: "rw" })).toThrow(/CANOPY_SOCKET_MODE/);
    expect(() => loadConfig({ CANOPY_SOCKET: "/tmp/" + "x".repeat(120) })).toThrow(/CANOPY_SOCKET must be at most 107 bytes/);
    expect(loadConfig({ CANOPY_SOCKET: "/tmp/c.sock", CANOPY_SOCKET_MODE: "0640" })).toMatchObject({ port: 8080, socketPath: "/tmp/c.sock", socketMode: 0o640 });
  });
});
