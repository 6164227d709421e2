import type {
  Account,
  AccessModel,
  ApiKey,
  AppMembership,
  Application,
  Assignment,
  AssignmentState,
  Environment,
  HierarchyNode,
  HierarchySchema,
  Identity,
  JsonObject,
  MembershipStatus,
  Permission,
  Role,
} from "../domain/model.js";

/**
 * The storage boundary. Services talk to storage only through these narrow readers and writers;
 * handlers never see SQL and the engine never sees the store. Every dialect (SQLite now, PostgreSQL
 * next) implements the same interface and passes the same conformance suite (test/conformance).
 *
 * Conventions: times are epoch ms; lists are ordered by id (ids are UUIDv7, so id order is creation
 * order) and paged by keyset: `{ limit, afterId }` returns up to `limit` rows with id > afterId, or
 * by offset for numbered pages: `{ limit, afterId: "", offset }` skips `offset` rows first. Each such
 * list has a `count…` sibling taking the same filter, so a numbered page can report its total.
 * Reads of a missing row return `undefined`, never throw. Constraint violations surface as
 * `StoreConflictError` (unique) so services can map them without knowing the dialect.
 */

/** Window over an id-ordered list. `afterId` "" = from the start (then skipping `offset` rows, if set). */
export interface Keyset {
  limit: number;
  afterId: string;
  /** rows to skip (numbered pages); only used when `afterId` is "" */
  offset?: number;
}

export interface IdentityFilter {
  accountId: string;
  /** only identities holding a membership (any status) in this application */
  applicationId?: string;
  email?: string;
  externalId?: string;
  isActive?: boolean;
}

export interface AssignmentFilter {
  identityId?: string;
  nodeId?: string;
  roleId?: string;
  /** evaluated at `at` with the half-open window rule */
  state?: AssignmentState;
  at: number;
}

export interface IdempotencyRecord {
  environmentId: string;
  key: string;
  /** sha256 hex of the canonical request, to refuse a reused key with a different request */
  requestHash: string;
  /** the serialized first response */
  response: Uint8Array;
  createdAt: number;
}

export interface EnvironmentPatch {
  accessModel?: AccessModel;
  /** null removes the schema */
  schema?: HierarchySchema | null;
  rootNodeId?: string;
}

export interface IdentityPatch {
  email?: string;
  displayName?: string;
  externalId?: string | null;
  metadata?: JsonObject;
  isActive?: boolean;
  updatedAt: number;
}

export interface PermissionPatch {
  description?: string;
  category?: string;
  updatedAt: number;
}

export interface RolePatch {
  name?: string;
  description?: string;
  updatedAt: number;
}

export interface NodePatch {
  name?: string;
  externalId?: string | null;
  metadata?: JsonObject;
  parentId?: string;
  /** only the root's type changes, to follow a schema's root_node_type */
  type?: string;
  updatedAt: number;
}

export interface AssignmentPatch {
  roleId?: string;
  effectiveFrom?: number;
  effectiveTo?: number | null;
  updatedAt: number;
}

/** Read side. Also available inside a transaction (then it reads the transaction's own writes). */
export interface StoreReader {
  getDefaultAccount(): Promise<Account | undefined>;
  getAccount(id: string): Promise<Account | undefined>;
  listAllAccounts(): Promise<Account[]>;

  getApplication(id: string): Promise<Application | undefined>;
  listApplications(accountId: string, page: Keyset): Promise<Application[]>;

  getEnvironment(id: string): Promise<Environment | undefined>;
  /** all environments of the account, optionally of one application, ordered by id */
  listEnvironments(accountId: string, applicationId?: string): Promise<Environment[]>;
  /** every environment in the database (engine warm-up) */
  listAllEnvironments(): Promise<Environment[]>;

  getApiKey(id: string): Promise<ApiKey | undefined>;
  getApiKeyByHash(keyHash: string): Promise<ApiKey | undefined>;
  /** keys of the account; `environmentId` null = admin keys only, undefined = all */
  listApiKeys(accountId: string, environmentId?: string | null): Promise<ApiKey[]>;

  getIdentity(id: string): Promise<Identity | undefined>;
  getIdentitiesByIds(ids: string[]): Promise<Identity[]>;
  getIdentityByEmail(accountId: string, email: string): Promise<Identity | undefined>;
  getIdentityByExternalId(accountId: string, externalId: string): Promise<Identity | undefined>;
  listIdentities(filter: IdentityFilter, page: Keyset): Promise<Identity[]>;
  /** how many identities `listIdentities(filter, …)` pages over */
  countIdentities(filter: IdentityFilter): Promise<number>;
  /** every identity of the account (engine warm-up) */
  listAllIdentities(accountId: string): Promise<Identity[]>;

  getMembership(identityId: string, applicationId: string): Promise<AppMembership | undefined>;
  listMembershipsOfIdentity(identityId: string): Promise<AppMembership[]>;
  /** every membership of the application (engine warm-up) */
  listMembershipsOfApplication(applicationId: string): Promise<AppMembership[]>;

  getPermission(environmentId: string, id: string): Promise<Permission | undefined>;
  getPermissionsByKeys(environmentId: string, keys: string[]): Promise<Permission[]>;
  listPermissions(environmentId: string, category: string | undefined, page: Keyset): Promise<Permission[]>;
  countPermissions(environmentId: string, category: string | undefined): Promise<number>;
  listAllPermissions(environmentId: string): Promise<Permission[]>;

  getRole(environmentId: string, id: string): Promise<Role | undefined>;
  getRoleByName(environmentId: string, name: string): Promise<Role | undefined>;
  listRoles(environmentId: string, page: Keyset): Promise<Role[]>;
  countRoles(environmentId: string): Promise<number>;
  listAllRoles(environmentId: string): Promise<Role[]>;

  getNode(environmentId: string, id: string): Promise<HierarchyNode | undefined>;
  getNodesByIds(environmentId: string, ids: string[]): Promise<HierarchyNode[]>;
  listChildren(environmentId: string, parentId: string, page: Keyset): Promise<HierarchyNode[]>;
  countChildren(environmentId: string, parentId: string): Promise<number>;
  listAllNodes(environmentId: string): Promise<HierarchyNode[]>;

  getAssignment(environmentId: string, id: string): Promise<Assignment | undefined>;
  getAssignmentsByIds(environmentId: string, ids: string[]): Promise<Assignment[]>;
  listAssignments(environmentId: string, filter: AssignmentFilter, page: Keyset): Promise<Assignment[]>;
  /** how many assignments `listAssignments(environmentId, filter, …)` pages over (state evaluated at `filter.at`) */
  countAssignments(environmentId: string, filter: AssignmentFilter): Promise<number>;
  /** every assignment of these identities in the environment (duplicate detection) */
  listAssignmentsOfIdentities(environmentId: string, identityIds: string[]): Promise<Assignment[]>;
  listAllAssignments(environmentId: string): Promise<Assignment[]>;
  /**
   * Every assignment of the environment, only the fields the engine indexes, in pages of at most
   * `pageSize` rows (keyset order by id) handed to `onPage` as they are read: loading a large
   * environment never holds all rows as objects at once. Resolves with the number of rows.
   */
  scanAssignments(environmentId: string, onPage: (rows: AssignmentFacts[]) => void, pageSize?: number): Promise<number>;
  /** The tree as the engine needs it: (id, parentId, type) of every node, by id. */
  listTreeNodes(environmentId: string): Promise<Array<{ id: string; parentId: string | null; type: string }>>;
  /** (identityId, status) of every membership of the application. */
  listMembershipStates(applicationId: string): Promise<Array<{ identityId: string; status: "active" | "inactive" }>>;
  /** Every identity of the account as (id, active), in pages like scanAssignments. */
  scanIdentityStates(accountId: string, onPage: (rows: Array<{ id: string; accountId: string; isActive: boolean }>) => void, pageSize?: number): Promise<number>;
  countAssignmentsOnNodes(environmentId: string, nodeIds: string[]): Promise<number>;
  countAssignmentsOfRole(environmentId: string, roleId: string): Promise<number>;

  getIdempotencyRecord(environmentId: string, key: string): Promise<IdempotencyRecord | undefined>;
}

/** The fields of an assignment the engine indexes (no timestamps of record). */
export interface AssignmentFacts {
  id: string;
  identityId: string;
  roleId: string;
  nodeId: string;
  effectiveFrom: number;
  effectiveTo: number | null;
}

/** Write side: only inside `Store.transaction`. */
export interface StoreWriter extends StoreReader {
  insertAccount(a: Account): Promise<void>;
  insertApplication(a: Application): Promise<void>;
  insertEnvironment(e: Environment): Promise<void>;
  updateEnvironment(id: string, patch: EnvironmentPatch): Promise<void>;
  /** revision := revision + 1, returns the new revision */
  bumpRevision(environmentId: string): Promise<number>;
  /** deletes the environment and everything in it (nodes, catalog, assignments, keys, idempotency) */
  deleteEnvironment(id: string): Promise<void>;

  insertApiKey(k: ApiKey): Promise<void>;
  revokeApiKey(id: string, at: number): Promise<void>;

  insertIdentity(i: Identity): Promise<void>;
  updateIdentity(id: string, patch: IdentityPatch): Promise<void>;

  insertMembership(m: AppMembership): Promise<void>;
  updateMembershipStatus(identityId: string, applicationId: string, status: MembershipStatus, at: number): Promise<void>;
  deleteMembership(identityId: string, applicationId: string): Promise<void>;

  insertPermissions(ps: Permission[]): Promise<void>;
  updatePermission(id: string, patch: PermissionPatch): Promise<void>;
  /** also removes it from every role */
  deletePermission(id: string): Promise<void>;

  /** inserts the role and its permission links (`permissionIds` resolved by the caller) */
  insertRole(r: Omit<Role, "permissionKeys">, permissionIds: string[]): Promise<void>;
  updateRole(id: string, patch: RolePatch): Promise<void>;
  setRolePermissions(roleId: string, permissionIds: string[], at: number): Promise<void>;
  deleteRole(id: string): Promise<void>;

  insertNode(n: HierarchyNode): Promise<void>;
  updateNode(id: string, patch: NodePatch): Promise<void>;
  /** deletes the nodes (caller passes a whole subtree; children before parents is not required) */
  deleteNodes(environmentId: string, ids: string[]): Promise<void>;

  insertAssignments(as: Assignment[]): Promise<void>;
  updateAssignment(id: string, patch: AssignmentPatch): Promise<void>;
  /** returns the ids actually deleted */
  deleteAssignments(environmentId: string, ids: string[]): Promise<string[]>;
  deleteAssignmentsOnNodes(environmentId: string, nodeIds: string[]): Promise<string[]>;
  deleteAssignmentsOfRole(environmentId: string, roleId: string): Promise<string[]>;
  /** deletes the identity's assignments in the given environments; returns them */
  deleteAssignmentsOfIdentity(identityId: string, environmentIds: string[]): Promise<Assignment[]>;

  /**
   * Takes the environment's write lock for the rest of the transaction (PostgreSQL: a row lock on the
   * environment, so writers on every replica queue up; SQLite: already single-writer) and returns the
   * environment's committed revision, or undefined when it no longer exists.
   */
  lockEnvironment(environmentId: string): Promise<number | undefined>;
  /**
   * Takes the account's lock for the rest of the transaction (PostgreSQL: row lock). Writes whose set
   * of affected environments depends on the account's environments (identity and membership writes,
   * environment creation and deletion) take it first, so that set cannot change underneath them.
   */
  lockAccount(accountId: string): Promise<void>;
  /** Serializes first-start bootstrap across processes (PostgreSQL advisory lock; SQLite: no-op). */
  lockBootstrap(): Promise<void>;
  /** Tells other replicas, when this transaction commits, that the environment reached `revision` (-1 = deleted). */
  notifyChange(environmentId: string, revision: number): Promise<void>;

  putIdempotencyRecord(r: IdempotencyRecord): Promise<void>;
  deleteIdempotencyRecordsBefore(createdBefore: number): Promise<number>;
}

/** A unique or foreign-key constraint refused a write. `constraint` is a hint, not an API. */
export class StoreConflictError extends Error {
  constructor(message: string, readonly constraint: "unique" | "foreign_key", override readonly cause?: unknown) {
    super(message);
    this.name = "StoreConflictError";
  }
}

/** The storage backend cannot be reached or failed (mapped to UNAVAILABLE). */
export class StoreUnavailableError extends Error {
  constructor(message: string, override readonly cause?: unknown) {
    super(message);
    this.name = "StoreUnavailableError";
  }
}

/** A change another replica committed, as carried by a notification. */
export interface ChangeNotice {
  environmentId: string;
  /** the environment's revision after the change; -1 = the environment was deleted */
  revision: number;
}

/** Receives other replicas' changes (PostgreSQL LISTEN). */
export interface ChangeSubscriber {
  onChange(notice: ChangeNotice): void;
  /** the listening connection (re)connected: notifications may have been missed meanwhile */
  onReconnect(): void;
  /** the listening connection was lost; it is retried with backoff */
  onDisconnect(err: Error): void;
}

export interface Store {
  readonly dialect: "sqlite" | "postgres";
  readonly reader: StoreReader;
  /** Runs `fn` in one transaction; commits when it resolves (durably: fsync'd), rolls back when it throws. */
  transaction<T>(fn: (tx: StoreWriter) => Promise<T>): Promise<T>;
  /** Runs `fn` on one consistent snapshot (PostgreSQL: REPEATABLE READ, read-only). */
  snapshot<T>(fn: (reader: StoreReader) => Promise<T>): Promise<T>;
  /** Current revision of each listed environment that exists. */
  revisions(environmentIds: string[]): Promise<Map<string, number>>;
  /**
   * Subscribes to changes committed by other processes; returns an unsubscribe function. SQLite
   * serves one process and returns undefined (nothing to listen to).
   */
  subscribe(subscriber: ChangeSubscriber): Promise<(() => Promise<void>) | undefined>;
  /** Applies pending code-defined migrations. */
  migrate(): Promise<void>;
  close(): Promise<void>;
}
