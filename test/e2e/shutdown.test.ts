/**
 * Graceful shutdown, end to end. The real process (`node dist/src/main.js`) on the current BACKEND gets
 * SIGTERM while a BulkCreateAssignments stream over @grpc/grpc-js (HTTP/2) is open and sending slowly:
 * the listener refuses new connections at once, open HTTP/2 connections get GOAWAY, readiness (the
 * grpc.health.v1 Watch) turns NOT_SERVING, the stream may go on within CANOPY_SHUTDOWN_GRACE_MS and is
 * cancelled (UNAVAILABLE) after it, and the process exits 0. Afterwards the database holds exactly the
 * items the client was told were created. An in-process test covers HTTP/1.1 (`connection: close` on
 * the request in flight, idle keep-alive connections closed) and the draining flag.
 */
import { existsSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { once } from "node:events";
import * as grpc from "@grpc/grpc-js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, describe, expect, it } from "vitest";
import { backendReady, startTestServer, BACKEND } from "./harness.js";
import { createScratch, devKeyOf, startProcess, storedAssignmentIds, type Running } from "./process-support.js";
import { loadCanopyProtos } from "./grpc-js-client.js";
import { create, toBinary } from "@bufbuild/protobuf";
import { BulkCreateAssignmentsRequestSchema } from "../../src/gen/canopy/v1/assignment_pb.js";
import { CatalogService } from "../../src/gen/canopy/v1/catalog_pb.js";
import { HierarchyService } from "../../src/gen/canopy/v1/hierarchy_pb.js";
import { IdentityService } from "../../src/gen/canopy/v1/identity_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";

const ready = await backendReady();
const scratch = createScratch();
afterAll(() => scratch.cleanup());

const ADMIN_KEY = "cnpy_" + "s".repeat(40);
/** well-formed, names no role */
const UNKNOWN_ID = "01900000-0000-7000-8000-00000000dead";

/** A gRPC length-prefixed message (uncompressed). */
function grpcFrame(body: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  return frame;
}

interface Item {
  identity_id: string;
  role_id: string;
  node_id: string;
}

/** A permission, a role, the root and `n` identities: `n` valid, distinct assignment items. */
async function seed(url: string, key: string, n: number): Promise<Item[]> {
  const transport = createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors: [(next) => (req) => (req.header.set("x-api-key", key), next(req))] });
  const catalog = createClient(CatalogService, transport);
  await catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }] });
  const role = (await catalog.createRole({ name: "reader", permissionKeys: ["doc.read"] })).role!;
  const root = (await createClient(HierarchyService, transport).getHierarchySchema({})).rootNodeId;
  const made = await createClient(IdentityService, transport).batchCreateIdentities({ identities: Array.from({ length: n }, (_, i) => ({ email: `u${i}@example.com` })) });
  return made.results.map((r) => ({ identity_id: r.identity!.id, role_id: role.id, node_id: root }));
}

interface StreamResult {
  index: number;
  code: number;
  id: string;
}

/**
 * A BulkCreateAssignments stream over @grpc/grpc-js. `ended` resolves with the call's final status
 * (OK after the summary, or the error the server ended it with).
 */
function openStream(port: number, key: string) {
  const ctor = loadCanopyProtos().AssignmentService;
  const client = new ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const md = new grpc.Metadata();
  md.set("x-api-key", key);
  const call = client.BulkCreateAssignments(md) as grpc.ClientDuplexStream<{ items: Item[] }, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const results: StreamResult[] = [];
  let summary: { total: number; succeeded: number; failed: number } | undefined;
  const wakers = new Set<() => void>();
  call.on("data", (m) => {
    if (m.kind === "result") results.push({ index: m.result.index, code: m.result.status?.code ?? 0, id: m.result.assignment?.id ?? "" });
    else summary = m.summary.summary;
    for (const w of [...wakers]) w();
  });
  const ended = new Promise<{ code: grpc.status; details: string }>((resolve) => {
    call.on("error", (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details }));
    call.on("status", (s: grpc.StatusObject) => {
      if (s.code === grpc.status.OK) resolve({ code: s.code, details: s.details });
    });
  });
  return {
    call,
    results,
    summary: () => summary,
    ended,
    /** ids of the items reported created */
    reported: () => results.filter((r) => r.code === 0).map((r) => r.id).sort(),
    /** resolves once at least `n` results arrived */
    results$: (n: number) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (results.length < n) return;
          wakers.delete(check);
          resolve();
        };
        wakers.add(check);
        check();
      }),
    close: () => client.close(),
  };
}

/** The error code of a new TCP connection to `port` ("" when it connects). */
function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve("");
    });
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? String(err)));
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

/** SIGTERM, then wait for the log line that follows the listeners' close. */
async function terminate(r: Running): Promise<void> {
  r.child.kill("SIGTERM");
  await r.waitForOutput(/"msg":"shutting down/);
}

describe.skipIf(!ready)(`graceful shutdown of the process (${BACKEND})`, () => {
  it("cancels a stream still open when the grace period ends: exit 0, and exactly the reported items are stored", async () => {
    const db = await scratch.database();
    const graceMs = 2_000;
    const r = await startProcess(scratch, db.url, { CANOPY_ADMIN_KEY: ADMIN_KEY, CANOPY_SHUTDOWN_GRACE_MS: String(graceMs) });
    const dev = devKeyOf(r);
    const items = await seed(r.url, dev, 200);
    const stream = openStream(r.port, dev);
    let sent = 0;
    const send = (n: number) => {
      stream.call.write({ items: items.slice(sent, sent + n) });
      sent += n;
    };
    send(5);
    await stream.results$(5);
    // a second import on a raw HTTP/2 connection, open and silent after one (failing) item
    const raw = http2.connect(r.url);
    raw.on("error", () => undefined);
    const goaway = new Promise<number>((resolve) => raw.once("goaway", (code: number) => resolve(code)));
    const silent = raw.request({ ":method": "POST", ":path": "/canopy.v1.AssignmentService/BulkCreateAssignments", "content-type": "application/grpc", te: "trailers", "x-api-key": dev });
    silent.on("error", () => undefined);
    const silentTrailers = new Promise<http2.IncomingHttpHeaders>((resolve) => silent.once("trailers", (t) => resolve(t)));
    silent.on("data", () => undefined);
    silent.write(grpcFrame(toBinary(BulkCreateAssignmentsRequestSchema, create(BulkCreateAssignmentsRequestSchema, { items: [{ identityId: items[0].identity_id, roleId: UNKNOWN_ID, nodeId: items[0].node_id }] }))));
    await once(silent, "response");
    // and an idle one
    const idle = http2.connect(r.url);
    // the server's SETTINGS: its session exists (a connection still being sniffed would just be dropped)
    await once(idle, "remoteSettings");
    const idleGoaway = new Promise<number>((resolve) => idle.once("goaway", (code: number) => resolve(code)));
    const idleClosed = once(idle, "close");

    await terminate(r);
    expect(await connectOutcome(r.port)).toBe("ECONNREFUSED");
    expect(await goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
    // the idle connection hears GOAWAY too and ends (no reset: events.once would reject on 'error')
    expect(await idleGoaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
    await idleClosed;
    // the stream goes on sending one item every 100 ms and is never ended by the client
    const pump = setInterval(() => sent < items.length && send(1), 100);
    const outcome = await withTimeout(stream.ended, graceMs + 15_000, "stream end");
    clearInterval(pump);
    stream.close();
    expect(outcome.code).toBe(grpc.status.UNAVAILABLE);
    expect(outcome.details).toMatch(/shutting down/);
    // the silent import was cancelled the same way
    expect((await silentTrailers)["grpc-status"]).toBe(String(grpc.status.UNAVAILABLE));
    raw.destroy();
    expect(await withTimeout(r.exited, 15_000, "process exit")).toEqual({ code: 0, signal: null });

    expect(stream.summary()).toBeUndefined();
    // results kept coming during the grace period; each result is for an item sent, in order
    expect(stream.results.length).toBeGreaterThan(5);
    expect(stream.results.length).toBeLessThanOrEqual(sent);
    expect(stream.results.map((x) => x.index)).toEqual(stream.results.map((_, i) => i));
    expect(stream.results.every((x) => x.code === 0)).toBe(true);
    // SQLite: the store closed cleanly, so the WAL was checkpointed into the database and removed
    // (checked before anything else opens the file)
    if (db.file) expect(existsSync(`${db.file}-wal`)).toBe(false);
    expect(await storedAssignmentIds(db)).toEqual(stream.reported());
  });

  it("lets a stream finish within the grace period while readiness reports NOT_SERVING and new calls are refused", async () => {
    const db = await scratch.database();
    const r = await startProcess(scratch, db.url, { CANOPY_ADMIN_KEY: ADMIN_KEY, CANOPY_SHUTDOWN_GRACE_MS: "30000" });
    const dev = devKeyOf(r);
    const items = await seed(r.url, dev, 10);
    const stream = openStream(r.port, dev);
    stream.call.write({ items: items.slice(0, 5) });
    await stream.results$(5);
    // a CheckService client on the same target shares the stream's HTTP/2 connection (grpc-js subchannel pool)
    const checks = new (loadCanopyProtos().CheckService)(`127.0.0.1:${r.port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    const health = createClient(Health, createGrpcTransport({ baseUrl: r.url }));
    const watch = health.watch({ service: "" })[Symbol.asyncIterator]();
    expect((await watch.next()).value?.status).toBe(ServingStatus.SERVING);

    await terminate(r);
    expect((await watch.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    expect(await connectOutcome(r.port)).toBe("ECONNREFUSED");
    const md = new grpc.Metadata();
    md.set("x-api-key", dev);
    const refused = await new Promise<grpc.ServiceError | null>((resolve) =>
      checks.Check({ identity_id: items[0].identity_id, permission: "doc.read", node_id: items[0].node_id }, md, (err: grpc.ServiceError | null) => resolve(err)),
    );
    expect(refused?.code).toBe(grpc.status.UNAVAILABLE);
    checks.close();

    // the open stream is still served: the rest of the items, then the summary
    stream.call.write({ items: items.slice(5) });
    stream.call.end();
    expect((await withTimeout(stream.ended, 20_000, "stream end")).code).toBe(grpc.status.OK);
    stream.close();
    expect(stream.summary()).toEqual({ total: 10, succeeded: 10, failed: 0 });
    expect(await withTimeout(r.exited, 20_000, "process exit")).toEqual({ code: 0, signal: null });
    expect(stream.reported()).toHaveLength(10);
    expect(await storedAssignmentIds(db)).toEqual(stream.reported());
  });

  it("exits at once with status 1 on a second signal during the drain, keeping every reported item", async () => {
    const db = await scratch.database();
    const r = await startProcess(scratch, db.url, { CANOPY_ADMIN_KEY: ADMIN_KEY, CANOPY_SHUTDOWN_GRACE_MS: "60000" });
    const dev = devKeyOf(r);
    const items = await seed(r.url, dev, 5);
    const stream = openStream(r.port, dev);
    stream.call.write({ items });
    await stream.results$(5);
    await terminate(r);
    r.child.kill("SIGTERM");
    // far sooner than the 60 s grace period: the second signal does not wait for the open stream
    expect(await withTimeout(r.exited, 20_000, "process exit")).toEqual({ code: 1, signal: null });
    expect(r.stdout()).toMatch(/second signal during shutdown/);
    stream.close();
    expect(await storedAssignmentIds(db)).toEqual(stream.reported());
  });
});

describe.skipIf(!ready)(`graceful shutdown over HTTP/1.1, in process (${BACKEND})`, () => {
  it("drains: readiness false at once, the request in flight answers with connection: close, idle keep-alive connections close", async () => {
    const s = await startTestServer({ limits: { revisionWaitMs: 60_000 }, env: { CANOPY_SHUTDOWN_GRACE_MS: "30000" } });
    try {
      const dev = s.clients(s.devKey);
      const root = (await dev.hierarchy.getHierarchySchema({})).rootNodeId;
      const perm = await dev.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }] });
      const idleAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const busyAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const post = (agent: http.Agent, body: object) =>
        new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
          const req = http.request(
            `${s.url}/canopy.v1.CheckService/Check`,
            { method: "POST", agent, headers: { "content-type": "application/json", "x-api-key": s.devKey } },
            (res) => {
              let text = "";
              res.on("data", (d) => (text += d)).on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
            },
          );
          req.on("error", reject);
          req.end(JSON.stringify(body));
        });
      const check = { identityId: "01900000-0000-7000-8000-00000000dead", permission: "doc.read", nodeId: root };
      // an idle keep-alive connection
      const warm = await post(idleAgent, check);
      expect(warm.status).toBe(200);
      const idleSocket = (idleAgent.freeSockets[Object.keys(idleAgent.freeSockets)[0]] ?? [])[0];
      expect(idleSocket).toBeDefined();
      const idleClosed = once(idleSocket!, "close");
      // in flight: waits for a revision nobody has written yet
      const waiting = post(busyAgent, { ...check, minRevision: String(perm.revision + 1n) });
      await new Promise((resolve) => setTimeout(resolve, 200));

      const closing = s.app.close();
      expect(s.app.health.draining).toBe(true);
      await idleClosed;
      // a write in process (nothing else can connect now) releases the waiting check
      const principal = await s.app.canopy.auth.authenticate(s.devKey);
      const environment = await s.app.canopy.auth.environmentFor(principal, undefined);
      await s.app.canopy.catalog.batchCreatePermissions({ principal, environment }, [{ key: "doc.write", description: "", category: "" }]);
      const answered = await waiting;
      expect(answered.status).toBe(200);
      expect(answered.headers.connection).toBe("close");
      expect(JSON.parse(answered.body)).toMatchObject({ allowed: false, denialReason: "DENIAL_REASON_UNKNOWN_IDENTITY", revision: String(perm.revision + 1n) });
      await withTimeout(closing, 20_000, "close");
      expect(await connectOutcome(s.port)).toBe("ECONNREFUSED");
      idleAgent.destroy();
      busyAgent.destroy();
    } finally {
      await s.close();
    }
  });
});
