import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import type * as d from "../domain/model.js";
import { assignmentState } from "../domain/model.js";
import { InvalidArgumentError } from "../domain/errors.js";
import type { CheckResult, CheckScope as DomainScope, DenialReason as DomainDenial } from "../engine/index.js";
import type { ItemResult } from "../domain/assignment-service.js";
import type { NodeView } from "../domain/hierarchy-service.js";
import { AccessModel, AssignmentState, type ItemStatusSchema } from "../gen/canopy/v1/common_pb.js";
import { CheckScope, DenialReason, type CheckResponseSchema } from "../gen/canopy/v1/check_pb.js";
import type { AssignmentItemResultSchema, AssignmentSchema } from "../gen/canopy/v1/assignment_pb.js";
import type { HierarchySchemaSchema, NodeSchema } from "../gen/canopy/v1/hierarchy_pb.js";
import type { PermissionSchema, RoleSchema } from "../gen/canopy/v1/catalog_pb.js";
import { MembershipStatus, type AppMembershipSchema, type IdentitySchema } from "../gen/canopy/v1/identity_pb.js";
import type { ApiKeySchema, ApplicationSchema, EnvironmentSchema } from "../gen/canopy/v1/admin_pb.js";
import type * as pb from "../gen/canopy/v1/hierarchy_pb.js";

/**
 * protobuf <-> domain conversions. Times are epoch ms in the domain and Timestamps on the wire;
 * sub-millisecond nanos are truncated (the service is exact to the millisecond).
 */

/** 0001-01-01 .. 9999-12-31, the range google.protobuf.Timestamp allows. */
const MIN_SECONDS = -62135596800n;
const MAX_SECONDS = 253402300799n;

export function ts(ms: number): Timestamp {
  return create(TimestampSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms - Math.floor(ms / 1000) * 1000) * 1_000_000 });
}

export function optTs(ms: number | null): Timestamp | undefined {
  return ms === null ? undefined : ts(ms);
}

/**
 * Timestamp -> epoch ms, or null when unset. Out-of-range values are INVALID_ARGUMENT naming `field`,
 * or `field[index].name` when an item's `index` and `name` are given (built only then: a bulk import
 * converts a million items).
 */
export function msOf(t: Timestamp | undefined, field: string, index?: number, name?: string): number | null {
  if (t === undefined) return null;
  const fieldName = () => (index === undefined ? field : `${field}[${index}].${name}`);
  if (t.seconds < MIN_SECONDS || t.seconds > MAX_SECONDS) throw new InvalidArgumentError(fieldName(), "is outside 0001-01-01..9999-12-31");
  if (t.nanos < 0 || t.nanos > 999_999_999) throw new InvalidArgumentError(fieldName(), "nanos must be within 0..999999999");
  return Number(t.seconds) * 1000 + Math.floor(t.nanos / 1_000_000);
}

export const accessModelToPb = (m: d.AccessModel): AccessModel => (m === "flat" ? AccessModel.FLAT : AccessModel.HIERARCHY);

export function accessModelFromPb(m: AccessModel, field: string): d.AccessModel {
  if (m === AccessModel.FLAT) return "flat";
  if (m === AccessModel.HIERARCHY) return "hierarchy";
  throw new InvalidArgumentError(field, "must be FLAT or HIERARCHY");
}

export function scopeFromPb(s: CheckScope, field: string): DomainScope {
  if (s === CheckScope.UNSPECIFIED || s === CheckScope.NODE) return "node";
  if (s === CheckScope.APP_WIDE) return "app_wide";
  throw new InvalidArgumentError(field, `unknown scope ${s}`);
}

const SCOPE_PB: Record<DomainScope, CheckScope> = { node: CheckScope.NODE, app_wide: CheckScope.APP_WIDE };

const DENIAL_PB: Record<DomainDenial, DenialReason> = {
  UNKNOWN_IDENTITY: DenialReason.UNKNOWN_IDENTITY,
  UNKNOWN_PERMISSION: DenialReason.UNKNOWN_PERMISSION,
  UNKNOWN_NODE: DenialReason.UNKNOWN_NODE,
  IDENTITY_INACTIVE: DenialReason.IDENTITY_INACTIVE,
  NO_MEMBERSHIP: DenialReason.NO_MEMBERSHIP,
  MEMBERSHIP_INACTIVE: DenialReason.MEMBERSHIP_INACTIVE,
  NO_ASSIGNMENT: DenialReason.NO_ASSIGNMENT,
  PERMISSION_NOT_GRANTED: DenialReason.PERMISSION_NOT_GRANTED,
  ONLY_SCHEDULED: DenialReason.ONLY_SCHEDULED,
  ONLY_EXPIRED: DenialReason.ONLY_EXPIRED,
};

export const scopeToPb = (s: DomainScope): CheckScope => SCOPE_PB[s];

export const denialToPb = (d: DomainDenial | null): DenialReason => (d === null ? DenialReason.UNSPECIFIED : DENIAL_PB[d]);

/** A CheckResult as a CheckResponse. src/api/check-wire.ts encodes the same fields by hand (its test compares the bytes). */
export function checkResultToPb(r: CheckResult): MessageInitShape<typeof CheckResponseSchema> {
  return {
    allowed: r.allowed,
    identityId: r.identityId,
    permission: r.permission,
    scope: scopeToPb(r.scope),
    effectiveNodeId: r.effectiveNodeId,
    grantingRoles: r.grantingRoles,
    denialReason: denialToPb(r.denialReason),
    explanation: r.explanation.map((g) => ({
      assignmentId: g.assignmentId,
      roleId: g.roleId,
      nodeId: g.nodeId,
      inherited: g.inherited,
      effectiveFrom: ts(g.effectiveFrom),
      effectiveTo: optTs(g.effectiveTo),
    })),
    revision: BigInt(r.revision),
    at: ts(r.at),
  };
}

const STATE_PB: Record<d.AssignmentState, AssignmentState> = {
  scheduled: AssignmentState.SCHEDULED,
  active: AssignmentState.ACTIVE,
  expired: AssignmentState.EXPIRED,
};

export function stateFromPb(s: AssignmentState, field: string): d.AssignmentState | undefined {
  switch (s) {
    case AssignmentState.UNSPECIFIED:
      return undefined;
    case AssignmentState.SCHEDULED:
      return "scheduled";
    case AssignmentState.ACTIVE:
      return "active";
    case AssignmentState.EXPIRED:
      return "expired";
    default:
      throw new InvalidArgumentError(field, `unknown state ${s}`);
  }
}

/** `now` computes the lifecycle state at response time. */
export function assignmentToPb(a: d.Assignment, now: number): MessageInitShape<typeof AssignmentSchema> {
  return {
    id: a.id,
    identityId: a.identityId,
    roleId: a.roleId,
    nodeId: a.nodeId,
    effectiveFrom: ts(a.effectiveFrom),
    effectiveTo: optTs(a.effectiveTo),
    state: STATE_PB[assignmentState(a, now)],
    createTime: ts(a.createdAt),
    updateTime: ts(a.updatedAt),
  };
}

export function itemResultToPb(r: ItemResult, now: number): MessageInitShape<typeof AssignmentItemResultSchema> {
  return {
    index: r.index,
    status: r.status satisfies MessageInitShape<typeof ItemStatusSchema>,
    assignment: r.assignment ? assignmentToPb(r.assignment, now) : undefined,
  };
}

export function nodeToPb(n: NodeView): MessageInitShape<typeof NodeSchema> {
  return {
    id: n.id,
    parentId: n.parentId ?? "",
    type: n.type,
    name: n.name,
    externalId: n.externalId ?? "",
    metadata: n.metadata as MessageInitShape<typeof NodeSchema>["metadata"],
    depth: n.depth,
    createTime: ts(n.createdAt),
    updateTime: ts(n.updatedAt),
  };
}

export function schemaToPb(s: d.HierarchySchema | null): MessageInitShape<typeof HierarchySchemaSchema> | undefined {
  if (!s) return undefined;
  const allowedChildren: Record<string, { types: string[] }> = {};
  for (const [k, v] of Object.entries(s.allowedChildren)) allowedChildren[k] = { types: v };
  return { nodeTypes: s.nodeTypes, allowedChildren, maxDepth: s.maxDepth, rootNodeType: s.rootNodeType };
}

export function schemaFromPb(s: pb.HierarchySchema | undefined): d.HierarchySchema | null {
  if (!s) return null;
  const allowedChildren: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(s.allowedChildren)) allowedChildren[k] = [...v.types];
  return { nodeTypes: [...s.nodeTypes], allowedChildren, maxDepth: s.maxDepth, rootNodeType: s.rootNodeType };
}

export function permissionToPb(p: d.Permission): MessageInitShape<typeof PermissionSchema> {
  return { id: p.id, key: p.key, description: p.description, category: p.category, createTime: ts(p.createdAt), updateTime: ts(p.updatedAt) };
}

export function roleToPb(r: d.Role): MessageInitShape<typeof RoleSchema> {
  return { id: r.id, name: r.name, description: r.description, permissionKeys: r.permissionKeys, createTime: ts(r.createdAt), updateTime: ts(r.updatedAt) };
}

export function identityToPb(i: d.Identity): MessageInitShape<typeof IdentitySchema> {
  return {
    id: i.id,
    email: i.email,
    displayName: i.displayName,
    externalId: i.externalId ?? "",
    metadata: i.metadata as MessageInitShape<typeof IdentitySchema>["metadata"],
    isActive: i.isActive,
    createTime: ts(i.createdAt),
    updateTime: ts(i.updatedAt),
  };
}

export function membershipStatusFromPb(s: MembershipStatus, field: string): d.MembershipStatus {
  if (s === MembershipStatus.ACTIVE) return "active";
  if (s === MembershipStatus.INACTIVE) return "inactive";
  throw new InvalidArgumentError(field, "must be ACTIVE or INACTIVE");
}

export function membershipToPb(m: d.AppMembership): MessageInitShape<typeof AppMembershipSchema> {
  return {
    identityId: m.identityId,
    applicationId: m.applicationId,
    status: m.status === "active" ? MembershipStatus.ACTIVE : MembershipStatus.INACTIVE,
    createTime: ts(m.createdAt),
    updateTime: ts(m.updatedAt),
  };
}

export function applicationToPb(a: d.Application): MessageInitShape<typeof ApplicationSchema> {
  return { id: a.id, name: a.name, createTime: ts(a.createdAt) };
}

export function environmentToPb(e: d.Environment): MessageInitShape<typeof EnvironmentSchema> {
  return {
    id: e.id,
    applicationId: e.applicationId,
    name: e.name,
    accessModel: accessModelToPb(e.accessModel),
    rootNodeId: e.rootNodeId,
    revision: BigInt(e.revision),
    createTime: ts(e.createdAt),
  };
}

export function apiKeyToPb(k: d.ApiKey): MessageInitShape<typeof ApiKeySchema> {
  return {
    id: k.id,
    name: k.name,
    environmentId: k.environmentId ?? "",
    scopes: k.scopes,
    prefix: k.prefix,
    expireTime: optTs(k.expiresAt),
    revokeTime: optTs(k.revokedAt),
    createTime: ts(k.createdAt),
  };
}

/** int64 revision from the wire; negative is INVALID_ARGUMENT. */
export function revisionOf(v: bigint, field: string): number {
  if (v < 0n) throw new InvalidArgumentError(field, "must not be negative");
  return Number(v);
}
