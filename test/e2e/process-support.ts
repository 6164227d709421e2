import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { BACKEND, type TestServer } from "./harness.js";
import { queryRows } from "./db.js";
import { freshSchema } from "../support/postgres.js";

/**
 * The real entry point (`node dist/src/main.js`, built by `npm test`'s pretest) as a child process, for
 * the shutdown and socket suites: spawn it on a fresh database of the current BACKEND, wait for its
 * "listening" log line, signal it, wait for its exit, and read its database afterwards.
 */

const MAIN = resolve(__dirname, "../../dist/src/main.js");

/** A database of the backend under test, readable with test/e2e/db.ts once the process is gone. */
export interface ProcessDatabase {
  url: string;
  /** what db.ts's helpers need of a TestServer */
  handle: TestServer;
  /** the SQLite file ("" on PostgreSQL) */
  file: string;
}

/** Temp dirs and schemas made by one test file: `cleanup()` in its afterAll. */
export function createScratch() {
  const dirs: string[] = [];
  const drops: Array<() => Promise<void>> = [];
  const children = new Set<Running>();
  return {
    children,
    /** A new temp directory (removed by cleanup). */
    dir(prefix = "canopy-proc-"): string {
      const d = mkdtempSync(join(tmpdir(), prefix));
      dirs.push(d);
      return d;
    },
    /** A new, empty database: a SQLite file in a temp dir, or a fresh PostgreSQL schema. */
    async database(): Promise<ProcessDatabase> {
      if (BACKEND === "postgres") {
        const pg = await freshSchema("proc");
        drops.push(pg.drop);
        return { url: pg.url, file: "", handle: { backend: "postgres", databaseFile: "", databaseUrl: pg.url, schema: pg.schema } as TestServer };
      }
      const file = join(this.dir(), "c.db");
      return { url: `sqlite:${file}`, file, handle: { backend: "sqlite", databaseFile: file, databaseUrl: `sqlite:${file}`, schema: "" } as TestServer };
    },
    async cleanup(): Promise<void> {
      // a failed test may leave a server running: stop it before its database goes away
      await Promise.all([...children].map((r) => r.kill9()));
      dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
      for (const drop of drops) await drop();
    },
  };
}

export type Scratch = ReturnType<typeof createScratch>;

export interface Running {
  child: ChildProcess;
  /** http://127.0.0.1:port ("" with CANOPY_PORT=off) */
  url: string;
  port: number;
  /** everything printed so far */
  stdout(): string;
  stderr(): string;
  /** resolves on exit, with its code and signal */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** resolves once stdout contains `pattern` (rejects after `timeoutMs`) */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  kill9(): Promise<void>;
}

/** Spawns `node dist/src/main.js` on `databaseUrl` (port 0, info logs) and resolves once it listens. */
export function startProcess(scratch: Scratch, databaseUrl: string, env: Record<string, string> = {}): Promise<Running> {
  const child = spawn(process.execPath, [MAIN], {
    env: { ...process.env, CANOPY_PORT: "0", CANOPY_DATABASE_URL: databaseUrl, CANOPY_DATABASE_POOL_SIZE: "4", CANOPY_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  const watchers = new Set<() => void>();
  child.stdout!.on("data", (d) => {
    out += d;
    for (const w of [...watchers]) w();
  });
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.on("exit", (code, signal) => done({ code, signal })));
  const waitForOutput = (pattern: RegExp, timeoutMs = 30_000) =>
    new Promise<RegExpExecArray>((resolvePromise, reject) => {
      const check = () => {
        const m = pattern.exec(out);
        if (!m) return false;
        watchers.delete(check);
        clearTimeout(timer);
        resolvePromise(m);
        return true;
      };
      const timer = setTimeout(() => {
        watchers.delete(check);
        reject(new Error(`no ${pattern} in the output within ${timeoutMs} ms: ${out}${err}`));
      }, timeoutMs);
      if (!check()) watchers.add(check);
      void exited.then(() => {
        if (watchers.delete(check)) {
          clearTimeout(timer);
          reject(new Error(`the server exited before printing ${pattern}: ${out}${err}`));
        }
      });
    });
  const running: Running = {
    child,
    url: "",
    port: 0,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForOutput,
    async kill9() {
      scratch.children.delete(running);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
  scratch.children.add(running);
  void exited.then(() => scratch.children.delete(running));
  return waitForOutput(/"msg":"canopy listening/).then(() => {
    const m = /"url":"(http:\/\/[^"]+:(\d+))"/.exec(out);
    running.url = m?.[1] ?? "";
    running.port = m ? Number(m[2]) : 0;
    return running;
  });
}

/** The bootstrap development key a first start printed. */
export function devKeyOf(r: Running): string {
  const m = /development environment key:\s+(cnpy_\S+)/.exec(r.stdout());
  if (!m) throw new Error(`no development key in the output: ${r.stdout()}`);
  return m[1];
}

/** Ids of every stored assignment (read after the process is gone, or beside it). */
export async function storedAssignmentIds(db: ProcessDatabase): Promise<string[]> {
  return (await queryRows<{ id: string }>(db.handle, "select id from assignments")).map((r) => r.id).sort();
}
