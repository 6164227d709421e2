import type { ServiceImpl } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import type { AssignmentInput } from "../domain/assignment-service.js";
import { DomainError, LimitExceededError } from "../domain/errors.js";
import { AssignmentService, type AssignmentInput as PbAssignmentInput } from "../gen/canopy/v1/assignment_pb.js";
import { assignmentToPb, itemResultToPb, msOf, stateFromPb } from "./convert.js";
import { environmentOf } from "./context.js";
import { encodeItemResults, isBinaryCodec, preEncodedResult } from "./assignment-wire.js";

function inputOf(i: PbAssignmentInput | undefined, prefix: string): AssignmentInput {
  return {
    identityId: i?.identityId ?? "",
    roleId: i?.roleId ?? "",
    nodeId: i?.nodeId ?? "",
    effectiveFrom: msOf(i?.effectiveFrom, `${prefix}.effective_from`),
    effectiveTo: msOf(i?.effectiveTo, `${prefix}.effective_to`),
  };
}

/**
 * Converts items one by one: an item with a malformed timestamp becomes that item's own
 * INVALID_ARGUMENT result instead of failing its neighbours. Field names are built only for an error.
 */
function inputsOf(items: PbAssignmentInput[], base: number): Array<AssignmentInput> {
  const out = new Array<AssignmentInput>(items.length);
  for (let k = 0; k < items.length; k++) {
    const i = items[k];
    try {
      out[k] = {
        identityId: i.identityId,
        roleId: i.roleId,
        nodeId: i.nodeId,
        effectiveFrom: i.effectiveFrom === undefined ? null : msOf(i.effectiveFrom, "items", base + k, "effective_from"),
        effectiveTo: i.effectiveTo === undefined ? null : msOf(i.effectiveTo, "items", base + k, "effective_to"),
      };
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      out[k] = { identityId: i.identityId, roleId: i.roleId, nodeId: i.nodeId, effectiveFrom: null, effectiveTo: null, error: err };
    }
  }
  return out;
}

/** AssignmentService: single, streaming bulk, unary batch, reads, updates and deletes. */
export function assignmentHandlers(canopy: Canopy): ServiceImpl<typeof AssignmentService> {
  const now = () => canopy.runtime.clock.now();
  const limits = canopy.runtime.limits;
  return {
    async createAssignment(req, ctx) {
      const env = await environmentOf(canopy, ctx);
      const { assignment, revision } = await canopy.assignments.createAssignment(env, inputOf(req.assignment, "assignment"));
      return { assignment: assignmentToPb(assignment, now()), revision: BigInt(revision) };
    },

    async *bulkCreateAssignments(requests, ctx) {
      const env = await environmentOf(canopy, ctx);
      // limits are enforced as each message arrives; the domain groups waiting messages into one commit
      async function* messages(): AsyncGenerator<AssignmentInput[]> {
        let received = 0;
        for await (const message of requests) {
          if (message.items.length > limits.maxStreamMessageItems) {
            throw new LimitExceededError("items", limits.maxStreamMessageItems, "items per stream message");
          }
          if (received + message.items.length > limits.maxStreamItems) {
            throw new LimitExceededError("items", limits.maxStreamItems, "items per stream");
          }
          yield inputsOf(message.items, received);
          received += message.items.length;
        }
      }
      // binary codecs get each result encoded by hand (src/api/assignment-wire.ts: the same bytes); JSON the protobuf-es way
      const binary = isBinaryCodec(ctx.requestHeader.get("content-type"));
      let total = 0;
      let succeeded = 0;
      for await (const chunk of canopy.assignments.createStream(env, messages(), ctx.signal)) {
        const t = now();
        for (const r of chunk) if (r.status.code === 0) succeeded++;
        if (binary) {
          const encoded = encodeItemResults(chunk, t);
          for (let i = 0; i < encoded.length; i++) yield preEncodedResult(encoded[i]);
        } else {
          for (const r of chunk) yield { kind: { case: "result", value: itemResultToPb(r, t) } };
        }
        total += chunk.length;
      }
      yield {
        kind: {
          case: "summary",
          value: { summary: { total, succeeded, failed: total - succeeded }, revision: BigInt(canopy.runtime.engine.revision(env.environment.id)) },
        },
      };
    },

    async batchCreateAssignments(req, ctx) {
      const env = await environmentOf(canopy, ctx);
      const result = await canopy.assignments.batchCreate(env, inputsOf(req.items, 0), req.atomic, req.idempotencyKey, ctx.signal);
      const t = now();
      return {
        results: result.results.map((r) => itemResultToPb(r, t)),
        summary: result.summary,
        revision: BigInt(result.revision),
        replayed: result.replayed,
      };
    },

    async getAssignment(req, ctx) {
      const assignment = await canopy.assignments.getAssignment((await environmentOf(canopy, ctx)), req.id);
      return { assignment: assignmentToPb(assignment, now()) };
    },

    async listAssignments(req, ctx) {
      const page = await canopy.assignments.listAssignments(
        (await environmentOf(canopy, ctx)),
        { identityId: req.identityId, nodeId: req.nodeId, roleId: req.roleId, state: stateFromPb(req.state, "state") },
        req.pageSize,
        req.pageToken,
        ctx.signal,
      );
      const t = now();
      return { assignments: page.items.map((a) => assignmentToPb(a, t)), nextPageToken: page.nextPageToken };
    },

    async updateAssignment(req, ctx) {
      const { assignment, revision } = await canopy.assignments.updateAssignment((await environmentOf(canopy, ctx)), req.id, {
        roleId: req.roleId,
        effectiveFrom: msOf(req.effectiveFrom, "effective_from") ?? undefined,
        effectiveTo: msOf(req.effectiveTo, "effective_to") ?? undefined,
        clearEffectiveTo: req.clearEffectiveTo,
      });
      return { assignment: assignmentToPb(assignment, now()), revision: BigInt(revision) };
    },

    async deleteAssignment(req, ctx) {
      return { revision: BigInt(await canopy.assignments.deleteAssignment((await environmentOf(canopy, ctx)), req.id)) };
    },

    async batchDeleteAssignments(req, ctx) {
      const r = await canopy.assignments.batchDelete((await environmentOf(canopy, ctx)), req.ids);
      const t = now();
      return { results: r.results.map((x) => itemResultToPb(x, t)), summary: r.summary, revision: BigInt(r.revision) };
    },
  };
}
