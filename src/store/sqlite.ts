import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import SqliteDatabase from "better-sqlite3";
import { Kysely, SqliteDialect } from "kysely";
import { createKyselyStore } from "./kysely-store.js";
import { sqliteAssignmentInserter } from "./bulk-insert.js";
import type { Database } from "./schema.js";
import type { Store } from "./store.js";

/** Where the SQLite database lives; `:memory:` for a throwaway in-process database. */
export interface SqliteStoreOptions {
  filename: string;
  /** page cache in MiB (default DEFAULT_SQLITE_CACHE_MB) */
  cacheMb?: number;
}

/**
 * SQLite's page cache, in MiB. SQLite's own default (2 MiB) holds a sliver of the assignment indexes,
 * so a bulk import re-reads and re-writes index pages all the time. 64 MiB keeps the inner pages and
 * a good share of the leaves of the two random-key indexes (identity, node) of a million-row table
 * hot; it is allocated only as pages are touched, and counts fully towards RSS once the database is
 * that large (docs/PERFORMANCE-NOTES.md "Bulk import").
 */
export const DEFAULT_SQLITE_CACHE_MB = 64;

/**
 * Opens (creating the file and its directory if missing) a better-sqlite3 database configured for a
 * durable single-writer service: WAL so readers never block the writer, `synchronous = FULL` so a
 * commit reported to a client survives power loss, FK enforcement on (SQLite's default is off), a
 * busy timeout for other processes (CLI, backups) touching the same file, and a page cache of
 * `cacheMb` MiB.
 */
export function openSqliteDatabase(filename: string, cacheMb = DEFAULT_SQLITE_CACHE_MB): SqliteDatabase.Database {
  const inMemory = filename === ":memory:" || filename === "";
  if (!inMemory) mkdirSync(dirname(resolve(filename)), { recursive: true });
  const db = new SqliteDatabase(filename);
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    // negative = KiB rather than pages
    db.pragma(`cache_size = ${-Math.round(cacheMb * 1024)}`);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** A migrated SQLite-backed Store; `close()` closes the file. */
export async function createSqliteStore(opts: SqliteStoreOptions): Promise<Store> {
  const database = openSqliteDatabase(opts.filename, opts.cacheMb);
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database }) });
  const store = createKyselyStore(db, "sqlite", undefined, { insertAssignments: sqliteAssignmentInserter(database) });
  try {
    await store.migrate();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
