import { DEFAULT_DATABASE_URL, redactUrl } from "../config.js";
import { migrateDatabase } from "../store/migrate-database.js";
import { str, type CommandSpec, type Values } from "./args.js";
import type { Io } from "./io.js";

/** `canopy migrate`: apply pending migrations and exit. */
export const migrateSpec: CommandSpec = {
  name: "migrate",
  brief: "apply pending database migrations and exit",
  summary: "Apply pending database migrations and exit (the server also applies them on start).",
  options: {
    "database-url": {
      type: "string",
      value: "<url>",
      env: "CANOPY_DATABASE_URL",
      default: DEFAULT_DATABASE_URL,
      description: "sqlite:<path> (the file and its directory are created) or postgres://user:pass@host:5432/db",
    },
  },
};

export async function migrate(values: Values, _positionals: string[], io: Io): Promise<number> {
  const url = str(values, "database-url")!;
  io.out(`Migrating ${redactUrl(url)}\n`);
  const report = await migrateDatabase(url);
  for (const name of report.applied) io.out(`  applied ${name}\n`);
  const latest = report.known[report.known.length - 1];
  io.out(
    report.applied.length
      ? `Applied ${report.applied.length} migration(s); the ${report.dialect} database is at ${latest}.\n`
      : `Nothing to do: the ${report.dialect} database is already at ${latest} (${report.known.length} migration(s)).\n`,
  );
  return 0;
}
