import pino from "pino";
import { loadConfig } from "./config.js";
import { startApp } from "./app.js";

/** `npm start`: serve Canopy with the configuration from the environment (README "Configuration"). */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel });
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
  logger.info({ url: app.url, database: config.databaseUrl }, "canopy listening (gRPC, gRPC-Web and Connect on one port)");
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down: draining in-flight requests");
    app.close().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

main().catch((err) => {
  process.stderr.write(`canopy failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
