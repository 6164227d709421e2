import { DEFAULT_LIMITS, type Limits } from "./domain/limits.js";
import { DEFAULT_SQLITE_CACHE_MB } from "./store/sqlite.js";

/**
 * The only module that reads process.env. Returns a frozen, validated config; a bad value stops the
 * process at start with a message naming the variable. README "Configuration" lists every variable.
 */
export interface Config {
  host: string;
  port: number;
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
  const port = env.CANOPY_PORT === undefined || env.CANOPY_PORT === "" ? 8080 : Number(env.CANOPY_PORT);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`CANOPY_PORT must be 0..65535, got ${JSON.stringify(env.CANOPY_PORT)}`);
  const adminKey = env.CANOPY_ADMIN_KEY || undefined;
  if (adminKey !== undefined && (!adminKey.startsWith("cnpy_") || adminKey.length < 32 || adminKey.length > 256)) {
    throw new Error("CANOPY_ADMIN_KEY must start with cnpy_ and be 32..256 characters long");
  }
  return Object.freeze({
    host: env.CANOPY_HOST || "127.0.0.1",
    port,
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
