import { sql, type Kysely, type Selectable, type SelectQueryBuilder, type Updateable } from "kysely";
import type {
  Account,
  AccessModel,
  ApiKey,
  ApiKeyScope,
  AppMembership,
  Application,
  Assignment,
  Environment,
  HierarchyNode,
  HierarchySchema,
  Identity,
  JsonObject,
  MembershipStatus,
  Permission,
  Role,
} from "../domain/model.js";
import { migrateToLatest } from "./migrations.js";
import { postgresAssignmentInserter, type AssignmentInserter } from "./bulk-insert.js";
import type { ChangeSubscriber } from "./store.js";
import type {
  ApiKeysTable,
  AppMembershipsTable,
  AssignmentsTable,
  Database,
  EnvironmentsTable,
  IdempotencyKeysTable,
  IdentitiesTable,
  NodesTable,
  PermissionsTable,
  RolesTable,
} from "./schema.js";
import {
  StoreConflictError,
  StoreUnavailableError,
  type AssignmentFacts,
  type AssignmentFilter,
  type IdempotencyRecord,
  type IdentityFilter,
  type Keyset,
  type Store,
  type StoreReader,
  type StoreWriter,
} from "./store.js";

/**
 * The one Store implementation, in dialect-neutral Kysely: SQLite and PostgreSQL differ only in the
 * `Kysely` instance handed in. Rows are normalised here and nowhere else (bigint times and counts
 * as numbers, 0/1 flags as booleans, JSON text parsed, bytes as plain Uint8Array), and driver
 * errors become StoreConflictError / StoreUnavailableError.
 *
 * Inside `transaction`, read through the writer it passes: on SQLite there is one connection, so a
 * read through `reader` (or a nested `transaction`) waits for the open transaction and deadlocks.
 *
 * `insertAssignments` replaces the generic multi-row insert of assignments (bulk imports): SQLite
 * passes a prepared-statement inserter bound to its connection; PostgreSQL defaults to `unnest`.
 */
export function createKyselyStore(
  db: Kysely<Database>,
  dialect: "sqlite" | "postgres",
  subscribe: (subscriber: ChangeSubscriber) => Promise<(() => Promise<void>) | undefined> = async () => undefined,
  opts: { insertAssignments?: AssignmentInserter } = {},
): Store {
  const insertAssignments = opts.insertAssignments ?? (dialect === "postgres" ? postgresAssignmentInserter : kyselyAssignmentInserter);
  const reader = guard(readerOf(db));
  return Object.freeze({
    dialect,
    reader,
    async transaction<T>(fn: (tx: StoreWriter) => Promise<T>): Promise<T> {
      try {
        return await db.transaction().execute(async (trx) => {
          // a writer blocked on another replica's lock gives up (UNAVAILABLE, retryable) instead of hanging
          if (dialect === "postgres") await sql`set local lock_timeout = ${sql.lit(`${LOCK_TIMEOUT_MS}ms`)}`.execute(trx);
          return fn(guard(writerOf(trx, dialect, insertAssignments)));
        });
      } catch (err) {
        throw mapStoreError(err);
      }
    },
    async snapshot<T>(fn: (r: StoreReader) => Promise<T>): Promise<T> {
      try {
        if (dialect === "sqlite") return await db.transaction().execute((trx) => fn(guard(readerOf(trx))));
        return await db
          .transaction()
          .setIsolationLevel("repeatable read")
          .setAccessMode("read only")
          .execute((trx) => fn(guard(readerOf(trx))));
      } catch (err) {
        throw mapStoreError(err);
      }
    },
    async revisions(environmentIds: string[]): Promise<Map<string, number>> {
      const out = new Map<string, number>();
      try {
        for (const chunk of chunked(unique(environmentIds))) {
          const rows = await db.selectFrom("environments").select(["id", "revision"]).where("id", "in", chunk).execute();
          for (const r of rows) out.set(r.id, Number(r.revision));
        }
      } catch (err) {
        throw mapStoreError(err);
      }
      return out;
    },
    subscribe,
    async migrate() {
      try {
        await migrateToLatest(db);
      } catch (err) {
        throw mapStoreError(err);
      }
    },
    async close() {
      await db.destroy();
    },
  });
}

/** PostgreSQL NOTIFY channel carrying "<environment id> <revision>" for every committed write. */
export const CHANGE_CHANNEL = "canopy_changes";

/** PostgreSQL: longest wait for a row lock inside a write (lock_timeout), in ms. */
const LOCK_TIMEOUT_MS = 5000;

/** Advisory lock key taken while an empty database is initialised ("canopy" in ASCII). */
const BOOTSTRAP_LOCK = 0x63616e6f7079;

/** Largest `IN (...)` list or multi-row insert sent in one statement. */
const CHUNK = 500;

const SQLITE_UNAVAILABLE = /^SQLITE_(BUSY|LOCKED|IOERR|CANTOPEN|FULL|READONLY|PROTOCOL)/;
/** connection lost, server shutting down, out of resources, lock timeout (55P03), deadlock (40P01), serialization (40001): retryable */
const PG_UNAVAILABLE = /^(08...|57P0[1-3]|53...|55P03|40P01|40001)$/;
const NODE_UNAVAILABLE = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENOTFOUND", "EPIPE", "EHOSTUNREACH", "EAI_AGAIN"]);
const UNAVAILABLE_MESSAGE = /driver has already been destroyed|database connection is not open|Connection terminated|timeout exceeded when trying to connect|encountered a connection error and is not queryable/i;

/**
 * Dialect errors to store errors: unique and FK violations become StoreConflictError, a backend
 * that is closed, busy or unreachable becomes StoreUnavailableError; anything else (including
 * errors thrown by a transaction's own callback) passes through untouched.
 */
export function mapStoreError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof StoreConflictError || err instanceof StoreUnavailableError) return err;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string") {
    if (code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "23505") {
      return new StoreConflictError(err.message, "unique", err);
    }
    if (code === "SQLITE_CONSTRAINT_FOREIGNKEY" || code === "23503") {
      return new StoreConflictError(err.message, "foreign_key", err);
    }
    if (SQLITE_UNAVAILABLE.test(code) || PG_UNAVAILABLE.test(code) || NODE_UNAVAILABLE.has(code)) {
      return new StoreUnavailableError(`storage unavailable: ${err.message}`, err);
    }
  }
  if (UNAVAILABLE_MESSAGE.test(err.message)) return new StoreUnavailableError(`storage unavailable: ${err.message}`, err);
  return err;
}

/** Wraps every method so that driver errors leave the store already mapped. */
function guard<T extends object>(impl: T): T {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(impl)) {
    out[name] = async (...args: unknown[]) => {
      try {
        return await (fn as (...a: unknown[]) => Promise<unknown>)(...args);
      } catch (err) {
        throw mapStoreError(err);
      }
    };
  }
  return out as T;
}

function chunked<T>(items: readonly T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function unique(ids: readonly string[]): string[] {
  return [...new Set(ids)];
}

/** Plain code-unit order: the order SQLite's binary and PostgreSQL's "C" collation give ids. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function byId<T extends { id: string }>(rows: T[]): T[] {
  return rows.sort((a, b) => compare(a.id, b.id));
}

/**
 * The `page` window of an id-ordered list query: keyset (id > afterId), or from the start skipping
 * `offset` rows (numbered pages). Lists and their counts share one base query each; only this
 * window (or countOf) is added on top, so the filters are written once.
 */
function windowed<TB extends keyof Database, O>(q: SelectQueryBuilder<Database, TB, O>, page: Keyset): SelectQueryBuilder<Database, TB, O> {
  const id = sql.ref<string>("id");
  const offset = page.afterId === "" ? (page.offset ?? 0) : 0;
  return q
    .$if(page.afterId !== "", (w) => w.where(id, ">", page.afterId))
    .orderBy(id)
    .limit(page.limit)
    .$if(offset > 0, (w) => w.offset(offset));
}

/** COUNT(*) of a base query (PostgreSQL returns the count as a string). */
async function countOf<TB extends keyof Database>(q: SelectQueryBuilder<Database, TB, object>): Promise<number> {
  const r = await q.select((eb) => eb.fn.countAll().as("n")).executeTakeFirstOrThrow();
  return Number(r.n);
}

// ---- row -> record -------------------------------------------------------------------------

const num = (v: number | string): number => Number(v);
/** Rows per page when an environment is loaded (scanAssignments, scanIdentityStates). */
const SCAN_PAGE_ROWS = 5_000;
const numOrNull = (v: number | string | null): number | null => (v === null ? null : Number(v));
const parse = <T>(v: unknown): T => (typeof v === "string" ? JSON.parse(v) : v) as T;

function toAccount(r: Selectable<Database["accounts"]>): Account {
  return { id: r.id, name: r.name, createdAt: num(r.created_at) };
}

function toApplication(r: Selectable<Database["applications"]>): Application {
  return { id: r.id, accountId: r.account_id, name: r.name, createdAt: num(r.created_at) };
}

function toEnvironment(r: Selectable<EnvironmentsTable>): Environment {
  return {
    id: r.id,
    applicationId: r.application_id,
    accountId: r.account_id,
    name: r.name,
    accessModel: r.access_model as AccessModel,
    schema: r.hierarchy_schema === null ? null : parse<HierarchySchema>(r.hierarchy_schema),
    rootNodeId: r.root_node_id,
    revision: num(r.revision),
    createdAt: num(r.created_at),
  };
}

function toApiKey(r: Selectable<ApiKeysTable>): ApiKey {
  return {
    id: r.id,
    accountId: r.account_id,
    environmentId: r.environment_id,
    name: r.name,
    keyHash: r.key_hash,
    prefix: r.prefix,
    scopes: parse<ApiKeyScope[]>(r.scopes),
    expiresAt: numOrNull(r.expires_at),
    revokedAt: numOrNull(r.revoked_at),
    createdAt: num(r.created_at),
  };
}

function toIdentity(r: Selectable<IdentitiesTable>): Identity {
  return {
    id: r.id,
    accountId: r.account_id,
    email: r.email,
    displayName: r.display_name,
    externalId: r.external_id,
    metadata: parse<JsonObject>(r.metadata),
    isActive: !!r.is_active,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

function toMembership(r: Selectable<AppMembershipsTable>): AppMembership {
  return {
    identityId: r.identity_id,
    applicationId: r.application_id,
    status: r.status as MembershipStatus,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

function toPermission(r: Selectable<PermissionsTable>): Permission {
  return {
    id: r.id,
    environmentId: r.environment_id,
    key: r.key,
    description: r.description,
    category: r.category,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

function toRole(r: Selectable<RolesTable>, permissionKeys: string[]): Role {
  return {
    id: r.id,
    environmentId: r.environment_id,
    name: r.name,
    description: r.description,
    permissionKeys,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

function toNode(r: Selectable<NodesTable>): HierarchyNode {
  return {
    id: r.id,
    environmentId: r.environment_id,
    parentId: r.parent_id,
    type: r.type,
    name: r.name,
    externalId: r.external_id,
    metadata: parse<JsonObject>(r.metadata),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

function toAssignment(r: Selectable<AssignmentsTable>): Assignment {
  return {
    id: r.id,
    environmentId: r.environment_id,
    identityId: r.identity_id,
    roleId: r.role_id,
    nodeId: r.node_id,
    effectiveFrom: num(r.effective_from),
    effectiveTo: numOrNull(r.effective_to),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

function toIdempotencyRecord(r: Selectable<IdempotencyKeysTable>): IdempotencyRecord {
  return {
    environmentId: r.environment_id,
    key: r.key,
    requestHash: r.request_hash,
    // a copy: drivers hand back pooled Buffers
    response: new Uint8Array(r.response),
    createdAt: num(r.created_at),
  };
}

// ---- record -> row -------------------------------------------------------------------------

function assignmentRow(a: Assignment) {
  return {
    id: a.id,
    environment_id: a.environmentId,
    identity_id: a.identityId,
    role_id: a.roleId,
    node_id: a.nodeId,
    effective_from: a.effectiveFrom,
    effective_to: a.effectiveTo,
    created_at: a.createdAt,
    updated_at: a.updatedAt,
  };
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ---- reads ---------------------------------------------------------------------------------

function readerOf(db: Kysely<Database>): StoreReader {
  /** Attaches each role's permission keys, sorted. */
  async function withPermissionKeys(rows: Selectable<RolesTable>[]): Promise<Role[]> {
    const keys = new Map<string, string[]>(rows.map((r) => [r.id, []]));
    for (const ids of chunked(rows.map((r) => r.id))) {
      const links = await db
        .selectFrom("role_permissions")
        .innerJoin("permissions", "permissions.id", "role_permissions.permission_id")
        .select(["role_permissions.role_id", "permissions.key"])
        .where("role_permissions.role_id", "in", ids)
        .execute();
      for (const l of links) keys.get(l.role_id)!.push(l.key);
    }
    return rows.map((r) => toRole(r, keys.get(r.id)!.sort(compare)));
  }

  // Base queries (filters only) shared by each paged list and its count. A numbered page reads its
  // count and its rows as two queries; the caller runs both in one snapshot when they must agree.
  const identitiesMatching = (filter: IdentityFilter) =>
    db
      .selectFrom("identities")
      .where("account_id", "=", filter.accountId)
      .$if(filter.applicationId !== undefined, (q) =>
        q.where("id", "in", db.selectFrom("app_memberships").select("identity_id").where("application_id", "=", filter.applicationId!)),
      )
      .$if(filter.email !== undefined, (q) => q.where("email", "=", filter.email!))
      .$if(filter.externalId !== undefined, (q) => q.where("external_id", "=", filter.externalId!))
      .$if(filter.isActive !== undefined, (q) => q.where("is_active", "=", filter.isActive ? 1 : 0));
  const permissionsMatching = (environmentId: string, category: string | undefined) =>
    db
      .selectFrom("permissions")
      .where("environment_id", "=", environmentId)
      .$if(category !== undefined, (q) => q.where("category", "=", category!));
  const rolesOf = (environmentId: string) => db.selectFrom("roles").where("environment_id", "=", environmentId);
  const childrenOf = (environmentId: string, parentId: string) =>
    db.selectFrom("nodes").where("parent_id", "=", parentId).where("environment_id", "=", environmentId);
  const assignmentsMatching = (environmentId: string, filter: AssignmentFilter) => {
    const at = filter.at;
    return (
      db
        .selectFrom("assignments")
        .where("environment_id", "=", environmentId)
        .$if(filter.identityId !== undefined, (q) => q.where("identity_id", "=", filter.identityId!))
        .$if(filter.nodeId !== undefined, (q) => q.where("node_id", "=", filter.nodeId!))
        .$if(filter.roleId !== undefined, (q) => q.where("role_id", "=", filter.roleId!))
        // half-open window [effective_from, effective_to)
        .$if(filter.state === "scheduled", (q) => q.where("effective_from", ">", at))
        .$if(filter.state === "active", (q) =>
          q
            .where("effective_from", "<=", at)
            .where((eb) => eb.or([eb("effective_to", "is", null), eb("effective_to", ">", at)])),
        )
        .$if(filter.state === "expired", (q) => q.where("effective_to", "is not", null).where("effective_to", "<=", at))
    );
  };

  return {
    async getDefaultAccount() {
      // the default account is the first one created (ids are UUIDv7)
      const r = await db.selectFrom("accounts").selectAll().orderBy("id").limit(1).executeTakeFirst();
      return r && toAccount(r);
    },
    async getAccount(id) {
      const r = await db.selectFrom("accounts").selectAll().where("id", "=", id).executeTakeFirst();
      return r && toAccount(r);
    },
    async listAllAccounts() {
      return (await db.selectFrom("accounts").selectAll().orderBy("id").execute()).map(toAccount);
    },

    async getApplication(id) {
      const r = await db.selectFrom("applications").selectAll().where("id", "=", id).executeTakeFirst();
      return r && toApplication(r);
    },
    async listApplications(accountId, page) {
      const rows = await windowed(db.selectFrom("applications").selectAll().where("account_id", "=", accountId), page).execute();
      return rows.map(toApplication);
    },

    async getEnvironment(id) {
      const r = await db.selectFrom("environments").selectAll().where("id", "=", id).executeTakeFirst();
      return r && toEnvironment(r);
    },
    async listEnvironments(accountId, applicationId) {
      const rows = await db
        .selectFrom("environments")
        .selectAll()
        .where("account_id", "=", accountId)
        .$if(applicationId !== undefined, (q) => q.where("application_id", "=", applicationId!))
        .orderBy("id")
        .execute();
      return rows.map(toEnvironment);
    },
    async listAllEnvironments() {
      return (await db.selectFrom("environments").selectAll().orderBy("id").execute()).map(toEnvironment);
    },

    async getApiKey(id) {
      const r = await db.selectFrom("api_keys").selectAll().where("id", "=", id).executeTakeFirst();
      return r && toApiKey(r);
    },
    async getApiKeyByHash(keyHash) {
      const r = await db.selectFrom("api_keys").selectAll().where("key_hash", "=", keyHash).executeTakeFirst();
      return r && toApiKey(r);
    },
    async listApiKeys(accountId, environmentId) {
      const rows = await db
        .selectFrom("api_keys")
        .selectAll()
        .where("account_id", "=", accountId)
        .$if(environmentId === null, (q) => q.where("environment_id", "is", null))
        .$if(typeof environmentId === "string", (q) => q.where("environment_id", "=", environmentId!))
        .orderBy("id")
        .execute();
      return rows.map(toApiKey);
    },

    async getIdentity(id) {
      const r = await db.selectFrom("identities").selectAll().where("id", "=", id).executeTakeFirst();
      return r && toIdentity(r);
    },
    async getIdentitiesByIds(ids) {
      const out: Identity[] = [];
      for (const chunk of chunked(unique(ids))) {
        const rows = await db.selectFrom("identities").selectAll().where("id", "in", chunk).execute();
        for (const r of rows) out.push(toIdentity(r));
      }
      return byId(out);
    },
    async getIdentityByEmail(accountId, email) {
      const r = await db
        .selectFrom("identities")
        .selectAll()
        .where("account_id", "=", accountId)
        .where("email", "=", email)
        .executeTakeFirst();
      return r && toIdentity(r);
    },
    async getIdentityByExternalId(accountId, externalId) {
      const r = await db
        .selectFrom("identities")
        .selectAll()
        .where("account_id", "=", accountId)
        .where("external_id", "=", externalId)
        .executeTakeFirst();
      return r && toIdentity(r);
    },
    async listIdentities(filter, page) {
      return (await windowed(identitiesMatching(filter).selectAll(), page).execute()).map(toIdentity);
    },
    async countIdentities(filter) {
      return countOf(identitiesMatching(filter));
    },
    async listAllIdentities(accountId) {
      const rows = await db.selectFrom("identities").selectAll().where("account_id", "=", accountId).orderBy("id").execute();
      return rows.map(toIdentity);
    },

    async getMembership(identityId, applicationId) {
      const r = await db
        .selectFrom("app_memberships")
        .selectAll()
        .where("identity_id", "=", identityId)
        .where("application_id", "=", applicationId)
        .executeTakeFirst();
      return r && toMembership(r);
    },
    async listMembershipsOfIdentity(identityId) {
      const rows = await db
        .selectFrom("app_memberships")
        .selectAll()
        .where("identity_id", "=", identityId)
        .orderBy("application_id")
        .execute();
      return rows.map(toMembership);
    },
    async listMembershipsOfApplication(applicationId) {
      const rows = await db
        .selectFrom("app_memberships")
        .selectAll()
        .where("application_id", "=", applicationId)
        .orderBy("identity_id")
        .execute();
      return rows.map(toMembership);
    },

    async getPermission(environmentId, id) {
      const r = await db
        .selectFrom("permissions")
        .selectAll()
        .where("environment_id", "=", environmentId)
        .where("id", "=", id)
        .executeTakeFirst();
      return r && toPermission(r);
    },
    async getPermissionsByKeys(environmentId, keys) {
      const out: Permission[] = [];
      for (const chunk of chunked(unique(keys))) {
        const rows = await db
          .selectFrom("permissions")
          .selectAll()
          .where("environment_id", "=", environmentId)
          .where("key", "in", chunk)
          .execute();
        for (const r of rows) out.push(toPermission(r));
      }
      return byId(out);
    },
    async listPermissions(environmentId, category, page) {
      return (await windowed(permissionsMatching(environmentId, category).selectAll(), page).execute()).map(toPermission);
    },
    async countPermissions(environmentId, category) {
      return countOf(permissionsMatching(environmentId, category));
    },
    async listAllPermissions(environmentId) {
      const rows = await db
        .selectFrom("permissions")
        .selectAll()
        .where("environment_id", "=", environmentId)
        .orderBy("id")
        .execute();
      return rows.map(toPermission);
    },

    async getRole(environmentId, id) {
      const r = await db
        .selectFrom("roles")
        .selectAll()
        .where("environment_id", "=", environmentId)
        .where("id", "=", id)
        .executeTakeFirst();
      return r && (await withPermissionKeys([r]))[0];
    },
    async getRoleByName(environmentId, name) {
      const r = await db
        .selectFrom("roles")
        .selectAll()
        .where("environment_id", "=", environmentId)
        .where("name", "=", name)
        .executeTakeFirst();
      return r && (await withPermissionKeys([r]))[0];
    },
    async listRoles(environmentId, page) {
      return withPermissionKeys(await windowed(rolesOf(environmentId).selectAll(), page).execute());
    },
    async countRoles(environmentId) {
      return countOf(rolesOf(environmentId));
    },
    async listAllRoles(environmentId) {
      const rows = await db.selectFrom("roles").selectAll().where("environment_id", "=", environmentId).orderBy("id").execute();
      return withPermissionKeys(rows);
    },

    async getNode(environmentId, id) {
      const r = await db
        .selectFrom("nodes")
        .selectAll()
        .where("environment_id", "=", environmentId)
        .where("id", "=", id)
        .executeTakeFirst();
      return r && toNode(r);
    },
    async getNodesByIds(environmentId, ids) {
      const out: HierarchyNode[] = [];
      for (const chunk of chunked(unique(ids))) {
        const rows = await db
          .selectFrom("nodes")
          .selectAll()
          .where("environment_id", "=", environmentId)
          .where("id", "in", chunk)
          .execute();
        for (const r of rows) out.push(toNode(r));
      }
      return byId(out);
    },
    async listChildren(environmentId, parentId, page) {
      return (await windowed(childrenOf(environmentId, parentId).selectAll(), page).execute()).map(toNode);
    },
    async countChildren(environmentId, parentId) {
      return countOf(childrenOf(environmentId, parentId));
    },
    async listAllNodes(environmentId) {
      const rows = await db.selectFrom("nodes").selectAll().where("environment_id", "=", environmentId).orderBy("id").execute();
      return rows.map(toNode);
    },

    async getAssignment(environmentId, id) {
      const r = await db
        .selectFrom("assignments")
        .selectAll()
        .where("environment_id", "=", environmentId)
        .where("id", "=", id)
        .executeTakeFirst();
      return r && toAssignment(r);
    },
    async getAssignmentsByIds(environmentId, ids) {
      const out: Assignment[] = [];
      for (const chunk of chunked(unique(ids))) {
        const rows = await db
          .selectFrom("assignments")
          .selectAll()
          .where("environment_id", "=", environmentId)
          .where("id", "in", chunk)
          .execute();
        for (const r of rows) out.push(toAssignment(r));
      }
      return byId(out);
    },
    async listAssignments(environmentId, filter, page) {
      return (await windowed(assignmentsMatching(environmentId, filter).selectAll(), page).execute()).map(toAssignment);
    },
    async countAssignments(environmentId, filter) {
      return countOf(assignmentsMatching(environmentId, filter));
    },
    async listAssignmentsOfIdentities(environmentId, identityIds) {
      const out: Assignment[] = [];
      for (const chunk of chunked(unique(identityIds))) {
        const rows = await db
          .selectFrom("assignments")
          .selectAll()
          .where("environment_id", "=", environmentId)
          .where("identity_id", "in", chunk)
          .execute();
        for (const r of rows) out.push(toAssignment(r));
      }
      return byId(out);
    },
    async listAllAssignments(environmentId) {
      const rows = await db
        .selectFrom("assignments")
        .selectAll()
        .where("environment_id", "=", environmentId)
        .orderBy("id")
        .execute();
      return rows.map(toAssignment);
    },
    async scanAssignments(environmentId, onPage, pageSize = SCAN_PAGE_ROWS) {
      let after = "";
      let total = 0;
      for (;;) {
        // selected under the engine's field names: the driver's row objects are handed on as they are
        const rows = await db
          .selectFrom("assignments")
          .select(["id", "identity_id as identityId", "role_id as roleId", "node_id as nodeId", "effective_from as effectiveFrom", "effective_to as effectiveTo"])
          .where("environment_id", "=", environmentId)
          .$if(after !== "", (q) => q.where("id", ">", after))
          .orderBy("id")
          .limit(pageSize)
          .execute();
        if (rows.length === 0) return total;
        const page = rows as unknown as AssignmentFacts[];
        // PostgreSQL returns bigint columns as strings
        if (typeof rows[0].effectiveFrom !== "number") {
          for (const r of page) {
            r.effectiveFrom = num(r.effectiveFrom);
            r.effectiveTo = numOrNull(r.effectiveTo);
          }
        }
        total += rows.length;
        after = rows[rows.length - 1].id;
        onPage(page);
        if (rows.length < pageSize) return total;
      }
    },
    async listTreeNodes(environmentId) {
      return db
        .selectFrom("nodes")
        .select(["id", "parent_id as parentId", "type"])
        .where("environment_id", "=", environmentId)
        .orderBy("id")
        .execute();
    },
    async listMembershipStates(applicationId) {
      const rows = await db
        .selectFrom("app_memberships")
        .select(["identity_id as identityId", "status"])
        .where("application_id", "=", applicationId)
        .orderBy("identity_id")
        .execute();
      return rows as Array<{ identityId: string; status: "active" | "inactive" }>;
    },
    async scanIdentityStates(accountId, onPage, pageSize = SCAN_PAGE_ROWS) {
      let after = "";
      let total = 0;
      for (;;) {
        const rows = await db
          .selectFrom("identities")
          .select(["id", "account_id", "is_active"])
          .where("account_id", "=", accountId)
          .$if(after !== "", (q) => q.where("id", ">", after))
          .orderBy("id")
          .limit(pageSize)
          .execute();
        if (rows.length === 0) return total;
        onPage(rows.map((r) => ({ id: r.id, accountId: r.account_id, isActive: Boolean(r.is_active) })));
        total += rows.length;
        after = rows[rows.length - 1].id;
        if (rows.length < pageSize) return total;
      }
    },
    async countAssignmentsOnNodes(environmentId, nodeIds) {
      let total = 0;
      for (const chunk of chunked(unique(nodeIds))) {
        total += await countOf(db.selectFrom("assignments").where("environment_id", "=", environmentId).where("node_id", "in", chunk));
      }
      return total;
    },
    async countAssignmentsOfRole(environmentId, roleId) {
      return countOf(assignmentsMatching(environmentId, { roleId, at: 0 }));
    },

    async getIdempotencyRecord(environmentId, key) {
      const r = await db
        .selectFrom("idempotency_keys")
        .selectAll()
        .where("environment_id", "=", environmentId)
        .where("key", "=", key)
        .executeTakeFirst();
      return r && toIdempotencyRecord(r);
    },
  };
}

// ---- writes --------------------------------------------------------------------------------

/** The portable path: multi-row Kysely inserts of up to CHUNK rows. */
const kyselyAssignmentInserter: AssignmentInserter = async (trx, rows) => {
  for (const chunk of chunked(rows)) await trx.insertInto("assignments").values(chunk.map(assignmentRow)).execute();
};

function writerOf(db: Kysely<Database>, dialect: "sqlite" | "postgres", insertAssignmentRows: AssignmentInserter): StoreWriter {
  async function linkPermissions(roleId: string, permissionIds: string[]): Promise<void> {
    for (const chunk of chunked(unique(permissionIds))) {
      await db
        .insertInto("role_permissions")
        .values(chunk.map((permission_id) => ({ role_id: roleId, permission_id })))
        .execute();
    }
  }

  return {
    ...readerOf(db),

    async insertAccount(a) {
      await db.insertInto("accounts").values({ id: a.id, name: a.name, created_at: a.createdAt }).execute();
    },
    async insertApplication(a) {
      await db
        .insertInto("applications")
        .values({ id: a.id, account_id: a.accountId, name: a.name, created_at: a.createdAt })
        .execute();
    },
    async insertEnvironment(e) {
      await db
        .insertInto("environments")
        .values({
          id: e.id,
          application_id: e.applicationId,
          account_id: e.accountId,
          name: e.name,
          access_model: e.accessModel,
          hierarchy_schema: e.schema === null ? null : JSON.stringify(e.schema),
          root_node_id: e.rootNodeId,
          revision: e.revision,
          created_at: e.createdAt,
        })
        .execute();
    },
    async updateEnvironment(id, patch) {
      const set: Updateable<EnvironmentsTable> = {};
      if (patch.accessModel !== undefined) set.access_model = patch.accessModel;
      if (patch.schema !== undefined) set.hierarchy_schema = patch.schema === null ? null : JSON.stringify(patch.schema);
      if (patch.rootNodeId !== undefined) set.root_node_id = patch.rootNodeId;
      if (Object.keys(set).length === 0) return;
      await db.updateTable("environments").set(set).where("id", "=", id).execute();
    },
    async bumpRevision(environmentId) {
      const r = await db
        .updateTable("environments")
        .set((eb) => ({ revision: eb("revision", "+", 1) }))
        .where("id", "=", environmentId)
        .returning("revision")
        .executeTakeFirst();
      if (!r) throw new Error(`bumpRevision: environment ${environmentId} does not exist`);
      return Number(r.revision);
    },
    async deleteEnvironment(id) {
      // explicit, children first, so the result does not depend on FK cascades being enabled
      await db.deleteFrom("assignments").where("environment_id", "=", id).execute();
      await db
        .deleteFrom("role_permissions")
        .where("role_id", "in", db.selectFrom("roles").select("id").where("environment_id", "=", id))
        .execute();
      await db.deleteFrom("roles").where("environment_id", "=", id).execute();
      await db.deleteFrom("permissions").where("environment_id", "=", id).execute();
      // one statement: the nodes -> nodes FK (NO ACTION) is checked at the end of the statement
      await db.deleteFrom("nodes").where("environment_id", "=", id).execute();
      await db.deleteFrom("api_keys").where("environment_id", "=", id).execute();
      await db.deleteFrom("idempotency_keys").where("environment_id", "=", id).execute();
      await db.deleteFrom("environments").where("id", "=", id).execute();
    },

    async insertApiKey(k) {
      await db
        .insertInto("api_keys")
        .values({
          id: k.id,
          account_id: k.accountId,
          environment_id: k.environmentId,
          name: k.name,
          key_hash: k.keyHash,
          prefix: k.prefix,
          scopes: JSON.stringify(k.scopes),
          expires_at: k.expiresAt,
          revoked_at: k.revokedAt,
          created_at: k.createdAt,
        })
        .execute();
    },
    async revokeApiKey(id, at) {
      // the first revocation time stands
      await db.updateTable("api_keys").set({ revoked_at: at }).where("id", "=", id).where("revoked_at", "is", null).execute();
    },

    async insertIdentity(i) {
      await db
        .insertInto("identities")
        .values({
          id: i.id,
          account_id: i.accountId,
          email: i.email,
          display_name: i.displayName,
          external_id: i.externalId,
          metadata: JSON.stringify(i.metadata),
          is_active: i.isActive ? 1 : 0,
          created_at: i.createdAt,
          updated_at: i.updatedAt,
        })
        .execute();
    },
    async updateIdentity(id, patch) {
      const set: Updateable<IdentitiesTable> = { updated_at: patch.updatedAt };
      if (patch.email !== undefined) set.email = patch.email;
      if (patch.displayName !== undefined) set.display_name = patch.displayName;
      if (patch.externalId !== undefined) set.external_id = patch.externalId;
      if (patch.metadata !== undefined) set.metadata = JSON.stringify(patch.metadata);
      if (patch.isActive !== undefined) set.is_active = patch.isActive ? 1 : 0;
      await db.updateTable("identities").set(set).where("id", "=", id).execute();
    },

    async insertMembership(m) {
      await db
        .insertInto("app_memberships")
        .values({
          identity_id: m.identityId,
          application_id: m.applicationId,
          status: m.status,
          created_at: m.createdAt,
          updated_at: m.updatedAt,
        })
        .execute();
    },
    async updateMembershipStatus(identityId, applicationId, status, at) {
      await db
        .updateTable("app_memberships")
        .set({ status, updated_at: at })
        .where("identity_id", "=", identityId)
        .where("application_id", "=", applicationId)
        .execute();
    },
    async deleteMembership(identityId, applicationId) {
      await db
        .deleteFrom("app_memberships")
        .where("identity_id", "=", identityId)
        .where("application_id", "=", applicationId)
        .execute();
    },

    async insertPermissions(ps) {
      for (const chunk of chunked(ps)) {
        await db
          .insertInto("permissions")
          .values(
            chunk.map((p) => ({
              id: p.id,
              environment_id: p.environmentId,
              key: p.key,
              description: p.description,
              category: p.category,
              created_at: p.createdAt,
              updated_at: p.updatedAt,
            })),
          )
          .execute();
      }
    },
    async updatePermission(id, patch) {
      const set: Updateable<PermissionsTable> = { updated_at: patch.updatedAt };
      if (patch.description !== undefined) set.description = patch.description;
      if (patch.category !== undefined) set.category = patch.category;
      await db.updateTable("permissions").set(set).where("id", "=", id).execute();
    },
    async deletePermission(id) {
      await db.deleteFrom("role_permissions").where("permission_id", "=", id).execute();
      await db.deleteFrom("permissions").where("id", "=", id).execute();
    },

    async insertRole(r, permissionIds) {
      await db
        .insertInto("roles")
        .values({
          id: r.id,
          environment_id: r.environmentId,
          name: r.name,
          description: r.description,
          created_at: r.createdAt,
          updated_at: r.updatedAt,
        })
        .execute();
      await linkPermissions(r.id, permissionIds);
    },
    async updateRole(id, patch) {
      const set: Updateable<RolesTable> = { updated_at: patch.updatedAt };
      if (patch.name !== undefined) set.name = patch.name;
      if (patch.description !== undefined) set.description = patch.description;
      await db.updateTable("roles").set(set).where("id", "=", id).execute();
    },
    async setRolePermissions(roleId, permissionIds, at) {
      await db.deleteFrom("role_permissions").where("role_id", "=", roleId).execute();
      await linkPermissions(roleId, permissionIds);
      await db.updateTable("roles").set({ updated_at: at }).where("id", "=", roleId).execute();
    },
    async deleteRole(id) {
      await db.deleteFrom("role_permissions").where("role_id", "=", id).execute();
      await db.deleteFrom("roles").where("id", "=", id).execute();
    },

    async insertNode(n) {
      await db
        .insertInto("nodes")
        .values({
          id: n.id,
          environment_id: n.environmentId,
          parent_id: n.parentId,
          type: n.type,
          name: n.name,
          external_id: n.externalId,
          metadata: JSON.stringify(n.metadata),
          created_at: n.createdAt,
          updated_at: n.updatedAt,
        })
        .execute();
    },
    async updateNode(id, patch) {
      const set: Updateable<NodesTable> = { updated_at: patch.updatedAt };
      if (patch.name !== undefined) set.name = patch.name;
      if (patch.externalId !== undefined) set.external_id = patch.externalId;
      if (patch.metadata !== undefined) set.metadata = JSON.stringify(patch.metadata);
      if (patch.parentId !== undefined) set.parent_id = patch.parentId;
      if (patch.type !== undefined) set.type = patch.type;
      await db.updateTable("nodes").set(set).where("id", "=", id).execute();
    },
    async deleteNodes(environmentId, ids) {
      const chunks = chunked(unique(ids));
      if (chunks.length > 1) {
        // a parent may sit in an earlier chunk than its children: detach them all first
        for (const chunk of chunks) {
          await db
            .updateTable("nodes")
            .set({ parent_id: null })
            .where("environment_id", "=", environmentId)
            .where("id", "in", chunk)
            .execute();
        }
      }
      for (const chunk of chunks) {
        await db.deleteFrom("nodes").where("environment_id", "=", environmentId).where("id", "in", chunk).execute();
      }
    },

    async insertAssignments(as) {
      await insertAssignmentRows(db, as);
    },
    async updateAssignment(id, patch) {
      const set: Updateable<AssignmentsTable> = { updated_at: patch.updatedAt };
      if (patch.roleId !== undefined) set.role_id = patch.roleId;
      if (patch.effectiveFrom !== undefined) set.effective_from = patch.effectiveFrom;
      if (patch.effectiveTo !== undefined) set.effective_to = patch.effectiveTo;
      await db.updateTable("assignments").set(set).where("id", "=", id).execute();
    },
    async deleteAssignments(environmentId, ids) {
      const deleted: string[] = [];
      for (const chunk of chunked(unique(ids))) {
        const rows = await db
          .deleteFrom("assignments")
          .where("environment_id", "=", environmentId)
          .where("id", "in", chunk)
          .returning("id")
          .execute();
        for (const r of rows) deleted.push(r.id);
      }
      return deleted.sort(compare);
    },
    async deleteAssignmentsOnNodes(environmentId, nodeIds) {
      const deleted: string[] = [];
      for (const chunk of chunked(unique(nodeIds))) {
        const rows = await db
          .deleteFrom("assignments")
          .where("environment_id", "=", environmentId)
          .where("node_id", "in", chunk)
          .returning("id")
          .execute();
        for (const r of rows) deleted.push(r.id);
      }
      return deleted.sort(compare);
    },
    async deleteAssignmentsOfRole(environmentId, roleId) {
      const rows = await db
        .deleteFrom("assignments")
        .where("environment_id", "=", environmentId)
        .where("role_id", "=", roleId)
        .returning("id")
        .execute();
      return rows.map((r) => r.id).sort(compare);
    },
    async deleteAssignmentsOfIdentity(identityId, environmentIds) {
      const deleted: Assignment[] = [];
      for (const chunk of chunked(unique(environmentIds))) {
        const rows = await db
          .deleteFrom("assignments")
          .where("identity_id", "=", identityId)
          .where("environment_id", "in", chunk)
          .returningAll()
          .execute();
        for (const r of rows) deleted.push(toAssignment(r));
      }
      return byId(deleted);
    },

    async lockEnvironment(environmentId) {
      let q = db.selectFrom("environments").select("revision").where("id", "=", environmentId);
      if (dialect === "postgres") q = q.forUpdate();
      const r = await q.executeTakeFirst();
      return r === undefined ? undefined : Number(r.revision);
    },
    async lockAccount(accountId) {
      if (dialect === "postgres") await db.selectFrom("accounts").select("id").where("id", "=", accountId).forUpdate().execute();
    },
    async lockBootstrap() {
      if (dialect === "postgres") await sql`select pg_advisory_xact_lock(${BOOTSTRAP_LOCK})`.execute(db);
    },
    async notifyChange(environmentId, revision) {
      if (dialect !== "postgres") return;
      await sql`select pg_notify(${CHANGE_CHANNEL}, ${`${environmentId} ${revision}`})`.execute(db);
    },

    async putIdempotencyRecord(r) {
      // insert, not upsert: a concurrent first use of the same key must fail, not overwrite
      await db
        .insertInto("idempotency_keys")
        .values({
          environment_id: r.environmentId,
          key: r.key,
          request_hash: r.requestHash,
          response: asBuffer(r.response),
          created_at: r.createdAt,
        })
        .execute();
    },
    async deleteIdempotencyRecordsBefore(createdBefore) {
      const r = await db.deleteFrom("idempotency_keys").where("created_at", "<", createdBefore).executeTakeFirst();
      return Number(r.numDeletedRows);
    },
  };
}
