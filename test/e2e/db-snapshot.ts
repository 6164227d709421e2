import Database from "better-sqlite3";

/** Every table of the database (migration bookkeeping excluded) -> its rows in rowid order. */
export type DatabaseSnapshot = Record<string, Record<string, unknown>[]>;

/** Tables Kysely's migrator keeps for itself; they say nothing about the data. */
const IGNORED = /^(kysely_migration|kysely_migration_lock|sqlite_.*)$/;

/**
 * Dumps every table of a Canopy SQLite file. Opens its own read-only connection (the server keeps
 * the file open in WAL mode; a read-only connection still sees every committed transaction, WAL
 * included) and closes it again, so a snapshot never interferes with the server.
 *
 * Rows are ordered by rowid, i.e. by insertion; a WITHOUT ROWID table is ordered by all of its
 * columns instead. Blobs come back as Buffers, which `toEqual` compares by content.
 */
export function snapshotDatabase(file: string): DatabaseSnapshot {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const tables = db
      .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all() as Array<{ name: string; sql: string | null }>;
    const out: DatabaseSnapshot = {};
    for (const { name, sql } of tables) {
      if (IGNORED.test(name)) continue;
      const quoted = `"${name.replace(/"/g, '""')}"`;
      let order = "rowid";
      if (sql && /WITHOUT\s+ROWID/i.test(sql)) {
        const cols = db.prepare(`PRAGMA table_info(${quoted})`).all() as Array<{ name: string }>;
        order = cols.map((c) => `"${c.name.replace(/"/g, '""')}"`).join(", ");
      }
      out[name] = db.prepare(`SELECT * FROM ${quoted} ORDER BY ${order}`).all() as Record<string, unknown>[];
    }
    return out;
  } finally {
    db.close();
  }
}
