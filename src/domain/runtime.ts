import type { Engine } from "../engine/index.js";
import type { Store, StoreWriter } from "../store/store.js";
import type { Clock } from "./clock.js";
import type { Limits } from "./limits.js";
import type { Environment } from "./model.js";
import { NotFoundError, UnavailableError } from "./errors.js";
import { StoreUnavailableError } from "../store/store.js";

/** Minimal structured logger (pino satisfies it). */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Engine mutations a write queues during its transaction; they run only after the commit. */
export type Effects = Array<() => void>;

/**
 * Shared machinery of the services: the serialized write path, the environment cache and the
 * revision waiters. Every write goes through `write()`:
 *   lock → one store transaction (which bumps revisions) → commit (fsync'd) → engine effects → unlock.
 * One lock per process keeps the engine's order of effects equal to the commit order, so the
 * in-memory state always equals a committed database state and a write is visible to checks
 * as soon as its RPC returns.
 */
export class Runtime {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly environments = new Map<string, Environment>();
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(
    readonly store: Store,
    readonly engine: Engine,
    readonly clock: Clock,
    readonly limits: Limits,
    readonly logger: Logger,
  ) {}

  /** Runs `fn` in a transaction under the write lock, then applies its effects. */
  write<T>(fn: (tx: StoreWriter, effects: Effects) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      const effects: Effects = [];
      let result: T;
      try {
        result = await this.store.transaction((tx) => fn(tx, effects));
      } catch (err) {
        if (err instanceof StoreUnavailableError) throw new UnavailableError(`storage unavailable: ${err.message}`, "storage.unavailable");
        throw err;
      }
      for (const apply of effects) apply();
      return result;
    };
    const next = this.tail.then(run, run);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Bumps the environment's revision inside `tx` and queues the engine update; returns the new revision. */
  async bump(tx: StoreWriter, effects: Effects, environmentId: string): Promise<number> {
    const revision = await tx.bumpRevision(environmentId);
    effects.push(() => {
      if (this.engine.hasEnvironment(environmentId)) this.engine.setRevision(environmentId, revision);
      const env = this.environments.get(environmentId);
      if (env) env.revision = revision;
      this.notify(environmentId);
    });
    return revision;
  }

  /** Bumps every listed environment; returns the revisions by environment id. */
  async bumpAll(tx: StoreWriter, effects: Effects, environmentIds: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const id of environmentIds) out.set(id, await this.bump(tx, effects, id));
    return out;
  }

  cacheEnvironment(env: Environment): void {
    this.environments.set(env.id, { ...env });
  }

  uncacheEnvironment(id: string): void {
    this.environments.delete(id);
  }

  /** The environment as last committed, or NotFound. */
  environment(id: string): Environment {
    const env = this.environments.get(id);
    if (!env) throw new NotFoundError("environment", id, "environment_id");
    return env;
  }

  maybeEnvironment(id: string): Environment | undefined {
    return this.environments.get(id);
  }

  environmentsOfAccount(accountId: string): Environment[] {
    return [...this.environments.values()].filter((e) => e.accountId === accountId);
  }

  environmentsOfApplication(applicationId: string): Environment[] {
    return [...this.environments.values()].filter((e) => e.applicationId === applicationId);
  }

  /**
   * Resolves once the environment's in-memory state is at `minRevision` or later; rejects with
   * UNAVAILABLE after `limits.revisionWaitMs` or when `signal` aborts (the RPC deadline).
   */
  async awaitRevision(environmentId: string, minRevision: number, signal?: AbortSignal): Promise<void> {
    if (minRevision <= 0 || this.engine.revision(environmentId) >= minRevision) return;
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
        if (this.engine.revision(environmentId) >= minRevision) done();
      };
      const fail = () =>
        done(
          new UnavailableError(
            `environment ${environmentId} is at revision ${this.engine.revision(environmentId)}, behind min_revision ${minRevision}; retry later`,
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

  private notify(environmentId: string): void {
    const set = this.waiters.get(environmentId);
    if (set) for (const check of [...set]) check();
  }
}

/** Lets the event loop serve other requests (checks) between chunks of a long write. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
