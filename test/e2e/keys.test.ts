/**
 * API keys end to end: authentication (missing, wrong, bearer), revocation, expiry against the
 * manual clock, scopes, listings without secrets, and no secret ever stored in plain text (every
 * text/blob column of every table is scanned on both backends; on SQLite also the raw file and its WAL).
 */
import { createHash, randomBytes } from "node:crypto";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queryRows, scanForStrings } from "./db.js";
import { backendReady, startTestServer, T0, type Clients, type TestServer } from "./harness.js";
import { grpcJsClients } from "./grpc-js-client.js";
import { AdminService } from "../../src/gen/canopy/v1/admin_pb.js";
import { CatalogService } from "../../src/gen/canopy/v1/catalog_pb.js";
import { CheckService } from "../../src/gen/canopy/v1/check_pb.js";
import { HierarchyService } from "../../src/gen/canopy/v1/hierarchy_pb.js";
import { failure } from "../support/errors.js";

/** False on a PostgreSQL run whose server is down (locally: skip; under CI=true backendReady throws). */
const ready = await backendReady();

const dump = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x));
const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");


describe.skipIf(!ready)("API keys", () => {
  let s: TestServer;
  let admin: Clients;
  let dev: Clients;
  let envId: string;
  let rootId: string;
  let nodeId: string;
  let roleId: string;
  let identityId: string;
  /** every secret seen in this file, to be scanned for in the database */
  const secrets: string[] = [];

  /** Clients with custom headers (or none at all), over HTTP/2. */
  function rawClients(headers: Record<string, string>) {
    const set: Interceptor = (next) => (req) => {
      for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
      return next(req);
    };
    const transport = createConnectTransport({ baseUrl: s.url, httpVersion: "2", interceptors: [set] });
    return {
      check: createClient(CheckService, transport),
      catalog: createClient(CatalogService, transport),
      hierarchy: createClient(HierarchyService, transport),
      admin: createClient(AdminService, transport),
    };
  }

  async function newKey(name: string, opts: { scopes?: string[]; expireMs?: number } = {}) {
    const res = await admin.admin.createApiKey({
      name,
      environmentId: envId,
      scopes: opts.scopes ?? [],
      expireTime: opts.expireMs === undefined ? undefined : timestampFromMs(opts.expireMs),
    });
    secrets.push(res.secret);
    return res;
  }

  beforeAll(async () => {
    s = await startTestServer();
    secrets.push(s.adminKey, s.devKey);
    admin = s.clients(s.adminKey, { protocol: "connect-h2" });
    dev = s.clients(s.devKey, { protocol: "connect-h2" });
    const schema = await dev.hierarchy.getHierarchySchema({});
    rootId = schema.rootNodeId;
    envId = (await admin.admin.listEnvironments({})).environments.find((e) => e.rootNodeId === rootId)!.id;
    await dev.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }] });
    roleId = (await dev.catalog.createRole({ name: "viewer", permissionKeys: ["doc.read"] })).role!.id;
    nodeId = (await dev.hierarchy.createNode({ parentId: rootId, type: "team", name: "t" })).node!.id;
    identityId = (await dev.identities.createIdentity({ identity: { email: "kim@example.com" } })).identity!.id;
    await dev.assignments.createAssignment({ assignment: { identityId, roleId, nodeId } });
  });

  afterAll(async () => {
    await s?.close();
  });

  describe("authentication", () => {
    it("no key at all → UNAUTHENTICATED (Connect and gRPC)", async () => {
      const none = rawClients({});
      for (const call of [
        () => none.check.check({ identityId, permission: "doc.read", nodeId }),
        () => none.catalog.listRoles({}),
        () => none.admin.listApiKeys({}),
      ]) {
        expect((await failure(call())).code).toBe(Code.Unauthenticated);
      }
      const g = grpcJsClients(s.port, undefined);
      try {
        const err = await g.fail("CheckService", "Check", { identity_id: identityId, permission: "doc.read", node_id: nodeId });
        expect(err.code).toBe(16);
      } finally {
        g.close();
      }
    });

    it("a wrong key → UNAUTHENTICATED", async () => {
      const tampered = s.devKey.slice(0, -1) + (s.devKey.endsWith("A") ? "B" : "A");
      for (const key of [`cnpy_${randomBytes(32).toString("base64url")}`, "not-a-key", tampered, `${s.devKey}x`, s.devKey.slice(0, 12)]) {
        const c = rawClients({ "x-api-key": key });
        const err = await failure(c.check.check({ identityId, permission: "doc.read", nodeId }));
        expect(err.code, key).toBe(Code.Unauthenticated);
        expect(err.message).not.toContain(s.devKey);
      }
      const bearer = rawClients({ authorization: `Bearer cnpy_${randomBytes(32).toString("base64url")}` });
      expect((await failure(bearer.catalog.listRoles({}))).code).toBe(Code.Unauthenticated);
    });

    it("authorization: Bearer <key> works like x-api-key", async () => {
      for (const header of [`Bearer ${s.devKey}`, `bearer ${s.devKey}`]) {
        const c = rawClients({ authorization: header });
        const res = await c.check.check({ identityId, permission: "doc.read", nodeId });
        expect(res.allowed).toBe(true);
        const roles = await c.catalog.listRoles({});
        expect(roles.roles.map((r) => r.id)).toEqual([roleId]);
      }
      const adminBearer = rawClients({ authorization: `Bearer ${s.adminKey}` });
      expect((await adminBearer.admin.listEnvironments({})).environments.map((e) => e.id)).toContain(envId);
    });

    it("a created environment key works until it is revoked, then UNAUTHENTICATED", async () => {
      const created = await newKey("billing-service");
      expect(created.secret.startsWith("cnpy_")).toBe(true);
      expect(created.apiKey?.environmentId).toBe(envId);
      const c = s.clients(created.secret, { protocol: "connect-h2" });
      const ok = await c.check.check({ identityId, permission: "doc.read", nodeId });
      expect(ok.allowed).toBe(true);
      expect((await c.catalog.listRoles({})).roles).toHaveLength(1);

      const revoked = await admin.admin.revokeApiKey({ id: created.apiKey!.id });
      expect(revoked.apiKey?.id).toBe(created.apiKey!.id);
      expect(revoked.apiKey?.revokeTime).toBeDefined();
      expect(timestampDate(revoked.apiKey!.revokeTime!).getTime()).toBe(T0);

      expect((await failure(c.check.check({ identityId, permission: "doc.read", nodeId }))).code).toBe(Code.Unauthenticated);
      expect((await failure(c.catalog.listRoles({}))).code).toBe(Code.Unauthenticated);
      // over gRPC too
      const g = grpcJsClients(s.port, created.secret);
      try {
        expect((await g.fail("CatalogService", "ListRoles", {})).code).toBe(16);
      } finally {
        g.close();
      }
      const listed = await admin.admin.listApiKeys({ environmentId: envId });
      const entry = listed.apiKeys.find((k) => k.id === created.apiKey!.id)!;
      expect(entry.revokeTime).toBeDefined();
      // other keys are unaffected
      expect((await dev.check.check({ identityId, permission: "doc.read", nodeId })).allowed).toBe(true);
    });

    it("a key with expire_time = T0+60s works until the clock reaches T0+60s, then UNAUTHENTICATED", async () => {
      const created = await newKey("short-lived", { expireMs: T0 + 60_000 });
      expect(timestampDate(created.apiKey!.expireTime!).getTime()).toBe(T0 + 60_000);
      const c = s.clients(created.secret, { protocol: "connect-h2" });
      try {
        s.clock.set(T0);
        expect((await c.check.check({ identityId, permission: "doc.read", nodeId })).allowed).toBe(true);
        s.clock.set(T0 + 59_999);
        expect((await c.check.check({ identityId, permission: "doc.read", nodeId })).allowed).toBe(true);
        s.clock.set(T0 + 60_000);
        expect((await failure(c.check.check({ identityId, permission: "doc.read", nodeId }))).code).toBe(Code.Unauthenticated);
        s.clock.set(T0 + 3_600_000);
        expect((await failure(c.catalog.listRoles({}))).code).toBe(Code.Unauthenticated);
        // the never-expiring bootstrap key still works at that time
        expect((await dev.check.check({ identityId, permission: "doc.read", nodeId })).allowed).toBe(true);
      } finally {
        s.clock.set(T0);
      }
    });

    it("an expire_time in the past is INVALID_ARGUMENT", async () => {
      const err = await failure(admin.admin.createApiKey({ name: "stale", environmentId: envId, expireTime: timestampFromMs(T0 - 1) }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.message).toContain("expire_time");
    });
  });

  describe("scopes", () => {
    it('a key scoped to ["check"] can Check but not write or read', async () => {
      const created = await newKey("checker", { scopes: ["check"] });
      expect(created.apiKey?.scopes).toEqual(["check"]);
      const c = s.clients(created.secret, { protocol: "connect-h2" });
      const res = await c.check.check({ identityId, permission: "doc.read", nodeId });
      expect(res.allowed).toBe(true);
      const bulk = await c.check.checkBulk({ items: [{ identityId, permission: "doc.read", nodeId }, { identityId, permission: "doc.read", nodeId: rootId }] });
      expect(bulk.results.map((r) => r.allowed)).toEqual([true, false]);
      expect((await failure(c.assignments.createAssignment({ assignment: { identityId, roleId, nodeId: rootId } }))).code).toBe(Code.PermissionDenied);
      expect((await failure(c.catalog.listRoles({}))).code).toBe(Code.PermissionDenied);
      expect((await failure(c.hierarchy.getHierarchySchema({}))).code).toBe(Code.PermissionDenied);
      expect((await failure(c.admin.listApiKeys({}))).code).toBe(Code.PermissionDenied);
      // nothing was written by the refused write
      const list = await dev.assignments.listAssignments({ identityId });
      expect(list.assignments.map((a) => a.nodeId)).toEqual([nodeId]);
    });

    it('a key scoped to ["read"] can list and get but not write (nor check)', async () => {
      const created = await newKey("reader", { scopes: ["read"] });
      const c = s.clients(created.secret, { protocol: "connect-h2" });
      expect((await c.catalog.listRoles({})).roles.map((r) => r.id)).toEqual([roleId]);
      expect((await c.catalog.listPermissions({})).permissions.map((p) => p.key)).toEqual(["doc.read"]);
      expect((await c.hierarchy.getNode({ id: nodeId })).node?.name).toBe("t");
      expect((await c.hierarchy.getHierarchySchema({})).rootNodeId).toBe(rootId);
      expect((await c.assignments.listAssignments({})).assignments).toHaveLength(1);
      expect((await c.identities.getIdentity({ id: identityId })).identity?.email).toBe("kim@example.com");

      const writes: Array<[string, () => Promise<unknown>]> = [
        ["CreateRole", () => c.catalog.createRole({ name: "sneaky", permissionKeys: ["doc.read"] })],
        ["BatchCreatePermissions", () => c.catalog.batchCreatePermissions({ permissions: [{ key: "doc.write" }] })],
        ["CreateNode", () => c.hierarchy.createNode({ parentId: rootId, type: "team", name: "sneaky" })],
        ["CreateAssignment", () => c.assignments.createAssignment({ assignment: { identityId, roleId, nodeId: rootId } })],
        ["CreateIdentity", () => c.identities.createIdentity({ identity: { email: "sneaky@example.com" } })],
        ["BatchCreateIdentities", () => c.identities.batchCreateIdentities({ identities: [{ email: "sneaky2@example.com" }] })],
        ["DeactivateIdentity", () => c.identities.deactivateIdentity({ id: identityId })],
        ["Check", () => c.check.check({ identityId, permission: "doc.read", nodeId })],
      ];
      for (const [name, call] of writes) expect((await failure(call())).code, name).toBe(Code.PermissionDenied);
      // nothing changed
      expect((await dev.catalog.listRoles({})).roles).toHaveLength(1);
      expect((await dev.catalog.listPermissions({})).permissions).toHaveLength(1);
      expect((await dev.hierarchy.listChildren({ id: rootId })).nodes).toHaveLength(1);
      expect((await dev.identities.getIdentity({ id: identityId })).identity?.isActive).toBe(true);
      expect((await dev.identities.listIdentities({})).identities.map((i) => i.email)).toEqual(["kim@example.com"]);
    });

    it("unknown scopes and admin scopes on environment keys are INVALID_ARGUMENT", async () => {
      const unknown = await failure(admin.admin.createApiKey({ name: "x", environmentId: envId, scopes: ["check", "superuser"] }));
      expect(unknown.code).toBe(Code.InvalidArgument);
      expect(unknown.message).toContain("scopes[1]");
      const adminScope = await failure(admin.admin.createApiKey({ name: "x", environmentId: envId, scopes: ["admin"] }));
      expect(adminScope.code).toBe(Code.InvalidArgument);
    });
  });

  describe("secrets", () => {
    it("ListApiKeys never returns a secret; prefix is the secret's first 12 characters", async () => {
      const extra = await newKey("listed");
      const adminKey = await admin.admin.createApiKey({ name: "second admin" });
      secrets.push(adminKey.secret);
      expect(adminKey.apiKey?.environmentId).toBe("");
      expect(dump(adminKey.apiKey)).not.toContain(adminKey.secret);

      for (const listing of [await admin.admin.listApiKeys({}), await admin.admin.listApiKeys({ environmentId: envId })]) {
        const text = dump(listing);
        for (const secret of secrets) {
          expect(text).not.toContain(secret);
          expect(text).not.toContain(secret.slice("cnpy_".length));
        }
        for (const k of listing.apiKeys) for (const v of Object.values(k)) if (typeof v === "string") expect(v.length).toBeLessThan(43);
      }
      const all = await admin.admin.listApiKeys({});
      const byId = new Map(all.apiKeys.map((k) => [k.id, k]));
      expect(byId.get(extra.apiKey!.id)?.prefix).toBe(extra.secret.slice(0, 12));
      expect(byId.get(adminKey.apiKey!.id)?.prefix).toBe(adminKey.secret.slice(0, 12));
      expect(extra.apiKey?.prefix).toBe(extra.secret.slice(0, 12));
      // every listed prefix belongs to one of the secrets seen here (bootstrap keys included)
      for (const k of all.apiKeys) expect(secrets.map((x) => x.slice(0, 12))).toContain(k.prefix);
      expect(all.apiKeys.length).toBe(secrets.length);
      // the environment filter lists only that environment's keys
      const envKeys = await admin.admin.listApiKeys({ environmentId: envId });
      expect(envKeys.apiKeys.every((k) => k.environmentId === envId)).toBe(true);
      expect(envKeys.apiKeys.map((k) => k.id)).not.toContain(adminKey.apiKey!.id);
    });

    it("no key is stored in plain text: every text/blob column (and on SQLite the database file and its WAL) is free of secrets", async () => {
      // use the bootstrap keys (and every created key that still works) once more right before scanning
      expect((await dev.check.check({ identityId, permission: "doc.read", nodeId })).allowed).toBe(true);
      expect((await admin.admin.listApiKeys({})).apiKeys.length).toBeGreaterThanOrEqual(secrets.length);
      expect(secrets.length).toBeGreaterThanOrEqual(8);

      const needles = secrets.flatMap((secret) => [secret, secret.slice("cnpy_".length)]);
      const scan = await scanForStrings(s, needles);
      expect(scan.tables).toEqual(expect.arrayContaining(["api_keys", "assignments", "identities", "environments"]));
      expect(scan.hits, "a column contains a secret").toEqual([]);
      expect(scan.scannedValues).toBeGreaterThan(50);
      // the scan sees the keys: each secret's sha256 hex is in api_keys.key_hash …
      const hashes = new Set((await queryRows<{ key_hash: string }>(s, "select key_hash from api_keys")).map((r) => r.key_hash));
      for (const secret of secrets) expect(hashes.has(sha256(secret)), `hash of ${secret.slice(0, 12)}…`).toBe(true);
      // … and the same scan finds them (proves it looks at real data)
      const hashScan = await scanForStrings(s, secrets.map(sha256));
      for (const secret of secrets) {
        expect(hashScan.hits.some((h) => h.where === "api_keys.key_hash" && h.needle === sha256(secret)), `scan finds hash of ${secret.slice(0, 12)}…`).toBe(true);
      }

      if (s.backend === "sqlite") {
        // raw bytes: the main file and the WAL (recent pages may only be there)
        expect(scan.files).toContain(s.databaseFile);
        expect(scan.fileHits, "raw database bytes contain a secret").toEqual([]);
        // …while the hashes are visible in those same bytes (proves the raw scan looks at real data)
        expect(hashScan.files).toEqual(scan.files);
        for (const secret of secrets) expect(hashScan.fileHits.some((h) => h.needle === sha256(secret)), `raw bytes hold hash of ${secret.slice(0, 12)}…`).toBe(true);
      }
    });
  });
});
