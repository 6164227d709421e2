import { afterAll, describe, expect, it } from "vitest";
import { createPostgresStore } from "../../src/store/postgres.js";
import { describeStoreConformance } from "./store.conformance.js";
import { adminQuery, freshSchema, usePostgres } from "../support/postgres.js";
import { StoreUnavailableError } from "../../src/store/store.js";

const enabled = await usePostgres();
const drops: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const d of drops) await d();
});

async function makeStore() {
  const s = await freshSchema("conf");
  drops.push(s.drop);
  return createPostgresStore({ connectionString: s.url, maxConnections: 4 });
}

describe.skipIf(!enabled)("postgres", () => {
  describeStoreConformance("postgres", makeStore);

  describe("postgres store", () => {
    it("a connection the server cuts while a transaction holds it fails that transaction UNAVAILABLE; the process keeps running and the next transaction succeeds", async () => {
      // pg's pool stops listening for a client's errors while the client is checked out, and pg emits
      // 'error' on a client whose socket closes; without a listener of our own that is an uncaught
      // exception, i.e. the whole server dies when PostgreSQL restarts under a transaction.
      const s = await freshSchema("conf");
      drops.push(s.drop);
      const name = `canopy-conf-cut-${Math.random().toString(36).slice(2, 10)}`;
      const url = new URL(s.url);
      url.searchParams.set("application_name", name);
      const store = await createPostgresStore({ connectionString: url.toString(), maxConnections: 2 });
      try {
        const failure = await store
          .transaction(async (tx) => {
            await tx.insertAccount({ id: "01a20000-0000-7000-8000-000000000002", name: "cut", createdAt: 1 });
            const killed = await adminQuery("select pg_terminate_backend(pid) as ok from pg_stat_activity where application_name = $1 and state = 'idle in transaction'", [name]);
            expect(killed.rows.map((r) => r.ok)).toEqual([true]);
            // let the closed socket reach the client while no query runs on it
            await new Promise((r) => setTimeout(r, 300));
            await tx.insertAccount({ id: "01a20000-0000-7000-8000-000000000003", name: "after", createdAt: 2 });
          })
          .then(
            () => undefined,
            (err: unknown) => err,
          );
        expect(failure).toBeInstanceOf(StoreUnavailableError);
        // nothing of the cut transaction was committed, and the pool recovers with a fresh connection
        expect(await store.reader.listAllAccounts()).toEqual([]);
        await store.transaction((tx) => tx.insertAccount({ id: "01a20000-0000-7000-8000-000000000004", name: "next", createdAt: 3 }));
        expect((await store.reader.listAllAccounts()).map((a) => a.name)).toEqual(["next"]);
      } finally {
        await store.close();
      }
    });

    it("runs in the schema named by the connection's search_path, with every table migrated", async () => {
      const s = await freshSchema("conf");
      drops.push(s.drop);
      const store = await createPostgresStore({ connectionString: s.url });
      try {
        await store.transaction((tx) => tx.insertAccount({ id: "01a20000-0000-7000-8000-000000000001", name: "pg", createdAt: 1 }));
        expect(await store.reader.listAllAccounts()).toEqual([{ id: "01a20000-0000-7000-8000-000000000001", name: "pg", createdAt: 1 }]);
      } finally {
        await store.close();
      }
    });
  });
});
