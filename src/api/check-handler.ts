import type { ServiceImpl } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import { CheckService } from "../gen/canopy/v1/check_pb.js";
import { checkResultToPb, msOf, revisionOf, scopeFromPb } from "./convert.js";
import { environmentOf } from "./context.js";

/** CheckService: Check and CheckBulk, answered from the engine's in-memory state. */
export function checkHandlers(canopy: Canopy): ServiceImpl<typeof CheckService> {
  return {
    async check(req, ctx) {
      const env = await environmentOf(canopy, ctx);
      const result = await canopy.checks.check(
        env,
        { identityId: req.identityId, permission: req.permission, scope: scopeFromPb(req.scope, "scope"), nodeId: req.nodeId },
        { at: msOf(req.at, "at"), explain: req.explain, minRevision: revisionOf(req.minRevision, "min_revision"), signal: ctx.signal },
      );
      return checkResultToPb(result);
    },
    async checkBulk(req, ctx) {
      const env = await environmentOf(canopy, ctx);
      const items = req.items.map((i, k) => ({
        identityId: i.identityId,
        permission: i.permission,
        scope: scopeFromPb(i.scope, `items[${k}].scope`),
        nodeId: i.nodeId,
      }));
      const { results, revision } = await canopy.checks.checkBulk(env, items, {
        at: msOf(req.at, "at"),
        explain: req.explain,
        minRevision: revisionOf(req.minRevision, "min_revision"),
        signal: ctx.signal,
      });
      return { results: results.map(checkResultToPb), revision: BigInt(revision) };
    },
  };
}
