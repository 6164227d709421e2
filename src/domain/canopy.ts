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
import { DEFAULT_REPLICATION, Runtime, type Logger, type ReplicationOptions } from "./runtime.js";
import { newId } from "./ids.js";
import type { DomainObserver } from "./observer.js";

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
  /**
   * Starts following other replicas (PostgreSQL: LISTEN + revision polling). Environments load
   * lazily on first use and stay warm.
   */
  start(): Promise<void>;
  /** Stops following other replicas, then waits for the writes still queued or running to finish. */
  stop(): Promise<void>;
  /**
   * On an empty database: creates the default account, application (development + production) and
   * the first keys. Returns the secrets to print once, or null when the database was not empty.
   */
  bootstrap(opts: { adminKey?: string }): Promise<{ adminKey: string; developmentKey: string; generatedAdminKey: boolean } | null>;
}

export function createCanopy(deps: {
  store: Store;
  engine: Engine;
  clock: Clock;
  limits: Limits;
  logger: Logger;
  replication?: ReplicationOptions;
  /** metrics hooks (checks, closure rebuilds, revision lag, bulk items); none by default */
  observer?: DomainObserver;
}): Canopy {
  const replication = deps.replication ?? DEFAULT_REPLICATION;
  const runtime = new Runtime(deps.store, deps.engine, deps.clock, deps.limits, deps.logger, replication, deps.observer);
  const auth = new Authenticator(runtime, replication.pollIntervalMs);
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

    start() {
      return runtime.startReplication();
    },
    async stop() {
      await runtime.stopReplication();
      // writes still running (a cancelled call's last transaction) finish before the store may close
      await runtime.settle();
    },

    async bootstrap(opts) {
      if (await deps.store.reader.getDefaultAccount()) return null;
      return runtime.write(async (tx, effects) => {
        // replicas starting together on an empty PostgreSQL: only the first one initialises it
        await tx.lockBootstrap();
        if (await tx.getDefaultAccount()) return null;
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
