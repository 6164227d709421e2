/**
 * The `canopy` CLI as users run it: `node dist/src/cli.js …` (built by `npm test`'s pretest) in a child
 * process against a real in-process server. Keys create/list/revoke round trip, check exit codes 0/3/1,
 * export → import into another environment → export again, import progress and re-runs, migrate on a
 * fresh database, and `canopy serve` itself.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendReady, BACKEND, startTestServer, T0, type Clients, type TestServer } from "./harness.js";
import { AccessModel } from "../../src/gen/canopy/v1/common_pb.js";
import { CheckService } from "../../src/gen/canopy/v1/check_pb.js";
import { failure } from "../support/errors.js";
import { freshSchema } from "../support/postgres.js";
import type { ExportFile } from "../../src/cli/export-format.js";

/** False on a PostgreSQL run whose server is down (locally: skip; under CI=true backendReady throws). */
const ready = await backendReady();

const CLI = resolve(__dirname, "../../dist/src/cli.js");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI asynchronously (the server under test lives in this process and must keep answering).
 * CANOPY_* variables of the test process are not passed on, so each test states what the CLI gets.
 */
function cli(args: string[], env: Record<string, string> = {}, stdin?: string): Promise<Run> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CANOPY_")));
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...clean, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => done({ code, stdout, stderr }));
    child.stdin.end(stdin ?? "");
  });
}

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "canopy-cli-"));
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Rows of a query on the database a migrate test created (its own short-lived connection). */
async function rows(url: string, text: string): Promise<Array<Record<string, unknown>>> {
  if (url.startsWith("sqlite:")) {
    const db = new Database(url.slice("sqlite:".length), { readonly: true });
    try {
      return db.prepare(text).all() as Array<Record<string, unknown>>;
    } finally {
      db.close();
    }
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows;
  } finally {
    await client.end();
  }
}

/** Ids replaced by positions so that two copies of one configuration compare equal. */
function structure(file: ExportFile) {
  const nodeIndex = new Map(file.nodes.map((n, i) => [n.id, i]));
  const roleName = new Map(file.roles.map((r) => [r.id, r.name]));
  const email = new Map((file.identities ?? []).map((x) => [x.id, x.email]));
  return {
    accessModel: file.accessModel,
    hierarchySchema: file.hierarchySchema,
    counts: file.counts,
    permissions: file.permissions,
    roles: file.roles.map(({ id: _id, ...r }) => r),
    nodes: file.nodes.map(({ id: _id, parentId, ...n }) => ({ ...n, parent: parentId === null ? null : nodeIndex.get(parentId) })),
    identities: (file.identities ?? []).map((x) => x.email).sort(),
    assignments: (file.assignments ?? []).map((a) => ({
      identity: email.get(a.identityId),
      role: roleName.get(a.roleId),
      node: nodeIndex.get(a.nodeId),
      effectiveFrom: a.effectiveFrom,
      effectiveTo: a.effectiveTo,
    })),
  };
}

describe.skipIf(!ready)(`canopy CLI (${BACKEND})`, () => {
  let s: TestServer;
  let admin: Clients;
  let dev: Clients;
  /** env for commands run with the admin key / the development key */
  let asAdmin: Record<string, string>;
  let asDev: Record<string, string>;
  let applicationId: string;

  beforeAll(async () => {
    s = await startTestServer();
    admin = s.clients(s.adminKey);
    dev = s.clients(s.devKey);
    asAdmin = { CANOPY_URL: s.url, CANOPY_ADMIN_KEY: s.adminKey };
    asDev = { CANOPY_URL: s.url, CANOPY_KEY: s.devKey };
    applicationId = (await admin.admin.listApplications({})).applications[0].id;
  });
  afterAll(async () => {
    await s?.close();
  });

  it("keys create, list and revoke: the created key works, the revoked key is refused", async () => {
    const created = await cli(["keys", "create", "--environment", "development", "--name", "cli round trip", "--scope", "check", "--scope", "read", "--json"], asAdmin);
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    const key = JSON.parse(created.stdout) as { id: string; secret: string; scopes: string[]; environment: string; status: string; expireTime: string | null };
    expect(key.secret).toMatch(/^cnpy_[A-Za-z0-9_-]{43}$/);
    expect(key.scopes).toEqual(["check", "read"]);
    expect(key.environment).toBe("default/development");
    expect(key.status).toBe("active");
    expect(key.expireTime).toBeNull();

    // the secret works for its scopes, and only for them
    const root = (await dev.hierarchy.getHierarchySchema({})).rootNodeId;
    const withKey = s.clients(key.secret);
    expect((await withKey.hierarchy.getHierarchySchema({})).rootNodeId).toBe(root);
    expect((await failure(withKey.catalog.batchCreatePermissions({ permissions: [{ key: "x.y" }] }))).code).toBe(Code.PermissionDenied);

    // human output: the secret once, on a line of its own
    const production = (await admin.admin.listEnvironments({})).environments.find((e) => e.name === "production")!;
    const human = await cli(["keys", "create", "--environment", production.id, "--name", "human", "--expires", "2031-01-01T00:00:00Z"], asAdmin);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^Created API key [0-9a-f-]{36} "human" for environment production \(/);
    expect(human.stdout).toContain("expires: 2031-01-01T00:00:00.000Z");
    expect(human.stdout.split("\n")).toContainEqual(expect.stringMatching(/^cnpy_[A-Za-z0-9_-]{43}$/));

    const listed = await cli(["keys", "list", "--json"], asAdmin);
    expect(listed.code).toBe(0);
    const keys = JSON.parse(listed.stdout) as Array<{ id: string; name: string; status: string; environment: string | null; scopes: string[] }>;
    expect(keys.map((k) => k.name)).toEqual(["bootstrap admin key", "bootstrap development key", "cli round trip", "human"]);
    expect(keys.find((k) => k.id === key.id)).toMatchObject({ status: "active", environment: "default/development", scopes: ["check", "read"] });
    expect(listed.stdout).not.toContain(key.secret);

    const table = await cli(["keys", "list", "--environment", "development"], asAdmin);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+NAME\s+ENVIRONMENT\s+SCOPES\s+PREFIX\s+STATUS\s+CREATED\s+EXPIRES$/);
    expect(lines.slice(1).map((l) => l.split(/\s{2,}/)[0])).toEqual([keys[1].id, key.id]);
    expect(lines[2]).toMatch(/cli round trip\s+default\/development\s+check,read\s+cnpy_\S+\s+active/);

    const revoked = await cli(["keys", "revoke", key.id], asAdmin);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`^Revoked API key ${key.id} "cli round trip" at \\d{4}-`));
    expect((await failure(withKey.hierarchy.getHierarchySchema({}))).code).toBe(Code.Unauthenticated);
    const after = JSON.parse((await cli(["keys", "list", "--json", "--environment", "development"], asAdmin)).stdout) as typeof keys;
    expect(after.find((k) => k.id === key.id)!.status).toBe("revoked");

    // the CLI reports the refusal of a revoked key as an error
    const refused = await cli(["check", "--key", key.secret, "--identity", "x", "--permission", "a.b", "--node", root], { CANOPY_URL: s.url });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^canopy check: UNAUTHENTICATED: .*reason auth\.api_key_revoked/);

    // server-side refusals and unknown ids exit 1 with the server's message
    const unknownScope = await cli(["keys", "create", "--environment", "development", "--name", "x", "--scope", "admin"], asAdmin);
    expect(unknownScope.code).toBe(1);
    expect(unknownScope.stderr).toContain("INVALID_ARGUMENT");
    expect(unknownScope.stderr).toContain("scopes[0]");
    const unknownEnv = await cli(["keys", "create", "--environment", "nowhere", "--name", "x"], asAdmin);
    expect(unknownEnv.code).toBe(1);
    expect(unknownEnv.stderr).toBe('canopy keys create: no environment "nowhere" (give an environment id, a name, or application/name)\n');
    const unknownKey = await cli(["keys", "revoke", "00000000-0000-7000-8000-000000000000"], asAdmin);
    expect(unknownKey.code).toBe(1);
    expect(unknownKey.stderr).toMatch(/^canopy keys revoke: NOT_FOUND: .*00000000-0000-7000-8000-000000000000/);
  });

  it("check exits 0 when allowed, 3 when denied and 1 on errors, printing the decision and reason", async () => {
    await dev.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }, { key: "doc.write" }] });
    const role = (await dev.catalog.createRole({ name: "doc-reader", permissionKeys: ["doc.read"] })).role!;
    const root = (await dev.hierarchy.getHierarchySchema({})).rootNodeId;
    const node = (await dev.hierarchy.createNode({ parentId: root, type: "team", name: "Docs" })).node!;
    const ada = (await dev.identities.createIdentity({ identity: { email: "ada-check@example.com" } })).identity!;
    const assignment = (await dev.assignments.createAssignment({ assignment: { identityId: ada.id, roleId: role.id, nodeId: root, effectiveTo: timestampFromMs(T0 + 86_400_000) } })).assignment!;
    const base = ["check", "--identity", ada.id, "--node", node.id];

    const allowed = await cli([...base, "--permission", "doc.read", "--explain"], asDev);
    expect(allowed.code).toBe(0);
    const [line, explained] = allowed.stdout.trimEnd().split("\n");
    expect(line).toBe(`allowed: ${ada.id} may doc.read at node ${node.id} at 2026-01-01T00:00:00.000Z (roles: doc-reader; revision ${(await dev.hierarchy.getHierarchySchema({})).revision})`);
    expect(explained).toBe(`  assignment ${assignment.id}: role ${role.id} on node ${root} (inherited), 2026-01-01T00:00:00.000Z until 2026-01-02T00:00:00.000Z`);

    const denied = await cli([...base, "--permission", "doc.write"], asDev);
    expect(denied.code).toBe(3);
    expect(denied.stdout).toMatch(/^denied: \S+ may not doc\.write at node \S+ at \S+: PERMISSION_NOT_GRANTED \(/);

    const later = await cli([...base, "--permission", "doc.read", "--at", "2026-01-02T00:00:00Z"], asDev);
    expect(later.code).toBe(3);
    expect(later.stdout).toContain(": ONLY_EXPIRED (");

    const appWide = await cli(["check", "--identity", ada.id, "--permission", "doc.read", "--app-wide", "--json"], asDev);
    expect(appWide.code).toBe(0);
    expect(JSON.parse(appWide.stdout)).toMatchObject({ allowed: true, scope: "CHECK_SCOPE_APP_WIDE", effectiveNodeId: root, grantingRoles: [{ roleId: role.id, roleName: "doc-reader" }] });

    const unknown = await cli(["check", "--identity", "nobody", "--permission", "doc.read", "--node", node.id, "--json"], asDev);
    expect(unknown.code).toBe(3);
    expect(JSON.parse(unknown.stdout)).toMatchObject({ allowed: false, denialReason: "DENIAL_REASON_UNKNOWN_IDENTITY", grantingRoles: [] });

    // the admin key acts in an environment named by --environment
    const asAdminKey = await cli([...base, "--permission", "doc.read", "--key", s.adminKey, "--environment", "development"], { CANOPY_URL: s.url });
    expect(asAdminKey.code).toBe(0);

    // errors: malformed request (no node in hierarchy mode), bad key, no server
    const malformed = await cli(["check", "--identity", ada.id, "--permission", "doc.read"], asDev);
    expect(malformed.code).toBe(1);
    expect(malformed.stderr).toMatch(/^canopy check: INVALID_ARGUMENT: .*node_id/);
    expect(malformed.stdout).toBe("");
    const badKey = await cli([...base, "--permission", "doc.read", "--key", "cnpy_" + "x".repeat(43)], { CANOPY_URL: s.url });
    expect(badKey.code).toBe(1);
    expect(badKey.stderr).toMatch(/^canopy check: UNAUTHENTICATED: /);
    const down = await cli([...base, "--permission", "doc.read", "--url", "http://127.0.0.1:1"], { CANOPY_KEY: s.devKey });
    expect(down.code).toBe(1);
    expect(down.stderr).toContain("UNAVAILABLE");
    expect(down.stderr).toContain("is a Canopy server running at http://127.0.0.1:1?");
    // usage: --node with --app-wide, a bad --at
    const both = await cli([...base, "--permission", "doc.read", "--app-wide"], asDev);
    expect(both.code).toBe(2);
    expect(both.stderr).toBe("canopy check: --node and --app-wide exclude each other\nRun 'canopy check --help' for usage.\n");
    const badAt = await cli([...base, "--permission", "doc.read", "--at", "tomorrow"], asDev);
    expect(badAt.code).toBe(2);
    expect(badAt.stderr).toContain('--at must be an ISO 8601 timestamp such as 2027-01-01T00:00:00Z; got "tomorrow"');
  });

  it("export, import into another environment, export again: the same structure under new ids; a re-run creates nothing", async () => {
    // a source environment of its own, filled through the API
    const src = (await admin.admin.createEnvironment({ applicationId, name: "cli-source" })).environment!;
    const c = s.clients(s.adminKey, { environment: src.id });
    await c.hierarchy.updateHierarchySchema({
      schema: { nodeTypes: ["org", "region", "team"], allowedChildren: { org: { types: ["region"] }, region: { types: ["team"] } }, maxDepth: 3, rootNodeType: "org" },
    });
    await c.hierarchy.updateNode({ id: src.rootNodeId, name: "Acme", externalId: "acme", metadata: { tier: "gold" } });
    await c.catalog.batchCreatePermissions({
      permissions: [
        { key: "invoice.read", description: "Read invoices", category: "billing" },
        { key: "invoice.approve", category: "billing" },
        { key: "report.view" },
      ],
    });
    const viewer = (await c.catalog.createRole({ name: "viewer", description: "reads", permissionKeys: ["invoice.read", "report.view"] })).role!;
    const approver = (await c.catalog.createRole({ name: "approver", permissionKeys: ["invoice.approve"] })).role!;
    await c.catalog.createRole({ name: "empty" });
    const regions = [];
    for (const name of ["EMEA", "AMER"]) {
      const region = (await c.hierarchy.createNode({ parentId: src.rootNodeId, type: "region", name, metadata: { code: name.toLowerCase(), n: [1, 2] } })).node!;
      regions.push(region);
      for (let t = 0; t < 3; t++) await c.hierarchy.createNode({ parentId: region.id, type: "team", name: `${name} team ${t}`, externalId: `${name}-${t}` });
    }
    // identities are account-wide: members of the application, so visible in every environment of it
    const people = (await dev.identities.batchCreateIdentities({ identities: [{ email: "exp-a@example.com" }, { email: "exp-b@example.com" }] })).results.map((r) => r.identity!);
    const teams = (await c.hierarchy.listChildren({ id: regions[0].id })).nodes;
    await c.assignments.batchCreateAssignments({
      items: [
        { identityId: people[0].id, roleId: viewer.id, nodeId: src.rootNodeId },
        { identityId: people[1].id, roleId: approver.id, nodeId: teams[1].id, effectiveFrom: timestampFromMs(T0 - 86_400_000), effectiveTo: timestampFromMs(T0 - 3_600_000) },
        { identityId: people[1].id, roleId: viewer.id, nodeId: regions[1].id, effectiveFrom: timestampFromMs(T0 + 86_400_000) },
      ],
    });

    const dir = tempDir();
    const first = join(dir, "first.json");
    const exported = await cli(["export", "--environment", src.id, "--key", s.adminKey, "--with-assignments", "--out", first], { CANOPY_URL: s.url });
    expect(exported.stderr).toBe(`exported 3 permissions, 3 roles, 9 nodes, 3 assignments of 2 identities at revision ${(await c.hierarchy.getHierarchySchema({})).revision} to ${first}\n`);
    expect(exported.code).toBe(0);
    const a = JSON.parse(readFileSync(first, "utf8")) as ExportFile;
    expect(a.format).toBe("canopy.environment.v1");
    expect(a.hierarchySchema).toEqual({ nodeTypes: ["org", "region", "team"], allowedChildren: { org: ["region"], region: ["team"] }, maxDepth: 3, rootNodeType: "org" });
    expect(a.nodes[0]).toEqual({ id: src.rootNodeId, parentId: null, type: "org", name: "Acme", externalId: "acme", metadata: { tier: "gold" } });
    expect(a.nodes.map((n) => n.name)).toEqual(["Acme", "EMEA", "EMEA team 0", "EMEA team 1", "EMEA team 2", "AMER", "AMER team 0", "AMER team 1", "AMER team 2"]);
    expect(a.roles.find((r) => r.name === "viewer")!.permissionKeys).toEqual(["invoice.read", "report.view"]);
    expect(a.assignments!.map((x) => [x.effectiveFrom, x.effectiveTo])).toEqual([
      ["2026-01-01T00:00:00.000Z", null],
      ["2025-12-31T00:00:00.000Z", "2025-12-31T23:00:00.000Z"],
      ["2026-01-02T00:00:00.000Z", null],
    ]);

    // the target: a new environment, and its key made by the CLI
    const target = (await admin.admin.createEnvironment({ applicationId, name: "cli-target" })).environment!;
    const made = await cli(["keys", "create", "--environment", "default/cli-target", "--name", "importer", "--json"], asAdmin);
    expect(made.code).toBe(0);
    const targetKey = (JSON.parse(made.stdout) as { secret: string }).secret;
    const imported = await cli(["import", first, "--with-assignments", "--key", targetKey], { CANOPY_URL: s.url });
    expect(imported.stderr.split("\n").filter(Boolean)).toEqual(["permissions 3/3", "roles 3/3", "nodes 8/8", "assignments 3/3"]);
    expect(imported.code).toBe(0);
    expect(imported.stdout).toMatch(new RegExp(`^Imported into the environment of root ${target.rootNodeId} \\(revision \\d+\\):\\n`));
    expect(imported.stdout).toMatch(/permissions +3 created, 0 already present\n +roles +3 created, 0 already present\n +nodes +8 created, 0 already present\n +assignments +3 created, 0 already present\n$/);

    const second = join(dir, "second.json");
    expect((await cli(["export", "--with-assignments", "--out", second, "--key", targetKey], { CANOPY_URL: s.url })).code).toBe(0);
    const b = JSON.parse(readFileSync(second, "utf8")) as ExportFile;
    expect(structure(b)).toEqual(structure(a));
    // new ids everywhere but the identities (account-wide)
    const ids = (f: ExportFile) => [...f.nodes.map((n) => n.id), ...f.roles.map((r) => r.id), ...f.assignments!.map((x) => x.id)];
    expect(ids(b).filter((id) => ids(a).includes(id))).toEqual([]);
    expect(b.nodes[0].id).toBe(target.rootNodeId);
    expect(b.identities!.map((x) => x.id).sort()).toEqual(a.identities!.map((x) => x.id).sort());

    // the copy answers checks like the original
    const targetCheck = s.clients(targetKey).check;
    const emea2 = b.nodes.find((n) => n.name === "EMEA team 2")!.id;
    expect((await targetCheck.check({ identityId: people[0].id, permission: "report.view", nodeId: emea2 })).allowed).toBe(true);
    expect((await targetCheck.check({ identityId: people[1].id, permission: "invoice.approve", nodeId: b.nodes.find((n) => n.name === "EMEA team 1")!.id })).denialReason).toBe(10);

    // a re-run reuses everything, and the environment is unchanged
    const again = await cli(["import", second, "--with-assignments", "--quiet", "--key", targetKey], { CANOPY_URL: s.url });
    expect(again.stderr).toBe("");
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/permissions +0 created, 3 already present\n +roles +0 created, 3 already present\n +nodes +0 created, 8 already present\n +assignments +0 created, 3 already present\n$/);
    const third = await cli(["export", "--with-assignments", "--key", targetKey], { CANOPY_URL: s.url });
    expect(third.code).toBe(0);
    expect(structure(JSON.parse(third.stdout) as ExportFile)).toEqual(structure(a));

    // piping: export | import - (without assignments) into a third environment
    const third2 = (await admin.admin.createEnvironment({ applicationId, name: "cli-piped" })).environment!;
    const piped = await cli(["import", "-", "--key", s.adminKey, "--environment", third2.id], { CANOPY_URL: s.url }, third.stdout);
    expect(piped.code).toBe(0);
    expect(piped.stderr).toContain("note: skipping the file's 3 assignments (pass --with-assignments to import them)\n");
    const pipedCopy = await s.clients(s.adminKey, { environment: third2.id }).hierarchy.getHierarchySchema({});
    expect(pipedCopy.accessModel).toBe(AccessModel.HIERARCHY);
    expect(pipedCopy.schema?.rootNodeType).toBe("org");

    // assignment items are independent: one the server refuses is named at the end, the others are written
    await admin.identities.deactivateIdentity({ id: people[0].id });
    try {
      const inactive = (await admin.admin.createEnvironment({ applicationId, name: "cli-inactive" })).environment!;
      const partial = await cli(["import", first, "--with-assignments", "--quiet", "--key", s.adminKey, "--environment", inactive.id], { CANOPY_URL: s.url });
      expect(partial.code).toBe(1);
      expect(partial.stdout).toMatch(/assignments +2 created, 0 already present\n$/);
      const [head, item, ...more] = partial.stderr.trimEnd().split("\n");
      expect(head).toBe("error: 1 assignment of 3 could not be created:");
      expect(item).toMatch(/^ {2}assignments\[0\] \(identity exp-a@example\.com, role viewer, node "Acme"\): FAILED_PRECONDITION: \S/);
      expect(more).toEqual([]);
    } finally {
      await admin.identities.activateIdentity({ id: people[0].id });
    }
  });

  it("import fails with a message naming the item, and refuses a role that differs before writing anything", async () => {
    const env = (await admin.admin.createEnvironment({ applicationId, name: "cli-refuse" })).environment!;
    const c = s.clients(s.adminKey, { environment: env.id });
    await c.catalog.batchCreatePermissions({ permissions: [{ key: "a.read" }, { key: "a.write" }] });
    await c.catalog.createRole({ name: "editor", permissionKeys: ["a.read"] });
    const file = {
      format: "canopy.environment.v1",
      counts: { permissions: 2, roles: 1, nodes: 2 },
      accessModel: "hierarchy",
      hierarchySchema: null,
      permissions: [{ key: "a.read" }, { key: "a.write" }],
      roles: [{ id: "r1", name: "editor", permissionKeys: ["a.read", "a.write"] }],
      nodes: [
        { id: "root", parentId: null, type: "root", name: "root" },
        { id: "n1", parentId: "root", type: "team", name: "One" },
      ],
    };
    const dir = tempDir();
    const path = join(dir, "f.json");
    writeFileSync(path, JSON.stringify(file));
    const revision = (await c.hierarchy.getHierarchySchema({})).revision;
    const refused = await cli(["import", path, "--key", s.adminKey, "--environment", env.id], { CANOPY_URL: s.url });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      'canopy import: role "editor" already exists in the target with other permissions (a.read; the file has a.read, a.write); import does not change existing roles: rename or update one of them first\n',
    );
    expect((await c.hierarchy.getHierarchySchema({})).revision).toBe(revision);

    // a key that may only read: the first write fails and is named
    const readOnly = (await admin.admin.createApiKey({ name: "ro", environmentId: env.id, scopes: ["read"] })).secret;
    writeFileSync(path, JSON.stringify({ ...file, permissions: [...file.permissions, { key: "b.read" }], counts: { ...file.counts, permissions: 3, roles: 0 }, roles: [] }));
    const denied = await cli(["import", path, "--key", readOnly], { CANOPY_URL: s.url });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^canopy import: permissions 1\.\.1 \(b\.read …\): PERMISSION_DENIED: /);

    // a node the server refuses (deeper than CANOPY_MAX_DEPTH = 32): named by its place in the file; a
    // re-run reuses the nodes created before it and stops at the same node
    const chain = [{ id: "n1", parentId: null as string | null, type: "root", name: "n1" }];
    for (let i = 2; i <= 33; i++) chain.push({ id: `n${i}`, parentId: `n${i - 1}`, type: "t", name: `n${i}` });
    writeFileSync(path, JSON.stringify({ ...file, roles: [], counts: { ...file.counts, roles: 0, nodes: 33 }, nodes: chain }));
    const tooDeep = await cli(["import", path, "--key", s.adminKey, "--environment", env.id, "--quiet"], { CANOPY_URL: s.url });
    expect(tooDeep.code).toBe(1);
    expect(tooDeep.stderr).toMatch(/^canopy import: nodes\[32\] "n33" \(type t, source id n33\): FAILED_PRECONDITION: .*\(31 nodes created before it; running the import again continues from there\)\n$/);
    const rerun = await cli(["import", path, "--key", s.adminKey, "--environment", env.id, "--quiet"], { CANOPY_URL: s.url });
    expect(rerun.code).toBe(1);
    expect(rerun.stderr).toMatch(/\(0 nodes created before it; running the import again continues from there\)\n$/);
    const depth = (await c.hierarchy.getSubtree({ id: env.rootNodeId, pageSize: 1000 })).nodes.length;
    expect(depth).toBe(32);
  });

  it("import halves batches the server refuses as too large, and refuses identities the target cannot see", async () => {
    const small = await startTestServer({ limits: { maxBatchItems: 2 } });
    try {
      const permissions = ["a.one", "a.two", "a.three", "a.four", "a.five"].map((key) => ({ key }));
      const file = {
        format: "canopy.environment.v1",
        counts: { permissions: 5, roles: 1, nodes: 1, identities: 1, assignments: 1 },
        accessModel: "flat",
        hierarchySchema: null,
        permissions,
        roles: [{ id: "r", name: "two", permissionKeys: ["a.one", "a.five"] }],
        nodes: [{ id: "root", parentId: null, type: "root", name: "root" }],
        identities: [{ id: "00000000-0000-7000-8000-00000000abcd", email: "ghost@example.com" }],
        assignments: [{ identityId: "00000000-0000-7000-8000-00000000abcd", roleId: "r", nodeId: "root", effectiveFrom: "2026-01-01T00:00:00Z" }],
      };
      const path = join(tempDir(), "small.json");
      writeFileSync(path, JSON.stringify(file));
      const env = { CANOPY_URL: small.url, CANOPY_KEY: small.devKey };
      const dev2 = small.clients(small.devKey);
      const revision = (await dev2.hierarchy.getHierarchySchema({})).revision;
      const ghost = await cli(["import", path, "--with-assignments", "--batch-size", "4"], env);
      expect(ghost.code).toBe(1);
      expect(ghost.stderr).toBe(
        "canopy import: 1 identity named by the file's assignments is not visible in the target environment: ghost@example.com (00000000-0000-7000-8000-00000000abcd). " +
          "Identities are account-wide and are not imported: add them to the target's application (IdentityService.AddAppMembership with the admin key) and run the import again. Nothing was written.\n",
      );
      expect((await dev2.hierarchy.getHierarchySchema({})).revision).toBe(revision);

      // without the assignments: batches of 4 are refused (at most 2), so 2 + 2 + 1 are sent
      const ok = await cli(["import", path, "--batch-size", "4", "--progress-interval", "0"], env);
      expect(ok.stderr.split("\n").filter(Boolean)).toEqual([
        "note: skipping the file's 1 assignment (pass --with-assignments to import them)",
        "permissions 2/5",
        "permissions 4/5",
        "permissions 5/5",
        "roles 1/1",
        "nodes 0/0",
      ]);
      expect(ok.code).toBe(0);
      expect((await dev2.catalog.listPermissions({})).permissions.map((p) => p.key)).toEqual(permissions.map((p) => p.key));
      const schema = await dev2.hierarchy.getHierarchySchema({});
      expect(schema.accessModel).toBe(AccessModel.FLAT);
    } finally {
      await small.close();
    }
  });

  it("import validates the file before contacting a server: --dry-run counts, a truncated or inconsistent file is refused", async () => {
    const dir = tempDir();
    const path = join(dir, "f.json");
    const nodes = [{ id: "r", parentId: null, type: "root", name: "root" }, { id: "a", parentId: "r", type: "team", name: "A" }];
    const base = { format: "canopy.environment.v1", counts: { permissions: 1, roles: 1, nodes: 2 }, accessModel: "hierarchy", hierarchySchema: null, permissions: [{ key: "a.read" }], roles: [{ id: "x", name: "r", permissionKeys: ["a.read"] }], nodes };
    writeFileSync(path, JSON.stringify(base));
    const dry = await cli(["import", path, "--dry-run"]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toBe(`${path} is valid: 1 permission, 1 role, 2 nodes; access model hierarchy, no schema, tree depth 2.\nDry run: nothing was written.\n`);

    const cases: Array<[unknown, string]> = [
      [{ ...base, counts: { ...base.counts, nodes: 3 } }, "nodes holds 2 item(s) but counts.nodes says 3: the file is truncated or was edited"],
      [{ ...base, nodes: [nodes[0], { ...nodes[1], parentId: "zz" }] }, 'nodes[1] (A, id a): parent zz is not an earlier node of the file (nodes are listed parents first)'],
      [{ ...base, roles: [{ id: "x", name: "r", permissionKeys: ["b.read"] }] }, 'roles[0] (r): permission "b.read" is not among the file\'s permissions'],
      [{ ...base, hierarchySchema: { nodeTypes: ["root"], allowedChildren: {}, maxDepth: 0, rootNodeType: "root" } }, 'nodes[1] (A, id a): type "team" is not in hierarchySchema.nodeTypes'],
      [{ ...base, format: "other" }, 'format must be "canopy.environment.v1", got "other" (is this a canopy export file?)'],
    ];
    for (const [content, message] of cases) {
      writeFileSync(path, JSON.stringify(content));
      const r = await cli(["import", path, "--dry-run"]);
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 1, stderr: `canopy import: ${path}: ${message}\n` });
    }
    writeFileSync(path, "{ not json");
    const broken = await cli(["import", path, "--dry-run"]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(new RegExp(`^canopy import: ${path} is not valid JSON: `));
    const missing = await cli(["import", join(dir, "nope.json"), "--dry-run"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("cannot read");
  });

  it("import prints throttled progress lines while creating a few thousand nodes", async () => {
    const env = (await admin.admin.createEnvironment({ applicationId, name: "cli-progress" })).environment!;
    const nodes: Array<{ id: string; parentId: string | null; type: string; name: string }> = [{ id: "r", parentId: null, type: "root", name: "root" }];
    for (let a = 0; a < 10; a++) {
      nodes.push({ id: `a${a}`, parentId: "r", type: "region", name: `Region ${a}` });
      for (let b = 0; b < 199; b++) nodes.push({ id: `a${a}b${b}`, parentId: `a${a}`, type: "team", name: `Team ${b}` });
    }
    const total = nodes.length - 1;
    expect(total).toBe(2000);
    const path = join(tempDir(), "big.json");
    writeFileSync(path, JSON.stringify({ format: "canopy.environment.v1", counts: { permissions: 0, roles: 0, nodes: nodes.length }, accessModel: "hierarchy", hierarchySchema: null, permissions: [], roles: [], nodes }));
    // the admin key acts in an environment only when one is named
    const noEnv = await cli(["import", path], { CANOPY_URL: s.url, CANOPY_KEY: s.adminKey });
    expect(noEnv.code).toBe(1);
    expect(noEnv.stderr).toMatch(/^canopy import: PERMISSION_DENIED: .*environment/);

    const started = Date.now();
    const ok = await cli(["import", path, "--environment", env.id, "--progress-interval", "250"], { CANOPY_URL: s.url, CANOPY_KEY: s.adminKey });
    const seconds = (Date.now() - started) / 1000;
    expect(ok.code).toBe(0);
    const lines = ok.stderr.trimEnd().split("\n");
    const progress = lines.map((l) => /^nodes (\d+)\/(\d+)$/.exec(l)).filter((m) => m !== null);
    expect(progress.every((m) => Number(m[2]) === total)).toBe(true);
    const done = progress.map((m) => Number(m[1]));
    expect(done[done.length - 1]).toBe(total);
    expect(done).toEqual([...done].sort((x, y) => x - y));
    // throttled: about one line per 250 ms, never one per node
    expect(done.length).toBeGreaterThanOrEqual(Math.min(3, Math.floor(seconds / 0.25)));
    expect(done.length).toBeLessThanOrEqual(Math.ceil(seconds / 0.25) + 1);
    expect(lines.filter((l) => !l.startsWith("nodes "))).toEqual([]);
    const subtree = await s.clients(s.adminKey, { environment: env.id }).hierarchy.getSubtree({ id: env.rootNodeId, pageSize: 1 });
    expect(subtree.nodes[0].id).toBe(env.rootNodeId);
    const children = await s.clients(s.adminKey, { environment: env.id }).hierarchy.listChildren({ id: env.rootNodeId, pageSize: 100 });
    expect(children.nodes.map((n) => n.name)).toEqual(Array.from({ length: 10 }, (_, i) => `Region ${i}`));
  });

  it("migrate applies the migrations to a fresh database once, and reports that a second run had nothing to do", async () => {
    let url: string;
    let drop = async () => {};
    if (BACKEND === "postgres") {
      const pg = await freshSchema("cli");
      url = pg.url;
      drop = pg.drop;
    } else {
      url = `sqlite:${join(tempDir(), "nested", "dir", "m.db")}`;
    }
    try {
      const first = await cli(["migrate", "--database-url", url]);
      expect(first.stderr).toBe("");
      expect(first.code).toBe(0);
      const lines = first.stdout.trimEnd().split("\n");
      expect(lines[0]).toMatch(/^Migrating (sqlite|postgres)/);
      expect(lines[1]).toMatch(/^ {2}applied 2026-11-23-001-initial$/);
      expect(lines[lines.length - 1]).toMatch(new RegExp(`^Applied ${lines.length - 2} migration\\(s\\); the ${BACKEND} database is at \\S+\\.$`));
      const applied = (await rows(url, "select name from kysely_migration order by name")).map((r) => r.name);
      expect(applied).toEqual(lines.slice(1, -1).map((l) => l.replace("  applied ", "")));
      expect((await rows(url, "select count(*) as n from environments"))[0].n).toBe(BACKEND === "postgres" ? "0" : 0);

      const second = await cli(["migrate"], { CANOPY_DATABASE_URL: url });
      expect(second.code).toBe(0);
      expect(second.stdout.trimEnd().split("\n")[1]).toMatch(new RegExp(`^Nothing to do: the ${BACKEND} database is already at \\S+ \\(${applied.length} migration\\(s\\)\\)\\.$`));
    } finally {
      await drop();
    }
    const bad = await cli(["migrate", "--database-url", "mysql://x/y"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('unsupported database URL scheme "mysql:"');
  });

  it("serve runs the server like npm start and exits 0 on SIGTERM", async () => {
    const dir = tempDir();
    const child = spawn(process.execPath, [CLI, "serve"], {
      env: { ...process.env, CANOPY_PORT: "0", CANOPY_DATABASE_URL: `sqlite:${join(dir, "serve.db")}`, CANOPY_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    const url = await new Promise<string>((done, reject) => {
      const timer = setTimeout(() => reject(new Error(`no url: ${stdout}`)), 30_000);
      child.stdout.on("data", (d) => {
        stdout += d;
        const m = /"url":"(http:\/\/[^"]+)"/.exec(stdout);
        if (m) {
          clearTimeout(timer);
          done(m[1]);
        }
      });
      child.on("exit", (code) => reject(new Error(`serve exited with ${code}: ${stdout}`)));
    });
    const devKey = /development environment key:\s+(cnpy_\S+)/.exec(stdout)![1];
    const check = createClient(CheckService, createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors: [(next) => (req) => (req.header.set("x-api-key", devKey), next(req))] }));
    const res = await check.check({ identityId: "nobody", permission: "a.b", nodeId: "nowhere" });
    expect(res.denialReason).toBe(1);
    const code = await new Promise<number | null>((done) => {
      child.removeAllListeners("exit");
      child.on("exit", (c) => done(c));
      child.kill("SIGTERM");
    });
    expect(code).toBe(0);
  });
});
