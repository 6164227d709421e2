import type * as d from "../domain/model.js";
import { assignmentState } from "../domain/model.js";
import type { NodeView } from "../domain/hierarchy-service.js";
import type { CheckResult } from "../engine/index.js";
import { InvalidArgumentError } from "../domain/errors.js";

/**
 * Domain records as the REST surface's JSON: snake_case names, RFC 3339 UTC timestamps with
 * milliseconds, `null` for an absent optional value. Each shape is declared in src/rest/schemas.ts
 * (the OpenAPI document); the e2e tests validate real responses against it.
 */

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

// RFC 3339: date, "T", time, optional fraction, Z or an offset
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/;

/** Epoch ms of a UTC calendar date and time (setUTCFullYear: Date.UTC maps years 0..99 to 1900..1999). */
function utc(year: number, month: number, day: number, h = 0, mi = 0, s = 0, ms = 0): number {
  const t = new Date(0);
  t.setUTCFullYear(year, month - 1, day);
  t.setUTCHours(h, mi, s, ms);
  return t.getTime();
}

const MIN_MS = utc(1, 1, 1);
const MAX_MS = utc(9999, 12, 31, 23, 59, 59, 999);

/**
 * An RFC 3339 timestamp as epoch ms (digits past the millisecond are truncated, like the gRPC API),
 * within 0001-01-01..9999-12-31; anything else is INVALID_ARGUMENT naming `field`.
 */
export function parseTime(value: string, field: string): number {
  const m = RFC3339.exec(value);
  const bad = () => new InvalidArgumentError(field, `must be an RFC 3339 timestamp such as 2026-05-01T00:00:00Z (got ${JSON.stringify(value.slice(0, 64))})`);
  if (!m) throw bad();
  const [year, month, day, h, mi, s] = m.slice(1, 7).map(Number);
  const frac = m[7];
  const zone = m[8];
  const daysInMonth = new Date(utc(2000, month + 1, 0)).getUTCDate() + (month === 2 && !isLeap(year) ? -1 : 0);
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth || h > 23 || mi > 59 || s > 59) throw bad();
  let ms = utc(year, month, day, h, mi, s, frac ? Number(frac.slice(0, 3).padEnd(3, "0")) : 0);
  if (zone !== "Z" && zone !== "z") {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) throw bad();
    ms -= (zone[0] === "-" ? -1 : 1) * (oh * 60 + om) * 60_000;
  }
  if (ms < MIN_MS || ms > MAX_MS) throw new InvalidArgumentError(field, "is outside 0001-01-01..9999-12-31");
  return ms;
}

const isLeap = (y: number): boolean => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;

/** An optional timestamp: undefined (absent) stays undefined, null stays null. */
export function optionalTime(value: string | null | undefined, field: string): number | null | undefined {
  if (value === undefined || value === null) return value;
  return parseTime(value, field);
}

export function assignmentJson(a: d.Assignment, now: number) {
  return {
    id: a.id,
    identity_id: a.identityId,
    role_id: a.roleId,
    node_id: a.nodeId,
    effective_from: iso(a.effectiveFrom),
    effective_to: isoOrNull(a.effectiveTo),
    status: assignmentState(a, now),
    created_at: iso(a.createdAt),
    updated_at: iso(a.updatedAt),
  };
}

export function nodeJson(n: NodeView) {
  return {
    id: n.id,
    parent_id: n.parentId,
    type: n.type,
    name: n.name,
    external_id: n.externalId,
    metadata: n.metadata,
    depth: n.depth,
    created_at: iso(n.createdAt),
    updated_at: iso(n.updatedAt),
  };
}

export function permissionJson(p: d.Permission) {
  return { id: p.id, key: p.key, description: p.description, category: p.category, created_at: iso(p.createdAt), updated_at: iso(p.updatedAt) };
}

export function roleJson(r: d.Role) {
  return { id: r.id, name: r.name, description: r.description, permission_keys: r.permissionKeys, created_at: iso(r.createdAt), updated_at: iso(r.updatedAt) };
}

export function identityJson(i: d.Identity) {
  return {
    id: i.id,
    email: i.email,
    display_name: i.displayName,
    external_id: i.externalId,
    metadata: i.metadata,
    is_active: i.isActive,
    created_at: iso(i.createdAt),
    updated_at: iso(i.updatedAt),
  };
}

export function membershipJson(m: d.AppMembership) {
  return { identity_id: m.identityId, application_id: m.applicationId, status: m.status, created_at: iso(m.createdAt), updated_at: iso(m.updatedAt) };
}

export function schemaJson(s: d.HierarchySchema | null) {
  if (!s) return null;
  return { node_types: s.nodeTypes, allowed_children: s.allowedChildren, max_depth: s.maxDepth, root_node_type: s.rootNodeType };
}

export function schemaFromJson(s: { node_types?: string[]; allowed_children?: Record<string, string[]>; max_depth?: number; root_node_type?: string } | null): d.HierarchySchema | null {
  if (!s) return null;
  return { nodeTypes: s.node_types ?? [], allowedChildren: s.allowed_children ?? {}, maxDepth: s.max_depth ?? 0, rootNodeType: s.root_node_type ?? "" };
}

/** The answer of /permissions/evaluate: the seed's field names plus the revision and instant it was computed at. */
export function evaluationJson(r: CheckResult, explain: boolean) {
  const out: Record<string, unknown> = {
    allowed: r.allowed,
    identity_id: r.identityId,
    permission: r.permission,
    scope_evaluated: r.scope,
    effective_node_id: r.effectiveNodeId || null,
    granting_roles: r.grantingRoles.map((g) => ({ role_id: g.roleId, role_name: g.roleName })),
    denial_reason: r.denialReason,
    revision: r.revision,
    evaluated_at: iso(r.at),
  };
  if (explain) {
    out.explanation = r.explanation.map((g) => ({
      assignment_id: g.assignmentId,
      role_id: g.roleId,
      node_id: g.nodeId,
      inherited: g.inherited,
      effective_from: iso(g.effectiveFrom),
      effective_to: isoOrNull(g.effectiveTo),
    }));
  }
  return out;
}
