import { Kysely, Migrator, PostgresAdapter, sql, type Migration, type MigrationProvider } from "kysely";

/**
 * Code-defined migrations, keyed by a date prefix so they sort in the order they were written.
 * Frozen in time: a migration never changes once released and never imports app types; a new
 * change is a new key. The same migrations run on SQLite and PostgreSQL, so they use only the
 * schema builder and column types both understand (`bigint` ms times, `integer` flags, `text`
 * strings and JSON); the two places where the dialects differ are chosen by inspecting the adapter.
 */

function isPostgres(db: Kysely<any>): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter;
}

/**
 * Ids are compared (keyset paging) and ordered as plain strings. SQLite's default collation is
 * binary; PostgreSQL's follows the database locale, so ids get the byte-order "C" collation there
 * and both dialects order exactly as JavaScript does.
 */
function idType(db: Kysely<any>) {
  return isPostgres(db) ? sql`text collate "C"` : sql`text`;
}

function bytesType(db: Kysely<any>) {
  return isPostgres(db) ? ("bytea" as const) : ("blob" as const);
}

const initial: Migration = {
  async up(db: Kysely<any>) {
    const id = idType(db);

    await db.schema
      .createTable("accounts")
      .addColumn("id", id, (c) => c.primaryKey())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .execute();

    await db.schema
      .createTable("applications")
      .addColumn("id", id, (c) => c.primaryKey())
      .addColumn("account_id", id, (c) => c.notNull().references("accounts.id"))
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addUniqueConstraint("applications_account_name_key", ["account_id", "name"])
      .execute();
    await db.schema.createIndex("applications_account_id_idx").on("applications").columns(["account_id", "id"]).execute();

    await db.schema
      .createTable("environments")
      .addColumn("id", id, (c) => c.primaryKey())
      .addColumn("application_id", id, (c) => c.notNull().references("applications.id"))
      .addColumn("account_id", id, (c) => c.notNull().references("accounts.id"))
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("access_model", "text", (c) => c.notNull())
      .addColumn("hierarchy_schema", "text")
      // no FK: the root node references its environment, so the environment is written first
      .addColumn("root_node_id", id, (c) => c.notNull())
      .addColumn("revision", "integer", (c) => c.notNull().defaultTo(0))
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addUniqueConstraint("environments_application_name_key", ["application_id", "name"])
      .execute();
    await db.schema.createIndex("environments_account_id_idx").on("environments").columns(["account_id", "id"]).execute();

    await db.schema
      .createTable("api_keys")
      .addColumn("id", id, (c) => c.primaryKey())
      .addColumn("account_id", id, (c) => c.notNull().references("accounts.id"))
      .addColumn("environment_id", id, (c) => c.references("environments.id").onDelete("cascade"))
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("key_hash", "text", (c) => c.notNull())
      .addColumn("prefix", "text", (c) => c.notNull())
      .addColumn("scopes", "text", (c) => c.notNull())
      .addColumn("expires_at", "bigint")
      .addColumn("revoked_at", "bigint")
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addUniqueConstraint("api_keys_key_hash_key", ["key_hash"])
      .execute();
    await db.schema.createIndex("api_keys_account_id_idx").on("api_keys").columns(["account_id", "id"]).execute();
    await db.schema.createIndex("api_keys_environment_id_idx").on("api_keys").column("environment_id").execute();

    await db.schema
      .createTable("identities")
      .addColumn("id", id, (c) => c.primaryKey())
      .addColumn("account_id", id, (c) => c.notNull().references("accounts.id"))
      .addColumn("email", "text", (c) => c.notNull())
      .addColumn("display_name", "text", (c) => c.notNull())
      .addColumn("external_id", "text")
      .addColumn("metadata", "text", (c) => c.notNull())
      .addColumn("is_active", "integer", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("updated_at", "bigint", (c) => c.notNull())
      .addUniqueConstraint("identities_account_email_key", ["account_id", "email"])
      .execute();
    await db.schema
      .createIndex("identities_account_external_id_key")
      .on("identities")
      .columns(["account_id", "external_id"])
      .unique()
      .where(sql.ref("external_id"), "is not", null)
      .execute();
    await db.schema.createIndex("identities_account_id_idx").on("identities").columns(["account_id", "id"]).execute();

    await db.schema
      .createTable("app_memberships")
      .addColumn("identity_id", id, (c) => c.notNull().references("identities.id").onDelete("cascade"))
      .addColumn("application_id", id, (c) => c.notNull().references("applications.id").onDelete("cascade"))
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("updated_at", "bigint", (c) => c.notNull())
      .addPrimaryKeyConstraint("app_memberships_pkey", ["identity_id", "application_id"])
      .execute();
    await db.schema.createIndex("app_memberships_application_id_idx").on("app_memberships").column("application_id").execute();

    await db.schema
      .createTable("permissions")
      .addColumn("id", id, (c) => c.primaryKey())
      .addColumn("environment_id", id, (c) => c.notNull().references("environments.id").onDelete("cascade"))
      .addColumn("key", "text", (c) => c.notNull())
      .addColumn("description", "text", (c) => c.notNull())
      .addColumn("category", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("updated_at", "bigint", (c) => c.notNull())
      .addUniqueConstraint("permissions_environment_key_key", ["environment_id", "key"])
      .execute();
    await db.schema.createIndex("permissions_environment_id_idx").on("permissions").columns(["environment_id", "id"]).execute();

    await db.schema
      .createTable("roles")
      .addColumn("id", id, (c) => c.primaryKey())
      .addColumn("environment_id", id, (c) => c.notNull().references("environments.id").onDelete("cascade"))
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("description", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("updated_at", "bigint", (c) => c.notNull())
      .addUniqueConstraint("roles_environment_name_key", ["environment_id", "name"])
      .execute();
    await db.schema.createIndex("roles_environment_id_idx").on("roles").columns(["environment_id", "id"]).execute();

    await db.schema
      .createTable("role_permissions")
      .addColumn("role_id", id, (c) => c.notNull().references("roles.id").onDelete("cascade"))
      .addColumn("permission_id", id, (c) => c.notNull().references("permissions.id").onDelete("cascade"))
      .addPrimaryKeyConstraint("role_permissions_pkey", ["role_id", "permission_id"])
      .execute();
    await db.schema.createIndex("role_permissions_permission_id_idx").on("role_permissions").column("permission_id").execute();

    await db.schema
      .createTable("nodes")
      .addColumn("id", id, (c) => c.primaryKey())
      .addColumn("environment_id", id, (c) => c.notNull().references("environments.id").onDelete("cascade"))
      // NO ACTION: deleting a node that still has children is refused (callers delete whole subtrees)
      .addColumn("parent_id", id, (c) => c.references("nodes.id"))
      .addColumn("type", "text", (c) => c.notNull())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("external_id", "text")
      .addColumn("metadata", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("updated_at", "bigint", (c) => c.notNull())
      .execute();
    await db.schema.createIndex("nodes_environment_id_idx").on("nodes").columns(["environment_id", "id"]).execute();
    // leads with parent_id: serves listChildren and the FK check when a parent is deleted
    await db.schema.createIndex("nodes_parent_id_idx").on("nodes").columns(["parent_id", "id"]).execute();

    await db.schema
      .createTable("assignments")
      .addColumn("id", id, (c) => c.primaryKey())
      .addColumn("environment_id", id, (c) => c.notNull().references("environments.id").onDelete("cascade"))
      // NO ACTION on identities, roles and nodes: an assignment is never removed behind the
      // engine's back; callers delete assignments explicitly (and learn which) before their targets
      .addColumn("identity_id", id, (c) => c.notNull().references("identities.id"))
      .addColumn("role_id", id, (c) => c.notNull().references("roles.id"))
      .addColumn("node_id", id, (c) => c.notNull().references("nodes.id"))
      .addColumn("effective_from", "bigint", (c) => c.notNull())
      .addColumn("effective_to", "bigint")
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("updated_at", "bigint", (c) => c.notNull())
      .execute();
    await db.schema.createIndex("assignments_environment_id_idx").on("assignments").columns(["environment_id", "id"]).execute();
    await db.schema
      .createIndex("assignments_environment_identity_idx")
      .on("assignments")
      .columns(["environment_id", "identity_id"])
      .execute();
    // node_id / role_id lead (ids are globally unique, so they are as selective as with the
    // environment first) so that the FK checks on node and role deletes use these indexes too
    await db.schema.createIndex("assignments_node_environment_idx").on("assignments").columns(["node_id", "environment_id"]).execute();
    await db.schema.createIndex("assignments_role_environment_idx").on("assignments").columns(["role_id", "environment_id"]).execute();

    await db.schema
      .createTable("idempotency_keys")
      .addColumn("environment_id", id, (c) => c.notNull().references("environments.id").onDelete("cascade"))
      .addColumn("key", "text", (c) => c.notNull())
      .addColumn("request_hash", "text", (c) => c.notNull())
      .addColumn("response", bytesType(db), (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addPrimaryKeyConstraint("idempotency_keys_pkey", ["environment_id", "key"])
      .execute();
    await db.schema.createIndex("idempotency_keys_created_at_idx").on("idempotency_keys").column("created_at").execute();
  },

  async down(db: Kysely<any>) {
    for (const table of [
      "idempotency_keys",
      "assignments",
      "nodes",
      "role_permissions",
      "roles",
      "permissions",
      "app_memberships",
      "identities",
      "api_keys",
      "environments",
      "applications",
      "accounts",
    ]) {
      await db.schema.dropTable(table).execute();
    }
  },
};

/** Every migration, by key. Append only. */
export const migrations: Readonly<Record<string, Migration>> = Object.freeze({
  "2026-11-23-001-initial": initial,
});

const provider: MigrationProvider = { getMigrations: async () => ({ ...migrations }) };

/** Applies every pending migration and returns the names it applied, oldest first; throws the first migration error. */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  // On PostgreSQL the migration bookkeeping lives in the connection's own schema (search_path):
  // Kysely otherwise looks for its tables across every schema and may find another tenant's.
  const migrationTableSchema = isPostgres(db)
    ? (await sql<{ schema: string }>`select current_schema() as schema`.execute(db)).rows[0].schema
    : undefined;
  const { error, results } = await new Migrator({ db, provider, migrationTableSchema }).migrateToLatest();
  if (error) throw error;
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}
