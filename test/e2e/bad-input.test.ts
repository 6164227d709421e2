/**
 * Bad input, end to end: every write RPC gets malformed or impossible requests and must answer with the
 * documented Connect code, name the field or id at fault, and leave the database exactly as it was
 * (a full dump of every table before and after the call is deep-equal). Checks with malformed requests
 * are INVALID_ARGUMENT; well-formed checks with unknown ids fail closed with the right denial reason.
 * Account- and application-wide identity writes (UpdateIdentity, Activate/DeactivateIdentity, the
 * *AppMembership writes) are admin-key calls: with an environment key they are PERMISSION_DENIED.
 *
 * One server for the whole file, started with small limits so that RESOURCE_EXHAUSTED is reachable with
 * a handful of items.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { backendReady, startTestServer, T0, type Clients, type TestServer } from "./harness.js";
import { snapshotDatabase } from "./db-snapshot.js";
import { AccessModel, AssignmentState } from "../../src/gen/canopy/v1/common_pb.js";
import { CheckScope, DenialReason } from "../../src/gen/canopy/v1/check_pb.js";
import { MembershipStatus } from "../../src/gen/canopy/v1/identity_pb.js";
import { assertError, failure, type Expected } from "../support/errors.js";

/** False on a PostgreSQL run whose server is down (locally: skip; under CI=true backendReady throws). */
const ready = await backendReady();

const LIMITS = { maxBatchItems: 5, maxCheckBulk: 3, maxPageSize: 50, defaultPageSize: 20, maxMetadataBytes: 256 };

/** Ids that are well-formed but name nothing. */
const UNKNOWN = "01900000-0000-7000-8000-00000000dead";
const UNKNOWN2 = "01900000-0000-7000-8000-00000000beef";
const TOO_LONG_ID = "x".repeat(65);
const HOUR = 3_600_000;




describe.skipIf(!ready)("bad input leaves stored data exactly as it was", () => {
  let s: TestServer;
  let dev: Clients;
  let admin: Clients;
  /** the admin key acting in the dev environment (canopy-environment header): account- and application-wide identity writes */
  let adminDev: Clients;
  /** the dev environment over the gRPC protocol (binary, lets out-of-range timestamps and enums through) */
  let grpc: Clients;
  const f = {
    devEnvId: "",
    prodEnvId: "",
    appId: "",
    otherAppId: "",
    rootId: "",
    orgId: "",
    teamId: "",
    leafId: "",
    permReadId: "",
    viewerId: "",
    editorId: "",
    alice: "",
    bob: "",
    carol: "",
    dave: "",
    aliceViewerOrg: "",
    aliceEditorOrg: "",
    adminKeyId: "",
  };

  beforeAll(async () => {
    s = await startTestServer({ limits: LIMITS });
    dev = s.clients(s.devKey);
    admin = s.clients(s.adminKey);
    grpc = s.clients(s.devKey, { protocol: "grpc" });

    const envs = (await admin.admin.listEnvironments({})).environments;
    const devEnv = envs.find((e) => e.name === "development")!;
    f.devEnvId = devEnv.id;
    adminDev = s.clients(s.adminKey, { environment: f.devEnvId });
    f.prodEnvId = envs.find((e) => e.name === "production")!.id;
    f.appId = devEnv.applicationId;
    f.otherAppId = (await admin.admin.createApplication({ name: "other" })).application!.id;
    f.adminKeyId = (await admin.admin.listApiKeys({})).apiKeys.find((k) => k.environmentId === "")!.id;

    const perms = await dev.catalog.batchCreatePermissions({
      permissions: [{ key: "invoice.read" }, { key: "invoice.write" }, { key: "invoice.approve" }],
    });
    f.permReadId = perms.permissions[0].id;
    f.viewerId = (await dev.catalog.createRole({ name: "viewer", permissionKeys: ["invoice.read"] })).role!.id;
    f.editorId = (await dev.catalog.createRole({ name: "editor", permissionKeys: ["invoice.approve"] })).role!.id;

    f.rootId = (await dev.hierarchy.getHierarchySchema({})).rootNodeId;
    f.orgId = (await dev.hierarchy.createNode({ parentId: f.rootId, type: "org", name: "Acme" })).node!.id;
    f.teamId = (await dev.hierarchy.createNode({ parentId: f.orgId, type: "team", name: "Billing" })).node!.id;
    f.leafId = (await dev.hierarchy.createNode({ parentId: f.rootId, type: "org", name: "Empty" })).node!.id;

    f.alice = (await dev.identities.createIdentity({ identity: { email: "alice@example.com", externalId: "ext-alice" } })).identity!.id;
    f.bob = (await dev.identities.createIdentity({ identity: { email: "bob@example.com" } })).identity!.id;
    f.carol = (await dev.identities.createIdentity({ identity: { email: "carol@example.com" } })).identity!.id;
    // deactivation is account-wide: environment keys may not, the admin key may
    await adminDev.identities.deactivateIdentity({ id: f.carol });
    f.dave = (await dev.identities.createIdentity({ identity: { email: "dave@example.com" }, skipMembership: true })).identity!.id;

    f.aliceViewerOrg = (await dev.assignments.createAssignment({ assignment: { identityId: f.alice, roleId: f.viewerId, nodeId: f.orgId } })).assignment!.id;
    f.aliceEditorOrg = (await dev.assignments.createAssignment({ assignment: { identityId: f.alice, roleId: f.editorId, nodeId: f.orgId } })).assignment!.id;
  });
  afterAll(() => s?.close());

  /** The call must fail as expected and the whole database must be unchanged afterwards. */
  async function expectRefused(call: () => Promise<unknown>, exp: Expected): Promise<void> {
    const before = await snapshotDatabase(s);
    const err = await failure(call);
    const after = await snapshotDatabase(s);
    assertError(err, exp);
    expect(after, "stored data changed although the request was refused").toEqual(before);
  }

  interface Case extends Expected {
    name: string;
    call: () => Promise<unknown>;
    /** runs after the assertions even when they fail, to undo a call that wrongly succeeded */
    cleanup?: () => Promise<unknown>;
  }

  const catalogCases: Case[] = [
    // BatchCreatePermissions
    { name: "BatchCreatePermissions: upper-case key", call: () => dev.catalog.batchCreatePermissions({ permissions: [{ key: "invoice.export" }, { key: "Invoice.Read" }] }), code: Code.InvalidArgument, field: "permissions[1].key", reason: "catalog.invalid_permission_key", mentions: ["Invoice.Read"] },
    { name: "BatchCreatePermissions: single segment key", call: () => dev.catalog.batchCreatePermissions({ permissions: [{ key: "invoice" }] }), code: Code.InvalidArgument, field: "permissions[0].key", mentions: ["permissions[0].key"] },
    { name: "BatchCreatePermissions: empty key", call: () => dev.catalog.batchCreatePermissions({ permissions: [{ key: "a.b" }, { key: "c.d" }, { key: "" }] }), code: Code.InvalidArgument, field: "permissions[2].key" },
    { name: "BatchCreatePermissions: key of 129 characters", call: () => dev.catalog.batchCreatePermissions({ permissions: [{ key: `a.${"b".repeat(127)}` }] }), code: Code.InvalidArgument, field: "permissions[0].key" },
    { name: "BatchCreatePermissions: description too long", call: () => dev.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read", description: "d".repeat(2001) }] }), code: Code.InvalidArgument, field: "permissions[0].description" },
    { name: "BatchCreatePermissions: a key twice in the request", call: () => dev.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }, { key: "doc.read" }] }), code: Code.AlreadyExists, field: "permissions[1].key", mentions: ["doc.read"] },
    { name: "BatchCreatePermissions: a key that exists already", call: () => dev.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }, { key: "invoice.read" }] }), code: Code.AlreadyExists, field: "permissions[1].key", mentions: ["invoice.read"] },
    { name: "BatchCreatePermissions: empty list", call: () => dev.catalog.batchCreatePermissions({ permissions: [] }), code: Code.InvalidArgument, field: "permissions" },
    { name: "BatchCreatePermissions: over the limit", call: () => dev.catalog.batchCreatePermissions({ permissions: Array.from({ length: 6 }, (_, i) => ({ key: `bulk.p${i}` })) }), code: Code.ResourceExhausted, field: "permissions" },
    // UpdatePermission
    { name: "UpdatePermission: missing id", call: () => dev.catalog.updatePermission({ description: "x" }), code: Code.InvalidArgument, field: "id" },
    { name: "UpdatePermission: unknown id", call: () => dev.catalog.updatePermission({ id: UNKNOWN, description: "x" }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "UpdatePermission: a different key", call: () => dev.catalog.updatePermission({ id: f.permReadId, key: "invoice.view", description: "x" }), code: Code.InvalidArgument, field: "key", mentions: ["invoice.view"] },
    { name: "UpdatePermission: description too long", call: () => dev.catalog.updatePermission({ id: f.permReadId, description: "d".repeat(2001) }), code: Code.InvalidArgument, field: "description" },
    // DeletePermission
    { name: "DeletePermission: missing id", call: () => dev.catalog.deletePermission({}), code: Code.InvalidArgument, field: "id" },
    { name: "DeletePermission: unknown id", call: () => dev.catalog.deletePermission({ id: UNKNOWN }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    // CreateRole
    { name: "CreateRole: empty name", call: () => dev.catalog.createRole({ name: "", permissionKeys: ["invoice.read"] }), code: Code.InvalidArgument, field: "name" },
    { name: "CreateRole: blank name", call: () => dev.catalog.createRole({ name: "   " }), code: Code.InvalidArgument, field: "name" },
    { name: "CreateRole: name too long", call: () => dev.catalog.createRole({ name: "r".repeat(201) }), code: Code.InvalidArgument, field: "name" },
    { name: "CreateRole: name taken", call: () => dev.catalog.createRole({ name: "viewer" }), code: Code.AlreadyExists, field: "name", mentions: ["viewer"] },
    { name: "CreateRole: permission key not in the catalog", call: () => dev.catalog.createRole({ name: "auditor", permissionKeys: ["invoice.read", "ledger.read"] }), code: Code.NotFound, field: "permission_keys[1]", mentions: ["ledger.read"] },
    { name: "CreateRole: malformed permission key", call: () => dev.catalog.createRole({ name: "auditor", permissionKeys: ["Ledger"] }), code: Code.InvalidArgument, field: "permission_keys[0]" },
    // UpdateRole
    { name: "UpdateRole: unknown id", call: () => dev.catalog.updateRole({ id: UNKNOWN, name: "x" }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "UpdateRole: empty name", call: () => dev.catalog.updateRole({ id: f.viewerId, name: "" }), code: Code.InvalidArgument, field: "name" },
    { name: "UpdateRole: name taken", call: () => dev.catalog.updateRole({ id: f.viewerId, name: "editor" }), code: Code.AlreadyExists, field: "name", mentions: ["editor"] },
    { name: "UpdateRole: description too long", call: () => dev.catalog.updateRole({ id: f.viewerId, description: "d".repeat(2001) }), code: Code.InvalidArgument, field: "description" },
    // SetRolePermissions
    { name: "SetRolePermissions: unknown role", call: () => dev.catalog.setRolePermissions({ id: UNKNOWN, permissionKeys: ["invoice.read"] }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "SetRolePermissions: missing id", call: () => dev.catalog.setRolePermissions({ permissionKeys: [] }), code: Code.InvalidArgument, field: "id" },
    { name: "SetRolePermissions: unknown permission key", call: () => dev.catalog.setRolePermissions({ id: f.viewerId, permissionKeys: ["invoice.write", "ledger.read"] }), code: Code.NotFound, field: "permission_keys[1]", mentions: ["ledger.read"] },
    { name: "SetRolePermissions: malformed permission key", call: () => dev.catalog.setRolePermissions({ id: f.viewerId, permissionKeys: ["invoice.write", "Invoice.Write"] }), code: Code.InvalidArgument, field: "permission_keys[1]" },
    // DeleteRole
    { name: "DeleteRole: unknown id", call: () => dev.catalog.deleteRole({ id: UNKNOWN }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "DeleteRole: missing id", call: () => dev.catalog.deleteRole({}), code: Code.InvalidArgument, field: "id" },
    { name: "DeleteRole: role still held, no cascade", call: () => dev.catalog.deleteRole({ id: f.viewerId }), code: Code.FailedPrecondition, mentions: [() => f.viewerId] },
  ];

  const hierarchyCases: Case[] = [
    // UpdateHierarchySchema
    { name: "UpdateHierarchySchema: no node types", call: () => dev.hierarchy.updateHierarchySchema({ schema: { nodeTypes: [] } }), code: Code.InvalidArgument, field: "schema.node_types" },
    { name: "UpdateHierarchySchema: malformed node type", call: () => dev.hierarchy.updateHierarchySchema({ schema: { nodeTypes: ["org", "bad type!"] } }), code: Code.InvalidArgument, field: "schema.node_types[1]" },
    { name: "UpdateHierarchySchema: allowed_children names an unknown parent type", call: () => dev.hierarchy.updateHierarchySchema({ schema: { nodeTypes: ["root", "org", "team"], allowedChildren: { galaxy: { types: ["org"] } } } }), code: Code.InvalidArgument, mentions: ["galaxy"] },
    { name: "UpdateHierarchySchema: allowed_children names an unknown child type", call: () => dev.hierarchy.updateHierarchySchema({ schema: { nodeTypes: ["root", "org", "team"], allowedChildren: { root: { types: ["org", "planet"] } } } }), code: Code.InvalidArgument, mentions: ["planet"] },
    { name: "UpdateHierarchySchema: root_node_type not in node_types", call: () => dev.hierarchy.updateHierarchySchema({ schema: { nodeTypes: ["org", "team"], rootNodeType: "company" } }), code: Code.InvalidArgument, field: "schema.root_node_type", mentions: ["company"] },
    { name: "UpdateHierarchySchema: max_depth above the server limit", call: () => dev.hierarchy.updateHierarchySchema({ schema: { nodeTypes: ["root", "org", "team"], allowedChildren: { root: { types: ["org"] }, org: { types: ["team"] } }, maxDepth: 33 } }), code: Code.InvalidArgument, field: "schema.max_depth" },
    { name: "UpdateHierarchySchema: duplicate node types", call: () => dev.hierarchy.updateHierarchySchema({ schema: { nodeTypes: ["root", "org", "team", "org"], allowedChildren: { root: { types: ["org"] }, org: { types: ["team"] } } } }), code: Code.InvalidArgument, mentions: ["org"], cleanup: () => dev.hierarchy.updateHierarchySchema({}) },
    { name: "UpdateHierarchySchema: existing org node not allowed under the root", call: () => dev.hierarchy.updateHierarchySchema({ schema: { nodeTypes: ["root", "org", "team"], allowedChildren: { org: { types: ["team"] } } } }), code: Code.FailedPrecondition, field: "schema", mentions: [() => f.orgId] },
    { name: "UpdateHierarchySchema: existing team node deeper than max_depth", call: () => dev.hierarchy.updateHierarchySchema({ schema: { nodeTypes: ["root", "org", "team"], allowedChildren: { root: { types: ["org"] }, org: { types: ["team"] } }, maxDepth: 2 } }), code: Code.FailedPrecondition, field: "schema", mentions: [() => f.teamId] },
    // SetAccessModel
    { name: "SetAccessModel: unspecified", call: () => dev.hierarchy.setAccessModel({ accessModel: AccessModel.UNSPECIFIED }), code: Code.InvalidArgument, field: "access_model" },
    { name: "SetAccessModel: unknown enum value", call: () => grpc.hierarchy.setAccessModel({ accessModel: 7 as AccessModel }), code: Code.InvalidArgument, field: "access_model" },
    { name: "SetAccessModel: FLAT while nodes exist", call: () => dev.hierarchy.setAccessModel({ accessModel: AccessModel.FLAT }), code: Code.FailedPrecondition, field: "access_model" },
    // CreateNode
    { name: "CreateNode: missing parent_id", call: () => dev.hierarchy.createNode({ type: "org", name: "x" }), code: Code.InvalidArgument, field: "parent_id" },
    { name: "CreateNode: parent_id too long", call: () => dev.hierarchy.createNode({ parentId: TOO_LONG_ID, type: "org", name: "x" }), code: Code.InvalidArgument, field: "parent_id" },
    { name: "CreateNode: unknown parent", call: () => dev.hierarchy.createNode({ parentId: UNKNOWN, type: "org", name: "x" }), code: Code.NotFound, field: "parent_id", mentions: [UNKNOWN] },
    { name: "CreateNode: missing type", call: () => dev.hierarchy.createNode({ parentId: f.rootId, name: "x" }), code: Code.InvalidArgument, field: "type" },
    { name: "CreateNode: malformed type", call: () => dev.hierarchy.createNode({ parentId: f.rootId, type: "two words", name: "x" }), code: Code.InvalidArgument, field: "type" },
    { name: "CreateNode: missing name", call: () => dev.hierarchy.createNode({ parentId: f.rootId, type: "org" }), code: Code.InvalidArgument, field: "name" },
    { name: "CreateNode: name too long", call: () => dev.hierarchy.createNode({ parentId: f.rootId, type: "org", name: "n".repeat(201) }), code: Code.InvalidArgument, field: "name" },
    { name: "CreateNode: external_id too long", call: () => dev.hierarchy.createNode({ parentId: f.rootId, type: "org", name: "x", externalId: "e".repeat(201) }), code: Code.InvalidArgument, field: "external_id" },
    { name: "CreateNode: metadata too large", call: () => dev.hierarchy.createNode({ parentId: f.rootId, type: "org", name: "x", metadata: { blob: "m".repeat(300) } }), code: Code.InvalidArgument, field: "metadata" },
    // UpdateNode
    { name: "UpdateNode: missing id", call: () => dev.hierarchy.updateNode({ name: "x" }), code: Code.InvalidArgument, field: "id" },
    { name: "UpdateNode: unknown id", call: () => dev.hierarchy.updateNode({ id: UNKNOWN, name: "x" }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "UpdateNode: empty name", call: () => dev.hierarchy.updateNode({ id: f.orgId, name: "" }), code: Code.InvalidArgument, field: "name" },
    { name: "UpdateNode: metadata too large", call: () => dev.hierarchy.updateNode({ id: f.orgId, metadata: { blob: "m".repeat(300) } }), code: Code.InvalidArgument, field: "metadata" },
    // MoveNode
    { name: "MoveNode: missing id", call: () => dev.hierarchy.moveNode({ newParentId: f.rootId }), code: Code.InvalidArgument, field: "id" },
    { name: "MoveNode: missing new_parent_id", call: () => dev.hierarchy.moveNode({ id: f.teamId }), code: Code.InvalidArgument, field: "new_parent_id" },
    { name: "MoveNode: unknown node", call: () => dev.hierarchy.moveNode({ id: UNKNOWN, newParentId: f.rootId }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "MoveNode: unknown new parent", call: () => dev.hierarchy.moveNode({ id: f.teamId, newParentId: UNKNOWN }), code: Code.NotFound, field: "new_parent_id", mentions: [UNKNOWN] },
    { name: "MoveNode: the root", call: () => dev.hierarchy.moveNode({ id: f.rootId, newParentId: f.orgId }), code: Code.FailedPrecondition, field: "id" },
    { name: "MoveNode: under its own child (cycle)", call: () => dev.hierarchy.moveNode({ id: f.orgId, newParentId: f.teamId }), code: Code.FailedPrecondition, field: "new_parent_id", reason: "hierarchy.cycle", mentions: [() => f.orgId, () => f.teamId] },
    { name: "MoveNode: under itself (cycle)", call: () => dev.hierarchy.moveNode({ id: f.orgId, newParentId: f.orgId }), code: Code.FailedPrecondition, field: "new_parent_id", reason: "hierarchy.cycle" },
    // DeleteNode
    { name: "DeleteNode: missing id", call: () => dev.hierarchy.deleteNode({}), code: Code.InvalidArgument, field: "id" },
    { name: "DeleteNode: unknown id", call: () => dev.hierarchy.deleteNode({ id: UNKNOWN }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "DeleteNode: the root", call: () => dev.hierarchy.deleteNode({ id: f.rootId, cascade: true }), code: Code.FailedPrecondition, field: "id" },
    { name: "DeleteNode: node with children and assignments, no cascade", call: () => dev.hierarchy.deleteNode({ id: f.orgId }), code: Code.FailedPrecondition, field: "cascade", mentions: [() => f.orgId] },
  ];

  const identityCases: Case[] = [
    // CreateIdentity
    { name: "CreateIdentity: no identity at all", call: () => dev.identities.createIdentity({}), code: Code.InvalidArgument, field: "identity.email" },
    { name: "CreateIdentity: missing email", call: () => dev.identities.createIdentity({ identity: { displayName: "No Mail" } }), code: Code.InvalidArgument, field: "identity.email" },
    { name: "CreateIdentity: malformed email", call: () => dev.identities.createIdentity({ identity: { email: "not-an-email" } }), code: Code.InvalidArgument, field: "identity.email", mentions: ["not-an-email"] },
    { name: "CreateIdentity: email too long", call: () => dev.identities.createIdentity({ identity: { email: `${"a".repeat(320)}@example.com` } }), code: Code.InvalidArgument, field: "identity.email" },
    { name: "CreateIdentity: display name too long", call: () => dev.identities.createIdentity({ identity: { email: "new@example.com", displayName: "n".repeat(201) } }), code: Code.InvalidArgument, field: "identity.display_name" },
    { name: "CreateIdentity: metadata too large", call: () => dev.identities.createIdentity({ identity: { email: "new@example.com", metadata: { blob: "m".repeat(300) } } }), code: Code.InvalidArgument, field: "identity.metadata" },
    { name: "CreateIdentity: email taken (case-insensitive)", call: () => dev.identities.createIdentity({ identity: { email: "ALICE@Example.com" } }), code: Code.AlreadyExists, field: "identity.email", mentions: ["alice@example.com"] },
    { name: "CreateIdentity: external_id taken", call: () => dev.identities.createIdentity({ identity: { email: "new@example.com", externalId: "ext-alice" } }), code: Code.AlreadyExists, field: "identity.external_id", mentions: ["ext-alice"] },
    // BatchCreateIdentities (whole-request errors)
    { name: "BatchCreateIdentities: over the limit", call: () => dev.identities.batchCreateIdentities({ identities: Array.from({ length: 6 }, (_, i) => ({ email: `batch${i}@example.com` })) }), code: Code.ResourceExhausted, field: "identities" },
    // GetIdentity / ListAppMemberships: to an environment key an identity outside its application does not exist
    { name: "GetIdentity: identity without a membership in the key's application (environment key)", call: () => dev.identities.getIdentity({ id: f.dave }), code: Code.NotFound, field: "id", mentions: [() => f.dave] },
    { name: "ListAppMemberships: identity without a membership in the key's application (environment key)", call: () => dev.identities.listAppMemberships({ identityId: f.dave }), code: Code.NotFound, field: "identity_id", mentions: [() => f.dave] },
    // UpdateIdentity / ActivateIdentity / DeactivateIdentity / *AppMembership are admin-key calls (environment keys: see below)
    // UpdateIdentity
    { name: "UpdateIdentity: missing id", call: () => adminDev.identities.updateIdentity({ displayName: "x" }), code: Code.InvalidArgument, field: "id" },
    { name: "UpdateIdentity: unknown id", call: () => adminDev.identities.updateIdentity({ id: UNKNOWN, displayName: "x" }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "UpdateIdentity: unknown id, admin key without environment", call: () => admin.identities.updateIdentity({ id: UNKNOWN, displayName: "x" }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "UpdateIdentity: empty email", call: () => adminDev.identities.updateIdentity({ id: f.bob, email: "" }), code: Code.InvalidArgument, field: "email" },
    { name: "UpdateIdentity: malformed email", call: () => adminDev.identities.updateIdentity({ id: f.bob, email: "bob-at-example" }), code: Code.InvalidArgument, field: "email" },
    { name: "UpdateIdentity: email taken", call: () => adminDev.identities.updateIdentity({ id: f.bob, email: "alice@example.com" }), code: Code.AlreadyExists, field: "email", mentions: ["alice@example.com"] },
    { name: "UpdateIdentity: external_id taken", call: () => adminDev.identities.updateIdentity({ id: f.bob, externalId: "ext-alice" }), code: Code.AlreadyExists, field: "external_id", mentions: ["ext-alice"] },
    { name: "UpdateIdentity: display name too long", call: () => adminDev.identities.updateIdentity({ id: f.bob, displayName: "n".repeat(201) }), code: Code.InvalidArgument, field: "display_name" },
    // ActivateIdentity / DeactivateIdentity
    { name: "ActivateIdentity: missing id", call: () => adminDev.identities.activateIdentity({}), code: Code.InvalidArgument, field: "id" },
    { name: "ActivateIdentity: unknown id", call: () => adminDev.identities.activateIdentity({ id: UNKNOWN }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "DeactivateIdentity: unknown id", call: () => adminDev.identities.deactivateIdentity({ id: UNKNOWN }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "DeactivateIdentity: unknown id, admin key without environment", call: () => admin.identities.deactivateIdentity({ id: UNKNOWN }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "DeactivateIdentity: id too long", call: () => adminDev.identities.deactivateIdentity({ id: TOO_LONG_ID }), code: Code.InvalidArgument, field: "id" },
    // AddAppMembership
    { name: "AddAppMembership: missing identity_id", call: () => adminDev.identities.addAppMembership({}), code: Code.InvalidArgument, field: "identity_id" },
    { name: "AddAppMembership: unknown identity", call: () => adminDev.identities.addAppMembership({ identityId: UNKNOWN }), code: Code.NotFound, field: "identity_id", mentions: [UNKNOWN] },
    { name: "AddAppMembership: membership exists", call: () => adminDev.identities.addAppMembership({ identityId: f.alice }), code: Code.AlreadyExists, field: "identity_id", mentions: [() => f.alice] },
    { name: "AddAppMembership: admin key, unknown application", call: () => admin.identities.addAppMembership({ identityId: f.dave, applicationId: UNKNOWN }), code: Code.NotFound, field: "application_id", mentions: [UNKNOWN] },
    { name: "AddAppMembership: admin key without environment nor application", call: () => admin.identities.addAppMembership({ identityId: f.dave }), code: Code.InvalidArgument, field: "application_id" },
    // SetAppMembershipStatus
    { name: "SetAppMembershipStatus: unspecified status", call: () => adminDev.identities.setAppMembershipStatus({ identityId: f.alice, status: MembershipStatus.UNSPECIFIED }), code: Code.InvalidArgument, field: "status" },
    { name: "SetAppMembershipStatus: missing identity_id", call: () => adminDev.identities.setAppMembershipStatus({ status: MembershipStatus.INACTIVE }), code: Code.InvalidArgument, field: "identity_id" },
    { name: "SetAppMembershipStatus: unknown identity", call: () => adminDev.identities.setAppMembershipStatus({ identityId: UNKNOWN, status: MembershipStatus.INACTIVE }), code: Code.NotFound, field: "identity_id", mentions: [UNKNOWN] },
    { name: "SetAppMembershipStatus: no such membership", call: () => adminDev.identities.setAppMembershipStatus({ identityId: f.dave, status: MembershipStatus.INACTIVE }), code: Code.NotFound, mentions: [() => f.dave] },
    { name: "SetAppMembershipStatus: admin key without environment nor application", call: () => admin.identities.setAppMembershipStatus({ identityId: f.alice, status: MembershipStatus.INACTIVE }), code: Code.InvalidArgument, field: "application_id" },
    // RemoveAppMembership
    { name: "RemoveAppMembership: missing identity_id", call: () => adminDev.identities.removeAppMembership({}), code: Code.InvalidArgument, field: "identity_id" },
    { name: "RemoveAppMembership: unknown identity", call: () => adminDev.identities.removeAppMembership({ identityId: UNKNOWN }), code: Code.NotFound, field: "identity_id", mentions: [UNKNOWN] },
    { name: "RemoveAppMembership: no such membership", call: () => adminDev.identities.removeAppMembership({ identityId: f.dave }), code: Code.NotFound, mentions: [() => f.dave] },
    { name: "RemoveAppMembership: admin key without application", call: () => admin.identities.removeAppMembership({ identityId: f.alice }), code: Code.InvalidArgument, field: "application_id" },
  ];

  const a = (over: Record<string, unknown>) => ({ identityId: f.bob, roleId: f.viewerId, nodeId: f.teamId, ...over });
  const assignmentCases: Case[] = [
    // CreateAssignment
    { name: "CreateAssignment: no assignment at all", call: () => dev.assignments.createAssignment({}), code: Code.InvalidArgument, field: "assignment.identity_id" },
    { name: "CreateAssignment: missing identity_id", call: () => dev.assignments.createAssignment({ assignment: a({ identityId: "" }) }), code: Code.InvalidArgument, field: "assignment.identity_id" },
    { name: "CreateAssignment: missing role_id", call: () => dev.assignments.createAssignment({ assignment: a({ roleId: "" }) }), code: Code.InvalidArgument, field: "assignment.role_id" },
    { name: "CreateAssignment: missing node_id in hierarchy mode", call: () => dev.assignments.createAssignment({ assignment: a({ nodeId: "" }) }), code: Code.InvalidArgument, field: "assignment.node_id" },
    { name: "CreateAssignment: role_id too long", call: () => dev.assignments.createAssignment({ assignment: a({ roleId: TOO_LONG_ID }) }), code: Code.InvalidArgument, field: "assignment.role_id" },
    { name: "CreateAssignment: effective_to equal to effective_from", call: () => dev.assignments.createAssignment({ assignment: a({ effectiveFrom: timestampFromMs(T0 + HOUR), effectiveTo: timestampFromMs(T0 + HOUR) }) }), code: Code.InvalidArgument, field: "assignment.effective_to", reason: "rbac.invalid_window" },
    { name: "CreateAssignment: effective_to before effective_from", call: () => dev.assignments.createAssignment({ assignment: a({ effectiveFrom: timestampFromMs(T0 + 2 * HOUR), effectiveTo: timestampFromMs(T0 + HOUR) }) }), code: Code.InvalidArgument, field: "assignment.effective_to" },
    { name: "CreateAssignment: effective_to before the default effective_from (now)", call: () => dev.assignments.createAssignment({ assignment: a({ effectiveTo: timestampFromMs(T0 - HOUR) }) }), code: Code.InvalidArgument, field: "assignment.effective_to" },
    { name: "CreateAssignment: effective_from out of the Timestamp range", call: () => grpc.assignments.createAssignment({ assignment: a({ effectiveFrom: { seconds: 253402300800n, nanos: 0 } }) }), code: Code.InvalidArgument, field: "assignment.effective_from" },
    { name: "CreateAssignment: effective_to with invalid nanos", call: () => grpc.assignments.createAssignment({ assignment: a({ effectiveTo: { seconds: BigInt(T0 / 1000 + 3600), nanos: 1_000_000_000 } }) }), code: Code.InvalidArgument, field: "assignment.effective_to" },
    { name: "CreateAssignment: unknown identity", call: () => dev.assignments.createAssignment({ assignment: a({ identityId: UNKNOWN }) }), code: Code.NotFound, field: "assignment.identity_id", mentions: [UNKNOWN] },
    { name: "CreateAssignment: unknown role", call: () => dev.assignments.createAssignment({ assignment: a({ roleId: UNKNOWN }) }), code: Code.NotFound, field: "assignment.role_id", mentions: [UNKNOWN] },
    { name: "CreateAssignment: unknown node", call: () => dev.assignments.createAssignment({ assignment: a({ nodeId: UNKNOWN }) }), code: Code.NotFound, field: "assignment.node_id", mentions: [UNKNOWN] },
    { name: "CreateAssignment: inactive identity", call: () => dev.assignments.createAssignment({ assignment: a({ identityId: f.carol }) }), code: Code.FailedPrecondition, field: "assignment.identity_id", mentions: [() => f.carol] },
    // to an environment key an identity outside its application does not exist
    { name: "CreateAssignment: identity without membership (environment key)", call: () => dev.assignments.createAssignment({ assignment: a({ identityId: f.dave }) }), code: Code.NotFound, field: "assignment.identity_id", mentions: [() => f.dave] },
    // the admin key acting in the environment sees the account-wide identity and gets the precondition
    { name: "CreateAssignment: identity without membership (admin key in the environment)", call: () => s.clients(s.adminKey, { environment: f.devEnvId }).assignments.createAssignment({ assignment: a({ identityId: f.dave }) }), code: Code.FailedPrecondition, field: "assignment.identity_id", reason: "identity.no_membership", mentions: [() => f.dave] },
    { name: "CreateAssignment: overlapping duplicate", call: () => dev.assignments.createAssignment({ assignment: { identityId: f.alice, roleId: f.viewerId, nodeId: f.orgId, effectiveFrom: timestampFromMs(T0 + HOUR) } }), code: Code.AlreadyExists, reason: "rbac.assignment_conflict", mentions: [() => f.aliceViewerOrg] },
    // BatchCreateAssignments (whole-request errors)
    { name: "BatchCreateAssignments: over the limit", call: () => dev.assignments.batchCreateAssignments({ items: Array.from({ length: 6 }, () => a({})) }), code: Code.ResourceExhausted, field: "items" },
    { name: "BatchCreateAssignments: over the limit, atomic", call: () => dev.assignments.batchCreateAssignments({ items: Array.from({ length: 6 }, () => a({})), atomic: true }), code: Code.ResourceExhausted, field: "items" },
    { name: "BatchCreateAssignments: idempotency_key too long", call: () => dev.assignments.batchCreateAssignments({ items: [a({})], idempotencyKey: "k".repeat(201) }), code: Code.InvalidArgument, field: "idempotency_key" },
    // UpdateAssignment
    { name: "UpdateAssignment: missing id", call: () => dev.assignments.updateAssignment({ roleId: f.viewerId }), code: Code.InvalidArgument, field: "id" },
    { name: "UpdateAssignment: unknown id", call: () => dev.assignments.updateAssignment({ id: UNKNOWN, clearEffectiveTo: true }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "UpdateAssignment: unknown role", call: () => dev.assignments.updateAssignment({ id: f.aliceEditorOrg, roleId: UNKNOWN }), code: Code.NotFound, field: "role_id", mentions: [UNKNOWN] },
    { name: "UpdateAssignment: empty role_id", call: () => dev.assignments.updateAssignment({ id: f.aliceEditorOrg, roleId: "" }), code: Code.InvalidArgument, field: "role_id" },
    { name: "UpdateAssignment: effective_to before effective_from", call: () => dev.assignments.updateAssignment({ id: f.aliceEditorOrg, effectiveTo: timestampFromMs(T0 - HOUR) }), code: Code.InvalidArgument, field: "effective_to" },
    { name: "UpdateAssignment: effective_from after the existing effective_to", call: () => dev.assignments.updateAssignment({ id: f.aliceEditorOrg, effectiveFrom: timestampFromMs(T0 + 3 * HOUR), effectiveTo: timestampFromMs(T0 + 2 * HOUR) }), code: Code.InvalidArgument, field: "effective_to" },
    { name: "UpdateAssignment: effective_to together with clear_effective_to", call: () => dev.assignments.updateAssignment({ id: f.aliceEditorOrg, effectiveTo: timestampFromMs(T0 + HOUR), clearEffectiveTo: true }), code: Code.InvalidArgument, field: "effective_to" },
    { name: "UpdateAssignment: invalid timestamp", call: () => grpc.assignments.updateAssignment({ id: f.aliceEditorOrg, effectiveTo: { seconds: -62135596801n, nanos: 0 } }), code: Code.InvalidArgument, field: "effective_to" },
    { name: "UpdateAssignment: new role makes an overlapping duplicate", call: () => dev.assignments.updateAssignment({ id: f.aliceEditorOrg, roleId: f.viewerId }), code: Code.AlreadyExists, reason: "rbac.assignment_conflict", mentions: [() => f.aliceViewerOrg] },
    // DeleteAssignment
    { name: "DeleteAssignment: missing id", call: () => dev.assignments.deleteAssignment({}), code: Code.InvalidArgument, field: "id" },
    { name: "DeleteAssignment: unknown id", call: () => dev.assignments.deleteAssignment({ id: UNKNOWN }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    // BatchDeleteAssignments (whole-request errors; a malformed id is a per-item error, see below)
    { name: "BatchDeleteAssignments: over the limit", call: () => dev.assignments.batchDeleteAssignments({ ids: [f.aliceViewerOrg, UNKNOWN, UNKNOWN2, "a", "b", "c"] }), code: Code.ResourceExhausted, field: "ids" },
  ];

  const adminCases: Case[] = [
    { name: "CreateApplication: empty name", call: () => admin.admin.createApplication({ name: "" }), code: Code.InvalidArgument, field: "name" },
    { name: "CreateApplication: name too long", call: () => admin.admin.createApplication({ name: "a".repeat(201) }), code: Code.InvalidArgument, field: "name" },
    { name: "CreateApplication: with an environment key", call: () => dev.admin.createApplication({ name: "sneaky" }), code: Code.PermissionDenied },
    { name: "CreateEnvironment: unknown application", call: () => admin.admin.createEnvironment({ applicationId: UNKNOWN, name: "staging" }), code: Code.NotFound, field: "application_id", mentions: [UNKNOWN] },
    { name: "CreateEnvironment: empty name", call: () => admin.admin.createEnvironment({ applicationId: f.appId, name: "" }), code: Code.InvalidArgument, field: "name" },
    { name: "CreateEnvironment: malformed name", call: () => admin.admin.createEnvironment({ applicationId: f.appId, name: "staging area!" }), code: Code.InvalidArgument, field: "name" },
    { name: "CreateEnvironment: name taken", call: () => admin.admin.createEnvironment({ applicationId: f.appId, name: "development" }), code: Code.AlreadyExists, field: "name", mentions: ["development"] },
    { name: "CreateEnvironment: missing application_id", call: () => admin.admin.createEnvironment({ name: "staging" }), code: Code.InvalidArgument, field: "application_id" },
    { name: "DeleteEnvironment: missing id", call: () => admin.admin.deleteEnvironment({}), code: Code.InvalidArgument, field: "id" },
    { name: "DeleteEnvironment: unknown id", call: () => admin.admin.deleteEnvironment({ id: UNKNOWN }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "CreateApiKey: empty name", call: () => admin.admin.createApiKey({ name: "", environmentId: f.devEnvId }), code: Code.InvalidArgument, field: "name" },
    { name: "CreateApiKey: unknown scope", call: () => admin.admin.createApiKey({ name: "k", environmentId: f.devEnvId, scopes: ["check", "superuser"] }), code: Code.InvalidArgument, field: "scopes[1]", mentions: ["superuser"] },
    { name: "CreateApiKey: admin scope on an environment key", call: () => admin.admin.createApiKey({ name: "k", environmentId: f.devEnvId, scopes: ["admin"] }), code: Code.InvalidArgument, field: "scopes[0]" },
    { name: "CreateApiKey: environment scope on an admin key", call: () => admin.admin.createApiKey({ name: "k", scopes: ["check"] }), code: Code.InvalidArgument, field: "scopes[0]" },
    { name: "CreateApiKey: expire_time in the past", call: () => admin.admin.createApiKey({ name: "k", environmentId: f.devEnvId, expireTime: timestampFromMs(T0 - 1) }), code: Code.InvalidArgument, field: "expire_time" },
    { name: "CreateApiKey: expire_time now", call: () => admin.admin.createApiKey({ name: "k", environmentId: f.devEnvId, expireTime: timestampFromMs(T0) }), code: Code.InvalidArgument, field: "expire_time" },
    { name: "CreateApiKey: unknown environment", call: () => admin.admin.createApiKey({ name: "k", environmentId: UNKNOWN }), code: Code.NotFound, field: "environment_id", mentions: [UNKNOWN] },
    { name: "RevokeApiKey: missing id", call: () => admin.admin.revokeApiKey({}), code: Code.InvalidArgument, field: "id" },
    { name: "RevokeApiKey: unknown id", call: () => admin.admin.revokeApiKey({ id: UNKNOWN }), code: Code.NotFound, field: "id", mentions: [UNKNOWN] },
    { name: "RevokeApiKey: the calling key itself", call: () => admin.admin.revokeApiKey({ id: f.adminKeyId }), code: Code.FailedPrecondition, field: "id" },
  ];

  describe.each([
    ["CatalogService", catalogCases],
    ["HierarchyService", hierarchyCases],
    ["IdentityService", identityCases],
    ["AssignmentService", assignmentCases],
    ["AdminService", adminCases],
  ] as const)("%s", (_service, cases) => {
    it.each(cases.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
      try {
        await expectRefused(c.call, c);
      } finally {
        await c.cleanup?.();
      }
    });
  });

  describe("environment keys make no account- or application-wide identity writes: PERMISSION_DENIED, nothing stored", () => {
    // Identity state is account-wide and a membership spans every environment of its application, so
    // these six RPCs need the admin key, whatever the request (well-formed, aimed at a visible identity,
    // or not) and whatever the protocol. The message points at the admin key.
    const denied = { code: Code.PermissionDenied, mentions: ["admin key"] };
    /** the dev key naming its own environment in the canopy-environment header */
    const devInOwnEnv = () => s.clients(s.devKey, { environment: f.devEnvId });
    const envKeyCases: Case[] = [
      // UpdateIdentity
      { name: "UpdateIdentity: identity of the key's application", call: () => dev.identities.updateIdentity({ id: f.bob, displayName: "renamed by an environment key" }), ...denied },
      { name: "UpdateIdentity: new email and external_id", call: () => dev.identities.updateIdentity({ id: f.alice, email: "alice2@example.com", externalId: "ext-alice-2" }), ...denied },
      { name: "UpdateIdentity: identity outside the key's application", call: () => dev.identities.updateIdentity({ id: f.dave, displayName: "x" }), ...denied },
      { name: "UpdateIdentity: empty request (authorization comes first)", call: () => dev.identities.updateIdentity({}), ...denied },
      // ActivateIdentity
      { name: "ActivateIdentity: inactive identity of the key's application", call: () => dev.identities.activateIdentity({ id: f.carol }), ...denied },
      { name: "ActivateIdentity: over gRPC", call: () => grpc.identities.activateIdentity({ id: f.carol }), ...denied },
      // DeactivateIdentity
      { name: "DeactivateIdentity: active identity of the key's application", call: () => dev.identities.deactivateIdentity({ id: f.alice }), ...denied },
      { name: "DeactivateIdentity: identity outside the key's application", call: () => dev.identities.deactivateIdentity({ id: f.dave }), ...denied },
      { name: "DeactivateIdentity: with the key's own canopy-environment header", call: () => devInOwnEnv().identities.deactivateIdentity({ id: f.alice }), ...denied },
      { name: "DeactivateIdentity: over gRPC", call: () => grpc.identities.deactivateIdentity({ id: f.bob }), ...denied },
      // AddAppMembership
      { name: "AddAppMembership: identity outside the application, into the key's application", call: () => dev.identities.addAppMembership({ identityId: f.dave }), ...denied },
      { name: "AddAppMembership: naming the key's application", call: () => dev.identities.addAppMembership({ identityId: f.dave, applicationId: f.appId }), ...denied },
      { name: "AddAppMembership: identity of the key's application into another application", call: () => dev.identities.addAppMembership({ identityId: f.alice, applicationId: f.otherAppId }), ...denied },
      { name: "AddAppMembership: identity outside the application, into another application", call: () => dev.identities.addAppMembership({ identityId: f.dave, applicationId: f.otherAppId }), ...denied },
      // SetAppMembershipStatus
      { name: "SetAppMembershipStatus: INACTIVE in the key's application", call: () => dev.identities.setAppMembershipStatus({ identityId: f.alice, status: MembershipStatus.INACTIVE }), ...denied },
      { name: "SetAppMembershipStatus: naming the key's application", call: () => dev.identities.setAppMembershipStatus({ identityId: f.bob, applicationId: f.appId, status: MembershipStatus.INACTIVE }), ...denied },
      { name: "SetAppMembershipStatus: ACTIVE again (no change) is refused too", call: () => dev.identities.setAppMembershipStatus({ identityId: f.alice, status: MembershipStatus.ACTIVE }), ...denied },
      { name: "SetAppMembershipStatus: over gRPC", call: () => grpc.identities.setAppMembershipStatus({ identityId: f.alice, status: MembershipStatus.INACTIVE }), ...denied },
      // RemoveAppMembership
      { name: "RemoveAppMembership: identity holding assignments", call: () => dev.identities.removeAppMembership({ identityId: f.alice }), ...denied },
      { name: "RemoveAppMembership: naming the key's application", call: () => dev.identities.removeAppMembership({ identityId: f.bob, applicationId: f.appId }), ...denied },
      { name: "RemoveAppMembership: with the key's own canopy-environment header", call: () => devInOwnEnv().identities.removeAppMembership({ identityId: f.bob }), ...denied },
    ];
    it.each(envKeyCases.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
      await expectRefused(c.call, c);
    });

    it("every one of the six RPCs is covered", () => {
      const rpcs = new Set(envKeyCases.map((c) => c.name.split(":")[0]));
      expect([...rpcs].sort()).toEqual(["ActivateIdentity", "AddAppMembership", "DeactivateIdentity", "RemoveAppMembership", "SetAppMembershipStatus", "UpdateIdentity"]);
    });

    it("afterwards the identities and memberships are exactly as the fixture made them", async () => {
      const got = await Promise.all([f.alice, f.bob, f.carol].map(async (id) => (await adminDev.identities.getIdentity({ id })).identity!));
      expect(got.map((i) => [i.email, i.displayName, i.externalId, i.isActive])).toEqual([
        ["alice@example.com", "", "ext-alice", true],
        ["bob@example.com", "", "", true],
        ["carol@example.com", "", "", false],
      ]);
      for (const id of [f.alice, f.bob, f.carol]) {
        const ms = (await admin.identities.listAppMemberships({ identityId: id })).memberships;
        expect(ms.map((m) => [m.applicationId, MembershipStatus[m.status]])).toEqual([[f.appId, "ACTIVE"]]);
      }
      expect((await admin.identities.listAppMemberships({ identityId: f.dave })).memberships).toEqual([]);
      const check = await dev.check.check({ identityId: f.alice, permission: "invoice.read", nodeId: f.teamId });
      expect(check.allowed).toBe(true);
    });
  });

  describe("batch RPCs report bad items per item and write nothing for them", () => {
    it("BatchCreateAssignments atomic: one bad item -> nothing written, the others ABORTED (code 10)", async () => {
      const before = await snapshotDatabase(s);
      const revisionBefore = (await dev.hierarchy.getHierarchySchema({})).revision;
      const res = await dev.assignments.batchCreateAssignments({
        atomic: true,
        items: [
          { identityId: f.bob, roleId: f.viewerId, nodeId: f.teamId },
          { identityId: f.bob, roleId: UNKNOWN, nodeId: f.teamId },
          { identityId: f.bob, roleId: f.editorId, nodeId: f.orgId },
        ],
      });
      expect(await snapshotDatabase(s)).toEqual(before);
      expect(res.results.map((r) => [r.index, r.status?.code, r.status?.field])).toEqual([
        [0, 10, "items[0]"],
        [1, 5, "items[1].role_id"],
        [2, 10, "items[2]"],
      ]);
      expect(res.results[1].status?.message).toContain(UNKNOWN);
      expect(res.results.every((r) => r.assignment === undefined)).toBe(true);
      expect(res.summary).toMatchObject({ total: 3, succeeded: 0, failed: 3 });
      expect(res.revision).toBe(revisionBefore);
      // and nothing is visible to checks either
      const check = await dev.check.check({ identityId: f.bob, permission: "invoice.read", nodeId: f.teamId });
      expect(check.allowed).toBe(false);
    });

    it("BatchCreateAssignments atomic: a malformed timestamp in one item fails only that item's status, nothing written", async () => {
      const before = await snapshotDatabase(s);
      const res = await grpc.assignments.batchCreateAssignments({
        atomic: true,
        items: [
          { identityId: f.bob, roleId: f.viewerId, nodeId: f.teamId },
          { identityId: f.bob, roleId: f.editorId, nodeId: f.teamId, effectiveTo: { seconds: 1n, nanos: -5 } },
        ],
      });
      expect(await snapshotDatabase(s)).toEqual(before);
      expect(res.results.map((r) => [r.status?.code, r.status?.field])).toEqual([
        [10, "items[0]"],
        [3, "items[1].effective_to"],
      ]);
    });

    it("BatchCreateAssignments atomic: a bad window and an in-batch duplicate are both reported", async () => {
      const before = await snapshotDatabase(s);
      const res = await dev.assignments.batchCreateAssignments({
        atomic: true,
        items: [
          { identityId: f.bob, roleId: f.viewerId, nodeId: f.teamId },
          { identityId: f.bob, roleId: f.viewerId, nodeId: f.teamId, effectiveFrom: timestampFromMs(T0 + HOUR) },
          { identityId: f.bob, roleId: f.viewerId, nodeId: f.orgId, effectiveFrom: timestampFromMs(T0 + HOUR), effectiveTo: timestampFromMs(T0) },
        ],
      });
      expect(await snapshotDatabase(s)).toEqual(before);
      expect(res.results.map((r) => [r.status?.code, r.status?.reason])).toEqual([
        [10, "batch.aborted"],
        [6, "rbac.assignment_conflict"],
        [3, "rbac.invalid_window"],
      ]);
      expect(res.results[2].status?.field).toBe("items[2].effective_to");
    });

    it("BatchDeleteAssignments: unknown ids are NOT_FOUND per item, nothing deleted, revision unchanged", async () => {
      const before = await snapshotDatabase(s);
      const revisionBefore = (await dev.hierarchy.getHierarchySchema({})).revision;
      const res = await dev.assignments.batchDeleteAssignments({ ids: [UNKNOWN, UNKNOWN2] });
      expect(await snapshotDatabase(s)).toEqual(before);
      expect(res.results.map((r) => [r.index, r.status?.code, r.status?.field])).toEqual([
        [0, 5, "ids[0]"],
        [1, 5, "ids[1]"],
      ]);
      expect(res.results[0].status?.message).toContain(UNKNOWN);
      expect(res.summary).toMatchObject({ total: 2, succeeded: 0, failed: 2 });
      expect(res.revision).toBe(revisionBefore);
    });

    it("BatchDeleteAssignments: an empty id is INVALID_ARGUMENT for its item only; an unknown id NOT_FOUND; nothing deleted", async () => {
      const before = await snapshotDatabase(s);
      const revisionBefore = (await dev.hierarchy.getHierarchySchema({})).revision;
      const res = await dev.assignments.batchDeleteAssignments({ ids: [UNKNOWN, ""] });
      expect(await snapshotDatabase(s)).toEqual(before);
      expect(res.results.map((r) => [r.index, r.status?.code, r.status?.field])).toEqual([
        [0, 5, "ids[0]"],
        [1, 3, "ids[1]"],
      ]);
      expect(res.results[0].status?.message).toContain(UNKNOWN);
      expect(res.summary).toMatchObject({ total: 2, succeeded: 0, failed: 2 });
      expect(res.revision).toBe(revisionBefore);
    });

    it("BatchDeleteAssignments: a well-formed id next to an empty one is deleted; the empty one is INVALID_ARGUMENT", async () => {
      // an assignment of this test's own (bob, editor, on the empty org), so that no fixture data is deleted
      const created = await dev.assignments.createAssignment({ assignment: { identityId: f.bob, roleId: f.editorId, nodeId: f.leafId } });
      const id = created.assignment!.id;
      try {
        expect((await dev.check.check({ identityId: f.bob, permission: "invoice.approve", nodeId: f.leafId })).allowed).toBe(true);
        const before = await snapshotDatabase(s);
        expect(before.assignments.map((r) => r.id)).toContain(id);

        const res = await dev.assignments.batchDeleteAssignments({ ids: [id, ""] });
        expect(res.results.map((r) => [r.index, r.status?.code, r.status?.field ?? ""])).toEqual([
          [0, 0, ""],
          [1, 3, "ids[1]"],
        ]);
        expect(res.summary).toMatchObject({ total: 2, succeeded: 1, failed: 1 });
        expect(res.revision).toBeGreaterThan(created.revision);

        const after = await snapshotDatabase(s);
        // exactly that assignment is gone; every other assignment row is untouched
        expect(after.assignments).toEqual(before.assignments.filter((r) => r.id !== id));
        expect(after.identities).toEqual(before.identities);
        expect(after.roles).toEqual(before.roles);
        assertError(await failure(() => dev.assignments.getAssignment({ id })), { code: Code.NotFound, mentions: [id] });
        const check = await dev.check.check({ identityId: f.bob, permission: "invoice.approve", nodeId: f.leafId });
        expect({ allowed: check.allowed, reason: DenialReason[check.denialReason], revision: check.revision }).toEqual({
          allowed: false,
          reason: "NO_ASSIGNMENT",
          revision: res.revision,
        });
      } finally {
        // if the delete wrongly did nothing, do not leave bob with a grant for the tests that follow
        await dev.assignments.deleteAssignment({ id }).catch(() => undefined);
      }
    });

    it("BatchCreateIdentities: items that all fail write nothing", async () => {
      const before = await snapshotDatabase(s);
      const res = await dev.identities.batchCreateIdentities({
        identities: [{ email: "" }, { email: "Alice@example.com" }, { email: "x@example.com", displayName: "n".repeat(201) }],
      });
      expect(res.results.map((r) => [r.index, r.status?.code, r.status?.field])).toEqual([
        [0, 3, "identities[0].email"],
        [1, 6, "identities[1].email"],
        [2, 3, "identities[2].display_name"],
      ]);
      expect(res.summary).toMatchObject({ total: 3, succeeded: 0, failed: 3 });
      const after = await snapshotDatabase(s);
      expect(after.identities).toEqual(before.identities);
      expect(after.app_memberships).toEqual(before.app_memberships);
      // nothing was written, so nothing should have moved, revisions included
      expect(after).toEqual(before);
    });
  });

  describe("malformed reads (paging) are INVALID_ARGUMENT naming the field", () => {
    const pagers: Array<[string, (size: number, token: string) => Promise<unknown>]> = [
      ["ListPermissions", (pageSize, pageToken) => dev.catalog.listPermissions({ pageSize, pageToken })],
      ["ListRoles", (pageSize, pageToken) => dev.catalog.listRoles({ pageSize, pageToken })],
      ["ListChildren", (pageSize, pageToken) => dev.hierarchy.listChildren({ id: f.rootId, pageSize, pageToken })],
      ["GetSubtree", (pageSize, pageToken) => dev.hierarchy.getSubtree({ id: f.rootId, pageSize, pageToken })],
      ["ListIdentities", (pageSize, pageToken) => dev.identities.listIdentities({ pageSize, pageToken })],
      ["ListAssignments", (pageSize, pageToken) => dev.assignments.listAssignments({ pageSize, pageToken })],
      ["ListApplications", (pageSize, pageToken) => admin.admin.listApplications({ pageSize, pageToken })],
    ];
    it.each(pagers)("%s: negative page_size, page_size above the maximum, garbage page_token", async (_name, list) => {
      await expectRefused(() => list(-1, ""), { code: Code.InvalidArgument, field: "page_size" });
      await expectRefused(() => list(LIMITS.maxPageSize + 1, ""), { code: Code.InvalidArgument, field: "page_size" });
      await expectRefused(() => list(0, "not a token!"), { code: Code.InvalidArgument, field: "page_token" });
      await expectRefused(() => list(0, Buffer.from("something else").toString("base64url")), { code: Code.InvalidArgument, field: "page_token" });
    });

    it("ListAssignments: unknown state value", async () => {
      await expectRefused(() => grpc.assignments.listAssignments({ state: 9 as AssignmentState }), { code: Code.InvalidArgument, field: "state" });
    });

    it("GetSubtree / GetAncestors / ListChildren: unknown node is NOT_FOUND naming it", async () => {
      await expectRefused(() => dev.hierarchy.getSubtree({ id: UNKNOWN }), { code: Code.NotFound, field: "id", mentions: [UNKNOWN] });
      await expectRefused(() => dev.hierarchy.getAncestors({ id: UNKNOWN }), { code: Code.NotFound, field: "id", mentions: [UNKNOWN] });
      await expectRefused(() => dev.hierarchy.listChildren({ id: UNKNOWN }), { code: Code.NotFound, field: "id", mentions: [UNKNOWN] });
    });
  });

  describe("Check and CheckBulk", () => {
    const checkCases: Case[] = [
      { name: "Check: missing identity_id", call: () => dev.check.check({ permission: "invoice.read", nodeId: f.orgId }), code: Code.InvalidArgument, field: "identity_id" },
      { name: "Check: missing permission", call: () => dev.check.check({ identityId: f.alice, nodeId: f.orgId }), code: Code.InvalidArgument, field: "permission" },
      { name: "Check: node_id with APP_WIDE", call: () => dev.check.check({ identityId: f.alice, permission: "invoice.read", scope: CheckScope.APP_WIDE, nodeId: f.orgId }), code: Code.InvalidArgument, field: "node_id" },
      { name: "Check: missing node_id in hierarchy mode", call: () => dev.check.check({ identityId: f.alice, permission: "invoice.read" }), code: Code.InvalidArgument, field: "node_id" },
      { name: "Check: missing node_id, explicit NODE scope", call: () => dev.check.check({ identityId: f.alice, permission: "invoice.read", scope: CheckScope.NODE }), code: Code.InvalidArgument, field: "node_id" },
      { name: "Check: identity_id too long", call: () => dev.check.check({ identityId: TOO_LONG_ID, permission: "invoice.read", nodeId: f.orgId }), code: Code.InvalidArgument, field: "identity_id" },
      { name: "Check: permission too long", call: () => dev.check.check({ identityId: f.alice, permission: `a.${"b".repeat(200)}`, nodeId: f.orgId }), code: Code.InvalidArgument, field: "permission" },
      { name: "Check: `at` out of the Timestamp range", call: () => grpc.check.check({ identityId: f.alice, permission: "invoice.read", nodeId: f.orgId, at: { seconds: 253402300800n, nanos: 0 } }), code: Code.InvalidArgument, field: "at" },
      { name: "Check: `at` with negative nanos", call: () => grpc.check.check({ identityId: f.alice, permission: "invoice.read", nodeId: f.orgId, at: { seconds: 1n, nanos: -1 } }), code: Code.InvalidArgument, field: "at" },
      { name: "Check: unknown scope value", call: () => grpc.check.check({ identityId: f.alice, permission: "invoice.read", nodeId: f.orgId, scope: 9 as CheckScope }), code: Code.InvalidArgument, field: "scope" },
      { name: "Check: negative min_revision", call: () => dev.check.check({ identityId: f.alice, permission: "invoice.read", nodeId: f.orgId, minRevision: -1n }), code: Code.InvalidArgument, field: "min_revision" },
      { name: "CheckBulk: over the limit", call: () => dev.check.checkBulk({ items: Array.from({ length: 4 }, () => ({ identityId: f.alice, permission: "invoice.read", nodeId: f.orgId })) }), code: Code.ResourceExhausted, field: "items" },
      { name: "CheckBulk: one item without permission", call: () => dev.check.checkBulk({ items: [{ identityId: f.alice, permission: "invoice.read", nodeId: f.orgId }, { identityId: f.alice, nodeId: f.orgId }] }), code: Code.InvalidArgument, field: "items[1].permission" },
      { name: "CheckBulk: one item with node_id and APP_WIDE", call: () => dev.check.checkBulk({ items: [{ identityId: f.alice, permission: "invoice.read", scope: CheckScope.APP_WIDE, nodeId: f.orgId }] }), code: Code.InvalidArgument, field: "items[0].node_id" },
      { name: "CheckBulk: one item without node_id in hierarchy mode", call: () => dev.check.checkBulk({ items: [{ identityId: f.alice, permission: "invoice.read", nodeId: f.orgId }, { identityId: f.alice, permission: "invoice.read", nodeId: f.orgId }, { identityId: f.alice, permission: "invoice.read" }] }), code: Code.InvalidArgument, field: "items[2].node_id" },
      { name: "CheckBulk: one item without identity_id", call: () => dev.check.checkBulk({ items: [{ permission: "invoice.read", nodeId: f.orgId }] }), code: Code.InvalidArgument, field: "items[0].identity_id" },
      { name: "CheckBulk: invalid `at`", call: () => grpc.check.checkBulk({ items: [{ identityId: f.alice, permission: "invoice.read", nodeId: f.orgId }], at: { seconds: -62135596801n, nanos: 0 } }), code: Code.InvalidArgument, field: "at" },
    ];
    it.each(checkCases.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
      await expectRefused(c.call, c);
    });

    it("sanity: the fixture grants alice invoice.read at the team through the org", async () => {
      const r = await dev.check.check({ identityId: f.alice, permission: "invoice.read", nodeId: f.teamId });
      expect(r.allowed).toBe(true);
      expect(r.denialReason).toBe(DenialReason.UNSPECIFIED);
    });

    const denials: Array<[string, () => { identityId: string; permission: string; nodeId?: string; scope?: CheckScope }, DenialReason]> = [
      ["unknown identity", () => ({ identityId: UNKNOWN, permission: "invoice.read", nodeId: f.orgId }), DenialReason.UNKNOWN_IDENTITY],
      ["unknown identity and unknown permission and node (first reason wins)", () => ({ identityId: UNKNOWN, permission: "nope.nope", nodeId: UNKNOWN2 }), DenialReason.UNKNOWN_IDENTITY],
      ["unknown permission", () => ({ identityId: f.alice, permission: "ledger.read", nodeId: f.orgId }), DenialReason.UNKNOWN_PERMISSION],
      ["permission that is not even a valid key", () => ({ identityId: f.alice, permission: "Invoice.Read", nodeId: f.orgId }), DenialReason.UNKNOWN_PERMISSION],
      ["unknown node", () => ({ identityId: f.alice, permission: "invoice.read", nodeId: UNKNOWN }), DenialReason.UNKNOWN_NODE],
      ["identity of no membership (invisible to an environment key)", () => ({ identityId: f.dave, permission: "invoice.read", nodeId: f.orgId }), DenialReason.UNKNOWN_IDENTITY],
      ["inactive identity", () => ({ identityId: f.carol, permission: "invoice.read", nodeId: f.orgId }), DenialReason.IDENTITY_INACTIVE],
      ["identity without assignments", () => ({ identityId: f.bob, permission: "invoice.read", nodeId: f.teamId }), DenialReason.NO_ASSIGNMENT],
      ["assignment below the checked node only", () => ({ identityId: f.alice, permission: "invoice.read", nodeId: f.rootId }), DenialReason.NO_ASSIGNMENT],
      ["assignment in scope without the permission", () => ({ identityId: f.alice, permission: "invoice.write", nodeId: f.teamId }), DenialReason.PERMISSION_NOT_GRANTED],
      ["APP_WIDE: unknown identity", () => ({ identityId: UNKNOWN, permission: "invoice.read", scope: CheckScope.APP_WIDE }), DenialReason.UNKNOWN_IDENTITY],
      ["APP_WIDE: unknown permission", () => ({ identityId: f.alice, permission: "ledger.read", scope: CheckScope.APP_WIDE }), DenialReason.UNKNOWN_PERMISSION],
      ["APP_WIDE: identity without assignments", () => ({ identityId: f.bob, permission: "invoice.read", scope: CheckScope.APP_WIDE }), DenialReason.NO_ASSIGNMENT],
    ];
    it("well-formed Check by the admin key in the environment, identity of no membership -> NO_MEMBERSHIP", async () => {
      const r = await s.clients(s.adminKey, { environment: f.devEnvId }).check.check({ identityId: f.dave, permission: "invoice.read", nodeId: f.orgId });
      expect({ allowed: r.allowed, reason: DenialReason[r.denialReason] }).toEqual({ allowed: false, reason: "NO_MEMBERSHIP" });
    });

    it.each(denials)("well-formed Check, %s -> allowed=false with the reason, no error", async (_name, req, reason) => {
      const q = req();
      const r = await dev.check.check(q);
      expect({ allowed: r.allowed, reason: DenialReason[r.denialReason], roles: r.grantingRoles.length }).toEqual({
        allowed: false,
        reason: DenialReason[reason],
        roles: 0,
      });
      expect(r.identityId).toBe(q.identityId);
      expect(r.permission).toBe(q.permission);
    });

    it("well-formed CheckBulk with unknown ids fails closed per item, in request order", async () => {
      const r = await dev.check.checkBulk({
        items: [
          { identityId: UNKNOWN, permission: "invoice.read", nodeId: f.orgId },
          { identityId: f.alice, permission: "invoice.read", nodeId: UNKNOWN },
          { identityId: f.alice, permission: "invoice.read", nodeId: f.teamId },
        ],
      });
      expect(r.results.map((x) => [x.allowed, DenialReason[x.denialReason]])).toEqual([
        [false, "UNKNOWN_IDENTITY"],
        [false, "UNKNOWN_NODE"],
        [true, "UNSPECIFIED"],
      ]);
    });
  });
});
