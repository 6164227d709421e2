/**
 * gRPC wire compatibility with an independent protobuf implementation: every call in this file goes
 * through @grpc/grpc-js with message types built at run time by @grpc/proto-loader from
 * proto/canopy/v1/*.proto (no generated code of the server is used on the client side).
 */
import { mulberry32 } from "../fixtures/random.js";
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { countRows, queryRows } from "./db.js";
import { backendReady, startTestServer, T0, type TestServer } from "./harness.js";
import { grpcJsClients, msOfTs, tsOf, type GrpcError, type GrpcJsClients } from "./grpc-js-client.js";

/** False on a PostgreSQL run whose server is down (locally: skip; under CI=true backendReady throws). */
const ready = await backendReady();

/* eslint-disable @typescript-eslint/no-explicit-any */

/** Deterministic PRNG so the bulk plan is reproducible. */
const prng = mulberry32;

interface StreamOutcome {
  messages: any[];
  error?: GrpcError;
  status?: grpc.StatusObject;
}

/**
 * Runs BulkCreateAssignments over grpc-js: writes each batch (respecting back-pressure), half-closes,
 * and collects every response message until the stream ends (or fails).
 */
function runBulk(g: GrpcJsClients, batches: object[][]): Promise<StreamOutcome> {
  return new Promise((resolve) => {
    const call = g.raw.AssignmentService.BulkCreateAssignments(g.metadata(), { deadline: Date.now() + 120_000 }) as grpc.ClientDuplexStream<any, any>;
    const messages: any[] = [];
    let error: GrpcError | undefined;
    let status: grpc.StatusObject | undefined;
    let ended = false;
    let gotStatus = false;
    const finish = () => {
      if (ended && gotStatus) resolve({ messages, error, status });
    };
    call.on("data", (m) => messages.push(m));
    call.on("error", (err: GrpcError) => {
      error = err;
      ended = true;
      finish();
    });
    call.on("status", (st: grpc.StatusObject) => {
      status = st;
      gotStatus = true;
      finish();
    });
    call.on("end", () => {
      ended = true;
      finish();
    });
    (async () => {
      for (const items of batches) {
        if (error) break;
        if (!call.write({ items })) await new Promise<void>((r) => call.once("drain", () => r()));
      }
      if (!error) call.end();
    })().catch(() => undefined);
  });
}

describe.skipIf(!ready)("gRPC wire compatibility (grpc-js + proto-loader)", () => {
  let s: TestServer;
  let g: GrpcJsClients;
  let rootId: string;
  const regions: string[] = [];
  /** teams[r][t] is a child of regions[r] */
  const teams: string[][] = [];
  let viewer: any; // role granting doc.read
  let alice: any; // identity
  let bob: any; // identity without assignments

  beforeAll(async () => {
    s = await startTestServer();
    g = grpcJsClients(s.port, s.devKey);
    const schema = await g.call("HierarchyService", "GetHierarchySchema", {});
    rootId = schema.root_node_id;
    await g.call("CatalogService", "BatchCreatePermissions", {
      permissions: [{ key: "doc.read", description: "read documents", category: "docs" }, { key: "doc.write" }],
    });
    viewer = (await g.call("CatalogService", "CreateRole", { name: "viewer", permission_keys: ["doc.read"] })).role;
    for (let r = 0; r < 5; r++) {
      const region = (await g.call("HierarchyService", "CreateNode", { parent_id: rootId, type: "region", name: `region-${r}` })).node;
      regions.push(region.id);
      teams.push([]);
      for (let t = 0; t < 4; t++) {
        const team = (await g.call("HierarchyService", "CreateNode", { parent_id: region.id, type: "team", name: `team-${r}-${t}` })).node;
        teams[r].push(team.id);
      }
    }
    alice = (await g.call("IdentityService", "CreateIdentity", { identity: { email: "alice@example.com", display_name: "Alice" } })).identity;
    bob = (await g.call("IdentityService", "CreateIdentity", { identity: { email: "bob@example.com" } })).identity;
  });

  afterAll(async () => {
    g?.close();
    await s?.close();
  });

  it("decodes messages built by proto-loader: nodes, roles, identities with snake_case fields and string int64", async () => {
    const node = (await g.call("HierarchyService", "GetNode", { id: teams[1][2] })).node;
    expect(node).toMatchObject({ id: teams[1][2], parent_id: regions[1], type: "team", name: "team-1-2", depth: 3 });
    expect(msOfTs(node.create_time)).toBe(T0);
    const role = (await g.call("CatalogService", "GetRole", { id: viewer.id })).role;
    expect(role.permission_keys).toEqual(["doc.read"]);
    expect(alice).toMatchObject({ email: "alice@example.com", display_name: "Alice", is_active: true });
    const ancestors = (await g.call("HierarchyService", "GetAncestors", { id: teams[1][2] })).ancestors.map((n: any) => n.id);
    expect(ancestors).toEqual([rootId, regions[1]]);
  });

  it("CreateAssignment then an allowed Check with explain: granting role, effective node, inherited grant, revision as a string", async () => {
    const created = await g.call("AssignmentService", "CreateAssignment", {
      assignment: { identity_id: alice.id, role_id: viewer.id, node_id: regions[0] },
    });
    expect(created.assignment).toMatchObject({
      identity_id: alice.id,
      role_id: viewer.id,
      node_id: regions[0],
      state: "ASSIGNMENT_STATE_ACTIVE",
      effective_to: null,
    });
    expect(msOfTs(created.assignment.effective_from)).toBe(T0);
    expect(typeof created.revision).toBe("string");
    expect(created.revision).toMatch(/^[1-9][0-9]*$/);

    const res = await g.call("CheckService", "Check", {
      identity_id: alice.id,
      permission: "doc.read",
      node_id: teams[0][3],
      explain: true,
    });
    expect(res.allowed).toBe(true);
    expect(res.identity_id).toBe(alice.id);
    expect(res.permission).toBe("doc.read");
    expect(res.scope).toBe("CHECK_SCOPE_NODE");
    expect(res.denial_reason).toBe("DENIAL_REASON_UNSPECIFIED");
    expect(res.effective_node_id).toBe(teams[0][3]);
    expect(res.granting_roles).toEqual([{ role_id: viewer.id, role_name: "viewer" }]);
    expect(res.explanation).toHaveLength(1);
    expect(res.explanation[0]).toMatchObject({
      assignment_id: created.assignment.id,
      role_id: viewer.id,
      node_id: regions[0],
      inherited: true,
      effective_to: null,
    });
    expect(msOfTs(res.explanation[0].effective_from)).toBe(T0);
    expect(typeof res.revision).toBe("string");
    expect(BigInt(res.revision)).toBeGreaterThanOrEqual(BigInt(created.revision));
    expect(msOfTs(res.at)).toBe(T0);

    // the grant sits on regions[0] itself: not inherited there
    const direct = await g.call("CheckService", "Check", { identity_id: alice.id, permission: "doc.read", node_id: regions[0], explain: true });
    expect(direct.allowed).toBe(true);
    expect(direct.explanation.map((e: any) => e.inherited)).toEqual([false]);
  });

  it("denied Checks carry the denial reason enum name", async () => {
    const elsewhere = await g.call("CheckService", "Check", { identity_id: alice.id, permission: "doc.read", node_id: teams[1][0], explain: true });
    expect(elsewhere).toMatchObject({ allowed: false, denial_reason: "DENIAL_REASON_NO_ASSIGNMENT", granting_roles: [], explanation: [] });

    const notGranted = await g.call("CheckService", "Check", { identity_id: alice.id, permission: "doc.write", node_id: teams[0][0] });
    expect(notGranted).toMatchObject({ allowed: false, denial_reason: "DENIAL_REASON_PERMISSION_NOT_GRANTED" });

    const unknownPermission = await g.call("CheckService", "Check", { identity_id: alice.id, permission: "doc.delete", node_id: teams[0][0] });
    expect(unknownPermission).toMatchObject({ allowed: false, denial_reason: "DENIAL_REASON_UNKNOWN_PERMISSION" });

    const unknownIdentity = await g.call("CheckService", "Check", { identity_id: randomUUID(), permission: "doc.read", node_id: teams[0][0] });
    expect(unknownIdentity).toMatchObject({ allowed: false, denial_reason: "DENIAL_REASON_UNKNOWN_IDENTITY" });

    const noAssignment = await g.call("CheckService", "Check", { identity_id: bob.id, permission: "doc.read", node_id: regions[0] });
    expect(noAssignment).toMatchObject({ allowed: false, denial_reason: "DENIAL_REASON_NO_ASSIGNMENT" });
  });

  it("a malformed request is INVALID_ARGUMENT (3) and the details name the field", async () => {
    const missing = await g.fail("CheckService", "Check", { permission: "doc.read", node_id: regions[0] });
    expect(missing.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(missing.code).toBe(3);
    expect(missing.details).toContain("identity_id");
    expect(missing.metadata.get("canopy-error-field")).toEqual(["identity_id"]);

    const appWideWithNode = await g.fail("CheckService", "Check", {
      identity_id: alice.id,
      permission: "doc.read",
      scope: "CHECK_SCOPE_APP_WIDE",
      node_id: regions[0],
    });
    expect(appWideWithNode.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(appWideWithNode.details).toContain("node_id");

    const badWindow = await g.fail("AssignmentService", "CreateAssignment", {
      assignment: { identity_id: bob.id, role_id: viewer.id, node_id: regions[1], effective_from: tsOf(T0 + 5000), effective_to: tsOf(T0 + 5000) },
    });
    expect(badWindow.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(badWindow.details).toContain("effective_to");
    expect(badWindow.metadata.get("canopy-error-field")).toEqual(["assignment.effective_to"]);
  });

  describe("BulkCreateAssignments bidirectional stream, 10,000 items in 10 messages", () => {
    type Kind = "good" | "dup" | "unknown_role" | "unknown_node" | "unknown_identity" | "bad_window";
    interface Planned {
      kind: Kind;
      item: any;
      code: number;
      field: string;
      reason?: string;
      /** for good items: the permission the role grants and the identity/node, to check afterwards */
      grant?: { identityId: string; roleIndex: number; nodeId: string };
    }
    const TOTAL = 10_000;
    const PER_MESSAGE = 1000;
    const ROLE_COUNT = 4;
    const IDENTITY_COUNT = 50;
    let plan: Planned[];
    let outcome: StreamOutcome;
    let revisionBefore: bigint;
    let rowsBefore: number;
    const roleIds: string[] = [];
    let identityIds: string[];

    beforeAll(async () => {
      // catalog: bulk.p0..p3, one role per permission
      await g.call("CatalogService", "BatchCreatePermissions", {
        permissions: Array.from({ length: ROLE_COUNT }, (_, k) => ({ key: `bulk.p${k}` })),
      });
      for (let k = 0; k < ROLE_COUNT; k++) roleIds.push((await g.call("CatalogService", "CreateRole", { name: `bulk-role-${k}`, permission_keys: [`bulk.p${k}`] })).role.id);
      const batch = await g.call("IdentityService", "BatchCreateIdentities", {
        identities: Array.from({ length: IDENTITY_COUNT }, (_, i) => ({ email: `bulk-${i}@example.com` })),
      });
      expect(batch.summary).toEqual({ total: IDENTITY_COUNT, succeeded: IDENTITY_COUNT, failed: 0 });
      identityIds = batch.results.map((r: any) => r.identity.id);
      const nodes = [...regions, ...teams.flat()]; // 25 nodes -> 50 * 4 * 25 = 5000 distinct combos

      // the plan
      const rand = prng(20260101);
      const combos: Array<{ identityId: string; roleIndex: number; nodeId: string }> = [];
      for (const identityId of identityIds) for (let k = 0; k < ROLE_COUNT; k++) for (const nodeId of nodes) combos.push({ identityId, roleIndex: k, nodeId });
      for (let i = combos.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [combos[i], combos[j]] = [combos[j], combos[i]];
      }
      let nextCombo = 0;
      const used: Array<{ identityId: string; roleIndex: number; nodeId: string }> = [];
      plan = [];
      for (let i = 0; i < TOTAL; i++) {
        const r = rand();
        let kind: Kind =
          r < 0.42 ? "good" : r < 0.62 ? "dup" : r < 0.72 ? "unknown_role" : r < 0.82 ? "unknown_node" : r < 0.9 ? "unknown_identity" : "bad_window";
        if (kind === "dup" && used.length === 0) kind = "good";
        if (kind === "good" && nextCombo >= combos.length) kind = "dup";
        const pick = () => combos[Math.floor(rand() * nextCombo)] ?? combos[0];
        switch (kind) {
          case "good": {
            const c = combos[nextCombo++];
            used.push(c);
            // some good items carry an explicit start in the past, all are open-ended
            const item: any = { identity_id: c.identityId, role_id: roleIds[c.roleIndex], node_id: c.nodeId };
            if (i % 7 === 0) item.effective_from = tsOf(T0 - 60_000);
            plan.push({ kind, item, code: 0, field: "", grant: c });
            break;
          }
          case "dup": {
            const c = used[Math.floor(rand() * used.length)];
            plan.push({
              kind,
              item: { identity_id: c.identityId, role_id: roleIds[c.roleIndex], node_id: c.nodeId },
              code: 6,
              field: `items[${i}]`,
              reason: "rbac.assignment_conflict",
            });
            break;
          }
          case "unknown_role": {
            const c = pick();
            plan.push({ kind, item: { identity_id: c.identityId, role_id: randomUUID(), node_id: c.nodeId }, code: 5, field: `items[${i}].role_id` });
            break;
          }
          case "unknown_node": {
            const c = pick();
            plan.push({ kind, item: { identity_id: c.identityId, role_id: roleIds[c.roleIndex], node_id: randomUUID() }, code: 5, field: `items[${i}].node_id` });
            break;
          }
          case "unknown_identity": {
            const c = pick();
            plan.push({ kind, item: { identity_id: randomUUID(), role_id: roleIds[c.roleIndex], node_id: c.nodeId }, code: 5, field: `items[${i}].identity_id` });
            break;
          }
          case "bad_window": {
            const c = pick();
            const from = T0 + 10_000 + (i % 3) * 1000;
            const to = i % 2 === 0 ? from : from - 1; // equal or before: both invalid
            plan.push({
              kind,
              item: { identity_id: c.identityId, role_id: roleIds[c.roleIndex], node_id: c.nodeId, effective_from: tsOf(from), effective_to: tsOf(to) },
              code: 3,
              field: `items[${i}].effective_to`,
            });
            break;
          }
        }
      }

      revisionBefore = BigInt((await g.call("HierarchyService", "GetHierarchySchema", {})).revision);
      rowsBefore = await countRows(s, "assignments");

      const batches: object[][] = [];
      for (let m = 0; m < TOTAL / PER_MESSAGE; m++) batches.push(plan.slice(m * PER_MESSAGE, (m + 1) * PER_MESSAGE).map((p) => p.item));
      outcome = await runBulk(g, batches);
    });

    const results = () => outcome.messages.filter((m) => m.kind === "result").map((m) => m.result);
    const expected = () => {
      const succeeded = plan.filter((p) => p.code === 0).length;
      return { total: TOTAL, succeeded, failed: TOTAL - succeeded };
    };

    it("the plan mixes every kind of item, several hundred of each", () => {
      const counts: Record<string, number> = {};
      for (const p of plan) counts[p.kind] = (counts[p.kind] ?? 0) + 1;
      expect(plan).toHaveLength(TOTAL);
      for (const k of ["good", "dup", "unknown_role", "unknown_node", "unknown_identity", "bad_window"]) expect(counts[k]).toBeGreaterThan(300);
    });

    it("the stream ends OK with exactly 10,000 results, then one summary as the last message", () => {
      expect(outcome.error).toBeUndefined();
      expect(outcome.status?.code).toBe(grpc.status.OK);
      expect(outcome.messages).toHaveLength(TOTAL + 1);
      expect(results()).toHaveLength(TOTAL);
      const last = outcome.messages[outcome.messages.length - 1];
      expect(last.kind).toBe("summary");
      expect(outcome.messages.filter((m) => m.kind === "summary")).toHaveLength(1);
    });

    it("every index 0..9999 appears exactly once, in order", () => {
      const seen = new Uint8Array(TOTAL);
      for (const r of results()) {
        expect(Number.isInteger(r.index)).toBe(true);
        expect(r.index).toBeGreaterThanOrEqual(0);
        expect(r.index).toBeLessThan(TOTAL);
        seen[r.index]++;
      }
      expect([...seen].every((n) => n === 1)).toBe(true);
      expect(results().map((r) => r.index)).toEqual(Array.from({ length: TOTAL }, (_, i) => i));
    });

    it("each item's status code, field and reason match the plan", () => {
      const mismatches: string[] = [];
      for (const r of results()) {
        const p = plan[r.index];
        const st = r.status;
        const ok =
          st.code === p.code &&
          st.field === p.field &&
          (p.reason === undefined || st.reason === p.reason) &&
          (p.code === 0 ? r.assignment !== null && st.message === "" : r.assignment === null && st.message.length > 0);
        if (!ok) mismatches.push(`#${r.index} (${p.kind}): expected code ${p.code} field ${p.field} got ${JSON.stringify(st)}`);
      }
      expect(mismatches.slice(0, 10)).toEqual([]);
      expect(mismatches).toHaveLength(0);
    });

    it("created assignments echo their item", () => {
      for (const r of results()) {
        const p = plan[r.index];
        if (p.code !== 0) continue;
        expect(r.assignment).toMatchObject({ identity_id: p.item.identity_id, role_id: p.item.role_id, node_id: p.item.node_id, state: "ASSIGNMENT_STATE_ACTIVE", effective_to: null });
        expect(r.assignment.id).toMatch(/^[0-9a-f-]{36}$/);
        expect(msOfTs(r.assignment.effective_from)).toBe(p.item.effective_from ? T0 - 60_000 : T0);
      }
    });

    it("the summary counts match the plan and the revision advanced", () => {
      const summary = outcome.messages[outcome.messages.length - 1].summary;
      expect(summary.summary).toEqual(expected());
      expect(typeof summary.revision).toBe("string");
      expect(BigInt(summary.revision)).toBeGreaterThan(revisionBefore);
      const ok = results().filter((r) => r.status.code === 0).length;
      expect(ok).toBe(expected().succeeded);
    });

    it("the database holds exactly `succeeded` new assignment rows, including a random sample of the created ids", async () => {
      const created = results()
        .filter((r) => r.status.code === 0)
        .map((r) => r.assignment);
      const after = await countRows(s, "assignments");
      expect(after - rowsBefore).toBe(expected().succeeded);
      const rand = prng(7);
      const sample = Array.from({ length: 200 }, () => created[Math.floor(rand() * created.length)]);
      const ids = [...new Set(sample.map((a) => a.id as string))];
      const rows = await queryRows<any>(
        s,
        `select id, identity_id, role_id, node_id, effective_from, effective_to from assignments where id in (${ids.map(() => "?").join(", ")})`,
        ids,
      );
      const byId = new Map(rows.map((r) => [r.id as string, r]));
      for (const a of sample) {
        const row = byId.get(a.id);
        expect(row, `assignment ${a.id} missing from the database`).toBeDefined();
        expect(row).toMatchObject({ identity_id: a.identity_id, role_id: a.role_id, node_id: a.node_id, effective_to: null });
        expect(Number(row.effective_from)).toBe(msOfTs(a.effective_from));
      }
      // and no failed item left a row behind: every stored (identity, role, node) of the stream is unique
      const [dupRows] = await queryRows<{ n: number }>(
        s,
        "select count(*) as n from (select identity_id, role_id, node_id from assignments group by identity_id, role_id, node_id having count(*) > 1) as dups",
      );
      expect(Number(dupRows.n)).toBe(0);
    });

    it("checks for a sample of created grants are allowed right after the stream returned (and inherited below them)", async () => {
      const goods = plan.filter((p) => p.code === 0);
      const rand = prng(99);
      for (let n = 0; n < 60; n++) {
        const p = goods[Math.floor(rand() * goods.length)];
        const gr = p.grant!;
        const res = await g.call("CheckService", "Check", { identity_id: gr.identityId, permission: `bulk.p${gr.roleIndex}`, node_id: gr.nodeId, explain: true });
        expect(res.allowed, `check for ${JSON.stringify(gr)}`).toBe(true);
        expect(res.granting_roles.map((x: any) => x.role_id)).toContain(roleIds[gr.roleIndex]);
        expect(res.explanation.some((e: any) => e.node_id === gr.nodeId && e.role_id === roleIds[gr.roleIndex])).toBe(true);
      }
      // a region grant cascades to its teams
      const regionGrant = goods.find((p) => regions.includes(p.grant!.nodeId))!.grant!;
      const r = regions.indexOf(regionGrant.nodeId);
      const below = await g.call("CheckService", "Check", {
        identity_id: regionGrant.identityId,
        permission: `bulk.p${regionGrant.roleIndex}`,
        node_id: teams[r][0],
        explain: true,
      });
      expect(below.allowed).toBe(true);
      expect(below.explanation.some((e: any) => e.node_id === regionGrant.nodeId && e.inherited === true)).toBe(true);
    });

    it("CheckBulk over grpc-js agrees with the plan for a mixed sample (combos never granted are denied)", async () => {
      const granted = new Set(plan.filter((p) => p.code === 0).map((p) => `${p.grant!.identityId}|${p.grant!.roleIndex}|${p.grant!.nodeId}`));
      const rand = prng(5);
      const items: any[] = [];
      const want: boolean[] = [];
      const leaves = teams.flat();
      for (let n = 0; n < 200; n++) {
        const identityId = identityIds[Math.floor(rand() * identityIds.length)];
        const k = Math.floor(rand() * ROLE_COUNT);
        const leaf = leaves[Math.floor(rand() * leaves.length)];
        const region = regions[teams.findIndex((t) => t.includes(leaf))];
        items.push({ identity_id: identityId, permission: `bulk.p${k}`, node_id: leaf });
        want.push(granted.has(`${identityId}|${k}|${leaf}`) || granted.has(`${identityId}|${k}|${region}`));
      }
      const res = await g.call("CheckService", "CheckBulk", { items });
      expect(res.results).toHaveLength(items.length);
      expect(res.results.map((x: any) => x.allowed)).toEqual(want);
      expect(res.results.map((x: any) => x.identity_id)).toEqual(items.map((i) => i.identity_id));
      expect(want.some((w) => w)).toBe(true);
      expect(want.some((w) => !w)).toBe(true);
    });
  });
});

describe.skipIf(!ready)("BulkCreateAssignments per-message item limit over grpc-js", () => {
  let s: TestServer;
  let g: GrpcJsClients;
  let roleId: string;
  let nodeIds: string[];
  let identityIds: string[];

  beforeAll(async () => {
    s = await startTestServer({ limits: { maxStreamMessageItems: 10 } });
    g = grpcJsClients(s.port, s.devKey);
    const rootId = (await g.call("HierarchyService", "GetHierarchySchema", {})).root_node_id;
    await g.call("CatalogService", "BatchCreatePermissions", { permissions: [{ key: "doc.read" }] });
    roleId = (await g.call("CatalogService", "CreateRole", { name: "viewer", permission_keys: ["doc.read"] })).role.id;
    nodeIds = [];
    for (let i = 0; i < 3; i++) nodeIds.push((await g.call("HierarchyService", "CreateNode", { parent_id: rootId, type: "team", name: `t${i}` })).node.id);
    const batch = await g.call("IdentityService", "BatchCreateIdentities", { identities: Array.from({ length: 30 }, (_, i) => ({ email: `u${i}@example.com` })) });
    identityIds = batch.results.map((r: any) => r.identity.id);
  });

  afterAll(async () => {
    g?.close();
    await s?.close();
  });

  const countAssignments = (where: Record<string, unknown> = {}) => countRows(s, "assignments", where);

  it("a message of exactly the limit (10 items) is accepted", async () => {
    const before = await countAssignments();
    const out = await runBulk(g, [identityIds.slice(0, 10).map((id) => ({ identity_id: id, role_id: roleId, node_id: nodeIds[0] }))]);
    expect(out.error).toBeUndefined();
    expect(out.messages.filter((m) => m.kind === "result").map((m) => m.result.status.code)).toEqual(Array(10).fill(0));
    expect(out.messages[out.messages.length - 1].summary.summary).toEqual({ total: 10, succeeded: 10, failed: 0 });
    expect((await countAssignments()) - before).toBe(10);
  });

  it("a message with 11 items ends the stream with RESOURCE_EXHAUSTED; results sent before it stay written", async () => {
    const before = await countAssignments();
    const first = identityIds.slice(10, 20).map((id) => ({ identity_id: id, role_id: roleId, node_id: nodeIds[1] }));
    const tooBig = identityIds.slice(0, 11).map((id) => ({ identity_id: id, role_id: roleId, node_id: nodeIds[2] }));
    const out = await runBulk(g, [first, tooBig]);
    expect(out.error).toBeDefined();
    expect(out.error!.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(out.error!.code).toBe(8);
    expect(out.error!.details).toContain("items");
    const results = out.messages.filter((m) => m.kind === "result").map((m) => m.result);
    expect(out.messages.some((m) => m.kind === "summary")).toBe(false);
    // the first message's 10 results may or may not have been delivered before the error; whatever
    // was reported OK is written, and nothing of the oversized message was written
    for (const r of results) {
      expect(r.index).toBeLessThan(10);
      expect(r.status.code).toBe(0);
    }
    const written = (await countAssignments()) - before;
    expect(written).toBe(10);
    expect(await countAssignments({ node_id: nodeIds[2] })).toBe(0);
    expect(await countAssignments({ node_id: nodeIds[1] })).toBe(10);
  });

  it("a first message over the limit writes nothing", async () => {
    const before = await countAssignments();
    const out = await runBulk(g, [identityIds.slice(20, 30).concat(identityIds[0]).map((id) => ({ identity_id: id, role_id: roleId, node_id: nodeIds[2] }))]);
    expect(out.error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(out.messages).toHaveLength(0);
    expect(await countAssignments()).toBe(before);
    const check = await g.call("CheckService", "Check", { identity_id: identityIds[20], permission: "doc.read", node_id: nodeIds[2] });
    expect(check).toMatchObject({ allowed: false, denial_reason: "DENIAL_REASON_NO_ASSIGNMENT" });
  });
});
