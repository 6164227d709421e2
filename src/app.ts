import type { Config } from "./config.js";
import type { Clock } from "./domain/clock.js";
import { systemClock } from "./domain/clock.js";
import { createCanopy, type Canopy } from "./domain/canopy.js";
import type { Logger } from "./domain/runtime.js";
import { createEngine } from "./engine/index.js";
import { createStore } from "./store/index.js";
import type { Store } from "./store/store.js";
import { createCanopyServer } from "./server/server.js";
import type { HealthState } from "./server/health-state.js";
import { createLogger, infoEnabled, withRedaction } from "./server/logger.js";
import { createObservability } from "./server/observability.js";

export interface App {
  canopy: Canopy;
  store: Store;
  /** http://host:port actually bound ("" without a TCP listener: CANOPY_PORT=off) */
  url: string;
  /** the bound TCP port (0 without a TCP listener) */
  port: number;
  /** the Unix domain socket served (CANOPY_SOCKET), or null */
  socketPath: string | null;
  /** secrets created on first start (printed once), or null */
  bootstrap: { adminKey: string; developmentKey: string; generatedAdminKey: boolean } | null;
  /** calls answered by the fast path (src/server/fast-path.ts) */
  fastPathCalls(): number;
  /** the server's draining state (readiness probes, grpc.health.v1) */
  health: HealthState;
  /** graceful shutdown (see startApp); idempotent: later calls return the first call's promise */
  close(): Promise<void>;
}

/**
 * Composition root shared by main.ts and the end-to-end tests: store → migrations → engine warm-up →
 * bootstrap → server on one port. Tests pass their own clock and port 0.
 */
export async function startApp(config: Config, opts: { clock?: Clock; logger?: Logger } = {}): Promise<App> {
  const logger = opts.logger ? withRedaction(opts.logger) : createLogger(config.logLevel);
  const observability = createObservability({ logger, logRequests: config.logRequests && infoEnabled(logger), metrics: config.metrics });
  const store = await createStore(config.databaseUrl, {
    poolSize: config.databasePoolSize,
    sqliteCacheMb: config.sqliteCacheMb,
    onPoolError: (err) => logger.warn({ err: err.message }, "database connection lost; the pool reconnects on next use"),
  });
  const canopy = createCanopy({
    store,
    engine: createEngine(),
    clock: opts.clock ?? systemClock,
    limits: config.limits,
    logger,
    replication: { pollIntervalMs: config.pollIntervalMs, maxStalenessMs: config.maxStalenessMs },
    observer: observability.domain,
  });
  const bootstrap = await canopy.bootstrap({ adminKey: config.adminKey });
  await canopy.start();
  const server = createCanopyServer({
    canopy,
    logger,
    maxRequestBytes: config.maxRequestBytes,
    benchEcho: config.benchEcho,
    fastPath: config.fastPath,
    shutdownGraceMs: config.shutdownGraceMs,
    defaultDeadlineMs: config.defaultDeadlineMs,
    observability,
  });
  const address = config.port === null ? null : await server.listen(config.port, config.host);
  if (config.socketPath) {
    await server.listenSocket(config.socketPath, config.socketMode).catch(async (err: unknown) => {
      // e.g. another process listens on the socket: release the port and the store before failing
      await server.close();
      await canopy.stop();
      await store.close();
      throw err;
    });
  }
  let closing: Promise<void> | undefined;
  return {
    canopy,
    store,
    url: address ? `http://${address.address.includes(":") ? `[${address.address}]` : address.address}:${address.port}` : "",
    port: address?.port ?? 0,
    socketPath: config.socketPath ?? null,
    bootstrap,
    fastPathCalls: () => server.fastPathCalls(),
    health: server.health,
    // graceful shutdown, in order: drain the server (src/server/listen.ts), stop following other
    // replicas and wait for writes still running, then close the store (SQLite checkpoints its WAL)
    close() {
      closing ??= (async () => {
        await server.close();
        await canopy.stop();
        await store.close();
      })();
      return closing;
    },
  };
}
