import pg from "pg";
import { Kysely, PostgresDialect, SqliteDialect } from "kysely";
import { isPostgresUrl, sqliteFilename } from "./index.js";
import { migrateToLatest, migrations } from "./migrations.js";
import { openSqliteDatabase } from "./sqlite.js";

/** What `canopy migrate` did to a database. */
export interface MigrationReport {
  dialect: "sqlite" | "postgres";
  /** migrations applied by this run, oldest first */
  applied: string[];
  /** every migration this build knows, oldest first (the database is now at the last one) */
  known: string[];
}

/**
 * Brings the database named by `databaseUrl` to the latest schema and reports which migrations ran.
 * The server does the same on every start (createStore); this is for running them ahead of a deploy
 * without serving. Opens its own short-lived connection and closes it.
 */
export async function migrateDatabase(databaseUrl: string): Promise<MigrationReport> {
  const known = Object.keys(migrations).sort();
  if (isPostgresUrl(databaseUrl)) {
    const pool = new pg.Pool({ connectionString: databaseUrl.trim(), max: 1, connectionTimeoutMillis: 10_000, application_name: "canopy-migrate" });
    pool.on("error", () => undefined);
    const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
    try {
      return { dialect: "postgres", applied: await migrateToLatest(db), known };
    } finally {
      await db.destroy();
    }
  }
  const db = new Kysely<any>({ dialect: new SqliteDialect({ database: openSqliteDatabase(sqliteFilename(databaseUrl)) }) });
  try {
    return { dialect: "sqlite", applied: await migrateToLatest(db), known };
  } finally {
    await db.destroy();
  }
}
