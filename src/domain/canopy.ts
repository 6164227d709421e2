import type { Engine } from "../engine/index.js";
import type { Store } from "../store/store.js";
import type { Clock } from "./clock.js";
import type { Limits } from "./limits.js";
import type { ApiKeyScope } from "./model.js";
import { Authenticator } from "./auth.js";
import { AdminService } from "./admin-service.js";
import { AssignmentService } from "./assignment-service.js";
import { CatalogService } from "./catalog-service.js";
import { CheckService } from "./check-service.js";
import { HierarchyService } from "./hierarchy-service.js";
import { IdentityService } from "./identity-service.js";
import { Runtime, type Logger } from "./runtime.js";
import { newId } from "./ids.js";

/** The use cases of Canopy, shared by the Connect handlers and (later) the REST surface. */
export interface Canopy {
  runtime: Runtime;
  auth: Authenticator;
  admin: AdminService;
  catalog: CatalogService;
  hierarchy: HierarchyService;
  identities: IdentityService;
  assignments: AssignmentService;
  checks: CheckService;
  /** Loads every environment, identity and membership from the store into the engine. */
  warmUp(): Promise<void>;
  /**
   * On an empty database: creates the default account, application (development + production) and
   * the first keys. Returns the secrets to print once, or null when the database was not empty.
   */
  bootstrap(opts: { adminKey?: string }): Promise<{ adminKey: string; developmentKey: string; generatedAdminKey: boolean } | null>;
}

export function createCanopy(deps: { store: Store; engine: Engine; clock: Clock; limits: Limits; logger: Logger }): Canopy {
  const runtime = new Runtime(deps.store, deps.engine, deps.clock, deps.limits, deps.logger);
  const auth = new Authenticator(runtime);
  const admin = new AdminService(runtime, auth);
  return {
    runtime,
    auth,
    admin,
    catalog: new CatalogService(runtime),
    hierarchy: new HierarchyService(runtime),
    identities: new IdentityService(runtime),
    assignments: new AssignmentService(runtime),
    checks: new CheckService(runtime),

    async warmUp() {
      const reader = deps.store.reader;
      for (const account of await reader.listAllAccounts()) {
        for (const i of await reader.listAllIdentities(account.id)) deps.engine.setIdentity(i.id, i.accountId, i.isActive);
      }
      const apps = new Set<string>();
      for (const env of await reader.listAllEnvironments()) {
        runtime.cacheEnvironment(env);
        apps.add(env.applicationId);
        const [nodes, permissions, roles, assignments] = await Promise.all([
          reader.listAllNodes(env.id),
          reader.listAllPermissions(env.id),
          reader.listAllRoles(env.id),
          reader.listAllAssignments(env.id),
        ]);
        deps.engine.loadEnvironment({
          id: env.id,
          accountId: env.accountId,
          applicationId: env.applicationId,
          rootNodeId: env.rootNodeId,
          revision: env.revision,
          nodes,
          permissionKeys: permissions.map((p) => p.key),
          roles,
          assignments,
        });
      }
      for (const app of apps) {
        for (const m of await reader.listMembershipsOfApplication(app)) deps.engine.setMembership(app, m.identityId, m.status);
      }
    },

    async bootstrap(opts) {
      if (await deps.store.reader.getDefaultAccount()) return null;
      return runtime.write(async (tx, effects) => {
        const now = deps.clock.now();
        const account = { id: newId(), name: "default", createdAt: now };
        await tx.insertAccount(account);
        const application = { id: newId(), accountId: account.id, name: "default", createdAt: now };
        await tx.insertApplication(application);
        const development = await admin.insertEnvironment(tx, effects, application, "development");
        await admin.insertEnvironment(tx, effects, application, "production");
        const adminKey = await admin.insertKey(tx, account.id, null, "bootstrap admin key", [], null, opts.adminKey);
        const devKey = await admin.insertKey(tx, account.id, development.id, "bootstrap development key", [] as ApiKeyScope[], null);
        return { adminKey: adminKey.secret, developmentKey: devKey.secret, generatedAdminKey: opts.adminKey === undefined };
      });
    },
  };
}
