import { DEFAULT_LIMITS, type Limits } from "./domain/limits.js";
import { DEFAULT_SQLITE_CACHE_MB } from "./store/sqlite.js";

/**
 * The only module that reads process.env. Returns a frozen, validated config; a bad value stops the
 * process at start with a message naming the variable. README "Configuration" lists every variable.
 */
export interface Config {
  host: string;
  /** TCP port; null = no TCP listener (CANOPY_PORT=off, which requires CANOPY_SOCKET) */
  port: number | null;
  /** CANOPY_SOCKET: also (or, with CANOPY_PORT=off, only) serve on this Unix domain socket */
  socketPath: string | undefined;
  /** CANOPY_SOCKET_MODE: permissions of the socket file (default 0o660) */
  socketMode: number;
  /** CANOPY_SHUTDOWN_GRACE_MS: how long in-flight calls may finish after SIGTERM/SIGINT before they are cancelled */
  shutdownGraceMs: number;
  /** CANOPY_DEFAULT_DEADLINE_MS: deadline of unary calls sent without one (0 = none) */
  defaultDeadlineMs: number;
  databaseUrl: string;
  /** PostgreSQL connections per process (CANOPY_DATABASE_POOL_SIZE) */
  databasePoolSize: number;
  /** SQLite page cache in MiB (CANOPY_SQLITE_CACHE_MB) */
  sqliteCacheMb: number;
  /** how often a PostgreSQL replica polls revisions as a safety net for lost notifications (ms) */
  pollIntervalMs: number;
  /** a PostgreSQL replica that has not confirmed it is current for this long answers UNAVAILABLE (ms) */
  maxStalenessMs: number;
  /** CANOPY_ADMIN_KEY: on an empty database this becomes the admin key */
  adminKey: string | undefined;
  /** CANOPY_LOG_LEVEL: pino level (fatal, error, warn, info, debug, trace, silent) */
  logLevel: string;
  /** CANOPY_LOG_REQUESTS (default true): one info line per RPC and REST request */
  logRequests: boolean;
  /** CANOPY_METRICS (default true): Prometheus metrics, served at GET /metrics without an API key */
  metrics: boolean;
  /** bytes; larger requests are refused with RESOURCE_EXHAUSTED */
  maxRequestBytes: number;
  /** CANOPY_BENCH_ECHO=true serves canopy.bench.v1.EchoService without auth, the benchmark's transport floor (default false) */
  benchEcho: boolean;
  /** CANOPY_FAST_PATH (default true): Check and CheckBulk over gRPC / Connect binary skip the Connect adapter (src/server/fast-path.ts) */
  fastPath: boolean;
  limits: Limits;
}

const LIMIT_VARS: Record<keyof Limits, string> = {
  maxBatchItems: "CANOPY_MAX_BATCH_ITEMS",
  maxStreamMessageItems: "CANOPY_MAX_STREAM_MESSAGE_ITEMS",
  maxStreamItems: "CANOPY_MAX_STREAM_ITEMS",
  maxCheckBulk: "CANOPY_MAX_CHECK_BULK",
  maxPageSize: "CANOPY_MAX_PAGE_SIZE",
  defaultPageSize: "CANOPY_DEFAULT_PAGE_SIZE",
  maxDepth: "CANOPY_MAX_DEPTH",
  writeChunkSize: "CANOPY_WRITE_CHUNK_SIZE",
  revisionWaitMs: "CANOPY_REVISION_WAIT_MS",
  maxMetadataBytes: "CANOPY_MAX_METADATA_BYTES",
};

export const DEFAULT_DATABASE_URL = "sqlite:./data/canopy.db";

function positiveInt(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

function nonNegativeInt(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** CANOPY_PORT: 0..65535, or `off` for no TCP listener (then CANOPY_SOCKET is required). */
function portOf(env: NodeJS.ProcessEnv): number | null {
  const raw = env.CANOPY_PORT;
  if (raw === undefined || raw === "") return 8080;
  if (raw === "off") {
    if (!env.CANOPY_SOCKET) throw new Error("CANOPY_PORT=off needs CANOPY_SOCKET (otherwise nothing would listen)");
    return null;
  }
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port > 65535) throw new Error(`CANOPY_PORT must be 0..65535 or off, got ${JSON.stringify(raw)}`);
  return port;
}

/** CANOPY_SOCKET: a Unix socket path must fit in sockaddr_un (107 bytes on Linux). */
function socketPathOf(env: NodeJS.ProcessEnv): string | undefined {
  const raw = env.CANOPY_SOCKET;
  if (raw === undefined || raw === "") return undefined;
  if (Buffer.byteLength(raw) > 107) throw new Error(`CANOPY_SOCKET must be at most 107 bytes long (a Unix socket path), got ${Buffer.byteLength(raw)}`);
  return raw;
}

/** CANOPY_SOCKET_MODE: octal permissions such as 660 or 0660 (owner and group read/write by default). */
function socketModeOf(env: NodeJS.ProcessEnv): number {
  const raw = env.CANOPY_SOCKET_MODE;
  if (raw === undefined || raw === "") return 0o660;
  if (!/^0?[0-7]{3}$/.test(raw)) throw new Error(`CANOPY_SOCKET_MODE must be octal permissions such as 660, got ${JSON.stringify(raw)}`);
  return parseInt(raw, 8);
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** CANOPY_LOG_LEVEL: one of pino's levels. */
function logLevelOf(env: NodeJS.ProcessEnv): string {
  const raw = env.CANOPY_LOG_LEVEL;
  if (raw === undefined || raw === "") return "info";
  if (!LOG_LEVELS.includes(raw)) throw new Error(`CANOPY_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(raw)}`);
  return raw;
}

function flag(env: NodeJS.ProcessEnv, name: string, fallback = false): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (raw === "false") return false;
  if (raw === "true") return true;
  throw new Error(`${name} must be true or false, got ${JSON.stringify(raw)}`);
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const limits = { ...DEFAULT_LIMITS };
  for (const [k, name] of Object.entries(LIMIT_VARS) as Array<[keyof Limits, string]>) limits[k] = positiveInt(env, name, DEFAULT_LIMITS[k]);
  const pollIntervalMs = positiveInt(env, "CANOPY_POLL_INTERVAL_MS", 1000);
  const maxStalenessMs = positiveInt(env, "CANOPY_MAX_STALENESS_MS", 5000);
  if (maxStalenessMs <= pollIntervalMs) throw new Error("CANOPY_MAX_STALENESS_MS must be larger than CANOPY_POLL_INTERVAL_MS");
  if (limits.defaultPageSize > limits.maxPageSize) throw new Error("CANOPY_DEFAULT_PAGE_SIZE must not exceed CANOPY_MAX_PAGE_SIZE");
  const port = portOf(env);
  const adminKey = env.CANOPY_ADMIN_KEY || undefined;
  if (adminKey !== undefined && (!adminKey.startsWith("cnpy_") || adminKey.length < 32 || adminKey.length > 256)) {
    throw new Error("CANOPY_ADMIN_KEY must start with cnpy_ and be 32..256 characters long");
  }
  return Object.freeze({
    host: env.CANOPY_HOST || "127.0.0.1",
    port,
    socketPath: socketPathOf(env),
    socketMode: socketModeOf(env),
    shutdownGraceMs: nonNegativeInt(env, "CANOPY_SHUTDOWN_GRACE_MS", 10_000),
    defaultDeadlineMs: nonNegativeInt(env, "CANOPY_DEFAULT_DEADLINE_MS", 30_000),
    databaseUrl: env.CANOPY_DATABASE_URL || DEFAULT_DATABASE_URL,
    databasePoolSize: positiveInt(env, "CANOPY_DATABASE_POOL_SIZE", 10),
    sqliteCacheMb: positiveInt(env, "CANOPY_SQLITE_CACHE_MB", DEFAULT_SQLITE_CACHE_MB),
    pollIntervalMs,
    maxStalenessMs,
    adminKey,
    logLevel: logLevelOf(env),
    logRequests: flag(env, "CANOPY_LOG_REQUESTS", true),
    metrics: flag(env, "CANOPY_METRICS", true),
    maxRequestBytes: positiveInt(env, "CANOPY_MAX_REQUEST_BYTES", 4 * 1024 * 1024),
    benchEcho: flag(env, "CANOPY_BENCH_ECHO"),
    fastPath: flag(env, "CANOPY_FAST_PATH", true),
    limits: Object.freeze(limits),
  });
}

/** A database URL with its password masked, for logs and CLI output. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = "***";
    return u.toString();
  } catch {
    return url;
  }
}
