import type { ApiKey, ApiKeyScope, Application, Environment, HierarchyNode } from "./model.js";
import type { StoreWriter } from "../store/store.js";
import type { Effects, Runtime } from "./runtime.js";
import { ENVIRONMENT_SCOPES, generateSecret, hashSecret, type Authenticator, type Principal } from "./auth.js";
import { ConflictError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from "./errors.js";
import { newId } from "./ids.js";
import { pageRequest, requireId, requireText, requireTypeName, toPage } from "./validate.js";
import { StoreConflictError } from "../store/store.js";

/** The two environments every new application starts with. */
export const DEFAULT_ENVIRONMENTS = ["development", "production"] as const;
/** Node type of a new environment's root (a schema's root_node_type replaces it). */
export const DEFAULT_ROOT_TYPE = "root";

/**
 * Applications, environments and API keys: the admin key's surface. Every call is confined to the
 * admin key's account.
 */
export class AdminService {
  constructor(
    private readonly rt: Runtime,
    private readonly auth: Authenticator,
  ) {}

  async createApplication(p: Principal, name: string): Promise<{ application: Application; environments: Environment[] }> {
    const appName = requireText(name, "name");
    return this.rt.write(async (tx, effects) => {
      await tx.lockAccount(p.accountId);
      const now = this.rt.clock.now();
      const application: Application = { id: newId(), accountId: p.accountId, name: appName, createdAt: now };
      try {
        await tx.insertApplication(application);
      } catch (err) {
        if (err instanceof StoreConflictError) throw new ConflictError(`an application named ${JSON.stringify(appName)} already exists`, "name", "application.exists");
        throw err;
      }
      const environments: Environment[] = [];
      for (const envName of DEFAULT_ENVIRONMENTS) environments.push(await this.insertEnvironment(tx, effects, application, envName));
      return { application, environments };
    });
  }

  async listApplications(p: Principal, pageSize: number, pageToken: string) {
    const page = pageRequest(pageSize, pageToken, this.rt.limits);
    const rows = await this.rt.store.reader.listApplications(p.accountId, { limit: page.pageSize + 1, afterId: page.afterId });
    return toPage(rows, page);
  }

  async createEnvironment(p: Principal, applicationId: string, name: string): Promise<Environment> {
    requireId(applicationId, "application_id");
    const envName = requireTypeName(name, "name");
    return this.rt.write(async (tx, effects) => {
      // serialized with identity and membership writes, which lock every environment of the account
      await tx.lockAccount(p.accountId);
      const app = await tx.getApplication(applicationId);
      if (!app || app.accountId !== p.accountId) throw new NotFoundError("application", applicationId, "application_id");
      return this.insertEnvironment(tx, effects, app, envName);
    });
  }

  /** Read from storage, so every replica lists environments created anywhere. */
  async listEnvironments(p: Principal, applicationId: string): Promise<Environment[]> {
    return this.rt.store.reader.listEnvironments(p.accountId, applicationId || undefined);
  }

  async deleteEnvironment(p: Principal, id: string): Promise<void> {
    requireId(id, "id");
    await this.rt.write(async (tx, effects) => {
      // account, then the environment's row (the order every writer uses), before deleting its rows
      await tx.lockAccount(p.accountId);
      const env = await tx.getEnvironment(id);
      if (!env || env.accountId !== p.accountId) throw new NotFoundError("environment", id, "id");
      await tx.lockEnvironment(id);
      await tx.deleteEnvironment(id);
      await tx.notifyChange(id, -1);
      effects.push(() => {
        this.rt.dropEnvironment(id);
        this.auth.evictEnvironment(id);
      });
    });
  }

  async createApiKey(
    p: Principal,
    input: { name: string; environmentId: string; scopes: string[]; expiresAt: number | null },
  ): Promise<{ apiKey: ApiKey; secret: string }> {
    const name = requireText(input.name, "name");
    const environmentId = input.environmentId || null;
    const allowed: readonly string[] = environmentId === null ? ["admin"] : ENVIRONMENT_SCOPES;
    const scopes = [...new Set(input.scopes)];
    scopes.forEach((s, i) => {
      if (!allowed.includes(s)) {
        throw new InvalidArgumentError(`scopes[${i}]`, `${JSON.stringify(s)} is not a scope of ${environmentId === null ? "an admin" : "an environment"} key; use one of ${allowed.join(", ")}`);
      }
    });
    if (input.expiresAt !== null && input.expiresAt <= this.rt.clock.now()) throw new InvalidArgumentError("expire_time", "must be in the future");
    return this.rt.write(async (tx) => {
      if (environmentId !== null) {
        const env = await tx.getEnvironment(environmentId);
        if (!env || env.accountId !== p.accountId) throw new NotFoundError("environment", environmentId, "environment_id");
      }
      return this.insertKey(tx, p.accountId, environmentId, name, scopes as ApiKeyScope[], input.expiresAt);
    });
  }

  /** Stores a new key (hash only) and returns it with its secret, which is never shown again. */
  async insertKey(
    tx: StoreWriter,
    accountId: string,
    environmentId: string | null,
    name: string,
    scopes: ApiKeyScope[],
    expiresAt: number | null,
    secret = generateSecret(),
  ): Promise<{ apiKey: ApiKey; secret: string }> {
    const apiKey: ApiKey = {
      id: newId(),
      accountId,
      environmentId,
      name,
      keyHash: hashSecret(secret),
      prefix: secret.slice(0, 12),
      scopes,
      expiresAt,
      revokedAt: null,
      createdAt: this.rt.clock.now(),
    };
    await tx.insertApiKey(apiKey);
    return { apiKey, secret };
  }

  async listApiKeys(p: Principal, environmentId: string): Promise<ApiKey[]> {
    return this.rt.store.reader.listApiKeys(p.accountId, environmentId || undefined);
  }

  async revokeApiKey(p: Principal, id: string): Promise<ApiKey> {
    requireId(id, "id");
    return this.rt.write(async (tx, effects) => {
      const key = await tx.getApiKey(id);
      if (!key || key.accountId !== p.accountId) throw new NotFoundError("API key", id, "id");
      if (key.id === p.keyId) throw new FailedPreconditionError("a key cannot revoke itself; revoke it with another admin key", "id");
      if (key.revokedAt !== null) return key;
      const at = this.rt.clock.now();
      await tx.revokeApiKey(id, at);
      effects.push(() => this.auth.evict(id));
      return { ...key, revokedAt: at };
    });
  }

  /** Inserts an environment with its root node, and queues loading it into the engine. */
  async insertEnvironment(tx: StoreWriter, effects: Effects, app: Application, name: string): Promise<Environment> {
    const now = this.rt.clock.now();
    const envId = newId();
    const root: HierarchyNode = {
      id: newId(),
      environmentId: envId,
      parentId: null,
      type: DEFAULT_ROOT_TYPE,
      name: "root",
      externalId: null,
      metadata: {},
      createdAt: now,
      updatedAt: now,
    };
    const env: Environment = {
      id: envId,
      applicationId: app.id,
      accountId: app.accountId,
      name,
      accessModel: "hierarchy",
      schema: null,
      rootNodeId: root.id,
      revision: 0,
      createdAt: now,
    };
    try {
      await tx.insertEnvironment(env);
    } catch (err) {
      if (err instanceof StoreConflictError) throw new ConflictError(`application ${app.id} already has an environment named ${JSON.stringify(name)}`, "name", "environment.exists");
      throw err;
    }
    await tx.insertNode(root);
    env.revision = await tx.bumpRevision(envId);
    // Not loaded here: on first use it loads from storage together with the account's identities and
    // the application's memberships, which an empty in-memory state would lack.
    return env;
  }
}
