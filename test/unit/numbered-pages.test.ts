/**
 * Numbered pages (page + take, with the total count) of the domain services: the same items in the
 * same order as the keyset lists, the same validation and NOT_FOUND rules, a page past the end is
 * empty with the true count. Runs the services over a real SQLite file with a manual clock.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCanopy, type Canopy } from "../../src/domain/canopy.js";
import { createManualClock } from "../../src/domain/clock.js";
import { DomainError } from "../../src/domain/errors.js";
import { newId } from "../../src/domain/ids.js";
import { DEFAULT_LIMITS } from "../../src/domain/limits.js";
import type { EnvironmentContext } from "../../src/domain/auth.js";
import type { IdentityScope } from "../../src/domain/identity-service.js";
import { numberedPageRequest, numberedSlice, type NumberedPage, type NumberedPageInput } from "../../src/domain/validate.js";
import { createEngine } from "../../src/engine/index.js";
import { createSqliteStore } from "../../src/store/sqlite.js";
import type { Store } from "../../src/store/store.js";

const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;
const limits = { ...DEFAULT_LIMITS, maxPageSize: 50, defaultPageSize: 4 };
const silent = { info() {}, warn() {}, error() {} };

/** The error `p` rejects with (fails when it resolves). */
async function rejection(p: Promise<unknown>): Promise<DomainError> {
  const err = await p.then(
    () => expect.unreachable("expected a rejection"),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DomainError);
  return err as DomainError;
}

function thrown(fn: () => unknown): DomainError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DomainError);
    return err as DomainError;
  }
  return expect.unreachable("expected a throw");
}

/** Every page of a keyset list, concatenated. */
async function allKeyset<T>(list: (pageSize: number, pageToken: string) => Promise<{ items: T[]; nextPageToken: string }>): Promise<T[]> {
  const out: T[] = [];
  let token = "";
  do {
    const p = await list(3, token);
    out.push(...p.items);
    token = p.nextPageToken;
  } while (token);
  return out;
}

/** Every numbered page with `take`, concatenated, checking each page's count and echoed page/take. */
async function allNumbered<T>(take: number, list: (page: NumberedPageInput) => Promise<NumberedPage<T>>): Promise<T[]> {
  const first = await list({ page: 0, take });
  const out = [...first.items];
  const pages = Math.ceil(first.itemCount / take);
  for (let page = 2; page <= pages; page++) {
    const p = await list({ page, take });
    expect(p).toMatchObject({ page, take, itemCount: first.itemCount });
    out.push(...p.items);
  }
  expect(out.length).toBe(first.itemCount);
  return out;
}

describe("numberedPageRequest", () => {
  it("defaults page 0 to 1 and take 0 to the default page size, and computes the offset", () => {
    expect(numberedPageRequest({ page: 0, take: 0 }, limits)).toEqual({ page: 1, take: 4, offset: 0 });
    expect(numberedPageRequest({ page: 3, take: 10 }, limits)).toEqual({ page: 3, take: 10, offset: 20 });
    expect(numberedPageRequest({ page: 1, take: 50 }, limits)).toEqual({ page: 1, take: 50, offset: 0 });
  });

  it("refuses a page or take that is negative, fractional or too large, naming the field", () => {
    for (const page of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      const err = thrown(() => numberedPageRequest({ page, take: 0 }, limits));
      expect([err.code, err.field, err.message]).toEqual(["invalid_argument", "page", "page: must be a positive integer"]);
    }
    for (const take of [-1, 2.5, Number.NaN]) {
      const err = thrown(() => numberedPageRequest({ page: 1, take }, limits));
      expect([err.code, err.field, err.message]).toEqual(["invalid_argument", "take", "take: must be a positive integer"]);
    }
    const big = thrown(() => numberedPageRequest({ page: 1, take: 51 }, limits));
    expect([big.field, big.message]).toEqual(["take", "take: must be at most 50"]);
    // an offset beyond exact integers
    const far = thrown(() => numberedPageRequest({ page: Number.MAX_SAFE_INTEGER, take: 50 }, limits));
    expect(far.field).toBe("page");
    expect(far.message).toBe(`page: must be at most ${Math.floor(Number.MAX_SAFE_INTEGER / 50) + 1} with take 50`);
    expect(numberedPageRequest({ page: Math.floor(Number.MAX_SAFE_INTEGER / 50) + 1, take: 50 }, limits).offset).toBeLessThanOrEqual(Number.MAX_SAFE_INTEGER);
  });

  it("slices an in-memory list, past the end too", () => {
    const all = ["a", "b", "c", "d", "e"];
    expect(numberedSlice(all, numberedPageRequest({ page: 2, take: 2 }, limits))).toEqual({ items: ["c", "d"], itemCount: 5, page: 2, take: 2 });
    expect(numberedSlice(all, numberedPageRequest({ page: 3, take: 2 }, limits))).toEqual({ items: ["e"], itemCount: 5, page: 3, take: 2 });
    expect(numberedSlice(all, numberedPageRequest({ page: 9, take: 2 }, limits))).toEqual({ items: [], itemCount: 5, page: 9, take: 2 });
  });
});

describe("numbered pages of the domain services", () => {
  const dir = mkdtempSync(join(tmpdir(), "canopy-numbered-"));
  const clock = createManualClock(T0);
  let store: Store;
  let canopy: Canopy;
  let ctx: EnvironmentContext;
  let envScope: IdentityScope;
  let adminScope: IdentityScope;
  let rootId: string;
  const regions: string[] = [];
  const people: string[] = [];
  const roleIds: string[] = [];

  beforeAll(async () => {
    store = await createSqliteStore({ filename: join(dir, "canopy.db") });
    canopy = createCanopy({ store, engine: createEngine(), clock, limits, logger: silent });
    const keys = (await canopy.bootstrap({}))!;
    const dev = await canopy.auth.authenticate(keys.developmentKey);
    const admin = await canopy.auth.authenticate(keys.adminKey);
    ctx = { principal: dev, environment: await canopy.auth.environmentFor(dev, undefined) };
    envScope = { principal: dev, environmentId: ctx.environment.id, applicationId: ctx.environment.applicationId };
    adminScope = { principal: admin, environmentId: null, applicationId: null };
    rootId = ctx.environment.rootNodeId;

    await canopy.catalog.batchCreatePermissions(
      ctx,
      Array.from({ length: 11 }, (_, i) => ({ key: `doc${i}.read`, description: "", category: i % 3 === 0 ? "admin" : "general" })),
    );
    for (let i = 0; i < 7; i++) {
      roleIds.push((await canopy.catalog.createRole(ctx, { name: `role-${i}`, description: "", permissionKeys: i % 2 ? ["doc1.read", "doc0.read"] : [] })).role.id);
    }
    for (let i = 0; i < 9; i++) regions.push((await canopy.hierarchy.createNode(ctx, { parentId: rootId, type: "region", name: `r${i}`, externalId: "" })).node.id);
    for (let i = 0; i < 5; i++) await canopy.hierarchy.createNode(ctx, { parentId: regions[0], type: "store", name: `s${i}`, externalId: "" });
    // 8 members of the development application, 2 identities outside it (skip membership)
    for (let i = 0; i < 10; i++) {
      const r = await canopy.identities.createIdentity(envScope, { email: `p${i}@example.com`, displayName: "", externalId: `x-${i}` }, i >= 8);
      people.push(r.identity.id);
    }
    await canopy.identities.setActive(adminScope, people[2], false);
    // assignments: scheduled (from T0 + 1 h), active, expired (after the clock moves)
    for (let i = 0; i < 8; i++) {
      await canopy.assignments.createAssignment(ctx, {
        identityId: people[i === 2 ? 3 : i],
        roleId: roleIds[i % 3],
        nodeId: regions[i],
        effectiveFrom: i % 3 === 0 ? T0 + HOUR : T0,
        effectiveTo: i % 3 === 1 ? T0 + 2 * HOUR : null,
      });
    }
  });
  afterAll(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("lists assignments in the keyset order, with the count of each filter, states evaluated now", async () => {
    const filters = [
      { identityId: "", nodeId: "", roleId: "" },
      { identityId: "", nodeId: "", roleId: roleIds[1] },
      { identityId: people[3], nodeId: "", roleId: "" },
      { identityId: "", nodeId: regions[4], roleId: "" },
      { identityId: "", nodeId: "", roleId: "", state: "scheduled" as const },
      { identityId: "", nodeId: "", roleId: "", state: "active" as const },
      { identityId: "", nodeId: "", roleId: "", state: "expired" as const },
    ];
    for (const f of filters) {
      const keyset = await allKeyset((size, token) => canopy.assignments.listAssignments(ctx, f, size, token));
      expect(await allNumbered(2, (p) => canopy.assignments.listAssignmentsNumbered(ctx, f, p))).toEqual(keyset);
    }
    const count = async (state: "scheduled" | "active" | "expired") =>
      (await canopy.assignments.listAssignmentsNumbered(ctx, { identityId: "", nodeId: "", roleId: "", state }, { page: 1, take: 1 })).itemCount;
    expect([await count("scheduled"), await count("active"), await count("expired")]).toEqual([3, 5, 0]);
    clock.set(T0 + 3 * HOUR);
    try {
      expect([await count("scheduled"), await count("active"), await count("expired")]).toEqual([0, 5, 3]);
    } finally {
      clock.set(T0);
    }
    const all = await canopy.assignments.listAssignmentsNumbered(ctx, { identityId: "", nodeId: "", roleId: "" }, { page: 0, take: 0 });
    expect([all.page, all.take, all.itemCount, all.items.length]).toEqual([1, 4, 8, 4]);
    expect(await canopy.assignments.listAssignmentsNumbered(ctx, { identityId: "", nodeId: "", roleId: "" }, { page: 5, take: 2 })).toEqual({
      items: [],
      itemCount: 8,
      page: 5,
      take: 2,
    });
    const badId = await rejection(canopy.assignments.listAssignmentsNumbered(ctx, { identityId: "x".repeat(65), nodeId: "", roleId: "" }, { page: 1, take: 1 }));
    expect([badId.code, badId.field]).toEqual(["invalid_argument", "identity_id"]);
    const badTake = await rejection(canopy.assignments.listAssignmentsNumbered(ctx, { identityId: "", nodeId: "", roleId: "" }, { page: 1, take: 51 }));
    expect(badTake.field).toBe("take");
  });

  it("lists permissions (all, or of a category) and roles in the keyset order and shape", async () => {
    for (const category of ["", "admin", "general", "none"]) {
      const keyset = await allKeyset((size, token) => canopy.catalog.listPermissions(ctx, category, size, token));
      expect(await allNumbered(3, (p) => canopy.catalog.listPermissionsNumbered(ctx, category, p))).toEqual(keyset);
    }
    expect((await canopy.catalog.listPermissionsNumbered(ctx, "admin", { page: 2, take: 3 })).itemCount).toBe(4);
    const roles = await allKeyset((size, token) => canopy.catalog.listRoles(ctx, size, token));
    expect(roles.map((r) => r.id)).toEqual(roleIds);
    expect(await allNumbered(2, (p) => canopy.catalog.listRolesNumbered(ctx, p))).toEqual(roles);
    const second = await canopy.catalog.listRolesNumbered(ctx, { page: 2, take: 3 });
    expect(second.items.map((r) => [r.name, r.permissionKeys])).toEqual([
      ["role-3", ["doc0.read", "doc1.read"]],
      ["role-4", []],
      ["role-5", ["doc0.read", "doc1.read"]],
    ]);
    expect(await canopy.catalog.listRolesNumbered(ctx, { page: 4, take: 3 })).toEqual({ items: [], itemCount: 7, page: 4, take: 3 });
    expect((await rejection(canopy.catalog.listRolesNumbered(ctx, { page: -2, take: 3 }))).field).toBe("page");
  });

  it("lists children and subtrees with depths, NOT_FOUND for an unknown node", async () => {
    const keyset = await allKeyset((size, token) => canopy.hierarchy.listChildren(ctx, rootId, size, token));
    expect(keyset.map((n) => n.id)).toEqual(regions);
    expect(await allNumbered(4, (p) => canopy.hierarchy.listChildrenNumbered(ctx, rootId, p))).toEqual(keyset);
    const shops = await canopy.hierarchy.listChildrenNumbered(ctx, regions[0], { page: 2, take: 3 });
    expect([shops.itemCount, shops.items.length, shops.items.every((n) => n.depth === 3 && n.parentId === regions[0])]).toEqual([5, 2, true]);
    expect((await canopy.hierarchy.listChildrenNumbered(ctx, regions[1], { page: 1, take: 3 })).itemCount).toBe(0);

    for (const maxLevels of [0, 1, 2]) {
      const subtree = await allKeyset((size, token) => canopy.hierarchy.getSubtree(ctx, rootId, maxLevels, size, token));
      expect(await allNumbered(5, (p) => canopy.hierarchy.getSubtreeNumbered(ctx, rootId, maxLevels, p))).toEqual(subtree);
    }
    expect((await canopy.hierarchy.getSubtreeNumbered(ctx, rootId, 0, { page: 1, take: 1 })).itemCount).toBe(15);
    expect((await canopy.hierarchy.getSubtreeNumbered(ctx, rootId, 1, { page: 1, take: 1 })).itemCount).toBe(10);
    expect(await canopy.hierarchy.getSubtreeNumbered(ctx, regions[3], 0, { page: 2, take: 1 })).toEqual({ items: [], itemCount: 1, page: 2, take: 1 });

    const unknown = newId();
    for (const p of [canopy.hierarchy.listChildrenNumbered(ctx, unknown, { page: 1, take: 1 }), canopy.hierarchy.getSubtreeNumbered(ctx, unknown, 0, { page: 1, take: 1 })]) {
      const err = await rejection(p);
      expect([err.code, err.field]).toEqual(["not_found", "id"]);
    }
    expect((await rejection(canopy.hierarchy.listChildrenNumbered(ctx, "", { page: 1, take: 1 }))).field).toBe("id");
  });

  it("lists identities the caller sees: an environment key only its application's members", async () => {
    const filters = [
      { email: "", externalId: "" },
      { email: "", externalId: "", isActive: true },
      { email: "", externalId: "", isActive: false },
      { email: " P5@example.com ", externalId: "" },
      { email: "", externalId: "x-9" },
    ];
    for (const scope of [envScope, adminScope]) {
      for (const f of filters) {
        const keyset = await allKeyset((size, token) => canopy.identities.listIdentities(scope, f, size, token));
        expect(await allNumbered(3, (p) => canopy.identities.listIdentitiesNumbered(scope, f, p))).toEqual(keyset);
      }
    }
    const count = async (scope: IdentityScope, f: { email: string; externalId: string; isActive?: boolean }) =>
      (await canopy.identities.listIdentitiesNumbered(scope, f, { page: 1, take: 1 })).itemCount;
    expect(await count(envScope, { email: "", externalId: "" })).toBe(8);
    expect(await count(adminScope, { email: "", externalId: "" })).toBe(10);
    expect(await count(envScope, { email: "", externalId: "", isActive: false })).toBe(1);
    expect(await count(envScope, { email: "", externalId: "x-9" })).toBe(0);
    expect(await count(adminScope, { email: "", externalId: "x-9" })).toBe(1);
    expect(await count(envScope, { email: "p5@example.com", externalId: "" })).toBe(1);
    expect(await canopy.identities.listIdentitiesNumbered(adminScope, { email: "", externalId: "" }, { page: 4, take: 3 })).toMatchObject({
      items: [{ id: people[9] }],
      itemCount: 10,
    });
  });
});
