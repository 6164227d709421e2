import pg from "pg";
import { Kysely, PostgresDialect } from "kysely";
import { CHANGE_CHANNEL, createKyselyStore } from "./kysely-store.js";
import type { Database } from "./schema.js";
import type { ChangeSubscriber, Store } from "./store.js";

/** application_name of the dedicated LISTEN connection (pool connections are "canopy"). */
export const LISTEN_APPLICATION_NAME = "canopy-listen";

/** Where the PostgreSQL database lives. */
export interface PostgresStoreOptions {
  /** postgres://user:pass@host:port/db — `?options=-c search_path=...` selects a schema */
  connectionString: string;
  /** pool size (default 10) */
  maxConnections?: number;
  /** called for errors of idle pooled connections (server restart, terminated backend) */
  onPoolError?: (err: Error) => void;
}

/**
 * A migrated PostgreSQL-backed Store over a `pg` pool. The same Kysely queries and migrations as SQLite;
 * the store normalises what pg returns (int8 as string, booleans, bytea) at its edge. An idle client's
 * error (e.g. the server restarting) is reported, never allowed to crash the process.
 */
export async function createPostgresStore(opts: PostgresStoreOptions): Promise<Store> {
  const pool = new pg.Pool({
    connectionString: opts.connectionString,
    max: opts.maxConnections ?? 10,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    application_name: "canopy",
    // notice a dead peer or server within minutes, not the OS default of hours
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  });
  pool.on("error", (err) => opts.onPoolError?.(err));
  // pg emits 'error' on a client whose connection drops, and pg-pool listens only while the client is
  // idle: a client checked out for a transaction when the server restarts would crash the process with
  // an unhandled 'error' event. Its queries fail anyway (the transaction becomes StoreUnavailableError
  // and the pool discards the client), so the event itself needs no handling beyond being heard.
  pool.on("connect", (client) => client.on("error", () => undefined));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const store = createKyselyStore(db, "postgres", (subscriber) => listen(opts.connectionString, subscriber));
  try {
    await store.migrate();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

/**
 * LISTENs on a dedicated connection (outside the pool: a pooled client would be handed to queries).
 * When the connection drops it reconnects with backoff and reports `onReconnect`, because
 * notifications sent meanwhile are lost; the caller then reloads (and polls as a safety net anyway).
 * Resolves once the first LISTEN is in place, or after the first failure (the retries continue).
 */
async function listen(connectionString: string, subscriber: ChangeSubscriber): Promise<() => Promise<void>> {
  let stopped = false;
  let client: pg.Client | undefined;
  let delay = 250;
  let timer: NodeJS.Timeout | undefined;

  const connect = async (first: boolean): Promise<void> => {
    if (stopped) return;
    // a name of its own, so operators (and tests) can tell the LISTEN connection in pg_stat_activity
    const c = new pg.Client({ connectionString, connectionTimeoutMillis: 5_000, keepAlive: true, application_name: LISTEN_APPLICATION_NAME });
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      c.removeAllListeners();
      c.on("error", () => undefined);
      c.end().catch(() => undefined);
      if (client === c) client = undefined;
      if (stopped) return;
      subscriber.onDisconnect(err);
      timer = setTimeout(() => void connect(false), delay);
      delay = Math.min(delay * 2, 5_000);
    };
    c.on("error", fail);
    c.on("end", () => fail(new Error("LISTEN connection ended")));
    c.on("notification", (msg) => {
      if (msg.channel !== CHANGE_CHANNEL || !msg.payload) return;
      const [environmentId, rev] = msg.payload.split(" ");
      const revision = Number(rev);
      if (environmentId && Number.isInteger(revision)) subscriber.onChange({ environmentId, revision });
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${CHANGE_CHANNEL}`);
      if (stopped) {
        // unsubscribed while connecting: this connection must not outlive the store
        c.removeAllListeners();
        c.on("error", () => undefined);
        await c.end().catch(() => undefined);
        return;
      }
      client = c;
      delay = 250;
      if (!first) subscriber.onReconnect();
    } catch (err) {
      fail(err as Error);
    }
  };

  await connect(true);
  return async () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    const c = client;
    client = undefined;
    if (c) {
      c.removeAllListeners();
      c.on("error", () => undefined);
      await c.end().catch(() => undefined);
    }
  };
}
