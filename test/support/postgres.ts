import { randomBytes } from "node:crypto";
import pg from "pg";

/**
 * PostgreSQL for tests. The base database comes from CANOPY_TEST_DATABASE_URL (.ci/run creates one
 * database per run) or defaults to the local server's `test` database. Each store gets its own schema,
 * selected through the connection's search_path, and dropped afterwards.
 *
 * Locally an unreachable server skips the PostgreSQL tests; under CI=true it fails the run instead.
 */
export const PG_BASE_URL = process.env.CANOPY_TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test";

let reachable: Promise<boolean> | undefined;

export function postgresReachable(): Promise<boolean> {
  reachable ??= (async () => {
    const client = new pg.Client({ connectionString: PG_BASE_URL, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.query("select 1");
      return true;
    } catch (err) {
      if (process.env.CI === "true") throw new Error(`PostgreSQL at ${PG_BASE_URL} is unreachable under CI=true: ${(err as Error).message}`);
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return reachable;
}

/** Whether to run PostgreSQL tests (top-level await in a test file: `describe.skipIf(!(await usePostgres()))`). */
export async function usePostgres(): Promise<boolean> {
  return postgresReachable();
}

/** A URL of the base database whose search_path is a new, empty schema; `drop()` removes it. */
export async function freshSchema(prefix = "t"): Promise<{ url: string; schema: string; drop(): Promise<void> }> {
  const schema = `canopy_${prefix}_${randomBytes(6).toString("hex")}`;
  await adminQuery(`create schema ${schema}`);
  const u = new URL(PG_BASE_URL);
  u.searchParams.set("options", `-c search_path=${schema}`);
  return { url: u.toString(), schema, drop: async () => void (await adminQuery(`drop schema if exists ${schema} cascade`)) };
}

/** Runs one statement on the base database with a short-lived connection. */
export async function adminQuery(text: string, values?: unknown[]): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: PG_BASE_URL });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}
