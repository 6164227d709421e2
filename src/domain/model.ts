/**
 * Plain domain records shared by the store, the engine and the services.
 * Times are epoch milliseconds (integers); `null` for an open end. No protobuf, no SQL types here:
 * the store normalises dialect quirks into these shapes and the API layer converts them to messages.
 */

/** Access model of an environment: `flat` keeps only the root node. */
export type AccessModel = "flat" | "hierarchy";

/** Optional schema constraining node types, parent/child pairs and depth (root = depth 1). */
export interface HierarchySchema {
  nodeTypes: string[];
  /** type -> allowed child types; a type absent or mapped to [] is a leaf. */
  allowedChildren: Record<string, string[]>;
  /** 0 = only the server limit applies. */
  maxDepth: number;
  rootNodeType: string;
}

export interface Account {
  id: string;
  name: string;
  createdAt: number;
}

export interface Application {
  id: string;
  accountId: string;
  name: string;
  createdAt: number;
}

export interface Environment {
  id: string;
  applicationId: string;
  accountId: string;
  name: string;
  accessModel: AccessModel;
  schema: HierarchySchema | null;
  rootNodeId: string;
  revision: number;
  createdAt: number;
}

export type ApiKeyScope =
  | "check"
  | "read"
  | "assignments:write"
  | "hierarchy:write"
  | "catalog:write"
  | "identities:write"
  | "admin";

export interface ApiKey {
  id: string;
  accountId: string;
  /** null = admin key for the account. */
  environmentId: string | null;
  name: string;
  /** sha256 hex of the full secret; the secret itself is never stored. */
  keyHash: string;
  /** first characters of the secret, for recognising a key in listings. */
  prefix: string;
  /** empty = every scope of the key's kind. */
  scopes: ApiKeyScope[];
  expiresAt: number | null;
  revokedAt: number | null;
  createdAt: number;
}

export type JsonObject = { [k: string]: unknown };

export interface Identity {
  id: string;
  accountId: string;
  email: string;
  displayName: string;
  externalId: string | null;
  metadata: JsonObject;
  isActive: boolean;
  createdAt: number;
  updatedAt: number;
}

export type MembershipStatus = "active" | "inactive";

export interface AppMembership {
  identityId: string;
  applicationId: string;
  status: MembershipStatus;
  createdAt: number;
  updatedAt: number;
}

export interface Permission {
  id: string;
  environmentId: string;
  key: string;
  description: string;
  category: string;
  createdAt: number;
  updatedAt: number;
}

export interface Role {
  id: string;
  environmentId: string;
  name: string;
  description: string;
  /** permission keys, sorted. */
  permissionKeys: string[];
  createdAt: number;
  updatedAt: number;
}

export interface HierarchyNode {
  id: string;
  environmentId: string;
  /** null for the root. */
  parentId: string | null;
  type: string;
  name: string;
  externalId: string | null;
  metadata: JsonObject;
  createdAt: number;
  updatedAt: number;
}

export interface Assignment {
  id: string;
  environmentId: string;
  identityId: string;
  roleId: string;
  nodeId: string;
  effectiveFrom: number;
  /** null = never expires. */
  effectiveTo: number | null;
  createdAt: number;
  updatedAt: number;
}

export type AssignmentState = "scheduled" | "active" | "expired";

/** Half-open window: active iff from <= t < to. */
export function assignmentState(a: Pick<Assignment, "effectiveFrom" | "effectiveTo">, t: number): AssignmentState {
  if (t < a.effectiveFrom) return "scheduled";
  if (a.effectiveTo !== null && t >= a.effectiveTo) return "expired";
  return "active";
}

/** Two half-open windows overlap iff each starts before the other ends. */
export function windowsOverlap(
  a: Pick<Assignment, "effectiveFrom" | "effectiveTo">,
  b: Pick<Assignment, "effectiveFrom" | "effectiveTo">,
): boolean {
  const aEnd = a.effectiveTo ?? Number.POSITIVE_INFINITY;
  const bEnd = b.effectiveTo ?? Number.POSITIVE_INFINITY;
  return a.effectiveFrom < bEnd && b.effectiveFrom < aEnd;
}

/** A page of results plus the opaque token of the next page ("" = last page). */
export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

/** Keyset page request: ids are UUIDv7, so ordering by id is creation order. */
export interface PageRequest {
  /** already validated: 1..max */
  pageSize: number;
  /** id after which to continue (decoded from the page token), or "" for the first page. */
  afterId: string;
}
