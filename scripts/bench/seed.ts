import { performance } from "node:perf_hooks";
import { createCanopy } from "../../src/domain/canopy.js";
import { systemClock } from "../../src/domain/clock.js";
import { DEFAULT_LIMITS } from "../../src/domain/limits.js";
import type { Assignment, HierarchyNode } from "../../src/domain/model.js";
import type { Logger } from "../../src/domain/runtime.js";
import { createEngine } from "../../src/engine/index.js";
import { createStore } from "../../src/store/index.js";
import type { Store, StoreWriter } from "../../src/store/store.js";
import type { Workload } from "./workload.js";

/**
 * Seeding helpers shared by the benchmark sections: write a workload straight into storage through
 * the Store API (no RPCs, no per-item validation: the workload generator already guarantees a
 * well-formed tree and unique assignments), in big transactions, while no server holds the
 * database. A server started on the database afterwards loads the workload like any other
 * environment (lazily, on first use).
 */

export interface SeededDatabase {
  /** the bootstrap development environment, now holding the workload */
  environmentId: string;
  /** that environment's key (all scopes) */
  apiKey: string;
  /** the environment's revision after the load */
  revision: number;
  ms: number;
}

/** A freshly bootstrapped database: its development environment and that environment's key. */
export interface BootstrappedDatabase {
  accountId: string;
  applicationId: string;
  environmentId: string;
  /** the development environment's key (all scopes) */
  apiKey: string;
}

export interface SeedOptions {
  /** rows per transaction (default 5,000) */
  rowsPerTransaction?: number;
  /** concurrent transactions; default 8 on PostgreSQL (one connection each), 1 on SQLite (single writer) */
  concurrency?: number;
  /** created_at / updated_at of every row (default now) */
  now?: number;
  /** progress: stage name, rows done, rows in the stage */
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface SeedResult {
  ms: number;
  /** ms per stage: catalog, nodes, identities, assignments */
  stages: Record<string, number>;
  /** the environment's revision after seeding */
  revision: number;
}

const quiet: Logger = { info() {}, warn() {}, error() {} };

/**
 * Bootstraps an empty store as a first start would (account, application, development and
 * production environments, keys) and returns the development environment with its key.
 */
export async function bootstrapStore(store: Store): Promise<BootstrappedDatabase> {
  const canopy = createCanopy({ store, engine: createEngine(), clock: systemClock, limits: DEFAULT_LIMITS, logger: quiet });
  const boot = await canopy.bootstrap({});
  if (!boot) throw new Error("bootstrapStore: the database is not empty");
  const env = (await store.reader.listAllEnvironments()).find((e) => e.name === "development");
  if (!env) throw new Error("bootstrapStore: bootstrap made no development environment");
  return { accountId: env.accountId, applicationId: env.applicationId, environmentId: env.id, apiKey: boot.developmentKey };
}

/**
 * Writes a workload into an empty environment (as bootstrapped: a root node and nothing else). The
 * workload's root replaces the environment's root, so node, role, identity and assignment ids are
 * exactly the workload's and its checks can be sent unchanged. Ids are primary keys across the
 * database: seed a given workload once per database. Every identity gets an active membership in
 * `applicationId`. Pass `{ ...w, assignments: [] }` to seed everything but the assignments (e.g. to
 * stream those through the API afterwards).
 */
export async function seedWorkload(
  store: Store,
  environmentId: string,
  accountId: string,
  applicationId: string,
  w: Workload,
  opts: SeedOptions = {},
): Promise<SeedResult> {
  const t0 = performance.now();
  const rowsPer = opts.rowsPerTransaction ?? 5_000;
  const concurrency = opts.concurrency ?? (store.dialect === "postgres" ? 8 : 1);
  const now = opts.now ?? systemClock.now();
  const stamp = { createdAt: now, updatedAt: now };
  const stages: Record<string, number> = {};
  const stage = async (name: string, fn: () => Promise<void>) => {
    const s = performance.now();
    await fn();
    stages[name] = performance.now() - s;
  };

  const env = await store.reader.getEnvironment(environmentId);
  if (!env) throw new Error(`seedWorkload: environment ${environmentId} does not exist`);
  if (env.accountId !== accountId || env.applicationId !== applicationId) {
    throw new Error(`seedWorkload: environment ${environmentId} is not in account ${accountId} / application ${applicationId}`);
  }
  const root = w.nodes[0];
  if (!root || root.parentId !== null) throw new Error("seedWorkload: the workload's first node must be its root");
  const oldRoot = env.rootNodeId;
  if (oldRoot !== root.id && (await store.reader.listChildren(environmentId, oldRoot, { limit: 1, afterId: "" })).length > 0) {
    throw new Error(`seedWorkload: environment ${environmentId} is not empty (its root has children)`);
  }
  const nodeRow = (n: Workload["nodes"][number]): HierarchyNode => ({
    id: n.id,
    environmentId,
    parentId: n.parentId,
    type: n.type,
    name: n.id,
    externalId: null,
    metadata: {},
    ...stamp,
  });

  /** Runs `write` over `rows` in transactions of `rowsPer` rows, `concurrency` at a time. */
  const inTransactions = async <T>(name: string, rows: readonly T[], write: (tx: StoreWriter, chunk: readonly T[]) => Promise<void>) => {
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < rows.length) {
        const chunk = rows.slice(next, next + rowsPer);
        next += rowsPer;
        await store.transaction((tx) => write(tx, chunk));
        done += chunk.length;
        opts.onProgress?.(name, done, rows.length);
      }
    };
    const workers = Math.max(1, Math.min(concurrency, Math.ceil(rows.length / rowsPer)));
    await Promise.all(Array.from({ length: workers }, worker));
  };

  // the catalog, and the workload's root in place of the bootstrapped one
  await stage("catalog", () =>
    store.transaction(async (tx) => {
      const permissionId = new Map(w.permissionKeys.map((key, i) => [key, `p-${environmentId}-${i.toString(16).padStart(8, "0")}`]));
      await tx.insertPermissions(
        w.permissionKeys.map((key) => ({ id: permissionId.get(key)!, environmentId, key, description: "", category: key.split(".")[0], ...stamp })),
      );
      for (const r of w.roles) {
        await tx.insertRole({ id: r.id, environmentId, name: r.name, description: "", ...stamp }, r.permissionKeys.map((k) => permissionId.get(k)!));
      }
      if (oldRoot !== root.id) {
        await tx.insertNode(nodeRow(root));
        await tx.updateEnvironment(environmentId, { rootNodeId: root.id });
        await tx.deleteNodes(environmentId, [oldRoot]);
      }
    }),
  );

  // nodes level by level, so that every parent is committed before its children
  await stage("nodes", async () => {
    const byDepth = new Map<number, Array<Workload["nodes"][number]>>();
    for (const n of w.nodes.slice(1)) {
      const level = byDepth.get(n.depth);
      if (level) level.push(n);
      else byDepth.set(n.depth, [n]);
    }
    for (const depth of [...byDepth.keys()].sort((a, b) => a - b)) {
      await inTransactions("nodes", byDepth.get(depth)!, async (tx, chunk) => {
        for (const n of chunk) await tx.insertNode(nodeRow(n));
      });
    }
  });

  await stage("identities", () =>
    inTransactions("identities", w.identityIds, async (tx, chunk) => {
      for (const id of chunk) {
        await tx.insertIdentity({ id, accountId, email: `${id}@bench.invalid`, displayName: id, externalId: null, metadata: {}, isActive: true, ...stamp });
        await tx.insertMembership({ identityId: id, applicationId, status: "active", ...stamp });
      }
    }),
  );

  await stage("assignments", () =>
    inTransactions("assignments", w.assignments, async (tx, chunk) => {
      await tx.insertAssignments(chunk.map((a): Assignment => ({ ...a, environmentId, ...stamp })));
    }),
  );

  const revision = await store.transaction((tx) => tx.bumpRevision(environmentId));
  return { ms: performance.now() - t0, stages, revision };
}

/**
 * A new database holding the workload: bootstraps it as a first start would, then seeds the
 * development environment with `seedWorkload`.
 */
export async function seedDatabase(w: Workload, databaseUrl: string, opts: SeedOptions = {}): Promise<SeededDatabase> {
  const t0 = performance.now();
  const store = await createStore(databaseUrl);
  try {
    const db = await bootstrapStore(store);
    const { revision } = await seedWorkload(store, db.environmentId, db.accountId, db.applicationId, w, opts);
    return { environmentId: db.environmentId, apiKey: db.apiKey, revision, ms: performance.now() - t0 };
  } finally {
    await store.close();
  }
}
