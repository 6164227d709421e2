import type SqliteDatabase from "better-sqlite3";
import { sql, type Kysely } from "kysely";
import type { Assignment } from "../domain/model.js";
import type { Database } from "./schema.js";

/**
 * Writes assignment rows inside the caller's open transaction `trx`. The hot path of bulk imports:
 * one prepared statement or one array-bound statement, instead of compiling a multi-row Kysely
 * insert (nine parameters per row) for every chunk.
 */
export type AssignmentInserter = (trx: Kysely<Database>, rows: readonly Assignment[]) => Promise<void>;

const COLUMNS = "id, environment_id, identity_id, role_id, node_id, effective_from, effective_to, created_at, updated_at";

/**
 * SQLite: one statement prepared on first use (after migrations created the table) and run per
 * row. better-sqlite3 has a single connection, so the rows land in the transaction Kysely opened on
 * it (`trx` itself is not needed); outside a transaction it refuses rather than autocommit each row.
 */
export function sqliteAssignmentInserter(database: SqliteDatabase.Database): AssignmentInserter {
  let insert: SqliteDatabase.Statement | undefined;
  return async (_trx, rows) => {
    if (!database.inTransaction) throw new Error("internal: assignment rows are inserted only inside a transaction");
    insert ??= database.prepare(`insert into assignments (${COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    for (const a of rows) {
      insert.run(a.id, a.environmentId, a.identityId, a.roleId, a.nodeId, a.effectiveFrom, a.effectiveTo, a.createdAt, a.updatedAt);
    }
  };
}

/**
 * PostgreSQL: every column as one array parameter, expanded by `unnest` into rows. One round trip
 * and a statement of constant shape (the server plans nine parameters, not nine per row), however
 * many rows; columns keep their types and collation through the casts.
 */
export const postgresAssignmentInserter: AssignmentInserter = async (trx, rows) => {
  const n = rows.length;
  if (n === 0) return;
  const id = new Array<string>(n);
  const environmentId = new Array<string>(n);
  const identityId = new Array<string>(n);
  const roleId = new Array<string>(n);
  const nodeId = new Array<string>(n);
  const from = new Array<number>(n);
  const to = new Array<number | null>(n);
  const created = new Array<number>(n);
  const updated = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const a = rows[i];
    id[i] = a.id;
    environmentId[i] = a.environmentId;
    identityId[i] = a.identityId;
    roleId[i] = a.roleId;
    nodeId[i] = a.nodeId;
    from[i] = a.effectiveFrom;
    to[i] = a.effectiveTo;
    created[i] = a.createdAt;
    updated[i] = a.updatedAt;
  }
  await sql`insert into assignments (${sql.raw(COLUMNS)})
    select * from unnest(${id}::text[], ${environmentId}::text[], ${identityId}::text[], ${roleId}::text[], ${nodeId}::text[],
      ${from}::bigint[], ${to}::bigint[], ${created}::bigint[], ${updated}::bigint[])`.execute(trx);
};
