import { existsSync, readFileSync } from "node:fs";
import Database from "better-sqlite3";
import pg from "pg";
import type { TestServer } from "./harness.js";

/**
 * Direct, read-only access to a test server's database, on either backend. Every helper opens its own
 * connection (a read-only better-sqlite3 handle on the file, or one `pg.Client` on the server's schema),
 * and closes it before returning, so it never takes a connection from the server's pool or keeps one
 * open between calls. A fresh connection sees every committed transaction (SQLite: WAL included).
 *
 * Values come back alike on both backends: integers (SQLite INTEGER, PostgreSQL int2/int4/int8) are
 * numbers, text is a string, blobs/bytea are Buffers, NULL is null.
 */

export type Row = Record<string, unknown>;

/** Tables that are bookkeeping rather than data: Kysely's migrator's and SQLite's own. */
export const IGNORED_TABLES = /^(kysely_migration|kysely_migration_lock|sqlite_.*)$/;

/** Double-quotes an identifier (both dialects). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** int8 (and numeric counts) as numbers when exact, like better-sqlite3; otherwise a BigInt, never a lossy number. */
function parseInt8(text: string): number | bigint {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : BigInt(text);
}

const pgTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === pg.types.builtins.INT8 && format !== "binary" ? parseInt8 : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
};

/** Runs `fn` with a new `pg.Client` whose search_path is the server's schema, and always ends it. */
export async function withPgClient<T>(s: TestServer, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  if (s.backend !== "postgres" || !s.schema) throw new Error("not a PostgreSQL test server");
  const client = new pg.Client({ connectionString: s.databaseUrl, types: pgTypes });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Runs `fn` with a read-only better-sqlite3 handle on the server's file, and always closes it. */
export function withSqlite<T>(s: TestServer, fn: (db: Database.Database) => T): T {
  if (s.backend !== "sqlite" || !s.databaseFile) throw new Error("not a SQLite test server");
  const db = new Database(s.databaseFile, { readonly: true, fileMustExist: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** `?` placeholders -> `$1, $2, …` (test SQL only: no `?` inside literals). */
function pgPlaceholders(text: string): string {
  let i = 0;
  return text.replace(/\?/g, () => `$${++i}`);
}

/**
 * Runs one read query written with `?` placeholders in SQL both dialects understand, against the
 * server's database, and returns its rows.
 */
export async function queryRows<T = Row>(s: TestServer, text: string, params: unknown[] = []): Promise<T[]> {
  if (s.backend === "sqlite") return withSqlite(s, (db) => db.prepare(text).all(...params) as T[]);
  return withPgClient(s, async (client) => (await client.query(pgPlaceholders(text), params)).rows as T[]);
}

/** `select count(*)` of `table`, optionally only rows whose columns equal the given values. */
export async function countRows(s: TestServer, table: string, where: Record<string, unknown> = {}): Promise<number> {
  const cols = Object.keys(where);
  const cond = cols.length ? ` where ${cols.map((c) => `${quoteIdent(c)} = ?`).join(" and ")}` : "";
  const [row] = await queryRows<{ n: number | bigint }>(s, `select count(*) as n from ${quoteIdent(table)}${cond}`, Object.values(where));
  return Number(row.n);
}

/** Every data table of the server's database (migration bookkeeping excluded), sorted by name. */
export async function listTables(s: TestServer): Promise<string[]> {
  const names =
    s.backend === "sqlite"
      ? withSqlite(s, (db) => (db.prepare("select name from sqlite_master where type = 'table'").all() as Array<{ name: string }>).map((t) => t.name))
      : await withPgClient(s, async (client) =>
          (
            await client.query<{ name: string }>(
              "select table_name as name from information_schema.tables where table_schema = $1 and table_type = 'BASE TABLE'",
              [s.schema],
            )
          ).rows.map((t) => t.name),
        );
  return names.filter((n) => !IGNORED_TABLES.test(n)).sort();
}

/** Every row of `table`, in no particular order. */
export async function allRows(s: TestServer, table: string): Promise<Row[]> {
  return queryRows(s, `select * from ${quoteIdent(table)}`);
}

export interface ScanResult {
  /** the tables scanned (every table of the database, bookkeeping included) */
  tables: string[];
  /** how many non-null text/blob values were looked at */
  scannedValues: number;
  /** `table.column` of every value that contained a needle, with the needle */
  hits: Array<{ where: string; needle: string }>;
  /** SQLite only: the raw files scanned (the database file and its WAL, when present) */
  files: string[];
  /** SQLite only: `file` for each raw file that contained a needle, with the needle */
  fileHits: Array<{ where: string; needle: string }>;
}

/** PostgreSQL column types that can hold text or bytes. */
const PG_TEXTUAL = new Set(["text", "character varying", "character", "json", "jsonb", "bytea", "xml", "citext", "name", "USER-DEFINED", "ARRAY"]);

/**
 * Looks for each needle (UTF-8) in every text and binary value of every table of the server's
 * database — bookkeeping tables included. PostgreSQL: every column of every base table of `s.schema`
 * whose type can hold text or bytes (text, varchar, char, json, jsonb, bytea, …; other columns are
 * counted too by their text form, so nothing escapes on a type this list misses). SQLite: every
 * string and blob value, and in addition the raw bytes of the database file and its WAL.
 */
export async function scanForStrings(s: TestServer, needles: string[]): Promise<ScanResult> {
  const bytes = needles.map((n) => Buffer.from(n, "utf8"));
  const out: ScanResult = { tables: [], scannedValues: 0, hits: [], files: [], fileHits: [] };
  const look = (where: string, value: unknown) => {
    if (value === null || value === undefined) return;
    if (typeof value === "string") {
      out.scannedValues++;
      needles.forEach((n) => value.includes(n) && out.hits.push({ where, needle: n }));
    } else if (Buffer.isBuffer(value)) {
      out.scannedValues++;
      bytes.forEach((b, i) => value.includes(b) && out.hits.push({ where: `${where} (blob)`, needle: needles[i] }));
    }
  };

  if (s.backend === "sqlite") {
    withSqlite(s, (db) => {
      const tables = db.prepare("select name from sqlite_master where type = 'table' order by name").all() as Array<{ name: string }>;
      for (const { name } of tables) {
        out.tables.push(name);
        for (const row of db.prepare(`select * from ${quoteIdent(name)}`).all() as Row[]) {
          for (const [column, value] of Object.entries(row)) look(`${name}.${column}`, value);
        }
      }
    });
    // raw bytes: the main file and the WAL (recent pages may only be there)
    out.files = [s.databaseFile, `${s.databaseFile}-wal`].filter((f) => existsSync(f));
    for (const f of out.files) {
      const raw = readFileSync(f);
      bytes.forEach((b, i) => raw.includes(b) && out.fileHits.push({ where: f, needle: needles[i] }));
    }
    return out;
  }

  await withPgClient(s, async (client) => {
    const cols = (
      await client.query<{ table_name: string; column_name: string; data_type: string }>(
        `select c.table_name, c.column_name, c.data_type
           from information_schema.columns c
           join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
          where c.table_schema = $1 and t.table_type = 'BASE TABLE'
          order by c.table_name, c.ordinal_position`,
        [s.schema],
      )
    ).rows;
    const byTable = new Map<string, Array<{ name: string; type: string }>>();
    for (const c of cols) {
      if (!byTable.has(c.table_name)) byTable.set(c.table_name, []);
      byTable.get(c.table_name)!.push({ name: c.column_name, type: c.data_type });
    }
    for (const [table, columns] of byTable) {
      out.tables.push(table);
      // bytea as bytes; every other column as its text form (so json, arrays and anything unforeseen are scanned too)
      const select = columns
        .map((c) => (c.type === "bytea" ? quoteIdent(c.name) : `${quoteIdent(c.name)}::text as ${quoteIdent(c.name)}`))
        .join(", ");
      const textual = new Set(columns.filter((c) => PG_TEXTUAL.has(c.type)).map((c) => c.name));
      const rows = (await client.query<Row>(`select ${select} from ${quoteIdent(s.schema)}.${quoteIdent(table)}`)).rows;
      for (const row of rows) {
        for (const [column, value] of Object.entries(row)) {
          if (textual.has(column)) look(`${table}.${column}`, value);
          else if (typeof value === "string") needles.forEach((n) => value.includes(n) && out.hits.push({ where: `${table}.${column}`, needle: n }));
        }
      }
    }
  });
  return out;
}
