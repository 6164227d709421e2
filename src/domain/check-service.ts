import type { CheckResult, CheckScope } from "../engine/index.js";
import type { EnvironmentContext } from "./auth.js";
import type { Runtime } from "./runtime.js";
import { InvalidArgumentError, NotFoundError } from "./errors.js";
import { checkCount, MAX_ID_LENGTH, MAX_KEY_LENGTH } from "./validate.js";

export interface CheckRequestInput {
  identityId: string;
  permission: string;
  scope: CheckScope;
  nodeId: string;
}

export interface CheckOptions {
  /** evaluation instant; null = now from the injected clock */
  at: number | null;
  explain: boolean;
  minRevision: number;
  signal?: AbortSignal;
}

/**
 * The hot path. Malformed requests are INVALID_ARGUMENT; well-formed ones never error for unknown ids
 * and fail closed with a denial reason. Answers come from the engine's in-memory state only.
 */
export class CheckService {
  constructor(private readonly rt: Runtime) {}

  async check(ctx: EnvironmentContext, req: CheckRequestInput, opts: CheckOptions): Promise<CheckResult> {
    this.validate(ctx, req, -1);
    if (opts.minRevision > 0) await this.rt.awaitRevision(ctx.environment.id, opts.minRevision, opts.signal);
    const at = opts.at ?? this.rt.clock.now();
    if (!this.rt.engine.hasEnvironment(ctx.environment.id)) await this.loaded(ctx.environment.id);
    const membersOnly = ctx.principal.environmentId !== null;
    const result = this.rt.engine.check(ctx.environment.id, { identityId: req.identityId, permission: req.permission, scope: req.scope, nodeId: req.nodeId, at, explain: opts.explain, membersOnly });
    if (result.allowed) this.rt.observer.checks(1, 0);
    else this.rt.observer.checks(0, 1);
    return result;
  }

  /** Answers every item from one state at one instant, results in request order. */
  async checkBulk(ctx: EnvironmentContext, items: CheckRequestInput[], opts: CheckOptions): Promise<{ results: CheckResult[]; revision: number }> {
    checkCount(items.length, this.rt.limits.maxCheckBulk, "items", "checks per CheckBulk");
    for (let i = 0; i < items.length; i++) this.validate(ctx, items[i], i);
    if (opts.minRevision > 0) await this.rt.awaitRevision(ctx.environment.id, opts.minRevision, opts.signal);
    const at = opts.at ?? this.rt.clock.now();
    const envId = ctx.environment.id;
    if (!this.rt.engine.hasEnvironment(envId)) await this.loaded(envId);
    const membersOnly = ctx.principal.environmentId !== null;
    const explain = opts.explain;
    // one query shape for every item (no spread): the engine's call site stays monomorphic
    const results = new Array<CheckResult>(items.length);
    let allowed = 0;
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      const result = (results[i] = this.rt.engine.check(envId, { identityId: item.identityId, permission: item.permission, scope: item.scope, nodeId: item.nodeId, at, explain, membersOnly }));
      if (result.allowed) allowed++;
    }
    this.rt.observer.checks(allowed, items.length - allowed);
    return { results, revision: this.rt.engine.revision(envId) };
  }

  /** The environment was unloaded (deleted elsewhere, or dropped for a reload) since the call began. */
  private async loaded(environmentId: string): Promise<void> {
    if (!(await this.rt.ensureLoaded(environmentId)) || !this.rt.engine.hasEnvironment(environmentId)) {
      throw new NotFoundError("environment", environmentId, "environment_id");
    }
  }

  /** `item` is the index in a CheckBulk (fields are named `items[i].…`), -1 for a single Check; names are built only for an error. */
  private validate(ctx: EnvironmentContext, req: CheckRequestInput, item: number): void {
    const prefix = item < 0 ? "" : `items[${item}].`;
    if (req.identityId && req.identityId.length <= MAX_ID_LENGTH && req.permission && req.permission.length <= MAX_KEY_LENGTH && req.nodeId.length <= MAX_ID_LENGTH) {
      if (req.scope === "app_wide" ? !req.nodeId : req.nodeId || this.rt.environment(ctx.environment.id).accessModel === "flat") return;
    }
    if (!req.identityId) throw new InvalidArgumentError(`${prefix}identity_id`, "is required");
    if (req.identityId.length > MAX_ID_LENGTH) throw new InvalidArgumentError(`${prefix}identity_id`, `must be at most ${MAX_ID_LENGTH} characters`);
    if (!req.permission) throw new InvalidArgumentError(`${prefix}permission`, "is required");
    if (req.permission.length > MAX_KEY_LENGTH) throw new InvalidArgumentError(`${prefix}permission`, `must be at most ${MAX_KEY_LENGTH} characters`);
    if (req.nodeId.length > MAX_ID_LENGTH) throw new InvalidArgumentError(`${prefix}node_id`, `must be at most ${MAX_ID_LENGTH} characters`);
    if (req.scope === "app_wide") {
      if (req.nodeId) throw new InvalidArgumentError(`${prefix}node_id`, "must be empty when scope is APP_WIDE");
    } else if (!req.nodeId && this.rt.environment(ctx.environment.id).accessModel !== "flat") {
      throw new InvalidArgumentError(`${prefix}node_id`, "is required for node scope in the hierarchy access model");
    }
  }
}
