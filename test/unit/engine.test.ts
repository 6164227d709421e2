import { describe, expect, it } from "vitest";
import {
  createEngine,
  type AssignmentRecord,
  type CheckQuery,
  type CheckResult,
  type DenialReason,
  type Engine,
} from "../../src/engine/engine.js";
import {
  ACCOUNT,
  APP,
  AT,
  DAY,
  ENV,
  FAR,
  IDENTITIES,
  NODES,
  OTHER_ACCOUNT,
  REVISION,
  ROLE_NAME,
  ROLES,
  ROOT,
  T0,
  fixtureSnapshot,
  loadFixture,
} from "../fixtures/canopy-tree.js";

const { alice, bob, carol, dave, eve, frank } = IDENTITIES;
const { viewer, editor, billing, auditor, nobody } = ROLES;

/** Default window of a fixture assignment: [T0, T0 + 30 days). */
const FROM = T0;
const TO = T0 + 30 * DAY;

/** An assignment of alice, active over [FROM, TO) unless told otherwise. */
function asg(
  id: string,
  role: { id: string },
  nodeId: string,
  opts: { identityId?: string; from?: number; to?: number | null } = {},
): AssignmentRecord {
  return {
    id,
    identityId: opts.identityId ?? alice.id,
    roleId: role.id,
    nodeId,
    effectiveFrom: opts.from ?? FROM,
    effectiveTo: opts.to === undefined ? TO : opts.to,
  };
}
/** An assignment that ended before AT. */
const expired = (id: string, role: { id: string }, nodeId: string, identityId?: string) =>
  asg(id, role, nodeId, { identityId, from: T0 - 20 * DAY, to: T0 - 10 * DAY });
/** An assignment that starts after AT. */
const scheduled = (id: string, role: { id: string }, nodeId: string, identityId?: string) =>
  asg(id, role, nodeId, { identityId, from: AT + 5 * DAY, to: null });

function query(q: Partial<CheckQuery> = {}): CheckQuery {
  return { identityId: alice.id, permission: "doc.read", scope: "node", nodeId: "team-alpha", at: AT, explain: true, ...q };
}

function fixtureEngine(assignments: AssignmentRecord[] = []): Engine {
  const engine = createEngine();
  loadFixture(engine, assignments);
  return engine;
}

interface CheckCase {
  name: string;
  assignments?: AssignmentRecord[];
  /** applied after the fixture is loaded */
  tweak?: (engine: Engine) => void;
  query?: Partial<CheckQuery>;
  allowed: boolean;
  reason: DenialReason | null;
  /** allowed only: role ids in the expected (name-sorted) order */
  roles?: string[];
  effectiveNodeId?: string;
  /** allowed only: expected explanation, compared sorted by assignment id */
  explain?: Array<{ assignmentId: string; nodeId: string; inherited: boolean }>;
  /** role names changed by the tweak */
  roleNames?: Record<string, string>;
  revision?: number;
}

const allowedAt = (nodeId: string, roles: string[], explain: CheckCase["explain"]) => ({
  allowed: true,
  reason: null,
  roles,
  effectiveNodeId: nodeId,
  explain,
});

const CASES: CheckCase[] = [
  // --- direct and inherited grants -------------------------------------------------------------------
  {
    name: "direct grant on the checked node",
    assignments: [asg("a1", editor, "team-alpha")],
    query: { permission: "doc.write" },
    ...allowedAt("team-alpha", [editor.id], [{ assignmentId: "a1", nodeId: "team-alpha", inherited: false }]),
  },
  {
    name: "grant on the parent office cascades to the team",
    assignments: [asg("a1", viewer, "office-boston")],
    ...allowedAt("team-alpha", [viewer.id], [{ assignmentId: "a1", nodeId: "office-boston", inherited: true }]),
  },
  {
    name: "grant on the region cascades to an office",
    assignments: [asg("a1", viewer, "region-east")],
    query: { nodeId: "office-nyc" },
    ...allowedAt("office-nyc", [viewer.id], [{ assignmentId: "a1", nodeId: "region-east", inherited: true }]),
  },
  {
    name: "grant on the root cascades three levels down",
    assignments: [asg("a1", viewer, ROOT)],
    query: { nodeId: "team-delta" },
    ...allowedAt("team-delta", [viewer.id], [{ assignmentId: "a1", nodeId: ROOT, inherited: true }]),
  },
  {
    name: "grant on a sibling team does not apply",
    assignments: [asg("a1", editor, "team-beta")],
    allowed: false,
    reason: "NO_ASSIGNMENT",
  },
  {
    name: "grant on a sibling office (cousin subtree) does not apply",
    assignments: [asg("a1", editor, "office-nyc")],
    allowed: false,
    reason: "NO_ASSIGNMENT",
  },
  {
    name: "grant on the other region does not apply",
    assignments: [asg("a1", editor, "region-west")],
    allowed: false,
    reason: "NO_ASSIGNMENT",
  },
  {
    name: "grant on a descendant does not apply upward to its office",
    assignments: [asg("a1", editor, "team-alpha")],
    query: { nodeId: "office-boston" },
    allowed: false,
    reason: "NO_ASSIGNMENT",
  },
  {
    name: "grant on a descendant does not apply upward to the root",
    assignments: [asg("a1", editor, "team-alpha")],
    query: { nodeId: ROOT },
    allowed: false,
    reason: "NO_ASSIGNMENT",
  },
  {
    name: "another identity's grant on the node does not count",
    assignments: [asg("a1", editor, "team-alpha", { identityId: frank.id })],
    allowed: false,
    reason: "NO_ASSIGNMENT",
  },

  // --- half-open windows [from, to) ------------------------------------------------------------------
  {
    name: "window: at == effective_from is allowed",
    assignments: [asg("a1", editor, "office-boston")],
    query: { permission: "doc.write", at: FROM },
    ...allowedAt("team-alpha", [editor.id], [{ assignmentId: "a1", nodeId: "office-boston", inherited: true }]),
  },
  {
    name: "window: at == effective_to - 1 is allowed",
    assignments: [asg("a1", editor, "office-boston")],
    query: { permission: "doc.write", at: TO - 1 },
    ...allowedAt("team-alpha", [editor.id], [{ assignmentId: "a1", nodeId: "office-boston", inherited: true }]),
  },
  {
    name: "window: at == effective_to is ONLY_EXPIRED",
    assignments: [asg("a1", editor, "office-boston")],
    query: { permission: "doc.write", at: TO },
    allowed: false,
    reason: "ONLY_EXPIRED",
  },
  {
    name: "window: at == effective_from - 1 is ONLY_SCHEDULED",
    assignments: [asg("a1", editor, "office-boston")],
    query: { permission: "doc.write", at: FROM - 1 },
    allowed: false,
    reason: "ONLY_SCHEDULED",
  },
  {
    name: "window: long after effective_to is ONLY_EXPIRED",
    assignments: [asg("a1", editor, "office-boston")],
    query: { permission: "doc.write", at: TO + 365 * DAY },
    allowed: false,
    reason: "ONLY_EXPIRED",
  },
  {
    name: "window: effective_to null never expires",
    assignments: [asg("a1", editor, "office-boston", { to: null })],
    query: { permission: "doc.write", at: FAR },
    ...allowedAt("team-alpha", [editor.id], [{ assignmentId: "a1", nodeId: "office-boston", inherited: true }]),
  },
  {
    name: "window: effective_to null is still ONLY_SCHEDULED before effective_from",
    assignments: [asg("a1", editor, "office-boston", { to: null })],
    query: { permission: "doc.write", at: FROM - 1 },
    allowed: false,
    reason: "ONLY_SCHEDULED",
  },
  {
    name: "ONLY_SCHEDULED wins over ONLY_EXPIRED (scheduled on root, expired on the node)",
    assignments: [expired("a1", editor, "team-alpha"), scheduled("a2", editor, ROOT)],
    allowed: false,
    reason: "ONLY_SCHEDULED",
  },
  {
    name: "ONLY_SCHEDULED wins over ONLY_EXPIRED (expired listed last)",
    assignments: [scheduled("a1", viewer, "team-alpha"), expired("a2", editor, "region-east")],
    allowed: false,
    reason: "ONLY_SCHEDULED",
  },
  {
    name: "an active grant beats expired and scheduled ones, which are left out of the explanation",
    assignments: [expired("a1", editor, "team-alpha"), asg("a2", viewer, "office-boston"), scheduled("a3", auditor, ROOT)],
    ...allowedAt("team-alpha", [viewer.id], [{ assignmentId: "a2", nodeId: "office-boston", inherited: true }]),
  },

  // --- PERMISSION_NOT_GRANTED ------------------------------------------------------------------------
  {
    name: "PERMISSION_NOT_GRANTED: direct role lacks the permission",
    assignments: [asg("a1", viewer, "team-alpha")],
    query: { permission: "doc.write" },
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
  },
  {
    name: "PERMISSION_NOT_GRANTED: inherited role lacks the permission",
    assignments: [asg("a1", viewer, ROOT)],
    query: { permission: "doc.write" },
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
  },
  {
    name: "PERMISSION_NOT_GRANTED whatever the window: scheduled role lacking it",
    assignments: [scheduled("a1", viewer, "team-alpha")],
    query: { permission: "doc.write" },
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
  },
  {
    name: "PERMISSION_NOT_GRANTED whatever the window: expired role lacking it",
    assignments: [expired("a1", viewer, "team-alpha")],
    query: { permission: "doc.write" },
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
  },
  {
    name: "PERMISSION_NOT_GRANTED: empty role",
    assignments: [asg("a1", nobody, "team-alpha")],
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
  },
  {
    name: "PERMISSION_NOT_GRANTED: permission in the catalog but in no role",
    assignments: [asg("a1", editor, ROOT), asg("a2", billing, ROOT)],
    query: { permission: "audit.view" },
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
  },
  {
    name: "PERMISSION_NOT_GRANTED: an out-of-scope grant does not change it",
    assignments: [asg("a1", viewer, "team-alpha"), asg("a2", editor, "team-beta")],
    query: { permission: "doc.write" },
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
  },
  {
    name: "PERMISSION_NOT_GRANTED: the assignment's role was removed",
    assignments: [asg("a1", editor, "team-alpha")],
    tweak: (e) => e.removeRole(ENV, editor.id),
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
  },
  {
    name: "ONLY_SCHEDULED: a scheduled role with the permission beats an active role without it",
    assignments: [asg("a1", viewer, "team-alpha"), scheduled("a2", editor, "office-boston")],
    query: { permission: "doc.write" },
    allowed: false,
    reason: "ONLY_SCHEDULED",
  },
  {
    name: "ONLY_EXPIRED: an expired role with the permission beats an active role without it",
    assignments: [asg("a1", viewer, "team-alpha"), expired("a2", editor, "office-boston")],
    query: { permission: "doc.write" },
    allowed: false,
    reason: "ONLY_EXPIRED",
  },

  // --- NO_ASSIGNMENT and unknown ids -----------------------------------------------------------------
  { name: "NO_ASSIGNMENT: no assignments at all", allowed: false, reason: "NO_ASSIGNMENT" },
  {
    name: "UNKNOWN_IDENTITY: id never registered",
    assignments: [asg("a1", editor, ROOT, { identityId: "id-ghost" })],
    query: { identityId: "id-ghost" },
    allowed: false,
    reason: "UNKNOWN_IDENTITY",
  },
  {
    name: "UNKNOWN_IDENTITY: identity of another account, even with a grant and a membership",
    assignments: [asg("a1", editor, ROOT, { identityId: eve.id })],
    query: { identityId: eve.id },
    allowed: false,
    reason: "UNKNOWN_IDENTITY",
  },
  {
    name: "UNKNOWN_IDENTITY: identity removed",
    assignments: [asg("a1", editor, ROOT)],
    tweak: (e) => e.removeIdentity(alice.id),
    allowed: false,
    reason: "UNKNOWN_IDENTITY",
  },
  {
    name: "UNKNOWN_IDENTITY: identity moved to another account",
    assignments: [asg("a1", editor, ROOT)],
    tweak: (e) => e.setIdentity(alice.id, OTHER_ACCOUNT, true),
    allowed: false,
    reason: "UNKNOWN_IDENTITY",
  },
  {
    name: "UNKNOWN_IDENTITY beats unknown permission and unknown node",
    query: { identityId: "id-ghost", permission: "nope.nope", nodeId: "no-such-node" },
    allowed: false,
    reason: "UNKNOWN_IDENTITY",
  },
  {
    name: "UNKNOWN_PERMISSION: key not in the catalog",
    assignments: [asg("a1", editor, ROOT)],
    query: { permission: "doc.delete" },
    allowed: false,
    reason: "UNKNOWN_PERMISSION",
  },
  {
    name: "UNKNOWN_PERMISSION: keys are case-sensitive",
    assignments: [asg("a1", editor, ROOT)],
    query: { permission: "DOC.READ" },
    allowed: false,
    reason: "UNKNOWN_PERMISSION",
  },
  {
    name: "UNKNOWN_PERMISSION beats unknown node and inactive identity",
    query: { identityId: bob.id, permission: "doc.delete", nodeId: "no-such-node" },
    allowed: false,
    reason: "UNKNOWN_PERMISSION",
  },
  {
    name: "UNKNOWN_NODE: node not in the tree",
    assignments: [asg("a1", editor, ROOT)],
    query: { nodeId: "team-omega" },
    allowed: false,
    reason: "UNKNOWN_NODE",
  },
  {
    name: "UNKNOWN_NODE beats inactive identity and missing membership",
    query: { identityId: bob.id, nodeId: "team-omega" },
    tweak: (e) => e.setMembership(APP, bob.id, null),
    allowed: false,
    reason: "UNKNOWN_NODE",
  },

  // --- the dual gate: identity and membership ----------------------------------------------------------
  {
    name: "IDENTITY_INACTIVE: an active direct grant does not help",
    assignments: [asg("a1", editor, "team-alpha", { identityId: bob.id })],
    query: { identityId: bob.id },
    allowed: false,
    reason: "IDENTITY_INACTIVE",
  },
  {
    name: "IDENTITY_INACTIVE beats NO_MEMBERSHIP",
    assignments: [asg("a1", editor, ROOT, { identityId: bob.id })],
    tweak: (e) => e.setMembership(APP, bob.id, null),
    query: { identityId: bob.id },
    allowed: false,
    reason: "IDENTITY_INACTIVE",
  },
  {
    name: "IDENTITY_INACTIVE in app_wide scope",
    assignments: [asg("a1", editor, ROOT, { identityId: bob.id })],
    query: { identityId: bob.id, scope: "app_wide", nodeId: "" },
    allowed: false,
    reason: "IDENTITY_INACTIVE",
  },
  {
    name: "IDENTITY_INACTIVE after deactivating an identity that held a grant",
    assignments: [asg("a1", editor, ROOT)],
    tweak: (e) => e.setIdentity(alice.id, ACCOUNT, false),
    allowed: false,
    reason: "IDENTITY_INACTIVE",
  },
  {
    name: "reactivating an identity grants again",
    assignments: [asg("a1", editor, ROOT, { identityId: bob.id })],
    tweak: (e) => e.setIdentity(bob.id, ACCOUNT, true),
    query: { identityId: bob.id },
    ...allowedAt("team-alpha", [editor.id], [{ assignmentId: "a1", nodeId: ROOT, inherited: true }]),
  },
  {
    name: "NO_MEMBERSHIP: an active grant does not help (membership only in another application)",
    assignments: [asg("a1", editor, "team-alpha", { identityId: dave.id })],
    query: { identityId: dave.id },
    allowed: false,
    reason: "NO_MEMBERSHIP",
  },
  {
    name: "NO_MEMBERSHIP: membership removed",
    assignments: [asg("a1", editor, ROOT)],
    tweak: (e) => e.setMembership(APP, alice.id, null),
    allowed: false,
    reason: "NO_MEMBERSHIP",
  },
  {
    name: "MEMBERSHIP_INACTIVE: an active grant does not help",
    assignments: [asg("a1", editor, "team-alpha", { identityId: carol.id })],
    query: { identityId: carol.id },
    allowed: false,
    reason: "MEMBERSHIP_INACTIVE",
  },
  {
    name: "MEMBERSHIP_INACTIVE in app_wide scope",
    assignments: [asg("a1", editor, ROOT, { identityId: carol.id })],
    query: { identityId: carol.id, scope: "app_wide", nodeId: "" },
    allowed: false,
    reason: "MEMBERSHIP_INACTIVE",
  },
  {
    name: "MEMBERSHIP_INACTIVE beats NO_ASSIGNMENT",
    query: { identityId: carol.id },
    allowed: false,
    reason: "MEMBERSHIP_INACTIVE",
  },
  {
    name: "MEMBERSHIP_INACTIVE after deactivating a membership",
    assignments: [asg("a1", editor, ROOT)],
    tweak: (e) => e.setMembership(APP, alice.id, "inactive"),
    allowed: false,
    reason: "MEMBERSHIP_INACTIVE",
  },
  {
    name: "reactivating a membership grants again",
    assignments: [asg("a1", editor, ROOT, { identityId: carol.id })],
    tweak: (e) => e.setMembership(APP, carol.id, "active"),
    query: { identityId: carol.id },
    ...allowedAt("team-alpha", [editor.id], [{ assignmentId: "a1", nodeId: ROOT, inherited: true }]),
  },

  // --- app_wide scope ----------------------------------------------------------------------------------
  {
    name: "app_wide: a grant on a leaf anywhere allows",
    assignments: [asg("a1", editor, "team-delta")],
    query: { scope: "app_wide", nodeId: "", permission: "doc.write" },
    ...allowedAt("team-delta", [editor.id], [{ assignmentId: "a1", nodeId: "team-delta", inherited: false }]),
  },
  {
    name: "app_wide: effective node is the granting node closest to the root",
    assignments: [asg("a1", editor, "team-delta"), asg("a2", editor, "region-east"), asg("a3", viewer, ROOT), asg("a4", editor, "office-nyc")],
    query: { scope: "app_wide", nodeId: "", permission: "doc.write" },
    ...allowedAt("region-east", [editor.id], [
      { assignmentId: "a1", nodeId: "team-delta", inherited: false },
      { assignmentId: "a2", nodeId: "region-east", inherited: false },
      { assignmentId: "a4", nodeId: "office-nyc", inherited: false },
    ]),
  },
  {
    name: "app_wide: an expired grant nearer the root is not the effective node",
    assignments: [expired("a1", editor, ROOT), asg("a2", editor, "office-sf")],
    query: { scope: "app_wide", nodeId: "", permission: "doc.write" },
    ...allowedAt("office-sf", [editor.id], [{ assignmentId: "a2", nodeId: "office-sf", inherited: false }]),
  },
  {
    name: "app_wide: a grant on the root is the effective node",
    assignments: [asg("a1", viewer, "team-gamma"), asg("a2", auditor, ROOT)],
    query: { scope: "app_wide", nodeId: "" },
    ...allowedAt(ROOT, [auditor.id, viewer.id], [
      { assignmentId: "a1", nodeId: "team-gamma", inherited: false },
      { assignmentId: "a2", nodeId: ROOT, inherited: false },
    ]),
  },
  {
    name: "app_wide: NO_ASSIGNMENT with an empty effective node",
    query: { scope: "app_wide", nodeId: "" },
    allowed: false,
    reason: "NO_ASSIGNMENT",
    effectiveNodeId: "",
  },
  {
    name: "app_wide: ONLY_SCHEDULED",
    assignments: [scheduled("a1", editor, "team-beta")],
    query: { scope: "app_wide", nodeId: "" },
    allowed: false,
    reason: "ONLY_SCHEDULED",
    effectiveNodeId: "",
  },
  {
    name: "app_wide: ONLY_EXPIRED",
    assignments: [expired("a1", editor, "team-beta")],
    query: { scope: "app_wide", nodeId: "" },
    allowed: false,
    reason: "ONLY_EXPIRED",
    effectiveNodeId: "",
  },
  {
    name: "app_wide: PERMISSION_NOT_GRANTED",
    assignments: [asg("a1", viewer, "team-beta")],
    query: { scope: "app_wide", nodeId: "", permission: "doc.write" },
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
    effectiveNodeId: "",
  },
  {
    name: "app_wide: an assignment on a removed node does not count",
    assignments: [asg("a1", editor, "team-gamma")],
    tweak: (e) => e.applyNodes(ENV, { remove: ["team-gamma"] }),
    query: { scope: "app_wide", nodeId: "" },
    allowed: false,
    reason: "NO_ASSIGNMENT",
    effectiveNodeId: "",
  },

  // --- node scope with nodeId "" = root ---------------------------------------------------------------
  {
    name: 'node scope with nodeId "" checks the root',
    assignments: [asg("a1", viewer, ROOT)],
    query: { nodeId: "" },
    ...allowedAt(ROOT, [viewer.id], [{ assignmentId: "a1", nodeId: ROOT, inherited: false }]),
  },
  {
    name: 'node scope with nodeId "": a grant below the root does not apply',
    assignments: [asg("a1", viewer, "office-boston")],
    query: { nodeId: "" },
    allowed: false,
    reason: "NO_ASSIGNMENT",
  },

  // --- explain and granting roles ----------------------------------------------------------------------
  {
    name: "explain lists only active granting in-scope assignments; roles distinct and sorted by name",
    assignments: [
      asg("a-root", editor, ROOT),
      asg("a-east", viewer, "region-east"),
      asg("a-east2", viewer, "region-east", { to: null }),
      asg("a-boston", auditor, "office-boston"),
      asg("a-alpha", viewer, "team-alpha"),
      expired("a-exp", editor, "team-alpha"),
      scheduled("a-sched", auditor, "team-alpha"),
      asg("a-bill", billing, "team-alpha"),
      asg("a-beta", editor, "team-beta"),
      asg("a-frank", viewer, "team-alpha", { identityId: frank.id }),
    ],
    ...allowedAt("team-alpha", [auditor.id, editor.id, viewer.id], [
      { assignmentId: "a-alpha", nodeId: "team-alpha", inherited: false },
      { assignmentId: "a-boston", nodeId: "office-boston", inherited: true },
      { assignmentId: "a-east", nodeId: "region-east", inherited: true },
      { assignmentId: "a-east2", nodeId: "region-east", inherited: true },
      { assignmentId: "a-root", nodeId: ROOT, inherited: true },
    ]),
  },
  {
    name: "explain = false leaves the explanation empty but still names the roles",
    assignments: [asg("a1", viewer, "team-alpha"), asg("a2", editor, ROOT)],
    query: { explain: false },
    ...allowedAt("team-alpha", [editor.id, viewer.id], []),
  },

  // --- revision ----------------------------------------------------------------------------------------
  {
    name: "revision is echoed on an allowed check",
    assignments: [asg("a1", viewer, ROOT)],
    ...allowedAt("team-alpha", [viewer.id], [{ assignmentId: "a1", nodeId: ROOT, inherited: true }]),
    revision: REVISION,
  },
  {
    name: "revision is echoed on a denied check",
    query: { identityId: "id-ghost" },
    allowed: false,
    reason: "UNKNOWN_IDENTITY",
    revision: REVISION,
  },
  {
    name: "revision follows setRevision forward",
    tweak: (e) => e.setRevision(ENV, 12),
    allowed: false,
    reason: "NO_ASSIGNMENT",
    revision: 12,
  },
  {
    name: "revision never goes backwards",
    tweak: (e) => {
      e.setRevision(ENV, 12);
      e.setRevision(ENV, 3);
    },
    allowed: false,
    reason: "NO_ASSIGNMENT",
    revision: 12,
  },

  // --- writes are visible to the next check ------------------------------------------------------------
  {
    name: "putRole adding a key grants it to holders",
    assignments: [asg("a1", viewer, "office-boston")],
    tweak: (e) => e.putRole(ENV, { ...viewer, permissionKeys: ["doc.read", "doc.write"] }),
    query: { permission: "doc.write" },
    ...allowedAt("team-alpha", [viewer.id], [{ assignmentId: "a1", nodeId: "office-boston", inherited: true }]),
  },
  {
    name: "putRole dropping a key revokes it from holders",
    assignments: [asg("a1", editor, "office-boston")],
    tweak: (e) => e.putRole(ENV, { ...editor, permissionKeys: ["doc.write"] }),
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
  },
  {
    name: "putRole renaming a role shows the new name and order",
    assignments: [asg("a1", viewer, ROOT), asg("a2", editor, ROOT)],
    tweak: (e) => e.putRole(ENV, { ...viewer, name: "Aardvark" }),
    roleNames: { [viewer.id]: "Aardvark" },
    // Aardvark (role-1) now sorts before Editor (role-2)
    ...allowedAt("team-alpha", [viewer.id, editor.id], [
      { assignmentId: "a1", nodeId: ROOT, inherited: true },
      { assignmentId: "a2", nodeId: ROOT, inherited: true },
    ]),
  },
  {
    name: "removePermission makes the key unknown",
    assignments: [asg("a1", editor, ROOT)],
    tweak: (e) => e.removePermission(ENV, "doc.read"),
    allowed: false,
    reason: "UNKNOWN_PERMISSION",
  },
  {
    name: "removePermission strips the key from roles: re-adding it does not restore grants",
    assignments: [asg("a1", editor, ROOT)],
    tweak: (e) => {
      e.removePermission(ENV, "doc.read");
      e.putPermission(ENV, "doc.read");
    },
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
  },
  {
    name: "putPermission adds a key to the catalog",
    assignments: [asg("a1", editor, ROOT)],
    tweak: (e) => e.putPermission(ENV, "doc.delete"),
    query: { permission: "doc.delete" },
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
  },
  {
    name: "removeAssignment revokes",
    assignments: [asg("a1", editor, ROOT)],
    tweak: (e) => e.removeAssignment(ENV, "a1"),
    allowed: false,
    reason: "NO_ASSIGNMENT",
  },
  {
    name: "removeAssignment of an unknown id changes nothing",
    assignments: [asg("a1", editor, ROOT)],
    tweak: (e) => e.removeAssignment(ENV, "a-unknown"),
    ...allowedAt("team-alpha", [editor.id], [{ assignmentId: "a1", nodeId: ROOT, inherited: true }]),
  },
  {
    name: "putAssignment with the same id replaces: moved to a sibling",
    assignments: [asg("a1", editor, "team-alpha")],
    tweak: (e) => e.putAssignment(ENV, asg("a1", editor, "team-beta")),
    allowed: false,
    reason: "NO_ASSIGNMENT",
  },
  {
    name: "putAssignment with the same id replaces: window ended",
    assignments: [asg("a1", editor, "team-alpha")],
    tweak: (e) => e.putAssignment(ENV, expired("a1", editor, "team-alpha")),
    allowed: false,
    reason: "ONLY_EXPIRED",
  },
  {
    name: "putAssignment with the same id replaces: role changed",
    assignments: [asg("a1", editor, "team-alpha")],
    tweak: (e) => e.putAssignment(ENV, asg("a1", billing, "team-alpha")),
    allowed: false,
    reason: "PERMISSION_NOT_GRANTED",
  },
  {
    name: "putAssignment with the same id replaces: given to another identity",
    assignments: [asg("a1", editor, "team-alpha")],
    tweak: (e) => e.putAssignment(ENV, asg("a1", editor, "team-alpha", { identityId: frank.id })),
    allowed: false,
    reason: "NO_ASSIGNMENT",
  },
  {
    name: "putAssignment with the same id replaces: the new holder is granted",
    assignments: [asg("a1", editor, "team-alpha")],
    tweak: (e) => e.putAssignment(ENV, asg("a1", viewer, "office-boston", { identityId: frank.id })),
    query: { identityId: frank.id },
    ...allowedAt("team-alpha", [viewer.id], [{ assignmentId: "a1", nodeId: "office-boston", inherited: true }]),
  },
  {
    name: "applyNodes: a subtree moved under a granting region inherits",
    assignments: [asg("a1", editor, "region-east")],
    tweak: (e) => e.applyNodes(ENV, { upsert: [{ id: "office-sf", parentId: "region-east", type: "office" }] }),
    query: { nodeId: "team-delta" },
    ...allowedAt("team-delta", [editor.id], [{ assignmentId: "a1", nodeId: "region-east", inherited: true }]),
  },
  {
    name: "applyNodes: a subtree moved away from a granting region loses the grant",
    assignments: [asg("a1", editor, "region-east")],
    tweak: (e) => e.applyNodes(ENV, { upsert: [{ id: "office-boston", parentId: "region-west", type: "office" }] }),
    allowed: false,
    reason: "NO_ASSIGNMENT",
  },
  {
    name: "applyNodes: a new node inherits from its ancestors",
    assignments: [asg("a1", viewer, "office-nyc")],
    tweak: (e) => e.applyNodes(ENV, { upsert: [{ id: "team-epsilon", parentId: "office-nyc", type: "team" }] }),
    query: { nodeId: "team-epsilon" },
    ...allowedAt("team-epsilon", [viewer.id], [{ assignmentId: "a1", nodeId: "office-nyc", inherited: true }]),
  },
  {
    name: "applyNodes: a removed node is unknown",
    assignments: [asg("a1", viewer, ROOT)],
    tweak: (e) => e.applyNodes(ENV, { remove: ["team-gamma"] }),
    query: { nodeId: "team-gamma" },
    allowed: false,
    reason: "UNKNOWN_NODE",
  },
];

/** The engine's answer in a comparable shape, and the expected one. */
function assertCase(c: CheckCase, q: CheckQuery, r: CheckResult, engine: Engine): void {
  // echoes
  expect(r.identityId).toBe(q.identityId);
  expect(r.permission).toBe(q.permission);
  expect(r.scope).toBe(q.scope);
  expect(r.at).toBe(q.at);
  expect(r.revision).toBe(c.revision ?? REVISION);

  expect({ allowed: r.allowed, reason: r.denialReason }).toEqual({ allowed: c.allowed, reason: c.reason });
  if (!c.allowed) {
    expect(r.grantingRoles).toEqual([]);
    expect(r.explanation).toEqual([]);
    if (q.scope === "app_wide") expect(r.effectiveNodeId).toBe("");
    return;
  }
  // names at evaluation time (a tweak may rename)
  const names = { ...ROLE_NAME, ...c.roleNames };
  expect(r.grantingRoles).toEqual(c.roles!.map((roleId) => ({ roleId, roleName: names[roleId] })));
  expect(r.effectiveNodeId).toBe(c.effectiveNodeId);
  const records = new Map([...(c.assignments ?? []), ...engine.assignmentsOf(ENV, q.identityId)].map((a) => [a.id, a]));
  const want = c.explain!.map((x) => {
    const a = records.get(x.assignmentId)!;
    return { ...x, roleId: a.roleId, effectiveFrom: a.effectiveFrom, effectiveTo: a.effectiveTo };
  });
  const got = [...r.explanation].sort((x, y) => (x.assignmentId < y.assignmentId ? -1 : 1));
  expect(got).toEqual(want);
}

describe("check: table", () => {
  it.each(CASES)("$name", (c) => {
    const engine = fixtureEngine(c.assignments ?? []);
    c.tweak?.(engine);
    const q = query(c.query);
    assertCase(c, q, engine.check(ENV, q), engine);
  });

  it("every case name is unique", () => {
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });
});

describe("check: writes change results immediately", () => {
  const twoHolders = () =>
    fixtureEngine([asg("a-alice", viewer, "office-boston"), asg("a-frank", viewer, "team-delta", { identityId: frank.id })]);
  const write = (identityId: string, nodeId: string) => query({ identityId, nodeId, permission: "doc.write" });

  it("a role's new permission set applies to every holder, both ways", () => {
    const engine = twoHolders();
    const both = () => [engine.check(ENV, write(alice.id, "team-alpha")), engine.check(ENV, write(frank.id, "team-delta"))];
    expect(both().map((r) => r.denialReason)).toEqual(["PERMISSION_NOT_GRANTED", "PERMISSION_NOT_GRANTED"]);
    engine.putRole(ENV, { ...viewer, permissionKeys: ["doc.read", "doc.write"] });
    expect(both().map((r) => [r.allowed, r.denialReason])).toEqual([
      [true, null],
      [true, null],
    ]);
    engine.putRole(ENV, { ...viewer, permissionKeys: ["doc.read"] });
    expect(both().map((r) => r.denialReason)).toEqual(["PERMISSION_NOT_GRANTED", "PERMISSION_NOT_GRANTED"]);
  });

  it("removePermission removes the key from every role and the catalog", () => {
    const engine = twoHolders();
    engine.putAssignment(ENV, asg("a-edit", editor, ROOT, { identityId: frank.id }));
    expect(engine.check(ENV, query({ identityId: frank.id, nodeId: "team-alpha" })).allowed).toBe(true);
    engine.removePermission(ENV, "doc.read");
    expect(engine.check(ENV, query({ identityId: alice.id })).denialReason).toBe("UNKNOWN_PERMISSION");
    expect(engine.check(ENV, query({ identityId: frank.id })).denialReason).toBe("UNKNOWN_PERMISSION");
    engine.putPermission(ENV, "doc.read");
    // neither viewer nor editor holds it any more
    expect(engine.check(ENV, query({ identityId: alice.id })).denialReason).toBe("PERMISSION_NOT_GRANTED");
    expect(engine.check(ENV, query({ identityId: frank.id })).denialReason).toBe("PERMISSION_NOT_GRANTED");
    // doc.write was not touched
    expect(engine.check(ENV, query({ identityId: frank.id, permission: "doc.write" })).allowed).toBe(true);
  });

  it("putAssignment with an existing id replaces rather than duplicates; removeAssignment drops it", () => {
    const engine = fixtureEngine([asg("a1", editor, "team-alpha")]);
    engine.putAssignment(ENV, asg("a1", editor, "team-beta"));
    engine.putAssignment(ENV, asg("a1", editor, "team-beta"));
    expect(engine.assignmentsOf(ENV, alice.id).map((a) => [a.id, a.nodeId])).toEqual([["a1", "team-beta"]]);
    expect(engine.check(ENV, query({ nodeId: "team-alpha" })).denialReason).toBe("NO_ASSIGNMENT");
    expect(engine.check(ENV, query({ nodeId: "team-beta" })).allowed).toBe(true);

    engine.putAssignment(ENV, asg("a1", editor, "team-beta", { identityId: frank.id }));
    expect(engine.assignmentsOf(ENV, alice.id)).toEqual([]);
    expect(engine.assignmentsOf(ENV, frank.id).map((a) => a.id)).toEqual(["a1"]);

    engine.removeAssignment(ENV, "a1");
    expect(engine.assignmentsOf(ENV, frank.id)).toEqual([]);
    expect(engine.check(ENV, query({ identityId: frank.id, nodeId: "team-beta" })).denialReason).toBe("NO_ASSIGNMENT");
  });

  it("keeps its own copy of written records", () => {
    const engine = fixtureEngine();
    const rec = asg("a1", viewer, "team-alpha");
    engine.putAssignment(ENV, rec);
    rec.nodeId = "team-beta";
    rec.effectiveTo = T0;
    const keys = ["doc.read"];
    engine.putRole(ENV, { ...viewer, permissionKeys: keys });
    keys.length = 0;
    const r = engine.check(ENV, query());
    expect([r.allowed, r.denialReason]).toEqual([true, null]);
  });

  it("results are independent objects", () => {
    const engine = fixtureEngine([asg("a1", viewer, ROOT)]);
    const first = engine.check(ENV, query());
    first.grantingRoles.push({ roleId: "x", roleName: "x" });
    first.explanation.length = 0;
    const second = engine.check(ENV, query());
    expect(second.grantingRoles).toEqual([{ roleId: viewer.id, roleName: viewer.name }]);
    expect(second.explanation).toHaveLength(1);
  });
});

describe("check: hierarchy changes", () => {
  it("moving a subtree changes inherited results and the closure", () => {
    const engine = fixtureEngine([asg("a1", editor, "region-east")]);
    const before = engine.closure(ENV);
    expect(engine.check(ENV, query({ nodeId: "team-delta" })).denialReason).toBe("NO_ASSIGNMENT");
    expect(engine.check(ENV, query({ nodeId: "team-alpha" })).allowed).toBe(true);

    engine.applyNodes(ENV, {
      upsert: [
        { id: "office-sf", parentId: "region-east", type: "office" },
        { id: "office-boston", parentId: "region-west", type: "office" },
      ],
    });
    const after = engine.closure(ENV);
    expect(after).not.toBe(before);
    expect(after.ancestors("team-delta")).toEqual([ROOT, "region-east", "office-sf"]);
    expect(after.ancestors("team-alpha")).toEqual([ROOT, "region-west", "office-boston"]);
    // the old closure is immutable: a check that took it still sees the old tree
    expect(before.ancestors("team-delta")).toEqual([ROOT, "region-west", "office-sf"]);

    const delta = engine.check(ENV, query({ nodeId: "team-delta" }));
    expect([delta.allowed, delta.explanation.map((x) => [x.nodeId, x.inherited])]).toEqual([true, [["region-east", true]]]);
    expect(engine.check(ENV, query({ nodeId: "team-alpha" })).denialReason).toBe("NO_ASSIGNMENT");
  });

  it.each([
    { name: "orphaning a subtree (removing an inner office)", change: { remove: ["office-boston"] }, error: /not reachable/ },
    { name: "a parent id that does not exist", change: { upsert: [{ id: "team-beta", parentId: "office-ghost", type: "team" }] }, error: /not reachable/ },
    {
      name: "a cycle (a region moved under its own team)",
      change: { upsert: [{ id: "region-east", parentId: "team-alpha", type: "region" }] },
      error: /not reachable/,
    },
    { name: "removing the root", change: { remove: [ROOT] }, error: /root node root is missing/ },
  ])("a change $name throws and leaves the previous closure answering", ({ change, error }) => {
    const engine = fixtureEngine([asg("a1", editor, "office-boston")]);
    const before = engine.closure(ENV);
    const answer = () => {
      const r = engine.check(ENV, query({ nodeId: "team-beta" }));
      return [r.allowed, r.denialReason, r.explanation.map((x) => x.nodeId)];
    };
    expect(answer()).toEqual([true, null, ["office-boston"]]);

    expect(() => engine.applyNodes(ENV, change)).toThrow(error);

    expect(engine.closure(ENV)).toBe(before);
    expect(before.size).toBe(NODES.length);
    expect(before.ancestors("team-beta")).toEqual([ROOT, "region-east", "office-boston"]);
    expect(answer()).toEqual([true, null, ["office-boston"]]);
    // the rejected change did not leak into the node map the next rebuild starts from
    engine.applyNodes(ENV, { upsert: [{ id: "team-new", parentId: "office-nyc", type: "team" }] });
    const rebuilt = engine.closure(ENV);
    expect(rebuilt.size).toBe(NODES.length + 1);
    expect(rebuilt.subtree(ROOT).filter((id) => id !== "team-new").sort()).toEqual(NODES.map((n) => n.id).sort());
    expect(rebuilt.parentId("team-beta")).toBe("office-boston");
    expect(rebuilt.parentId("region-east")).toBe(ROOT);
    expect(answer()).toEqual([true, null, ["office-boston"]]);
  });
});

describe("check: environments are isolated", () => {
  /** Two environments of one engine with the same node, role and assignment ids. */
  function twoEnvironments(sameApp: boolean) {
    const engine = fixtureEngine([asg("a1", editor, "office-boston")]);
    engine.loadEnvironment(
      fixtureSnapshot([asg("a1", viewer, "office-nyc")], {
        id: "env-2",
        applicationId: sameApp ? APP : "app-3",
        revision: 100,
        // same role ids, different permission sets
        roles: [
          { id: viewer.id, name: "Viewer", permissionKeys: ["doc.read", "billing.manage"] },
          { id: editor.id, name: "Editor", permissionKeys: [] },
        ],
      }),
    );
    if (!sameApp) engine.setMembership("app-3", alice.id, "active");
    return engine;
  }

  it.each([true, false])("same ids do not leak (same application: %s)", (sameApp) => {
    const engine = twoEnvironments(sameApp);
    const at = (env: string, q: Partial<CheckQuery>) => {
      const r = engine.check(env, query(q));
      return [r.allowed, r.denialReason, r.revision];
    };
    expect(at(ENV, { nodeId: "team-alpha", permission: "doc.write" })).toEqual([true, null, REVISION]);
    expect(at("env-2", { nodeId: "team-alpha", permission: "doc.write" })).toEqual([false, "NO_ASSIGNMENT", 100]);
    expect(at(ENV, { nodeId: "team-gamma" })).toEqual([false, "NO_ASSIGNMENT", REVISION]);
    expect(at("env-2", { nodeId: "team-gamma", permission: "billing.manage" })).toEqual([true, null, 100]);
    expect(at(ENV, { nodeId: "team-gamma", permission: "billing.manage" })).toEqual([false, "NO_ASSIGNMENT", REVISION]);

    // writes to one environment leave the other alone
    engine.removeAssignment("env-2", "a1");
    engine.putRole("env-2", { ...editor, permissionKeys: [] });
    engine.removePermission("env-2", "doc.write");
    engine.applyNodes("env-2", { remove: ["team-alpha"] });
    engine.setRevision("env-2", 200);
    expect(at(ENV, { nodeId: "team-alpha", permission: "doc.write" })).toEqual([true, null, REVISION]);
    expect(engine.assignmentsOf(ENV, alice.id).map((a) => a.nodeId)).toEqual(["office-boston"]);
    expect(engine.closure(ENV).has("team-alpha")).toBe(true);
    expect(at("env-2", { nodeId: "team-gamma", permission: "billing.manage" })).toEqual([false, "NO_ASSIGNMENT", 200]);
  });

  it("a membership belongs to an application, not an environment", () => {
    const engine = twoEnvironments(false);
    engine.setMembership(APP, alice.id, "inactive");
    expect(engine.check(ENV, query({ permission: "doc.write" })).denialReason).toBe("MEMBERSHIP_INACTIVE");
    expect(engine.check("env-2", query({ nodeId: "team-gamma", permission: "billing.manage" })).allowed).toBe(true);
  });

  it("dropping an environment removes it; a reload replaces its whole state", () => {
    const engine = twoEnvironments(true);
    expect([engine.hasEnvironment(ENV), engine.hasEnvironment("env-2")]).toEqual([true, true]);
    engine.dropEnvironment("env-2");
    expect([engine.hasEnvironment(ENV), engine.hasEnvironment("env-2")]).toEqual([true, false]);
    expect(() => engine.check("env-2", query())).toThrow(/env-2 is not loaded/);
    expect(engine.check(ENV, query({ permission: "doc.write" })).allowed).toBe(true);

    engine.loadEnvironment(fixtureSnapshot([], { revision: 9 }));
    const r = engine.check(ENV, query({ permission: "doc.write" }));
    expect([r.allowed, r.denialReason, r.revision]).toEqual([false, "NO_ASSIGNMENT", 9]);
    expect(engine.assignmentsOf(ENV, alice.id)).toEqual([]);
  });
});

describe("engine hardening", () => {
  it("fails closed for an invalid evaluation instant (NaN matches no window)", () => {
    const e = createEngine();
    e.setIdentity("i", "acct", true);
    e.setMembership("app", "i", "active");
    e.loadEnvironment({
      id: "env",
      accountId: "acct",
      applicationId: "app",
      rootNodeId: "root",
      revision: 1,
      nodes: [{ id: "root", parentId: null, type: "root" }],
      permissionKeys: ["doc.read"],
      roles: [{ id: "r", name: "reader", permissionKeys: ["doc.read"] }],
      assignments: [
        { id: "a1", identityId: "i", roleId: "r", nodeId: "root", effectiveFrom: 1000, effectiveTo: 2000 },
        { id: "a2", identityId: "i", roleId: "r", nodeId: "root", effectiveFrom: 3000, effectiveTo: null },
      ],
    });
    const base = { identityId: "i", permission: "doc.read", scope: "node" as const, nodeId: "root", explain: false };
    expect(e.check("env", { ...base, at: 1500 }).allowed).toBe(true);
    const r = e.check("env", { ...base, at: Number.NaN });
    expect(r.allowed).toBe(false);
    expect(r.denialReason).not.toBeNull();
  });

  it("breaks app-wide ties between equally deep granting nodes by node id, whatever the insertion order", () => {
    for (const order of [["b", "a"], ["a", "b"]]) {
      const e = createEngine();
      e.setIdentity("i", "acct", true);
      e.setMembership("app", "i", "active");
      e.loadEnvironment({
        id: "env",
        accountId: "acct",
        applicationId: "app",
        rootNodeId: "root",
        revision: 1,
        nodes: [
          { id: "root", parentId: null, type: "root" },
          { id: "a", parentId: "root", type: "t" },
          { id: "b", parentId: "root", type: "t" },
        ],
        permissionKeys: ["doc.read"],
        roles: [{ id: "r", name: "reader", permissionKeys: ["doc.read"] }],
        assignments: order.map((n) => ({ id: `as-${n}`, identityId: "i", roleId: "r", nodeId: n, effectiveFrom: 0, effectiveTo: null })),
      });
      const r = e.check("env", { identityId: "i", permission: "doc.read", scope: "app_wide", nodeId: "", at: 5, explain: false });
      expect(r.effectiveNodeId).toBe("a");
    }
  });
});
