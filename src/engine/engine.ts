import { Closure, type TreeNode } from "./closure.js";

/**
 * The evaluation engine: per environment an in-memory closure of the hierarchy, the role → permission
 * sets and a per-identity index of assignments; account-wide identity state and per-application
 * memberships. Pure: no I/O, no clock. The services apply every committed write here before the
 * write RPC returns, so a check sees a write as soon as it is acknowledged.
 */

export type CheckScope = "node" | "app_wide";

/** Why a check was denied. Order of evaluation is documented in README ("Denial reasons"). */
export type DenialReason =
  | "UNKNOWN_IDENTITY"
  | "UNKNOWN_PERMISSION"
  | "UNKNOWN_NODE"
  | "IDENTITY_INACTIVE"
  | "NO_MEMBERSHIP"
  | "MEMBERSHIP_INACTIVE"
  | "NO_ASSIGNMENT"
  | "PERMISSION_NOT_GRANTED"
  | "ONLY_SCHEDULED"
  | "ONLY_EXPIRED";

export interface CheckQuery {
  identityId: string;
  permission: string;
  scope: CheckScope;
  /** node scope: the node checked; "" = the root (the services allow that only in flat mode) */
  nodeId: string;
  /** evaluation instant, epoch ms */
  at: number;
  explain: boolean;
  /**
   * Environment-key callers: an identity without a membership (any status) in the environment's
   * application is reported as UNKNOWN_IDENTITY, so a key cannot learn of identities outside its
   * application. Admin callers leave it unset and get NO_MEMBERSHIP.
   */
  membersOnly?: boolean;
}

export interface GrantingAssignment {
  assignmentId: string;
  roleId: string;
  /** the node the assignment sits on: where the grant was inherited from */
  nodeId: string;
  inherited: boolean;
  effectiveFrom: number;
  effectiveTo: number | null;
}

export interface CheckResult {
  allowed: boolean;
  identityId: string;
  permission: string;
  scope: CheckScope;
  effectiveNodeId: string;
  grantingRoles: Array<{ roleId: string; roleName: string }>;
  denialReason: DenialReason | null;
  explanation: GrantingAssignment[];
  revision: number;
  at: number;
}

/** An assignment as the engine indexes it. */
export interface AssignmentRecord {
  id: string;
  identityId: string;
  roleId: string;
  nodeId: string;
  effectiveFrom: number;
  /** null = never */
  effectiveTo: number | null;
}

export interface RoleRecord {
  id: string;
  name: string;
  permissionKeys: Iterable<string>;
}

export interface EnvironmentSnapshot {
  id: string;
  accountId: string;
  applicationId: string;
  rootNodeId: string;
  revision: number;
  nodes: Iterable<TreeNode>;
  permissionKeys: Iterable<string>;
  roles: Iterable<RoleRecord>;
  assignments: Iterable<AssignmentRecord>;
}

/** One per role id for the role's lifetime: updates replace its fields, removal marks it deleted. */
interface RoleState {
  id: string;
  name: string;
  permissions: Set<string>;
  /** the same set as bits over the environment's permission index (one bit test per assignment) */
  bits: Uint32Array;
  deleted: boolean;
}

/**
 * An indexed assignment. `role` and the node position are resolved once and cached: the role by
 * reference (a RoleState never changes identity), the position per closure (a rebuild renumbers).
 */
interface IndexedAssignment extends AssignmentRecord {
  role: RoleState | undefined;
  pos: number;
  posOf: Closure | undefined;
}

interface EnvironmentState {
  readonly id: string;
  readonly accountId: string;
  readonly applicationId: string;
  revision: number;
  closure: Closure;
  /** node id -> node, the source the closure is rebuilt from (replaced, never mutated, on a change) */
  nodes: Map<string, TreeNode>;
  readonly permissions: Set<string>;
  /** permission key -> small integer, stable while the key exists (role bit positions) */
  readonly permIndex: Map<string, number>;
  readonly roles: Map<string, RoleState>;
  readonly byIdentity: Map<string, Subject>;
  readonly byId: Map<string, IndexedAssignment>;
}

/** One object per identity id for the engine's lifetime (mutated in place), so it can be cached. */
interface IdentityState {
  accountId: string;
  active: boolean;
  exists: boolean;
}

/** One object per (application, identity) for the engine's lifetime; status null = no membership. */
interface MembershipState {
  status: "active" | "inactive" | null;
}

/** An identity's entry in one environment: its assignments, plus its identity and membership state cached by reference. */
interface Subject {
  records: IndexedAssignment[];
  identity: IdentityState | undefined;
  membership: MembershipState | undefined;
}

export interface Engine {
  loadEnvironment(s: EnvironmentSnapshot): void;
  dropEnvironment(environmentId: string): void;
  hasEnvironment(environmentId: string): boolean;
  revision(environmentId: string): number;
  setRevision(environmentId: string, revision: number): void;
  /** The current closure of the environment's hierarchy (immutable; replaced on every change). */
  closure(environmentId: string): Closure;

  setIdentity(identityId: string, accountId: string, active: boolean): void;
  removeIdentity(identityId: string): void;
  /** null removes the membership */
  setMembership(applicationId: string, identityId: string, status: "active" | "inactive" | null): void;
  /** Replaces every membership of the application (a reload from storage). */
  resetMemberships(applicationId: string, entries: Iterable<{ identityId: string; status: "active" | "inactive" }>): void;

  /** Upserts and removes nodes, then rebuilds the closure once and swaps it in. */
  applyNodes(environmentId: string, change: { upsert?: TreeNode[]; remove?: string[] }): void;
  putPermission(environmentId: string, key: string): void;
  /** also removes the key from every role */
  removePermission(environmentId: string, key: string): void;
  putRole(environmentId: string, role: RoleRecord): void;
  removeRole(environmentId: string, roleId: string): void;
  putAssignment(environmentId: string, a: AssignmentRecord): void;
  removeAssignment(environmentId: string, assignmentId: string): void;
  /** account and active flag of an identity, or undefined when unknown */
  identity(identityId: string): { accountId: string; active: boolean } | undefined;
  membership(applicationId: string, identityId: string): "active" | "inactive" | undefined;
  hasRole(environmentId: string, roleId: string): boolean;
  /** the indexed assignments of one identity (read-only view) */
  assignmentsOf(environmentId: string, identityId: string): readonly AssignmentRecord[];

  check(environmentId: string, q: CheckQuery): CheckResult;
}

const NO_ASSIGNMENTS: readonly AssignmentRecord[] = Object.freeze([]);
/** Shared by every denial (never mutated): a denial allocates one result object and nothing else. */
const NO_ROLES = Object.freeze([]) as unknown as CheckResult["grantingRoles"];
const NO_EXPLANATION = Object.freeze([]) as unknown as GrantingAssignment[];

/** Creates an empty engine. */
export function createEngine(): Engine {
  const envs = new Map<string, EnvironmentState>();
  const identities = new Map<string, IdentityState>();
  /** applicationId -> identityId -> status */
  const memberships = new Map<string, Map<string, MembershipState>>();

  function env(id: string): EnvironmentState {
    const e = envs.get(id);
    if (!e) throw new Error(`environment ${id} is not loaded in the engine`);
    return e;
  }

  function indexAssignment(e: EnvironmentState, a: AssignmentRecord): void {
    const old = e.byId.get(a.id);
    if (old) unindexAssignment(e, old);
    const rec: IndexedAssignment = {
      id: a.id,
      identityId: a.identityId,
      roleId: a.roleId,
      nodeId: a.nodeId,
      effectiveFrom: a.effectiveFrom,
      effectiveTo: a.effectiveTo,
      role: e.roles.get(a.roleId),
      pos: -1,
      posOf: undefined,
    };
    e.byId.set(rec.id, rec);
    const subject = e.byIdentity.get(rec.identityId);
    if (subject) subject.records.push(rec);
    else e.byIdentity.set(rec.identityId, { records: [rec], identity: undefined, membership: undefined });
  }

  function unindexAssignment(e: EnvironmentState, a: AssignmentRecord): void {
    e.byId.delete(a.id);
    const subject = e.byIdentity.get(a.identityId);
    if (!subject) return;
    const i = subject.records.findIndex((x) => x.id === a.id);
    if (i >= 0) subject.records.splice(i, 1);
    if (subject.records.length === 0) e.byIdentity.delete(a.identityId);
  }

  /** The next free permission index (indexes of removed keys are not reused: bits stay unambiguous). */
  function nextIndex(e: EnvironmentState): number {
    let max = -1;
    for (const v of e.permIndex.values()) if (v > max) max = v;
    return Math.max(max + 1, e.permIndex.size);
  }

  function makeRole(e: EnvironmentState, r: RoleRecord): RoleState {
    const permissions = new Set(r.permissionKeys);
    let top = 0;
    for (const k of permissions) top = Math.max(top, (e.permIndex.get(k) ?? -1) + 1);
    const bits = new Uint32Array(Math.ceil(top / 32));
    for (const k of permissions) {
      const b = e.permIndex.get(k);
      if (b !== undefined) bits[b >>> 5] |= 1 << (b & 31);
    }
    return { id: r.id, name: r.name, permissions, bits, deleted: false };
  }

  function membershipState(applicationId: string, identityId: string): MembershipState | undefined {
    const m = memberships.get(applicationId)?.get(identityId);
    return m && m.status !== null ? m : undefined;
  }

  function putMembership(applicationId: string, identityId: string, status: "active" | "inactive" | null): void {
    let m = memberships.get(applicationId);
    if (!m) memberships.set(applicationId, (m = new Map()));
    const state = m.get(identityId);
    if (state) state.status = status;
    else if (status !== null) m.set(identityId, { status });
  }

  function deny(base: CheckResult, reason: DenialReason): CheckResult {
    base.denialReason = reason;
    return base;
  }

  return {
    loadEnvironment(s) {
      const nodes = new Map<string, TreeNode>();
      for (const n of s.nodes) nodes.set(n.id, { id: n.id, parentId: n.parentId, type: n.type });
      const e: EnvironmentState = {
        id: s.id,
        accountId: s.accountId,
        applicationId: s.applicationId,
        revision: s.revision,
        closure: new Closure(nodes.values(), s.rootNodeId),
        nodes,
        permissions: new Set(s.permissionKeys),
        permIndex: new Map(),
        roles: new Map(),
        byIdentity: new Map(),
        byId: new Map(),
      };
      for (const k of e.permissions) e.permIndex.set(k, e.permIndex.size);
      for (const r of s.roles) e.roles.set(r.id, makeRole(e, r));
      for (const a of s.assignments) indexAssignment(e, a);
      envs.set(s.id, e);
    },
    dropEnvironment(id) {
      envs.delete(id);
    },
    hasEnvironment(id) {
      return envs.has(id);
    },
    revision(id) {
      return env(id).revision;
    },
    setRevision(id, revision) {
      const e = env(id);
      if (revision > e.revision) e.revision = revision;
    },
    closure(id) {
      return env(id).closure;
    },

    setIdentity(identityId, accountId, active) {
      const state = identities.get(identityId);
      if (state) {
        state.accountId = accountId;
        state.active = active;
        state.exists = true;
      } else identities.set(identityId, { accountId, active, exists: true });
    },
    removeIdentity(identityId) {
      const state = identities.get(identityId);
      if (state) state.exists = false;
    },
    setMembership(applicationId, identityId, status) {
      putMembership(applicationId, identityId, status);
    },

    resetMemberships(applicationId, entries) {
      const next = new Map<string, "active" | "inactive">();
      for (const e of entries) next.set(e.identityId, e.status);
      const m = memberships.get(applicationId);
      if (m) for (const [identityId, state] of m) if (!next.has(identityId)) state.status = null;
      for (const [identityId, status] of next) putMembership(applicationId, identityId, status);
    },
    applyNodes(id, change) {
      const e = env(id);
      const next = new Map(e.nodes);
      for (const r of change.remove ?? []) next.delete(r);
      for (const n of change.upsert ?? []) next.set(n.id, { id: n.id, parentId: n.parentId, type: n.type });
      // Build first, swap after: a failed build leaves the old closure and node map in place.
      const closure = new Closure([...next.values()], e.closure.rootId);
      e.nodes = next;
      e.closure = closure;
    },
    putPermission(id, key) {
      const e = env(id);
      e.permissions.add(key);
      if (!e.permIndex.has(key)) e.permIndex.set(key, nextIndex(e));
    },
    removePermission(id, key) {
      const e = env(id);
      e.permissions.delete(key);
      const bit = e.permIndex.get(key);
      e.permIndex.delete(key);
      for (const r of e.roles.values()) {
        r.permissions.delete(key);
        if (bit !== undefined && (bit >>> 5) < r.bits.length) r.bits[bit >>> 5] &= ~(1 << (bit & 31));
      }
    },
    putRole(id, role) {
      const e = env(id);
      const current = e.roles.get(role.id);
      if (current) {
        // same object, new fields: assignments holding a reference see the change at once
        const next = makeRole(e, role);
        current.name = next.name;
        current.bits = next.bits;
        current.permissions = next.permissions;
        return;
      }
      const state = makeRole(e, role);
      e.roles.set(role.id, state);
      for (const a of e.byId.values()) if (a.roleId === role.id) a.role = state;
    },
    removeRole(id, roleId) {
      const e = env(id);
      const r = e.roles.get(roleId);
      if (r) r.deleted = true;
      e.roles.delete(roleId);
    },
    putAssignment(id, a) {
      indexAssignment(env(id), a);
    },
    removeAssignment(id, assignmentId) {
      const e = env(id);
      const a = e.byId.get(assignmentId);
      if (a) unindexAssignment(e, a);
    },
    identity(identityId) {
      const i = identities.get(identityId);
      return i && i.exists ? { accountId: i.accountId, active: i.active } : undefined;
    },
    membership(applicationId, identityId) {
      return membershipState(applicationId, identityId)?.status ?? undefined;
    },
    hasRole(id, roleId) {
      return env(id).roles.has(roleId);
    },
    assignmentsOf(id, identityId) {
      return env(id).byIdentity.get(identityId)?.records ?? NO_ASSIGNMENTS;
    },

    check(id, q) {
      const e = env(id);
      const closure = e.closure;
      const nodeId = q.scope === "node" ? q.nodeId || closure.rootId : "";
      const result: CheckResult = {
        allowed: false,
        identityId: q.identityId,
        permission: q.permission,
        scope: q.scope,
        // node scope echoes the node evaluated (the root when omitted); app_wide names a granting node
        effectiveNodeId: nodeId,
        grantingRoles: NO_ROLES,
        denialReason: null,
        explanation: NO_EXPLANATION,
        revision: e.revision,
        at: q.at,
      };
      // One lookup for an identity with assignments here: its state objects are cached on its entry.
      const subject = e.byIdentity.get(q.identityId);
      let identityState = subject?.identity;
      if (identityState === undefined) {
        identityState = identities.get(q.identityId);
        if (subject && identityState) subject.identity = identityState;
      }
      let membershipObj = subject?.membership;
      if (membershipObj === undefined) {
        membershipObj = memberships.get(e.applicationId)?.get(q.identityId);
        if (subject && membershipObj) subject.membership = membershipObj;
      }
      const identity = identityState && identityState.exists ? identityState : undefined;
      const membership = membershipObj?.status ?? undefined;
      if (!identity || identity.accountId !== e.accountId || (q.membersOnly && membership === undefined)) return deny(result, "UNKNOWN_IDENTITY");
      const bit = e.permIndex.get(q.permission);
      if (bit === undefined) return deny(result, "UNKNOWN_PERMISSION");
      const word = bit >>> 5;
      const mask = 1 << (bit & 31);
      let n = -1;
      if (q.scope === "node") {
        n = closure.positionOf(nodeId);
        if (n < 0) return deny(result, "UNKNOWN_NODE");
      }
      if (!identity.active) return deny(result, "IDENTITY_INACTIVE");
      if (membership === undefined) return deny(result, "NO_MEMBERSHIP");
      if (membership !== "active") return deny(result, "MEMBERSHIP_INACTIVE");

      const records = subject?.records;
      let inScope = false;
      let scheduled = false;
      let expired = false;
      let grants: IndexedAssignment[] | undefined;
      if (records) {
        for (let k = 0; k < records.length; k++) {
          const rec = records[k];
          if (rec.posOf !== closure) {
            rec.pos = closure.positionOf(rec.nodeId);
            rec.posOf = closure;
          }
          const a = rec.pos;
          if (a < 0) continue;
          if (n >= 0 && !closure.containsPosition(a, n)) continue;
          inScope = true;
          const role = rec.role;
          if (role === undefined || role.deleted || word >= role.bits.length || (role.bits[word] & mask) === 0) continue;
          // Written so that only a positive answer grants: an invalid instant (NaN) matches nothing.
          if (q.at >= rec.effectiveFrom && (rec.effectiveTo === null || q.at < rec.effectiveTo)) (grants ??= []).push(rec);
          else if (q.at < rec.effectiveFrom) scheduled = true;
          else expired = true;
        }
      }
      if (!grants) {
        if (!inScope) return deny(result, "NO_ASSIGNMENT");
        if (scheduled) return deny(result, "ONLY_SCHEDULED");
        if (expired) return deny(result, "ONLY_EXPIRED");
        return deny(result, "PERMISSION_NOT_GRANTED");
      }

      result.allowed = true;
      let top = grants[0];
      const roles: Array<{ roleId: string; roleName: string }> = [];
      for (let k = 0; k < grants.length; k++) {
        const g = grants[k];
        if (k === 0 || !roles.some((r) => r.roleId === g.roleId)) roles.push({ roleId: g.roleId, roleName: g.role!.name });
        // closest to the root; ties broken by node id so the answer does not depend on insertion order
        const dg = closure.depthAt(g.pos);
        const dt = closure.depthAt(top.pos);
        if (dg < dt || (dg === dt && g.nodeId < top.nodeId)) top = g;
      }
      if (roles.length > 1) roles.sort((x, y) => (x.roleName < y.roleName ? -1 : x.roleName > y.roleName ? 1 : 0));
      result.grantingRoles = roles;
      if (q.scope === "app_wide") result.effectiveNodeId = top.nodeId;
      if (q.explain) {
        result.explanation = grants.map((g) => ({
          assignmentId: g.id,
          roleId: g.roleId,
          nodeId: g.nodeId,
          inherited: q.scope === "node" && g.nodeId !== nodeId,
          effectiveFrom: g.effectiveFrom,
          effectiveTo: g.effectiveTo,
        }));
      }
      return result;
    },
  };
}
