/**
 * Tenant isolation: environment A (the bootstrap development environment) and environment B (the
 * development environment of a second application) live in one account and one database. With A's
 * key, every data-plane RPC aimed at B's ids must fail with NOT_FOUND or PERMISSION_DENIED (checks:
 * fail closed with a denial), return none of B's data, and leave B exactly as it was.
 */
import { randomUUID } from "node:crypto";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendReady, startTestServer, T0, type Clients, type TestServer } from "./harness.js";
import { CheckScope, DenialReason } from "../../src/gen/canopy/v1/check_pb.js";
import { MembershipStatus } from "../../src/gen/canopy/v1/identity_pb.js";
import { failure } from "../support/errors.js";

/** False on a PostgreSQL run whose server is down (locally: skip; under CI=true backendReady throws). */
const ready = await backendReady();

const REFUSED = [Code.NotFound, Code.PermissionDenied];

/** Serializes anything (bigint-safe) so responses can be scanned for leaked data. */
const dump = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x));


describe.skipIf(!ready)("tenant isolation between environments of two applications", () => {
  let s: TestServer;
  /** env A's key (bootstrap development environment), env B's key, the admin key */
  let a: Clients;
  let b: Clients;
  let admin: Clients;
  let bKey: string;
  let envA: string;
  let envB: string;
  let appA: string;
  let appB: string;

  const A = { root: "", node: "", child: "", role: "", perm: "", sharedPerm: "", identity: "", assignment: "" };
  const B = { root: "", node: "", child: "", role: "", perm: "", sharedPerm: "", identity: "", assignment: "", email: "bee@b-only.example" };
  /** strings that only exist in B: none may ever appear in a response to A's key */
  const B_SECRETS = ["b-secret-role", "b-secret-node", "b-secret-child", "B secret description", "bee@b-only.example", "Bee Only", "b-ext-42", "tenant-b-app"];

  let snapshotBefore: unknown;

  async function snapshotB() {
    const schema = await b.hierarchy.getHierarchySchema({});
    return {
      schema,
      permissions: await b.catalog.listPermissions({}),
      roles: await b.catalog.listRoles({}),
      role: await b.catalog.getRole({ id: B.role }),
      subtree: await b.hierarchy.getSubtree({ id: schema.rootNodeId }),
      assignments: await b.assignments.listAssignments({}),
      assignment: await b.assignments.getAssignment({ id: B.assignment }),
      identities: await b.identities.listIdentities({}),
      identity: await b.identities.getIdentity({ id: B.identity }),
      memberships: await b.identities.listAppMemberships({ identityId: B.identity }),
      check: await b.check.check({ identityId: B.identity, permission: "bsecret.read", nodeId: B.child, explain: true }),
    };
  }

  /** A refused call: NOT_FOUND or PERMISSION_DENIED, and the error text carries none of B's data. */
  async function refused(p: Promise<unknown>, codes: Code[] = REFUSED): Promise<ConnectError> {
    const err = await failure(p);
    expect(codes, `unexpected code ${Code[err.code]}: ${err.message}`).toContain(err.code);
    for (const secret of B_SECRETS) expect(err.message).not.toContain(secret);
    return err;
  }

  function noLeak(res: unknown) {
    const text = dump(res);
    for (const secret of B_SECRETS) expect(text).not.toContain(secret);
    for (const id of [B.root, B.node, B.child, B.role, B.perm, B.sharedPerm, B.identity, B.assignment]) expect(text).not.toContain(id);
  }

  beforeAll(async () => {
    s = await startTestServer();
    admin = s.clients(s.adminKey, { protocol: "connect-h2" });
    a = s.clients(s.devKey, { protocol: "connect-h2" });

    const created = await admin.admin.createApplication({ name: "tenant-b-app" });
    appB = created.application!.id;
    expect(created.environments.map((e) => e.name).sort()).toEqual(["development", "production"]);
    const bDev = created.environments.find((e) => e.name === "development")!;
    envB = bDev.id;
    const key = await admin.admin.createApiKey({ name: "tenant b", environmentId: envB });
    bKey = key.secret;
    expect(bKey.startsWith("cnpy_")).toBe(true);
    b = s.clients(bKey, { protocol: "connect-h2" });

    // env A
    const schemaA = await a.hierarchy.getHierarchySchema({});
    A.root = schemaA.rootNodeId;
    const envs = await admin.admin.listEnvironments({});
    const aEnv = envs.environments.find((e) => e.rootNodeId === A.root)!;
    envA = aEnv.id;
    appA = aEnv.applicationId;
    expect(appA).not.toBe(appB);
    const permsA = await a.catalog.batchCreatePermissions({ permissions: [{ key: "a.read" }, { key: "shared.read" }] });
    [A.perm, A.sharedPerm] = permsA.permissions.map((p) => p.id);
    A.role = (await a.catalog.createRole({ name: "a-role", permissionKeys: ["a.read", "shared.read"] })).role!.id;
    A.node = (await a.hierarchy.createNode({ parentId: A.root, type: "region", name: "a-node" })).node!.id;
    A.child = (await a.hierarchy.createNode({ parentId: A.node, type: "team", name: "a-child" })).node!.id;
    A.identity = (await a.identities.createIdentity({ identity: { email: "aay@a.example", displayName: "Aay" } })).identity!.id;
    A.assignment = (await a.assignments.createAssignment({ assignment: { identityId: A.identity, roleId: A.role, nodeId: A.node } })).assignment!.id;

    // env B
    B.root = (await b.hierarchy.getHierarchySchema({})).rootNodeId;
    const permsB = await b.catalog.batchCreatePermissions({
      permissions: [{ key: "bsecret.read", description: "B secret description" }, { key: "shared.read" }],
    });
    [B.perm, B.sharedPerm] = permsB.permissions.map((p) => p.id);
    B.role = (await b.catalog.createRole({ name: "b-secret-role", description: "B secret description", permissionKeys: ["bsecret.read", "shared.read"] })).role!.id;
    B.node = (await b.hierarchy.createNode({ parentId: B.root, type: "region", name: "b-secret-node" })).node!.id;
    B.child = (await b.hierarchy.createNode({ parentId: B.node, type: "team", name: "b-secret-child", externalId: "b-ext-42" })).node!.id;
    B.identity = (await b.identities.createIdentity({ identity: { email: B.email, displayName: "Bee Only", externalId: "b-ext-42" } })).identity!.id;
    B.assignment = (await b.assignments.createAssignment({ assignment: { identityId: B.identity, roleId: B.role, nodeId: B.node } })).assignment!.id;

    snapshotBefore = await snapshotB();
  });

  afterAll(async () => {
    await s?.close();
  });

  it("setup: B sees its own data and its check is allowed", async () => {
    const snap = (await snapshotB()) as Awaited<ReturnType<typeof snapshotB>>;
    expect(snap.check.allowed).toBe(true);
    expect(snap.identity.identity?.email).toBe(B.email);
    expect(snap.assignments.assignments.map((x) => x.id)).toEqual([B.assignment]);
    expect(snap.subtree.nodes.map((n) => n.id)).toEqual([B.root, B.node, B.child]);
  });

  describe("CheckService with A's key", () => {
    it("Check against B's node is denied UNKNOWN_NODE", async () => {
      for (const nodeId of [B.node, B.child, B.root]) {
        const res = await a.check.check({ identityId: A.identity, permission: "shared.read", nodeId, explain: true });
        expect(res.allowed).toBe(false);
        expect(res.denialReason).toBe(DenialReason.UNKNOWN_NODE);
        expect(res.explanation).toEqual([]);
        expect(res.grantingRoles).toEqual([]);
      }
    });

    it("Check for B's identity is denied UNKNOWN_IDENTITY (indistinguishable from a random id), never allowed", async () => {
      const random = await a.check.check({ identityId: randomUUID(), permission: "shared.read", nodeId: A.node });
      expect(random.denialReason).toBe(DenialReason.UNKNOWN_IDENTITY);
      const cases = [
        { identityId: B.identity, permission: "shared.read", nodeId: A.node },
        { identityId: B.identity, permission: "shared.read", nodeId: B.node },
        { identityId: B.identity, permission: "bsecret.read", nodeId: B.child },
        { identityId: B.identity, permission: "shared.read", scope: CheckScope.APP_WIDE },
      ];
      for (const q of cases) {
        const res = await a.check.check({ ...q, explain: true });
        expect(res.allowed, dump(q)).toBe(false);
        expect(res.denialReason, dump(q)).toBe(DenialReason.UNKNOWN_IDENTITY);
        expect(res.explanation).toEqual([]);
        noLeak({ ...res, identityId: "", effectiveNodeId: "" });
      }
    });

    it("Check of a permission only B's catalog has is UNKNOWN_PERMISSION", async () => {
      const res = await a.check.check({ identityId: A.identity, permission: "bsecret.read", nodeId: A.node });
      expect(res.allowed).toBe(false);
      expect(res.denialReason).toBe(DenialReason.UNKNOWN_PERMISSION);
    });

    it("CheckBulk mixing B's ids: every B item denied, A's own item still allowed", async () => {
      const res = await a.check.checkBulk({
        items: [
          { identityId: A.identity, permission: "shared.read", nodeId: B.node },
          { identityId: B.identity, permission: "shared.read", nodeId: B.node },
          { identityId: B.identity, permission: "shared.read", nodeId: A.child },
          { identityId: A.identity, permission: "shared.read", nodeId: A.child },
          { identityId: B.identity, permission: "bsecret.read", scope: CheckScope.APP_WIDE },
        ],
        explain: true,
      });
      expect(res.results.map((r) => r.allowed)).toEqual([false, false, false, true, false]);
      expect(res.results[0].denialReason).toBe(DenialReason.UNKNOWN_NODE);
      expect(res.results[1].denialReason).toBe(DenialReason.UNKNOWN_IDENTITY);
      expect(res.results[2].denialReason).toBe(DenialReason.UNKNOWN_IDENTITY);
      expect(res.results[4].denialReason).toBe(DenialReason.UNKNOWN_IDENTITY);
      expect(res.results[3].explanation.map((e) => e.assignmentId)).toEqual([A.assignment]);
    });
  });

  describe("AssignmentService with A's key", () => {
    it("GetAssignment of B's assignment is NOT_FOUND", async () => {
      await refused(a.assignments.getAssignment({ id: B.assignment }));
    });

    it("ListAssignments lists only A's assignments, and filters on B's ids find nothing", async () => {
      const all = await a.assignments.listAssignments({});
      expect(all.assignments.map((x) => x.id)).toEqual([A.assignment]);
      noLeak(all);
      for (const filter of [{ identityId: B.identity }, { nodeId: B.node }, { roleId: B.role }]) {
        try {
          const res = await a.assignments.listAssignments(filter);
          expect(res.assignments).toEqual([]);
          noLeak(res);
        } catch (err) {
          expect(REFUSED).toContain(ConnectError.from(err).code);
        }
      }
    });

    it("UpdateAssignment / DeleteAssignment of B's assignment are NOT_FOUND", async () => {
      await refused(a.assignments.updateAssignment({ id: B.assignment, effectiveTo: timestampFromMs(T0 + 1000) }));
      await refused(a.assignments.updateAssignment({ id: B.assignment, roleId: A.role }));
      await refused(a.assignments.updateAssignment({ id: A.assignment, roleId: B.role }));
      await refused(a.assignments.deleteAssignment({ id: B.assignment }));
    });

    it("BatchDeleteAssignments reports B's assignment as NOT_FOUND and deletes nothing", async () => {
      const res = await a.assignments.batchDeleteAssignments({ ids: [B.assignment] });
      expect(res.results.map((r) => r.status?.code)).toEqual([5]);
      expect(res.summary).toEqual(expect.objectContaining({ total: 1, succeeded: 0, failed: 1 }));
    });

    it("CreateAssignment with B's role or B's node is NOT_FOUND", async () => {
      const role = await refused(a.assignments.createAssignment({ assignment: { identityId: A.identity, roleId: B.role, nodeId: A.node } }));
      expect(role.code).toBe(Code.NotFound);
      expect(role.message).toContain("role");
      const node = await refused(a.assignments.createAssignment({ assignment: { identityId: A.identity, roleId: A.role, nodeId: B.node } }));
      expect(node.code).toBe(Code.NotFound);
      expect(node.message).toContain("node");
      const both = await refused(a.assignments.createAssignment({ assignment: { identityId: A.identity, roleId: B.role, nodeId: B.node } }));
      expect(both.code).toBe(Code.NotFound);
    });

    it("CreateAssignment for B's identity fails exactly like an unknown identity", async () => {
      const unknown = await refused(a.assignments.createAssignment({ assignment: { identityId: randomUUID(), roleId: A.role, nodeId: A.node } }));
      const bIdentity = await refused(a.assignments.createAssignment({ assignment: { identityId: B.identity, roleId: A.role, nodeId: A.node } }));
      expect(bIdentity.code).toBe(unknown.code);
      expect(bIdentity.code).toBe(Code.NotFound);
      const allB = await refused(a.assignments.createAssignment({ assignment: { identityId: B.identity, roleId: B.role, nodeId: B.node } }));
      expect(allB.code).toBe(Code.NotFound);
    });

    it("BatchCreateAssignments items naming B's ids fail per item, nothing is written", async () => {
      const res = await a.assignments.batchCreateAssignments({
        items: [
          { identityId: A.identity, roleId: B.role, nodeId: A.child },
          { identityId: A.identity, roleId: A.role, nodeId: B.child },
          { identityId: B.identity, roleId: A.role, nodeId: A.child },
        ],
      });
      expect(res.results.map((r) => r.status?.code)).toEqual([5, 5, 5]);
      expect(res.results.map((r) => r.status?.field)).toEqual(["items[0].role_id", "items[1].node_id", "items[2].identity_id"]);
      expect(res.summary).toEqual(expect.objectContaining({ total: 3, succeeded: 0, failed: 3 }));
      // exactly what an unknown id gets: the message echoes only the id the caller sent
      expect(res.results.map((r) => r.status?.message)).toEqual([
        `role "${B.role}" not found`,
        `node "${B.child}" not found`,
        `identity "${B.identity}" not found`,
      ]);
    });

    it("BulkCreateAssignments (stream over HTTP/2) items naming B's ids fail per item", async () => {
      async function* requests() {
        yield {
          items: [
            { identityId: A.identity, roleId: B.role, nodeId: A.child },
            { identityId: A.identity, roleId: A.role, nodeId: B.node },
          ],
        };
      }
      const out = [];
      for await (const m of a.assignments.bulkCreateAssignments(requests())) out.push(m);
      const results = out.filter((m) => m.kind.case === "result").map((m) => m.kind.value as { index: number; status?: { code: number } });
      expect(results.map((r) => [r.index, r.status?.code])).toEqual([
        [0, 5],
        [1, 5],
      ]);
      const summary = out[out.length - 1].kind;
      expect(summary.case).toBe("summary");
      expect(summary.case === "summary" && summary.value.summary).toEqual(expect.objectContaining({ total: 2, succeeded: 0, failed: 2 }));
    });
  });

  describe("HierarchyService with A's key", () => {
    it("GetHierarchySchema answers A's root, not B's", async () => {
      const res = await a.hierarchy.getHierarchySchema({});
      expect(res.rootNodeId).toBe(A.root);
      expect(res.rootNodeId).not.toBe(B.root);
    });

    it("GetNode / ListChildren / GetAncestors / GetSubtree of B's nodes are NOT_FOUND", async () => {
      for (const id of [B.root, B.node, B.child]) {
        await refused(a.hierarchy.getNode({ id }));
        await refused(a.hierarchy.listChildren({ id }));
        await refused(a.hierarchy.getAncestors({ id }));
        await refused(a.hierarchy.getSubtree({ id }));
      }
    });

    it("A's own subtree does not contain B's nodes", async () => {
      const res = await a.hierarchy.getSubtree({ id: A.root });
      expect(res.nodes.map((n) => n.id)).toEqual([A.root, A.node, A.child]);
      noLeak(res);
    });

    it("CreateNode under B's node, UpdateNode / MoveNode / DeleteNode of B's nodes are NOT_FOUND", async () => {
      await refused(a.hierarchy.createNode({ parentId: B.node, type: "team", name: "intruder" }));
      await refused(a.hierarchy.createNode({ parentId: B.root, type: "team", name: "intruder" }));
      await refused(a.hierarchy.updateNode({ id: B.node, name: "renamed by A" }));
      await refused(a.hierarchy.moveNode({ id: B.child, newParentId: A.node }));
      await refused(a.hierarchy.moveNode({ id: A.child, newParentId: B.node }));
      await refused(a.hierarchy.deleteNode({ id: B.child, cascade: true }));
      await refused(a.hierarchy.deleteNode({ id: B.node, cascade: true }));
      // A's node stayed where it was
      const child = await a.hierarchy.getNode({ id: A.child });
      expect(child.node?.parentId).toBe(A.node);
    });
  });

  describe("CatalogService with A's key", () => {
    it("ListPermissions / ListRoles list only A's catalog", async () => {
      const perms = await a.catalog.listPermissions({});
      expect(perms.permissions.map((p) => p.id)).toEqual([A.perm, A.sharedPerm]);
      noLeak(perms);
      const roles = await a.catalog.listRoles({});
      expect(roles.roles.map((r) => r.id)).toEqual([A.role]);
      noLeak(roles);
    });

    it("GetRole / UpdateRole / SetRolePermissions / DeleteRole of B's role are NOT_FOUND", async () => {
      await refused(a.catalog.getRole({ id: B.role }));
      await refused(a.catalog.updateRole({ id: B.role, name: "hijacked" }));
      await refused(a.catalog.updateRole({ id: B.role, description: "hijacked" }));
      await refused(a.catalog.setRolePermissions({ id: B.role, permissionKeys: ["shared.read"] }));
      await refused(a.catalog.setRolePermissions({ id: B.role, permissionKeys: [] }));
      await refused(a.catalog.deleteRole({ id: B.role, cascade: true }));
      await refused(a.catalog.deleteRole({ id: B.role }));
    });

    it("UpdatePermission / DeletePermission of B's permissions are NOT_FOUND", async () => {
      for (const id of [B.perm, B.sharedPerm]) {
        await refused(a.catalog.updatePermission({ id, description: "hijacked" }));
        await refused(a.catalog.deletePermission({ id }));
      }
    });

    it("B's permission keys are not in A's catalog: CreateRole / SetRolePermissions naming them are NOT_FOUND", async () => {
      const create = await refused(a.catalog.createRole({ name: "uses-b", permissionKeys: ["bsecret.read"] }));
      expect(create.code).toBe(Code.NotFound);
      const set = await refused(a.catalog.setRolePermissions({ id: A.role, permissionKeys: ["a.read", "bsecret.read"] }));
      expect(set.code).toBe(Code.NotFound);
      const role = await a.catalog.getRole({ id: A.role });
      expect(role.role?.permissionKeys).toEqual(["a.read", "shared.read"]);
    });
  });

  describe("IdentityService with A's key", () => {
    it("GetIdentity of an identity that is only a member of B's application is NOT_FOUND", async () => {
      await refused(a.identities.getIdentity({ id: B.identity }));
    });

    it("ListIdentities does not list it, not even filtered by its email or external id", async () => {
      const all = await a.identities.listIdentities({});
      expect(all.identities.map((i) => i.id)).toEqual([A.identity]);
      noLeak(all);
      expect((await a.identities.listIdentities({ email: B.email })).identities).toEqual([]);
      expect((await a.identities.listIdentities({ externalId: "b-ext-42" })).identities).toEqual([]);
      expect((await a.identities.listIdentities({ isActive: true })).identities.map((i) => i.id)).toEqual([A.identity]);
    });

    it("GetIdentity / ListAppMemberships answer for B's identity exactly as for an unknown id", async () => {
      const unknownId = randomUUID();
      const get = await refused(a.identities.getIdentity({ id: B.identity }), [Code.NotFound]);
      const getUnknown = await refused(a.identities.getIdentity({ id: unknownId }), [Code.NotFound]);
      expect(get.rawMessage.replace(B.identity, "ID")).toBe(getUnknown.rawMessage.replace(unknownId, "ID"));
      expect(get.metadata.get("canopy-error-field")).toBe(getUnknown.metadata.get("canopy-error-field"));
      const ms = await refused(a.identities.listAppMemberships({ identityId: B.identity }), [Code.NotFound]);
      const msUnknown = await refused(a.identities.listAppMemberships({ identityId: unknownId }), [Code.NotFound]);
      expect(ms.rawMessage.replace(B.identity, "ID")).toBe(msUnknown.rawMessage.replace(unknownId, "ID"));
    });

    // Identity state is account-wide and memberships span every environment of an application: an
    // environment key may not change either (PERMISSION_DENIED), for B's identity as for its own.
    it("UpdateIdentity / ActivateIdentity / DeactivateIdentity of B's identity are PERMISSION_DENIED", async () => {
      const denied = [Code.PermissionDenied];
      await refused(a.identities.updateIdentity({ id: B.identity, displayName: "hijacked" }), denied);
      await refused(a.identities.updateIdentity({ id: B.identity, email: "stolen@a.example" }), denied);
      await refused(a.identities.deactivateIdentity({ id: B.identity }), denied);
      await refused(a.identities.activateIdentity({ id: B.identity }), denied);
      // … and of A's own identity (the change would reach B's application too)
      await refused(a.identities.updateIdentity({ id: A.identity, email: B.email }), denied);
      await refused(a.identities.deactivateIdentity({ id: A.identity }), denied);
    });

    it("membership writes on B's identity or B's application are PERMISSION_DENIED", async () => {
      const denied = [Code.PermissionDenied];
      await refused(a.identities.setAppMembershipStatus({ identityId: B.identity, status: MembershipStatus.INACTIVE }), denied);
      await refused(a.identities.setAppMembershipStatus({ identityId: B.identity, applicationId: appB, status: MembershipStatus.INACTIVE }), denied);
      await refused(a.identities.removeAppMembership({ identityId: B.identity }), denied);
      await refused(a.identities.removeAppMembership({ identityId: B.identity, applicationId: appB }), denied);
      await refused(a.identities.addAppMembership({ identityId: A.identity, applicationId: appB }), denied);
      await refused(a.identities.addAppMembership({ identityId: B.identity, applicationId: appB }), denied);
    });

    it("AddAppMembership cannot pull B's (invisible) identity into A's application", async () => {
      await refused(a.identities.addAppMembership({ identityId: B.identity }), [Code.PermissionDenied]);
      await refused(a.identities.getIdentity({ id: B.identity }), [Code.NotFound]);
      expect((await admin.identities.listAppMemberships({ identityId: B.identity })).memberships.map((m) => m.applicationId)).toEqual([appB]);
    });
  });

  describe("keys and headers", () => {
    it("every AdminService RPC with an environment key is PERMISSION_DENIED", async () => {
      const calls: Array<[string, () => Promise<unknown>]> = [
        ["CreateApplication", () => a.admin.createApplication({ name: "by env key" })],
        ["ListApplications", () => a.admin.listApplications({})],
        ["CreateEnvironment", () => a.admin.createEnvironment({ applicationId: appB, name: "staging" })],
        ["ListEnvironments", () => a.admin.listEnvironments({})],
        ["DeleteEnvironment", () => a.admin.deleteEnvironment({ id: envB })],
        ["CreateApiKey", () => a.admin.createApiKey({ name: "escalate", environmentId: envB })],
        ["ListApiKeys", () => a.admin.listApiKeys({})],
        ["RevokeApiKey", () => a.admin.revokeApiKey({ id: randomUUID() })],
      ];
      for (const [name, call] of calls) {
        const err = await failure(call());
        expect(err.code, name).toBe(Code.PermissionDenied);
      }
      // B's key is no different
      expect((await failure(b.admin.listApiKeys({ environmentId: envA }))).code).toBe(Code.PermissionDenied);
    });

    it("A's key with canopy-environment = B's id is PERMISSION_DENIED on every service", async () => {
      const x = s.clients(s.devKey, { protocol: "connect-h2", environment: envB });
      const calls: Array<[string, () => Promise<unknown>]> = [
        ["Check", () => x.check.check({ identityId: B.identity, permission: "bsecret.read", nodeId: B.node })],
        ["CheckBulk", () => x.check.checkBulk({ items: [{ identityId: B.identity, permission: "bsecret.read", nodeId: B.node }] })],
        ["GetAssignment", () => x.assignments.getAssignment({ id: B.assignment })],
        ["ListAssignments", () => x.assignments.listAssignments({})],
        ["CreateAssignment", () => x.assignments.createAssignment({ assignment: { identityId: B.identity, roleId: B.role, nodeId: B.child } })],
        ["DeleteAssignment", () => x.assignments.deleteAssignment({ id: B.assignment })],
        ["GetHierarchySchema", () => x.hierarchy.getHierarchySchema({})],
        ["GetNode", () => x.hierarchy.getNode({ id: B.node })],
        ["CreateNode", () => x.hierarchy.createNode({ parentId: B.node, type: "team", name: "intruder" })],
        ["ListRoles", () => x.catalog.listRoles({})],
        ["ListPermissions", () => x.catalog.listPermissions({})],
        ["DeleteRole", () => x.catalog.deleteRole({ id: B.role, cascade: true })],
        ["GetIdentity", () => x.identities.getIdentity({ id: B.identity })],
        ["ListIdentities", () => x.identities.listIdentities({})],
        ["CreateIdentity", () => x.identities.createIdentity({ identity: { email: "intruder@a.example" } })],
        ["DeactivateIdentity", () => x.identities.deactivateIdentity({ id: B.identity })],
        ["ListAppMemberships", () => x.identities.listAppMemberships({ identityId: B.identity })],
      ];
      for (const [name, call] of calls) {
        const err = await failure(call());
        expect(err.code, name).toBe(Code.PermissionDenied);
        for (const secret of B_SECRETS) expect(err.message).not.toContain(secret);
      }
    });

    it("the admin key acting in A (canopy-environment = A) cannot reach B's ids either", async () => {
      const x = s.clients(s.adminKey, { protocol: "connect-h2", environment: envA });
      await refused(x.assignments.getAssignment({ id: B.assignment }));
      await refused(x.hierarchy.getNode({ id: B.node }));
      await refused(x.catalog.getRole({ id: B.role }));
      const check = await x.check.check({ identityId: A.identity, permission: "shared.read", nodeId: B.node });
      expect(check.allowed).toBe(false);
      expect(check.denialReason).toBe(DenialReason.UNKNOWN_NODE);
    });
  });

  it("afterwards B's data is exactly as before (same revision, same rows, check still allowed)", async () => {
    const after = await snapshotB();
    expect(after).toEqual(snapshotBefore);
    expect(after.check.allowed).toBe(true);
    expect(after.identity.identity?.isActive).toBe(true);
    // and A still works normally
    const own = await a.check.check({ identityId: A.identity, permission: "a.read", nodeId: A.child });
    expect(own.allowed).toBe(true);
  });

  it("A's key cannot switch off B's access through an identity of B (membership + account-wide deactivation)", async () => {
    // a second identity of B's application, with a grant in B
    const b2 = (await b.identities.createIdentity({ identity: { email: "bee2@b-only.example" } })).identity!.id;
    await b.assignments.createAssignment({ assignment: { identityId: b2, roleId: B.role, nodeId: B.node } });
    expect((await b.check.check({ identityId: b2, permission: "bsecret.read", nodeId: B.child })).allowed).toBe(true);
    // A tries to enroll it into A's application and then to deactivate it (deactivation is account-wide):
    // both are admin-key calls
    expect((await failure(a.identities.addAppMembership({ identityId: b2 }))).code).toBe(Code.PermissionDenied);
    expect((await failure(a.identities.deactivateIdentity({ id: b2 }))).code).toBe(Code.PermissionDenied);
    expect((await failure(a.identities.getIdentity({ id: b2 }))).code).toBe(Code.NotFound);
    const after = await b.check.check({ identityId: b2, permission: "bsecret.read", nodeId: B.child });
    expect(after.denialReason).toBe(DenialReason.UNSPECIFIED);
    expect(after.allowed).toBe(true);
    expect((await b.identities.getIdentity({ id: b2 })).identity?.isActive).toBe(true);
  });
});
