import { mulberry32 } from "../fixtures/random.js";
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "../../src/gen/canopy/v1/admin_pb.js";
import { AssignmentService } from "../../src/gen/canopy/v1/assignment_pb.js";
import { CatalogService } from "../../src/gen/canopy/v1/catalog_pb.js";
import { CheckService } from "../../src/gen/canopy/v1/check_pb.js";
import { HierarchyService } from "../../src/gen/canopy/v1/hierarchy_pb.js";
import { IdentityService } from "../../src/gen/canopy/v1/identity_pb.js";

/**
 * Helpers of replicas.test.ts: Canopy replicas as real child processes (`node dist/src/main.js`),
 * Connect-over-HTTP/1.1 clients, a seeded PRNG, the mapping from a replica process to its LISTEN
 * backend, and a private, throw-away PostgreSQL server that a test may stop and start at will.
 */

const MAIN = resolve(__dirname, "../../dist/src/main.js");
const run = promisify(execFile);
const RUNUSER_PATHS = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser", "/bin/runuser"];

// ---------------------------------------------------------------------------------------------
// Canopy child processes

export interface Replica {
  name: string;
  child: ChildProcess;
  url: string;
  /** everything the process wrote to stdout so far (keeps growing) */
  stdout(): string;
  stderr(): string;
}

const children = new Set<ChildProcess>();

/** Starts `node dist/src/main.js` on `databaseUrl`; resolves once it logs its URL. */
export function startReplica(name: string, databaseUrl: string, env: Record<string, string> = {}): Promise<Replica> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [MAIN], {
      env: { ...process.env, CANOPY_PORT: "0", CANOPY_HOST: "127.0.0.1", CANOPY_DATABASE_URL: databaseUrl, CANOPY_LOG_LEVEL: "info", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let out = "";
    let err = "";
    let started = false;
    const timer = setTimeout(() => reject(new Error(`replica ${name} did not start within 30 s:\n${out}\n${err}`)), 30_000);
    child.stderr!.on("data", (d) => (err += d));
    child.stdout!.on("data", (d) => {
      out += d;
      if (started) return;
      const m = /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (m) {
        started = true;
        clearTimeout(timer);
        resolvePromise({ name, child, url: m[1], stdout: () => out, stderr: () => err });
      }
    });
    child.on("exit", (code, signal) => {
      children.delete(child);
      if (!started) {
        clearTimeout(timer);
        reject(new Error(`replica ${name} exited (${code ?? signal}) before listening:\n${out}\n${err}`));
      }
    });
  });
}

/** SIGKILLs a replica (no-op when it has already exited). */
export function killReplica(child: ChildProcess): Promise<void> {
  return new Promise((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done();
    child.once("exit", () => done());
    child.kill("SIGKILL");
  });
}

/** SIGKILLs every replica this module started that is still running. */
export async function killAllReplicas(): Promise<void> {
  await Promise.all([...children].map((c) => killReplica(c)));
}

export function clientsFor(url: string, key: string) {
  const transport = createConnectTransport({
    baseUrl: url,
    httpVersion: "1.1",
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
export type Clients = ReturnType<typeof clientsFor>;

/** The development key printed on a first start. */
export function developmentKeyOf(stdout: string): string {
  const key = /development environment key:\s+(cnpy_\S+)/.exec(stdout)?.[1];
  if (!key) throw new Error(`no development key in the first start's output:\n${stdout}`);
  return key;
}

// ---------------------------------------------------------------------------------------------
// Small utilities

/** mulberry32: a tiny seeded PRNG returning floats in [0, 1) (shared with the unit tests). */
export const prng = mulberry32;

export function pick<T>(rnd: () => number, items: readonly T[]): T {
  if (items.length === 0) throw new Error("pick from an empty list");
  return items[Math.floor(rnd() * items.length)];
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The Connect code of a rejection (or "non-connect: <message>" for anything else). */
export function codeOf(err: unknown): Code | string {
  if (err instanceof ConnectError) return err.code;
  return `non-connect: ${(err as Error)?.message ?? String(err)}`;
}

export function describeError(err: unknown): string {
  if (err instanceof ConnectError) return `${Code[err.code]}(${err.code}): ${err.rawMessage}`;
  return String((err as Error)?.stack ?? err);
}

/** Outcome of one call: ok with its value, or the error's code and message. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; code: Code | string; message: string };

export async function attempt<T>(call: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await call() };
  } catch (err) {
    return { ok: false, code: codeOf(err), message: describeError(err) };
  }
}

/** Polls `probe` every `everyMs` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function pollUntil<T>(what: string | (() => string), timeoutMs: number, everyMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`gave up waiting (${timeoutMs} ms) for: ${typeof what === "function" ? what() : what}${last ? ` (last error: ${describeError(last)})` : ""}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Which TCP ports a process has open (to tell replicas' PostgreSQL backends apart)

/**
 * Local TCP ports of the sockets process `pid` holds open (Linux /proc). PostgreSQL reports them as
 * pg_stat_activity.client_port, which tells one replica's connections from another's. Undefined
 * when /proc is not available.
 */
export function localPortsOf(pid: number): Set<number> | undefined {
  if (process.platform !== "linux" || !existsSync(`/proc/${pid}/fd`)) return undefined;
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      // the fd closed meanwhile
    }
  }
  const ports = new Set<number>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      if (inodes.has(cols[9])) ports.add(parseInt(cols[1].split(":").pop()!, 16));
    }
  }
  return ports;
}

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL server (initdb + pg_ctl as the postgres OS user)

export type PrivatePgSupport = { ok: true; bin: string } | { ok: false; reason: string };

/** Whether this machine can run a private PostgreSQL server for the test, and where its binaries are. */
export function privatePostgresSupport(): PrivatePgSupport {
  if (process.platform !== "linux") return { ok: false, reason: `needs Linux (this is ${process.platform})` };
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return { ok: false, reason: "needs root to run initdb/pg_ctl as the postgres OS user with runuser" };
  const runuser = RUNUSER_PATHS.find((p) => existsSync(p));
  if (!runuser) return { ok: false, reason: "runuser is not installed" };
  try {
    execFileSync("id", ["-u", "postgres"], { stdio: "ignore" });
  } catch {
    return { ok: false, reason: "there is no postgres OS user" };
  }
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return { ok: false, reason: `${root} does not exist (PostgreSQL server binaries not installed)` };
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, "bin", "initdb")) && existsSync(join(root, v, "bin", "pg_ctl")))
    .sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) return { ok: false, reason: `no ${root}/<version>/bin/initdb found` };
  return { ok: true, bin: join(root, versions[0], "bin") };
}

/** A free TCP port on 127.0.0.1 (bound and released; a tiny race is acceptable for a test). */
export function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolvePromise(port));
    });
  });
}

export class PrivatePostgres {
  readonly dir: string;
  private running = false;

  private constructor(
    private readonly bin: string,
    readonly port: number,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), "canopy-pg-"));
  }

  /** initdb into a new temp dir owned by the postgres OS user (the server is not started yet). */
  static async create(bin: string): Promise<PrivatePostgres> {
    const pg = new PrivatePostgres(bin, await freePort());
    try {
      const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
      const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
      chownSync(pg.dir, uid, gid);
      await pg.asPostgres(join(bin, "initdb"), ["-D", pg.dir, "--auth=trust", "-U", "postgres", "--no-sync"]);
    } catch (err) {
      pg.remove();
      throw err;
    }
    return pg;
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  async start(): Promise<void> {
    await this.asPostgres(join(this.bin, "pg_ctl"), [
      "-D",
      this.dir,
      "-l",
      join(this.dir, "server.log"),
      "-o",
      `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1`,
      "-w",
      "-t",
      "30",
      "start",
    ]);
    this.running = true;
  }

  /** Stops the server at once (`-m immediate`: no checkpoint, clients are cut off). */
  async stopImmediately(): Promise<void> {
    await this.asPostgres(join(this.bin, "pg_ctl"), ["-D", this.dir, "-m", "immediate", "-w", "-t", "30", "stop"]);
    this.running = false;
  }

  /** Best-effort cleanup: stops the server if it may be running and removes its directory. */
  async destroy(): Promise<void> {
    if (existsSync(join(this.dir, "postmaster.pid")) || this.running) {
      await this.asPostgres(join(this.bin, "pg_ctl"), ["-D", this.dir, "-m", "immediate", "-w", "-t", "30", "stop"]).catch(() => undefined);
      this.running = false;
    }
    this.remove();
  }

  serverLog(): string {
    try {
      return readFileSync(join(this.dir, "server.log"), "utf8");
    } catch {
      return "";
    }
  }

  private remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async asPostgres(cmd: string, args: string[]): Promise<void> {
    try {
      const runuser = RUNUSER_PATHS.find((p) => existsSync(p)) ?? "runuser";
      await run(runuser, ["-u", "postgres", "--", cmd, ...args], { timeout: 60_000, cwd: this.dir });
    } catch (err) {
      const e = err as Error & { stdout?: string; stderr?: string };
      throw new Error(`${cmd} ${args.join(" ")} failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}\n${this.serverLog()}`);
    }
  }
}
