/**
 * The fast path (src/server/fast-path.ts) is an optimisation, never a second set of rules: the same
 * request bytes sent to a server with it (CANOPY_FAST_PATH default) and to a second server with it off
 * (every call through the Connect adapter), both over one fully seeded database and one clock, must get
 * identical status, headers (except Date), body bytes and trailers. Each server's fast-path call count
 * proves which path answered.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { startApp, type App } from "../../src/app.js";
import { EchoRequestSchema } from "../../src/gen/canopy/bench/v1/echo_pb.js";
import { MembershipStatus } from "../../src/gen/canopy/v1/identity_pb.js";
import { CheckBulkRequestSchema, CheckRequestSchema, CheckScope } from "../../src/gen/canopy/v1/check_pb.js";
import { backendReady, startTestServer, T0, type Clients, type TestServer } from "./harness.js";
import { grpcJsClients, msOfTs, type GrpcJsClients } from "./grpc-js-client.js";

const ready = await backendReady();

/** Limits both servers share, small enough to reach from a test. */
const ENV = { CANOPY_MAX_REQUEST_BYTES: "2048", CANOPY_MAX_CHECK_BULK: "5", CANOPY_REVISION_WAIT_MS: "150", CANOPY_BENCH_ECHO: "true" };

type Wire = "grpc" | "connect-h2" | "connect-h1";

/** Everything a client can see of one response. */
interface Seen {
  status: number;
  headers: Record<string, string>;
  trailers: Record<string, string>;
  body: string;
}

function without(h: Record<string, unknown>, drop: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (!drop.includes(k.toLowerCase())) out[k.toLowerCase()] = String(v);
  return out;
}

const frame = (bytes: Uint8Array) => {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([head, Buffer.from(bytes)]);
};

const checkBytes = (m: MessageInitShape<typeof CheckRequestSchema>) => toBinary(CheckRequestSchema, create(CheckRequestSchema, m));
const bulkBytes = (m: MessageInitShape<typeof CheckBulkRequestSchema>) => toBinary(CheckBulkRequestSchema, create(CheckBulkRequestSchema, m));

const sessions = new Map<string, http2.ClientHttp2Session>();
function session(url: string): http2.ClientHttp2Session {
  let s = sessions.get(url);
  if (!s || s.closed || s.destroyed) sessions.set(url, (s = http2.connect(url)));
  return s;
}

/** One raw HTTP/2 call; `cancel` resets the stream right after sending. */
function h2(url: string, path: string, headers: Record<string, string>, body: Buffer, cancel = false): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const req = session(url).request({ ":method": "POST", ":path": path, ...headers });
    const seen: Seen = { status: 0, headers: {}, trailers: {}, body: "" };
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      seen.status = Number(h[":status"]);
      seen.headers = without(h, [":status", "date"]);
    });
    req.on("trailers", (t) => (seen.trailers = without(t, [])));
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("error", (e) => (cancel ? resolve(seen) : reject(e)));
    req.on("close", () => resolve({ ...seen, body: Buffer.concat(chunks).toString("hex") }));
    req.end(body, () => {
      if (cancel) req.close(http2.constants.NGHTTP2_CANCEL);
    });
  });
}

function h1(url: string, path: string, headers: Record<string, string>, body: Buffer): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}${path}`, { method: "POST", headers: { ...headers, "content-length": String(body.length) }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: without(res.headers, ["date", "connection", "keep-alive"]), trailers: {}, body: Buffer.concat(chunks).toString("hex") }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Sends `message` (already-encoded request bytes) the way `wire` frames it. */
function send(url: string, wire: Wire, path: string, message: Uint8Array, headers: Record<string, string> = {}, rawBody?: Buffer): Promise<Seen> {
  if (wire === "grpc") return h2(url, path, { "content-type": "application/grpc", te: "trailers", ...headers }, rawBody ?? frame(message));
  const h = { "content-type": "application/proto", "connect-protocol-version": "1", ...headers };
  return wire === "connect-h2" ? h2(url, path, h, rawBody ?? Buffer.from(message)) : h1(url, path, h, rawBody ?? Buffer.from(message));
}

/** The status of a response as a gRPC code number ("0" = OK) whichever protocol it used, with message and error metadata. */
function outcome(seen: Seen): { code: string; message: string; field?: string; reason?: string } {
  const meta = { ...seen.headers, ...seen.trailers };
  if (seen.trailers["grpc-status"] !== undefined) {
    return { code: seen.trailers["grpc-status"], message: decodeURIComponent(seen.trailers["grpc-message"] ?? ""), field: meta["canopy-error-field"], reason: meta["canopy-error-reason"] };
  }
  if (seen.status === 200) return { code: "0", message: "" };
  const err = JSON.parse(Buffer.from(seen.body, "hex").toString("utf8")) as { code: string; message: string };
  return { code: String(codeFromString(err.code)), message: err.message, field: meta["canopy-error-field"], reason: meta["canopy-error-reason"] };
}

/**
 * Each server makes up its own x-request-id when the request names none: both answers must carry one, in
 * the same place (a header on success, error metadata on failure, none for body errors Connect raises before
 * its interceptors), and then the values are set aside. A request naming one is compared as it is.
 */
function settleRequestId(seen: Seen, sent: Record<string, string>): Seen {
  if (sent["x-request-id"] !== undefined) return seen;
  const out = { ...seen, headers: { ...seen.headers }, trailers: { ...seen.trailers } };
  for (const h of [out.headers, out.trailers]) {
    if (h["x-request-id"] === undefined) continue;
    expect(h["x-request-id"]).toMatch(/^[0-9a-f]{16}$/);
    h["x-request-id"] = "(generated)";
  }
  return out;
}

describe.skipIf(!ready)("fast path ≡ Connect path", () => {
  let s: TestServer;
  let connectOnly: App;
  let admin: Clients;
  let envId: string;
  let revision: bigint;
  const ids: Record<string, string> = {};
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    s = await startTestServer({ env: ENV });
    admin = s.clients(s.adminKey);
    const dev = (await admin.admin.listEnvironments({})).environments.find((e) => e.name === "development")!;
    envId = dev.id;
    const c = s.clients(s.adminKey, { environment: envId });
    ids.root = dev.rootNodeId;
    await c.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }, { key: "doc.write" }] });
    const viewer = (await c.catalog.createRole({ name: "viewer", permissionKeys: ["doc.read"] })).role!.id;
    const writer = (await c.catalog.createRole({ name: "writer", permissionKeys: ["doc.write"] })).role!.id;
    ids.region = (await c.hierarchy.createNode({ parentId: ids.root, type: "region", name: "EMEA" })).node!.id;
    ids.team = (await c.hierarchy.createNode({ parentId: ids.region, type: "team", name: "Zürich 😀" })).node!.id;
    const person = async (name: string, skipMembership = false) =>
      (await c.identities.createIdentity({ identity: { email: `${name}@example.com`, displayName: name }, skipMembership })).identity!.id;
    for (const name of ["alice", "bob", "carol", "dave", "erin", "frank", "gina"]) ids[name] = await person(name);
    ids.hank = await person("hank", true);
    const assign = (identityId: string, roleId: string, nodeId: string, from?: number, to?: number) =>
      c.assignments.createAssignment({
        assignment: { identityId, roleId, nodeId, effectiveFrom: from === undefined ? undefined : timestampFromMs(from), effectiveTo: to === undefined ? undefined : timestampFromMs(to) },
      });
    await assign(ids.alice, viewer, ids.region, undefined, T0 + 365 * 86_400_000);
    await assign(ids.alice, writer, ids.team);
    await assign(ids.carol, viewer, ids.root, T0 + 86_400_000);
    await assign(ids.dave, viewer, ids.root, T0 - 2 * 86_400_000, T0 - 86_400_000);
    await assign(ids.erin, writer, ids.root);
    await assign(ids.frank, viewer, ids.root);
    await assign(ids.gina, viewer, ids.root);
    await c.identities.deactivateIdentity({ id: ids.frank });
    revision = (await c.identities.setAppMembershipStatus({ identityId: ids.gina, status: MembershipStatus.INACTIVE })).revision;
    keys.dev = s.devKey;
    keys.admin = s.adminKey;
    keys.readOnly = (await admin.admin.createApiKey({ name: "read only", environmentId: envId, scopes: ["read"] })).secret;
    // everything is written: the second server starts on the same database and clock with the fast path off
    const config = loadConfig({ CANOPY_PORT: "0", CANOPY_DATABASE_URL: s.databaseUrl, CANOPY_DATABASE_POOL_SIZE: "4", ...ENV, CANOPY_FAST_PATH: "false" });
    connectOnly = await startApp(config, { clock: s.clock, logger: { info() {}, warn() {}, error() {} } });
  });

  afterAll(async () => {
    for (const x of sessions.values()) x.close();
    await connectOnly?.close();
    await s?.close();
  });

  /**
   * Sends the same bytes to both servers and asserts both saw the same; returns the fast path's response
   * (and that it, not the adapter, answered on the first server).
   */
  async function same(wire: Wire, path: string, message: Uint8Array, headers: Record<string, string> = {}, rawBody?: Buffer): Promise<Seen> {
    const before = s.app.fastPathCalls();
    const fast = await send(s.url, wire, path, message, headers, rawBody);
    const slow = await send(connectOnly.url, wire, path, message, headers, rawBody);
    expect(settleRequestId(fast, headers)).toEqual(settleRequestId(slow, headers));
    expect(s.app.fastPathCalls()).toBe(before + 1);
    expect(connectOnly.fastPathCalls()).toBe(0);
    return fast;
  }

  const CHECK = "/canopy.v1.CheckService/Check";
  const BULK = "/canopy.v1.CheckService/CheckBulk";
  const WIRES: Wire[] = ["grpc", "connect-h2", "connect-h1"];
  const key = (k: string, environment?: string) => ({ "x-api-key": keys[k], ...(environment ? { "canopy-environment": environment } : {}) });

  const denials: Array<[string, () => MessageInitShape<typeof CheckRequestSchema>, string, string?]> = [
    ["allowed, inherited from the region", () => ({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team }), "0"],
    ["UNKNOWN_IDENTITY (unicode id)", () => ({ identityId: "nobody-ünïcode-😀", permission: "doc.read", nodeId: ids.team }), "0"],
    ["UNKNOWN_IDENTITY (no membership, environment key)", () => ({ identityId: ids.hank, permission: "doc.read", nodeId: ids.team }), "0"],
    ["UNKNOWN_PERMISSION", () => ({ identityId: ids.alice, permission: "doc.shred", nodeId: ids.team }), "0"],
    ["UNKNOWN_NODE", () => ({ identityId: ids.alice, permission: "doc.read", nodeId: "no-such-node" }), "0"],
    ["IDENTITY_INACTIVE", () => ({ identityId: ids.frank, permission: "doc.read", nodeId: ids.team }), "0"],
    ["MEMBERSHIP_INACTIVE", () => ({ identityId: ids.gina, permission: "doc.read", nodeId: ids.team }), "0"],
    ["NO_ASSIGNMENT", () => ({ identityId: ids.bob, permission: "doc.read", nodeId: ids.team }), "0"],
    ["ONLY_SCHEDULED", () => ({ identityId: ids.carol, permission: "doc.read", nodeId: ids.team }), "0"],
    ["ONLY_EXPIRED", () => ({ identityId: ids.dave, permission: "doc.read", nodeId: ids.team }), "0"],
    ["PERMISSION_NOT_GRANTED", () => ({ identityId: ids.erin, permission: "doc.read", nodeId: ids.team }), "0"],
    ["explain with explanations (window end, inherited and direct)", () => ({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team, explain: true }), "0"],
    ["explain on a denial", () => ({ identityId: ids.erin, permission: "doc.read", nodeId: ids.team, explain: true }), "0"],
    ["app_wide allowed", () => ({ identityId: ids.alice, permission: "doc.write", scope: CheckScope.APP_WIDE }), "0"],
    ["app_wide denied", () => ({ identityId: ids.bob, permission: "doc.write", scope: CheckScope.APP_WIDE }), "0"],
    ["explicit at in the past (ONLY_SCHEDULED then)", () => ({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team, at: timestampFromMs(T0 - 1000) }), "0"],
    ["min_revision already reached", () => ({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team, minRevision: revision }), "0"],
    ["missing identity_id", () => ({ permission: "doc.read", nodeId: ids.team }), "3", "identity_id"],
    ["unknown scope", () => ({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team, scope: 7 as CheckScope }), "3", "scope"],
    ["node_id with app_wide", () => ({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team, scope: CheckScope.APP_WIDE }), "3", "node_id"],
    ["at out of range", () => ({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team, at: { seconds: 253402300800n, nanos: 0 } }), "3", "at"],
    ["negative min_revision", () => ({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team, minRevision: -1n }), "3", "min_revision"],
  ];

  for (const wire of WIRES) {
    describe(wire, () => {
      it.each(denials)("Check: %s", async (_name, request, code, field) => {
        const seen = await same(wire, CHECK, checkBytes(request()), key("dev"));
        const o = outcome(seen);
        expect(o.code).toBe(code);
        if (field) expect(o.field).toBe(field);
        if (code === "0") expect(seen.body.length).toBeGreaterThan(20);
      });

      it("Check answers allowed with the fast path's bytes (and a denial is a denial)", async () => {
        // the two paths agreeing is not enough: the answer itself must be right
        const allowed = await same(wire, CHECK, checkBytes({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team }), key("dev"));
        const denied = await same(wire, CHECK, checkBytes({ identityId: ids.bob, permission: "doc.read", nodeId: ids.team }), key("dev"));
        const strip = (x: Seen) => (wire === "grpc" ? Buffer.from(x.body, "hex").subarray(5) : Buffer.from(x.body, "hex"));
        const { fromBinary } = await import("@bufbuild/protobuf");
        const { CheckResponseSchema, DenialReason } = await import("../../src/gen/canopy/v1/check_pb.js");
        expect(fromBinary(CheckResponseSchema, strip(allowed))).toMatchObject({ allowed: true, identityId: ids.alice, effectiveNodeId: ids.team, revision });
        expect(fromBinary(CheckResponseSchema, strip(denied))).toMatchObject({ allowed: false, denialReason: DenialReason.NO_ASSIGNMENT });
      });

      it("auth: missing key, bad key, Bearer key, key without the check scope", async () => {
        const req = checkBytes({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team });
        expect(outcome(await same(wire, CHECK, req, {}))).toMatchObject({ code: "16", reason: "auth.missing_api_key" });
        expect(outcome(await same(wire, CHECK, req, { "x-api-key": "cnpy_not-a-key" }))).toMatchObject({ code: "16", message: "invalid API key" });
        expect(outcome(await same(wire, CHECK, req, { authorization: `Bearer ${keys.dev}` })).code).toBe("0");
        const o = outcome(await same(wire, CHECK, req, key("readOnly")));
        expect(o.code).toBe("7");
        expect(o.message).toContain('"check"');
      });

      it("admin key: without canopy-environment, with it, with another environment key's header, with min_revision", async () => {
        const req = { identityId: ids.hank, permission: "doc.read", nodeId: ids.team };
        expect(outcome(await same(wire, CHECK, checkBytes(req), key("admin"))).code).toBe("7");
        const withEnv = await same(wire, CHECK, checkBytes({ ...req, explain: true }), key("admin", envId));
        expect(outcome(withEnv).code).toBe("0"); // NO_MEMBERSHIP for an admin key
        expect(outcome(await same(wire, CHECK, checkBytes(req), key("admin", "no-such-environment"))).code).toBe("7");
        expect(outcome(await same(wire, CHECK, checkBytes(req), key("dev", "another-environment"))).code).toBe("7");
        const o = outcome(await same(wire, CHECK, checkBytes({ ...req, minRevision: 1n }), key("admin")));
        expect(o).toMatchObject({ code: "3", field: "min_revision" });
      });

      it("min_revision ahead of the server waits, then UNAVAILABLE; a deadline cuts the wait short the same way", async () => {
        const req = checkBytes({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team, minRevision: revision + 1000n });
        const o = outcome(await same(wire, CHECK, req, key("dev")));
        expect(o).toMatchObject({ code: "14", reason: "consistency.behind" });
        const deadline: Record<string, string> = wire === "grpc" ? { "grpc-timeout": "20m" } : { "connect-timeout-ms": "20" };
        expect(outcome(await same(wire, CHECK, req, { ...key("dev"), ...deadline }))).toMatchObject({ code: "14" });
        const expired: Record<string, string> = wire === "grpc" ? { "grpc-timeout": "0n" } : { "connect-timeout-ms": "0" };
        expect(outcome(await same(wire, CHECK, req, { ...key("dev"), ...expired }))).toMatchObject({ code: "14" });
        // a deadline that does not matter
        expect(outcome(await same(wire, BULK, bulkBytes({ items: [{ identityId: ids.alice, permission: "doc.read", nodeId: ids.team }] }), { ...key("dev"), ...deadline })).code).toBe("0");
      });

      it("body limits and malformed bodies fail like Connect", async () => {
        const huge = checkBytes({ identityId: "x".repeat(3000), permission: "doc.read", nodeId: ids.team });
        expect(outcome(await same(wire, CHECK, huge, key("dev")))).toMatchObject({ code: "8" });
        const bad = Uint8Array.from([0x0a, 0x50, 0x01]);
        expect(outcome(await same(wire, CHECK, bad, key("dev")))).toMatchObject({ code: "13", message: "parse binary: premature EOF" });
        // a malformed body is reported before a bad key, as Connect reads the message before auth runs
        expect(outcome(await same(wire, BULK, Uint8Array.from([0x0a, 0x05, 0xff]), { "x-api-key": "cnpy_bad" })).code).toBe("13");
        // an empty message: no identity_id
        expect(outcome(await same(wire, CHECK, new Uint8Array(0), key("dev")))).toMatchObject({ code: "3", field: "identity_id" });
      });

      it("CheckBulk: answers, over the item limit, an item error naming items[i].field", async () => {
        const items = [
          { identityId: ids.alice, permission: "doc.read", nodeId: ids.team },
          { identityId: ids.bob, permission: "doc.read", nodeId: ids.region },
          { identityId: ids.alice, permission: "doc.write", scope: CheckScope.APP_WIDE },
          { identityId: "ghost-👻", permission: "doc.read", nodeId: ids.root },
        ];
        expect(outcome(await same(wire, BULK, bulkBytes({ items, explain: true, at: timestampFromMs(T0 + 5) }), key("dev"))).code).toBe("0");
        expect(outcome(await same(wire, BULK, bulkBytes({ items }), key("admin", envId))).code).toBe("0");
        const over = outcome(await same(wire, BULK, bulkBytes({ items: [...items, ...items] }), key("dev")));
        expect(over).toMatchObject({ code: "8", field: "items", reason: "limit.exceeded" });
        const bad = outcome(await same(wire, BULK, bulkBytes({ items: [items[0], items[1], { permission: "doc.read", nodeId: ids.team }] }), key("dev")));
        expect(bad).toMatchObject({ code: "3", field: "items[2].identity_id" });
        const scope = outcome(await same(wire, BULK, bulkBytes({ items: [items[0], { ...items[1], scope: 9 as CheckScope }] }), key("dev")));
        expect(scope).toMatchObject({ code: "3", field: "items[1].scope" });
        const future = outcome(await same(wire, BULK, bulkBytes({ items, minRevision: revision + 5n }), key("dev")));
        expect(future).toMatchObject({ code: "14", reason: "consistency.behind" });
      });

      it("x-request-id: a sane one is echoed (header on success, error metadata on failure), a key-like or odd one replaced, none for body errors", async () => {
        const req = checkBytes({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team });
        const where = (x: Seen) => ({ header: x.headers["x-request-id"], trailer: x.trailers["x-request-id"] });
        const ok = await same(wire, CHECK, req, { ...key("dev"), "x-request-id": "req-42.a:b" });
        expect(where(ok)).toEqual({ header: "req-42.a:b", trailer: undefined });
        const denied = await same(wire, CHECK, req, { "x-api-key": "cnpy_not-a-key", "x-request-id": "req-43" });
        expect(where(denied)).toEqual(wire === "grpc" ? { header: undefined, trailer: "req-43" } : { header: "req-43", trailer: undefined });
        const body = await same(wire, CHECK, Uint8Array.from([0x0a, 0x50, 0x01]), { ...key("dev"), "x-request-id": "req-44" });
        expect(where(body)).toEqual({ header: undefined, trailer: undefined });
        // never echo (or log) something shaped like an API key, nor an id with spaces
        const keyLike = await send(s.url, wire, CHECK, req, { ...key("dev"), "x-request-id": keys.dev });
        expect(where(keyLike).header).toMatch(/^[0-9a-f]{16}$/);
        const spaced = await send(s.url, wire, CHECK, req, { ...key("dev"), "x-request-id": "a b" });
        expect(where(spaced).header).toMatch(/^[0-9a-f]{16}$/);
      });

      it("the bench echo", async () => {
        const echo = toBinary(EchoRequestSchema, create(EchoRequestSchema, { payload: Uint8Array.from([0, 1, 2, 250, 255]) }));
        expect(outcome(await same(wire, "/canopy.bench.v1.EchoService/Echo", echo)).code).toBe("0");
      });
    });
  }

  it("gRPC envelopes: none, two, compressed flag, incomplete, second one too large", async () => {
    const one = frame(checkBytes({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team }));
    const cases: Array<[Buffer, string]> = [
      [Buffer.alloc(0), "12"],
      [Buffer.concat([one, one]), "12"],
      [Buffer.concat([Buffer.from([1]), one.subarray(1)]), "13"],
      [one.subarray(0, one.length - 2), "3"],
      [Buffer.concat([one, one.subarray(0, 3)]), "3"],
      [Buffer.concat([one, Buffer.from([0, 0, 0, 0x10, 0])]), "8"],
      [Buffer.concat([one, Buffer.from([0, 0, 0, 0, 3, 0x0a, 0x05, 0xff])]), "13"],
    ];
    for (const [body, code] of cases) expect(outcome(await same("grpc", CHECK, new Uint8Array(0), key("dev"), body)).code).toBe(code);
  });

  it("Connect unary with content-length over the limit", async () => {
    const body = Buffer.alloc(3000, 0);
    const o = outcome(await same("connect-h1", CHECK, new Uint8Array(0), key("dev"), body));
    expect(o).toMatchObject({ code: "8", message: "message size 3000 is larger than configured readMaxBytes 2048" });
  });

  it("falls through to the Connect adapter for JSON, compressed requests, GET, odd headers and other methods", async () => {
    const before = s.app.fastPathCalls();
    const json = await h2(s.url, CHECK, { "content-type": "application/json", ...key("dev") }, Buffer.from(JSON.stringify({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team })));
    expect(JSON.parse(Buffer.from(json.body, "hex").toString())).toMatchObject({ allowed: true });
    const gz = await h2(s.url, CHECK, { "content-type": "application/grpc", te: "trailers", "grpc-encoding": "snappy", ...key("dev") }, frame(checkBytes({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team })));
    expect(gz.trailers["grpc-status"]).toBe("12");
    const badTimeout = await h2(s.url, CHECK, { "content-type": "application/grpc", te: "trailers", "grpc-timeout": "soon", ...key("dev") }, frame(checkBytes({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team })));
    expect(badTimeout.trailers["grpc-status"]).toBe("3");
    const web = await h2(s.url, CHECK, { "content-type": "application/grpc-web+proto", ...key("dev") }, frame(checkBytes({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team })));
    expect(web.status).toBe(200);
    const other = await h2(s.url, "/canopy.v1.HierarchyService/GetHierarchySchema", { "content-type": "application/grpc", te: "trailers", ...key("dev") }, frame(new Uint8Array(0)));
    expect(other.trailers["grpc-status"]).toBe("0");
    expect(s.app.fastPathCalls()).toBe(before);
  });

  it("a client that cancels while its call waits for min_revision leaves the server answering", async () => {
    const before = s.app.fastPathCalls();
    const req = frame(checkBytes({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team, minRevision: revision + 1000n }));
    await Promise.all([1, 2, 3].map(() => h2(s.url, CHECK, { "content-type": "application/grpc", te: "trailers", ...key("dev") }, req, true)));
    const after = await send(s.url, "grpc", CHECK, checkBytes({ identityId: ids.alice, permission: "doc.read", nodeId: ids.team }), key("dev"));
    expect(outcome(after).code).toBe("0");
    expect(s.app.fastPathCalls()).toBeGreaterThanOrEqual(before + 1);
  });

  it("grpc-js with proto-loader: Check and CheckBulk over the fast path, errors with metadata", async () => {
    const g: GrpcJsClients = grpcJsClients(s.port, keys.dev);
    try {
      const before = s.app.fastPathCalls();
      const res = await g.call("CheckService", "Check", { identity_id: ids.alice, permission: "doc.read", node_id: ids.team, explain: true });
      expect(res).toMatchObject({ allowed: true, identity_id: ids.alice, effective_node_id: ids.team, revision: String(revision), scope: "CHECK_SCOPE_NODE" });
      expect(res.granting_roles.map((r: { role_name: string }) => r.role_name)).toEqual(["viewer"]);
      expect(res.explanation).toHaveLength(1);
      expect(res.explanation[0]).toMatchObject({ node_id: ids.region, inherited: true });
      expect(msOfTs(res.explanation[0].effective_to)).toBe(T0 + 365 * 86_400_000);
      expect(msOfTs(res.at)).toBe(s.clock.now());
      const bulk = await g.call("CheckService", "CheckBulk", {
        items: [
          { identity_id: ids.alice, permission: "doc.read", node_id: ids.team },
          { identity_id: ids.carol, permission: "doc.read", node_id: ids.team },
        ],
      });
      expect(bulk.results.map((r: { allowed: boolean; denial_reason: string }) => [r.allowed, r.denial_reason])).toEqual([
        [true, "DENIAL_REASON_UNSPECIFIED"],
        [false, "DENIAL_REASON_ONLY_SCHEDULED"],
      ]);
      const err = await g.fail("CheckService", "CheckBulk", { items: [{ identity_id: ids.alice, permission: "doc.read", node_id: ids.team }, { permission: "doc.read" }] });
      expect(err.code).toBe(3);
      // grpc-js decodes grpc-message with decodeURI, which leaves Connect's %3A for ":" alone
      expect(decodeURIComponent(err.details)).toBe("items[1].identity_id: is required");
      expect(err.metadata.get("canopy-error-field")).toEqual(["items[1].identity_id"]);
      expect(s.app.fastPathCalls()).toBe(before + 3);
    } finally {
      g.close();
    }
    const bad = grpcJsClients(s.port, "cnpy_wrong");
    try {
      const err = await bad.fail("CheckService", "Check", { identity_id: ids.alice, permission: "doc.read", node_id: ids.team });
      expect(err.code).toBe(16);
      expect(err.metadata.get("canopy-error-reason")).toEqual(["auth.invalid_api_key"]);
    } finally {
      bad.close();
    }
  });
});
