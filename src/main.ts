import { loadConfig, redactUrl } from "./config.js";
import { createLogger } from "./server/logger.js";
import { startApp } from "./app.js";

/** How long past the grace period a shutdown may take (store close, replication stop) before the process exits anyway. */
const SHUTDOWN_SLACK_MS = 15_000;

/**
 * `npm start`: serve Canopy with the configuration from the environment (README "Configuration").
 *
 * SIGTERM or SIGINT starts a graceful shutdown (App.close, docs/SERVING.md): readiness turns false,
 * the listeners stop accepting, in-flight calls get CANOPY_SHUTDOWN_GRACE_MS to finish and are then
 * cancelled, replication stops, the store closes; the process exits 0. A second signal during the drain
 * exits at once with status 1 (committed writes are durable; a transaction still running rolls back).
 * A shutdown that hangs SHUTDOWN_SLACK_MS past the grace period exits with status 1 too.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const app = await startApp(config, { logger });
  if (app.bootstrap) {
    // Printed once, on the first start against an empty database: keys are stored only as hashes.
    const lines = [
      "",
      "Canopy initialised a new database.",
      app.bootstrap.generatedAdminKey ? `  admin key (generated):        ${app.bootstrap.adminKey}` : "  admin key:                    taken from CANOPY_ADMIN_KEY",
      `  development environment key:  ${app.bootstrap.developmentKey}`,
      "These keys are shown only now; store them safely.",
      "",
    ];
    process.stdout.write(lines.join("\n") + "\n");
  }
  logger.info(
    { url: app.url || undefined, socket: app.socketPath ?? undefined, database: redactUrl(config.databaseUrl) },
    "canopy listening (gRPC, gRPC-Web, Connect and REST)",
  );
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal during shutdown: exiting now without waiting for in-flight calls");
      process.exit(1);
    }
    stopping = true;
    // close() stops the listeners before it returns: once this line is logged, new connections are refused
    const closed = app.close();
    logger.info({ signal, graceMs: config.shutdownGraceMs }, "shutting down: draining in-flight calls");
    setTimeout(() => {
      logger.error({ graceMs: config.shutdownGraceMs }, "shutdown did not finish in time; exiting");
      process.exit(1);
    }, config.shutdownGraceMs + SHUTDOWN_SLACK_MS).unref();
    closed.then(
      () => {
        logger.info({}, "shutdown complete");
        process.exit(0);
      },
      (err) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main().catch((err) => {
  process.stderr.write(`canopy failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
