import { createHash } from "node:crypto";
import type { Assignment, AssignmentState, Environment } from "./model.js";
import { windowsOverlap } from "./model.js";
import type { EnvironmentContext } from "./auth.js";
import type { Effects, Runtime } from "./runtime.js";
import type { AssignmentFilter, StoreWriter } from "../store/store.js";
import { ConflictError, DomainError, FailedPreconditionError, GRPC_CODE, InvalidArgumentError, NotFoundError } from "./errors.js";
import { newId } from "./ids.js";
import {
  checkCount,
  MAX_ID_LENGTH,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  numberedPageRequest,
  pageRequest,
  readNumberedPage,
  requireId,
  toPage,
  type NumberedPage,
  type NumberedPageInput,
} from "./validate.js";
import { yieldToEventLoop } from "./runtime.js";
import { StoreConflictError } from "../store/store.js";
import { ReadAhead } from "./read-ahead.js";

/** One assignment to create. Times in epoch ms; null = default (from: now, to: never). */
export interface AssignmentInput {
  identityId: string;
  roleId: string;
  /** "" = the root, allowed only in the flat access model */
  nodeId: string;
  effectiveFrom: number | null;
  effectiveTo: number | null;
  /** a problem found while decoding the item at the API edge, reported as this item's result */
  error?: DomainError;
}

/** What ListAssignments filters on; "" = any. */
export interface AssignmentListFilter {
  identityId: string;
  nodeId: string;
  roleId: string;
  state?: AssignmentState;
}

/** Per-item status, JSON-serializable so an idempotent batch can be replayed byte for byte. */
export interface ItemStatus {
  /** gRPC status code number, 0 = OK */
  code: number;
  message: string;
  field: string;
  reason: string;
}

export interface ItemResult {
  /** 0-based global index of the item across the request or stream */
  index: number;
  status: ItemStatus;
  assignment?: Assignment;
}

export interface BatchSummary {
  total: number;
  succeeded: number;
  failed: number;
}

export interface BatchResult {
  results: ItemResult[];
  summary: BatchSummary;
  revision: number;
  replayed: boolean;
}

/** Environment keys see only identities with a membership in their application. */
const membersOnly = (ctx: EnvironmentContext): boolean => ctx.principal.environmentId !== null;

/** Rows per insert call inside a chunk's transaction; the event loop gets a turn between them. */
const INSERT_SLICE = 1000;

/** What requireId accepts, without building the field name its error would need. */
const validId = (id: string): boolean => id.length > 0 && id.length <= MAX_ID_LENGTH;

const OK: ItemStatus = Object.freeze({ code: 0, message: "", field: "", reason: "" }) as ItemStatus;
const IDEMPOTENCY_WINDOW_MS = 24 * 60 * 60 * 1000;

function statusOf(err: DomainError): ItemStatus {
  return { code: GRPC_CODE[err.code], message: err.message, field: err.field, reason: err.reason };
}

/** `<prefix>[<index>].<name>`, or `<prefix>.<name>` without an index (index < 0); built only for an error */
function fieldName(prefix: string, index: number, name: string): string {
  return index < 0 ? `${prefix}.${name}` : `${prefix}[${index}].${name}`;
}

/** The first of `list` with the candidate's role and node and an overlapping window (a duplicate). */
function sameAssignment<T extends Pick<Assignment, "id" | "roleId" | "nodeId" | "effectiveFrom" | "effectiveTo">>(list: readonly T[], a: Assignment): T | undefined {
  for (let i = 0; i < list.length; i++) {
    const o = list[i];
    if (o.roleId === a.roleId && o.nodeId === a.nodeId && windowsOverlap(o, a)) return o;
  }
  return undefined;
}

/** Counts a result list into a summary. */
export function summarize(results: ItemResult[]): BatchSummary {
  let succeeded = 0;
  for (const r of results) if (r.status.code === 0) succeeded++;
  return { total: results.length, succeeded, failed: results.length - succeeded };
}

/**
 * Assignments: identity + role + node + half-open window. Every create is validated under the write
 * lock against the committed state (identity active with an active membership, role and node of this
 * environment, window order, no overlapping duplicate), then written in chunked transactions; each
 * item reported created is committed (fsync'd) before its result exists.
 */
export class AssignmentService {
  private readonly inFlightKeys = new Map<string, Promise<BatchResult>>();

  constructor(private readonly rt: Runtime) {}

  async createAssignment(ctx: EnvironmentContext, input: AssignmentInput): Promise<{ assignment: Assignment; revision: number }> {
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const now = this.rt.clock.now();
      const assignment = this.validate(this.rt.environment(envId), input, "assignment", -1, now, new Map(), membersOnly(ctx));
      await tx.insertAssignments([assignment]);
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => this.rt.engine.putAssignment(envId, assignment));
      return { assignment, revision };
    });
  }

  /**
   * The streaming import: takes messages of items from `source` and writes them with group commit.
   * Messages are read ahead while a transaction runs; every message already waiting when the next
   * transaction starts joins it, up to `limits.writeChunkSize` items (a larger message is split), so
   * a client that keeps several messages in flight gets few large commits instead of one per message.
   * Results are yielded per transaction, after its commit, with indexes counted across the stream.
   * An error of `source` (e.g. a message over a limit) is thrown once every message received before
   * it has been written and reported; an aborted `signal` (deadline, client gone, shutdown) stops
   * before the next transaction, also while waiting for the client's next message: items taken but
   * not yet written are dropped, never reported.
   */
  async *createStream(ctx: EnvironmentContext, source: AsyncIterable<AssignmentInput[]>, signal?: AbortSignal): AsyncGenerator<ItemResult[]> {
    const max = this.rt.limits.writeChunkSize;
    const ahead = new ReadAhead(source, max);
    try {
      let base = 0;
      for (;;) {
        const items = await ahead.take(max, signal);
        if (items === undefined) return;
        signal?.throwIfAborted();
        for await (const results of this.createMany(ctx, items, base, "items", signal)) {
          this.observeItems(results);
          yield results;
        }
        base += items.length;
        // let checks (and the results just yielded) through before the next commit
        await yieldToEventLoop();
      }
    } finally {
      ahead.stop();
    }
  }

  /**
   * Creates independent items in chunks of `limits.writeChunkSize`, one transaction per chunk, and
   * yields each chunk's results after its commit. Indexes start at `baseIndex`. Yields to the event
   * loop between chunks so checks keep being answered during a long bulk write. An aborted `signal`
   * stops before the next chunk's transaction (chunks already committed stay committed).
   */
  async *createMany(ctx: EnvironmentContext, items: AssignmentInput[], baseIndex: number, prefix = "items", signal?: AbortSignal): AsyncGenerator<ItemResult[]> {
    const envId = ctx.environment.id;
    const chunk = this.rt.limits.writeChunkSize;
    for (let start = 0; start < items.length; start += chunk) {
      const slice = items.slice(start, start + chunk);
      let results: ItemResult[];
      try {
        results = await this.rt.writeIn(envId, (tx, effects) => this.writeChunk(tx, effects, ctx, slice, baseIndex + start, prefix), signal);
      } catch (err) {
        // A constraint the committed state did not predict (e.g. a concurrent writer on a shared
        // database): isolate the offending items by writing this chunk one item at a time.
        if (!(err instanceof StoreConflictError)) throw err;
        results = [];
        for (let k = 0; k < slice.length; k++) {
          try {
            results.push(...(await this.rt.writeIn(envId, (tx, effects) => this.writeChunk(tx, effects, ctx, [slice[k]], baseIndex + start + k, prefix))));
          } catch (inner) {
            if (!(inner instanceof StoreConflictError)) throw inner;
            results.push({ index: baseIndex + start + k, status: statusOf(new FailedPreconditionError(`the store refused the item: ${inner.message}`, `${prefix}[${baseIndex + start + k}]`, "store.conflict")) });
          }
        }
      }
      yield results;
      if (start + chunk < items.length) await yieldToEventLoop();
    }
  }

  /**
   * Unary batch: independent items, or all-or-nothing with `atomic`; optional idempotency key. An
   * aborted `signal` (the call's deadline) stops before the next transaction and throws its reason:
   * chunks already committed stay (the call's outcome is then unknown to the client, as for any
   * deadline); an atomic or idempotent batch is one transaction, so all or nothing.
   */
  async batchCreate(ctx: EnvironmentContext, items: AssignmentInput[], atomic: boolean, idempotencyKey: string, signal?: AbortSignal): Promise<BatchResult> {
    checkCount(items.length, this.rt.limits.maxBatchItems, "items", "items per batch");
    if (idempotencyKey.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
      throw new InvalidArgumentError("idempotency_key", `must be at most ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`);
    }
    const envId = ctx.environment.id;
    if (!idempotencyKey) return this.observeBatch(await this.runBatch(ctx, items, atomic, signal));

    const requestHash = createHash("sha256").update(JSON.stringify({ items, atomic })).digest("hex");
    const slot = `${envId}\u0000${idempotencyKey}`;
    // Requests with the same key run one after another: a retry racing its original waits for it and
    // then replays it. No await between the loop's last check and the set, so two cannot both pass.
    for (let p = this.inFlightKeys.get(slot); p; p = this.inFlightKeys.get(slot)) await p.catch(() => undefined);
    const promise = this.rt.writeIn(envId, async (tx, effects): Promise<BatchResult> => {
      const now = this.rt.clock.now();
      const record = await tx.getIdempotencyRecord(envId, idempotencyKey);
      if (record && record.createdAt > now - IDEMPOTENCY_WINDOW_MS) {
        if (record.requestHash !== requestHash) {
          throw new FailedPreconditionError(
            `idempotency_key ${JSON.stringify(idempotencyKey)} was already used within 24 h for a different request`,
            "idempotency_key",
            "idempotency.key_reused",
          );
        }
        const first = JSON.parse(Buffer.from(record.response).toString("utf8")) as BatchResult;
        return { ...first, replayed: true };
      }
      // One transaction holds the items and the record: after a crash either both exist or neither.
      const result = await this.batchInTransaction(tx, effects, ctx, items, atomic);
      await tx.deleteIdempotencyRecordsBefore(now - IDEMPOTENCY_WINDOW_MS + 1); // an expired record of this key is replaced
      await tx.putIdempotencyRecord({
        environmentId: envId,
        key: idempotencyKey,
        requestHash,
        response: Buffer.from(JSON.stringify(result), "utf8"),
        createdAt: now,
      });
      return result;
    }, signal);
    this.inFlightKeys.set(slot, promise);
    try {
      return this.observeBatch(await promise);
    } finally {
      if (this.inFlightKeys.get(slot) === promise) this.inFlightKeys.delete(slot);
    }
  }

  async getAssignment(ctx: EnvironmentContext, id: string): Promise<Assignment> {
    requireId(id, "id");
    const a = await this.rt.store.reader.getAssignment(ctx.environment.id, id);
    if (!a) throw new NotFoundError("assignment", id, "id");
    return a;
  }

  /** One page of assignments; an aborted `signal` (the call's deadline) stops before the query. */
  async listAssignments(ctx: EnvironmentContext, filter: AssignmentListFilter, pageSize: number, pageToken: string, signal?: AbortSignal) {
    const page = pageRequest(pageSize, pageToken, this.rt.limits);
    const storeFilter = this.listFilter(filter);
    signal?.throwIfAborted();
    const rows = await this.rt.store.reader.listAssignments(ctx.environment.id, storeFilter, { limit: page.pageSize + 1, afterId: page.afterId });
    return toPage(rows, page);
  }

  /** listAssignments as a numbered page (page + take) with the total count of matching assignments. */
  async listAssignmentsNumbered(ctx: EnvironmentContext, filter: AssignmentListFilter, page: NumberedPageInput): Promise<NumberedPage<Assignment>> {
    const req = numberedPageRequest(page, this.rt.limits);
    const storeFilter = this.listFilter(filter);
    const envId = ctx.environment.id;
    return readNumberedPage(
      this.rt.store,
      req,
      (reader, window) => reader.listAssignments(envId, storeFilter, window),
      (reader) => reader.countAssignments(envId, storeFilter),
    );
  }

  async updateAssignment(
    ctx: EnvironmentContext,
    id: string,
    patch: { roleId?: string; effectiveFrom?: number; effectiveTo?: number; clearEffectiveTo: boolean },
  ): Promise<{ assignment: Assignment; revision: number }> {
    requireId(id, "id");
    if (patch.roleId !== undefined) requireId(patch.roleId, "role_id");
    if (patch.clearEffectiveTo && patch.effectiveTo !== undefined) {
      throw new InvalidArgumentError("effective_to", "cannot be set together with clear_effective_to");
    }
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const current = await tx.getAssignment(envId, id);
      if (!current) throw new NotFoundError("assignment", id, "id");
      const roleId = patch.roleId ?? current.roleId;
      if (!this.rt.engine.hasRole(envId, roleId)) throw new NotFoundError("role", roleId, "role_id");
      const effectiveFrom = patch.effectiveFrom ?? current.effectiveFrom;
      const effectiveTo = patch.clearEffectiveTo ? null : (patch.effectiveTo ?? current.effectiveTo);
      if (effectiveTo !== null && effectiveTo <= effectiveFrom) {
        throw new InvalidArgumentError(patch.effectiveTo !== undefined ? "effective_to" : "effective_from", "effective_to must be after effective_from", "rbac.invalid_window");
      }
      const next: Assignment = { ...current, roleId, effectiveFrom, effectiveTo, updatedAt: this.rt.clock.now() };
      const clash = this.rt.engine.findOverlapping(envId, current.identityId, roleId, current.nodeId, effectiveFrom, effectiveTo, id);
      if (clash) throw this.duplicate(next, clash, "");
      await tx.updateAssignment(id, { roleId, effectiveFrom, effectiveTo, updatedAt: next.updatedAt });
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => this.rt.engine.putAssignment(envId, next));
      return { assignment: next, revision };
    });
  }

  async deleteAssignment(ctx: EnvironmentContext, id: string): Promise<number> {
    requireId(id, "id");
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const deleted = await tx.deleteAssignments(envId, [id]);
      if (deleted.length === 0) throw new NotFoundError("assignment", id, "id");
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => this.rt.engine.removeAssignment(envId, id));
      return revision;
    });
  }

  /** Deletes many in one transaction; unknown ids are per-item NOT_FOUND. */
  async batchDelete(ctx: EnvironmentContext, ids: string[]): Promise<{ results: ItemResult[]; summary: BatchSummary; revision: number }> {
    checkCount(ids.length, this.rt.limits.maxBatchItems, "ids", "ids per batch");
    const envId = ctx.environment.id;
    // items are independent: a malformed id is that item's INVALID_ARGUMENT, its neighbours still run
    const malformed = ids.map((id, i) => {
      try {
        requireId(id, `ids[${i}]`);
        return undefined;
      } catch (err) {
        return err as DomainError;
      }
    });
    return this.rt.writeIn(envId, async (tx, effects) => {
      const wellFormed = ids.filter((_, i) => !malformed[i]);
      const deleted = new Set(wellFormed.length ? await tx.deleteAssignments(envId, [...new Set(wellFormed)]) : []);
      const reported = new Set<string>();
      const results: ItemResult[] = ids.map((id, index) => {
        const bad = malformed[index];
        if (bad) return { index, status: statusOf(bad) };
        if (deleted.has(id) && !reported.has(id)) {
          reported.add(id);
          return { index, status: OK };
        }
        return { index, status: statusOf(new NotFoundError("assignment", id, `ids[${index}]`)) };
      });
      const revision = deleted.size > 0 ? await this.rt.bump(tx, effects, envId) : this.rt.engine.revision(envId);
      effects.push(() => deleted.forEach((id) => this.rt.engine.removeAssignment(envId, id)));
      return { results, summary: summarize(results), revision };
    });
  }

  /** Reports a committed batch's items to the metrics (a replay created nothing new). */
  private observeBatch(result: BatchResult): BatchResult {
    if (!result.replayed) this.rt.observer.bulkItems(result.summary.succeeded, result.summary.failed);
    return result;
  }

  /** Reports a committed stream chunk's items to the metrics. */
  private observeItems(results: ItemResult[]): void {
    let created = 0;
    for (const r of results) if (r.status.code === 0) created++;
    this.rt.observer.bulkItems(created, results.length - created);
  }

  private async runBatch(ctx: EnvironmentContext, items: AssignmentInput[], atomic: boolean, signal?: AbortSignal): Promise<BatchResult> {
    const envId = ctx.environment.id;
    if (items.length === 0) return { results: [], summary: { total: 0, succeeded: 0, failed: 0 }, revision: this.rt.engine.revision(envId), replayed: false };
    if (atomic) return this.rt.writeIn(envId, (tx, effects) => this.batchInTransaction(tx, effects, ctx, items, true), signal);
    const results: ItemResult[] = [];
    for await (const chunk of this.createMany(ctx, items, 0, "items", signal)) results.push(...chunk);
    return { results, summary: summarize(results), revision: this.rt.engine.revision(envId), replayed: false };
  }

  /**
   * The whole batch in the caller's transaction: with `atomic` nothing is written unless every item
   * is valid (the valid ones then report ABORTED); otherwise the valid items are written.
   */
  private async batchInTransaction(tx: StoreWriter, effects: Effects, ctx: EnvironmentContext, items: AssignmentInput[], atomic: boolean): Promise<BatchResult> {
    const envId = ctx.environment.id;
    const now = this.rt.clock.now();
    const env = this.rt.environment(envId);
    const pending = new Map<string, Assignment[]>();
    const outcomes = items.map((input, i) => this.tryValidate(env, input, "items", i, now, pending, membersOnly(ctx)));
    const failed = outcomes.some((o) => o.error);
    const rows = atomic && failed ? [] : outcomes.filter((o) => o.assignment).map((o) => o.assignment!);
    let revision = this.rt.engine.revision(envId);
    if (rows.length > 0) {
      await tx.insertAssignments(rows);
      revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => rows.forEach((a) => this.rt.engine.putAssignment(envId, a)));
    }
    const results = outcomes.map((o, index): ItemResult => {
      if (o.error) return { index, status: statusOf(o.error) };
      if (atomic && failed) {
        return { index, status: { code: GRPC_CODE.aborted, message: "not written: the batch is atomic and another item failed", field: `items[${index}]`, reason: "batch.aborted" } };
      }
      return { index, status: OK, assignment: o.assignment };
    });
    return { results, summary: summarize(results), revision, replayed: false };
  }

  /**
   * Validates and writes one chunk inside the caller's transaction. Runs under the write lock. Rows
   * are inserted in slices with event-loop turns between them: better-sqlite3 runs synchronously,
   * and checks must not wait for a whole large chunk.
   */
  private async writeChunk(tx: StoreWriter, effects: Effects, ctx: EnvironmentContext, items: AssignmentInput[], baseIndex: number, prefix: string): Promise<ItemResult[]> {
    const envId = ctx.environment.id;
    const now = this.rt.clock.now();
    const env = this.rt.environment(envId);
    const pending = new Map<string, Assignment[]>();
    const members = membersOnly(ctx);
    const results: ItemResult[] = new Array(items.length);
    const rows: Assignment[] = [];
    for (let k = 0; k < items.length; k++) {
      const index = baseIndex + k;
      let assignment: Assignment;
      try {
        assignment = this.validate(env, items[k], prefix, index, now, pending, members);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        results[k] = { index, status: statusOf(err) };
        continue;
      }
      rows.push(assignment);
      results[k] = { index, status: OK, assignment };
    }
    if (rows.length > 0) {
      for (let start = 0; start < rows.length; start += INSERT_SLICE) {
        if (start > 0) await yieldToEventLoop();
        await tx.insertAssignments(rows.length <= INSERT_SLICE ? rows : rows.slice(start, start + INSERT_SLICE));
      }
      await this.rt.bump(tx, effects, envId);
      effects.push(() => {
        for (const a of rows) this.rt.engine.putAssignment(envId, a);
      });
    }
    return results;
  }

  private tryValidate(
    env: Environment,
    input: AssignmentInput,
    prefix: string,
    index: number,
    now: number,
    pending: Map<string, Assignment[]>,
    membersOnly: boolean,
  ): { assignment?: Assignment; error?: DomainError } {
    try {
      return { assignment: this.validate(env, input, prefix, index, now, pending, membersOnly) };
    } catch (err) {
      if (err instanceof DomainError) return { error: err };
      throw err;
    }
  }

  /**
   * Validates one item against the committed state plus the items accepted earlier in the same
   * chunk (`pending`), and returns the assignment to insert. Throws a DomainError naming the field
   * (`<prefix>[<index>].<field>`, or `<prefix>.<field>` without an index). With `membersOnly`
   * (environment keys) an identity outside the application is NOT_FOUND. Field names are built only
   * for an error: a bulk import validates a million items.
   */
  private validate(env: Environment, input: AssignmentInput, prefix: string, index: number, now: number, pending: Map<string, Assignment[]>, membersOnly: boolean): Assignment {
    if (input.error) throw input.error;
    const identityId = input.identityId;
    const roleId = input.roleId;
    if (!validId(identityId)) requireId(identityId, fieldName(prefix, index, "identity_id"));
    if (!validId(roleId)) requireId(roleId, fieldName(prefix, index, "role_id"));
    let nodeId = input.nodeId;
    if (!nodeId) {
      if (env.accessModel !== "flat") throw new InvalidArgumentError(fieldName(prefix, index, "node_id"), "is required in the hierarchy access model (only flat mode defaults to the root)");
      nodeId = env.rootNodeId;
    } else if (!validId(nodeId)) requireId(nodeId, fieldName(prefix, index, "node_id"));
    const effectiveFrom = input.effectiveFrom ?? now;
    const effectiveTo = input.effectiveTo;
    if (effectiveTo !== null && effectiveTo <= effectiveFrom) {
      throw new InvalidArgumentError(fieldName(prefix, index, "effective_to"), "must be after effective_from (windows are half-open: [effective_from, effective_to))", "rbac.invalid_window");
    }
    const engine = this.rt.engine;
    const identity = engine.identity(identityId);
    const membership = engine.membership(env.applicationId, identityId);
    if (!identity || identity.accountId !== env.accountId || (membersOnly && membership === undefined)) {
      throw new NotFoundError("identity", identityId, fieldName(prefix, index, "identity_id"));
    }
    if (!identity.active) throw new FailedPreconditionError(`identity ${identityId} is inactive`, fieldName(prefix, index, "identity_id"), "identity.inactive");
    if (membership === undefined) {
      throw new FailedPreconditionError(`identity ${identityId} has no membership in application ${env.applicationId}`, fieldName(prefix, index, "identity_id"), "identity.no_membership");
    }
    if (membership !== "active") {
      throw new FailedPreconditionError(`identity ${identityId}'s membership in application ${env.applicationId} is inactive`, fieldName(prefix, index, "identity_id"), "identity.membership_inactive");
    }
    if (!engine.hasRole(env.id, roleId)) throw new NotFoundError("role", roleId, fieldName(prefix, index, "role_id"));
    if (!engine.closure(env.id).has(nodeId)) throw new NotFoundError("node", nodeId, fieldName(prefix, index, "node_id"));

    const candidate: Assignment = {
      id: newId(),
      environmentId: env.id,
      identityId,
      roleId,
      nodeId,
      effectiveFrom,
      effectiveTo,
      createdAt: now,
      updatedAt: now,
    };
    const list = pending.get(identityId);
    const clash = engine.findOverlapping(env.id, identityId, roleId, nodeId, effectiveFrom, effectiveTo) ?? (list && sameAssignment(list, candidate)?.id);
    if (clash) throw this.duplicate(candidate, clash, index < 0 ? prefix : `${prefix}[${index}]`);
    if (list) list.push(candidate);
    else pending.set(identityId, [candidate]);
    return candidate;
  }

  /** Validates a list filter ("" = any) into the store's, with states evaluated now. */
  private listFilter(filter: AssignmentListFilter): AssignmentFilter {
    if (filter.identityId) requireId(filter.identityId, "identity_id");
    if (filter.nodeId) requireId(filter.nodeId, "node_id");
    if (filter.roleId) requireId(filter.roleId, "role_id");
    return {
      identityId: filter.identityId || undefined,
      nodeId: filter.nodeId || undefined,
      roleId: filter.roleId || undefined,
      state: filter.state,
      at: this.rt.clock.now(),
    };
  }

  private duplicate(a: Assignment, existingId: string, field: string): ConflictError {
    return new ConflictError(
      `identity ${a.identityId} already holds role ${a.roleId} at node ${a.nodeId} in an overlapping window (assignment ${existingId})`,
      field,
      "rbac.assignment_conflict",
    );
  }
}
