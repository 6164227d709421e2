import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { EchoRequestSchema, EchoResponseSchema } from "../../src/gen/canopy/bench/v1/echo_pb.js";
import { CheckBulkRequestSchema, CheckBulkResponseSchema, CheckRequestSchema, CheckResponseSchema, CheckScope } from "../../src/gen/canopy/v1/check_pb.js";
import { cerbosAllowed, cerbosRequestBuilder, cerbosSchemas, CERBOS_VERSION, installCerbos, startCerbos, type RunningCerbos } from "./cerbos-peer.js";
import { createOracle } from "./oracle.js";
import { fmtInt, fmtMiB, fmtMs, type Table } from "./report.js";
import type { ClientJob, ClientResult } from "./rpc-client.js";
import { seedSqliteFile } from "./seed-cache.js";
import type { Workload, WorkloadCheck } from "./workload.js";
import { cpuMs, machineBusyMs } from "./proc.js";

/**
 * The RPC section: Check over the wire against the transport floor (an echo on the same server
 * stack) and against Cerbos (a real out-of-process peer), with two load generators — h2load sending
 * pre-encoded frames, and a Node (Connect-node) client in its own process — plus CheckBulk. Canopy
 * runs as its own process (`node dist/src/main.js`) on a SQLite file seeded with the workload.
 * Every answer the Node client gets is compared with the oracle; every h2load body is verified once
 * before it is replayed (h2load cannot read gRPC trailers). Any mismatch fails the run.
 */

const HERE = dirname(fileURLToPath(import.meta.url));
const MAIN = resolve(HERE, "../../src/main.js");
const CLIENT = join(HERE, "rpc-client.js");
const CONCURRENCY = [1, 16, 64];
/** checks the Node client cycles through per cell (every answer verified) */
const NODE_CHECKS = 20_000;

/**
 * check / echo: Canopy's fast path (src/server/fast-path.ts), the default; check-connect / echo-connect:
 * the same calls on a second Canopy process with CANOPY_FAST_PATH=false (the Connect adapter's stack).
 */
type Target = "check" | "echo" | "cerbos" | "check-connect" | "echo-connect";
type Protocol = "grpc" | "connect";

interface Cell {
  generator: "h2load" | "node";
  target: Target;
  protocol: Protocol;
  concurrency: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  errorSample: string;
  /** "0 / 12,345" or how bodies were verified */
  verified: string;
  clientCpu?: number;
  serverCpu?: number;
  machineCpu?: number;
}

/** Children still running; killed on exit whatever happens. */
const children = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  if (!exitHook) {
    exitHook = true;
    process.once("exit", () => {
      for (const c of children) c.kill("SIGKILL");
    });
  }
  return child;
}

function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  return new Promise((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done();
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => (clearTimeout(timer), done()));
    child.kill("SIGTERM");
  });
}


function rssBytes(pid: number | undefined): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Writes messages as u32 LE length + bytes (rpc-client's readFrames). */
function writeFrames(file: string, messages: Uint8Array[]): void {
  const parts: Buffer[] = [];
  for (const m of messages) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(m.length);
    parts.push(len, Buffer.from(m));
  }
  writeFileSync(file, Buffer.concat(parts));
}

/** A gRPC length-prefixed message: flag 0 (uncompressed), u32 BE length, bytes. */
function grpcFrame(bytes: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([head, Buffer.from(bytes)]);
}

interface Canopy {
  child: ChildProcess;
  url: string;
  startMs: number;
}

function startCanopy(databaseUrl: string, env: Record<string, string> = {}): Promise<Canopy> {
  const t0 = performance.now();
  return new Promise((resolvePromise, reject) => {
    const child = track(
      spawn(process.execPath, [MAIN], {
        env: { ...process.env, CANOPY_HOST: "127.0.0.1", CANOPY_PORT: "0", CANOPY_DATABASE_URL: databaseUrl, CANOPY_BENCH_ECHO: "true", CANOPY_LOG_LEVEL: "info", ...env },
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
    let out = "";
    let found = false;
    const timer = setTimeout(() => reject(new Error(`canopy did not start within 60 s: ${out.slice(-2000)}`)), 60_000);
    // keep draining both pipes for the server's whole life, or it blocks on a full pipe
    const onData = (d: Buffer) => {
      out = (out + d).slice(-8000);
      const m = found ? null : /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (m) {
        found = true;
        clearTimeout(timer);
        resolvePromise({ child, url: m[1], startMs: performance.now() - t0 });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (!found) reject(new Error(`canopy exited with ${code}: ${out.slice(-2000)}`));
    });
  });
}

/** One raw HTTP/2 POST (node:http2, no Connect): what h2load will send, answered once. */
function rawPost(url: string, path: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; grpcStatus?: string; grpcMessage?: string; data: Buffer }> {
  return new Promise((resolvePromise, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": path, ...headers });
    const chunks: Buffer[] = [];
    let status = 0;
    let grpcStatus: string | undefined;
    let grpcMessage: string | undefined;
    req.on("response", (h) => {
      status = Number(h[":status"]);
      grpcStatus ??= h["grpc-status"] as string | undefined;
    });
    req.on("trailers", (t) => {
      grpcStatus = t["grpc-status"] as string | undefined;
      grpcMessage = t["grpc-message"] as string | undefined;
    });
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("error", reject);
    req.on("end", () => {
      session.close();
      resolvePromise({ status, grpcStatus, grpcMessage, data: Buffer.concat(chunks) });
    });
    req.end(body);
  });
}

/** What each protocol needs on the wire for h2load and for the one-off verification. */
function wire(protocol: Protocol, bytes: Uint8Array, apiKey?: string): { headers: Record<string, string>; body: Buffer } {
  const auth: Record<string, string> = apiKey ? { "x-api-key": apiKey } : {};
  return protocol === "grpc"
    ? { headers: { "content-type": "application/grpc", te: "trailers", ...auth }, body: grpcFrame(bytes) }
    : { headers: { "content-type": "application/proto", "connect-protocol-version": "1", ...auth }, body: Buffer.from(bytes) };
}

/** The response message of a raw call, or an error naming what came back instead. */
function unwrap(protocol: Protocol, r: { status: number; grpcStatus?: string; grpcMessage?: string; data: Buffer }): Uint8Array {
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.data.toString("utf8").slice(0, 200)}`);
  if (protocol === "connect") return r.data;
  if (r.grpcStatus !== "0") throw new Error(`grpc-status ${r.grpcStatus}: ${r.grpcMessage ?? ""}`);
  return r.data.subarray(5, 5 + r.data.readUInt32BE(1));
}

interface H2Run {
  ok: number;
  errors: number;
  seconds: number;
  latencies: number[];
  serverCpuMs: number;
  machineMs: number;
  sample: string;
}

/** One h2load run: one connection, `c` streams in flight, the same pre-encoded body every time. */
async function h2loadRun(dir: string, url: string, body: Buffer, headers: Record<string, string>, c: number, seconds: number, warmup: number, serverPid: number | undefined): Promise<H2Run> {
  const data = join(dir, "h2load-body.bin");
  const log = join(dir, "h2load.log");
  writeFileSync(data, body);
  rmSync(log, { force: true });
  const args = ["-c", "1", "-m", String(c), "-t", "1", "-D", `${Math.round(seconds * 1000)}ms`, "--warm-up-time", `${Math.round(warmup * 1000)}ms`, "-d", data, "--log-file", log];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  args.push(url);
  const cpu0 = cpuMs(serverPid);
  const busy0 = machineBusyMs();
  const out = await new Promise<string>((done, fail) => {
    const child = track(spawn("h2load", args, { stdio: ["ignore", "pipe", "pipe"] }));
    let text = "";
    child.stdout!.on("data", (d) => (text += d));
    child.stderr!.on("data", (d) => (text += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), (seconds + warmup + 30) * 1000);
    child.once("exit", (code) => (clearTimeout(timer), code === 0 ? done(text) : fail(new Error(`h2load exited with ${code}: ${text.slice(-1000)}`))));
  });
  const serverCpuMs = cpuMs(serverPid) - cpu0;
  const machineMs = machineBusyMs() - busy0;
  const finished = /finished in ([\d.]+)(m?s)/.exec(out);
  const reqs = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  if (!finished || !reqs || !codes) throw new Error(`cannot parse h2load output: ${out.slice(-1000)}`);
  const errors = Number(reqs[5]) + Number(reqs[6]) + Number(reqs[7]) + Number(codes[3]) + Number(codes[4]);
  const latencies: number[] = [];
  for (const line of readFileSync(log, "utf8").split("\n")) {
    const [, status, us] = line.split("\t");
    if (status === "200") latencies.push(Number(us) / 1000);
  }
  return {
    ok: Number(codes[1]),
    errors,
    // "finished in" includes the warm-up; h2load counts (and logs) only the -D window
    seconds: Math.round(seconds * 1000) / 1000,
    latencies,
    serverCpuMs,
    machineMs,
    sample: errors ? `h2load: ${reqs[0]}; ${codes[0]}` : "",
  };
}

function quantiles(latencies: number[]): { p50: number; p99: number } {
  const sorted = Float64Array.from(latencies).sort();
  const q = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] : Number.NaN);
  return { p50: q(0.5), p99: q(0.99) };
}

/** Runs rpc-client.js for one cell; the server's CPU is sampled over the client's measured window. */
function nodeClient(dir: string, job: ClientJob, serverPid: number | undefined): Promise<ClientResult & { serverCpu: number; machineCpu: number }> {
  const file = join(dir, `job-${job.target}-${job.protocol}-${job.concurrency}-${job.batch ?? 1}.json`);
  writeFileSync(file, JSON.stringify(job));
  return new Promise((done, fail) => {
    const child = track(spawn(process.execPath, [CLIENT, file], { stdio: ["ignore", "pipe", "pipe"] }));
    let out = "";
    let err = "";
    let cpu0 = 0;
    let busy0 = 0;
    let cpu = Number.NaN;
    let machine = Number.NaN;
    let t0 = 0;
    child.stdout!.on("data", (d: Buffer) => {
      out += d;
      if (!t0 && out.includes("START\n")) {
        t0 = performance.now();
        cpu0 = cpuMs(serverPid);
        busy0 = machineBusyMs();
      }
      if (Number.isNaN(cpu) && out.includes("END\n")) {
        const ms = performance.now() - t0;
        cpu = ((cpuMs(serverPid) - cpu0) / ms) * 100;
        machine = ((machineBusyMs() - busy0) / ms) * 100;
      }
    });
    child.stderr!.on("data", (d) => (err = (err + d).slice(-4000)));
    const timer = setTimeout(() => child.kill("SIGKILL"), (job.warmupSeconds + job.seconds + 60) * 1000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      const last = out.trim().split("\n").pop() ?? "";
      if (code !== 0 || !last.startsWith("{")) return fail(new Error(`rpc-client exited with ${code}: ${err.trim() || out.slice(-1000)}`));
      done({ ...(JSON.parse(last) as ClientResult), serverCpu: cpu, machineCpu: machine });
    });
  });
}

/** Up to `n` checks, alternating allowed and denied, from different depths: the h2load bodies. */
function representativeChecks(w: Workload, oracle: (i: string, p: string, n: string) => boolean, n: number): WorkloadCheck[] {
  const depth = new Map(w.nodes.map((x) => [x.id, x.depth]));
  const picked: WorkloadCheck[] = [];
  const seen = new Set<string>();
  for (const c of w.checks) {
    if (picked.length >= n) break;
    const want = picked.length % 2 === 0;
    const key = `${want}|${depth.get(c.nodeId)}`;
    if (oracle(c.identityId, c.permission, c.nodeId) !== want || (seen.has(key) && picked.length < 6)) continue;
    seen.add(key);
    picked.push(c);
  }
  return picked;
}

const label: Record<Target, string> = {
  check: "Canopy Check (fast path)",
  echo: "Canopy echo, fast path (Check's floor)",
  cerbos: `Cerbos ${CERBOS_VERSION} CheckResources`,
  "check-connect": "Canopy Check, Connect stack (CANOPY_FAST_PATH=false)",
  "echo-connect": "Canopy echo, Connect stack (reference floor)",
};
const fmtRate = (n: number) => (Number.isFinite(n) ? fmtInt(n) : "—");
const fmtLat = (ms: number) => (Number.isFinite(ms) ? fmtMs(ms) : "—");
const fmtPct = (n: number | undefined) => (n !== undefined && Number.isFinite(n) ? n.toFixed(0) : "—");

/**
 * Runs the section. `quick`: ~1 s per cell (full: ~10 s); `secondsPerCell` overrides either. Returns
 * the tables, whether any answer disagreed with the oracle, and the numbers the issue's targets need
 * (req/s per target/protocol/concurrency — h2load unless suffixed `_node` —, ratios, checks/s of
 * CheckBulk per batch size, and the mismatch count).
 */
export async function rpcSection(opts: { quick: boolean; workload: Workload; secondsPerCell?: number }): Promise<{ tables: Table[]; failed: boolean; summary: Record<string, number> }> {
  const w = opts.workload;
  const seconds = opts.secondsPerCell ?? (opts.quick ? 1 : 10);
  const warmup = opts.quick ? 0.5 : 1;
  const h2Bodies = opts.quick ? 2 : 5;
  const dir = mkdtempSync(join(tmpdir(), "canopy-bench-rpc-"));
  const summary: Record<string, number> = {};
  const cells: Cell[] = [];
  const setupRows: Table["rows"] = [];
  const skipped: string[] = [];
  let failed = false;
  let mismatches = 0;
  let canopy: Canopy | undefined;
  let reference: Canopy | undefined;
  let cerbos: RunningCerbos | undefined;
  const log = (s: string) => console.log(`  rpc: ${s}`);
  // a signal must not leave servers behind: stop them, then exit as the signal would have
  const onSignal = (signal: NodeJS.Signals) => {
    for (const c of children) c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  try {
    const oracle = createOracle(w);
    const seed = await seedSqliteFile(w, join(dir, "canopy.db"));
    setupRows.push([seed.cached ? "Seeded SQLite file copied from the seed cache (/tmp/canopy-bench-cache)" : "Seed SQLite through the Store API (bootstrap + workload rows)", fmtMs(seed.ms), "—"]);
    log(`${seed.cached ? "copied the cached seed of" : "seeded"} ${fmtInt(w.assignments.length)} assignments in ${fmtMs(seed.ms)}`);
    canopy = await startCanopy(`sqlite:${join(dir, "canopy.db")}`);
    const pid = canopy.child.pid;
    setupRows.push(["Canopy process start → listening", fmtMs(canopy.startMs), "—"]);
    // the reference: the same database served through the Connect adapter only (the stack before the fast path)
    reference = await startCanopy(`sqlite:${join(dir, "canopy.db")}`, { CANOPY_FAST_PATH: "false" });
    const refPid = reference.child.pid;
    setupRows.push(["Reference Canopy (CANOPY_FAST_PATH=false) start → listening", fmtMs(reference.startMs), "—"]);

    // request material, every message built once with the generated schemas
    const at = timestampFromMs(w.at);
    const checkMsg = (c: WorkloadCheck) => create(CheckRequestSchema, { identityId: c.identityId, permission: c.permission, scope: CheckScope.NODE, nodeId: c.nodeId, at });
    const sample = w.checks.slice(0, NODE_CHECKS);
    const expected = Buffer.from(sample.map((c) => (oracle(c.identityId, c.permission, c.nodeId) ? 1 : 0)));
    const checkBytes = sample.map((c) => toBinary(CheckRequestSchema, checkMsg(c)));
    const payloadSize = Math.round(checkBytes.reduce((s, b) => s + b.length, 0) / checkBytes.length);
    const echoBytes = [toBinary(EchoRequestSchema, create(EchoRequestSchema, { payload: new Uint8Array(payloadSize).fill(0x61) }))];
    writeFrames(join(dir, "check.req"), checkBytes);
    writeFileSync(join(dir, "check.expected"), expected);
    writeFrames(join(dir, "echo.req"), echoBytes);

    // the environment loads on first use: time the first answer, then check one body per protocol
    const first = wire("grpc", checkBytes[0], seed.apiKey);
    for (const server of [canopy, reference]) {
      const t0 = performance.now();
      const firstAnswer = fromBinary(CheckResponseSchema, unwrap("grpc", await rawPost(server.url, "/canopy.v1.CheckService/Check", first.headers, first.body)));
      setupRows.push([`First Check after start (loads the environment into the engine)${server === reference ? ", reference" : ""}`, fmtMs(performance.now() - t0), fmtMiB(rssBytes(server.child.pid))]);
      if (firstAnswer.allowed !== (expected[0] === 1)) throw new Error("the first Check disagrees with the oracle");
    }

    // warm the server up (JIT, and the garbage of the environment load) before any cell is measured:
    // measured cold, the first cells ran ~2x slower than the same cells a few seconds later
    const warmupJob = (target: "check" | "echo", protocol: Protocol, secs: number, baseUrl = canopy!.url): ClientJob => ({
      target,
      protocol,
      baseUrl,
      apiKey: target === "check" ? seed.apiKey : undefined,
      concurrency: 16,
      warmupSeconds: 0,
      seconds: secs,
      requestsFile: join(dir, `${target}.req`),
      expectedFile: target === "check" ? join(dir, "check.expected") : undefined,
    });
    const t1 = performance.now();
    for (const protocol of ["grpc", "connect"] as const) {
      mismatches += (await nodeClient(dir, warmupJob("check", protocol, opts.quick ? 1.5 : 4), pid)).mismatches;
      await nodeClient(dir, warmupJob("echo", protocol, opts.quick ? 0.5 : 1), pid);
      mismatches += (await nodeClient(dir, warmupJob("check", protocol, opts.quick ? 1 : 2, reference.url), refPid)).mismatches;
      await nodeClient(dir, warmupJob("echo", protocol, opts.quick ? 0.5 : 1, reference.url), refPid);
    }
    setupRows.push(["Servers' warm-up before measuring (Check and echo, both protocols, c=16; both Canopy processes)", fmtMs(performance.now() - t1), fmtMiB(rssBytes(pid))]);

    // h2load bodies: a few representative checks, each verified once over the exact bytes h2load sends
    const h2 = spawnSync("h2load", ["--version"], { encoding: "utf8" });
    let haveH2load = h2.status === 0;
    if (!haveH2load) {
      console.log("  rpc: h2load not found; installing Debian's nghttp2-client (apt-get install -y nghttp2-client)…");
      const apt = spawnSync("sh", ["-c", "apt-get install -y -q nghttp2-client || (apt-get update -q && apt-get install -y -q nghttp2-client)"], { encoding: "utf8", timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
      haveH2load = spawnSync("h2load", ["--version"]).status === 0;
      if (!haveH2load) {
        const why = `h2load unavailable: \`apt-get install -y nghttp2-client\` failed (${(apt.stderr || apt.error?.message || "").trim().split("\n").pop()}); install it and rerun`;
        console.log(`  rpc: ${why}`);
        skipped.push(`h2load rows skipped — ${why}.`);
      }
    }
    const h2Checks = representativeChecks(w, oracle, h2Bodies);
    const h2CheckBytes = h2Checks.map((c) => toBinary(CheckRequestSchema, checkMsg(c)));
    for (const protocol of ["grpc", "connect"] as const) {
      for (const server of [canopy, reference]) {
        for (const [i, bytes] of h2CheckBytes.entries()) {
          const { headers, body } = wire(protocol, bytes, seed.apiKey);
          const res = fromBinary(CheckResponseSchema, unwrap(protocol, await rawPost(server.url, "/canopy.v1.CheckService/Check", headers, body)));
          const c = h2Checks[i];
          if (res.allowed !== oracle(c.identityId, c.permission, c.nodeId)) {
            mismatches++;
            log(`MISMATCH on h2load body ${i} (${protocol}${server === reference ? ", reference" : ""})`);
          }
        }
        const { headers, body } = wire(protocol, echoBytes[0]);
        const echoed = fromBinary(EchoResponseSchema, unwrap(protocol, await rawPost(server.url, "/canopy.bench.v1.EchoService/Echo", headers, body)));
        if (echoed.payload.length !== payloadSize) throw new Error("echo returned a different payload");
      }
    }

    // Cerbos: installed into a scratch dir, policies from the workload, answers verified
    let cerbosBodies: Buffer[] = [];
    const install = installCerbos();
    if ("skipped" in install) {
      skipped.push(`Cerbos rows skipped — ${install.skipped}.`);
      log(install.skipped);
    } else {
      try {
        cerbos = await startCerbos(install.binary, w, join(dir, "cerbos"));
        setupRows.push([`Cerbos ${CERBOS_VERSION} start → healthy (compiles ${w.roles.length} derived roles, ${w.permissionKeys.length} actions)`, fmtMs(cerbos.startMs), fmtMiB(rssBytes(cerbos.child.pid))]);
        const build = cerbosRequestBuilder(w);
        const { request, response } = cerbosSchemas();
        writeFrames(join(dir, "cerbos.req"), sample.map((c) => toBinary(request, build(c) as MessageShape<DescMessage>)));
        cerbosBodies = h2Checks.map((c) => Buffer.from(toBinary(request, build(c) as MessageShape<DescMessage>)));
        for (const [i, bytes] of cerbosBodies.entries()) {
          const { headers, body } = wire("grpc", bytes);
          const res = fromBinary(response, unwrap("grpc", await rawPost(cerbos.grpcUrl, "/cerbos.svc.v1.CerbosService/CheckResources", headers, body)));
          const c = h2Checks[i];
          if (cerbosAllowed(res, c.permission) !== oracle(c.identityId, c.permission, c.nodeId)) {
            mismatches++;
            log(`MISMATCH: Cerbos h2load body ${i}`);
          }
        }
      } catch (err) {
        const why = `Cerbos did not start: ${err instanceof Error ? err.message : String(err)}`.slice(0, 300);
        skipped.push(`Cerbos rows skipped — ${why}.`);
        log(why);
        await cerbos?.close();
        cerbos = undefined;
      }
    }

    // the Node client measures the default stack; h2load also measures the Connect stack (before/after the fast path)
    const targets = (protocol: Protocol): Target[] => (protocol === "grpc" && cerbos ? ["check", "echo", "cerbos"] : ["check", "echo"]);
    const h2Targets = (protocol: Protocol): Target[] => [...targets(protocol), "check-connect", "echo-connect"];
    const isReference = (t: Target) => t === "check-connect" || t === "echo-connect";
    const urlOf = (t: Target) => (t === "cerbos" ? cerbos!.grpcUrl : isReference(t) ? reference!.url : canopy!.url);
    const pidOf = (t: Target) => (t === "cerbos" ? cerbos!.child.pid : isReference(t) ? refPid : pid);
    const pathOf: Record<Target, string> = {
      check: "/canopy.v1.CheckService/Check",
      echo: "/canopy.bench.v1.EchoService/Echo",
      cerbos: "/cerbos.svc.v1.CerbosService/CheckResources",
      "check-connect": "/canopy.v1.CheckService/Check",
      "echo-connect": "/canopy.bench.v1.EchoService/Echo",
    };
    const isCheck = (t: Target) => t === "check" || t === "check-connect";

    // h2load: one connection, c streams in flight, pre-encoded bodies. The targets of a cell take
    // turns in short runs (check, echo, cerbos, check, …) so that a change in background load hits
    // them alike and their ratio stays fair.
    if (haveH2load) {
      for (const c of CONCURRENCY) {
        for (const protocol of ["grpc", "connect"] as const) {
          const runs = new Map<Target, H2Run[]>();
          for (let k = 0; k < h2Bodies; k++) {
            for (const target of h2Targets(protocol)) {
              const raw = isCheck(target) ? h2CheckBytes : target === "cerbos" ? cerbosBodies : echoBytes;
              const { headers, body } = wire(protocol, raw[k % raw.length], isCheck(target) ? seed.apiKey : undefined);
              const r = await h2loadRun(dir, `${urlOf(target)}${pathOf[target]}`, body, headers, c, seconds / h2Bodies, warmup / 2, pidOf(target));
              runs.set(target, [...(runs.get(target) ?? []), r]);
            }
          }
          for (const [target, rs] of runs) {
            const sum = (f: (r: H2Run) => number) => rs.reduce((s, r) => s + f(r), 0);
            const secs = sum((r) => r.seconds);
            const { p50, p99 } = quantiles(rs.flatMap((r) => r.latencies));
            const errors = sum((r) => r.errors);
            const verified = !isCheck(target) && target !== "cerbos" ? "payload checked once" : `each of ${Math.min(h2Bodies, (target === "cerbos" ? cerbosBodies : h2CheckBytes).length)} bodies once`;
            const cell: Cell = {
              generator: "h2load",
              target,
              protocol,
              concurrency: c,
              reqPerSec: sum((r) => r.ok) / secs,
              p50Ms: p50,
              p99Ms: p99,
              errors,
              errorSample: rs.find((r) => r.sample)?.sample ?? "",
              verified,
              // warm-up included in the CPU window: h2load reports no exact start of its measurement
              serverCpu: (sum((r) => r.serverCpuMs) / (secs * 1000 + warmup * 500 * rs.length)) * 100,
              machineCpu: (sum((r) => r.machineMs) / (secs * 1000 + warmup * 500 * rs.length)) * 100,
            };
            cells.push(cell);
            log(`h2load ${target} ${protocol} c=${c}: ${fmtInt(cell.reqPerSec)} req/s, p50 ${fmtLat(p50)}, p99 ${fmtLat(p99)}${errors ? `, ${errors} errors` : ""}`);
          }
        }
      }
    }

    // the Node client: Connect-node in its own process, every answer verified
    for (const c of CONCURRENCY) {
      for (const protocol of ["grpc", "connect"] as const) {
        for (const target of targets(protocol)) {
          const job: ClientJob = {
            target: target as ClientJob["target"],
            protocol,
            baseUrl: urlOf(target),
            apiKey: target === "check" ? seed.apiKey : undefined,
            concurrency: c,
            warmupSeconds: warmup,
            seconds,
            requestsFile: join(dir, `${target}.req`),
            expectedFile: target === "echo" ? undefined : join(dir, "check.expected"),
          };
          const r = await nodeClient(dir, job, pidOf(target));
          mismatches += r.mismatches;
          cells.push({
            generator: "node",
            target,
            protocol,
            concurrency: c,
            reqPerSec: r.callsPerSec,
            p50Ms: r.p50Ms,
            p99Ms: r.p99Ms,
            errors: r.errors,
            errorSample: r.errorSample,
            verified: target === "echo" ? "payload length" : `${fmtInt(r.mismatches)} / ${fmtInt(r.checked)}`,
            clientCpu: r.clientCpu,
            serverCpu: r.serverCpu,
            machineCpu: r.machineCpu,
          });
          log(`node ${target} ${protocol} c=${c}: ${fmtInt(r.callsPerSec)} req/s, p50 ${fmtLat(r.p50Ms)}, p99 ${fmtLat(r.p99Ms)}${r.errors ? `, ${r.errors} errors (${r.errorSample})` : ""}${r.mismatches ? `, ${r.mismatches} MISMATCHES` : ""}`);
        }
      }
    }

    // CheckBulk over gRPC: every item of every answer verified
    const bulkRows: Table["rows"] = [];
    const bulkCells: Array<{ batch: number; concurrency: number; gzip: boolean }> = [
      { batch: 100, concurrency: 1, gzip: false },
      { batch: 1000, concurrency: 1, gzip: false },
      { batch: 1000, concurrency: 4, gzip: false },
      { batch: 1000, concurrency: 1, gzip: true },
    ];
    const bulkExpected = Buffer.from(w.checks.map((c) => (oracle(c.identityId, c.permission, c.nodeId) ? 1 : 0)));
    writeFileSync(join(dir, "bulk.expected"), bulkExpected);
    for (const batch of [...new Set(bulkCells.map((b) => b.batch))]) {
      const reqs: Uint8Array[] = [];
      for (let i = 0; i + batch <= w.checks.length; i += batch) {
        const items = w.checks.slice(i, i + batch).map((c) => ({ identityId: c.identityId, permission: c.permission, scope: CheckScope.NODE, nodeId: c.nodeId }));
        reqs.push(toBinary(CheckBulkRequestSchema, create(CheckBulkRequestSchema, { items, at })));
      }
      writeFrames(join(dir, `bulk-${batch}.req`), reqs);
    }
    for (const b of bulkCells) {
      const r = await nodeClient(
        dir,
        { target: "bulk", protocol: "grpc", baseUrl: canopy.url, apiKey: seed.apiKey, concurrency: b.concurrency, warmupSeconds: warmup, seconds, requestsFile: join(dir, `bulk-${b.batch}.req`), expectedFile: join(dir, "bulk.expected"), batch: b.batch, gzip: b.gzip },
        pid,
      );
      mismatches += r.mismatches;
      const checksPerSec = r.callsPerSec * b.batch;
      if (!b.gzip) summary[`checkbulk_${b.batch}_node`] = Math.max(summary[`checkbulk_${b.batch}_node`] ?? 0, checksPerSec);
      bulkRows.push([
        "Node (Connect-node)",
        "fast path",
        fmtInt(b.batch),
        b.concurrency,
        b.gzip ? "gzip (Connect-node default)" : "none",
        fmtInt(r.callsPerSec),
        fmtInt(checksPerSec),
        fmtLat(r.p50Ms),
        fmtLat(r.p99Ms),
        `${fmtInt(r.mismatches)} / ${fmtInt(r.checked)}`,
        r.errors ? `${r.errors} (${r.errorSample})` : "0",
        `${fmtPct(r.clientCpu)} / ${fmtPct(r.serverCpu)} / ${fmtPct(r.machineCpu)}`,
      ]);
      log(`CheckBulk ${b.batch}×${b.concurrency}${b.gzip ? " gzip" : ""}: ${fmtInt(checksPerSec)} checks/s${r.mismatches ? `, ${r.mismatches} MISMATCHES` : ""}`);
    }

    // CheckBulk with h2load: one pre-encoded body per batch size (the first checks of the workload),
    // answered once beforehand by each server and compared item by item with the oracle
    if (haveH2load) {
      const bulkPath = "/canopy.v1.CheckService/CheckBulk";
      const bulkBodies = new Map<number, Buffer>();
      for (const batch of [100, 1000]) {
        const items = w.checks.slice(0, batch);
        const bytes = toBinary(CheckBulkRequestSchema, create(CheckBulkRequestSchema, { items: items.map((c) => ({ identityId: c.identityId, permission: c.permission, scope: CheckScope.NODE, nodeId: c.nodeId })), at }));
        const { headers, body } = wire("grpc", bytes, seed.apiKey);
        bulkBodies.set(batch, body);
        for (const server of [canopy, reference]) {
          const res = fromBinary(CheckBulkResponseSchema, unwrap("grpc", await rawPost(server.url, bulkPath, headers, body)));
          const wrong = items.filter((c, k) => res.results[k]?.allowed !== oracle(c.identityId, c.permission, c.nodeId)).length + Math.abs(res.results.length - items.length);
          if (wrong) {
            mismatches += wrong;
            log(`MISMATCH: ${wrong} items of the h2load CheckBulk body of ${batch}${server === reference ? " (reference)" : ""}`);
          }
        }
      }
      const h2BulkCells: Array<{ batch: number; concurrency: number; ref: boolean }> = [
        { batch: 100, concurrency: 1, ref: false },
        { batch: 1000, concurrency: 1, ref: false },
        { batch: 1000, concurrency: 4, ref: false },
        { batch: 1000, concurrency: 1, ref: true },
      ];
      for (const b of h2BulkCells) {
        const server = b.ref ? reference : canopy;
        const r = await h2loadRun(dir, `${server.url}${bulkPath}`, bulkBodies.get(b.batch)!, wire("grpc", new Uint8Array(0), seed.apiKey).headers, b.concurrency, seconds, warmup, server.child.pid);
        const callsPerSec = r.ok / r.seconds;
        const checksPerSec = callsPerSec * b.batch;
        const key = `checkbulk_${b.batch}${b.ref ? "_connect_stack" : ""}`;
        summary[key] = Math.max(summary[key] ?? 0, checksPerSec);
        const { p50, p99 } = quantiles(r.latencies);
        const window = seconds * 1000 + warmup * 1000;
        bulkRows.push([
          "h2load",
          b.ref ? "Connect stack (CANOPY_FAST_PATH=false)" : "fast path",
          fmtInt(b.batch),
          b.concurrency,
          "none",
          fmtInt(callsPerSec),
          fmtInt(checksPerSec),
          fmtLat(p50),
          fmtLat(p99),
          "body checked once",
          r.errors ? `${r.errors} (${r.sample})` : "0",
          `— / ${fmtPct((r.serverCpuMs / window) * 100)} / ${fmtPct((r.machineMs / window) * 100)}`,
        ]);
        log(`h2load CheckBulk ${b.batch}×${b.concurrency}${b.ref ? " (Connect stack)" : ""}: ${fmtInt(checksPerSec)} checks/s`);
      }
    }

    // summary: h2load is the primary load generator (it is not the bottleneck), the Node client second
    const find = (g: Cell["generator"], t: Target, p: Protocol, c: number) => cells.find((x) => x.generator === g && x.target === t && x.protocol === p && x.concurrency === c);
    const ratioRows: Table["rows"] = [];
    let minRatio = Number.POSITIVE_INFINITY;
    let minRatioNode = Number.POSITIVE_INFINITY;
    for (const g of ["h2load", "node"] as const) {
      for (const p of ["grpc", "connect"] as const) {
        const row: Array<string | number> = [g === "h2load" ? "h2load" : "Node (Connect-node)", p === "grpc" ? "gRPC" : "Connect"];
        for (const c of CONCURRENCY) {
          const check = find(g, "check", p, c);
          const echo = find(g, "echo", p, c);
          const suffix = g === "node" ? "_node" : "";
          if (check) summary[`check_${p}_c${c}${suffix}`] = check.reqPerSec;
          if (echo) summary[`echo_${p}_c${c}${suffix}`] = echo.reqPerSec;
          for (const t of ["check-connect", "echo-connect"] as const) {
            const x = find(g, t, p, c);
            if (x) summary[`${t.replace("-connect", "")}_${p}_c${c}_connect_stack${suffix}`] = x.reqPerSec;
          }
          if (check && echo) {
            const ratio = check.reqPerSec / echo.reqPerSec;
            summary[`check_echo_ratio_${p}_c${c}${suffix}`] = ratio;
            if (g === "h2load") minRatio = Math.min(minRatio, ratio);
            else minRatioNode = Math.min(minRatioNode, ratio);
            row.push(`${ratio.toFixed(2)}× ${ratio >= 0.8 ? "met" : "MISSED"}`);
          } else row.push("—");
        }
        const check64 = find(g, "check", p, 64);
        const cerbos64 = find(g, "cerbos", "grpc", 64);
        if (p === "grpc" && check64 && cerbos64) {
          const ratio = check64.reqPerSec / cerbos64.reqPerSec;
          summary[`check_cerbos_ratio_c64${g === "node" ? "_node" : ""}`] = ratio;
          row.push(`${ratio.toFixed(2)}× ${ratio >= 1 ? "met" : "MISSED"}`);
        } else row.push(p === "grpc" ? "skipped" : "n/a (Cerbos speaks gRPC)");
        if (cells.some((x) => x.generator === g)) ratioRows.push(row);
      }
    }
    // the stack before the fast path, for comparison (not a target)
    for (const p of ["grpc", "connect"] as const) {
      if (!cells.some((x) => x.target === "check-connect" && x.protocol === p)) continue;
      const row: Array<string | number> = ["h2load, Connect stack (CANOPY_FAST_PATH=false), for reference", p === "grpc" ? "gRPC" : "Connect"];
      for (const c of CONCURRENCY) {
        const check = find("h2load", "check-connect", p, c);
        const echo = find("h2load", "echo-connect", p, c);
        row.push(check && echo ? `${(check.reqPerSec / echo.reqPerSec).toFixed(2)}×` : "—");
      }
      const check64 = find("h2load", "check-connect", p, 64);
      const cerbos64 = find("h2load", "cerbos", "grpc", 64);
      row.push(p === "grpc" && check64 && cerbos64 ? `${(check64.reqPerSec / cerbos64.reqPerSec).toFixed(2)}×` : "—");
      ratioRows.push(row);
    }
    for (const x of cells) if (x.target === "cerbos") summary[`cerbos_c${x.concurrency}${x.generator === "node" ? "_node" : ""}`] = x.reqPerSec;
    if (Number.isFinite(minRatio)) summary.check_echo_ratio_min = minRatio;
    if (Number.isFinite(minRatioNode)) summary.check_echo_ratio_min_node = minRatioNode;
    summary.rpc_mismatches = mismatches;
    if (mismatches > 0) failed = true;

    const mainTable: Table = {
      title: "Check over the wire: Canopy vs its transport floor vs Cerbos (single checks)",
      columns: ["Load generator", "Target", "Protocol", "Conc.", "Requests/s", "p50", "p99", "Errors", "Mismatches / checked", "CPU % client / server / machine"],
      rows: cells.map((x) => [
        x.generator === "h2load" ? "h2load" : "Node (Connect-node)",
        label[x.target],
        x.protocol === "grpc" ? "gRPC (h2c)" : "Connect (h2c)",
        x.concurrency,
        fmtRate(x.reqPerSec),
        fmtLat(x.p50Ms),
        fmtLat(x.p99Ms),
        x.errors ? `${x.errors} (${x.errorSample})` : "0",
        x.verified,
        `${fmtPct(x.clientCpu)} / ${fmtPct(x.serverCpu)} / ${fmtPct(x.machineCpu)}`,
      ]),
      notes: [
        `Canopy runs as its own process (\`node dist/src/main.js\`, SQLite, CANOPY_BENCH_ECHO=true) with the ${w.name} workload (${fmtInt(w.nodes.length)} nodes, ${fmtInt(w.assignments.length)} assignments); Cerbos ${CERBOS_VERSION} is the npm \`@cerbos/cerbos-linux-x64\` binary. Client and servers share this machine's cores.`,
        `Each cell: ${warmup} s warm-up, then ${seconds} s measured. Concurrency c = c requests in flight on one HTTP/2 connection (h2load \`-c 1 -m c\`; the Node client runs c closed loops over one Connect-node session).`,
        `h2load replays pre-encoded bodies (it cannot vary a body per request): ${h2Bodies} representative checks (alternately allowed and denied, different depths), one h2load run each over an equal share of the cell's time (${(warmup / 2).toFixed(2)} s warm-up each), pooled; the targets of a row group take turns run by run. Each body was answered once beforehand over the same bytes and compared with the oracle (h2load itself cannot read gRPC trailers, so a gRPC error would count as success there; the Node client rows count errors properly).`,
        `The Node client cycles through the first ${fmtInt(NODE_CHECKS)} workload checks and compares every answer (warm-up included) with the oracle; its gzip response compression is off (see CheckBulk).`,
        "The echo is `canopy.bench.v1.EchoService/Echo` on the same port as Check and on the same stack — the fast path (src/server/fast-path.ts), which takes gRPC and Connect binary unary calls to Check, CheckBulk and Echo — with no auth: Check's extra cost over it is auth, the handler, the engine and message conversion. Its payload is sized like an encoded CheckRequest.",
        "Rows marked Connect stack come from a second Canopy process on the same database with CANOPY_FAST_PATH=false, where every call goes through the Connect adapter (the stack before the fast path): the reference floor, and Check on it, for comparison.",
        "Cerbos gets the facts in each request (the identity's assignments and the node's path to the root; see scripts/bench/cerbos-peer.ts); assembling them on the caller's side is not measured. It evaluates them with 20 derived roles (CEL) and one resource policy.",
        `CPU in % of one core over the measured window: the server's utime+stime from /proc, the Node client's process.cpuUsage, and the whole machine's busy time from /proc/stat (${cpus().length} cores = ${cpus().length * 100} %). Machine busy well above client + server (+ h2load, up to 100) means other processes competed for the cores. h2load's own CPU is not sampled.`,
        ...skipped,
      ],
    };
    const ratioTable: Table = {
      title: "Check RPC vs the echo floor and vs Cerbos (same run, same load generator)",
      columns: ["Load generator", "Protocol", "Check/echo c=1", "Check/echo c=16", "Check/echo c=64", "Check/Cerbos c=64"],
      rows: ratioRows,
      notes: [
        "Targets: Check ≥ 0.8× echo at every concurrency; Check ≥ Cerbos at c=64 with the same load generator (h2load is the one that is not the bottleneck).",
        "Check/echo divides Check by the echo on the same (fast-path) stack, both on the default server. The last rows divide Check by the echo on the Connect stack (CANOPY_FAST_PATH=false) — the ratio before the fast path — and are not targets.",
      ],
    };
    const bulkTable: Table = {
      title: "CheckBulk over gRPC (h2load and Node client)",
      columns: ["Load generator", "Server stack", "Checks per call", "Calls in flight", "Response compression", "Calls/s", "Checks/s", "p50 per call", "p99 per call", "Mismatches / checked", "Errors", "CPU % client / server / machine"],
      rows: bulkRows,
      notes: [
        `Target: ≥ 200,000 checks/s at 1,000 per call, taken from the h2load rows (summary key checkbulk_1000; the Node client's is checkbulk_1000_node): h2load costs the server's cores least.`,
        "h2load replays one pre-encoded body per batch size (the workload's first 100 / 1,000 checks); each server answered it once beforehand and every item was compared with the oracle. h2load's client CPU is not sampled.",
        `The Node client's calls cycle through all ${fmtInt(w.checks.length)} workload checks; every item of every answer is compared with the oracle.`,
        "Connect-node clients accept gzip by default, and the server then compresses every response over 1 KiB: the gzip row shows that cost; the others turn compression off.",
      ],
    };
    const setupTable: Table = { title: "RPC bench setup", columns: ["Step", "Time", "RSS MiB"], rows: setupRows };
    return { tables: [ratioTable, mainTable, bulkTable, setupTable], failed, summary };
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (cerbos) await cerbos.close();
    if (canopy) await stopChild(canopy.child);
    if (reference) await stopChild(reference.child);
    for (const c of children) c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}
