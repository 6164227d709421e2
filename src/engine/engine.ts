import { Closure, type TreeNode } from "./closure.js";

/**
 * The evaluation engine: per environment an in-memory closure of the hierarchy, the role → permission
 * sets and a per-identity index of assignments; account-wide identity state and per-application
 * memberships. Pure: no I/O, no clock. The services apply every committed write here before the
 * write RPC returns, so a check sees a write as soon as it is acknowledged.
 */

export type CheckScope = "node" | "app_wide";

/** Why a check was denied. Order of evaluation is documented in README ("Denial reasons"). */
export const DENIAL_REASONS = [
  "UNKNOWN_IDENTITY",
  "UNKNOWN_PERMISSION",
  "UNKNOWN_NODE",
  "IDENTITY_INACTIVE",
  "NO_MEMBERSHIP",
  "MEMBERSHIP_INACTIVE",
  "NO_ASSIGNMENT",
  "PERMISSION_NOT_GRANTED",
  "ONLY_SCHEDULED",
  "ONLY_EXPIRED",
] as const;
export type DenialReason = (typeof DENIAL_REASONS)[number];

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
 * Numbers per assignment in a Subject's `data`: node slot (the closure's stable slot), role slot,
 * effective from, effective to (+Infinity = never). A check reads one packed array per identity
 * instead of chasing an object per assignment.
 */
const STRIDE = 4;

interface EnvironmentState {
  readonly id: string;
  readonly accountId: string;
  readonly applicationId: string;
  revision: number;
  closure: Closure;
  readonly permissions: Set<string>;
  /** permission key -> small integer, stable while the key exists (role bit positions) */
  readonly permIndex: Map<string, number>;
  readonly roles: Map<string, RoleState>;
  /** role id -> role slot (kept for the environment's lifetime, also for ids not defined yet) */
  readonly roleSlots: Map<string, number>;
  /** role slot -> id, and -> the live role (undefined when not defined or removed) */
  readonly roleIds: string[];
  readonly roleBySlot: Array<RoleState | undefined>;
  readonly byIdentity: Map<string, Subject>;
  /** assignment id -> the subject holding it; complete only when `pendingIds` is null */
  readonly byId: Map<string, Subject>;
  /** after a load: the subjects whose ids are not in `byId` yet, from `next` on */
  pendingIds: { subjects: Subject[]; next: number } | null;
}

/** One object per identity id for the engine's lifetime (mutated in place). */
interface IdentityState {
  accountId: string;
  active: boolean;
  exists: boolean;
}

/** One object per (application, identity) for the engine's lifetime; status null = no membership. */
interface MembershipState {
  status: "active" | "inactive" | null;
}

const MEMBER_NONE = 0;
const MEMBER_ACTIVE = 1;
const MEMBER_INACTIVE = 2;

/**
 * An identity's entry in one environment: one packed array of numbers — [facts epoch, facts, then
 * STRIDE numbers per assignment in insertion order] — carrying the assignment ids and the identity id
 * as named properties. A check reads the Map entry, this array and its elements, nothing else: the
 * identity/membership facts it needs are cached here, valid while element 0 equals the engine's facts
 * epoch (bumped by every identity or membership change).
 */
interface Subject extends Array<number> {
  identityId: string;
  ids: string[];
}

/** Subject elements before the first assignment: facts epoch, facts (FACT_* bits | membership << 2). */
const HEADER = 2;
const FACT_KNOWN = 1;
const FACT_ACTIVE = 2;

/** An environment being loaded in pages; nothing is visible to checks until `commit`. */
export interface EnvironmentLoader {
  addAssignments(rows: readonly AssignmentRecord[]): void;
  /** swaps the loaded state in (replacing any earlier state of the environment) */
  commit(): void;
}

export interface Engine {
  loadEnvironment(s: EnvironmentSnapshot): void;
  /**
   * Builds up to `maxItems` more of the assignment-id index of a freshly loaded environment; true
   * once it is complete. Writes complete it themselves first, so calling this is only about doing
   * that work early, in slices, instead of inside the first write after a load.
   */
  indexIds(environmentId: string, maxItems: number): boolean;
  /** Starts loading an environment whose assignments arrive in pages (see EnvironmentLoader). */
  beginEnvironment(s: Omit<EnvironmentSnapshot, "assignments">): EnvironmentLoader;
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
  /**
   * The id of the identity's first assignment (insertion order) with this role at this node whose
   * window [from, to) overlaps the given one (to null = never ends), skipping `exceptId`; undefined
   * when there is none. The duplicate rule of writes, without building records.
   */
  findOverlapping(environmentId: string, identityId: string, roleId: string, nodeId: string, from: number, to: number | null, exceptId?: string): string | undefined;
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
  /** bumped by every identity or membership change: cached Subject facts older than this are stale */
  let factsEpoch = 1;

  function env(id: string): EnvironmentState {
    const e = envs.get(id);
    if (!e) throw new Error(`environment ${id} is not loaded in the engine`);
    return e;
  }

  function roleSlot(e: EnvironmentState, roleId: string): number {
    let s = e.roleSlots.get(roleId);
    if (s === undefined) {
      s = e.roleIds.length;
      e.roleSlots.set(roleId, s);
      e.roleIds.push(roleId);
      e.roleBySlot.push(undefined);
    }
    return s;
  }

  /** Adds up to `max` pending ids to the id index; true when it is complete. */
  function indexPendingIds(e: EnvironmentState, max: number): boolean {
    const p = e.pendingIds;
    if (p === null) return true;
    let n = 0;
    while (p.next < p.subjects.length && n < max) {
      const subject = p.subjects[p.next++];
      for (const id of subject.ids) e.byId.set(id, subject);
      n += subject.ids.length;
    }
    if (p.next < p.subjects.length) return false;
    e.pendingIds = null;
    return true;
  }

  /**
   * Indexes an assignment. `fresh` (a load from storage, whose ids are unique) skips the replace
   * check and leaves the id index to indexPendingIds.
   */
  function indexAssignment(e: EnvironmentState, a: AssignmentRecord, fresh = false): void {
    if (!fresh) {
      indexPendingIds(e, Infinity);
      const old = e.byId.get(a.id);
      if (old) unindex(e, old, a.id);
    }
    let subject = e.byIdentity.get(a.identityId);
    if (!subject) {
      subject = [0, 0] as unknown as Subject;
      subject.identityId = a.identityId;
      subject.ids = [];
      e.byIdentity.set(a.identityId, subject);
    }
    subject.push(e.closure.slotForId(a.nodeId), roleSlot(e, a.roleId), a.effectiveFrom, a.effectiveTo === null ? Infinity : a.effectiveTo);
    subject.ids.push(a.id);
    if (!fresh) e.byId.set(a.id, subject);
  }

  function unindex(e: EnvironmentState, subject: Subject, id: string): void {
    e.byId.delete(id);
    const i = subject.ids.indexOf(id);
    if (i < 0) return;
    subject.ids.splice(i, 1);
    subject.splice(HEADER + i * STRIDE, STRIDE);
    if (subject.ids.length === 0) e.byIdentity.delete(subject.identityId);
  }

  function recordOf(e: EnvironmentState, subject: Subject, k: number): AssignmentRecord {
    const d = subject;
    const base = HEADER + k * STRIDE;
    const to = d[base + 3];
    return {
      id: subject.ids[k],
      identityId: subject.identityId,
      roleId: e.roleIds[d[base + 1]],
      nodeId: e.closure.idOfSlot(d[base]),
      effectiveFrom: d[base + 2],
      effectiveTo: to === Infinity ? null : to,
    };
  }

  /** Re-reads an identity's facts into its entry (after an identity or membership change). */
  function refresh(e: EnvironmentState, subject: Subject): void {
    const identity = identities.get(subject.identityId);
    const m = memberships.get(e.applicationId)?.get(subject.identityId);
    const known = identity !== undefined && identity.exists && identity.accountId === e.accountId;
    const active = identity !== undefined && identity.active;
    const membership = m?.status === "active" ? MEMBER_ACTIVE : m?.status === "inactive" ? MEMBER_INACTIVE : MEMBER_NONE;
    subject[1] = (known ? FACT_KNOWN : 0) | (active ? FACT_ACTIVE : 0) | (membership << 2);
    subject[0] = factsEpoch;
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
    factsEpoch++;
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

  function newEnvironment(s: Omit<EnvironmentSnapshot, "assignments">): EnvironmentState {
    const e: EnvironmentState = {
        id: s.id,
        accountId: s.accountId,
        applicationId: s.applicationId,
        revision: s.revision,
        closure: new Closure(s.nodes, s.rootNodeId),
        permissions: new Set(s.permissionKeys),
        permIndex: new Map(),
        roles: new Map(),
        roleSlots: new Map(),
        roleIds: [],
        roleBySlot: [],
        byIdentity: new Map(),
        byId: new Map(),
        pendingIds: null,
      };
      for (const k of e.permissions) e.permIndex.set(k, e.permIndex.size);
      for (const r of s.roles) {
        const state = makeRole(e, r);
        e.roles.set(r.id, state);
        e.roleBySlot[roleSlot(e, r.id)] = state;
      }
    return e;
  }

  return {
    loadEnvironment(s) {
      const e = newEnvironment(s);
      for (const a of s.assignments) indexAssignment(e, a);
      envs.set(s.id, e);
    },
    beginEnvironment(s) {
      const e = newEnvironment(s);
      return {
        addAssignments(rows) {
          for (let i = 0; i < rows.length; i++) indexAssignment(e, rows[i], true);
        },
        commit() {
          e.pendingIds = { subjects: [...e.byIdentity.values()], next: 0 };
          envs.set(s.id, e);
        },
      };
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
      factsEpoch++;
      const state = identities.get(identityId);
      if (state) {
        state.accountId = accountId;
        state.active = active;
        state.exists = true;
      } else identities.set(identityId, { accountId, active, exists: true });
    },
    removeIdentity(identityId) {
      factsEpoch++;
      const state = identities.get(identityId);
      if (state) state.exists = false;
    },
    setMembership(applicationId, identityId, status) {
      putMembership(applicationId, identityId, status);
    },

    resetMemberships(applicationId, entries) {
      factsEpoch++;
      const next = new Map<string, "active" | "inactive">();
      for (const e of entries) next.set(e.identityId, e.status);
      const m = memberships.get(applicationId);
      if (m) for (const [identityId, state] of m) if (!next.has(identityId)) state.status = null;
      for (const [identityId, status] of next) putMembership(applicationId, identityId, status);
    },
    applyNodes(id, change) {
      const e = env(id);
      // Build first, swap after: a failed build leaves the old closure in place.
      e.closure = e.closure.withChanges(change);
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
        // same object, new fields
        const next = makeRole(e, role);
        current.name = next.name;
        current.bits = next.bits;
        current.permissions = next.permissions;
        return;
      }
      const state = makeRole(e, role);
      e.roles.set(role.id, state);
      e.roleBySlot[roleSlot(e, role.id)] = state;
    },
    removeRole(id, roleId) {
      const e = env(id);
      const r = e.roles.get(roleId);
      if (r) r.deleted = true;
      e.roles.delete(roleId);
      const slot = e.roleSlots.get(roleId);
      if (slot !== undefined) e.roleBySlot[slot] = undefined;
    },
    putAssignment(id, a) {
      indexAssignment(env(id), a);
    },
    indexIds(id, maxItems) {
      return indexPendingIds(env(id), maxItems);
    },
    removeAssignment(id, assignmentId) {
      const e = env(id);
      indexPendingIds(e, Infinity);
      const subject = e.byId.get(assignmentId);
      if (subject) unindex(e, subject, assignmentId);
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
    findOverlapping(id, identityId, roleId, nodeId, from, to, exceptId) {
      const e = env(id);
      const subject = e.byIdentity.get(identityId);
      const role = e.roleSlots.get(roleId);
      const node = e.closure.slotOfAny(nodeId);
      if (subject === undefined || role === undefined || node < 0) return undefined;
      const end = to === null ? Infinity : to;
      for (let k = 0, base = HEADER; base < subject.length; k++, base += STRIDE) {
        // same overlap test as the services' windowsOverlap: a.from < b.end && b.from < a.end
        if (subject[base] === node && subject[base + 1] === role && subject[base + 2] < end && from < subject[base + 3] && subject.ids[k] !== exceptId) return subject.ids[k];
      }
      return undefined;
    },
    assignmentsOf(id, identityId) {
      const e = env(id);
      const subject = e.byIdentity.get(identityId);
      return subject ? subject.ids.map((_, k) => recordOf(e, subject, k)) : NO_ASSIGNMENTS;
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
      // One lookup for an identity with assignments here: the facts a check needs are cached on its entry.
      const subject = e.byIdentity.get(q.identityId);
      let known: boolean;
      let active: boolean;
      let membership: number;
      if (subject !== undefined) {
        if (subject[0] !== factsEpoch) refresh(e, subject);
        const facts = subject[1];
        known = (facts & FACT_KNOWN) !== 0;
        active = (facts & FACT_ACTIVE) !== 0;
        membership = facts >> 2;
      } else {
        const identity = identities.get(q.identityId);
        const m = memberships.get(e.applicationId)?.get(q.identityId);
        known = identity !== undefined && identity.exists && identity.accountId === e.accountId;
        active = identity !== undefined && identity.active;
        membership = m?.status === "active" ? MEMBER_ACTIVE : m?.status === "inactive" ? MEMBER_INACTIVE : MEMBER_NONE;
      }
      if (!known || (q.membersOnly && membership === MEMBER_NONE)) return deny(result, "UNKNOWN_IDENTITY");
      const bit = e.permIndex.get(q.permission);
      if (bit === undefined) return deny(result, "UNKNOWN_PERMISSION");
      const word = bit >>> 5;
      const mask = 1 << (bit & 31);
      let n = -1;
      if (q.scope === "node") {
        const ns = closure.slotOf(nodeId);
        if (ns < 0) return deny(result, "UNKNOWN_NODE");
        n = closure.positionOfSlot(ns);
      }
      if (!active) return deny(result, "IDENTITY_INACTIVE");
      if (membership === MEMBER_NONE) return deny(result, "NO_MEMBERSHIP");
      if (membership !== MEMBER_ACTIVE) return deny(result, "MEMBERSHIP_INACTIVE");

      let inScope = false;
      let scheduled = false;
      let expired = false;
      let grants: number[] | undefined;
      if (subject !== undefined) {
        const d = subject;
        const at = q.at;
        for (let base = HEADER; base < d.length; base += STRIDE) {
          const nodeSlot = d[base];
          const a = closure.positionOfSlot(nodeSlot);
          if (a < 0) continue;
          if (n >= 0 && (a > n || n >= closure.subtreeEndOfSlot(nodeSlot))) continue;
          inScope = true;
          const role = e.roleBySlot[d[base + 1]];
          if (role === undefined || role.deleted || word >= role.bits.length || (role.bits[word] & mask) === 0) continue;
          // Written so that only a positive answer grants: an invalid instant (NaN) matches nothing.
          if (at >= d[base + 2] && at < d[base + 3]) (grants ??= []).push((base - HEADER) / STRIDE);
          else if (at < d[base + 2]) scheduled = true;
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
      const d = subject!;
      let top = grants[0];
      let topNode = d[HEADER + top * STRIDE];
      const roles: Array<{ roleId: string; roleName: string }> = [];
      for (let k = 0; k < grants.length; k++) {
        const g = grants[k];
        const role = e.roleBySlot[d[HEADER + g * STRIDE + 1]]!;
        if (k === 0 || !roles.some((r) => r.roleId === role.id)) roles.push({ roleId: role.id, roleName: role.name });
        // closest to the root; ties broken by node id so the answer does not depend on insertion order
        const gNode = d[HEADER + g * STRIDE];
        const dg = closure.depthOfSlot(gNode);
        const dt = closure.depthOfSlot(topNode);
        if (dg < dt || (dg === dt && closure.idOfSlot(gNode) < closure.idOfSlot(topNode))) {
          top = g;
          topNode = gNode;
        }
      }
      if (roles.length > 1) roles.sort((x, y) => (x.roleName < y.roleName ? -1 : x.roleName > y.roleName ? 1 : 0));
      result.grantingRoles = roles;
      if (q.scope === "app_wide") result.effectiveNodeId = closure.idOfSlot(topNode);
      if (q.explain) {
        result.explanation = grants.map((g) => {
          const r = recordOf(e, subject!, g);
          return {
            assignmentId: r.id,
            roleId: r.roleId,
            nodeId: r.nodeId,
            inherited: q.scope === "node" && r.nodeId !== nodeId,
            effectiveFrom: r.effectiveFrom,
            effectiveTo: r.effectiveTo,
          };
        });
      }
      return result;
    },
  };
}
