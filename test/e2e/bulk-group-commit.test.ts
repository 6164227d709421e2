import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EnvironmentContext } from "../../src/domain/auth.js";
import type { AssignmentInput, ItemResult } from "../../src/domain/assignment-service.js";
import { countRows, queryRows } from "./db.js";
import { backendReady, BACKEND, startTestServer, T0, type Clients, type TestServer } from "./harness.js";

/**
 * Group commit of BulkCreateAssignments: stream messages that are waiting when a transaction starts
 * are written in that one transaction (up to CANOPY_WRITE_CHUNK_SIZE items), and still every item
 * gets exactly one result with its own code, sent only after its transaction committed. Runs on the
 * current BACKEND (a SQLite file or a PostgreSQL schema).
 */

const ready = await backendReady();

/** An async source whose batches the test releases one by one (no timing: event-loop order only). */
function channel<T>() {
  const queue: T[][] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  const source: AsyncIterable<T[]> = {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        while (queue.length === 0 && !ended) await new Promise<void>((r) => (wake = r));
        if (queue.length === 0) return;
        yield queue.shift()!;
      }
    },
  };
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  return {
    source,
    push: (batch: T[]) => (queue.push(batch), poke()),
    end: () => ((ended = true), poke()),
  };
}

/** Lets every pending promise chain and immediate run (a few event-loop turns). */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

describe.skipIf(!ready)(`BulkCreateAssignments group commit (${BACKEND})`, () => {
  let s: TestServer;
  let c: Clients;
  let ctx: EnvironmentContext;
  let roleId: string;
  let rootId: string;
  const nodes: string[] = [];
  let identities: string[];
  const WRITE_CHUNK = 100;

  beforeAll(async () => {
    s = await startTestServer({ limits: { writeChunkSize: WRITE_CHUNK } });
    c = s.clients(s.devKey, { protocol: "connect-h2" });
    await c.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }] });
    roleId = (await c.catalog.createRole({ name: "reader", permissionKeys: ["doc.read"] })).role!.id;
    rootId = (await c.hierarchy.getHierarchySchema({})).rootNodeId;
    for (let i = 0; i < 6; i++) nodes.push((await c.hierarchy.createNode({ parentId: rootId, type: "team", name: `t${i}` })).node!.id);
    const batch = await c.identities.batchCreateIdentities({ identities: Array.from({ length: 300 }, (_, i) => ({ email: `g${i}@example.com` })) });
    identities = batch.results.map((r) => r.identity!.id);
    const envId = (await s.clients(s.adminKey).admin.listEnvironments({})).environments.find((e) => e.name === "development")!.id;
    const canopy = s.app.canopy;
    const environment = await canopy.runtime.ensureLoaded(envId);
    const accountId = environment!.accountId;
    ctx = { principal: { keyId: "test", accountId, environmentId: envId, scopes: [] }, environment: environment! };
  });

  afterAll(async () => {
    await s?.close();
  });

  const input = (identityId: string, nodeId: string, extra: Partial<AssignmentInput> = {}): AssignmentInput => ({
    identityId,
    roleId,
    nodeId,
    effectiveFrom: null,
    effectiveTo: null,
    ...extra,
  });

  it("messages that wait behind a running transaction are written together, each item keeps its own result", async () => {
    const canopy = s.app.canopy;
    const revisionBefore = canopy.runtime.engine.revision(ctx.environment.id);
    const rowsBefore = await countRows(s, "assignments");

    // hold the write lock: the stream's first transaction has to wait, so the next messages queue up
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const holder = canopy.runtime.write(() => gate);

    const feed = channel<AssignmentInput>();
    const chunks: ItemResult[][] = [];
    const consumer = (async () => {
      for await (const chunk of canopy.assignments.createStream(ctx, feed.source)) chunks.push(chunk);
    })();

    // message 1 (items 0..19): taken at once, its transaction waits for the lock
    feed.push(identities.slice(0, 20).map((id) => input(id, nodes[0])));
    await settle();
    // messages 2..6 (items 20..119, 100 items = the chunk size) arrive meanwhile, with bad items among them
    const group: AssignmentInput[] = identities.slice(20, 120).map((id) => input(id, nodes[1]));
    group[5] = input(identities[3], nodes[0]); // item 25: duplicate of item 3 (committed in transaction 1)
    group[30] = input(identities[25], nodes[1], { roleId: "00000000-0000-7000-8000-000000000000" }); // item 50: unknown role
    group[47] = input(identities[67], nodes[1]); // item 67 itself is good…
    group[71] = input(identities[67], nodes[1]); // item 91: …and this duplicate of it, in another message of the same group, fails
    group[80] = input(identities[100], "00000000-0000-7000-8000-000000000001"); // item 100: unknown node
    group[99] = input(identities[119], nodes[1], { effectiveFrom: T0 + 10, effectiveTo: T0 + 10 }); // item 119: empty window
    for (let m = 0; m < 5; m++) feed.push(group.slice(m * 20, (m + 1) * 20));
    feed.end();
    await settle();
    release();
    await holder;
    await consumer;

    // two transactions: message 1 alone, then messages 2..6 together
    expect(chunks.map((ch) => ch.length)).toEqual([20, 100]);
    expect(canopy.runtime.engine.revision(ctx.environment.id)).toBe(revisionBefore + 2);

    const results = chunks.flat();
    expect(results.map((r) => r.index)).toEqual(Array.from({ length: 120 }, (_, i) => i));
    const failures = results.filter((r) => r.status.code !== 0).map((r) => [r.index, r.status.code, r.status.field, r.status.reason]);
    expect(failures).toEqual([
      [25, 6, "items[25]", "rbac.assignment_conflict"],
      [50, 5, "items[50].role_id", "rbac.role_not_found"],
      [91, 6, "items[91]", "rbac.assignment_conflict"],
      [100, 5, "items[100].node_id", "nodes.node_not_found"],
      [119, 3, "items[119].effective_to", "rbac.invalid_window"],
    ]);
    // exactly the reported items are stored, under the reported ids
    const created = results.filter((r) => r.status.code === 0).map((r) => r.assignment!.id);
    expect(created).toHaveLength(115);
    expect(await countRows(s, "assignments")).toBe(rowsBefore + 115);
    const stored = await queryRows<{ id: string }>(s, `select id from assignments where id in (${created.map(() => "?").join(", ")})`, created);
    expect(stored.map((r) => r.id).sort()).toEqual([...created].sort());
  });

  it("over the wire: 1,000 items in 40 messages sent at once get 1,000 results in order, every index once, no transaction over the chunk size", async () => {
    const plan: Array<{ item: { identityId: string; roleId: string; nodeId: string }; code: number }> = [];
    for (let i = 0; i < 1000; i++) {
      const identityId = identities[i % identities.length];
      const nodeId = nodes[2 + Math.floor(i / identities.length)]; // 300 identities × nodes[2..5]
      if (i % 97 === 13) plan.push({ item: { identityId, roleId: "00000000-0000-7000-8000-000000000002", nodeId }, code: 5 });
      else if (i % 89 === 7 && i > 0) plan.push({ item: plan[i - 1].item, code: plan[i - 1].code === 0 ? 6 : plan[i - 1].code });
      else plan.push({ item: { identityId, roleId, nodeId }, code: 0 });
    }
    const revisionBefore = BigInt((await c.hierarchy.getHierarchySchema({})).revision);
    const rowsBefore = await countRows(s, "assignments");
    async function* requests() {
      for (let m = 0; m < 40; m++) yield { items: plan.slice(m * 25, (m + 1) * 25).map((p) => p.item) };
    }
    const results: Array<{ index: number; code: number; id: string }> = [];
    let summary: { total: number; succeeded: number; failed: number } | undefined;
    let revision = 0n;
    for await (const m of c.assignments.bulkCreateAssignments(requests())) {
      if (m.kind.case === "result") results.push({ index: m.kind.value.index, code: m.kind.value.status?.code ?? 0, id: m.kind.value.assignment?.id ?? "" });
      else if (m.kind.case === "summary") {
        const x = m.kind.value.summary!;
        summary = { total: x.total, succeeded: x.succeeded, failed: x.failed };
        revision = m.kind.value.revision;
      }
    }
    expect(results.map((r) => r.index)).toEqual(plan.map((_, i) => i));
    expect(results.map((r) => r.code)).toEqual(plan.map((p) => p.code));
    const succeeded = plan.filter((p) => p.code === 0).length;
    expect(summary).toEqual({ total: 1000, succeeded, failed: 1000 - succeeded });
    expect(await countRows(s, "assignments")).toBe(rowsBefore + succeeded);
    // one revision per transaction that wrote: at most one per message, at least one per chunk of 100
    const transactions = Number(revision - revisionBefore);
    expect(transactions).toBeGreaterThanOrEqual(Math.ceil(1000 / WRITE_CHUNK));
    expect(transactions).toBeLessThanOrEqual(40);
  });
});
