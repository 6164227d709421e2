import type { ColumnType } from "kysely";

/**
 * Kysely's view of the tables, as stored (see migrations.ts). These types describe what the drivers
 * hand back, quirks included, so that kysely-store.ts is forced to normalise them at the edge:
 * `bigint` ms times come back as numbers from SQLite and as strings from PostgreSQL, flags are 0/1
 * integers, JSON is text and the idempotency response is blob/bytea (a Buffer from both drivers).
 */

/** Epoch ms in a `bigint` column. */
export type EpochMs = ColumnType<number | string, number, number>;
/** Epoch ms or NULL for an open end. */
export type NullableEpochMs = ColumnType<number | string | null, number | null, number | null>;
/** Boolean stored as integer 0/1. */
export type Flag = ColumnType<number, number, number>;
/** JSON document stored as text. */
export type JsonText = string;
/** Binary column: blob on SQLite, bytea on PostgreSQL. */
export type Bytes = ColumnType<Uint8Array, Uint8Array, Uint8Array>;

export interface AccountsTable {
  id: string;
  name: string;
  created_at: EpochMs;
}

export interface ApplicationsTable {
  id: string;
  account_id: string;
  name: string;
  created_at: EpochMs;
}

export interface EnvironmentsTable {
  id: string;
  application_id: string;
  account_id: string;
  name: string;
  /** "flat" | "hierarchy" */
  access_model: string;
  hierarchy_schema: JsonText | null;
  root_node_id: string;
  revision: ColumnType<number, number | undefined, number>;
  created_at: EpochMs;
}

export interface ApiKeysTable {
  id: string;
  account_id: string;
  /** NULL = admin key */
  environment_id: string | null;
  name: string;
  key_hash: string;
  prefix: string;
  /** JSON array of scope names */
  scopes: JsonText;
  expires_at: NullableEpochMs;
  revoked_at: NullableEpochMs;
  created_at: EpochMs;
}

export interface IdentitiesTable {
  id: string;
  account_id: string;
  email: string;
  display_name: string;
  external_id: string | null;
  metadata: JsonText;
  is_active: Flag;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface AppMembershipsTable {
  identity_id: string;
  application_id: string;
  /** "active" | "inactive" */
  status: string;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface PermissionsTable {
  id: string;
  environment_id: string;
  key: string;
  description: string;
  category: string;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface RolesTable {
  id: string;
  environment_id: string;
  name: string;
  description: string;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface RolePermissionsTable {
  role_id: string;
  permission_id: string;
}

export interface NodesTable {
  id: string;
  environment_id: string;
  parent_id: string | null;
  type: string;
  name: string;
  external_id: string | null;
  metadata: JsonText;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface AssignmentsTable {
  id: string;
  environment_id: string;
  identity_id: string;
  role_id: string;
  node_id: string;
  effective_from: EpochMs;
  effective_to: NullableEpochMs;
  created_at: EpochMs;
  updated_at: EpochMs;
}

export interface IdempotencyKeysTable {
  environment_id: string;
  key: string;
  request_hash: string;
  response: Bytes;
  created_at: EpochMs;
}

/** The whole database, for `Kysely<Database>`. */
export interface Database {
  accounts: AccountsTable;
  applications: ApplicationsTable;
  environments: EnvironmentsTable;
  api_keys: ApiKeysTable;
  identities: IdentitiesTable;
  app_memberships: AppMembershipsTable;
  permissions: PermissionsTable;
  roles: RolesTable;
  role_permissions: RolePermissionsTable;
  nodes: NodesTable;
  assignments: AssignmentsTable;
  idempotency_keys: IdempotencyKeysTable;
}
