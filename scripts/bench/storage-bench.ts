import { fork, spawn, execFileSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { Kysely, SqliteDialect } from "kysely";
import pg from "pg";
import { BulkCreateAssignmentsRequestSchema, BulkCreateAssignmentsResponseSchema } from "../../src/gen/canopy/v1/assignment_pb.js";
import { CheckRequestSchema, CheckResponseSchema, CheckScope } from "../../src/gen/canopy/v1/check_pb.js";
import { CreateNodeRequestSchema, CreateNodeResponseSchema, MoveNodeRequestSchema } from "../../src/gen/canopy/v1/hierarchy_pb.js";
import { createKyselyStore, createStore, openSqliteDatabase } from "../../src/store/index.js";
import type { Store } from "../../src/store/store.js";
import { engineThroughput, loadEngine, verify } from "./engine-bench.js";
import { seedSqliteFile } from "./seed-cache.js";
import type { LoopReply, LoopRequest, LoopSample } from "./check-loop.js";
import { createOracle } from "./oracle.js";
import { fmtInt, fmtMs, percentile, type Table } from "./report.js";
import { bootstrapStore, seedWorkload, type BootstrappedDatabase } from "./seed.js";
import { generateChecks, generateWorkload, prng, type Workload, type WorkloadAssignment, type WorkloadCheck } from "./workload.js";
import { cpuMs, machineBusyMs } from "./proc.js";

/**
 * Storage and scale: BulkCreateAssignments streaming into SQLite and PostgreSQL, cold start of the
 * large workload from SQLite, check cost vs assignments per identity and vs depth, and check latency
 * while the hierarchy churns. Every server is a separate `node dist/src/main.js` process (port 0, a
 * fresh SQLite file or PostgreSQL schema) so the load generator does not share its event loop;
 * every answer read back is compared with the oracle.
 */

const MAIN = fileURLToPath(new URL("../../src/main.js", import.meta.url));
const CHECK_LOOP = fileURLToPath(new URL("./check-loop.js", import.meta.url));
const PG_BASE_URL = process.env.CANOPY_BENCH_DATABASE_URL || process.env.CANOPY_TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test";
const ITEMS_PER_MESSAGE = 1_000;
/** stream messages in flight (sent, not yet fully answered) */
const WINDOW_MESSAGES = 8;
const CHECK_CONCURRENCY = 16;
const MiB = 1024 * 1024;

export interface StorageSectionResult {
  tables: Table[];
  failed: boolean;
  summary: Record<string, number>;
}

// ---------------------------------------------------------------------------------------------
// cleanup: child processes, temp dirs and PostgreSQL schemas, also on SIGINT/SIGTERM

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();
const schemas = new Set<string>();

function killChildrenSync(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
}

function cleanupSync(): void {
  killChildrenSync();
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
  if (schemas.size > 0) {
    // a signal leaves no time for async work: drop the schemas from a short-lived child process
    const script = `const pg=require("pg");const c=new pg.Client(process.argv[1]);c.connect().then(async()=>{for(const s of process.argv.slice(2))await c.query("drop schema if exists "+s+" cascade");await c.end()}).catch(()=>process.exit(1))`;
    try {
      execFileSync(process.execPath, ["--input-type=commonjs", "-e", script, PG_BASE_URL, ...schemas], { timeout: 10_000, stdio: "ignore", cwd: resolve(fileURLToPath(new URL("../../..", import.meta.url))) });
    } catch {
      /* best effort */
    }
    schemas.clear();
  }
}

function onSignal(signal: NodeJS.Signals): void {
  cleanupSync();
  process.exit(signal === "SIGINT" ? 130 : 143);
}

// ---------------------------------------------------------------------------------------------
// server processes

interface Server {
  child: ChildProcess;
  pid: number;
  port: number;
  url: string;
  /** ms from spawn to the "listening" log line */
  listenMs: number;
  spawnedAt: number;
  output(): string;
  stop(): Promise<void>;
}

function spawnServer(databaseUrl: string, env: Record<string, string> = {}, timeoutMs = 60_000): Promise<Server> {
  const spawnedAt = performance.now();
  // e.g. CANOPY_BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=prof" to profile the servers
  const nodeArgs = (process.env.CANOPY_BENCH_SERVER_NODE_ARGS ?? "").split(/\s+/).filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, MAIN], {
    env: { ...process.env, CANOPY_PORT: "0", CANOPY_HOST: "127.0.0.1", CANOPY_DATABASE_URL: databaseUrl, CANOPY_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.on("exit", () => children.delete(child));
  let out = "";
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 64_000) out = out.slice(-32_000);
  };
  child.stderr!.on("data", keep);
  let listening = false;
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not start within ${timeoutMs} ms: ${out.slice(-2000)}`));
    }, timeoutMs);
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening: ${out.slice(-2000)}`));
    };
    child.once("exit", onExit);
    child.stdout!.on("data", (d: Buffer) => {
      keep(d);
      const m = listening ? null : /"url":"http:\/\/([^"]+):(\d+)"/.exec(out);
      if (m) {
        listening = true;
        clearTimeout(timer);
        child.off("exit", onExit);
        const port = Number(m[2]);
        resolvePromise({
          child,
          pid: child.pid!,
          port,
          url: `http://127.0.0.1:${port}`,
          listenMs: performance.now() - spawnedAt,
          spawnedAt,
          output: () => out,
          stop: () => stopChild(child),
        });
      }
    });
  });
}

/** SIGTERM (graceful drain), SIGKILL after 10 s. */
function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done();
    const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(t);
      done();
    });
    child.kill("SIGTERM");
  });
}

/** Resident set of a process from /proc (bytes): current and peak. */
function rssOf(pid: number): { rss: number; peak: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN) * 1024;
    return { rss: kb("VmRSS"), peak: kb("VmHWM") };
  } catch {
    return { rss: Number.NaN, peak: Number.NaN };
  }
}

/** max of a possibly large array (no spread: argument-count limits); NaN when empty */
function maxOf(xs: readonly number[]): number {
  let m = Number.NaN;
  for (const x of xs) if (!(x <= m)) m = x;
  return m;
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const cpuPct = (x: number) => (Number.isFinite(x) ? String(Math.round(x)) : "n/a");
const mib = (bytes: number) => (Number.isFinite(bytes) ? (bytes / MiB).toFixed(0) : "?");

// ---------------------------------------------------------------------------------------------
// gRPC client (grpc-js over h2c; messages encoded with the generated @bufbuild types)

interface Rpc {
  client: grpc.Client;
  md: grpc.Metadata;
  unary(path: string, body: Uint8Array, timeoutMs?: number): Promise<Buffer>;
  close(): void;
}

function rpcClient(port: number, apiKey: string): Rpc {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    // a connection of its own, not shared with other clients of the same target
    "grpc.use_local_subchannel_pool": 1,
    "grpc.max_receive_message_length": 64 * MiB,
  });
  const md = new grpc.Metadata();
  md.set("x-api-key", apiKey);
  const id = (b: Buffer) => b;
  return {
    client,
    md,
    unary: (path, body, timeoutMs = 30_000) =>
      new Promise((res, rej) => {
        client.makeUnaryRequest(path, id, id, Buffer.from(body.buffer, body.byteOffset, body.byteLength), md, { deadline: Date.now() + timeoutMs }, (err, value) =>
          err ? rej(err) : res(value!),
        );
      }),
    close: () => client.close(),
  };
}

const CHECK = "/canopy.v1.CheckService/Check";

function encodeCheck(c: WorkloadCheck, at: number): Uint8Array {
  return toBinary(CheckRequestSchema, create(CheckRequestSchema, { identityId: c.identityId, permission: c.permission, scope: CheckScope.NODE, nodeId: c.nodeId, at: timestampFromMs(at) }));
}

async function check(rpc: Rpc, body: Uint8Array, timeoutMs?: number): Promise<boolean> {
  return fromBinary(CheckResponseSchema, await rpc.unary(CHECK, body, timeoutMs)).allowed;
}

/** `count` checks spread evenly over the workload's, answered by the server at concurrency 16 and compared with the oracle. */
async function verifySample(rpc: Rpc, w: Workload, count: number): Promise<{ checked: number; mismatches: number; allowed: number }> {
  const oracle = createOracle(w);
  const step = Math.max(1, Math.floor(w.checks.length / count));
  const sample = w.checks.filter((_, i) => i % step === 0).slice(0, count);
  let next = 0;
  let mismatches = 0;
  let allowed = 0;
  await Promise.all(
    Array.from({ length: CHECK_CONCURRENCY }, async () => {
      while (next < sample.length) {
        const c = sample[next++];
        const want = oracle(c.identityId, c.permission, c.nodeId);
        if ((await check(rpc, encodeCheck(c, w.at))) !== want) mismatches++;
        if (want) allowed++;
      }
    }),
  );
  return { checked: sample.length, mismatches, allowed };
}

// ---------------------------------------------------------------------------------------------
// databases

interface Database {
  backend: "sqlite" | "postgres";
  url: string;
  /** the SQLite file, if any */
  file?: string;
  drop(): Promise<void>;
}

async function pgAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_BASE_URL, connectionTimeoutMillis: 3_000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function postgresReachable(): Promise<string | undefined> {
  try {
    await pgAdmin((c) => c.query("select 1"));
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

async function freshDatabase(backend: "sqlite" | "postgres"): Promise<Database> {
  if (backend === "sqlite") {
    const dir = mkdtempSync(join(tmpdir(), "canopy-bench-"));
    tempDirs.add(dir);
    const file = join(dir, "canopy.db");
    return {
      backend,
      url: `sqlite:${file}`,
      file,
      drop: async () => {
        rmSync(dir, { recursive: true, force: true });
        tempDirs.delete(dir);
      },
    };
  }
  const schema = `canopy_bench_${randomBytes(6).toString("hex")}`;
  await pgAdmin((c) => c.query(`create schema ${schema}`));
  schemas.add(schema);
  const u = new URL(PG_BASE_URL);
  u.searchParams.set("options", `-c search_path=${schema}`);
  return {
    backend,
    url: u.toString(),
    drop: async () => {
      await pgAdmin((c) => c.query(`drop schema if exists ${schema} cascade`));
      schemas.delete(schema);
    },
  };
}

/** The Store for seeding; on SQLite with a large page cache (seeding only: the server keeps its own settings). */
async function openSeedStore(db: Database): Promise<Store> {
  if (db.backend === "postgres") return createStore(db.url, { poolSize: 6 });
  const sqlite = openSqliteDatabase(db.file!);
  sqlite.pragma("cache_size = -262144");
  const store = createKyselyStore(new Kysely({ dialect: new SqliteDialect({ database: sqlite }) }), "sqlite");
  await store.migrate();
  return store;
}

/** Bootstraps the database and seeds `w` through the Store API. */
async function prepare(db: Database, w: Workload, log: (s: string) => void): Promise<BootstrappedDatabase & { seedMs: number }> {
  const store = await openSeedStore(db);
  try {
    const boot = await bootstrapStore(store);
    const r = await seedWorkload(store, boot.environmentId, boot.accountId, boot.applicationId, w, {
      rowsPerTransaction: db.backend === "sqlite" ? 20_000 : 2_000,
      concurrency: db.backend === "sqlite" ? 1 : 4,
    });
    log(
      `  seeded ${w.name} into ${db.backend} in ${fmtMs(r.ms)} (${Object.entries(r.stages)
        .map(([k, v]) => `${k} ${fmtMs(v)}`)
        .join(", ")})`,
    );
    return { ...boot, seedMs: r.ms };
  } finally {
    await store.close();
  }
}

// ---------------------------------------------------------------------------------------------
// 1. BulkCreateAssignments streaming

interface ImportResult {
  backend: string;
  items: number;
  succeeded: number;
  failed: number;
  ms: number;
  itemsPerSec: number;
  rssBefore: number;
  rssAfter: number;
  rssPeak: number;
  firstError?: string;
  /** items/s over each tenth of the stream */
  tenths: number[];
  /** CPU during the stream */
  cpu: StreamCpu;
  /** the stream's closing summary agreed with the per-item results */
  summaryOk: boolean;
  verified: { checked: number; mismatches: number };
  seedMs: number;
}

function encodeBulkMessage(items: readonly WorkloadAssignment[]): Uint8Array {
  return toBinary(
    BulkCreateAssignmentsRequestSchema,
    create(BulkCreateAssignmentsRequestSchema, {
      items: items.map((a) => ({
        identityId: a.identityId,
        roleId: a.roleId,
        nodeId: a.nodeId,
        effectiveFrom: timestampFromMs(a.effectiveFrom),
        effectiveTo: a.effectiveTo === null ? undefined : timestampFromMs(a.effectiveTo),
      })),
    }),
  );
}

/** the position after the last varint read by readVarint (no tuple per varint: a million results read ~8 each) */
let varintEnd = 0;

function readVarint(b: Buffer, pos: number): number {
  let v = 0;
  let mul = 1;
  for (;;) {
    const byte = b[pos++];
    v += (byte & 0x7f) * mul;
    if (byte < 0x80) {
      varintEnd = pos;
      return v;
    }
    mul *= 128;
  }
}

/** Skips one field's value; returns the position after it. */
function skipField(b: Buffer, pos: number, wireType: number): number {
  if (wireType === 0) {
    readVarint(b, pos);
    return varintEnd;
  }
  if (wireType === 1) return pos + 8;
  if (wireType === 5) return pos + 4;
  if (wireType === 2) {
    const len = readVarint(b, pos);
    return varintEnd + len;
  }
  throw new Error(`unexpected wire type ${wireType}`);
}

/**
 * The status code of a BulkCreateAssignmentsResponse carrying a result, read straight off the wire
 * (result = field 1, its status = field 2, the code = field 1 of that); null for the summary. A
 * full decode of a million results would make the client, not the server, the bottleneck.
 */
function resultCode(b: Buffer): number | null {
  let pos = 0;
  while (pos < b.length) {
    const tag = readVarint(b, pos);
    const p = varintEnd;
    if (tag >>> 3 === 1 && (tag & 7) === 2) {
      const len = readVarint(b, p);
      const start = varintEnd;
      const end = start + len;
      let q = start;
      while (q < end) {
        const t = readVarint(b, q);
        const q1 = varintEnd;
        if (t >>> 3 === 2 && (t & 7) === 2) {
          const slen = readVarint(b, q1);
          const s0 = varintEnd;
          let r = s0;
          while (r < s0 + slen) {
            const st = readVarint(b, r);
            const r1 = varintEnd;
            if (st >>> 3 === 1 && (st & 7) === 0) return readVarint(b, r1);
            r = skipField(b, r1, st & 7);
          }
          return 0;
        }
        q = skipField(b, q1, t & 7);
      }
      return 0; // no status: proto3 default, OK
    }
    if (tag >>> 3 === 2) return null;
    pos = skipField(b, p, tag & 7);
  }
  return 0;
}

/** CPU over a stream, in % of one core: the bench process (the client), the server process, the whole machine (all cores) */
interface StreamCpu {
  clientPct: number;
  serverPct: number;
  machinePct: number;
}


async function streamAssignments(
  server: Server,
  apiKey: string,
  assignments: readonly WorkloadAssignment[],
  timeoutMs: number,
): Promise<{ succeeded: number; failed: number; ms: number; tenths: number[]; cpu: StreamCpu; firstError?: string; summary?: { total: number; succeeded: number; failed: number } }> {
  const rpc = rpcClient(server.port, apiKey);
  const id = (b: Buffer) => b;
  // every request message is encoded before the clock starts: the stream measures the server, not protobuf-es in the client
  const bodies: Buffer[] = [];
  for (let i = 0; i < assignments.length; i += ITEMS_PER_MESSAGE) bodies.push(Buffer.from(encodeBulkMessage(assignments.slice(i, i + ITEMS_PER_MESSAGE))));
  try {
    return await new Promise((resolvePromise, reject) => {
      const t0 = performance.now();
      const clientCpu0 = process.cpuUsage();
      const serverCpu0 = cpuMs(server.pid);
      const machine0 = machineBusyMs();
      const call = rpc.client.makeBidiStreamRequest("/canopy.v1.AssignmentService/BulkCreateAssignments", id, id, rpc.md, { deadline: Date.now() + timeoutMs });
      let sent = 0;
      let received = 0;
      let succeeded = 0;
      let failed = 0;
      let ended = false;
      let firstError: string | undefined;
      // items/s over each tenth of the stream, to show how the rate changes as the tables grow
      const tenth = Math.max(1, Math.floor(assignments.length / 10));
      const tenths: number[] = [];
      let lastMark = t0;
      let summary: { total: number; succeeded: number; failed: number } | undefined;
      const pump = () => {
        while (!ended && sent < assignments.length && sent - received < WINDOW_MESSAGES * ITEMS_PER_MESSAGE) {
          call.write(bodies[sent / ITEMS_PER_MESSAGE]);
          sent = Math.min(assignments.length, sent + ITEMS_PER_MESSAGE);
        }
        if (!ended && sent === assignments.length) {
          ended = true;
          call.end();
        }
      };
      call.on("data", (b: Buffer) => {
        const code = resultCode(b);
        if (code === null) {
          const s = fromBinary(BulkCreateAssignmentsResponseSchema, b);
          if (s.kind.case === "summary") summary = s.kind.value.summary && { ...s.kind.value.summary };
          return;
        }
        received++;
        if (received % tenth === 0) {
          const now = performance.now();
          tenths.push((tenth / (now - lastMark)) * 1000);
          lastMark = now;
        }
        if (code === 0) succeeded++;
        else {
          failed++;
          if (!firstError) {
            const r = fromBinary(BulkCreateAssignmentsResponseSchema, b);
            firstError = r.kind.case === "result" ? `${r.kind.value.status?.code} ${r.kind.value.status?.message}` : `code ${code}`;
          }
        }
        if (received % ITEMS_PER_MESSAGE === 0) pump();
      });
      call.on("error", (err: Error) => reject(err));
      call.on("end", () => {
        const ms = performance.now() - t0;
        const c = process.cpuUsage(clientCpu0);
        const cpu = { clientPct: ((c.user + c.system) / 1000 / ms) * 100, serverPct: ((cpuMs(server.pid) - serverCpu0) / ms) * 100, machinePct: ((machineBusyMs() - machine0) / ms) * 100 };
        resolvePromise({ succeeded, failed: failed + (assignments.length - received), ms, tenths, cpu, firstError, summary });
      });
      pump();
    });
  } finally {
    rpc.close();
  }
}

async function importBench(backend: "sqlite" | "postgres", w: Workload, timeoutMs: number, log: (s: string) => void, keep: boolean): Promise<{ result: ImportResult; db: Database; apiKey: string }> {
  const db = await freshDatabase(backend);
  let dropDb = true;
  try {
    const boot = await prepare(db, { ...w, assignments: [] }, log);
    const server = await spawnServer(db.url, { CANOPY_MAX_STREAM_ITEMS: String(Math.max(100_000, w.assignments.length)) });
    try {
      const rpc = rpcClient(server.port, boot.apiKey);
      let r: Awaited<ReturnType<typeof streamAssignments>>;
      let before: ReturnType<typeof rssOf>;
      let after: ReturnType<typeof rssOf>;
      let v: Awaited<ReturnType<typeof verifySample>>;
      try {
        // the first check loads the environment (catalog, tree, identities): "before" is a warm server
        await check(rpc, encodeCheck(w.checks[0], w.at), 120_000);
        before = rssOf(server.pid);
        log(`  streaming ${fmtInt(w.assignments.length)} assignments into ${backend} (server RSS ${mib(before.rss)} MiB)…`);
        r = await streamAssignments(server, boot.apiKey, w.assignments, timeoutMs);
        after = rssOf(server.pid);
        v = await verifySample(rpc, w, 1_000);
      } finally {
        rpc.close();
      }
      // the closing summary must agree with the per-item results
      const summaryOk = r.summary !== undefined && r.summary.total === w.assignments.length && r.summary.succeeded === r.succeeded;
      if (!summaryOk) r.firstError ??= r.summary ? `the summary says ${r.summary.succeeded} of ${r.summary.total} succeeded, the results ${r.succeeded}` : "no summary at the end of the stream";
      const result: ImportResult = {
        backend,
        items: w.assignments.length,
        succeeded: r.succeeded,
        failed: r.failed,
        ms: r.ms,
        itemsPerSec: (r.succeeded / r.ms) * 1000,
        rssBefore: before.rss,
        rssAfter: after.rss,
        rssPeak: after.peak,
        firstError: r.firstError,
        tenths: r.tenths,
        cpu: r.cpu,
        summaryOk,
        verified: v,
        seedMs: boot.seedMs,
      };
      dropDb = !keep;
      return { result, db, apiKey: boot.apiKey };
    } finally {
      await server.stop();
    }
  } finally {
    if (dropDb) await db.drop();
  }
}

// ---------------------------------------------------------------------------------------------
// 2. cold start, 4. churn (one server on the large workload)

interface LatencyStats {
  count: number;
  perSec: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  over20: number;
  mismatches: number;
  errors: number;
}

/** One check as sent: when it started and ended (performance.now ms) and whether its answer was right. */
interface Sample {
  start: number;
  end: number;
  ok: boolean;
}

function stats(samples: readonly Sample[], seconds: number, errors: number): LatencyStats {
  const lat = samples.map((s) => s.end - s.start);
  return {
    count: lat.length,
    perSec: lat.length / seconds,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    p999: percentile(lat, 99.9),
    max: maxOf(lat),
    over20: lat.filter((x) => x > 20).length,
    mismatches: samples.filter((s) => !s.ok).length,
    errors,
  };
}

interface ColdStart {
  listenMs: number;
  readyMs: number;
  firstCheckMs: number;
  rss: number;
  verified: { checked: number; mismatches: number; allowed: number };
}

async function coldStart(db: Database, apiKey: string, w: Workload): Promise<{ cold: ColdStart; server: Server }> {
  const server = await spawnServer(db.url);
  try {
    const rpc = rpcClient(server.port, apiKey);
    try {
      const body = encodeCheck(w.checks[0], w.at);
      const firstSent = performance.now();
      // "ready" = the first Check answered: environments load lazily on first use
      for (;;) {
        try {
          await check(rpc, body, 120_000);
          break;
        } catch (err) {
          if (performance.now() - firstSent > 120_000) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      const readyAt = performance.now();
      const rss = rssOf(server.pid).rss;
      const verified = await verifySample(rpc, w, 1_000);
      return { cold: { listenMs: server.listenMs, readyMs: readyAt - server.spawnedAt, firstCheckMs: readyAt - firstSent, rss, verified }, server };
    } finally {
      rpc.close();
    }
  } catch (err) {
    await server.stop();
    throw err;
  }
}

interface ChurnPhase {
  concurrency: number;
  baseline: LatencyStats;
  during: LatencyStats;
  /** the checks of `during` whose time in flight overlapped a write RPC */
  overlapping: LatencyStats;
  moves: number[];
  creates: number[];
}

interface Churn {
  phases: ChurnPhase[];
  subtreeNodes: number;
  writeErrors: number;
}

/**
 * Check latency while the hierarchy changes, at concurrency 16 (a loaded server) and 1 (a probe:
 * on an otherwise idle server a check's latency is its service time plus whatever it waited for).
 * Each phase: a baseline without writes, then the same load while one writer client moves each child
 * of the root (a whole subtree) under a new, assignment-free child of the root and back, with a
 * CreateNode of a leaf every 4 moves, 100 ms apart. Every node keeps its ancestors (plus at most the
 * holder), so every check keeps its answer throughout and is verified.
 */
/**
 * The churn's check client, forked into a process of its own (check-loop.ts) so that this process's
 * garbage collection — it holds the whole large workload — does not show up as check latency.
 * Times are epoch ms in both processes.
 */
async function forkCheckLoop(port: number, apiKey: string, bodies: Uint8Array[], expected: boolean[]) {
  const child = fork(CHECK_LOOP, [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  children.add(child);
  child.on("exit", () => children.delete(child));
  const pending = new Map<number, (r: Extract<LoopReply, { type: "done" }>) => void>();
  let ready: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  child.on("message", (m: LoopReply) => {
    if (m.type === "ready") ready();
    else pending.get(m.id)?.(m);
  });
  const send = (m: LoopRequest) => child.send(m);
  send({ type: "init", port, apiKey, bodies: bodies.map((b) => Buffer.from(b).toString("base64")), expected });
  await isReady;
  let nextId = 0;
  const toSamples = (xs: LoopSample[]): Sample[] => xs.map(([start, end, ok]) => ({ start, end, ok }));
  return {
    /** closed loops for `seconds`, or until `stop` resolves */
    async run(concurrency: number, offset: number, until: { seconds: number } | { stop: Promise<unknown> }) {
      const id = nextId++;
      const done = new Promise<Extract<LoopReply, { type: "done" }>>((r) => pending.set(id, r));
      send({ type: "run", id, concurrency, offset, seconds: "seconds" in until ? until.seconds : undefined });
      if ("stop" in until) void until.stop.finally(() => send({ type: "stop", id }));
      const r = await done;
      pending.delete(id);
      return { samples: toSamples(r.samples), seconds: r.seconds, errors: r.errors };
    },
    close() {
      child.disconnect();
    },
  };
}

async function churn(server: Server, apiKey: string, w: Workload, moves: number, baselineSeconds: number): Promise<Churn> {
  const writer = rpcClient(server.port, apiKey);
  const oracle = createOracle(w);
  const bodies = w.checks.map((c) => encodeCheck(c, w.at));
  const expected = w.checks.map((c) => oracle(c.identityId, c.permission, c.nodeId));
  const reader = await forkCheckLoop(server.port, apiKey, bodies, expected);
  const epochNow = () => performance.timeOrigin + performance.now();
  try {
    const root = w.nodes[0].id;
    const top = w.nodes.filter((n) => n.parentId === root).map((n) => n.id);
    const maxDepth = maxOf(w.nodes.map((x) => x.depth));
    const deep = w.nodes.filter((n) => n.depth === maxDepth);
    const rnd = prng(7);
    let writeErrors = 0;
    let writeIntervals: Array<[number, number]> = [];
    const timeWrite = async (path: string, body: Uint8Array): Promise<{ ms: number; res: Buffer }> => {
      const s = epochNow();
      const res = await writer.unary(path, body, 60_000);
      const e = epochNow();
      writeIntervals.push([s, e]);
      return { ms: e - s, res };
    };
    const createNode = (parentId: string, name: string) =>
      timeWrite("/canopy.v1.HierarchyService/CreateNode", toBinary(CreateNodeRequestSchema, create(CreateNodeRequestSchema, { parentId, type: "churn", name })));
    const holderId = fromBinary(CreateNodeResponseSchema, (await createNode(root, "churn holder")).res).node!.id;

    const phases: ChurnPhase[] = [];
    // warm-up (JIT, connections), not measured
    const warm = await reader.run(CHECK_CONCURRENCY, 0, { seconds: 1 });
    let offset = warm.samples.length + warm.errors;
    for (const concurrency of [CHECK_CONCURRENCY, 1]) {
      const base = await reader.run(concurrency, offset, { seconds: baselineSeconds });
      offset += base.samples.length + base.errors;

      writeIntervals = [];
      const moveTimes: number[] = [];
      const createTimes: number[] = [];
      // the check loops of this phase run until the writes are done
      const writes = (async () => {
        {
          for (let i = 0; i < moves; i++) {
            await sleep(100);
            const node = top[Math.floor(i / 2) % top.length];
            try {
              const body = toBinary(MoveNodeRequestSchema, create(MoveNodeRequestSchema, { id: node, newParentId: i % 2 === 0 ? holderId : root }));
              moveTimes.push((await timeWrite("/canopy.v1.HierarchyService/MoveNode", body)).ms);
            } catch {
              writeErrors++;
            }
            if (i % 4 === 3) {
              await sleep(100);
              try {
                createTimes.push((await createNode(deep[Math.floor(rnd() * deep.length)].id, `churn leaf ${concurrency}-${i}`)).ms);
              } catch {
                writeErrors++;
              }
            }
          }
          await sleep(100);
        }
      })();
      const during = await reader.run(concurrency, offset, { stop: writes });
      await writes;
      offset += during.samples.length + during.errors;
      const overlapping = during.samples.filter((s) => writeIntervals.some(([ws, we]) => s.start < we && ws < s.end));
      phases.push({
        concurrency,
        baseline: stats(base.samples, base.seconds, base.errors),
        during: stats(during.samples, during.seconds, during.errors),
        overlapping: stats(overlapping, during.seconds, 0),
        moves: moveTimes,
        creates: createTimes,
      });
    }
    return { phases, subtreeNodes: Math.round((w.nodes.length - 1) / top.length), writeErrors };
  } finally {
    reader.close();
    writer.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// 3. growth (in-process engine)

/**
 * A workload whose every identity holds exactly `perIdentity` assignments, on a tree of the given
 * fanouts (depth = fanouts + 1). Catalog, windows and check mix as in workload.ts.
 */
function growthWorkload(name: string, fanout: number[], identities: number, perIdentity: number, checks: number, seed = 42): Workload {
  const base = generateWorkload({ name, fanout, permissions: 50, roles: 20, identities, assignments: 0, checks: 0 }, seed);
  const rnd = prng(seed + 1);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const DAY = 86_400_000;
  const assignments: WorkloadAssignment[] = [];
  for (const identityId of base.identityIds) {
    const seen = new Set<string>();
    while (seen.size < perIdentity) {
      const roleId = pick(base.roles).id;
      const nodeId = pick(base.nodes).id;
      const key = `${roleId}|${nodeId}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const kind = rnd();
      let effectiveFrom = base.at - 30 * DAY;
      let effectiveTo: number | null = null;
      if (kind < 0.033) effectiveTo = base.at - DAY;
      else if (kind < 0.066) effectiveFrom = base.at + DAY;
      else if (kind < 0.1) effectiveTo = base.at + DAY;
      assignments.push({ id: `a-${assignments.length.toString(16).padStart(32, "0")}`, identityId, roleId, nodeId, effectiveFrom, effectiveTo });
    }
  }
  const out = generateChecks(rnd, base, assignments, checks);

  return { ...base, assignments, checks: out };
}

function growthSection(quick: boolean): { table: Table; failed: boolean; summary: Record<string, number> } {
  const seconds = quick ? 0.5 : 2;
  const checks = quick ? 20_000 : 50_000;
  const rows: Table["rows"] = [];
  const summary: Record<string, number> = {};
  let failed = false;
  const run = (sweep: string, label: string, w: Workload, key: string) => {
    global.gc?.();
    const { engine } = loadEngine(w);
    const v = verify(engine, w);
    if (v.mismatches > 0) failed = true;
    const tp = engineThroughput(engine, w, seconds);
    const ns = 1e9 / tp.checksPerSec;
    summary[key] = Math.round(ns);
    const maxDepth = maxOf(w.nodes.map((n) => n.depth));
    rows.push([sweep, label, fmtInt(w.nodes.length), maxDepth, fmtInt(w.identityIds.length), fmtInt(w.assignments.length), `${v.mismatches} / ${fmtInt(w.checks.length)}`, fmtInt(ns), fmtInt(tp.checksPerSec)]);
  };
  const tree5 = [10, 10, 10, 10];
  for (const k of [1, 10, 100, 1000]) {
    run("assignments / identity", String(k), growthWorkload(`k${k}`, tree5, Math.min(10_000, 100_000 / k), k, checks), `growth_ns_per_check_assignments_${k}`);
  }
  const depths: Array<[number, number[]]> = [
    [5, [10, 10, 10, 10]],
    [10, [3, 3, 3, 3, 3, 3, 3, 2, 2]],
    [20, [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1]],
  ];
  for (const [d, fanout] of depths) run("tree depth", String(d), growthWorkload(`d${d}`, fanout, 10_000, 10, checks), `growth_ns_per_check_depth_${d}`);
  return {
    failed,
    summary,
    table: {
      title: "Growth: engine check cost vs assignments per identity and vs tree depth (in-process)",
      columns: ["Sweep", "Value", "Nodes", "Depth", "Identities", "Assignments", "Mismatches / checked", "ns/check", "Checks/s"],
      rows,
      notes: [
        "Every identity holds exactly the stated number of assignments (random role and node, 10 % time-bounded); checks are 55 % aimed at a grant, 45 % random, all verified against the oracle.",
        "Depth sweep: 10,000 identities × 10 assignments; depth 10 and 20 trees narrow to fanout 2 and then 1 (chains) so the node count stays comparable.",
      ],
    },
  };
}

// ---------------------------------------------------------------------------------------------
// the section

/**
 * `importOnly` runs just the BulkCreateAssignments import (no cold start, churn or growth);
 * `importItems` imports the first N assignments of the workload instead of all of them.
 */
export async function storageSection(opts: {
  quick: boolean;
  small: Workload;
  large: Workload;
  importOnly?: boolean;
  importItems?: number;
  /** skip the import: cold start and churn on the large workload seeded through the Store API */
  coldOnly?: boolean;
}): Promise<StorageSectionResult> {
  const { quick } = opts;
  const tables: Table[] = [];
  const summary: Record<string, number> = {};
  let failed = false;
  const started = performance.now();
  const log = (s: string) => console.log(`${s} [${((performance.now() - started) / 1000).toFixed(0)} s]`);
  const errors: string[] = [];
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("exit", killChildrenSync);
  const run = async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build first`);

    // the import workload: full = the large workload's 1 M assignments; quick = 100 k
    // (quick: 10 k identities × 10 on the small tree, so that seeding identities row by row stays short)
    const fullImportW = quick
      ? growthWorkload("small tree, 10 k identities × 10 assignments", [5, 10, 10, 10], 10_000, 10, 20_000)
      : opts.large;
    const importW =
      opts.importItems !== undefined && opts.importItems < fullImportW.assignments.length
        ? { ...fullImportW, assignments: fullImportW.assignments.slice(0, opts.importItems) }
        : fullImportW;
    const importTimeout = quick ? 180_000 : 900_000;
    let sqliteImport: { db: Database; apiKey: string; complete: boolean } | undefined;
    try {
      // 1. BulkCreateAssignments streaming
      const rows: Table["rows"] = [];
      const notes: string[] = [];
      const pgDown = await postgresReachable();
      // SQLite's import, then cold start and churn on the file it wrote, then PostgreSQL's import: the
      // database server keeps working for a while after taking 1 M rows (checkpoint, autovacuum) and
      // would share the cores with the cold start and the churn.
      const importOne = async (backend: "sqlite" | "postgres") => {
        if (backend === "postgres" && pgDown) {
          rows.push(["PostgreSQL", fmtInt(importW.assignments.length), "skipped", "", "", "", "", "", "", "", ""]);
          notes.push(`PostgreSQL at ${new URL(PG_BASE_URL).host} is unreachable (${pgDown}): its import was skipped.`);
          return;
        }
        log(`storage: BulkCreateAssignments into ${backend}…`);
        try {
          const { result: r, db, apiKey } = await importBench(backend, importW, importTimeout, log, backend === "sqlite");
          if (backend === "sqlite") sqliteImport = { db, apiKey, complete: r.failed === 0 && r.succeeded === importW.assignments.length };
          log(`  ${backend}: ${fmtInt(r.succeeded)} items in ${fmtMs(r.ms)} (${fmtInt(r.itemsPerSec)}/s), ${fmtInt(r.failed)} failed, server RSS ${mib(r.rssBefore)} → ${mib(r.rssAfter)} MiB; CPU % of a core: server ${cpuPct(r.cpu.serverPct)}, client ${cpuPct(r.cpu.clientPct)}, machine ${cpuPct(r.cpu.machinePct)}`);
          if (r.failed > 0 || r.verified.mismatches > 0 || !r.summaryOk) failed = true;
          if (r.firstError) notes.push(`${backend}: first failed item: ${r.firstError}`);
          notes.push(`${backend === "sqlite" ? "SQLite" : "PostgreSQL"} items/s by tenth of the stream: ${r.tenths.map((x) => fmtInt(x)).join(", ")}.`);
          notes.push(`${backend === "sqlite" ? "SQLite" : "PostgreSQL"} CPU during the stream (% of one core): server ${cpuPct(r.cpu.serverPct)}, bench client ${cpuPct(r.cpu.clientPct)}, whole machine ${cpuPct(r.cpu.machinePct)} of ${cpus().length * 100}.`);
          const target = backend === "sqlite" ? 20_000 : 10_000;
          const growth = r.rssAfter - r.rssBefore;
          rows.push([
            backend === "sqlite" ? "SQLite" : "PostgreSQL",
            fmtInt(r.items),
            fmtInt(r.itemsPerSec),
            `${(r.ms / 1000).toFixed(1)} s`,
            fmtInt(r.failed),
            mib(r.rssBefore),
            mib(r.rssAfter),
            mib(growth),
            mib(r.rssPeak),
            `${r.verified.mismatches} / ${fmtInt(r.verified.checked)}`,
            `${r.itemsPerSec >= target ? "met" : "missed"} (≥ ${fmtInt(target)}/s)${importW.assignments.length >= 1_000_000 ? `; RSS growth ${growth < 200 * MiB ? "met" : "missed"} (< 200 MiB)` : ""}`,
          ]);
          summary[`import_${backend === "sqlite" ? "sqlite" : "pg"}_items_s`] = Math.round(r.itemsPerSec);
          summary[`import_${backend === "sqlite" ? "sqlite" : "pg"}_rss_growth_mb`] = Math.round(growth / MiB);
          summary.import_rss_growth_mb = Math.max(summary.import_rss_growth_mb ?? 0, Math.round(growth / MiB));
          summary.import_failed_items = (summary.import_failed_items ?? 0) + r.failed;
          summary.import_items = r.items;
        } catch (err) {
          failed = true;
          errors.push(`import into ${backend}: ${(err as Error).message}`);
          rows.push([backend === "sqlite" ? "SQLite" : "PostgreSQL", fmtInt(importW.assignments.length), "error", "", "", "", "", "", "", "", (err as Error).message.slice(0, 120)]);
        }
      };
      if (!opts.coldOnly) await importOne("sqlite");
      const importTableAt = tables.length;
      const pushImportTable = () => {
        if (opts.coldOnly) return;
        tables.splice(importTableAt, 0, {
        title: `BulkCreateAssignments streaming (${importW.name}: ${fmtInt(importW.assignments.length)} items)`,
        columns: ["Backend", "Items", "Items/s", "Total", "Failed", "RSS before MiB", "RSS after MiB", "RSS growth MiB", "RSS peak MiB", "Mismatches / checked after", "Target"],
        rows,
        notes: [
          `One bidi stream over gRPC (grpc-js, h2c) to a separate server process; ${fmtInt(ITEMS_PER_MESSAGE)} items per message, at most ${WINDOW_MESSAGES} messages in flight (a message is done when all its per-item results are back). CANOPY_MAX_STREAM_ITEMS is raised to the item count (default 100,000 per stream).`,
          "Catalog, hierarchy and identities are seeded through the Store API first; \"RSS before\" is the server after it loaded that (one Check), so the growth is the import's. RSS is /proc/<pid>/status VmRSS of the server, peak is VmHWM.",
          "After the import 1,000 checks are answered by the server and compared with the oracle.",
          "Order of the run: the SQLite import, then the cold start and churn below on the file it wrote, then the PostgreSQL import (PostgreSQL keeps working for a while after taking 1 M rows and would share the cores with them).",
          ...notes,
        ],
        });
      };

      if (opts.importOnly) {
        if (!opts.coldOnly) await importOne("postgres");
        pushImportTable();
        return;
      }

      // 2. cold start of the large workload from SQLite (+ 4. churn on the same server)
      log("storage: cold start from SQLite…");
      let coldDb: Database | undefined;
      let coldKey = "";
      let coldW: Workload;
      if (sqliteImport?.complete) {
        // the import just wrote exactly this workload into the file (its assignments through the API): reuse it
        coldDb = sqliteImport.db;
        coldKey = sqliteImport.apiKey;
        coldW = importW;
        sqliteImport = undefined;
      } else {
        if (sqliteImport) {
          await sqliteImport.db.drop();
          sqliteImport = undefined;
        }
        coldW = quick && !opts.coldOnly ? opts.small : opts.large;
        coldDb = await freshDatabase("sqlite");
        if (opts.coldOnly) {
          // seeded once into the seed cache (outside the repository), copied on later runs
          const seeded = await seedSqliteFile(coldW, coldDb.file!);
          log(`  ${coldW.name} ${seeded.cached ? "copied from the seed cache" : "seeded"} in ${fmtMs(seeded.ms)}`);
          coldKey = seeded.apiKey;
        } else coldKey = (await prepare(coldDb, coldW, log)).apiKey;
      }
      let server: Server | undefined;
      try {
        const { cold, server: s } = await coldStart(coldDb, coldKey, coldW);
        server = s;
        log(`  ready in ${fmtMs(cold.readyMs)}, RSS ${mib(cold.rss)} MiB, ${cold.verified.mismatches} mismatches`);
        if (cold.verified.mismatches > 0) failed = true;
        summary.cold_start_ms = Math.round(cold.readyMs);
        summary.cold_start_rss_mb = Math.round(cold.rss / MiB);
        tables.push({
          title: `Cold start from SQLite (${coldW.name}: ${fmtInt(coldW.nodes.length)} nodes, ${fmtInt(coldW.identityIds.length)} identities, ${fmtInt(coldW.assignments.length)} assignments)`,
          columns: ["Spawn → listening", "First Check (loads the environment)", "Spawn → ready", "RSS at ready MiB", "Mismatches / checked", "Target"],
          rows: [
            [
              fmtMs(cold.listenMs),
              fmtMs(cold.firstCheckMs),
              fmtMs(cold.readyMs),
              mib(cold.rss),
              `${cold.verified.mismatches} / ${fmtInt(cold.verified.checked)}`,
              `${cold.readyMs <= 5_000 ? "met" : "missed"} (≤ 5 s), ${cold.rss <= 1024 * MiB ? "met" : "missed"} (≤ 1 GiB)`,
            ],
          ],
          notes: [
            "Ready = the first Check answered: environments load lazily on first use, so the first Check pays for reading the whole environment (tree, catalog, identities, memberships, assignments) and building the engine. The file was just written, so the OS page cache is warm.",
            coldW === importW && !opts.coldOnly
              ? "The database is the one the SQLite import above wrote: catalog, tree and identities through the Store API, the assignments through BulkCreateAssignments."
              : "The database was written through the Store API (scripts/bench/seed.ts).",
            quick ? "Quick run: a small workload (seeding the large one takes over a minute); the targets apply to the full run." : "",
          ].filter(Boolean),
        });

        // 4. hierarchy churn
        log("storage: hierarchy churn…");
        const moves = quick ? 10 : 20;
        const c = await churn(server, coldKey, coldW, moves, quick ? 2 : 5);
        const [loaded, probe] = c.phases;
        for (const ph of c.phases) if (ph.during.mismatches > 0 || ph.baseline.mismatches > 0 || ph.during.errors > 0) failed = true;
        const allMoves = c.phases.flatMap((ph) => ph.moves);
        const allCreates = c.phases.flatMap((ph) => ph.creates);
        summary.churn_check_max_ms = round1(loaded.during.max);
        summary.churn_check_p99_ms = round1(loaded.during.p99);
        summary.churn_baseline_check_max_ms = round1(loaded.baseline.max);
        summary.churn_probe_check_max_ms = round1(probe.during.max);
        summary.churn_probe_baseline_max_ms = round1(probe.baseline.max);
        summary.churn_move_p50_ms = round1(percentile(allMoves, 50));
        summary.churn_move_max_ms = round1(maxOf(allMoves));
        const lrow = (phase: string, l: LatencyStats) => [
          phase,
          fmtInt(l.count),
          fmtInt(l.perSec),
          fmtMs(l.p50),
          fmtMs(l.p99),
          fmtMs(l.p999),
          fmtMs(l.max),
          fmtInt(l.over20),
          `${l.mismatches}${l.errors ? ` (+${l.errors} errors)` : ""}`,
        ];
        const rowsOf = (ph: ChurnPhase) => [
          lrow(`c=${ph.concurrency}, baseline (no writes)`, ph.baseline),
          lrow(`c=${ph.concurrency}, during ${ph.moves.length} moves + ${ph.creates.length} creates`, ph.during),
          lrow(`c=${ph.concurrency}, … of which in flight during a write`, ph.overlapping),
        ];
        tables.push({
          title: `Hierarchy churn on ${coldW.name} (${fmtInt(coldW.nodes.length)} nodes): check latency while subtrees move`,
          columns: ["Load", "Checks", "Checks/s", "p50", "p99", "p99.9", "max", "> 20 ms", "Mismatches"],
          rows: [...rowsOf(loaded), ...rowsOf(probe)],
          notes: [
            `One Node client (grpc-js, h2c) in a process of its own (scripts/bench/check-loop.ts: this process holds the whole workload, and its garbage collection would show up as check latency) sends checks in closed loops; another client writes, 100 ms apart: MoveNode of a child of the root (a ${fmtInt(c.subtreeNodes)}-node subtree) under a new, empty child of the root and back, CreateNode of a leaf every 4 moves. Every check keeps its answer throughout and is verified against the oracle.`,
            `c=${CHECK_CONCURRENCY} saturates the server (its baseline latency is queueing: concurrency ÷ throughput); c=1 is a probe of an otherwise idle server, where a check's latency is its service time plus whatever it waited for.`,
            `MoveNode RPC time (a proxy for the closure rebuild; includes validation and the durable commit): p50 ${fmtMs(percentile(allMoves, 50))}, max ${fmtMs(maxOf(allMoves))} over ${allMoves.length} moves; CreateNode p50 ${fmtMs(percentile(allCreates, 50))}, max ${fmtMs(maxOf(allCreates))}${c.writeErrors ? `; ${c.writeErrors} writes failed` : ""}.`,
            `Target "no check waits more than 20 ms while the closure is rebuilt": c=1 probe max ${fmtMs(probe.during.max)} (baseline max ${fmtMs(probe.baseline.max)}) — ${probe.during.max <= 20 ? "met" : "missed"}; at c=${CHECK_CONCURRENCY} max ${fmtMs(loaded.during.max)} (baseline max ${fmtMs(loaded.baseline.max)}).`,
          ],
        });
        if (c.writeErrors > 0) failed = true;
      } catch (err) {
        failed = true;
        errors.push(`cold start / churn: ${(err as Error).message}`);
      } finally {
        await server?.stop();
        await coldDb.drop();
      }
      if (!opts.coldOnly) await importOne("postgres");
      pushImportTable();
    } finally {
      if (sqliteImport) await sqliteImport.db.drop().catch(() => undefined);
    }

    if (opts.coldOnly) return;
    // 3. growth (in-process)
    log("storage: growth sweeps (in-process engine)…");
    try {
      const g = growthSection(quick);
      tables.push(g.table);
      failed ||= g.failed;
      Object.assign(summary, g.summary);
      log("storage: done");
    } catch (err) {
      failed = true;
      errors.push(`growth: ${(err as Error).message}`);
    }
  };
  try {
    await run();
  } catch (err) {
    failed = true;
    errors.push((err as Error).message);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("exit", killChildrenSync);
    cleanupSync();
  }
  if (errors.length > 0) {
    tables.push({ title: "Storage section errors", columns: ["Error"], rows: errors.map((e) => [e.replace(/\|/g, "\\|").replace(/\n/g, " ").slice(0, 400)]) });
  }
  return { tables, failed, summary };
}
