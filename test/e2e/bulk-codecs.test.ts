import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AssignmentService, type BulkCreateAssignmentsRequestSchema, type BulkCreateAssignmentsResponse } from "../../src/gen/canopy/v1/assignment_pb.js";
import { backendReady, BACKEND, startTestServer, T0, type Clients, type TestServer } from "./harness.js";

/**
 * BulkCreateAssignments answers binary codecs (gRPC, gRPC-Web is unary-only here, Connect+proto) with
 * per-item results encoded by hand (src/api/assignment-wire.ts) and JSON codecs through protobuf-es.
 * The same stream over gRPC, Connect+proto and Connect+JSON must read back as the same results:
 * every index once, the same codes, fields and reasons, and full assignments for the created items.
 */

const ready = await backendReady();

type Init = MessageInitShape<typeof BulkCreateAssignmentsRequestSchema>;

async function* messages(list: Init[]): AsyncIterable<Init> {
  for (const m of list) yield m;
}

describe.skipIf(!ready)(`BulkCreateAssignments over binary and JSON codecs (${BACKEND})`, () => {
  let s: TestServer;
  let c: Clients;
  let roleId: string;
  const nodes: string[] = [];
  let identities: string[];

  beforeAll(async () => {
    s = await startTestServer();
    c = s.clients(s.devKey, { protocol: "connect-h2" });
    await c.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }] });
    roleId = (await c.catalog.createRole({ name: "reader", permissionKeys: ["doc.read"] })).role!.id;
    const rootId = (await c.hierarchy.getHierarchySchema({})).rootNodeId;
    for (let i = 0; i < 3; i++) nodes.push((await c.hierarchy.createNode({ parentId: rootId, type: "team", name: `t${i}` })).node!.id);
    const batch = await c.identities.batchCreateIdentities({ identities: Array.from({ length: 90 }, (_, i) => ({ email: `codec${i}@example.com` })) });
    identities = batch.results.map((r) => r.identity!.id);
  });

  afterAll(async () => {
    await s?.close();
  });

  /** 30 items on node `n` for identities [from, from+30): good ones, a duplicate, unknown ids, a bad window, a scheduled and an expired one */
  function stream(n: number, from: number): Init[] {
    const ids = identities.slice(from, from + 30);
    const items: NonNullable<Init["items"]> = ids.map((identityId) => ({ identityId, roleId, nodeId: nodes[n] }));
    items[3] = { identityId: ids[0], roleId, nodeId: nodes[n] }; // duplicate of item 0
    items[7] = { identityId: ids[7], roleId: "00000000-0000-7000-8000-00000000dead", nodeId: nodes[n] };
    items[11] = { identityId: ids[11], roleId, nodeId: "00000000-0000-7000-8000-00000000beef" };
    items[13] = { identityId: "no-such-identity-é中😀", roleId, nodeId: nodes[n] };
    items[17] = { identityId: ids[17], roleId, nodeId: nodes[n], effectiveFrom: { seconds: BigInt(T0 / 1000) + 10n }, effectiveTo: { seconds: BigInt(T0 / 1000) + 10n } };
    items[19] = { identityId: ids[19], roleId, nodeId: nodes[n], effectiveFrom: { seconds: BigInt(T0 / 1000) + 3600n, nanos: 5_000_000 } };
    items[23] = { identityId: ids[23], roleId, nodeId: nodes[n], effectiveFrom: { seconds: 1n }, effectiveTo: { seconds: 2n, nanos: 999_000_000 } };
    items[25] = { identityId: "", roleId, nodeId: nodes[n] };
    return [{ items: items.slice(0, 12) }, { items: items.slice(12, 29) }, { items: items.slice(29) }];
  }

  /** generated ids (identities, nodes, assignments) differ per stream: blanked for the comparison */
  const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

  /** results in arrival order with generated ids blanked, plus the summary */
  async function run(client: { bulkCreateAssignments(req: AsyncIterable<Init>): AsyncIterable<BulkCreateAssignmentsResponse> }, list: Init[]) {
    const results: unknown[] = [];
    let summary: unknown;
    const seen = new Set<number>();
    for await (const m of client.bulkCreateAssignments(messages(list))) {
      if (m.kind.case === "result") {
        const r = m.kind.value;
        expect(seen.has(r.index)).toBe(false);
        seen.add(r.index);
        if (r.status?.code === 0) {
          expect(r.assignment?.id).toMatch(/^[0-9a-f-]{36}$/);
          expect(r.assignment?.createTime).toBeDefined();
        } else expect(r.assignment).toBeUndefined();
        results.push({
          index: r.index,
          status: { code: r.status?.code, message: r.status?.message.replace(UUID, "<id>"), field: r.status?.field, reason: r.status?.reason },
          assignment: r.assignment && { ...r.assignment, id: "<id>", identityId: r.assignment.identityId.replace(UUID, "<id>"), nodeId: r.assignment.nodeId.replace(UUID, "<id>") },
        });
      } else if (m.kind.case === "summary") summary = { total: m.kind.value.summary?.total, succeeded: m.kind.value.summary?.succeeded, failed: m.kind.value.summary?.failed };
    }
    return { results, summary };
  }

  it("gRPC, Connect+proto and Connect+JSON read back the same results", async () => {
    const auth: Interceptor = (next) => (req) => {
      req.header.set("x-api-key", s.devKey);
      return next(req);
    };
    const json = createClient(AssignmentService, createConnectTransport({ baseUrl: s.url, httpVersion: "2", useBinaryFormat: false, interceptors: [auth] }));
    const grpc = s.clients(s.devKey, { protocol: "grpc" }).assignments;
    const proto = c.assignments;
    // each codec writes its own identities on its own node, so every stream sees the same state
    const a = await run(grpc, stream(0, 0));
    const b = await run(proto, stream(1, 30));
    const j = await run(json, stream(2, 60));
    expect(a.summary).toEqual({ total: 30, succeeded: 24, failed: 6 });
    expect(a.results.length).toBe(30);
    const strip = (x: typeof a) => JSON.stringify(x, (k, v) => (k === "$typeName" ? undefined : typeof v === "bigint" ? v.toString() : v));
    expect(strip(b)).toBe(strip(a));
    expect(strip(j)).toBe(strip(a));
  });
});
