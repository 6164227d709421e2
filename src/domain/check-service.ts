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
    this.validate(ctx, req, "");
    if (opts.minRevision > 0) await this.rt.awaitRevision(ctx.environment.id, opts.minRevision, opts.signal);
    const at = opts.at ?? this.rt.clock.now();
    if (!this.rt.engine.hasEnvironment(ctx.environment.id)) await this.loaded(ctx.environment.id);
    return this.rt.engine.check(ctx.environment.id, { ...req, at, explain: opts.explain, membersOnly: ctx.principal.environmentId !== null });
  }

  /** Answers every item from one state at one instant, results in request order. */
  async checkBulk(ctx: EnvironmentContext, items: CheckRequestInput[], opts: CheckOptions): Promise<{ results: CheckResult[]; revision: number }> {
    checkCount(items.length, this.rt.limits.maxCheckBulk, "items", "checks per CheckBulk");
    items.forEach((item, i) => this.validate(ctx, item, `items[${i}].`));
    if (opts.minRevision > 0) await this.rt.awaitRevision(ctx.environment.id, opts.minRevision, opts.signal);
    const at = opts.at ?? this.rt.clock.now();
    const envId = ctx.environment.id;
    if (!this.rt.engine.hasEnvironment(envId)) await this.loaded(envId);
    const membersOnly = ctx.principal.environmentId !== null;
    const results = items.map((item) => this.rt.engine.check(envId, { ...item, at, explain: opts.explain, membersOnly }));
    return { results, revision: this.rt.engine.revision(envId) };
  }

  /** The environment was unloaded (deleted elsewhere, or dropped for a reload) since the call began. */
  private async loaded(environmentId: string): Promise<void> {
    if (!(await this.rt.ensureLoaded(environmentId)) || !this.rt.engine.hasEnvironment(environmentId)) {
      throw new NotFoundError("environment", environmentId, "environment_id");
    }
  }

  private validate(ctx: EnvironmentContext, req: CheckRequestInput, prefix: string): void {
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
