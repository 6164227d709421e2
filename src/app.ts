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
  /** host:port actually bound */
  url: string;
  port: number;
  /** secrets created on first start (printed once), or null */
  bootstrap: { adminKey: string; developmentKey: string; generatedAdminKey: boolean } | null;
  /** calls answered by the fast path (src/server/fast-path.ts) */
  fastPathCalls(): number;
  /** the server's draining state (readiness probes, grpc.health.v1) */
  health: HealthState;
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
  const server = createCanopyServer({ canopy, logger, maxRequestBytes: config.maxRequestBytes, benchEcho: config.benchEcho, fastPath: config.fastPath, observability });
  const address = await server.listen(config.port, config.host);
  return {
    canopy,
    store,
    url: `http://${address.address.includes(":") ? `[${address.address}]` : address.address}:${address.port}`,
    port: address.port,
    bootstrap,
    fastPathCalls: () => server.fastPathCalls(),
    health: server.health,
    async close() {
      await server.close();
      await canopy.stop();
      await store.close();
    },
  };
}
