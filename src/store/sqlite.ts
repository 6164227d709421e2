import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import SqliteDatabase from "better-sqlite3";
import { Kysely, SqliteDialect } from "kysely";
import { createKyselyStore } from "./kysely-store.js";
import type { Database } from "./schema.js";
import type { Store } from "./store.js";

/** Where the SQLite database lives; `:memory:` for a throwaway in-process database. */
export interface SqliteStoreOptions {
  filename: string;
}

/**
 * Opens (creating the file and its directory if missing) a better-sqlite3 database configured for a
 * durable single-writer service: WAL so readers never block the writer, `synchronous = FULL` so a
 * commit reported to a client survives power loss, FK enforcement on (SQLite's default is off) and a
 * busy timeout for other processes (CLI, backups) touching the same file.
 */
export function openSqliteDatabase(filename: string): SqliteDatabase.Database {
  const inMemory = filename === ":memory:" || filename === "";
  if (!inMemory) mkdirSync(dirname(resolve(filename)), { recursive: true });
  const db = new SqliteDatabase(filename);
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** A migrated SQLite-backed Store; `close()` closes the file. */
export async function createSqliteStore(opts: SqliteStoreOptions): Promise<Store> {
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: openSqliteDatabase(opts.filename) }) });
  const store = createKyselyStore(db, "sqlite");
  try {
    await store.migrate();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
