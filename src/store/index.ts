import { fileURLToPath } from "node:url";
import { createSqliteStore } from "./sqlite.js";
import { createPostgresStore } from "./postgres.js";
import type { Store } from "./store.js";

export { createKyselyStore, mapStoreError } from "./kysely-store.js";
export { createSqliteStore, openSqliteDatabase, DEFAULT_SQLITE_CACHE_MB } from "./sqlite.js";
export { createPostgresStore } from "./postgres.js";
export { migrateToLatest, migrations } from "./migrations.js";
export * from "./store.js";

/**
 * Opens the store named by a database URL (`CANOPY_DATABASE_URL`), migrated and ready:
 * `sqlite:<path>`, `sqlite://<path>`, `file:<path>`, `file:///abs/path`, or a bare path ending in
 * `.db`, `.sqlite` or `.sqlite3`; `sqlite::memory:` for a throwaway database.
 */
export async function createStore(
  databaseUrl: string,
  opts: { poolSize?: number; onPoolError?: (err: Error) => void; sqliteCacheMb?: number } = {},
): Promise<Store> {
  if (isPostgresUrl(databaseUrl)) {
    return createPostgresStore({ connectionString: databaseUrl.trim(), maxConnections: opts.poolSize, onPoolError: opts.onPoolError });
  }
  return createSqliteStore({ filename: sqliteFilename(databaseUrl), cacheMb: opts.sqliteCacheMb });
}

/** `postgres://` or `postgresql://` */
export function isPostgresUrl(databaseUrl: string): boolean {
  return /^postgres(ql)?:\/\//i.test(databaseUrl.trim());
}

/** The SQLite file a database URL names; throws for anything else. */
export function sqliteFilename(databaseUrl: string): string {
  const url = databaseUrl.trim();
  if (isPostgresUrl(url)) throw new Error("a PostgreSQL URL names no SQLite file");
  let filename: string | undefined;
  if (/^sqlite:/i.test(url)) filename = url.slice("sqlite:".length).replace(/^\/\//, "");
  else if (/^file:\/\//i.test(url)) filename = fileURLToPath(url);
  else if (/^file:/i.test(url)) filename = url.slice("file:".length);
  else if (/\.(db|sqlite3?)$/i.test(url) && !/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) filename = url;
  if (!filename) {
    // name only the scheme: URLs can carry credentials
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
    throw new Error(
      `unsupported database URL${scheme ? ` scheme "${scheme}:"` : ""}: expected sqlite:<path>, file:<path> or a path ending in .db/.sqlite`,
    );
  }
  return filename;
}
