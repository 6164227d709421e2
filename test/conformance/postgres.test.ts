import { afterAll, describe, expect, it } from "vitest";
import { createPostgresStore } from "../../src/store/postgres.js";
import { describeStoreConformance } from "./store.conformance.js";
import { freshSchema, usePostgres } from "../support/postgres.js";

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
