import type { TestServer } from "./harness.js";
import { IGNORED_TABLES, quoteIdent, withPgClient, withSqlite, type Row } from "./db.js";

/** Every table of the database (migration bookkeeping excluded) -> its rows in a deterministic order. */
export type DatabaseSnapshot = Record<string, Row[]>;

/**
 * Dumps every table of a test server's database, on either backend. Opens its own read-only
 * connection and closes it again, so a snapshot never interferes with the server (nor takes a
 * connection from its pool).
 *
 * SQLite: a read-only better-sqlite3 handle on `s.databaseFile` (the server keeps the file open in WAL
 * mode; a read-only connection still sees every committed transaction, WAL included). Rows are
 * ordered by rowid, i.e. by insertion; a WITHOUT ROWID table is ordered by all of its columns instead.
 *
 * PostgreSQL: every base table of `s.schema` (Kysely's migration tables excluded), read in one
 * REPEATABLE READ transaction so that all tables come from the same instant. Rows are sorted by their
 * canonical JSON (blobs as hex), so the order depends only on the data. int8 values come back as
 * numbers, like SQLite's integers.
 *
 * On both backends blobs are Buffers, which `toEqual` compares by content.
 */
export async function snapshotDatabase(s: TestServer): Promise<DatabaseSnapshot> {
  return s.backend === "postgres" ? snapshotPostgres(s) : snapshotSqlite(s);
}

function snapshotSqlite(s: TestServer): DatabaseSnapshot {
  return withSqlite(s, (db) => {
    const tables = db
      .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all() as Array<{ name: string; sql: string | null }>;
    const out: DatabaseSnapshot = {};
    for (const { name, sql } of tables) {
      if (IGNORED_TABLES.test(name)) continue;
      let order = "rowid";
      if (sql && /WITHOUT\s+ROWID/i.test(sql)) {
        const cols = db.prepare(`PRAGMA table_info(${quoteIdent(name)})`).all() as Array<{ name: string }>;
        order = cols.map((c) => quoteIdent(c.name)).join(", ");
      }
      out[name] = db.prepare(`SELECT * FROM ${quoteIdent(name)} ORDER BY ${order}`).all() as Row[];
    }
    return out;
  });
}

/** A row's canonical text: its columns by name, Buffers as hex, BigInts as decimal. */
function rowKey(row: Row): string {
  return JSON.stringify(
    Object.keys(row)
      .sort()
      .map((k) => {
        const v = row[k];
        return [k, Buffer.isBuffer(v) ? `\\x${v.toString("hex")}` : typeof v === "bigint" ? `${v}n` : v];
      }),
  );
}

async function snapshotPostgres(s: TestServer): Promise<DatabaseSnapshot> {
  return withPgClient(s, async (client) => {
    await client.query("begin isolation level repeatable read read only");
    try {
      const tables = (
        await client.query<{ name: string }>(
          "select table_name as name from information_schema.tables where table_schema = $1 and table_type = 'BASE TABLE'",
          [s.schema],
        )
      ).rows
        .map((t) => t.name)
        .filter((n) => !IGNORED_TABLES.test(n))
        .sort();
      const out: DatabaseSnapshot = {};
      for (const name of tables) {
        const rows = (await client.query<Row>(`select * from ${quoteIdent(s.schema)}.${quoteIdent(name)}`)).rows;
        const keyed = rows.map((row) => ({ row: { ...row }, key: rowKey(row) }));
        keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
        out[name] = keyed.map((k) => k.row);
      }
      return out;
    } finally {
      await client.query("rollback");
    }
  });
}
