import { performance } from "node:perf_hooks";
import type { Engine, TreeNode } from "../engine/index.js";
import type { ChangeNotice, Store, StoreReader, StoreWriter } from "../store/store.js";
import type { Clock } from "./clock.js";
import type { Limits } from "./limits.js";
import type { Environment } from "./model.js";
import { NotFoundError, UnavailableError } from "./errors.js";
import { StoreUnavailableError } from "../store/store.js";
import { NO_OBSERVER, type DomainObserver } from "./observer.js";

/** Minimal structured logger (pino satisfies it). */
/** Assignment ids indexed per event-loop turn after a load (see Engine.indexIds). */
const ID_INDEX_SLICE = 25_000;

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Engine mutations a write queues during its transaction; they run only after the commit. */
export type Effects = Array<() => void>;

/** Effects that advance a revision: applied after every data effect of the same write. */
const REVISION_EFFECT = new WeakSet<() => void>();

/** How a replica on a shared database keeps up with the others. */
export interface ReplicationOptions {
  /** revision polling period, the safety net for lost notifications (ms) */
  pollIntervalMs: number;
  /** a replica that has not confirmed it is current for this long answers UNAVAILABLE (ms) */
  maxStalenessMs: number;
}

export const DEFAULT_REPLICATION: ReplicationOptions = Object.freeze({ pollIntervalMs: 1000, maxStalenessMs: 5000 });

/**
 * Shared machinery of the services: the serialized write path, lazily loaded environments, revision
 * waiters and — on a shared PostgreSQL — replication from other processes.
 *
 * Every write goes through `write()`: process lock → one store transaction → environment row locks
 * (other replicas queue behind them) → catch-up of any environment another replica changed → the
 * write, which validates against that current state and bumps revisions (with a notification) →
 * commit (durable) → engine effects → unlock. Reloads take the same process lock, so in-memory state
 * always equals some committed database state and never goes backwards; a write is visible to
 * checks here as soon as its RPC returns, and on other replicas once they reach its revision.
 */
export class Runtime {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly environments = new Map<string, Environment>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly pendingReloads = new Map<string, Promise<void>>();
  private readonly replicated: boolean;
  private lastConfirmed = performance.now();
  private pollTimer: NodeJS.Timeout | undefined;
  private running = false;
  private unsubscribe: (() => Promise<void>) | undefined;
  /** environments the running write locked and caught up (only those may be bumped) */
  private lockedByWrite: Set<string> | undefined;

  constructor(
    readonly store: Store,
    readonly engine: Engine,
    readonly clock: Clock,
    readonly limits: Limits,
    readonly logger: Logger,
    readonly replication: ReplicationOptions = DEFAULT_REPLICATION,
    /** metrics hooks (src/domain/observer.ts) */
    readonly observer: DomainObserver = NO_OBSERVER,
  ) {
    this.replicated = store.dialect === "postgres";
  }

  /**
   * Runs `fn` in a transaction under the write lock, after locking and catching up the `lock`
   * environments — a list, or computed from the transaction (then passed to `fn` as `locked`).
   * Every environment a write bumps must be locked here, before the write changes anything: the
   * catch-up reads committed state only, and no revision is claimed whose data is not loaded.
   * A write whose `signal` (the call's deadline or cancellation) aborted while it waited for its
   * turn throws the abort reason without starting a transaction.
   */
  write<T>(
    fn: (tx: StoreWriter, effects: Effects, locked: string[]) => Promise<T>,
    lock: string[] | ((tx: StoreWriter) => Promise<string[]>) = [],
    signal?: AbortSignal,
  ): Promise<T> {
    let locked: string[] = [];
    return this.exclusive(async () => {
      signal?.throwIfAborted();
      const effects: Effects = [];
      let result: T;
      try {
        result = await this.store.transaction(async (tx) => {
          locked = [...new Set(typeof lock === "function" ? await lock(tx) : lock)].sort();
          for (const id of locked) await this.lockAndCatchUp(tx, id);
          this.lockedByWrite = new Set(locked);
          try {
            return await fn(tx, effects, locked);
          } finally {
            this.lockedByWrite = undefined;
          }
        });
      } catch (err) {
        if (err instanceof StoreUnavailableError) {
          this.logger.warn({ err: err.message }, "storage unavailable during a write");
          throw new UnavailableError("storage unavailable; retry later", "storage.unavailable");
        }
        throw err;
      }
      // Data first, revisions last: a check never sees a revision whose data is not in memory yet.
      // One event-loop turn between the commit (a synchronous fsync on SQLite) and applying the write
      // (a closure rebuild for hierarchy writes): checks waiting meanwhile are answered from the state
      // before this write, instead of waiting for both back to back. Writes stay serialized (we still
      // hold the queue) and nothing claims the new revision before the effects below.
      if (effects.length > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      try {
        for (const apply of effects) if (!REVISION_EFFECT.has(apply)) apply();
        for (const apply of effects) if (REVISION_EFFECT.has(apply)) apply();
      } catch (err) {
        // Committed, but memory could not follow: forget the environments so they reload from storage.
        this.logger.error({ err }, "applying a committed write to memory failed; reloading the environments it touched");
        for (const id of locked) this.engine.dropEnvironment(id);
        throw err;
      }
      return result;
    });
  }

  /** A write inside one environment: locks it (across replicas) and catches up first. */
  writeIn<T>(environmentId: string, fn: (tx: StoreWriter, effects: Effects) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.write(fn, [environmentId], signal);
  }

  /** Bumps the environment's revision inside `tx`, notifies other replicas on commit, queues the engine update. */
  async bump(tx: StoreWriter, effects: Effects, environmentId: string): Promise<number> {
    if (!this.lockedByWrite?.has(environmentId)) {
      // a revision may only be claimed for state this process has caught up to (see write())
      throw new Error(`internal: bump of environment ${environmentId}, which this write did not lock`);
    }
    const revision = await tx.bumpRevision(environmentId);
    await tx.notifyChange(environmentId, revision);
    const apply = () => {
      if (this.engine.hasEnvironment(environmentId)) this.engine.setRevision(environmentId, revision);
      const env = this.environments.get(environmentId);
      if (env) env.revision = revision;
      this.notify(environmentId);
    };
    REVISION_EFFECT.add(apply);
    effects.push(apply);
    return revision;
  }

  /** Bumps every listed environment; returns the revisions by environment id. */
  async bumpAll(tx: StoreWriter, effects: Effects, environmentIds: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const id of environmentIds) out.set(id, await this.bump(tx, effects, id));
    return out;
  }

  /** Applies node changes to the engine (one closure rebuild) and reports the rebuild to the observer. */
  applyNodes(environmentId: string, change: { upsert?: TreeNode[]; remove?: string[] }): void {
    const started = performance.now();
    this.engine.applyNodes(environmentId, change);
    this.observer.closureRebuilt((performance.now() - started) / 1000);
  }

  /** Caches a new environment's metadata (its engine state is loaded by the caller). */
  cacheEnvironment(env: Environment): void {
    this.environments.set(env.id, { ...env });
  }

  /** Forgets an environment everywhere on this process. */
  dropEnvironment(id: string): void {
    this.environments.delete(id);
    this.engine.dropEnvironment(id);
    this.notify(id);
  }

  /** The loaded environment's metadata as last committed, or NotFound. */
  environment(id: string): Environment {
    const env = this.environments.get(id);
    if (!env) throw new NotFoundError("environment", id, "environment_id");
    return env;
  }

  /**
   * The environment with its engine state loaded (from storage on first use; environments stay warm
   * afterwards), or undefined when it does not exist.
   */
  async ensureLoaded(id: string): Promise<Environment | undefined> {
    const env = this.environments.get(id);
    if (env && this.engine.hasEnvironment(id)) return env;
    await this.reload(id);
    return this.environments.get(id);
  }

  /** Throws UNAVAILABLE when this replica cannot vouch that its in-memory state is current. */
  assertFresh(): void {
    if (!this.replicated) return;
    const age = performance.now() - this.lastConfirmed;
    if (age > this.replication.maxStalenessMs) {
      throw new UnavailableError(
        `this replica has not been able to confirm it is current for ${Math.round(age)} ms (storage unreachable?); retry later`,
        "consistency.unconfirmed",
      );
    }
  }

  /**
   * Resolves once the environment's in-memory state is at `minRevision` or later; rejects with
   * UNAVAILABLE after `limits.revisionWaitMs` or when `signal` aborts (the RPC deadline). While
   * behind it asks storage at once instead of waiting for the next notification or poll.
   */
  async awaitRevision(environmentId: string, minRevision: number, signal?: AbortSignal): Promise<void> {
    if (minRevision <= 0) return;
    if (!this.engine.hasEnvironment(environmentId)) await this.ensureLoaded(environmentId);
    if (this.engine.hasEnvironment(environmentId) && this.engine.revision(environmentId) >= minRevision) return;
    if (this.replicated) void this.refresh([environmentId]).catch(() => undefined);
    await new Promise<void>((resolve, reject) => {
      let set = this.waiters.get(environmentId);
      if (!set) this.waiters.set(environmentId, (set = new Set()));
      const done = (err?: Error) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        set!.delete(check);
        if (err) reject(err);
        else resolve();
      };
      const check = () => {
        if (!this.engine.hasEnvironment(environmentId)) {
          // deleted: fail at once; merely unloaded (reloading): keep waiting
          if (!this.environments.has(environmentId)) done(new NotFoundError("environment", environmentId, "environment_id"));
        } else if (this.engine.revision(environmentId) >= minRevision) done();
      };
      const fail = () =>
        done(
          new UnavailableError(
            `environment ${environmentId} is at revision ${this.engine.hasEnvironment(environmentId) ? this.engine.revision(environmentId) : "?"}, behind min_revision ${minRevision}; retry later`,
            "consistency.behind",
          ),
        );
      const onAbort = () => fail();
      const timer = setTimeout(fail, this.limits.revisionWaitMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      set.add(check);
      if (signal?.aborted) fail();
    });
  }

  /** Between startReplication and stopReplication: readiness (/readyz, grpc.health.v1) requires it. */
  get started(): boolean {
    return this.running;
  }

  /** Starts following other replicas (PostgreSQL): LISTEN for notifications and poll revisions. */
  async startReplication(): Promise<void> {
    if (!this.replicated) {
      this.running = true;
      return;
    }
    this.unsubscribe = await this.store.subscribe({
      onChange: (n) => this.onChange(n),
      onReconnect: () => {
        this.logger.info({}, "change notifications reconnected: reloading every loaded environment");
        void this.refresh([...this.environments.keys()], true).catch(() => undefined);
      },
      onDisconnect: (err) => this.logger.warn({ err: err.message }, "change notifications lost; polling continues, reconnecting"),
    });
    const tick = () => {
      const started = performance.now();
      this.refresh([...this.environments.keys()]).then(
        (lag) => {
          this.lastConfirmed = started;
          this.observer.revisionLag(lag);
        },
        (err) => this.logger.warn({ err: (err as Error).message }, "revision poll failed"),
      ).finally(() => {
        if (this.pollTimer !== undefined) this.pollTimer = setTimeout(tick, this.replication.pollIntervalMs);
      });
    };
    this.pollTimer = setTimeout(tick, this.replication.pollIntervalMs);
    this.running = true;
  }

  async stopReplication(): Promise<void> {
    this.running = false;
    const t = this.pollTimer;
    this.pollTimer = undefined;
    if (t) clearTimeout(t);
    await this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /**
   * Compares the loaded environments with storage and reloads those behind (or all with `force`);
   * drops those deleted elsewhere. Throws when storage cannot be read. Returns how many revisions the
   * furthest-behind environment was behind storage before the reloads (the replica's revision lag).
   */
  async refresh(ids: string[], force = false): Promise<number> {
    if (ids.length === 0) {
      // nothing loaded: still prove storage answers (a nil id matches no environment)
      await this.store.revisions(["00000000-0000-0000-0000-000000000000"]);
      return 0;
    }
    const current = await this.store.revisions(ids);
    let lag = 0;
    for (const [id, rev] of current) if (this.engine.hasEnvironment(id)) lag = Math.max(lag, rev - this.engine.revision(id));
    await Promise.all(
      ids.map(async (id) => {
        const rev = current.get(id);
        if (rev === undefined) {
          if (this.environments.has(id)) await this.exclusive(async () => this.dropEnvironment(id));
        } else if (force || !this.engine.hasEnvironment(id) || this.engine.revision(id) < rev) {
          await this.reload(id);
        }
      }),
    );
    return lag;
  }

  private onChange(n: ChangeNotice): void {
    if (!this.environments.has(n.environmentId)) return; // not loaded here: it loads fresh on first use
    if (n.revision < 0) {
      void this.exclusive(async () => this.dropEnvironment(n.environmentId));
      return;
    }
    if (this.engine.hasEnvironment(n.environmentId) && this.engine.revision(n.environmentId) >= n.revision) return;
    void this.reload(n.environmentId).catch((err) => this.logger.warn({ err: (err as Error).message, environment: n.environmentId }, "reload after notification failed"));
  }

  /** Reloads one environment from a consistent snapshot, coalescing concurrent requests. */
  private reload(id: string): Promise<void> {
    const pending = this.pendingReloads.get(id);
    if (pending) return pending;
    const p = this.exclusive(async () => {
      await this.store.snapshot((reader) => this.loadFrom(reader, id));
    }).finally(() => this.pendingReloads.delete(id));
    this.pendingReloads.set(id, p);
    return p;
  }

  /** Inside a write transaction: lock the environment's row, then catch up if another replica moved it on. */
  private async lockAndCatchUp(tx: StoreWriter, id: string): Promise<void> {
    const rev = await tx.lockEnvironment(id);
    if (rev === undefined) {
      this.dropEnvironment(id);
      throw new NotFoundError("environment", id, "environment_id");
    }
    if (!this.engine.hasEnvironment(id) || this.engine.revision(id) < rev) await this.loadFrom(tx, id);
  }

  /**
   * Loads the environment's whole state (and its account's identities and its application's
   * memberships) from `reader`, replacing what the engine holds, unless the engine is already newer.
   */
  private async loadFrom(reader: StoreReader, id: string): Promise<void> {
    const env = await reader.getEnvironment(id);
    if (!env) {
      if (this.environments.has(id)) this.dropEnvironment(id);
      return;
    }
    if (this.engine.hasEnvironment(id) && this.engine.revision(id) >= env.revision && this.environments.has(id)) return;
    const [nodes, permissions, roles, memberships] = await Promise.all([
      reader.listTreeNodes(id),
      reader.listAllPermissions(id),
      reader.listAllRoles(id),
      reader.listMembershipStates(env.applicationId),
    ]);
    // Identities and assignments arrive in pages straight into the engine: no array of every row.
    await reader.scanIdentityStates(env.accountId, (rows) => {
      for (const i of rows) this.engine.setIdentity(i.id, i.accountId, i.isActive);
    });
    this.engine.resetMemberships(env.applicationId, memberships);
    const loader = this.engine.beginEnvironment({
      id: env.id,
      accountId: env.accountId,
      applicationId: env.applicationId,
      rootNodeId: env.rootNodeId,
      revision: env.revision,
      nodes,
      permissionKeys: permissions.map((p) => p.key),
      roles,
    });
    await reader.scanAssignments(id, (rows) => loader.addAssignments(rows));
    loader.commit();
    // The assignment-id index (only writes need it) is built after the environment is ready, in
    // slices between other work; a write that needs it first completes it.
    const step = () => {
      if (this.engine.hasEnvironment(id) && !this.engine.indexIds(id, ID_INDEX_SLICE)) setImmediate(step);
    };
    setImmediate(step);
    this.environments.set(env.id, env);
    this.notify(id);
  }

  /** Resolves once no write or reload is queued or running (shutdown waits for it before closing the store). */
  async settle(): Promise<void> {
    for (let t = this.tail; ; t = this.tail) {
      await t;
      if (t === this.tail) return;
    }
  }

  /** Serializes `fn` with every write and reload of this process. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }

  private notify(environmentId: string): void {
    const set = this.waiters.get(environmentId);
    if (set) for (const check of [...set]) check();
  }
}

/** Lets the event loop serve other requests (checks) between chunks of a long write. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
