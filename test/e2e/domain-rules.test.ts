/**
 * SPEC §2 domain rules, end to end through a real server (one for the whole file). Every test works in
 * its own environment (created with the admin key and addressed with the canopy-environment header) and
 * with its own identities, so tests do not see each other's data. Refused writes are checked against a
 * full dump of the database taken before and after the call.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { backendReady, startTestServer, type Clients, type TestServer } from "./harness.js";
import { snapshotDatabase } from "./db-snapshot.js";
import { AccessModel, AssignmentState } from "../../src/gen/canopy/v1/common_pb.js";
import { CheckScope, DenialReason } from "../../src/gen/canopy/v1/check_pb.js";
import { MembershipStatus } from "../../src/gen/canopy/v1/identity_pb.js";
import { assertError, failure, type Expected } from "../support/errors.js";

/** False on a PostgreSQL run whose server is down (locally: skip; under CI=true backendReady throws). */
const ready = await backendReady();

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const UNKNOWN = "01900000-0000-7000-8000-00000000dead";




const reasonOf = (r: { allowed: boolean; denialReason: DenialReason }) => (r.allowed ? "ALLOWED" : DenialReason[r.denialReason]);

describe.skipIf(!ready)("SPEC §2 domain rules", () => {
  let s: TestServer;
  let admin: Clients;
  let appId: string;
  let seq = 0;
  const uniq = (p: string) => `${p}-${++seq}`;
  const now = () => s.clock.now();

  beforeAll(async () => {
    s = await startTestServer({ limits: { writeChunkSize: 7, revisionWaitMs: 200, maxDepth: 6 } });
    admin = s.clients(s.adminKey);
    appId = (await admin.admin.listEnvironments({})).environments.find((e) => e.name === "development")!.applicationId;
  });
  afterAll(() => s?.close());

  /** A fresh, empty environment of the default application, and clients acting in it. */
  async function freshEnv(application = appId): Promise<{ c: Clients; envId: string; rootId: string }> {
    const env = (await admin.admin.createEnvironment({ applicationId: application, name: uniq("env") })).environment!;
    return { c: s.clients(s.adminKey, { environment: env.id }), envId: env.id, rootId: env.rootNodeId };
  }

  /** A new identity with an active membership in the environment's application. */
  async function person(c: Clients, name = "user"): Promise<string> {
    return (await c.identities.createIdentity({ identity: { email: `${uniq(name)}@example.com` } })).identity!.id;
  }

  async function role(c: Clients, keys: string[], name = uniq("role")): Promise<string> {
    return (await c.catalog.createRole({ name, permissionKeys: keys })).role!.id;
  }

  async function node(c: Clients, parentId: string, type = "unit", name = uniq("node")): Promise<string> {
    return (await c.hierarchy.createNode({ parentId, type, name })).node!.id;
  }

  async function assign(c: Clients, identityId: string, roleId: string, nodeId: string, from?: number, to?: number): Promise<string> {
    const r = await c.assignments.createAssignment({
      assignment: {
        identityId,
        roleId,
        nodeId,
        effectiveFrom: from === undefined ? undefined : timestampFromMs(from),
        effectiveTo: to === undefined ? undefined : timestampFromMs(to),
      },
    });
    return r.assignment!.id;
  }

  /** The call must fail as expected and leave the whole database unchanged. */
  async function expectRefused(call: () => Promise<unknown>, exp: Expected): Promise<void> {
    const before = await snapshotDatabase(s);
    const err = await failure(call);
    const after = await snapshotDatabase(s);
    assertError(err, exp);
    expect(after, "stored data changed although the request was refused").toEqual(before);
  }

  // ---------------------------------------------------------------------------------------------
  describe("permission keys: format and immutability", () => {
    let env: Awaited<ReturnType<typeof freshEnv>>;
    beforeAll(async () => {
      env = await freshEnv();
    });

    const VALID = [
      "invoice.read",
      "billing.invoice.approve",
      "a.b",
      "a_b.c-d",
      "0.9",
      "x.y.z.w.v",
      "report-2024.export_csv",
      "_.-",
      `a.${"b".repeat(126)}`, // 128 characters, the maximum
    ];
    it.each(VALID)("valid key %s is accepted and stored as given", async (key) => {
      const r = await env.c.catalog.batchCreatePermissions({ permissions: [{ key }] });
      expect(r.permissions.map((p) => p.key)).toEqual([key]);
      const listed = await env.c.catalog.listPermissions({ pageSize: 100 });
      expect(listed.permissions.map((p) => p.key)).toContain(key);
    });

    const INVALID = [
      "invoice",
      "Invoice.read",
      "invoice.Read",
      "INVOICE.READ",
      "invoice.",
      ".read",
      "invoice..read",
      "invoice read",
      "invoice.read ",
      " invoice.read",
      "invoice/read",
      "invoice:read",
      "invoice.réad",
      "invoice.*",
      "",
      `a.${"b".repeat(127)}`, // 129 characters
    ];
    it.each(INVALID.map((k) => [JSON.stringify(k), k]))("invalid key %s is INVALID_ARGUMENT naming permissions[0].key, nothing written", async (_label, key) => {
      await expectRefused(() => env.c.catalog.batchCreatePermissions({ permissions: [{ key }] }), { code: Code.InvalidArgument, field: "permissions[0].key" });
    });

    it("a bad key anywhere in the batch refuses the whole batch", async () => {
      await expectRefused(
        () => env.c.catalog.batchCreatePermissions({ permissions: [{ key: "ok.one" }, { key: "ok.two" }, { key: "Not.Ok" }] }),
        { code: Code.InvalidArgument, field: "permissions[2].key" },
      );
      const listed = await env.c.catalog.listPermissions({ pageSize: 100 });
      expect(listed.permissions.map((p) => p.key)).not.toContain("ok.one");
    });

    it("the key is immutable; description and category can change", async () => {
      const created = (await env.c.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read", description: "Read docs", category: "docs" }] })).permissions[0];
      await expectRefused(() => env.c.catalog.updatePermission({ id: created.id, key: "doc.write", description: "changed" }), {
        code: Code.InvalidArgument,
        field: "key",
        reason: "catalog.key_immutable",
        mentions: ["doc.write"],
      });
      // sending the current key back is fine
      const updated = await env.c.catalog.updatePermission({ id: created.id, key: "doc.read", description: "Read documents", category: "documents" });
      expect(updated.permission).toMatchObject({ id: created.id, key: "doc.read", description: "Read documents", category: "documents" });
      const cleared = await env.c.catalog.updatePermission({ id: created.id, description: "" });
      expect(cleared.permission).toMatchObject({ key: "doc.read", description: "", category: "documents" });
      const listed = await env.c.catalog.listPermissions({ category: "documents" });
      expect(listed.permissions.map((p) => [p.id, p.key, p.description])).toEqual([[created.id, "doc.read", ""]]);
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("roles", () => {
    it("SetRolePermissions changes every holder's Check result at once", async () => {
      const { c, rootId } = await freshEnv();
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "report.read" }, { key: "report.write" }] });
      const r = await role(c, ["report.read"]);
      const u1 = await person(c);
      const u2 = await person(c);
      await assign(c, u1, r, rootId);
      await assign(c, u2, r, rootId);
      const matrix = async () =>
        (
          await c.check.checkBulk({
            items: [
              { identityId: u1, permission: "report.read", nodeId: rootId },
              { identityId: u2, permission: "report.read", nodeId: rootId },
              { identityId: u1, permission: "report.write", nodeId: rootId },
              { identityId: u2, permission: "report.write", nodeId: rootId },
            ],
          })
        ).results.map(reasonOf);
      expect(await matrix()).toEqual(["ALLOWED", "ALLOWED", "PERMISSION_NOT_GRANTED", "PERMISSION_NOT_GRANTED"]);

      const set = await c.catalog.setRolePermissions({ id: r, permissionKeys: ["report.write", "report.write"] });
      expect(set.role!.permissionKeys).toEqual(["report.write"]);
      expect(await matrix()).toEqual(["PERMISSION_NOT_GRANTED", "PERMISSION_NOT_GRANTED", "ALLOWED", "ALLOWED"]);
      const check = await c.check.check({ identityId: u2, permission: "report.write", nodeId: rootId });
      expect(check.revision).toBe(set.revision);

      await c.catalog.setRolePermissions({ id: r, permissionKeys: [] });
      expect(await matrix()).toEqual(["PERMISSION_NOT_GRANTED", "PERMISSION_NOT_GRANTED", "PERMISSION_NOT_GRANTED", "PERMISSION_NOT_GRANTED"]);
      expect((await c.catalog.getRole({ id: r })).role!.permissionKeys).toEqual([]);
    });

    it("DeletePermission removes the permission from every role; checks then deny UNKNOWN_PERMISSION", async () => {
      const { c, rootId } = await freshEnv();
      const [p] = (await c.catalog.batchCreatePermissions({ permissions: [{ key: "x.read" }, { key: "x.write" }] })).permissions;
      const r = await role(c, ["x.read", "x.write"]);
      const u = await person(c);
      await assign(c, u, r, rootId);
      expect((await c.check.check({ identityId: u, permission: "x.read", nodeId: rootId })).allowed).toBe(true);
      await c.catalog.deletePermission({ id: p.id });
      expect((await c.catalog.getRole({ id: r })).role!.permissionKeys).toEqual(["x.write"]);
      expect(reasonOf(await c.check.check({ identityId: u, permission: "x.read", nodeId: rootId }))).toBe("UNKNOWN_PERMISSION");
      expect(reasonOf(await c.check.check({ identityId: u, permission: "x.write", nodeId: rootId }))).toBe("ALLOWED");
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("hierarchy schema: validated before anything changes", () => {
    const COMPANY = {
      nodeTypes: ["company", "region", "team", "project"],
      allowedChildren: { company: { types: ["region"] }, region: { types: ["team"] }, team: { types: ["project"] } },
      maxDepth: 3,
      rootNodeType: "company",
    };
    let env: Awaited<ReturnType<typeof freshEnv>>;
    let region = "";
    let region2 = "";
    let team = "";

    beforeAll(async () => {
      env = await freshEnv();
      const r = await env.c.hierarchy.updateHierarchySchema({ schema: COMPANY });
      expect(r.schema).toMatchObject({ nodeTypes: COMPANY.nodeTypes, maxDepth: 3, rootNodeType: "company" });
    });

    it("the schema is stored and the root takes root_node_type", async () => {
      const got = await env.c.hierarchy.getHierarchySchema({});
      expect(got.schema!.nodeTypes).toEqual(COMPANY.nodeTypes);
      expect(Object.fromEntries(Object.entries(got.schema!.allowedChildren).map(([k, v]) => [k, v.types]))).toEqual({ company: ["region"], region: ["team"], team: ["project"] });
      expect((await env.c.hierarchy.getNode({ id: env.rootId })).node!.type).toBe("company");
    });

    it("CreateNode: allowed pairs within max_depth are accepted", async () => {
      region = await node(env.c, env.rootId, "region");
      team = await node(env.c, region, "team");
      region2 = await node(env.c, env.rootId, "region");
      expect((await env.c.hierarchy.getNode({ id: team })).node).toMatchObject({ type: "team", parentId: region, depth: 3 });
    });

    it("CreateNode: a type missing from the schema is INVALID_ARGUMENT, nothing written", async () => {
      await expectRefused(() => env.c.hierarchy.createNode({ parentId: env.rootId, type: "galaxy", name: "g" }), { code: Code.InvalidArgument, field: "type", reason: "hierarchy.unknown_type", mentions: ["galaxy"] });
    });

    it("CreateNode: a disallowed parent/child pair is FAILED_PRECONDITION, nothing written", async () => {
      await expectRefused(() => env.c.hierarchy.createNode({ parentId: env.rootId, type: "team", name: "t" }), { code: Code.FailedPrecondition, reason: "hierarchy.schema_violation" });
      await expectRefused(() => env.c.hierarchy.createNode({ parentId: region, type: "region", name: "r" }), { code: Code.FailedPrecondition, reason: "hierarchy.schema_violation" });
    });

    it("CreateNode: deeper than max_depth is FAILED_PRECONDITION, nothing written", async () => {
      await expectRefused(() => env.c.hierarchy.createNode({ parentId: team, type: "project", name: "p" }), { code: Code.FailedPrecondition, reason: "hierarchy.too_deep" });
      const subtree = await env.c.hierarchy.getSubtree({ id: env.rootId });
      expect(subtree.nodes.map((n) => n.id)).toEqual([env.rootId, region, team, region2]);
    });

    it("MoveNode: to another allowed parent works and checks follow the new ancestry at once", async () => {
      const { c } = env;
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "team.read" }] });
      const r = await role(c, ["team.read"]);
      const u = await person(c);
      await assign(c, u, r, region);
      expect(reasonOf(await c.check.check({ identityId: u, permission: "team.read", nodeId: team }))).toBe("ALLOWED");

      const moved = await c.hierarchy.moveNode({ id: team, newParentId: region2 });
      expect(moved.node).toMatchObject({ id: team, parentId: region2, depth: 3 });
      expect((await c.hierarchy.getAncestors({ id: team })).ancestors.map((n) => n.id)).toEqual([env.rootId, region2]);
      expect(reasonOf(await c.check.check({ identityId: u, permission: "team.read", nodeId: team }))).toBe("NO_ASSIGNMENT");
    });

    it("MoveNode: a disallowed pair is FAILED_PRECONDITION, nothing written", async () => {
      await expectRefused(() => env.c.hierarchy.moveNode({ id: region, newParentId: region2 }), { code: Code.FailedPrecondition, field: "new_parent_id", reason: "hierarchy.schema_violation" });
      await expectRefused(() => env.c.hierarchy.moveNode({ id: team, newParentId: env.rootId }), { code: Code.FailedPrecondition, field: "new_parent_id", reason: "hierarchy.schema_violation" });
    });

    it("MoveNode: under its own descendant is FAILED_PRECONDITION (cycle), nothing written", async () => {
      await expectRefused(() => env.c.hierarchy.moveNode({ id: region2, newParentId: team }), { code: Code.FailedPrecondition, field: "new_parent_id", reason: "hierarchy.cycle", mentions: [region2, team] });
      expect((await env.c.hierarchy.getNode({ id: region2 })).node!.parentId).toBe(env.rootId);
    });

    it("MoveNode: a subtree that would end deeper than max_depth is FAILED_PRECONDITION, nothing written", async () => {
      const { c, rootId } = await freshEnv();
      await c.hierarchy.updateHierarchySchema({ schema: { nodeTypes: ["folder"], allowedChildren: { folder: { types: ["folder"] } }, maxDepth: 3, rootNodeType: "folder" } });
      const a = await node(c, rootId, "folder");
      const b = await node(c, a, "folder");
      const other = await node(c, rootId, "folder");
      await expectRefused(() => c.hierarchy.createNode({ parentId: b, type: "folder", name: "too deep" }), { code: Code.FailedPrecondition, reason: "hierarchy.too_deep" });
      // a is fine at depth 3, but its child b would land at depth 4
      await expectRefused(() => c.hierarchy.moveNode({ id: a, newParentId: other }), { code: Code.FailedPrecondition, field: "new_parent_id", reason: "hierarchy.too_deep" });
      const ok = await c.hierarchy.moveNode({ id: b, newParentId: other });
      expect(ok.node).toMatchObject({ parentId: other, depth: 3 });
    });

    it("without a schema a move under the node's own subtree is still a cycle", async () => {
      const { c, rootId } = await freshEnv();
      const a = await node(c, rootId);
      const b = await node(c, a);
      const cc = await node(c, b);
      await expectRefused(() => c.hierarchy.moveNode({ id: a, newParentId: cc }), { code: Code.FailedPrecondition, reason: "hierarchy.cycle" });
      await expectRefused(() => c.hierarchy.moveNode({ id: a, newParentId: a }), { code: Code.FailedPrecondition, reason: "hierarchy.cycle" });
      expect((await c.hierarchy.getSubtree({ id: rootId })).nodes.map((n) => n.id)).toEqual([rootId, a, b, cc]);
    });

    it("without a schema the server depth limit (limits.maxDepth = 6) applies to creates and moves", async () => {
      const { c, rootId } = await freshEnv();
      const chain = [rootId];
      for (let d = 2; d <= 6; d++) chain.push(await node(c, chain[chain.length - 1]));
      expect((await c.hierarchy.getNode({ id: chain[5] })).node!.depth).toBe(6);
      await expectRefused(() => c.hierarchy.createNode({ parentId: chain[5], type: "unit", name: "seventh" }), { code: Code.FailedPrecondition, field: "type", reason: "hierarchy.too_deep" });
      const b1 = await node(c, rootId);
      const b2 = await node(c, b1);
      await expectRefused(() => c.hierarchy.moveNode({ id: b1, newParentId: chain[4] }), { code: Code.FailedPrecondition, field: "new_parent_id", reason: "hierarchy.too_deep" });
      expect((await c.hierarchy.moveNode({ id: b2, newParentId: chain[4] })).node).toMatchObject({ parentId: chain[4], depth: 6 });
      // and a schema cannot allow more than the server does
      await expectRefused(() => c.hierarchy.updateHierarchySchema({ schema: { nodeTypes: ["root", "unit"], allowedChildren: { root: { types: ["unit"] }, unit: { types: ["unit"] } }, maxDepth: 7 } }), {
        code: Code.InvalidArgument,
        field: "schema.max_depth",
      });
    });

    it("UpdateHierarchySchema that existing nodes would violate is FAILED_PRECONDITION naming the node; nothing changes", async () => {
      // the tree now is: company root -> region, region2 -> team
      const teamLeaf = { ...COMPANY, allowedChildren: { company: { types: ["region"] }, region: { types: [] } } };
      await expectRefused(() => env.c.hierarchy.updateHierarchySchema({ schema: teamLeaf }), { code: Code.FailedPrecondition, field: "schema", reason: "hierarchy.schema_conflict", mentions: [team] });
      await expectRefused(() => env.c.hierarchy.updateHierarchySchema({ schema: { ...COMPANY, maxDepth: 2 } }), { code: Code.FailedPrecondition, field: "schema", mentions: [team] });
      await expectRefused(
        () => env.c.hierarchy.updateHierarchySchema({ schema: { nodeTypes: ["company", "region", "project"], allowedChildren: { company: { types: ["region"] }, region: { types: ["project"] } }, rootNodeType: "company" } }),
        { code: Code.FailedPrecondition, field: "schema", mentions: [team] },
      );
      // a root type under which the existing regions are not allowed
      await expectRefused(() => env.c.hierarchy.updateHierarchySchema({ schema: { ...COMPANY, rootNodeType: "region" } }), { code: Code.FailedPrecondition, field: "schema" });
      const still = await env.c.hierarchy.getHierarchySchema({});
      expect(still.schema).toMatchObject({ maxDepth: 3, rootNodeType: "company" });

      // a compatible change is accepted, and removing the schema is always possible
      const deeper = await env.c.hierarchy.updateHierarchySchema({ schema: { ...COMPANY, maxDepth: 4 } });
      expect(deeper.schema!.maxDepth).toBe(4);
      await node(env.c, team, "project");
      const removed = await env.c.hierarchy.updateHierarchySchema({});
      expect(removed.schema).toBeUndefined();
      expect((await env.c.hierarchy.getHierarchySchema({})).schema).toBeUndefined();
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("flat access model", () => {
    it("refused while nodes exist, allowed on a root-only tree; then only the root exists and omitted node_id means the root", async () => {
      const { c, rootId } = await freshEnv();
      const extra = await node(c, rootId);
      await expectRefused(() => c.hierarchy.setAccessModel({ accessModel: AccessModel.FLAT }), { code: Code.FailedPrecondition, field: "access_model" });
      expect((await c.hierarchy.getHierarchySchema({})).accessModel).toBe(AccessModel.HIERARCHY);

      await c.hierarchy.deleteNode({ id: extra });
      const flat = await c.hierarchy.setAccessModel({ accessModel: AccessModel.FLAT });
      expect(flat.accessModel).toBe(AccessModel.FLAT);
      expect((await c.hierarchy.getHierarchySchema({})).accessModel).toBe(AccessModel.FLAT);

      await expectRefused(() => c.hierarchy.createNode({ parentId: rootId, type: "unit", name: "no" }), { code: Code.FailedPrecondition });

      await c.catalog.batchCreatePermissions({ permissions: [{ key: "flat.read" }] });
      const r = await role(c, ["flat.read"]);
      const u = await person(c);
      const created = await c.assignments.createAssignment({ assignment: { identityId: u, roleId: r } });
      expect(created.assignment!.nodeId).toBe(rootId);

      const check = await c.check.check({ identityId: u, permission: "flat.read" });
      expect({ allowed: check.allowed, node: check.effectiveNodeId, scope: check.scope }).toEqual({ allowed: true, node: rootId, scope: CheckScope.NODE });
      expect((await c.check.check({ identityId: u, permission: "flat.read", nodeId: rootId })).allowed).toBe(true);
      expect((await c.check.check({ identityId: u, permission: "flat.read", scope: CheckScope.APP_WIDE })).allowed).toBe(true);
      const bulk = await c.check.checkBulk({ items: [{ identityId: u, permission: "flat.read" }] });
      expect(bulk.results[0].allowed).toBe(true);

      // an explicit root id and an omitted node_id are the same assignment target
      await expectRefused(() => c.assignments.createAssignment({ assignment: { identityId: u, roleId: r, nodeId: rootId } }), { code: Code.AlreadyExists, reason: "rbac.assignment_conflict" });

      // back to hierarchy: always allowed, and node_id is required again
      await c.hierarchy.setAccessModel({ accessModel: AccessModel.HIERARCHY });
      await expectRefused(() => c.check.check({ identityId: u, permission: "flat.read" }), { code: Code.InvalidArgument, field: "node_id" });
      await expectRefused(() => c.assignments.createAssignment({ assignment: { identityId: u, roleId: r } }), { code: Code.InvalidArgument, field: "assignment.node_id" });
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("assignment windows and duplicates", () => {
    it("overlapping duplicate is ALREADY_EXISTS (rbac.assignment_conflict); touching windows are both accepted", async () => {
      const { c, rootId } = await freshEnv();
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "w.read" }] });
      const r = await role(c, ["w.read"]);
      const r2 = await role(c, ["w.read"]);
      const n1 = await node(c, rootId);
      const n2 = await node(c, rootId);
      const u = await person(c);
      const t = now();

      const mid = await assign(c, u, r, n1, t + HOUR, t + 2 * HOUR);
      const after = await assign(c, u, r, n1, t + 2 * HOUR, t + 3 * HOUR); // [b, c) after [a, b)
      const before = await assign(c, u, r, n1, t, t + HOUR); // [a', a) before [a, b)
      const open = await assign(c, u, r, n1, t + 3 * HOUR); // open-ended from c
      expect(new Set([mid, after, before, open]).size).toBe(4);

      await expectRefused(() => assign(c, u, r, n1, t + 90 * MINUTE, t + 150 * MINUTE), { code: Code.AlreadyExists, reason: "rbac.assignment_conflict" });
      await expectRefused(() => assign(c, u, r, n1, t + HOUR + 1, t + HOUR + 2), { code: Code.AlreadyExists, reason: "rbac.assignment_conflict", mentions: [mid] });
      await expectRefused(() => assign(c, u, r, n1, t + 10 * DAY), { code: Code.AlreadyExists, reason: "rbac.assignment_conflict", mentions: [open] });
      await expectRefused(() => assign(c, u, r, n1, t - HOUR, t + 1), { code: Code.AlreadyExists, reason: "rbac.assignment_conflict", mentions: [before] });

      // the same window with another role, or on another node, is not a duplicate
      await assign(c, u, r2, n1, t + HOUR, t + 2 * HOUR);
      await assign(c, u, r, n2, t + HOUR, t + 2 * HOUR);

      // every instant of the joined windows is covered, by exactly the window that contains it
      for (const at of [t, t + HOUR - 1, t + HOUR, t + 2 * HOUR, t + 3 * HOUR, t + 100 * DAY]) {
        const res = await c.check.check({ identityId: u, permission: "w.read", nodeId: n1, at: timestampFromMs(at), explain: true });
        expect(res.allowed, `at +${(at - t) / MINUTE} min`).toBe(true);
      }
      const atB = await c.check.check({ identityId: u, permission: "w.read", nodeId: n1, at: timestampFromMs(t + 2 * HOUR), explain: true });
      expect(atB.explanation.filter((e) => e.roleId === r).map((e) => e.assignmentId)).toEqual([after]);
      const beforeAll = await c.check.check({ identityId: u, permission: "w.read", nodeId: n1, at: timestampFromMs(t - 1) });
      expect(reasonOf(beforeAll)).toBe("ONLY_SCHEDULED");

      const listed = await c.assignments.listAssignments({ identityId: u, nodeId: n1, roleId: r });
      expect(listed.assignments.map((a) => a.id)).toEqual([mid, after, before, open]);
    });

    it("effective_to <= effective_from is INVALID_ARGUMENT naming effective_to", async () => {
      const { c, rootId } = await freshEnv();
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "w.read" }] });
      const r = await role(c, ["w.read"]);
      const u = await person(c);
      const t = now();
      await expectRefused(() => assign(c, u, r, rootId, t + HOUR, t + HOUR), { code: Code.InvalidArgument, field: "assignment.effective_to", reason: "rbac.invalid_window" });
      await expectRefused(() => assign(c, u, r, rootId, t + HOUR, t + HOUR - 1), { code: Code.InvalidArgument, field: "assignment.effective_to", reason: "rbac.invalid_window" });
      await expectRefused(() => assign(c, u, r, rootId, undefined, t), { code: Code.InvalidArgument, field: "assignment.effective_to" });
      // the smallest valid window: one millisecond
      const id = await assign(c, u, r, rootId, t + HOUR, t + HOUR + 1);
      await expectRefused(() => c.assignments.updateAssignment({ id, effectiveTo: timestampFromMs(t + HOUR) }), { code: Code.InvalidArgument, field: "effective_to", reason: "rbac.invalid_window" });
      await expectRefused(() => c.assignments.updateAssignment({ id, effectiveFrom: timestampFromMs(t + 2 * HOUR) }), { code: Code.InvalidArgument, field: "effective_from", reason: "rbac.invalid_window" });
      const ok = await c.assignments.updateAssignment({ id, clearEffectiveTo: true });
      expect(ok.assignment!.effectiveTo).toBeUndefined();
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("deletes with dependants", () => {
    it("DeleteNode with descendants or assignments is refused unless cascade, which removes them and the grants they carried", async () => {
      const { c, rootId } = await freshEnv();
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "n.read" }] });
      const r = await role(c, ["n.read"]);
      const u = await person(c);
      const org = await node(c, rootId, "org");
      const team = await node(c, org, "team");
      const leaf = await node(c, rootId, "org");
      const a1 = await assign(c, u, r, team);
      expect(reasonOf(await c.check.check({ identityId: u, permission: "n.read", nodeId: team }))).toBe("ALLOWED");

      await expectRefused(() => c.hierarchy.deleteNode({ id: org }), { code: Code.FailedPrecondition, field: "cascade", reason: "hierarchy.node_in_use", mentions: [org] });
      await expectRefused(() => c.hierarchy.deleteNode({ id: team }), { code: Code.FailedPrecondition, field: "cascade", reason: "hierarchy.node_in_use", mentions: [team] });
      expect(reasonOf(await c.check.check({ identityId: u, permission: "n.read", nodeId: team }))).toBe("ALLOWED");

      const plain = await c.hierarchy.deleteNode({ id: leaf });
      expect({ nodes: plain.deletedNodes, assignments: plain.deletedAssignments }).toEqual({ nodes: 1, assignments: 0 });

      const cascaded = await c.hierarchy.deleteNode({ id: org, cascade: true });
      expect({ nodes: cascaded.deletedNodes, assignments: cascaded.deletedAssignments }).toEqual({ nodes: 2, assignments: 1 });
      expect(reasonOf(await c.check.check({ identityId: u, permission: "n.read", nodeId: team }))).toBe("UNKNOWN_NODE");
      expect(reasonOf(await c.check.check({ identityId: u, permission: "n.read", scope: CheckScope.APP_WIDE }))).toBe("NO_ASSIGNMENT");
      assertError(await failure(() => c.assignments.getAssignment({ id: a1 })), { code: Code.NotFound, mentions: [a1] });
      assertError(await failure(() => c.hierarchy.getNode({ id: team })), { code: Code.NotFound, mentions: [team] });
      expect((await c.assignments.listAssignments({ identityId: u })).assignments).toEqual([]);
      expect((await c.hierarchy.getSubtree({ id: rootId })).nodes.map((n) => n.id)).toEqual([rootId]);
      const db = await snapshotDatabase(s);
      expect(db.nodes.filter((n) => n.id === org || n.id === team)).toEqual([]);
      expect(db.assignments.filter((a) => a.id === a1)).toEqual([]);
    });

    it("DeleteRole with assignments (any state) is refused unless cascade, which removes them and the grants", async () => {
      const { c, rootId } = await freshEnv();
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "r.read" }] });
      const held = await role(c, ["r.read"], "held");
      const unheld = await role(c, ["r.read"], "unheld");
      const u = await person(c);
      const u2 = await person(c);
      const t = now();
      await assign(c, u, held, rootId);
      await assign(c, u2, held, rootId, t - 2 * DAY, t - DAY); // expired: still counts
      expect(reasonOf(await c.check.check({ identityId: u, permission: "r.read", nodeId: rootId }))).toBe("ALLOWED");

      await expectRefused(() => c.catalog.deleteRole({ id: held }), { code: Code.FailedPrecondition, field: "cascade", reason: "catalog.role_in_use", mentions: [held] });
      const plain = await c.catalog.deleteRole({ id: unheld });
      expect(plain.deletedAssignments).toBe(0);

      const cascaded = await c.catalog.deleteRole({ id: held, cascade: true });
      expect(cascaded.deletedAssignments).toBe(2);
      expect(reasonOf(await c.check.check({ identityId: u, permission: "r.read", nodeId: rootId }))).toBe("NO_ASSIGNMENT");
      assertError(await failure(() => c.catalog.getRole({ id: held })), { code: Code.NotFound, mentions: [held] });
      expect((await c.assignments.listAssignments({ roleId: held })).assignments).toEqual([]);
      expect((await c.catalog.listRoles({})).roles).toEqual([]);
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("identity and membership gates", () => {
    it("deactivating an identity denies every check at once (IDENTITY_INACTIVE), in every environment; activating restores", async () => {
      const e1 = await freshEnv();
      const e2 = await freshEnv();
      const u = await person(e1.c);
      const setup = async (e: typeof e1) => {
        await e.c.catalog.batchCreatePermissions({ permissions: [{ key: "g.read" }, { key: "g.write" }] });
        const r = await role(e.c, ["g.read", "g.write"]);
        const n = await node(e.c, e.rootId);
        await assign(e.c, u, r, e.rootId);
        return n;
      };
      const n1 = await setup(e1);
      const n2 = await setup(e2);
      const items = (n: string, root: string) => [
        { identityId: u, permission: "g.read", nodeId: root },
        { identityId: u, permission: "g.write", nodeId: n },
        { identityId: u, permission: "g.read", scope: CheckScope.APP_WIDE },
      ];
      const all = async () => [
        ...(await e1.c.check.checkBulk({ items: items(n1, e1.rootId) })).results.map(reasonOf),
        ...(await e2.c.check.checkBulk({ items: items(n2, e2.rootId) })).results.map(reasonOf),
      ];
      expect(await all()).toEqual(Array(6).fill("ALLOWED"));

      const off = await e1.c.identities.deactivateIdentity({ id: u });
      expect(off.identity!.isActive).toBe(false);
      expect(await all()).toEqual(Array(6).fill("IDENTITY_INACTIVE"));
      expect((await e1.c.check.check({ identityId: u, permission: "g.read", nodeId: e1.rootId })).revision).toBe(off.revision);
      const r = (await e1.c.catalog.listRoles({})).roles[0].id;
      await expectRefused(() => assign(e1.c, u, r, n1), { code: Code.FailedPrecondition, field: "assignment.identity_id", reason: "identity.inactive" });
      // assignments are kept
      expect((await e1.c.assignments.listAssignments({ identityId: u })).assignments).toHaveLength(1);

      const on = await e1.c.identities.activateIdentity({ id: u });
      expect(on.identity!.isActive).toBe(true);
      expect(await all()).toEqual(Array(6).fill("ALLOWED"));
    });

    it("SetAppMembershipStatus INACTIVE denies with MEMBERSHIP_INACTIVE and blocks new assignments; ACTIVE restores", async () => {
      const { c, rootId } = await freshEnv();
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "m.read" }] });
      const r = await role(c, ["m.read"]);
      const r2 = await role(c, ["m.read"]);
      const u = await person(c);
      await assign(c, u, r, rootId);
      const off = await c.identities.setAppMembershipStatus({ identityId: u, status: MembershipStatus.INACTIVE });
      expect(off.membership).toMatchObject({ identityId: u, applicationId: appId, status: MembershipStatus.INACTIVE });
      expect(reasonOf(await c.check.check({ identityId: u, permission: "m.read", nodeId: rootId }))).toBe("MEMBERSHIP_INACTIVE");
      expect(reasonOf(await c.check.check({ identityId: u, permission: "m.read", scope: CheckScope.APP_WIDE }))).toBe("MEMBERSHIP_INACTIVE");
      await expectRefused(() => assign(c, u, r2, rootId), { code: Code.FailedPrecondition, field: "assignment.identity_id", reason: "identity.membership_inactive" });
      expect((await c.assignments.listAssignments({ identityId: u })).assignments).toHaveLength(1);

      await c.identities.setAppMembershipStatus({ identityId: u, status: MembershipStatus.ACTIVE });
      expect(reasonOf(await c.check.check({ identityId: u, permission: "m.read", nodeId: rootId }))).toBe("ALLOWED");
    });

    it("RemoveAppMembership deletes the identity's assignments in every environment of that application only", async () => {
      const e1 = await freshEnv();
      const e2 = await freshEnv();
      const other = (await admin.admin.createApplication({ name: uniq("app") })).environments.find((e) => e.name === "development")!;
      const o = { c: s.clients(s.adminKey, { environment: other.id }), rootId: other.rootNodeId };
      const u = await person(e1.c);
      await admin.identities.addAppMembership({ identityId: u, applicationId: other.applicationId });

      const grant = async (e: { c: Clients; rootId: string }, count: number) => {
        await e.c.catalog.batchCreatePermissions({ permissions: [{ key: "rm.read" }] });
        for (let i = 0; i < count; i++) await assign(e.c, u, await role(e.c, ["rm.read"]), e.rootId);
      };
      await grant(e1, 2);
      await grant(e2, 1);
      await grant(o, 1);

      const res = await e1.c.identities.removeAppMembership({ identityId: u });
      expect(res.deletedAssignments).toBe(3);
      expect((await e1.c.assignments.listAssignments({ identityId: u })).assignments).toEqual([]);
      expect((await e2.c.assignments.listAssignments({ identityId: u })).assignments).toEqual([]);
      expect(reasonOf(await e1.c.check.check({ identityId: u, permission: "rm.read", nodeId: e1.rootId }))).toBe("NO_MEMBERSHIP");
      expect(reasonOf(await e2.c.check.check({ identityId: u, permission: "rm.read", nodeId: e2.rootId }))).toBe("NO_MEMBERSHIP");
      const db = await snapshotDatabase(s);
      expect(db.assignments.filter((a) => a.identity_id === u).map((a) => a.environment_id)).toEqual([other.id]);

      // the other application is untouched
      expect((await o.c.assignments.listAssignments({ identityId: u })).assignments).toHaveLength(1);
      expect(reasonOf(await o.c.check.check({ identityId: u, permission: "rm.read", nodeId: o.rootId }))).toBe("ALLOWED");
      const memberships = (await admin.identities.listAppMemberships({ identityId: u })).memberships;
      expect(memberships.map((m) => m.applicationId)).toEqual([other.applicationId]);
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("environments are isolated", () => {
    it("the same role name in development and production do not interfere; a grant in development does not allow in production", async () => {
      const created = await admin.admin.createApplication({ name: uniq("iso") });
      const devEnv = created.environments.find((e) => e.name === "development")!;
      const prodEnv = created.environments.find((e) => e.name === "production")!;
      const devKey = (await admin.admin.createApiKey({ name: "iso dev", environmentId: devEnv.id })).secret;
      const prodKey = (await admin.admin.createApiKey({ name: "iso prod", environmentId: prodEnv.id })).secret;
      expect(prodKey.startsWith("cnpy_")).toBe(true);
      const dev = s.clients(devKey);
      const prod = s.clients(prodKey);

      for (const c of [dev, prod]) await c.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }] });
      const devViewer = await role(dev, ["doc.read"], "viewer");
      const prodViewer = await role(prod, ["doc.read"], "viewer");
      expect(devViewer).not.toBe(prodViewer);

      const u = await person(dev); // membership in the application: valid for both environments
      await assign(dev, u, devViewer, devEnv.rootNodeId);
      expect(reasonOf(await dev.check.check({ identityId: u, permission: "doc.read", nodeId: devEnv.rootNodeId }))).toBe("ALLOWED");
      expect(reasonOf(await prod.check.check({ identityId: u, permission: "doc.read", nodeId: prodEnv.rootNodeId }))).toBe("NO_ASSIGNMENT");
      expect(reasonOf(await prod.check.check({ identityId: u, permission: "doc.read", scope: CheckScope.APP_WIDE }))).toBe("NO_ASSIGNMENT");
      // ids of one environment are unknown in the other
      expect(reasonOf(await prod.check.check({ identityId: u, permission: "doc.read", nodeId: devEnv.rootNodeId }))).toBe("UNKNOWN_NODE");
      await expectRefused(() => assign(prod, u, devViewer, prodEnv.rootNodeId), { code: Code.NotFound, field: "assignment.role_id", mentions: [devViewer] });
      await expectRefused(() => assign(prod, u, prodViewer, devEnv.rootNodeId), { code: Code.NotFound, field: "assignment.node_id", mentions: [devEnv.rootNodeId] });
      assertError(await failure(() => prod.catalog.getRole({ id: devViewer })), { code: Code.NotFound });
      expect((await prod.catalog.listRoles({})).roles.map((r) => r.id)).toEqual([prodViewer]);
      // a key acts only in its own environment
      assertError(await failure(() => s.clients(prodKey, { environment: devEnv.id }).check.check({ identityId: u, permission: "doc.read", nodeId: devEnv.rootNodeId })), { code: Code.PermissionDenied });

      // changes in development never reach production
      await assign(prod, u, prodViewer, prodEnv.rootNodeId);
      await dev.catalog.setRolePermissions({ id: devViewer, permissionKeys: [] });
      expect(reasonOf(await dev.check.check({ identityId: u, permission: "doc.read", nodeId: devEnv.rootNodeId }))).toBe("PERMISSION_NOT_GRANTED");
      expect(reasonOf(await prod.check.check({ identityId: u, permission: "doc.read", nodeId: prodEnv.rootNodeId }))).toBe("ALLOWED");
      await dev.catalog.deleteRole({ id: devViewer, cascade: true });
      expect(reasonOf(await prod.check.check({ identityId: u, permission: "doc.read", nodeId: prodEnv.rootNodeId }))).toBe("ALLOWED");
      expect((await prod.assignments.listAssignments({})).assignments.map((a) => a.roleId)).toEqual([prodViewer]);
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("BatchCreateAssignments", () => {
    it("non-atomic: one bad item never fails its neighbours", async () => {
      const { c, rootId } = await freshEnv();
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "b.read" }] });
      const r = await role(c, ["b.read"]);
      const n = await node(c, rootId);
      const u1 = await person(c);
      const u2 = await person(c);
      const inactive = await person(c);
      await c.identities.deactivateIdentity({ id: inactive });
      const t = now();
      const res = await c.assignments.batchCreateAssignments({
        items: [
          { identityId: u1, roleId: r, nodeId: n },
          { identityId: u1, roleId: UNKNOWN, nodeId: n },
          { identityId: u2, roleId: r, nodeId: n },
          { identityId: u1, roleId: r, nodeId: n, effectiveFrom: timestampFromMs(t + HOUR) }, // overlaps item 0
          { identityId: u2, roleId: r, nodeId: rootId, effectiveFrom: timestampFromMs(t + HOUR), effectiveTo: timestampFromMs(t) },
          { identityId: inactive, roleId: r, nodeId: n },
          { identityId: u2, roleId: r },
        ],
      });
      expect(res.results.map((x) => [x.index, x.status?.code, x.status?.field])).toEqual([
        [0, 0, ""],
        [1, 5, "items[1].role_id"],
        [2, 0, ""],
        [3, 6, "items[3]"],
        [4, 3, "items[4].effective_to"],
        [5, 9, "items[5].identity_id"],
        [6, 3, "items[6].node_id"],
      ]);
      expect(res.results[3].status?.reason).toBe("rbac.assignment_conflict");
      expect(res.summary).toMatchObject({ total: 7, succeeded: 2, failed: 5 });
      expect(res.replayed).toBe(false);
      const createdIds = [res.results[0].assignment!.id, res.results[2].assignment!.id];
      expect((await c.assignments.listAssignments({})).assignments.map((a) => a.id)).toEqual(createdIds);
      const db = await snapshotDatabase(s);
      expect(db.assignments.filter((a) => createdIds.includes(a.id as string))).toHaveLength(2);
      const checks = await c.check.checkBulk({
        items: [
          { identityId: u1, permission: "b.read", nodeId: n },
          { identityId: u2, permission: "b.read", nodeId: n },
        ],
      });
      expect(checks.results.map((x) => x.allowed)).toEqual([true, true]);
      expect(checks.revision).toBe(res.revision);
    });

    it("atomic: all good -> all written; one bad -> nothing written, the good ones ABORTED", async () => {
      const { c, rootId } = await freshEnv();
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "b.read" }] });
      const r = await role(c, ["b.read"]);
      const u1 = await person(c);
      const u2 = await person(c);
      const u3 = await person(c);

      const before = await snapshotDatabase(s);
      const bad = await c.assignments.batchCreateAssignments({
        atomic: true,
        items: [
          { identityId: u1, roleId: r, nodeId: rootId },
          { identityId: u2, roleId: r, nodeId: rootId },
          { identityId: u3, roleId: r, nodeId: UNKNOWN },
        ],
      });
      expect(await snapshotDatabase(s)).toEqual(before);
      expect(bad.results.map((x) => x.status?.code)).toEqual([10, 10, 5]);
      expect(bad.results[2].status?.field).toBe("items[2].node_id");
      expect(bad.summary).toMatchObject({ total: 3, succeeded: 0, failed: 3 });
      expect(reasonOf(await c.check.check({ identityId: u1, permission: "b.read", nodeId: rootId }))).toBe("NO_ASSIGNMENT");

      const good = await c.assignments.batchCreateAssignments({
        atomic: true,
        items: [
          { identityId: u1, roleId: r, nodeId: rootId },
          { identityId: u2, roleId: r, nodeId: rootId },
          { identityId: u3, roleId: r, nodeId: rootId },
        ],
      });
      expect(good.results.map((x) => [x.index, x.status?.code, x.assignment?.identityId])).toEqual([
        [0, 0, u1],
        [1, 0, u2],
        [2, 0, u3],
      ]);
      expect(good.summary).toMatchObject({ total: 3, succeeded: 3, failed: 0 });
      expect(good.revision).toBeGreaterThan(bad.revision);
      expect((await c.assignments.listAssignments({})).assignments.map((a) => a.id)).toEqual(good.results.map((x) => x.assignment!.id));
      expect((await c.check.checkBulk({ items: [u1, u2, u3].map((identityId) => ({ identityId, permission: "b.read", nodeId: rootId })) })).results.every((x) => x.allowed)).toBe(true);
    });

    it("idempotency_key: same key and body replays (replayed=true, identical results, nothing written); same key, other body -> FAILED_PRECONDITION", async () => {
      const { c, rootId } = await freshEnv();
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "i.read" }] });
      const r = await role(c, ["i.read"]);
      const u1 = await person(c);
      const u2 = await person(c);
      const items = [
        { identityId: u1, roleId: r, nodeId: rootId },
        { identityId: u2, roleId: r, nodeId: rootId },
        { identityId: u2, roleId: UNKNOWN, nodeId: rootId },
      ];
      const first = await c.assignments.batchCreateAssignments({ items, idempotencyKey: "retry-1" });
      expect(first.replayed).toBe(false);
      expect(first.results.map((x) => x.status?.code)).toEqual([0, 0, 5]);
      const afterFirst = await snapshotDatabase(s);

      const again = await c.assignments.batchCreateAssignments({ items, idempotencyKey: "retry-1" });
      expect(again.replayed).toBe(true);
      expect(again.results).toEqual(first.results);
      expect(again.summary).toEqual(first.summary);
      expect(again.revision).toBe(first.revision);
      expect(await snapshotDatabase(s)).toEqual(afterFirst);
      expect((await c.assignments.listAssignments({})).assignments).toHaveLength(2);

      await expectRefused(() => c.assignments.batchCreateAssignments({ items: items.slice(0, 2), idempotencyKey: "retry-1" }), {
        code: Code.FailedPrecondition,
        field: "idempotency_key",
        reason: "idempotency.key_reused",
        mentions: ["retry-1"],
      });
      await expectRefused(() => c.assignments.batchCreateAssignments({ items, atomic: true, idempotencyKey: "retry-1" }), { code: Code.FailedPrecondition, field: "idempotency_key" });

      // another key is another request: it runs, and finds the duplicates
      const other = await c.assignments.batchCreateAssignments({ items, idempotencyKey: "retry-2" });
      expect(other.replayed).toBe(false);
      expect(other.results.map((x) => x.status?.code)).toEqual([6, 6, 5]);
      expect((await c.assignments.listAssignments({})).assignments).toHaveLength(2);
    });

    it("writes are chunked (writeChunkSize 7) yet a batch of 50 yields 50 correct results; duplicates across chunks are caught", async () => {
      const { c, rootId } = await freshEnv();
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "k.read" }, { key: "k.write" }] });
      const r = await role(c, ["k.read"]);
      const r2 = await role(c, ["k.write"]);
      const people = await c.identities.batchCreateIdentities({ identities: Array.from({ length: 50 }, (_, i) => ({ email: `${uniq(`chunk${i}`)}@example.com` })) });
      expect(people.results.map((x) => [x.index, x.status?.code])).toEqual(Array.from({ length: 50 }, (_, i) => [i, 0]));
      expect(people.summary).toMatchObject({ total: 50, succeeded: 50, failed: 0 });
      const ids = people.results.map((x) => x.identity!.id);

      const res = await c.assignments.batchCreateAssignments({ items: ids.map((identityId) => ({ identityId, roleId: r, nodeId: rootId })) });
      expect(res.results).toHaveLength(50);
      expect(res.results.map((x) => [x.index, x.status?.code, x.assignment?.identityId, x.assignment?.roleId, x.assignment?.nodeId])).toEqual(
        ids.map((id, i) => [i, 0, id, r, rootId]),
      );
      expect(res.summary).toMatchObject({ total: 50, succeeded: 50, failed: 0 });
      const listed = await c.assignments.listAssignments({ pageSize: 100 });
      expect(listed.assignments.map((a) => a.id).sort()).toEqual(res.results.map((x) => x.assignment!.id).sort());
      const checks = await c.check.checkBulk({ items: ids.map((identityId) => ({ identityId, permission: "k.read", nodeId: rootId })) });
      expect(checks.results.filter((x) => x.allowed)).toHaveLength(50);
      expect(checks.revision).toBe(res.revision);

      // item 15 (third chunk) duplicates item 2 (first chunk)
      const items = ids.slice(0, 20).map((identityId) => ({ identityId, roleId: r2, nodeId: rootId }));
      items[15] = { ...items[2] };
      const dup = await c.assignments.batchCreateAssignments({ items });
      expect(dup.results.map((x) => x.status?.code)).toEqual(items.map((_, i) => (i === 15 ? 6 : 0)));
      expect(dup.results[15].status?.field).toBe("items[15]");
      expect((await c.assignments.listAssignments({ roleId: r2, pageSize: 100 })).assignments).toHaveLength(19);
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("revisions and min_revision", () => {
    it("every write increases the revision; Check answers at the last write's revision", async () => {
      const { c, envId, rootId } = await freshEnv();
      const revs: bigint[] = [];
      revs.push((await c.catalog.batchCreatePermissions({ permissions: [{ key: "v.read" }] })).revision);
      const roleRes = await c.catalog.createRole({ name: "v", permissionKeys: ["v.read"] });
      revs.push(roleRes.revision);
      const nodeRes = await c.hierarchy.createNode({ parentId: rootId, type: "unit", name: "n" });
      revs.push(nodeRes.revision);
      const idRes = await c.identities.createIdentity({ identity: { email: `${uniq("rev")}@example.com` } });
      revs.push(idRes.revision);
      const asRes = await c.assignments.createAssignment({ assignment: { identityId: idRes.identity!.id, roleId: roleRes.role!.id, nodeId: nodeRes.node!.id } });
      revs.push(asRes.revision);
      revs.push((await c.hierarchy.updateNode({ id: nodeRes.node!.id, name: "renamed" })).revision);
      revs.push((await c.catalog.updateRole({ id: roleRes.role!.id, description: "d" })).revision);
      revs.push((await c.hierarchy.updateHierarchySchema({})).revision);
      for (let i = 1; i < revs.length; i++) expect(revs[i], `write #${i}`).toBeGreaterThan(revs[i - 1]);
      const last = revs[revs.length - 1];

      const check = await c.check.check({ identityId: idRes.identity!.id, permission: "v.read", nodeId: nodeRes.node!.id });
      expect(check.allowed).toBe(true);
      expect(check.revision).toBe(last);
      const bulk = await c.check.checkBulk({ items: [{ identityId: idRes.identity!.id, permission: "v.read", nodeId: nodeRes.node!.id }] });
      expect(bulk.revision).toBe(last);
      expect(bulk.results[0].revision).toBe(last);
      expect((await c.hierarchy.getHierarchySchema({})).revision).toBe(last);
      expect((await admin.admin.listEnvironments({})).environments.find((e) => e.id === envId)!.revision).toBe(last);
      expect((await snapshotDatabase(s)).environments.find((e) => e.id === envId)!.revision).toBe(Number(last));

      // a refused write does not move it
      await expectRefused(() => c.hierarchy.createNode({ parentId: UNKNOWN, type: "unit", name: "x" }), { code: Code.NotFound });
      expect((await c.check.check({ identityId: idRes.identity!.id, permission: "v.read", nodeId: nodeRes.node!.id })).revision).toBe(last);
    });

    it("identity writes are admin-key calls: with canopy-environment the revision is that environment's, without it 0 (the environments still move)", async () => {
      const e = await freshEnv();
      const other = (await admin.admin.createApplication({ name: uniq("app") })).application!.id;
      const envKey = s.clients((await admin.admin.createApiKey({ name: uniq("key"), environmentId: e.envId })).secret);
      const envRevision = async () => (await e.c.hierarchy.getHierarchySchema({})).revision;
      await e.c.catalog.batchCreatePermissions({ permissions: [{ key: "x.read" }] });

      // an environment key still creates identities (with a membership in its application) and reads them
      const created = await envKey.identities.createIdentity({ identity: { email: `${uniq("idw")}@example.com` } });
      const u = created.identity!.id;
      expect(created.revision).toBe(await envRevision());
      const batch = await envKey.identities.batchCreateIdentities({ identities: [{ email: `${uniq("idw")}@example.com` }] });
      expect(batch.results.map((r) => r.status?.code)).toEqual([0]);
      const u2 = batch.results[0].identity!.id;
      expect(batch.revision).toBe(await envRevision());
      expect((await envKey.identities.getIdentity({ id: u })).identity?.isActive).toBe(true);
      // (every environment of this file shares the default application, so others' identities are listed too)
      expect((await envKey.identities.listIdentities({})).identities.map((i) => i.id)).toEqual(expect.arrayContaining([u, u2]));
      expect((await envKey.identities.listAppMemberships({ identityId: u })).memberships.map((m) => [m.applicationId, MembershipStatus[m.status]])).toEqual([[appId, "ACTIVE"]]);
      // … but not change them
      for (const call of [
        () => envKey.identities.updateIdentity({ id: u, displayName: "x" }),
        () => envKey.identities.deactivateIdentity({ id: u }),
        () => envKey.identities.activateIdentity({ id: u }),
        () => envKey.identities.addAppMembership({ identityId: u, applicationId: other }),
        () => envKey.identities.setAppMembershipStatus({ identityId: u, status: MembershipStatus.INACTIVE }),
        () => envKey.identities.removeAppMembership({ identityId: u2 }),
      ]) {
        await expectRefused(call, { code: Code.PermissionDenied });
      }

      // the admin key in the environment: each write answers the environment's new revision
      const steps: Array<[string, () => Promise<{ revision: bigint }>]> = [
        ["UpdateIdentity", () => e.c.identities.updateIdentity({ id: u, displayName: "Renamed" })],
        ["DeactivateIdentity", () => e.c.identities.deactivateIdentity({ id: u })],
        ["ActivateIdentity", () => e.c.identities.activateIdentity({ id: u })],
        ["SetAppMembershipStatus", () => e.c.identities.setAppMembershipStatus({ identityId: u, status: MembershipStatus.INACTIVE })],
        ["SetAppMembershipStatus", () => e.c.identities.setAppMembershipStatus({ identityId: u, status: MembershipStatus.ACTIVE })],
        ["AddAppMembership", () => e.c.identities.addAppMembership({ identityId: u, applicationId: other })],
        ["RemoveAppMembership", () => e.c.identities.removeAppMembership({ identityId: u2 })],
      ];
      let previous = await envRevision();
      for (const [name, step] of steps) {
        const res = await step();
        expect(res.revision, name).toBeGreaterThan(previous);
        expect(res.revision, name).toBe(await envRevision());
        previous = res.revision;
      }
      expect((await envKey.identities.getIdentity({ id: u })).identity?.displayName).toBe("Renamed");
      assertError(await failure(() => envKey.identities.getIdentity({ id: u2 })), { code: Code.NotFound, mentions: [u2] });

      // the admin key without the header: revision 0, yet the environments whose checks change still move
      const off = await admin.identities.deactivateIdentity({ id: u });
      expect(off.revision).toBe(0n);
      expect(off.identity?.isActive).toBe(false);
      expect(await envRevision()).toBeGreaterThan(previous);
      previous = await envRevision();
      expect(reasonOf(await envKey.check.check({ identityId: u, permission: "x.read", nodeId: e.rootId }))).toBe("IDENTITY_INACTIVE");
      expect((await envKey.check.check({ identityId: u, permission: "x.read", nodeId: e.rootId })).revision).toBe(previous);
      const on = await admin.identities.activateIdentity({ id: u });
      expect(on.revision).toBe(0n);
      expect(await envRevision()).toBeGreaterThan(previous);
      previous = await envRevision();
      const inactive = await admin.identities.setAppMembershipStatus({ identityId: u, applicationId: appId, status: MembershipStatus.INACTIVE });
      expect(inactive.revision).toBe(0n);
      expect(inactive.membership?.status).toBe(MembershipStatus.INACTIVE);
      expect(await envRevision()).toBeGreaterThan(previous);
      expect((await admin.identities.updateIdentity({ id: u, displayName: "Again" })).revision).toBe(0n);
      expect((await admin.identities.removeAppMembership({ identityId: u, applicationId: other })).revision).toBe(0n);
      expect((await admin.identities.listAppMemberships({ identityId: u })).memberships.map((m) => [m.applicationId, MembershipStatus[m.status]])).toEqual([[appId, "INACTIVE"]]);
    });

    it("min_revision above the current revision -> UNAVAILABLE after the bounded wait; at or below -> answered", async () => {
      const { c, rootId } = await freshEnv();
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "mr.read" }] });
      const r = await role(c, ["mr.read"]);
      const u = await person(c);
      const current = (await c.assignments.createAssignment({ assignment: { identityId: u, roleId: r, nodeId: rootId } })).revision;
      const q = { identityId: u, permission: "mr.read", nodeId: rootId };

      assertError(await failure(() => c.check.check({ ...q, minRevision: current + 1n })), { code: Code.Unavailable, mentions: [String(current + 1n)] });
      assertError(await failure(() => c.check.checkBulk({ items: [q], minRevision: current + 100n })), { code: Code.Unavailable });

      for (const minRevision of [current, current - 1n, 1n, 0n]) {
        const res = await c.check.check({ ...q, minRevision });
        expect({ allowed: res.allowed, revision: res.revision }).toEqual({ allowed: true, revision: current });
      }
      const bulk = await c.check.checkBulk({ items: [q], minRevision: current });
      expect(bulk.revision).toBe(current);
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("hierarchy reads", () => {
    let env: Awaited<ReturnType<typeof freshEnv>>;
    const t: Record<string, string> = {};
    beforeAll(async () => {
      env = await freshEnv();
      const { c, rootId } = env;
      // created in this order; names sort the other way round so that creation order is visible
      t.X = await node(c, rootId, "unit", "x");
      t.A = await node(c, t.X, "unit", "zeta");
      t.B = await node(c, t.X, "unit", "alpha");
      t.A1 = await node(c, t.A, "unit", "a1");
      t.A1a = await node(c, t.A1, "unit", "a1a");
      t.B1 = await node(c, t.B, "unit", "b1");
    });

    it("GetAncestors: root first, parent last, excluding the node", async () => {
      const res = await env.c.hierarchy.getAncestors({ id: t.A1a });
      expect(res.ancestors.map((n) => [n.id, n.depth])).toEqual([
        [env.rootId, 1],
        [t.X, 2],
        [t.A, 3],
        [t.A1, 4],
      ]);
      expect((await env.c.hierarchy.getAncestors({ id: env.rootId })).ancestors).toEqual([]);
      expect((await env.c.hierarchy.getAncestors({ id: t.X })).ancestors.map((n) => n.id)).toEqual([env.rootId]);
    });

    it("GetSubtree: pre-order, siblings in creation order, max_depth levels below the node", async () => {
      const full = await env.c.hierarchy.getSubtree({ id: t.X });
      expect(full.nodes.map((n) => n.id)).toEqual([t.X, t.A, t.A1, t.A1a, t.B, t.B1]);
      expect(full.nodes.map((n) => n.depth)).toEqual([2, 3, 4, 5, 3, 4]);
      expect(full.nextPageToken).toBe("");
      expect((await env.c.hierarchy.getSubtree({ id: t.X, maxDepth: 1 })).nodes.map((n) => n.id)).toEqual([t.X, t.A, t.B]);
      expect((await env.c.hierarchy.getSubtree({ id: t.X, maxDepth: 2 })).nodes.map((n) => n.id)).toEqual([t.X, t.A, t.A1, t.B, t.B1]);
      expect((await env.c.hierarchy.getSubtree({ id: t.A1a })).nodes.map((n) => n.id)).toEqual([t.A1a]);
      expect((await env.c.hierarchy.listChildren({ id: t.X })).nodes.map((n) => n.id)).toEqual([t.A, t.B]);
    });

    it("GetSubtree paging: page_size 2 over 5 nodes gives 3 pages whose union is the subtree", async () => {
      const pages: string[][] = [];
      let token = "";
      do {
        const page = await env.c.hierarchy.getSubtree({ id: t.X, maxDepth: 2, pageSize: 2, pageToken: token });
        pages.push(page.nodes.map((n) => n.id));
        token = page.nextPageToken;
        expect(pages.length).toBeLessThanOrEqual(3);
      } while (token !== "");
      expect(pages).toEqual([
        [t.X, t.A],
        [t.A1, t.B],
        [t.B1],
      ]);
      expect(pages.flat()).toEqual((await env.c.hierarchy.getSubtree({ id: t.X, maxDepth: 2 })).nodes.map((n) => n.id));
    });

    it("ListChildren paging: page_size 1 walks the children in creation order", async () => {
      const first = await env.c.hierarchy.listChildren({ id: t.X, pageSize: 1 });
      expect(first.nodes.map((n) => n.id)).toEqual([t.A]);
      expect(first.nextPageToken).not.toBe("");
      const second = await env.c.hierarchy.listChildren({ id: t.X, pageSize: 1, pageToken: first.nextPageToken });
      expect(second.nodes.map((n) => n.id)).toEqual([t.B]);
      expect(second.nextPageToken).toBe("");
    });
  });

  // ---------------------------------------------------------------------------------------------
  describe("ListAssignments", () => {
    it("filters by identity, node, role and state (from the clock), and pages", async () => {
      const { c, rootId } = await freshEnv();
      await c.catalog.batchCreatePermissions({ permissions: [{ key: "la.one" }, { key: "la.two" }] });
      const r1 = await role(c, ["la.one"]);
      const r2 = await role(c, ["la.two"]);
      const n1 = await node(c, rootId);
      const n2 = await node(c, rootId);
      const i1 = await person(c);
      const i2 = await person(c);
      const start = now();
      try {
        const a1 = await assign(c, i1, r1, n1, start - HOUR); // active, open-ended
        const a2 = await assign(c, i1, r2, n2, start + DAY); // scheduled
        const a3 = await assign(c, i2, r1, n2, start - 2 * DAY, start - DAY); // expired
        const a4 = await assign(c, i2, r2, n1, start - HOUR, start + HOUR); // active, ends in an hour

        const list = async (f: { identityId?: string; nodeId?: string; roleId?: string; state?: AssignmentState }) =>
          (await c.assignments.listAssignments(f)).assignments.map((a) => a.id);
        expect(await list({})).toEqual([a1, a2, a3, a4]);
        expect(await list({ identityId: i1 })).toEqual([a1, a2]);
        expect(await list({ nodeId: n1 })).toEqual([a1, a4]);
        expect(await list({ roleId: r1 })).toEqual([a1, a3]);
        expect(await list({ state: AssignmentState.ACTIVE })).toEqual([a1, a4]);
        expect(await list({ state: AssignmentState.SCHEDULED })).toEqual([a2]);
        expect(await list({ state: AssignmentState.EXPIRED })).toEqual([a3]);
        expect(await list({ identityId: i2, state: AssignmentState.ACTIVE })).toEqual([a4]);
        expect(await list({ identityId: i1, nodeId: n1, roleId: r2 })).toEqual([]);
        expect(await list({ nodeId: rootId })).toEqual([]); // inherited grants are not listed
        const states = (await c.assignments.listAssignments({})).assignments.map((a) => AssignmentState[a.state]);
        expect(states).toEqual(["ACTIVE", "SCHEDULED", "EXPIRED", "ACTIVE"]);

        // one hour later a4 has expired (half-open: at effective_to it is no longer active)
        s.clock.set(start + HOUR);
        expect(await list({ state: AssignmentState.ACTIVE })).toEqual([a1]);
        expect(await list({ state: AssignmentState.EXPIRED })).toEqual([a3, a4]);
        expect((await c.assignments.getAssignment({ id: a4 })).assignment!.state).toBe(AssignmentState.EXPIRED);
        expect(reasonOf(await c.check.check({ identityId: i2, permission: "la.two", nodeId: n1 }))).toBe("ONLY_EXPIRED");
        expect(reasonOf(await c.check.check({ identityId: i1, permission: "la.two", nodeId: n2 }))).toBe("ONLY_SCHEDULED");

        // a day later a2 has started (at effective_from it is active)
        s.clock.set(start + DAY);
        expect(await list({ state: AssignmentState.ACTIVE })).toEqual([a1, a2]);
        expect(await list({ state: AssignmentState.SCHEDULED })).toEqual([]);
        expect(reasonOf(await c.check.check({ identityId: i1, permission: "la.two", nodeId: n2 }))).toBe("ALLOWED");

        // paging: page_size 3 over 4 -> two pages; with a filter, page_size 1 over 2 -> two pages
        const p1 = await c.assignments.listAssignments({ pageSize: 3 });
        expect(p1.assignments.map((a) => a.id)).toEqual([a1, a2, a3]);
        expect(p1.nextPageToken).not.toBe("");
        const p2 = await c.assignments.listAssignments({ pageSize: 3, pageToken: p1.nextPageToken });
        expect(p2.assignments.map((a) => a.id)).toEqual([a4]);
        expect(p2.nextPageToken).toBe("");
        const f1 = await c.assignments.listAssignments({ identityId: i2, pageSize: 1 });
        const f2 = await c.assignments.listAssignments({ identityId: i2, pageSize: 1, pageToken: f1.nextPageToken });
        expect([...f1.assignments, ...f2.assignments].map((a) => a.id)).toEqual([a3, a4]);
        expect(f2.nextPageToken).toBe("");
        const exact = await c.assignments.listAssignments({ pageSize: 4 });
        expect(exact.assignments).toHaveLength(4);
        expect(exact.nextPageToken).toBe("");
        // timestamps round-trip
        expect(timestampMs((await c.assignments.getAssignment({ id: a3 })).assignment!.effectiveTo!)).toBe(start - DAY);
      } finally {
        s.clock.set(start);
      }
    });
  });
});
