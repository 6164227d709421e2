import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { newId } from "../../src/domain/ids.js";
import type {
  Account,
  ApiKey,
  AppMembership,
  Application,
  Assignment,
  Environment,
  HierarchyNode,
  HierarchySchema,
  Identity,
  Permission,
  Role,
} from "../../src/domain/model.js";
import {
  StoreConflictError,
  StoreUnavailableError,
  type AssignmentFilter,
  type IdempotencyRecord,
  type IdentityFilter,
  type Store,
  type StoreWriter,
} from "../../src/store/store.js";

/**
 * The behaviour every Store backend must show, run once per dialect (sqlite.test.ts, and the
 * PostgreSQL suite next). Each test gets a fresh, migrated, empty store from `makeStore` and checks
 * values, not just the absence of errors.
 */

/** 2026-01-01T00:00:00Z: above 2^32, so a time truncated to 32 bits would show. */
const T0 = Date.UTC(2026, 0, 1);
/** The largest valid JS Date, still a safe integer: must survive a bigint column exactly. */
const FAR = 8_640_000_000_000_000;

const SCHEMA: HierarchySchema = {
  nodeTypes: ["org", "region", "store"],
  allowedChildren: { org: ["region"], region: ["store"], store: [] },
  maxDepth: 3,
  rootNodeType: "org",
};

// ---- record builders (ids are UUIDv7: creation order = id order) ---------------------------

function makeAccount(over: Partial<Account> = {}): Account {
  return { id: newId(), name: "Acme", createdAt: T0, ...over };
}

function makeApplication(accountId: string, over: Partial<Application> = {}): Application {
  return { id: newId(), accountId, name: `app-${newId()}`, createdAt: T0, ...over };
}

function makeEnvironment(app: Application, over: Partial<Environment> = {}): Environment {
  return {
    id: newId(),
    applicationId: app.id,
    accountId: app.accountId,
    name: "development",
    accessModel: "hierarchy",
    schema: null,
    rootNodeId: newId(),
    revision: 0,
    createdAt: T0,
    ...over,
  };
}

function makeNode(environmentId: string, parentId: string | null, over: Partial<HierarchyNode> = {}): HierarchyNode {
  return {
    id: newId(),
    environmentId,
    parentId,
    type: parentId === null ? "org" : "region",
    name: `node-${newId().slice(-6)}`,
    externalId: null,
    metadata: {},
    createdAt: T0,
    updatedAt: T0,
    ...over,
  };
}

function makeIdentity(accountId: string, over: Partial<Identity> = {}): Identity {
  const id = newId();
  return {
    id,
    accountId,
    email: `${id}@example.com`,
    displayName: "Ada Lovelace",
    externalId: null,
    metadata: {},
    isActive: true,
    createdAt: T0,
    updatedAt: T0,
    ...over,
  };
}

function makePermission(environmentId: string, key: string, over: Partial<Permission> = {}): Permission {
  return { id: newId(), environmentId, key, description: `may ${key}`, category: "general", createdAt: T0, updatedAt: T0, ...over };
}

function makeRole(environmentId: string, name: string, over: Partial<Omit<Role, "permissionKeys">> = {}): Omit<Role, "permissionKeys"> {
  return { id: newId(), environmentId, name, description: `${name} role`, createdAt: T0, updatedAt: T0, ...over };
}

function makeAssignment(
  environmentId: string,
  identityId: string,
  roleId: string,
  nodeId: string,
  over: Partial<Assignment> = {},
): Assignment {
  return {
    id: newId(),
    environmentId,
    identityId,
    roleId,
    nodeId,
    effectiveFrom: T0,
    effectiveTo: null,
    createdAt: T0,
    updatedAt: T0,
    ...over,
  };
}

function makeApiKey(accountId: string, environmentId: string | null, over: Partial<ApiKey> = {}): ApiKey {
  const id = newId();
  return {
    id,
    accountId,
    environmentId,
    name: "ci",
    keyHash: `hash-${id}`,
    prefix: "cnpy_abc",
    scopes: [],
    expiresAt: null,
    revokedAt: null,
    createdAt: T0,
    ...over,
  };
}

function ids<T extends { id: string }>(rows: T[]): string[] {
  return rows.map((r) => r.id);
}

async function expectConflict(p: Promise<unknown>, constraint: "unique" | "foreign_key"): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StoreConflictError);
  expect((err as StoreConflictError).constraint).toBe(constraint);
}

/** An environment with its root node, in a fresh account and application. */
interface Seed {
  account: Account;
  app: Application;
  env: Environment;
  root: HierarchyNode;
}

async function seedEnvironment(store: Store, opts: { account?: Account; app?: Application; name?: string } = {}): Promise<Seed> {
  return store.transaction(async (tx) => {
    const account = opts.account ?? makeAccount();
    if (!opts.account) await tx.insertAccount(account);
    const app = opts.app ?? makeApplication(account.id);
    if (!opts.app) await tx.insertApplication(app);
    const env = makeEnvironment(app, { name: opts.name ?? "development" });
    await tx.insertEnvironment(env);
    const root = makeNode(env.id, null, { id: env.rootNodeId, name: "root" });
    await tx.insertNode(root);
    return { account, app, env, root };
  });
}

// ---- the suite -----------------------------------------------------------------------------

export function describeStoreConformance(name: string, makeStore: () => Promise<Store>): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;
    beforeEach(async () => {
      store = await makeStore();
    });
    afterEach(async () => {
      await store.close();
    });

    describe("accounts and applications", () => {
      it("reads accounts back as written, ordered by id; the default account is the first created", async () => {
        const a = makeAccount({ name: "First" });
        const b = makeAccount({ name: "Second", createdAt: T0 + 1 });
        expect(await store.reader.getDefaultAccount()).toBeUndefined();
        // inserted out of order: reads are ordered by id, not by insertion
        await store.transaction(async (tx) => {
          await tx.insertAccount(b);
          await tx.insertAccount(a);
        });
        expect(await store.reader.getAccount(a.id)).toEqual(a);
        expect(await store.reader.getAccount(b.id)).toEqual(b);
        expect(await store.reader.listAllAccounts()).toEqual([a, b]);
        expect(await store.reader.getDefaultAccount()).toEqual(a);
        expect(typeof (await store.reader.getAccount(a.id))!.createdAt).toBe("number");
      });

      it("returns undefined for missing rows of every kind", async () => {
        const { env } = await seedEnvironment(store);
        const missing = newId();
        const r = store.reader;
        expect(await r.getAccount(missing)).toBeUndefined();
        expect(await r.getApplication(missing)).toBeUndefined();
        expect(await r.getEnvironment(missing)).toBeUndefined();
        expect(await r.getApiKey(missing)).toBeUndefined();
        expect(await r.getApiKeyByHash("no-such-hash")).toBeUndefined();
        expect(await r.getIdentity(missing)).toBeUndefined();
        expect(await r.getIdentityByEmail(env.accountId, "nobody@example.com")).toBeUndefined();
        expect(await r.getIdentityByExternalId(env.accountId, "ext-none")).toBeUndefined();
        expect(await r.getMembership(missing, env.applicationId)).toBeUndefined();
        expect(await r.getPermission(env.id, missing)).toBeUndefined();
        expect(await r.getRole(env.id, missing)).toBeUndefined();
        expect(await r.getRoleByName(env.id, "nope")).toBeUndefined();
        expect(await r.getNode(env.id, missing)).toBeUndefined();
        expect(await r.getAssignment(env.id, missing)).toBeUndefined();
        expect(await r.getIdempotencyRecord(env.id, "nope")).toBeUndefined();
        expect(await r.getIdentitiesByIds([])).toEqual([]);
        expect(await r.getNodesByIds(env.id, [])).toEqual([]);
        expect(await r.countAssignmentsOnNodes(env.id, [])).toBe(0);
      });

      it("lists an account's applications by id with keyset paging", async () => {
        const acct = makeAccount();
        const other = makeAccount();
        const apps = Array.from({ length: 5 }, (_, i) => makeApplication(acct.id, { name: `app-${i}`, createdAt: T0 + i }));
        await store.transaction(async (tx) => {
          await tx.insertAccount(acct);
          await tx.insertAccount(other);
          await tx.insertApplication(makeApplication(other.id, { name: "app-0" }));
          for (const a of [...apps].reverse()) await tx.insertApplication(a);
        });
        const p1 = await store.reader.listApplications(acct.id, { limit: 2, afterId: "" });
        const p2 = await store.reader.listApplications(acct.id, { limit: 2, afterId: p1[1].id });
        const p3 = await store.reader.listApplications(acct.id, { limit: 2, afterId: p2[1].id });
        const p4 = await store.reader.listApplications(acct.id, { limit: 2, afterId: p3[0].id });
        expect(p1).toEqual(apps.slice(0, 2));
        expect(p2).toEqual(apps.slice(2, 4));
        expect(p3).toEqual(apps.slice(4));
        expect(p4).toEqual([]);
        expect(await store.reader.getApplication(apps[3].id)).toEqual(apps[3]);
      });

      it("refuses a duplicate application name in the same account and writes nothing of that transaction", async () => {
        const acct = makeAccount();
        const other = makeAccount();
        const first = makeApplication(acct.id, { name: "billing" });
        await store.transaction(async (tx) => {
          await tx.insertAccount(acct);
          await tx.insertAccount(other);
          await tx.insertApplication(first);
        });
        const innocent = makeApplication(acct.id, { name: "crm" });
        await expectConflict(
          store.transaction(async (tx) => {
            await tx.insertApplication(innocent);
            await tx.insertApplication(makeApplication(acct.id, { name: "billing" }));
          }),
          "unique",
        );
        expect(await store.reader.getApplication(innocent.id)).toBeUndefined();
        expect(await store.reader.listApplications(acct.id, { limit: 10, afterId: "" })).toEqual([first]);
        // the same name in another account is fine
        const elsewhere = makeApplication(other.id, { name: "billing" });
        await store.transaction((tx) => tx.insertApplication(elsewhere));
        expect(await store.reader.getApplication(elsewhere.id)).toEqual(elsewhere);
      });

      it("refuses an application of an unknown account (foreign key)", async () => {
        const app = makeApplication(newId());
        await expectConflict(
          store.transaction((tx) => tx.insertApplication(app)),
          "foreign_key",
        );
        expect(await store.reader.getApplication(app.id)).toBeUndefined();
      });
    });

    describe("environments", () => {
      it("round-trips an environment with and without a hierarchy schema", async () => {
        const acct = makeAccount();
        const app = makeApplication(acct.id);
        const dev = makeEnvironment(app, { name: "development", schema: SCHEMA, revision: 7, createdAt: T0 + 5 });
        const prod = makeEnvironment(app, { name: "production", accessModel: "flat", schema: null });
        await store.transaction(async (tx) => {
          await tx.insertAccount(acct);
          await tx.insertApplication(app);
          await tx.insertEnvironment(dev);
          await tx.insertEnvironment(prod);
        });
        const readDev = await store.reader.getEnvironment(dev.id);
        expect(readDev).toEqual(dev);
        expect(readDev!.schema).toEqual(SCHEMA);
        expect(typeof readDev!.revision).toBe("number");
        expect(typeof readDev!.createdAt).toBe("number");
        expect(await store.reader.getEnvironment(prod.id)).toEqual(prod);
      });

      it("lists environments by account, by application and all of them, ordered by id", async () => {
        const a = await seedEnvironment(store, { name: "development" });
        const a2 = await seedEnvironment(store, { account: a.account, app: a.app, name: "production" });
        const otherApp = makeApplication(a.account.id);
        await store.transaction((tx) => tx.insertApplication(otherApp));
        const a3 = await seedEnvironment(store, { account: a.account, app: otherApp, name: "development" });
        const b = await seedEnvironment(store);
        expect(await store.reader.listEnvironments(a.account.id)).toEqual([a.env, a2.env, a3.env]);
        expect(await store.reader.listEnvironments(a.account.id, a.app.id)).toEqual([a.env, a2.env]);
        expect(await store.reader.listEnvironments(a.account.id, otherApp.id)).toEqual([a3.env]);
        expect(await store.reader.listEnvironments(b.account.id)).toEqual([b.env]);
        expect(await store.reader.listAllEnvironments()).toEqual([a.env, a2.env, a3.env, b.env]);
      });

      it("refuses a duplicate environment name within an application", async () => {
        const s = await seedEnvironment(store, { name: "development" });
        const dup = makeEnvironment(s.app, { name: "development" });
        await expectConflict(
          store.transaction((tx) => tx.insertEnvironment(dup)),
          "unique",
        );
        expect(await store.reader.getEnvironment(dup.id)).toBeUndefined();
        expect(await store.reader.listEnvironments(s.account.id)).toEqual([s.env]);
      });

      it("refuses an environment of an unknown application (foreign key)", async () => {
        const acct = makeAccount();
        await store.transaction((tx) => tx.insertAccount(acct));
        const env = makeEnvironment(makeApplication(acct.id));
        await expectConflict(
          store.transaction((tx) => tx.insertEnvironment(env)),
          "foreign_key",
        );
        expect(await store.reader.listAllEnvironments()).toEqual([]);
      });

      it("updates only the patched fields and removes the schema with null", async () => {
        const s = await seedEnvironment(store);
        const newRoot = newId();
        await store.transaction((tx) => tx.updateEnvironment(s.env.id, { accessModel: "flat", schema: SCHEMA }));
        expect(await store.reader.getEnvironment(s.env.id)).toEqual({ ...s.env, accessModel: "flat", schema: SCHEMA });
        await store.transaction((tx) => tx.updateEnvironment(s.env.id, { rootNodeId: newRoot }));
        expect(await store.reader.getEnvironment(s.env.id)).toEqual({ ...s.env, accessModel: "flat", schema: SCHEMA, rootNodeId: newRoot });
        await store.transaction((tx) => tx.updateEnvironment(s.env.id, { schema: null }));
        expect(await store.reader.getEnvironment(s.env.id)).toEqual({ ...s.env, accessModel: "flat", schema: null, rootNodeId: newRoot });
        await store.transaction((tx) => tx.updateEnvironment(s.env.id, {}));
        expect((await store.reader.getEnvironment(s.env.id))!.rootNodeId).toBe(newRoot);
      });

      it("bumpRevision increments by one, returns the new revision and touches only that environment", async () => {
        const s = await seedEnvironment(store, { name: "development" });
        const other = await seedEnvironment(store, { account: s.account, app: s.app, name: "production" });
        expect(await store.transaction((tx) => tx.bumpRevision(s.env.id))).toBe(1);
        expect(await store.transaction((tx) => tx.bumpRevision(s.env.id))).toBe(2);
        const inTx = await store.transaction(async (tx) => {
          const r = await tx.bumpRevision(s.env.id);
          return { r, seen: (await tx.getEnvironment(s.env.id))!.revision };
        });
        expect(inTx).toEqual({ r: 3, seen: 3 });
        expect((await store.reader.getEnvironment(s.env.id))!.revision).toBe(3);
        expect((await store.reader.getEnvironment(other.env.id))!.revision).toBe(0);
        // a rolled-back bump is not kept
        await expect(
          store.transaction(async (tx) => {
            await tx.bumpRevision(s.env.id);
            throw new Error("abort");
          }),
        ).rejects.toThrow("abort");
        expect((await store.reader.getEnvironment(s.env.id))!.revision).toBe(3);
      });
    });

    describe("api keys", () => {
      it("round-trips admin and environment keys and lists them by kind", async () => {
        const s = await seedEnvironment(store, { name: "development" });
        const prod = await seedEnvironment(store, { account: s.account, app: s.app, name: "production" });
        const otherAccount = await seedEnvironment(store);
        const admin = makeApiKey(s.account.id, null, { scopes: ["admin"], expiresAt: FAR });
        const devKey = makeApiKey(s.account.id, s.env.id, { scopes: ["check", "assignments:write"] });
        const prodKey = makeApiKey(s.account.id, prod.env.id);
        const foreign = makeApiKey(otherAccount.account.id, null);
        await store.transaction(async (tx) => {
          for (const k of [prodKey, foreign, devKey, admin]) await tx.insertApiKey(k);
        });
        expect(await store.reader.getApiKey(admin.id)).toEqual(admin);
        expect(await store.reader.getApiKey(devKey.id)).toEqual(devKey);
        expect(await store.reader.getApiKeyByHash(devKey.keyHash)).toEqual(devKey);
        expect((await store.reader.getApiKey(admin.id))!.expiresAt).toBe(FAR);
        expect(await store.reader.listApiKeys(s.account.id)).toEqual([admin, devKey, prodKey]);
        expect(await store.reader.listApiKeys(s.account.id, null)).toEqual([admin]);
        expect(await store.reader.listApiKeys(s.account.id, s.env.id)).toEqual([devKey]);
        expect(await store.reader.listApiKeys(otherAccount.account.id)).toEqual([foreign]);
      });

      it("revokes a key once: the first revocation time stands", async () => {
        const s = await seedEnvironment(store);
        const key = makeApiKey(s.account.id, s.env.id);
        await store.transaction((tx) => tx.insertApiKey(key));
        await store.transaction((tx) => tx.revokeApiKey(key.id, T0 + 100));
        expect(await store.reader.getApiKey(key.id)).toEqual({ ...key, revokedAt: T0 + 100 });
        await store.transaction((tx) => tx.revokeApiKey(key.id, T0 + 200));
        expect((await store.reader.getApiKey(key.id))!.revokedAt).toBe(T0 + 100);
      });

      it("refuses a duplicate key hash", async () => {
        const s = await seedEnvironment(store);
        const key = makeApiKey(s.account.id, s.env.id);
        await store.transaction((tx) => tx.insertApiKey(key));
        const dup = makeApiKey(s.account.id, null, { keyHash: key.keyHash });
        await expectConflict(
          store.transaction((tx) => tx.insertApiKey(dup)),
          "unique",
        );
        expect(await store.reader.getApiKey(dup.id)).toBeUndefined();
        expect(await store.reader.getApiKeyByHash(key.keyHash)).toEqual(key);
      });
    });

    describe("identities", () => {
      it("round-trips identities with nested metadata, booleans as booleans and null external ids", async () => {
        const acct = makeAccount();
        const metadata = { team: "core", level: 3, tags: ["a", "b"], nested: { on: true, none: null }, ratio: 0.5, uni: "żółw ✓" };
        const active = makeIdentity(acct.id, { metadata, externalId: "ext-1", createdAt: T0 + 1, updatedAt: T0 + 2 });
        const inactive = makeIdentity(acct.id, { isActive: false });
        await store.transaction(async (tx) => {
          await tx.insertAccount(acct);
          await tx.insertIdentity(active);
          await tx.insertIdentity(inactive);
        });
        const a = await store.reader.getIdentity(active.id);
        const b = await store.reader.getIdentity(inactive.id);
        expect(a).toEqual(active);
        expect(b).toEqual(inactive);
        expect(a!.isActive).toBe(true);
        expect(b!.isActive).toBe(false);
        expect(b!.externalId).toBeNull();
        expect(a!.metadata).toEqual(metadata);
        expect(await store.reader.getIdentityByEmail(acct.id, active.email)).toEqual(active);
        expect(await store.reader.getIdentityByExternalId(acct.id, "ext-1")).toEqual(active);
        expect(await store.reader.getIdentityByEmail(newId(), active.email)).toBeUndefined();
        expect(await store.reader.listAllIdentities(acct.id)).toEqual([active, inactive]);
      });

      it("reads many identities by id in id order, skipping missing ids, beyond one IN chunk", async () => {
        const acct = makeAccount();
        const people = Array.from({ length: 1203 }, () => makeIdentity(acct.id));
        await store.transaction(async (tx) => {
          await tx.insertAccount(acct);
          for (const p of people) await tx.insertIdentity(p);
        });
        const wanted = [...people].reverse().filter((_, i) => i % 2 === 0);
        const got = await store.reader.getIdentitiesByIds([...ids(wanted), newId(), wanted[0].id]);
        expect(ids(got)).toEqual(ids(wanted).sort());
        expect(got.length).toBe(602);
        expect(got[0]).toEqual(people[0]);
      });

      it("keeps email and external id unique per account, allows many null external ids", async () => {
        const acct = makeAccount();
        const other = makeAccount();
        const ada = makeIdentity(acct.id, { email: "ada@example.com", externalId: "E1" });
        await store.transaction(async (tx) => {
          await tx.insertAccount(acct);
          await tx.insertAccount(other);
          await tx.insertIdentity(ada);
          await tx.insertIdentity(makeIdentity(acct.id, { externalId: null }));
          await tx.insertIdentity(makeIdentity(acct.id, { externalId: null }));
        });
        const sameEmail = makeIdentity(acct.id, { email: "ada@example.com" });
        await expectConflict(
          store.transaction((tx) => tx.insertIdentity(sameEmail)),
          "unique",
        );
        const sameExternal = makeIdentity(acct.id, { externalId: "E1" });
        await expectConflict(
          store.transaction((tx) => tx.insertIdentity(sameExternal)),
          "unique",
        );
        expect(await store.reader.getIdentity(sameEmail.id)).toBeUndefined();
        expect(await store.reader.getIdentity(sameExternal.id)).toBeUndefined();
        expect((await store.reader.listAllIdentities(acct.id)).length).toBe(3);
        // an update into a taken email is refused too, and leaves the row as it was
        const bob = makeIdentity(acct.id, { email: "bob@example.com" });
        await store.transaction((tx) => tx.insertIdentity(bob));
        await expectConflict(
          store.transaction((tx) => tx.updateIdentity(bob.id, { email: "ada@example.com", updatedAt: T0 + 9 })),
          "unique",
        );
        expect(await store.reader.getIdentity(bob.id)).toEqual(bob);
        // other accounts are independent
        const twin = makeIdentity(other.id, { email: "ada@example.com", externalId: "E1" });
        await store.transaction((tx) => tx.insertIdentity(twin));
        expect(await store.reader.getIdentityByEmail(other.id, "ada@example.com")).toEqual(twin);
        expect(await store.reader.getIdentityByEmail(acct.id, "ada@example.com")).toEqual(ada);
      });

      it("lists identities with filters and keyset paging", async () => {
        const s = await seedEnvironment(store);
        const otherApp = makeApplication(s.account.id);
        const people = Array.from({ length: 6 }, (_, i) =>
          makeIdentity(s.account.id, { isActive: i % 3 !== 0, externalId: `ext-${i}` }),
        );
        await store.transaction(async (tx) => {
          await tx.insertApplication(otherApp);
          for (const p of people) await tx.insertIdentity(p);
          for (const i of [1, 2, 4]) {
            await tx.insertMembership({ identityId: people[i].id, applicationId: s.app.id, status: i === 4 ? "inactive" : "active", createdAt: T0, updatedAt: T0 });
          }
          await tx.insertMembership({ identityId: people[0].id, applicationId: otherApp.id, status: "active", createdAt: T0, updatedAt: T0 });
        });
        const all = (f: Omit<Parameters<Store["reader"]["listIdentities"]>[0], "accountId">) =>
          store.reader.listIdentities({ accountId: s.account.id, ...f }, { limit: 100, afterId: "" });
        expect(await all({})).toEqual(people);
        expect(await all({ isActive: false })).toEqual([people[0], people[3]]);
        expect(await all({ isActive: true })).toEqual([people[1], people[2], people[4], people[5]]);
        expect(await all({ applicationId: s.app.id })).toEqual([people[1], people[2], people[4]]);
        expect(await all({ applicationId: otherApp.id })).toEqual([people[0]]);
        expect(await all({ applicationId: s.app.id, isActive: true })).toEqual([people[1], people[2], people[4]]);
        expect(await all({ email: people[5].email })).toEqual([people[5]]);
        expect(await all({ externalId: "ext-2" })).toEqual([people[2]]);
        expect(await store.reader.listIdentities({ accountId: newId() }, { limit: 100, afterId: "" })).toEqual([]);
        const p1 = await store.reader.listIdentities({ accountId: s.account.id }, { limit: 4, afterId: "" });
        const p2 = await store.reader.listIdentities({ accountId: s.account.id }, { limit: 4, afterId: p1[3].id });
        expect(p1).toEqual(people.slice(0, 4));
        expect(p2).toEqual(people.slice(4));
        const q = await store.reader.listIdentities({ accountId: s.account.id, isActive: true }, { limit: 2, afterId: people[2].id });
        expect(q).toEqual([people[4], people[5]]);
      });

      it("pages identities by offset and counts them under the same filters", async () => {
        const s = await seedEnvironment(store);
        const stranger = makeAccount();
        // inactive: 0, 3, 6; members of s.app: 1, 3, 4, 6
        const people = Array.from({ length: 7 }, (_, i) => makeIdentity(s.account.id, { isActive: i % 3 !== 0, externalId: `ext-${i}` }));
        await store.transaction(async (tx) => {
          await tx.insertAccount(stranger);
          await tx.insertIdentity(makeIdentity(stranger.id));
          for (const p of people) await tx.insertIdentity(p);
          for (const i of [1, 3, 4, 6]) {
            await tx.insertMembership({ identityId: people[i].id, applicationId: s.app.id, status: i === 4 ? "inactive" : "active", createdAt: T0, updatedAt: T0 });
          }
        });
        const mine = (f: Omit<IdentityFilter, "accountId"> = {}): IdentityFilter => ({ accountId: s.account.id, ...f });
        const count = (f?: Omit<IdentityFilter, "accountId">) => store.reader.countIdentities(mine(f));
        const at = (f: Omit<IdentityFilter, "accountId">, offset: number, limit: number) =>
          store.reader.listIdentities(mine(f), { limit, afterId: "", offset });
        expect(await count()).toBe(7);
        expect(await at({}, 0, 3)).toEqual(people.slice(0, 3));
        expect(await at({}, 3, 3)).toEqual(people.slice(3, 6));
        expect(await at({}, 6, 3)).toEqual([people[6]]);
        expect(await at({}, 7, 3)).toEqual([]);
        expect(await at({}, 1_000_000, 3)).toEqual([]);
        expect(await count({ isActive: false })).toBe(3);
        expect(await at({ isActive: false }, 1, 1)).toEqual([people[3]]);
        expect(await count({ isActive: true })).toBe(4);
        expect(await at({ isActive: true }, 2, 10)).toEqual([people[4], people[5]]);
        expect(await count({ applicationId: s.app.id })).toBe(4);
        expect(await at({ applicationId: s.app.id }, 2, 10)).toEqual([people[4], people[6]]);
        expect(await count({ applicationId: s.app.id, isActive: true })).toBe(2);
        expect(await at({ applicationId: s.app.id, isActive: true }, 1, 10)).toEqual([people[4]]);
        expect(await count({ email: people[5].email })).toBe(1);
        expect(await at({ email: people[5].email }, 0, 10)).toEqual([people[5]]);
        expect(await count({ externalId: "ext-2" })).toBe(1);
        expect(await count({ externalId: "ext-2", isActive: false })).toBe(0);
        expect(await count({ externalId: "none" })).toBe(0);
        expect(await store.reader.countIdentities({ accountId: stranger.id })).toBe(1);
        expect(await store.reader.countIdentities({ accountId: newId() })).toBe(0);
        // a keyset position wins over an offset
        expect(await store.reader.listIdentities(mine(), { limit: 2, afterId: people[1].id, offset: 4 })).toEqual(people.slice(2, 4));
        // counts follow writes: a removed membership, a deactivation
        await store.transaction(async (tx) => {
          await tx.deleteMembership(people[3].id, s.app.id);
          await tx.updateIdentity(people[1].id, { isActive: false, updatedAt: T0 + 1 });
        });
        expect(await count({ applicationId: s.app.id })).toBe(3);
        expect(await at({ applicationId: s.app.id }, 1, 10)).toEqual([people[4], people[6]]);
        expect(await count({ isActive: false })).toBe(4);
        expect(await count({ applicationId: s.app.id, isActive: true })).toBe(1);
      });

      it("updates only the patched fields", async () => {
        const acct = makeAccount();
        const ada = makeIdentity(acct.id, { externalId: "E1", metadata: { a: 1 } });
        await store.transaction(async (tx) => {
          await tx.insertAccount(acct);
          await tx.insertIdentity(ada);
        });
        await store.transaction((tx) => tx.updateIdentity(ada.id, { displayName: "Countess", isActive: false, updatedAt: T0 + 10 }));
        expect(await store.reader.getIdentity(ada.id)).toEqual({ ...ada, displayName: "Countess", isActive: false, updatedAt: T0 + 10 });
        await store.transaction((tx) =>
          tx.updateIdentity(ada.id, { externalId: null, metadata: { b: [1, 2] }, email: "c@example.com", isActive: true, updatedAt: T0 + 20 }),
        );
        expect(await store.reader.getIdentity(ada.id)).toEqual({
          ...ada,
          displayName: "Countess",
          externalId: null,
          metadata: { b: [1, 2] },
          email: "c@example.com",
          isActive: true,
          updatedAt: T0 + 20,
        });
        expect(await store.reader.getIdentityByExternalId(acct.id, "E1")).toBeUndefined();
      });
    });

    describe("memberships", () => {
      it("inserts, reads, lists, updates and deletes memberships", async () => {
        const s = await seedEnvironment(store);
        const app2 = makeApplication(s.account.id);
        const ada = makeIdentity(s.account.id);
        const bob = makeIdentity(s.account.id);
        const m1: AppMembership = { identityId: ada.id, applicationId: s.app.id, status: "active", createdAt: T0, updatedAt: T0 };
        const m2: AppMembership = { identityId: ada.id, applicationId: app2.id, status: "inactive", createdAt: T0 + 1, updatedAt: T0 + 1 };
        const m3: AppMembership = { identityId: bob.id, applicationId: s.app.id, status: "active", createdAt: T0, updatedAt: T0 };
        await store.transaction(async (tx) => {
          await tx.insertApplication(app2);
          await tx.insertIdentity(ada);
          await tx.insertIdentity(bob);
          for (const m of [m3, m2, m1]) await tx.insertMembership(m);
        });
        expect(await store.reader.getMembership(ada.id, s.app.id)).toEqual(m1);
        expect(await store.reader.listMembershipsOfIdentity(ada.id)).toEqual([m1, m2]);
        expect(await store.reader.listMembershipsOfApplication(s.app.id)).toEqual([m1, m3]);
        await store.transaction((tx) => tx.updateMembershipStatus(ada.id, s.app.id, "inactive", T0 + 50));
        expect(await store.reader.getMembership(ada.id, s.app.id)).toEqual({ ...m1, status: "inactive", updatedAt: T0 + 50 });
        expect(await store.reader.getMembership(bob.id, s.app.id)).toEqual(m3);
        await store.transaction((tx) => tx.deleteMembership(ada.id, s.app.id));
        expect(await store.reader.getMembership(ada.id, s.app.id)).toBeUndefined();
        expect(await store.reader.listMembershipsOfIdentity(ada.id)).toEqual([m2]);
        expect(await store.reader.listMembershipsOfApplication(s.app.id)).toEqual([m3]);
      });

      it("refuses a duplicate membership and one of an unknown identity", async () => {
        const s = await seedEnvironment(store);
        const ada = makeIdentity(s.account.id);
        const m: AppMembership = { identityId: ada.id, applicationId: s.app.id, status: "active", createdAt: T0, updatedAt: T0 };
        await store.transaction(async (tx) => {
          await tx.insertIdentity(ada);
          await tx.insertMembership(m);
        });
        await expectConflict(
          store.transaction((tx) => tx.insertMembership({ ...m, status: "inactive" })),
          "unique",
        );
        expect(await store.reader.getMembership(ada.id, s.app.id)).toEqual(m);
        await expectConflict(
          store.transaction((tx) => tx.insertMembership({ ...m, identityId: newId() })),
          "foreign_key",
        );
        expect(await store.reader.listMembershipsOfApplication(s.app.id)).toEqual([m]);
      });
    });

    describe("permissions", () => {
      it("inserts a large batch and reads it by id, by key, by category and in pages", async () => {
        const s = await seedEnvironment(store, { name: "development" });
        const other = await seedEnvironment(store, { account: s.account, app: s.app, name: "production" });
        const perms = Array.from({ length: 650 }, (_, i) =>
          makePermission(s.env.id, `res${String(i).padStart(3, "0")}.read`, { category: i % 2 ? "odd" : "even" }),
        );
        const twin = makePermission(other.env.id, "res000.read");
        await store.transaction(async (tx) => {
          await tx.insertPermissions(perms);
          await tx.insertPermissions([twin]);
          await tx.insertPermissions([]);
        });
        expect(await store.reader.listAllPermissions(s.env.id)).toEqual(perms);
        expect(await store.reader.listAllPermissions(other.env.id)).toEqual([twin]);
        expect(await store.reader.getPermission(s.env.id, perms[10].id)).toEqual(perms[10]);
        // scoped to its environment
        expect(await store.reader.getPermission(other.env.id, perms[10].id)).toBeUndefined();
        expect(await store.reader.getPermissionsByKeys(s.env.id, ["res002.read", "res000.read", "nope.read"])).toEqual([perms[0], perms[2]]);
        expect(await store.reader.getPermissionsByKeys(other.env.id, ["res000.read", "res002.read"])).toEqual([twin]);
        const manyKeys = perms.map((p) => p.key).reverse();
        expect(await store.reader.getPermissionsByKeys(s.env.id, manyKeys)).toEqual(perms);
        const odd = perms.filter((_, i) => i % 2);
        const p1 = await store.reader.listPermissions(s.env.id, "odd", { limit: 300, afterId: "" });
        const p2 = await store.reader.listPermissions(s.env.id, "odd", { limit: 300, afterId: p1[299].id });
        expect(p1).toEqual(odd.slice(0, 300));
        expect(p2).toEqual(odd.slice(300));
        const u1 = await store.reader.listPermissions(s.env.id, undefined, { limit: 3, afterId: perms[1].id });
        expect(u1).toEqual(perms.slice(2, 5));
      });

      it("pages permissions by offset and counts them per category, after deletes too", async () => {
        const s = await seedEnvironment(store, { name: "development" });
        const other = await seedEnvironment(store, { account: s.account, app: s.app, name: "production" });
        // admin: 0, 3, 6; general: 1, 2, 4, 5, 7, 8
        const perms = Array.from({ length: 9 }, (_, i) => makePermission(s.env.id, `res${i}.read`, { category: i % 3 === 0 ? "admin" : "general" }));
        await store.transaction(async (tx) => {
          await tx.insertPermissions(perms);
          await tx.insertPermissions([makePermission(other.env.id, "res0.read", { category: "admin" })]);
        });
        const count = (category?: string) => store.reader.countPermissions(s.env.id, category);
        const at = (category: string | undefined, offset: number, limit: number) => store.reader.listPermissions(s.env.id, category, { limit, afterId: "", offset });
        expect(await count()).toBe(9);
        expect(await count("admin")).toBe(3);
        expect(await count("general")).toBe(6);
        expect(await count("none")).toBe(0);
        expect(await store.reader.countPermissions(other.env.id, undefined)).toBe(1);
        expect(await store.reader.countPermissions(other.env.id, "general")).toBe(0);
        expect(await at(undefined, 0, 2)).toEqual(perms.slice(0, 2));
        expect(await at(undefined, 4, 4)).toEqual(perms.slice(4, 8));
        expect(await at(undefined, 8, 4)).toEqual([perms[8]]);
        expect(await at(undefined, 9, 4)).toEqual([]);
        expect(await at("general", 2, 2)).toEqual([perms[4], perms[5]]);
        expect(await at("general", 4, 10)).toEqual([perms[7], perms[8]]);
        expect(await at("admin", 3, 10)).toEqual([]);
        await store.transaction(async (tx) => {
          await tx.deletePermission(perms[3].id);
          await tx.deletePermission(perms[4].id);
        });
        expect(await count()).toBe(7);
        expect(await count("admin")).toBe(2);
        expect(await count("general")).toBe(5);
        expect(await at("admin", 1, 10)).toEqual([perms[6]]);
        expect(await at("general", 2, 2)).toEqual([perms[5], perms[7]]);
        // a category change moves the permission between the counts
        await store.transaction((tx) => tx.updatePermission(perms[1].id, { category: "admin", updatedAt: T0 + 1 }));
        expect(await count("admin")).toBe(3);
        expect(await count("general")).toBe(4);
        expect(await at("admin", 1, 1)).toEqual([{ ...perms[1], category: "admin", updatedAt: T0 + 1 }]);
      });

      it("refuses a batch with a key already used in the environment and writes none of it", async () => {
        const s = await seedEnvironment(store);
        const existing = makePermission(s.env.id, "invoice.read");
        await store.transaction((tx) => tx.insertPermissions([existing]));
        const batch = [makePermission(s.env.id, "invoice.write"), makePermission(s.env.id, "invoice.read")];
        await expectConflict(
          store.transaction((tx) => tx.insertPermissions(batch)),
          "unique",
        );
        const dupInBatch = [makePermission(s.env.id, "a.b"), makePermission(s.env.id, "a.b")];
        await expectConflict(
          store.transaction((tx) => tx.insertPermissions(dupInBatch)),
          "unique",
        );
        expect(await store.reader.listAllPermissions(s.env.id)).toEqual([existing]);
      });

      it("updates description and category, never the key", async () => {
        const s = await seedEnvironment(store);
        const p = makePermission(s.env.id, "invoice.read");
        await store.transaction((tx) => tx.insertPermissions([p]));
        await store.transaction((tx) => tx.updatePermission(p.id, { category: "billing", updatedAt: T0 + 5 }));
        expect(await store.reader.getPermission(s.env.id, p.id)).toEqual({ ...p, category: "billing", updatedAt: T0 + 5 });
        await store.transaction((tx) => tx.updatePermission(p.id, { description: "Read invoices", updatedAt: T0 + 6 }));
        expect(await store.reader.getPermission(s.env.id, p.id)).toEqual({
          ...p,
          category: "billing",
          description: "Read invoices",
          updatedAt: T0 + 6,
        });
      });

      it("deletes a permission and removes it from every role", async () => {
        const s = await seedEnvironment(store);
        const read = makePermission(s.env.id, "invoice.read");
        const write = makePermission(s.env.id, "invoice.write");
        const viewer = makeRole(s.env.id, "viewer");
        const editor = makeRole(s.env.id, "editor");
        await store.transaction(async (tx) => {
          await tx.insertPermissions([read, write]);
          await tx.insertRole(viewer, [read.id]);
          await tx.insertRole(editor, [read.id, write.id]);
        });
        await store.transaction((tx) => tx.deletePermission(read.id));
        expect(await store.reader.getPermission(s.env.id, read.id)).toBeUndefined();
        expect(await store.reader.listAllPermissions(s.env.id)).toEqual([write]);
        expect((await store.reader.getRole(s.env.id, viewer.id))!.permissionKeys).toEqual([]);
        expect((await store.reader.getRole(s.env.id, editor.id))!.permissionKeys).toEqual(["invoice.write"]);
      });
    });

    describe("roles", () => {
      it("reads roles with their permission keys sorted, by id, by name and in pages", async () => {
        const s = await seedEnvironment(store, { name: "development" });
        const other = await seedEnvironment(store, { account: s.account, app: s.app, name: "production" });
        const keys = ["zeta.read", "alpha.write", "alpha.read", "billing.invoice.approve", "alpha-beta.read", "alpha_beta.read"];
        const perms = keys.map((k) => makePermission(s.env.id, k));
        const admin = makeRole(s.env.id, "admin", { createdAt: T0 + 1, updatedAt: T0 + 2 });
        const empty = makeRole(s.env.id, "nobody");
        const viewer = makeRole(s.env.id, "viewer");
        const foreignAdmin = makeRole(other.env.id, "admin");
        await store.transaction(async (tx) => {
          await tx.insertPermissions(perms);
          await tx.insertRole(admin, perms.map((p) => p.id));
          await tx.insertRole(empty, []);
          await tx.insertRole(viewer, [perms[0].id, perms[2].id]);
          await tx.insertRole(foreignAdmin, []);
        });
        const sortedKeys = [...keys].sort();
        const adminRead = { ...admin, permissionKeys: sortedKeys };
        const emptyRead = { ...empty, permissionKeys: [] };
        const viewerRead = { ...viewer, permissionKeys: ["alpha.read", "zeta.read"] };
        expect(await store.reader.getRole(s.env.id, admin.id)).toEqual(adminRead);
        expect((await store.reader.getRole(s.env.id, admin.id))!.permissionKeys).toEqual([
          "alpha-beta.read",
          "alpha.read",
          "alpha.write",
          "alpha_beta.read",
          "billing.invoice.approve",
          "zeta.read",
        ]);
        expect(await store.reader.getRole(other.env.id, admin.id)).toBeUndefined();
        expect(await store.reader.getRoleByName(s.env.id, "viewer")).toEqual(viewerRead);
        expect(await store.reader.getRoleByName(other.env.id, "admin")).toEqual({ ...foreignAdmin, permissionKeys: [] });
        expect(await store.reader.listAllRoles(s.env.id)).toEqual([adminRead, emptyRead, viewerRead]);
        expect(await store.reader.listRoles(s.env.id, { limit: 2, afterId: "" })).toEqual([adminRead, emptyRead]);
        expect(await store.reader.listRoles(s.env.id, { limit: 2, afterId: empty.id })).toEqual([viewerRead]);
      });

      it("pages roles by offset with their permission keys and counts them, after deletes too", async () => {
        const s = await seedEnvironment(store, { name: "development" });
        const other = await seedEnvironment(store, { account: s.account, app: s.app, name: "production" });
        const read = makePermission(s.env.id, "doc.read");
        const write = makePermission(s.env.id, "doc.write");
        const roles = Array.from({ length: 5 }, (_, i) => makeRole(s.env.id, `role-${i}`));
        await store.transaction(async (tx) => {
          await tx.insertPermissions([read, write]);
          for (const [i, r] of roles.entries()) await tx.insertRole(r, i % 2 ? [write.id, read.id] : []);
          await tx.insertRole(makeRole(other.env.id, "elsewhere"), []);
        });
        const read_ = (i: number): Role => ({ ...roles[i], permissionKeys: i % 2 ? ["doc.read", "doc.write"] : [] });
        const at = (offset: number, limit: number) => store.reader.listRoles(s.env.id, { limit, afterId: "", offset });
        expect(await store.reader.countRoles(s.env.id)).toBe(5);
        expect(await store.reader.countRoles(other.env.id)).toBe(1);
        expect(await store.reader.countRoles(newId())).toBe(0);
        expect(await at(0, 2)).toEqual([read_(0), read_(1)]);
        expect(await at(1, 2)).toEqual([read_(1), read_(2)]);
        expect(await at(4, 2)).toEqual([read_(4)]);
        expect(await at(5, 2)).toEqual([]);
        await store.transaction(async (tx) => {
          await tx.deleteRole(roles[0].id);
          await tx.deleteRole(roles[3].id);
        });
        expect(await store.reader.countRoles(s.env.id)).toBe(3);
        expect(await at(1, 10)).toEqual([read_(2), read_(4)]);
        expect(await at(3, 10)).toEqual([]);
      });

      it("refuses a duplicate role name in an environment, and links to unknown permissions", async () => {
        const s = await seedEnvironment(store);
        const viewer = makeRole(s.env.id, "viewer");
        await store.transaction((tx) => tx.insertRole(viewer, []));
        const dup = makeRole(s.env.id, "viewer");
        await expectConflict(
          store.transaction((tx) => tx.insertRole(dup, [])),
          "unique",
        );
        const dangling = makeRole(s.env.id, "dangling");
        await expectConflict(
          store.transaction((tx) => tx.insertRole(dangling, [newId()])),
          "foreign_key",
        );
        expect(await store.reader.listAllRoles(s.env.id)).toEqual([{ ...viewer, permissionKeys: [] }]);
      });

      it("updates a role and replaces its permissions", async () => {
        const s = await seedEnvironment(store);
        const [a, b, c] = ["a.read", "b.read", "c.read"].map((k) => makePermission(s.env.id, k));
        const role = makeRole(s.env.id, "viewer");
        await store.transaction(async (tx) => {
          await tx.insertPermissions([a, b, c]);
          await tx.insertRole(role, [a.id, b.id]);
        });
        await store.transaction((tx) => tx.updateRole(role.id, { name: "reader", updatedAt: T0 + 3 }));
        expect(await store.reader.getRole(s.env.id, role.id)).toEqual({ ...role, name: "reader", updatedAt: T0 + 3, permissionKeys: ["a.read", "b.read"] });
        expect(await store.reader.getRoleByName(s.env.id, "viewer")).toBeUndefined();
        await store.transaction((tx) => tx.setRolePermissions(role.id, [c.id, b.id, c.id], T0 + 4));
        expect(await store.reader.getRole(s.env.id, role.id)).toEqual({
          ...role,
          name: "reader",
          updatedAt: T0 + 4,
          permissionKeys: ["b.read", "c.read"],
        });
        await store.transaction((tx) => tx.setRolePermissions(role.id, [], T0 + 5));
        expect((await store.reader.getRole(s.env.id, role.id))!.permissionKeys).toEqual([]);
        await store.transaction((tx) => tx.updateRole(role.id, { description: "reads", updatedAt: T0 + 6 }));
        expect(await store.reader.getRole(s.env.id, role.id)).toEqual({
          ...role,
          name: "reader",
          description: "reads",
          updatedAt: T0 + 6,
          permissionKeys: [],
        });
      });

      it("deletes a role with its links; refuses while assignments still use it", async () => {
        const s = await seedEnvironment(store);
        const p = makePermission(s.env.id, "a.read");
        const unused = makeRole(s.env.id, "unused");
        const used = makeRole(s.env.id, "used");
        const ada = makeIdentity(s.account.id);
        const asg = makeAssignment(s.env.id, ada.id, used.id, s.root.id);
        await store.transaction(async (tx) => {
          await tx.insertPermissions([p]);
          await tx.insertRole(unused, [p.id]);
          await tx.insertRole(used, [p.id]);
          await tx.insertIdentity(ada);
          await tx.insertAssignments([asg]);
        });
        await store.transaction((tx) => tx.deleteRole(unused.id));
        expect(await store.reader.getRole(s.env.id, unused.id)).toBeUndefined();
        expect(await store.reader.getPermission(s.env.id, p.id)).toEqual(p);
        await expectConflict(
          store.transaction((tx) => tx.deleteRole(used.id)),
          "foreign_key",
        );
        expect(await store.reader.getRole(s.env.id, used.id)).toEqual({ ...used, permissionKeys: ["a.read"] });
        await store.transaction(async (tx) => {
          expect(await tx.deleteAssignmentsOfRole(s.env.id, used.id)).toEqual([asg.id]);
          await tx.deleteRole(used.id);
        });
        expect(await store.reader.listAllRoles(s.env.id)).toEqual([]);
      });
    });

    describe("nodes", () => {
      it("round-trips a tree and reads nodes by id, as children in pages and all at once", async () => {
        const s = await seedEnvironment(store);
        const other = await seedEnvironment(store);
        const eu = makeNode(s.env.id, s.root.id, { name: "EU", externalId: "region-eu", metadata: { tz: "CET", stores: 3 } });
        const us = makeNode(s.env.id, s.root.id, { name: "US" });
        const apac = makeNode(s.env.id, s.root.id, { name: "APAC" });
        const paris = makeNode(s.env.id, eu.id, { type: "store", name: "Paris" });
        await store.transaction(async (tx) => {
          // parents before children, otherwise not in id order
          for (const n of [apac, us, eu, paris]) await tx.insertNode(n);
        });
        expect(await store.reader.getNode(s.env.id, eu.id)).toEqual(eu);
        expect(await store.reader.getNode(s.env.id, s.root.id)).toEqual(s.root);
        expect((await store.reader.getNode(s.env.id, s.root.id))!.parentId).toBeNull();
        expect(await store.reader.getNode(other.env.id, eu.id)).toBeUndefined();
        expect(await store.reader.getNodesByIds(s.env.id, [paris.id, eu.id, newId()])).toEqual([eu, paris]);
        expect(await store.reader.getNodesByIds(other.env.id, [paris.id, eu.id])).toEqual([]);
        expect(await store.reader.listChildren(s.env.id, s.root.id, { limit: 10, afterId: "" })).toEqual([eu, us, apac]);
        expect(await store.reader.listChildren(s.env.id, s.root.id, { limit: 2, afterId: eu.id })).toEqual([us, apac]);
        expect(await store.reader.listChildren(s.env.id, s.root.id, { limit: 1, afterId: "" })).toEqual([eu]);
        expect(await store.reader.listChildren(s.env.id, eu.id, { limit: 10, afterId: "" })).toEqual([paris]);
        expect(await store.reader.listChildren(s.env.id, paris.id, { limit: 10, afterId: "" })).toEqual([]);
        expect(await store.reader.listChildren(other.env.id, s.root.id, { limit: 10, afterId: "" })).toEqual([]);
        expect(await store.reader.listAllNodes(s.env.id)).toEqual([s.root, eu, us, apac, paris]);
        expect(await store.reader.listAllNodes(other.env.id)).toEqual([other.root]);
      });

      it("pages children by offset and counts them per parent, after deletes and moves too", async () => {
        const s = await seedEnvironment(store);
        const other = await seedEnvironment(store);
        const regions = Array.from({ length: 5 }, () => makeNode(s.env.id, s.root.id));
        const shops = Array.from({ length: 3 }, () => makeNode(s.env.id, regions[0].id, { type: "store" }));
        await store.transaction(async (tx) => {
          for (const n of [...regions, ...shops]) await tx.insertNode(n);
        });
        const count = (parentId: string) => store.reader.countChildren(s.env.id, parentId);
        const at = (parentId: string, offset: number, limit: number) => store.reader.listChildren(s.env.id, parentId, { limit, afterId: "", offset });
        expect(await count(s.root.id)).toBe(5);
        expect(await count(regions[0].id)).toBe(3);
        expect(await count(regions[1].id)).toBe(0);
        expect(await store.reader.countChildren(other.env.id, s.root.id)).toBe(0);
        expect(await store.reader.countChildren(other.env.id, other.root.id)).toBe(0);
        expect(await at(s.root.id, 2, 2)).toEqual(regions.slice(2, 4));
        expect(await at(s.root.id, 4, 2)).toEqual([regions[4]]);
        expect(await at(s.root.id, 9, 2)).toEqual([]);
        expect(await at(regions[0].id, 1, 5)).toEqual(shops.slice(1));
        await store.transaction((tx) => tx.deleteNodes(s.env.id, [regions[0].id, ...ids(shops)]));
        expect(await count(s.root.id)).toBe(4);
        expect(await count(regions[0].id)).toBe(0);
        expect(await at(s.root.id, 0, 10)).toEqual(regions.slice(1));
        await store.transaction((tx) => tx.updateNode(regions[4].id, { parentId: regions[1].id, updatedAt: T0 + 1 }));
        expect(await count(s.root.id)).toBe(3);
        expect(await count(regions[1].id)).toBe(1);
        expect(await at(s.root.id, 1, 10)).toEqual([regions[2], regions[3]]);
      });

      it("refuses a node under an unknown parent", async () => {
        const s = await seedEnvironment(store);
        const orphan = makeNode(s.env.id, newId());
        await expectConflict(
          store.transaction((tx) => tx.insertNode(orphan)),
          "foreign_key",
        );
        expect(await store.reader.listAllNodes(s.env.id)).toEqual([s.root]);
      });

      it("updates and moves a node", async () => {
        const s = await seedEnvironment(store);
        const eu = makeNode(s.env.id, s.root.id, { externalId: "x-1", metadata: { a: 1 } });
        const us = makeNode(s.env.id, s.root.id);
        const shop = makeNode(s.env.id, eu.id, { type: "store" });
        await store.transaction(async (tx) => {
          for (const n of [eu, us, shop]) await tx.insertNode(n);
        });
        await store.transaction((tx) => tx.updateNode(shop.id, { parentId: us.id, updatedAt: T0 + 1 }));
        expect(await store.reader.getNode(s.env.id, shop.id)).toEqual({ ...shop, parentId: us.id, updatedAt: T0 + 1 });
        expect(await store.reader.listChildren(s.env.id, eu.id, { limit: 10, afterId: "" })).toEqual([]);
        await store.transaction((tx) =>
          tx.updateNode(eu.id, { name: "Europe", externalId: null, metadata: { b: { c: [true] } }, updatedAt: T0 + 2 }),
        );
        expect(await store.reader.getNode(s.env.id, eu.id)).toEqual({
          ...eu,
          name: "Europe",
          externalId: null,
          metadata: { b: { c: [true] } },
          updatedAt: T0 + 2,
        });
        await expectConflict(
          store.transaction((tx) => tx.updateNode(shop.id, { parentId: newId(), updatedAt: T0 + 3 })),
          "foreign_key",
        );
        expect((await store.reader.getNode(s.env.id, shop.id))!.parentId).toBe(us.id);
        // the root's type follows a schema's root_node_type
        await store.transaction((tx) => tx.updateNode(s.root.id, { type: "company", updatedAt: T0 + 4 }));
        expect(await store.reader.getNode(s.env.id, s.root.id)).toEqual({ ...s.root, type: "company", updatedAt: T0 + 4 });
      });

      it("deletes a whole subtree passed parents first, leaving the rest", async () => {
        const s = await seedEnvironment(store);
        const eu = makeNode(s.env.id, s.root.id);
        const fr = makeNode(s.env.id, eu.id);
        const paris = makeNode(s.env.id, fr.id, { type: "store" });
        const de = makeNode(s.env.id, eu.id);
        const us = makeNode(s.env.id, s.root.id);
        await store.transaction(async (tx) => {
          for (const n of [eu, fr, paris, de, us]) await tx.insertNode(n);
        });
        await store.transaction((tx) => tx.deleteNodes(s.env.id, [eu.id, fr.id, paris.id, de.id]));
        expect(await store.reader.listAllNodes(s.env.id)).toEqual([s.root, us]);
      });

      it("deletes a subtree larger than one chunk (a 1200-deep chain)", async () => {
        const s = await seedEnvironment(store);
        const chain: HierarchyNode[] = [];
        let parent = s.root.id;
        for (let i = 0; i < 1200; i++) {
          const n = makeNode(s.env.id, parent);
          chain.push(n);
          parent = n.id;
        }
        const keep = makeNode(s.env.id, s.root.id);
        await store.transaction(async (tx) => {
          for (const n of [...chain, keep]) await tx.insertNode(n);
        });
        await store.transaction((tx) => tx.deleteNodes(s.env.id, ids(chain)));
        expect(await store.reader.listAllNodes(s.env.id)).toEqual([s.root, keep]);
      });

      it("refuses to delete part of a subtree (a child left behind) and deletes nothing", async () => {
        const s = await seedEnvironment(store);
        const eu = makeNode(s.env.id, s.root.id);
        const fr = makeNode(s.env.id, eu.id);
        await store.transaction(async (tx) => {
          await tx.insertNode(eu);
          await tx.insertNode(fr);
        });
        await expectConflict(
          store.transaction((tx) => tx.deleteNodes(s.env.id, [eu.id])),
          "foreign_key",
        );
        expect(await store.reader.listAllNodes(s.env.id)).toEqual([s.root, eu, fr]);
        // nor one that still carries assignments
        const ada = makeIdentity(s.account.id);
        const role = makeRole(s.env.id, "viewer");
        await store.transaction(async (tx) => {
          await tx.insertIdentity(ada);
          await tx.insertRole(role, []);
          await tx.insertAssignments([makeAssignment(s.env.id, ada.id, role.id, fr.id)]);
        });
        await expectConflict(
          store.transaction((tx) => tx.deleteNodes(s.env.id, [eu.id, fr.id])),
          "foreign_key",
        );
        expect(await store.reader.listAllNodes(s.env.id)).toEqual([s.root, eu, fr]);
      });
    });

    describe("assignments", () => {
      interface World extends Seed {
        ada: Identity;
        bob: Identity;
        viewer: Omit<Role, "permissionKeys">;
        editor: Omit<Role, "permissionKeys">;
        eu: HierarchyNode;
        us: HierarchyNode;
      }

      async function world(seed?: Seed): Promise<World> {
        const s = seed ?? (await seedEnvironment(store));
        const ada = makeIdentity(s.account.id);
        const bob = makeIdentity(s.account.id);
        const viewer = makeRole(s.env.id, "viewer");
        const editor = makeRole(s.env.id, "editor");
        const eu = makeNode(s.env.id, s.root.id);
        const us = makeNode(s.env.id, s.root.id);
        await store.transaction(async (tx) => {
          await tx.insertIdentity(ada);
          await tx.insertIdentity(bob);
          await tx.insertRole(viewer, []);
          await tx.insertRole(editor, []);
          await tx.insertNode(eu);
          await tx.insertNode(us);
        });
        return { ...s, ada, bob, viewer, editor, eu, us };
      }

      it("round-trips assignments, open-ended and bounded, with exact bigint times", async () => {
        const w = await world();
        const open = makeAssignment(w.env.id, w.ada.id, w.viewer.id, w.eu.id);
        const bounded = makeAssignment(w.env.id, w.bob.id, w.editor.id, w.root.id, {
          effectiveFrom: T0 + 123,
          effectiveTo: FAR,
          createdAt: T0 + 7,
          updatedAt: T0 + 8,
        });
        await store.transaction((tx) => tx.insertAssignments([bounded, open]));
        const a = await store.reader.getAssignment(w.env.id, open.id);
        const b = await store.reader.getAssignment(w.env.id, bounded.id);
        expect(a).toEqual(open);
        expect(b).toEqual(bounded);
        expect(a!.effectiveTo).toBeNull();
        expect(b!.effectiveTo).toBe(FAR);
        expect(typeof b!.effectiveFrom).toBe("number");
        expect(await store.reader.getAssignmentsByIds(w.env.id, [bounded.id, newId(), open.id])).toEqual([open, bounded]);
        expect(await store.reader.listAllAssignments(w.env.id)).toEqual([open, bounded]);
      });

      it("keeps assignments inside their environment", async () => {
        const w = await world();
        const other = await seedEnvironment(store, { account: w.account, app: w.app, name: "production" });
        const ow = await world(other);
        const mine = makeAssignment(w.env.id, w.ada.id, w.viewer.id, w.eu.id);
        const theirs = makeAssignment(ow.env.id, w.ada.id, ow.viewer.id, ow.eu.id);
        await store.transaction((tx) => tx.insertAssignments([mine, theirs]));
        expect(await store.reader.getAssignment(ow.env.id, mine.id)).toBeUndefined();
        expect(await store.reader.getAssignmentsByIds(ow.env.id, [mine.id, theirs.id])).toEqual([theirs]);
        expect(await store.reader.listAllAssignments(w.env.id)).toEqual([mine]);
        expect(await store.reader.listAssignments(ow.env.id, { at: T0 }, { limit: 10, afterId: "" })).toEqual([theirs]);
        expect(await store.reader.listAssignmentsOfIdentities(w.env.id, [w.ada.id])).toEqual([mine]);
        expect(await store.reader.countAssignmentsOfRole(w.env.id, ow.viewer.id)).toBe(0);
        expect(await store.transaction((tx) => tx.deleteAssignments(w.env.id, [theirs.id]))).toEqual([]);
        expect(await store.reader.getAssignment(ow.env.id, theirs.id)).toEqual(theirs);
      });

      it("refuses assignments to unknown roles, nodes or identities, writing none of the batch", async () => {
        const w = await world();
        const good = makeAssignment(w.env.id, w.ada.id, w.viewer.id, w.eu.id);
        for (const bad of [
          makeAssignment(w.env.id, w.ada.id, newId(), w.eu.id),
          makeAssignment(w.env.id, w.ada.id, w.viewer.id, newId()),
          makeAssignment(w.env.id, newId(), w.viewer.id, w.eu.id),
        ]) {
          await expectConflict(
            store.transaction((tx) => tx.insertAssignments([good, bad])),
            "foreign_key",
          );
        }
        expect(await store.reader.listAllAssignments(w.env.id)).toEqual([]);
        await expectConflict(
          store.transaction((tx) => tx.insertAssignments([good, { ...good }])),
          "unique",
        );
        expect(await store.reader.listAllAssignments(w.env.id)).toEqual([]);
      });

      it("lists with identity, node and role filters and keyset paging", async () => {
        const w = await world();
        const rows = [
          makeAssignment(w.env.id, w.ada.id, w.viewer.id, w.eu.id),
          makeAssignment(w.env.id, w.ada.id, w.editor.id, w.us.id),
          makeAssignment(w.env.id, w.bob.id, w.viewer.id, w.eu.id),
          makeAssignment(w.env.id, w.bob.id, w.editor.id, w.root.id),
          makeAssignment(w.env.id, w.ada.id, w.viewer.id, w.root.id),
        ];
        await store.transaction((tx) => tx.insertAssignments([...rows].reverse()));
        const list = (f: { identityId?: string; nodeId?: string; roleId?: string }, limit = 100, afterId = "") =>
          store.reader.listAssignments(w.env.id, { ...f, at: T0 }, { limit, afterId });
        expect(await list({})).toEqual(rows);
        expect(await list({ identityId: w.ada.id })).toEqual([rows[0], rows[1], rows[4]]);
        expect(await list({ nodeId: w.eu.id })).toEqual([rows[0], rows[2]]);
        expect(await list({ roleId: w.editor.id })).toEqual([rows[1], rows[3]]);
        expect(await list({ identityId: w.ada.id, roleId: w.viewer.id, nodeId: w.root.id })).toEqual([rows[4]]);
        expect(await list({}, 2)).toEqual(rows.slice(0, 2));
        expect(await list({}, 2, rows[1].id)).toEqual(rows.slice(2, 4));
        expect(await list({ identityId: w.ada.id }, 1, rows[0].id)).toEqual([rows[1]]);
        expect(await list({}, 2, rows[4].id)).toEqual([]);
      });

      it("filters by state with the half-open window at boundary instants", async () => {
        const w = await world();
        const early = makeAssignment(w.env.id, w.ada.id, w.viewer.id, w.eu.id, { effectiveFrom: 0, effectiveTo: 1000 });
        const middle = makeAssignment(w.env.id, w.ada.id, w.viewer.id, w.eu.id, { effectiveFrom: 1000, effectiveTo: 2000 });
        const late = makeAssignment(w.env.id, w.ada.id, w.viewer.id, w.eu.id, { effectiveFrom: 2000, effectiveTo: null });
        await store.transaction((tx) => tx.insertAssignments([early, middle, late]));
        const at = async (t: number, state: "scheduled" | "active" | "expired") =>
          ids(await store.reader.listAssignments(w.env.id, { state, at: t }, { limit: 10, afterId: "" }));
        const expectStates = async (t: number, scheduled: Assignment[], active: Assignment[], expired: Assignment[]) => {
          expect(await at(t, "scheduled")).toEqual(ids(scheduled));
          expect(await at(t, "active")).toEqual(ids(active));
          expect(await at(t, "expired")).toEqual(ids(expired));
        };
        await expectStates(0, [middle, late], [early], []);
        await expectStates(999, [middle, late], [early], []);
        await expectStates(1000, [late], [middle], [early]);
        await expectStates(1999, [late], [middle], [early]);
        await expectStates(2000, [], [late], [early, middle]);
        await expectStates(FAR, [], [late], [early, middle]);
        await expectStates(-1, [early, middle, late], [], []);
        // combined with another filter and paging
        expect(
          ids(await store.reader.listAssignments(w.env.id, { state: "expired", at: 2000, identityId: w.ada.id }, { limit: 1, afterId: early.id })),
        ).toEqual([middle.id]);
        expect(await store.reader.listAssignments(w.env.id, { state: "active", at: 1500, identityId: w.bob.id }, { limit: 10, afterId: "" })).toEqual([]);
      });

      it("pages by offset and counts under every filter, states included, after deletes too", async () => {
        const w = await world();
        const ow = await world(await seedEnvironment(store, { account: w.account, app: w.app, name: "production" }));
        const { ada, bob, viewer, editor, eu, us, root } = w;
        const env = w.env.id;
        // states at t = 1000 (half-open windows)
        const rows = [
          makeAssignment(env, ada.id, viewer.id, eu.id, { effectiveFrom: 0, effectiveTo: 1000 }), // 0 expired
          makeAssignment(env, ada.id, editor.id, us.id, { effectiveFrom: 500, effectiveTo: 1500 }), // 1 active
          makeAssignment(env, bob.id, viewer.id, eu.id, { effectiveFrom: 2000, effectiveTo: null }), // 2 scheduled
          makeAssignment(env, bob.id, editor.id, root.id, { effectiveFrom: 0, effectiveTo: null }), // 3 active
          makeAssignment(env, ada.id, viewer.id, root.id, { effectiveFrom: 1000, effectiveTo: 3000 }), // 4 active
          makeAssignment(env, bob.id, viewer.id, us.id, { effectiveFrom: 1001, effectiveTo: null }), // 5 scheduled
          makeAssignment(env, ada.id, editor.id, eu.id, { effectiveFrom: 0, effectiveTo: 999 }), // 6 expired
        ];
        await store.transaction(async (tx) => {
          await tx.insertAssignments([...rows].reverse());
          await tx.insertAssignments([makeAssignment(ow.env.id, ow.ada.id, ow.viewer.id, ow.eu.id)]);
        });
        type Filter = Omit<AssignmentFilter, "at">;
        const count = (f: Filter = {}) => store.reader.countAssignments(env, { ...f, at: 1000 });
        const at = (f: Filter, offset: number, limit: number) => store.reader.listAssignments(env, { ...f, at: 1000 }, { limit, afterId: "", offset });
        expect(await count()).toBe(7);
        expect(await count({ state: "scheduled" })).toBe(2);
        expect(await count({ state: "active" })).toBe(3);
        expect(await count({ state: "expired" })).toBe(2);
        expect(await at({ state: "scheduled" }, 0, 10)).toEqual([rows[2], rows[5]]);
        expect(await at({ state: "active" }, 1, 1)).toEqual([rows[3]]);
        expect(await at({ state: "active" }, 2, 5)).toEqual([rows[4]]);
        expect(await at({ state: "expired" }, 1, 5)).toEqual([rows[6]]);
        expect(await at({ state: "expired" }, 2, 5)).toEqual([]);
        expect(await at({}, 3, 3)).toEqual(rows.slice(3, 6));
        expect(await at({}, 6, 3)).toEqual([rows[6]]);
        expect(await at({}, 7, 3)).toEqual([]);
        expect(await at({}, 1_000_000, 3)).toEqual([]);
        expect(await count({ identityId: ada.id })).toBe(4);
        expect(await at({ identityId: ada.id }, 2, 10)).toEqual([rows[4], rows[6]]);
        expect(await count({ nodeId: eu.id })).toBe(3);
        expect(await at({ nodeId: eu.id }, 1, 1)).toEqual([rows[2]]);
        expect(await count({ roleId: editor.id })).toBe(3);
        expect(await count({ identityId: ada.id, state: "active" })).toBe(2);
        expect(await at({ identityId: ada.id, state: "active" }, 1, 10)).toEqual([rows[4]]);
        expect(await count({ identityId: bob.id, roleId: viewer.id, state: "scheduled" })).toBe(2);
        expect(await count({ identityId: bob.id, nodeId: root.id, state: "expired" })).toBe(0);
        // the state is evaluated at `at`
        expect(await store.reader.countAssignments(env, { state: "expired", at: 5000 })).toBe(4);
        expect(await store.reader.countAssignments(env, { state: "scheduled", at: -1 })).toBe(7);
        // scoped to the environment
        expect(await store.reader.countAssignments(ow.env.id, { at: 1000 })).toBe(1);
        expect(await store.reader.countAssignments(ow.env.id, { identityId: ada.id, at: 1000 })).toBe(0);
        expect(await store.reader.countAssignments(newId(), { at: 1000 })).toBe(0);
        // a keyset position wins over an offset
        expect(await store.reader.listAssignments(env, { at: 1000 }, { limit: 1, afterId: rows[0].id, offset: 3 })).toEqual([rows[1]]);
        // counts after deletes
        await store.transaction((tx) => tx.deleteAssignments(env, [rows[1].id, rows[2].id]));
        expect(await count()).toBe(5);
        expect(await count({ state: "active" })).toBe(2);
        expect(await count({ state: "scheduled" })).toBe(1);
        expect(await at({}, 1, 2)).toEqual([rows[3], rows[4]]);
        await store.transaction((tx) => tx.deleteAssignmentsOfRole(env, editor.id));
        expect(await count()).toBe(3);
        expect(await count({ roleId: editor.id })).toBe(0);
        expect(await at({}, 2, 2)).toEqual([rows[5]]);
        expect(await store.reader.countAssignments(ow.env.id, { at: 1000 })).toBe(1);
      });

      it("lists assignments of many identities and counts by nodes and by role", async () => {
        const w = await world();
        const people = Array.from({ length: 700 }, () => makeIdentity(w.account.id));
        const nodes = Array.from({ length: 700 }, () => makeNode(w.env.id, w.root.id));
        const rows = people.map((p, i) => makeAssignment(w.env.id, p.id, i % 3 ? w.viewer.id : w.editor.id, nodes[i].id));
        await store.transaction(async (tx) => {
          for (const p of people) await tx.insertIdentity(p);
          for (const n of nodes) await tx.insertNode(n);
          await tx.insertAssignments(rows);
        });
        expect(await store.reader.listAllAssignments(w.env.id)).toEqual(rows);
        // the paged scans the engine loads from: every row once, in id order, pages of at most the size asked
        const pages: number[] = [];
        const scanned: unknown[] = [];
        const count = await store.reader.scanAssignments(w.env.id, (page) => {
          pages.push(page.length);
          scanned.push(...page);
        }, 64);
        expect(count).toBe(700);
        expect(pages.every((n) => n > 0 && n <= 64)).toBe(true);
        expect(pages.length).toBe(Math.ceil(700 / 64));
        const facts = (a: (typeof rows)[number]) => ({ id: a.id, identityId: a.identityId, roleId: a.roleId, nodeId: a.nodeId, effectiveFrom: a.effectiveFrom, effectiveTo: a.effectiveTo });
        expect(scanned).toEqual([...rows].sort((x, y) => (x.id < y.id ? -1 : 1)).map(facts));
        expect(await store.reader.scanAssignments(newId(), () => expect.unreachable("no page for an unknown environment"))).toBe(0);
        const states: unknown[] = [];
        expect(await store.reader.scanIdentityStates(w.account.id, (page) => states.push(...page), 100)).toBeGreaterThanOrEqual(700);
        const all = await store.reader.listAllIdentities(w.account.id);
        expect(states).toEqual(all.map((i) => ({ id: i.id, accountId: i.accountId, isActive: i.isActive })));
        // the lean tree and membership reads the engine loads from agree with the full reads
        const fullNodes = await store.reader.listAllNodes(w.env.id);
        expect(fullNodes.length).toBeGreaterThan(700);
        expect(await store.reader.listTreeNodes(w.env.id)).toEqual(fullNodes.map((n) => ({ id: n.id, parentId: n.parentId, type: n.type })));
        await store.transaction(async (tx) => {
          for (const [i, p] of people.slice(0, 30).entries()) await tx.insertMembership({ identityId: p.id, applicationId: w.env.applicationId, status: i % 4 ? "active" : "inactive", createdAt: T0, updatedAt: T0 });
        });
        const fullMemberships = await store.reader.listMembershipsOfApplication(w.env.applicationId);
        expect(fullMemberships.filter((m) => m.status === "inactive").length).toBeGreaterThan(0);
        expect(await store.reader.listMembershipStates(w.env.applicationId)).toEqual(fullMemberships.map((m) => ({ identityId: m.identityId, status: m.status })));
        const some = people.filter((_, i) => i % 7 !== 0).reverse();
        const got = await store.reader.listAssignmentsOfIdentities(w.env.id, ids(some));
        expect(got).toEqual(rows.filter((_, i) => i % 7 !== 0));
        expect(await store.reader.listAssignmentsOfIdentities(w.env.id, [])).toEqual([]);
        expect(await store.reader.countAssignmentsOnNodes(w.env.id, ids(nodes))).toBe(700);
        expect(await store.reader.countAssignmentsOnNodes(w.env.id, ids(nodes.slice(0, 600)))).toBe(600);
        expect(await store.reader.countAssignmentsOnNodes(w.env.id, [nodes[0].id, w.eu.id])).toBe(1);
        expect(await store.reader.countAssignmentsOfRole(w.env.id, w.editor.id)).toBe(rows.filter((r) => r.roleId === w.editor.id).length);
        expect(await store.reader.countAssignmentsOfRole(w.env.id, w.editor.id)).toBe(234);
        expect(await store.reader.countAssignmentsOfRole(w.env.id, w.viewer.id)).toBe(466);
      });

      it("accepts id lists longer than any dialect's bound-parameter limit", async () => {
        const w = await world();
        const a = makeAssignment(w.env.id, w.ada.id, w.viewer.id, w.eu.id);
        await store.transaction((tx) => tx.insertAssignments([a]));
        // SQLite allows 32766 parameters per statement, PostgreSQL 65535
        const unknown = Array.from({ length: 70_000 }, () => newId());
        const withReal = (real: string) => [...unknown.slice(0, 35_000), real, ...unknown.slice(35_000)];
        expect(await store.reader.getIdentitiesByIds(withReal(w.bob.id))).toEqual([w.bob]);
        expect(await store.reader.getNodesByIds(w.env.id, withReal(w.us.id))).toEqual([w.us]);
        expect(await store.reader.getAssignmentsByIds(w.env.id, withReal(a.id))).toEqual([a]);
        expect(await store.reader.listAssignmentsOfIdentities(w.env.id, withReal(w.ada.id))).toEqual([a]);
        expect(await store.reader.countAssignmentsOnNodes(w.env.id, withReal(w.eu.id))).toBe(1);
        expect(await store.transaction((tx) => tx.deleteAssignments(w.env.id, withReal(a.id)))).toEqual([a.id]);
      });

      it("updates role and window, including reopening the end", async () => {
        const w = await world();
        const a = makeAssignment(w.env.id, w.ada.id, w.viewer.id, w.eu.id, { effectiveTo: T0 + 1000 });
        await store.transaction((tx) => tx.insertAssignments([a]));
        await store.transaction((tx) => tx.updateAssignment(a.id, { roleId: w.editor.id, effectiveFrom: T0 + 10, updatedAt: T0 + 1 }));
        expect(await store.reader.getAssignment(w.env.id, a.id)).toEqual({ ...a, roleId: w.editor.id, effectiveFrom: T0 + 10, updatedAt: T0 + 1 });
        await store.transaction((tx) => tx.updateAssignment(a.id, { effectiveTo: null, updatedAt: T0 + 2 }));
        expect(await store.reader.getAssignment(w.env.id, a.id)).toEqual({
          ...a,
          roleId: w.editor.id,
          effectiveFrom: T0 + 10,
          effectiveTo: null,
          updatedAt: T0 + 2,
        });
        await expectConflict(
          store.transaction((tx) => tx.updateAssignment(a.id, { roleId: newId(), updatedAt: T0 + 3 })),
          "foreign_key",
        );
        expect((await store.reader.getAssignment(w.env.id, a.id))!.roleId).toBe(w.editor.id);
      });

      it("deletes by ids, by nodes, by role and by identity, returning what was deleted", async () => {
        const w = await world();
        const prod = await seedEnvironment(store, { account: w.account, app: w.app, name: "production" });
        const pw = await world(prod);
        const r = [
          makeAssignment(w.env.id, w.ada.id, w.viewer.id, w.eu.id), // 0
          makeAssignment(w.env.id, w.ada.id, w.editor.id, w.us.id), // 1
          makeAssignment(w.env.id, w.bob.id, w.viewer.id, w.eu.id), // 2
          makeAssignment(w.env.id, w.bob.id, w.editor.id, w.root.id), // 3
          makeAssignment(w.env.id, w.ada.id, w.viewer.id, w.root.id), // 4
          makeAssignment(w.env.id, w.bob.id, w.viewer.id, w.us.id), // 5
          makeAssignment(pw.env.id, w.ada.id, pw.viewer.id, pw.eu.id), // 6
          makeAssignment(pw.env.id, w.bob.id, pw.viewer.id, pw.eu.id), // 7
        ];
        await store.transaction((tx) => tx.insertAssignments(r));
        const missing = newId();
        expect(await store.transaction((tx) => tx.deleteAssignments(w.env.id, [r[2].id, missing, r[0].id]))).toEqual([r[0].id, r[2].id]);
        expect(await store.transaction((tx) => tx.deleteAssignments(w.env.id, [r[0].id]))).toEqual([]);
        expect(await store.transaction((tx) => tx.deleteAssignmentsOnNodes(w.env.id, [w.us.id, w.eu.id]))).toEqual([r[1].id, r[5].id]);
        expect(await store.transaction((tx) => tx.deleteAssignmentsOfRole(w.env.id, w.editor.id))).toEqual([r[3].id]);
        expect(await store.reader.listAllAssignments(w.env.id)).toEqual([r[4]]);
        expect(await store.transaction((tx) => tx.deleteAssignmentsOfIdentity(w.ada.id, [w.env.id, pw.env.id]))).toEqual([r[4], r[6]]);
        expect(await store.transaction((tx) => tx.deleteAssignmentsOfIdentity(w.bob.id, [w.env.id]))).toEqual([]);
        expect(await store.transaction((tx) => tx.deleteAssignmentsOfIdentity(w.bob.id, []))).toEqual([]);
        expect(await store.reader.listAllAssignments(w.env.id)).toEqual([]);
        expect(await store.reader.listAllAssignments(pw.env.id)).toEqual([r[7]]);
      });

      it("deletes more assignments than fit in one IN list", async () => {
        const w = await world();
        const rows = Array.from({ length: 1100 }, (_, i) => makeAssignment(w.env.id, i % 2 ? w.ada.id : w.bob.id, w.viewer.id, w.eu.id));
        await store.transaction((tx) => tx.insertAssignments(rows));
        const doomed = rows.filter((_, i) => i !== 5);
        const deleted = await store.transaction((tx) => tx.deleteAssignments(w.env.id, ids(doomed).reverse()));
        expect(deleted).toEqual(ids(doomed));
        expect(await store.reader.listAllAssignments(w.env.id)).toEqual([rows[5]]);
      });
    });

    describe("idempotency records", () => {
      it("stores the response bytes exactly and refuses a second record for the same key", async () => {
        const s = await seedEnvironment(store);
        const bytes = new Uint8Array(300).map((_, i) => (i * 37) % 256);
        const rec: IdempotencyRecord = { environmentId: s.env.id, key: "batch-1", requestHash: "ab".repeat(32), response: bytes, createdAt: T0 };
        await store.transaction((tx) => tx.putIdempotencyRecord(rec));
        const got = await store.reader.getIdempotencyRecord(s.env.id, "batch-1");
        expect(got).toEqual(rec);
        expect(got!.response).toBeInstanceOf(Uint8Array);
        expect(Array.from(got!.response)).toEqual(Array.from(bytes));
        expect(got!.response.byteLength).toBe(300);
        await expectConflict(
          store.transaction((tx) => tx.putIdempotencyRecord({ ...rec, requestHash: "cd".repeat(32) })),
          "unique",
        );
        expect((await store.reader.getIdempotencyRecord(s.env.id, "batch-1"))!.requestHash).toBe("ab".repeat(32));
        // an empty response is a valid response
        const empty = { ...rec, key: "batch-0", response: new Uint8Array(0) };
        await store.transaction((tx) => tx.putIdempotencyRecord(empty));
        expect(await store.reader.getIdempotencyRecord(s.env.id, "batch-0")).toEqual(empty);
      });

      it("keys records per environment and deletes those created before a time", async () => {
        const s = await seedEnvironment(store, { name: "development" });
        const prod = await seedEnvironment(store, { account: s.account, app: s.app, name: "production" });
        const rec = (environmentId: string, key: string, createdAt: number): IdempotencyRecord => ({
          environmentId,
          key,
          requestHash: "h",
          response: new Uint8Array([1, 2, 3]),
          createdAt,
        });
        await store.transaction(async (tx) => {
          await tx.putIdempotencyRecord(rec(s.env.id, "k", T0));
          await tx.putIdempotencyRecord(rec(prod.env.id, "k", T0 + 1000));
          await tx.putIdempotencyRecord(rec(s.env.id, "k2", T0 + 999));
        });
        expect((await store.reader.getIdempotencyRecord(prod.env.id, "k"))!.createdAt).toBe(T0 + 1000);
        expect(await store.transaction((tx) => tx.deleteIdempotencyRecordsBefore(T0 + 999))).toBe(1);
        expect(await store.reader.getIdempotencyRecord(s.env.id, "k")).toBeUndefined();
        expect(await store.reader.getIdempotencyRecord(s.env.id, "k2")).toEqual(rec(s.env.id, "k2", T0 + 999));
        expect(await store.transaction((tx) => tx.deleteIdempotencyRecordsBefore(T0 + 1001))).toBe(2);
        expect(await store.reader.getIdempotencyRecord(prod.env.id, "k")).toBeUndefined();
        expect(await store.transaction((tx) => tx.deleteIdempotencyRecordsBefore(T0 + 5000))).toBe(0);
      });
    });

    describe("replication primitives", () => {
      it("lockEnvironment returns the committed revision, or undefined for a missing environment", async () => {
        const { env } = await seedEnvironment(store);
        await store.transaction((tx) => tx.bumpRevision(env.id));
        await store.transaction((tx) => tx.bumpRevision(env.id));
        expect(await store.transaction((tx) => tx.lockEnvironment(env.id))).toBe(env.revision + 2);
        expect(await store.transaction((tx) => tx.lockEnvironment(newId()))).toBeUndefined();
      });

      it("lockEnvironment makes a second writer of the environment wait for the first to commit", async () => {
        const { env } = await seedEnvironment(store);
        const order: string[] = [];
        let releaseFirst!: () => void;
        const firstHolds = new Promise<void>((r) => (releaseFirst = r));
        let firstLocked!: () => void;
        const locked = new Promise<void>((r) => (firstLocked = r));
        const first = store.transaction(async (tx) => {
          await tx.lockEnvironment(env.id);
          firstLocked();
          await firstHolds;
          order.push("first bumps");
          return tx.bumpRevision(env.id);
        });
        await locked;
        const second = store.transaction(async (tx) => {
          const seen = await tx.lockEnvironment(env.id);
          order.push("second locked");
          return seen;
        });
        // give the second writer every chance to overtake; it must not
        await new Promise((r) => setTimeout(r, 100));
        releaseFirst();
        const [bumped, seenBySecond] = await Promise.all([first, second]);
        expect(order).toEqual(["first bumps", "second locked"]);
        expect(seenBySecond).toBe(bumped);
      });

      it("revisions lists the current revision of each existing environment and skips unknown ids", async () => {
        const a = await seedEnvironment(store);
        const b = await seedEnvironment(store, { account: a.account, app: a.app, name: "production" });
        await store.transaction((tx) => tx.bumpRevision(b.env.id));
        const got = await store.revisions([a.env.id, b.env.id, newId()]);
        expect([...got.entries()].sort()).toEqual([[a.env.id, a.env.revision], [b.env.id, b.env.revision + 1]].sort());
        expect((await store.revisions([])).size).toBe(0);
      });

      it("snapshot reads committed data consistently", async () => {
        const { env, root } = await seedEnvironment(store);
        const seen = await store.snapshot(async (r) => ({ env: await r.getEnvironment(env.id), nodes: await r.listAllNodes(env.id) }));
        expect(seen.env).toEqual(env);
        expect(ids(seen.nodes)).toEqual([root.id]);
      });

      it("notifyChange reaches subscribers after commit only (PostgreSQL); SQLite has nothing to subscribe to", async () => {
        const { env } = await seedEnvironment(store);
        const notices: Array<{ environmentId: string; revision: number }> = [];
        let connected = true;
        const unsubscribe = await store.subscribe({
          onChange: (n) => notices.push(n),
          onReconnect: () => undefined,
          onDisconnect: () => {
            connected = false;
          },
        });
        if (store.dialect === "sqlite") {
          expect(unsubscribe).toBeUndefined();
          await store.transaction((tx) => tx.notifyChange(env.id, 5)); // a no-op, never an error
          return;
        }
        try {
          expect(connected).toBe(true);
          await store
            .transaction(async (tx) => {
              await tx.notifyChange(env.id, 98);
              throw new Error("roll back");
            })
            .catch(() => undefined);
          await store.transaction((tx) => tx.notifyChange(env.id, 99));
          for (let i = 0; i < 100 && !notices.some((n) => n.revision === 99); i++) await new Promise((r) => setTimeout(r, 20));
          const mine = notices.filter((n) => n.environmentId === env.id);
          expect(mine).toEqual([{ environmentId: env.id, revision: 99 }]);
        } finally {
          await unsubscribe!();
        }
      });

      it("lockAccount is taken inside a transaction and holds off a second locker until commit", async () => {
        const { account } = await seedEnvironment(store);
        const order: string[] = [];
        let release!: () => void;
        const holding = new Promise<void>((r) => (release = r));
        let locked!: () => void;
        const isLocked = new Promise<void>((r) => (locked = r));
        const first = store.transaction(async (tx) => {
          await tx.lockAccount(account.id);
          locked();
          await holding;
          order.push("first commits");
        });
        await isLocked;
        const second = store.transaction(async (tx) => {
          await tx.lockAccount(account.id);
          order.push("second locked");
        });
        await new Promise((r) => setTimeout(r, 100));
        release();
        await Promise.all([first, second]);
        expect(order).toEqual(["first commits", "second locked"]);
      });

      it("lockBootstrap can be taken inside a transaction on every dialect", async () => {
        const acct = makeAccount();
        await store.transaction(async (tx) => {
          await tx.lockBootstrap();
          await tx.insertAccount(acct);
        });
        expect(await store.reader.getAccount(acct.id)).toEqual(acct);
      });
    });

    describe("transactions", () => {
      it("returns the callback's value, and its reads see its own writes", async () => {
        const acct = makeAccount();
        const result = await store.transaction(async (tx) => {
          await tx.insertAccount(acct);
          return { seen: await tx.getAccount(acct.id), n: 42 };
        });
        expect(result).toEqual({ seen: acct, n: 42 });
        expect(await store.reader.getAccount(acct.id)).toEqual(acct);
      });

      it("rolls back everything when the callback throws, rethrowing the same error", async () => {
        const s = await seedEnvironment(store);
        const acct = makeAccount();
        const perm = makePermission(s.env.id, "a.read");
        const boom = new Error("boom");
        const thrown = await store
          .transaction(async (tx) => {
            await tx.insertAccount(acct);
            await tx.insertPermissions([perm]);
            await tx.bumpRevision(s.env.id);
            await tx.updateEnvironment(s.env.id, { accessModel: "flat" });
            throw boom;
          })
          .catch((e: unknown) => e);
        expect(thrown).toBe(boom);
        expect(await store.reader.getAccount(acct.id)).toBeUndefined();
        expect(await store.reader.listAllPermissions(s.env.id)).toEqual([]);
        expect(await store.reader.getEnvironment(s.env.id)).toEqual(s.env);
      });

      it("runs transactions one after another and keeps each one's writes", async () => {
        const s = await seedEnvironment(store);
        const results = await Promise.all(Array.from({ length: 10 }, () => store.transaction((tx) => tx.bumpRevision(s.env.id))));
        expect([...results].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        expect((await store.reader.getEnvironment(s.env.id))!.revision).toBe(10);
      });
    });

    describe("deleteEnvironment", () => {
      async function fill(s: Seed) {
        const ada = makeIdentity(s.account.id);
        const perms = [makePermission(s.env.id, "a.read"), makePermission(s.env.id, "a.write")];
        const role = makeRole(s.env.id, "editor");
        const eu = makeNode(s.env.id, s.root.id);
        const fr = makeNode(s.env.id, eu.id);
        const key = makeApiKey(s.account.id, s.env.id);
        const asg = [makeAssignment(s.env.id, ada.id, role.id, fr.id), makeAssignment(s.env.id, ada.id, role.id, s.root.id)];
        const idem: IdempotencyRecord = { environmentId: s.env.id, key: "k", requestHash: "h", response: new Uint8Array([9]), createdAt: T0 };
        await store.transaction(async (tx) => {
          await tx.insertIdentity(ada);
          await tx.insertMembership({ identityId: ada.id, applicationId: s.app.id, status: "active", createdAt: T0, updatedAt: T0 });
          await tx.insertPermissions(perms);
          await tx.insertRole(role, ids(perms));
          await tx.insertNode(eu);
          await tx.insertNode(fr);
          await tx.insertApiKey(key);
          await tx.insertAssignments(asg);
          await tx.putIdempotencyRecord(idem);
          await tx.bumpRevision(s.env.id);
        });
        return { ada, perms, role, nodes: [s.root, eu, fr], key, asg, idem };
      }

      async function snapshot(envId: string) {
        const r = store.reader;
        const env = await r.getEnvironment(envId);
        return {
          env,
          permissions: await r.listAllPermissions(envId),
          roles: await r.listAllRoles(envId),
          nodes: await r.listAllNodes(envId),
          assignments: await r.listAllAssignments(envId),
          keys: env ? await r.listApiKeys(env.accountId, envId) : [],
          idem: await r.getIdempotencyRecord(envId, "k"),
        };
      }

      it("deletes everything of the environment and leaves other environments untouched", async () => {
        const dev = await seedEnvironment(store, { name: "development" });
        const prod = await seedEnvironment(store, { account: dev.account, app: dev.app, name: "production" });
        const d = await fill(dev);
        await fill(prod);
        const admin = makeApiKey(dev.account.id, null);
        await store.transaction((tx) => tx.insertApiKey(admin));
        const prodBefore = await snapshot(prod.env.id);
        expect(prodBefore.assignments.length).toBe(2);
        expect(prodBefore.roles[0].permissionKeys).toEqual(["a.read", "a.write"]);

        await store.transaction((tx) => tx.deleteEnvironment(dev.env.id));

        const r = store.reader;
        expect(await r.getEnvironment(dev.env.id)).toBeUndefined();
        expect(await r.listAllPermissions(dev.env.id)).toEqual([]);
        expect(await r.listAllRoles(dev.env.id)).toEqual([]);
        expect(await r.getRole(dev.env.id, d.role.id)).toBeUndefined();
        expect(await r.listAllNodes(dev.env.id)).toEqual([]);
        expect(await r.listAllAssignments(dev.env.id)).toEqual([]);
        expect(await r.getAssignmentsByIds(dev.env.id, ids(d.asg))).toEqual([]);
        expect(await r.countAssignmentsOfRole(dev.env.id, d.role.id)).toBe(0);
        expect(await r.getApiKey(d.key.id)).toBeUndefined();
        expect(await r.getApiKeyByHash(d.key.keyHash)).toBeUndefined();
        expect(await r.getIdempotencyRecord(dev.env.id, "k")).toBeUndefined();
        expect(await r.listEnvironments(dev.account.id)).toEqual([{ ...prod.env, revision: 1 }]);

        expect(await snapshot(prod.env.id)).toEqual(prodBefore);
        // account-level rows are not the environment's
        expect(await r.getApiKey(admin.id)).toEqual(admin);
        expect(await r.getIdentity(d.ada.id)).toEqual(d.ada);
        expect((await r.getMembership(d.ada.id, dev.app.id))?.status).toBe("active");
        expect(await r.getApplication(dev.app.id)).toEqual(dev.app);

        // the deleted environment's names and ids are free again
        const again = await seedEnvironment(store, { account: dev.account, app: dev.app, name: "development" });
        await store.transaction((tx) => tx.insertPermissions([makePermission(again.env.id, "a.read")]));
        expect((await r.listAllPermissions(again.env.id)).length).toBe(1);
      });

      it("rolls back a deletion when the transaction fails", async () => {
        const dev = await seedEnvironment(store);
        await fill(dev);
        const before = await snapshot(dev.env.id);
        await expect(
          store.transaction(async (tx) => {
            await tx.deleteEnvironment(dev.env.id);
            throw new Error("changed my mind");
          }),
        ).rejects.toThrow("changed my mind");
        expect(await snapshot(dev.env.id)).toEqual(before);
      });
    });

    describe("lifecycle", () => {
      it("migrate() is idempotent on a migrated store", async () => {
        const acct = makeAccount();
        await store.transaction((tx) => tx.insertAccount(acct));
        await store.migrate();
        expect(await store.reader.listAllAccounts()).toEqual([acct]);
      });

      it("fails with StoreUnavailableError once closed", async () => {
        await store.close();
        await expect(store.reader.listAllAccounts()).rejects.toBeInstanceOf(StoreUnavailableError);
        await expect(store.transaction((tx) => tx.insertAccount(makeAccount()))).rejects.toBeInstanceOf(StoreUnavailableError);
      });
    });
  });
}
