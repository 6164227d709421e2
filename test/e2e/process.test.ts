import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, describe, expect, it } from "vitest";
import { backendReady, BACKEND } from "./harness.js";
import { freshSchema } from "../support/postgres.js";
import { AssignmentService } from "../../src/gen/canopy/v1/assignment_pb.js";
import { CatalogService } from "../../src/gen/canopy/v1/catalog_pb.js";
import { CheckService } from "../../src/gen/canopy/v1/check_pb.js";
import { HierarchyService } from "../../src/gen/canopy/v1/hierarchy_pb.js";
import { IdentityService } from "../../src/gen/canopy/v1/identity_pb.js";
import { AdminService } from "../../src/gen/canopy/v1/admin_pb.js";

/**
 * The real entry point (`node dist/src/main.js`, built by `npm test`'s pretest) as a child process:
 * first-start bootstrap output, CANOPY_ADMIN_KEY, and durability across SIGKILL right after replies.
 * Runs on the current BACKEND: a SQLite file in a temp dir, or a fresh PostgreSQL schema per database.
 */

/** False on a PostgreSQL run whose server is down (locally: skip; under CI=true backendReady throws). */
const ready = await backendReady();

const MAIN = resolve(__dirname, "../../dist/src/main.js");
const dirs: string[] = [];
const schemas: Array<() => Promise<void>> = [];
const children = new Set<ChildProcess>();
afterAll(async () => {
  // a failed test may leave a server running: stop it before its database goes away
  await Promise.all([...children].map((child) => kill9({ child, url: "", stdout: "" })));
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
  for (const drop of schemas) await drop();
});

/**
 * A new, empty database for the backend under test, as a CANOPY_DATABASE_URL. On SQLite a file
 * `path` (relative, may name directories that do not exist yet) in a new temp dir; on PostgreSQL a
 * new schema of the test database (dropped after the file).
 */
async function freshDatabase(path = "c.db"): Promise<string> {
  if (BACKEND === "postgres") {
    const pg = await freshSchema("proc");
    schemas.push(pg.drop);
    return pg.url;
  }
  const dir = mkdtempSync(join(tmpdir(), "canopy-proc-"));
  dirs.push(dir);
  return `sqlite:${join(dir, path)}`;
}

interface Running {
  child: ChildProcess;
  url: string;
  stdout: string;
}

function start(databaseUrl: string, env: Record<string, string> = {}): Promise<Running> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [MAIN], {
      env: { ...process.env, CANOPY_PORT: "0", CANOPY_DATABASE_URL: databaseUrl, CANOPY_DATABASE_POOL_SIZE: "4", CANOPY_LOG_LEVEL: "info", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    child.on("exit", () => children.delete(child));
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stdout}${stderr}`)), 30_000);
    child.stderr!.on("data", (d) => (stderr += d));
    child.stdout!.on("data", (d) => {
      stdout += d;
      const m = /"url":"(http:\/\/[^"]+)"/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolvePromise({ child, url: m[1], stdout });
      }
    });
    child.on("exit", (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
}

function kill9(r: Running): Promise<void> {
  return new Promise((done) => {
    r.child.removeAllListeners("exit");
    children.delete(r.child);
    if (r.child.exitCode !== null || r.child.signalCode !== null) return done();
    r.child.on("exit", () => done());
    r.child.kill("SIGKILL");
  });
}

function clients(url: string, key: string, httpVersion: "1.1" | "2" = "1.1") {
  const transport = createConnectTransport({
    baseUrl: url,
    httpVersion,
    interceptors: [(next) => (req) => (req.header.set("x-api-key", key), next(req))],
  });
  return {
    catalog: createClient(CatalogService, transport),
    hierarchy: createClient(HierarchyService, transport),
    identities: createClient(IdentityService, transport),
    assignments: createClient(AssignmentService, transport),
    check: createClient(CheckService, transport),
    admin: createClient(AdminService, transport),
  };
}

describe.skipIf(!ready)(`canopy process (${BACKEND})`, () => {
  it("prints a generated admin key and a development key once, on the first start only", async () => {
    const db = await freshDatabase(join("data", "canopy.db"));
    const first = await start(db);
    const admin = /admin key \(generated\):\s+(cnpy_\S+)/.exec(first.stdout)?.[1];
    const dev = /development environment key:\s+(cnpy_\S+)/.exec(first.stdout)?.[1];
    expect(admin).toMatch(/^cnpy_[A-Za-z0-9_-]{43}$/);
    expect(dev).toMatch(/^cnpy_[A-Za-z0-9_-]{43}$/);
    const apps = await clients(first.url, admin!).admin.listApplications({});
    expect(apps.applications.map((a) => a.name)).toEqual(["default"]);
    const envs = await clients(first.url, admin!).admin.listEnvironments({});
    expect(envs.environments.map((e) => e.name).sort()).toEqual(["development", "production"]);
    await kill9(first);

    const second = await start(db);
    expect(second.stdout).not.toContain("cnpy_");
    // the printed keys still work after a restart (they are stored as hashes)
    const schema = await clients(second.url, dev!).hierarchy.getHierarchySchema({});
    expect(schema.rootNodeId).toMatch(/^[0-9a-f-]{36}$/);
    await kill9(second);
  });

  it("takes CANOPY_ADMIN_KEY as the admin key of an empty database and does not print it", async () => {
    const key = "cnpy_" + "k".repeat(40);
    const r = await start(await freshDatabase(), { CANOPY_ADMIN_KEY: key });
    expect(r.stdout).toContain("taken from CANOPY_ADMIN_KEY");
    expect(r.stdout).not.toContain(key);
    const apps = await clients(r.url, key).admin.listApplications({});
    expect(apps.applications).toHaveLength(1);
    await kill9(r);
  });

  it.skipIf(BACKEND !== "postgres")("logs the database URL with its password masked", async () => {
    const u = new URL(await freshDatabase());
    u.password = "hunter2-not-logged"; // trust auth: the server never asks for it
    const r = await start(u.toString());
    // start() resolves on the "listening" line, which carries the database too
    const line = r.stdout.split("\n").find((l) => l.includes('"database"'));
    expect(line, r.stdout).toBeDefined();
    const logged = new URL(JSON.parse(line!).database as string);
    expect(logged.password).toBe("***");
    expect(logged.pathname).toBe(u.pathname);
    expect(r.stdout).not.toContain("hunter2-not-logged");
    await kill9(r);
  });

  it("keeps every acknowledged write after SIGKILL right after the reply", async () => {
    const db = await freshDatabase();
    const adminKey = "cnpy_" + "d".repeat(40);
    const r1 = await start(db, { CANOPY_ADMIN_KEY: adminKey });
    const dev = /development environment key:\s+(cnpy_\S+)/.exec(r1.stdout)![1];
    const c1 = clients(r1.url, dev);
    await c1.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }] });
    const role = (await c1.catalog.createRole({ name: "reader", permissionKeys: ["doc.read"] })).role!;
    const root = (await c1.hierarchy.getHierarchySchema({})).rootNodeId;
    const identity = (await c1.identities.createIdentity({ identity: { email: "crash@example.com" } })).identity!;
    const batch = await c1.assignments.batchCreateAssignments({
      items: Array.from({ length: 3 }, (_, i) => ({
        identityId: identity.id,
        roleId: role.id,
        nodeId: root,
        effectiveFrom: { seconds: BigInt(1_600_000_000 + i * 10), nanos: 0 },
        effectiveTo: { seconds: BigInt(1_600_000_000 + i * 10 + 5), nanos: 0 },
      })),
    });
    expect(batch.summary!.succeeded).toBe(3);
    const last = await c1.assignments.createAssignment({ assignment: { identityId: identity.id, roleId: role.id, nodeId: root } });
    // no pause, no graceful shutdown: the process dies right after the last reply
    await kill9(r1);

    const r2 = await start(db, { CANOPY_ADMIN_KEY: adminKey });
    const c2 = clients(r2.url, dev);
    const listed = await c2.assignments.listAssignments({ identityId: identity.id });
    expect(listed.assignments.map((a) => a.id).sort()).toEqual([...batch.results.map((x) => x.assignment!.id), last.assignment!.id].sort());
    const check = await c2.check.check({ identityId: identity.id, permission: "doc.read", nodeId: root });
    expect(check.allowed).toBe(true);
    expect(check.revision).toBe(last.revision);
    await kill9(r2);
  });

  it("keeps every item a grouped BulkCreateAssignments stream reported created after SIGKILL right after the last result", async () => {
    const db = await freshDatabase();
    const adminKey = "cnpy_" + "g".repeat(40);
    // small transactions (at most 50 items, messages of 25 grouped) so the stream commits many times
    const env = { CANOPY_ADMIN_KEY: adminKey, CANOPY_WRITE_CHUNK_SIZE: "50" };
    const r1 = await start(db, env);
    const dev = /development environment key:\s+(cnpy_\S+)/.exec(r1.stdout)![1];
    const c1 = clients(r1.url, dev);
    await c1.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }] });
    const role = (await c1.catalog.createRole({ name: "reader", permissionKeys: ["doc.read"] })).role!;
    const root = (await c1.hierarchy.getHierarchySchema({})).rootNodeId;
    const made = await c1.identities.batchCreateIdentities({ identities: Array.from({ length: 500 }, (_, i) => ({ email: `s${i}@example.com` })) });
    const ids = made.results.map((x) => x.identity!.id);
    const items = ids.map((identityId, i) => ({ identityId, roleId: i % 50 === 49 ? "00000000-0000-7000-8000-000000000000" : role.id, nodeId: root }));
    async function* requests() {
      for (let m = 0; m < items.length / 25; m++) yield { items: items.slice(m * 25, (m + 1) * 25) };
    }
    const reported: string[] = [];
    const codes: number[] = [];
    for await (const m of clients(r1.url, dev, "2").assignments.bulkCreateAssignments(requests())) {
      if (m.kind.case !== "result") continue;
      codes[m.kind.value.index] = m.kind.value.status?.code ?? 0;
      if (m.kind.value.status?.code === 0) reported.push(m.kind.value.assignment!.id);
      // no pause, no summary, no graceful shutdown: the process dies right after the last result
      if (m.kind.value.index === items.length - 1) break;
    }
    await kill9(r1);
    expect(codes).toEqual(items.map((x) => (x.roleId === role.id ? 0 : 5)));
    expect(reported).toHaveLength(490);

    const r2 = await start(db, env);
    const c2 = clients(r2.url, dev);
    const stored: string[] = [];
    let pageToken = "";
    do {
      const page = await c2.assignments.listAssignments({ pageSize: 1000, pageToken });
      stored.push(...page.assignments.map((a) => a.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(stored.sort()).toEqual([...reported].sort());
    await kill9(r2);
  });
});
