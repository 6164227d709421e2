import type { ServiceImpl } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import type { EnvironmentContext } from "../domain/auth.js";
import type { CheckResult } from "../engine/index.js";
import { CheckScope, CheckService, type CheckBulkRequest, type CheckRequest } from "../gen/canopy/v1/check_pb.js";
import type { CheckScope as DomainScope } from "../engine/index.js";
import { checkResultToPb, msOf, revisionOf, scopeFromPb } from "./convert.js";
import { environmentOf } from "./context.js";

/** CheckService: Check and CheckBulk, answered from the engine's in-memory state. */
export function checkHandlers(canopy: Canopy): ServiceImpl<typeof CheckService> {
  return {
    async check(req, ctx) {
      return checkResultToPb(await answerCheck(canopy, await environmentOf(canopy, ctx), req, ctx.signal));
    },
    async checkBulk(req, ctx) {
      const { results, revision } = await answerCheckBulk(canopy, await environmentOf(canopy, ctx), req, ctx.signal);
      return { results: results.map(checkResultToPb), revision: BigInt(revision) };
    },
  };
}

/** One Check in an authorized environment (the domain result; each transport encodes it). Shared with the fast path. */
export async function answerCheck(canopy: Canopy, env: EnvironmentContext, req: CheckRequest, signal: AbortSignal | undefined): Promise<CheckResult> {
  return canopy.checks.check(
    env,
    { identityId: req.identityId, permission: req.permission, scope: scopeFromPb(req.scope, "scope"), nodeId: req.nodeId },
    { at: msOf(req.at, "at"), explain: req.explain, minRevision: revisionOf(req.minRevision, "min_revision"), signal },
  );
}

/** A CheckBulk in an authorized environment; results stay domain objects so a transport may encode them itself. Shared with the fast path. */
export async function answerCheckBulk(canopy: Canopy, env: EnvironmentContext, req: CheckBulkRequest, signal: AbortSignal | undefined): Promise<{ results: CheckResult[]; revision: number }> {
  const items = new Array<{ identityId: string; permission: string; scope: DomainScope; nodeId: string }>(req.items.length);
  for (let k = 0; k < items.length; k++) {
    const i = req.items[k];
    // the field name is built only for an unknown scope
    const scope: DomainScope = i.scope === CheckScope.UNSPECIFIED || i.scope === CheckScope.NODE ? "node" : i.scope === CheckScope.APP_WIDE ? "app_wide" : scopeFromPb(i.scope, `items[${k}].scope`);
    items[k] = { identityId: i.identityId, permission: i.permission, scope, nodeId: i.nodeId };
  }
  return canopy.checks.checkBulk(env, items, {
    at: msOf(req.at, "at"),
    explain: req.explain,
    minRevision: revisionOf(req.minRevision, "min_revision"),
    signal,
  });
}
