/**
 * The core flow over Connect on HTTP/1.1 (typed clients, protocol "connect-h1") plus raw JSON over
 * fetch: CheckBulk ordering, half-open time windows against the manual clock, the bidi stream's
 * refusal over HTTP/1.1, the unary batch fallback, and explicit `"allowed": false` in JSON.
 */
import { randomUUID } from "node:crypto";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { countRows } from "./db.js";
import { backendReady, startTestServer, T0, type Clients, type TestServer } from "./harness.js";
/* eslint-disable @typescript-eslint/no-explicit-any */
import { AssignmentState } from "../../src/gen/canopy/v1/common_pb.js";
import { CheckScope, DenialReason } from "../../src/gen/canopy/v1/check_pb.js";

/** False on a PostgreSQL run whose server is down (locally: skip; under CI=true backendReady throws). */
const ready = await backendReady();

async function connectError(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}

describe.skipIf(!ready)("Connect over HTTP/1.1", () => {
  let s: TestServer;
  let c: Clients;
  let rootId: string;
  let envId: string;
  let regionA: string;
  let teamA1: string;
  let regionB: string;
  let viewer: string;
  let editor: string;
  let ids: { alice: string; bob: string; carol: string; dave: string };

  beforeAll(async () => {
    s = await startTestServer();
    c = s.clients(s.devKey, { protocol: "connect-h1" });
    const schema = await c.hierarchy.getHierarchySchema({});
    rootId = schema.rootNodeId;
    const envs = await s.clients(s.adminKey, { protocol: "connect-h1" }).admin.listEnvironments({});
    envId = envs.environments.find((e) => e.rootNodeId === rootId)!.id;
    await c.catalog.batchCreatePermissions({ permissions: [{ key: "doc.read" }, { key: "doc.write" }, { key: "report.view" }] });
    viewer = (await c.catalog.createRole({ name: "viewer", permissionKeys: ["doc.read"] })).role!.id;
    editor = (await c.catalog.createRole({ name: "editor", permissionKeys: ["doc.read", "doc.write"] })).role!.id;
    regionA = (await c.hierarchy.createNode({ parentId: rootId, type: "region", name: "A" })).node!.id;
    teamA1 = (await c.hierarchy.createNode({ parentId: regionA, type: "team", name: "A1" })).node!.id;
    regionB = (await c.hierarchy.createNode({ parentId: rootId, type: "region", name: "B" })).node!.id;
    const batch = await c.identities.batchCreateIdentities({
      identities: ["alice", "bob", "carol", "dave"].map((n) => ({ email: `${n}@example.com`, displayName: n })),
    });
    const [alice, bob, carol, dave] = batch.results.map((r) => r.identity!.id);
    ids = { alice, bob, carol, dave };
    await c.assignments.createAssignment({ assignment: { identityId: alice, roleId: viewer, nodeId: regionA } });
    await c.assignments.createAssignment({ assignment: { identityId: bob, roleId: editor, nodeId: rootId } });
  });

  afterAll(async () => {
    await s?.close();
  });

  const countAssignmentRows = () => countRows(s, "assignments");

  it("Check over HTTP/1.1: an inherited grant is allowed, a sibling branch is denied", async () => {
    const allowed = await c.check.check({ identityId: ids.alice, permission: "doc.read", nodeId: teamA1, explain: true });
    expect(allowed.allowed).toBe(true);
    expect(allowed.effectiveNodeId).toBe(teamA1);
    expect(allowed.grantingRoles).toEqual([expect.objectContaining({ roleId: viewer, roleName: "viewer" })]);
    expect(allowed.explanation.map((e) => [e.nodeId, e.inherited])).toEqual([[regionA, true]]);
    const denied = await c.check.check({ identityId: ids.alice, permission: "doc.read", nodeId: regionB });
    expect(denied.allowed).toBe(false);
    expect(denied.denialReason).toBe(DenialReason.NO_ASSIGNMENT);
  });

  it("CheckBulk answers in request order", async () => {
    const items = [
      { identityId: ids.alice, permission: "doc.read", nodeId: teamA1 }, // allowed (inherited)
      { identityId: ids.alice, permission: "doc.write", nodeId: teamA1 }, // not granted
      { identityId: ids.bob, permission: "doc.write", nodeId: regionB }, // allowed from root
      { identityId: ids.carol, permission: "doc.read", nodeId: regionA }, // no assignment
      { identityId: ids.bob, permission: "nope.nope", nodeId: regionA }, // unknown permission
      { identityId: randomUUID(), permission: "doc.read", nodeId: regionA }, // unknown identity
      { identityId: ids.alice, permission: "doc.read", nodeId: randomUUID() }, // unknown node
      { identityId: ids.alice, permission: "doc.read", scope: CheckScope.APP_WIDE }, // anywhere
      { identityId: ids.bob, permission: "doc.read", nodeId: teamA1 }, // allowed
    ];
    const res = await c.check.checkBulk({ items });
    expect(res.results).toHaveLength(items.length);
    expect(res.results.map((r) => r.identityId)).toEqual(items.map((i) => i.identityId));
    expect(res.results.map((r) => r.permission)).toEqual(items.map((i) => i.permission));
    expect(res.results.map((r) => r.allowed)).toEqual([true, false, true, false, false, false, false, true, true]);
    expect(res.results.map((r) => r.denialReason)).toEqual([
      DenialReason.UNSPECIFIED,
      DenialReason.PERMISSION_NOT_GRANTED,
      DenialReason.UNSPECIFIED,
      DenialReason.NO_ASSIGNMENT,
      DenialReason.UNKNOWN_PERMISSION,
      DenialReason.UNKNOWN_IDENTITY,
      DenialReason.UNKNOWN_NODE,
      DenialReason.UNSPECIFIED,
      DenialReason.UNSPECIFIED,
    ]);
    expect(res.results[7].scope).toBe(CheckScope.APP_WIDE);
    expect(res.results[7].effectiveNodeId).toBe(regionA);
    expect(res.results.map((r) => r.effectiveNodeId).slice(0, 3)).toEqual([teamA1, teamA1, regionB]);
    // the same items reversed come back reversed
    const reversed = await c.check.checkBulk({ items: [...items].reverse() });
    expect(reversed.results.map((r) => r.allowed)).toEqual(res.results.map((r) => r.allowed).reverse());
    expect(reversed.results.map((r) => r.identityId)).toEqual(items.map((i) => i.identityId).reverse());
  });

  describe("half-open windows [T0+1000, T0+2000)", () => {
    let assignmentId: string;

    beforeAll(async () => {
      const res = await c.assignments.createAssignment({
        assignment: { identityId: ids.carol, roleId: editor, nodeId: regionB, effectiveFrom: timestampFromMs(T0 + 1000), effectiveTo: timestampFromMs(T0 + 2000) },
      });
      assignmentId = res.assignment!.id;
      expect(res.assignment!.state).toBe(AssignmentState.SCHEDULED);
      expect(timestampDate(res.assignment!.effectiveFrom!).getTime()).toBe(T0 + 1000);
      expect(timestampDate(res.assignment!.effectiveTo!).getTime()).toBe(T0 + 2000);
    });

    afterAll(() => s.clock.set(T0));

    const cases: Array<[number, boolean, DenialReason, AssignmentState]> = [
      [999, false, DenialReason.ONLY_SCHEDULED, AssignmentState.SCHEDULED],
      [1000, true, DenialReason.UNSPECIFIED, AssignmentState.ACTIVE],
      [1999, true, DenialReason.UNSPECIFIED, AssignmentState.ACTIVE],
      [2000, false, DenialReason.ONLY_EXPIRED, AssignmentState.EXPIRED],
    ];

    it.each(cases)("via the `at` field: T0+%i → allowed=%s (reason %s)", async (offset, allowed, reason) => {
      s.clock.set(T0);
      const res = await c.check.check({ identityId: ids.carol, permission: "doc.write", nodeId: regionB, at: timestampFromMs(T0 + offset) });
      expect(res.allowed).toBe(allowed);
      expect(res.denialReason).toBe(reason);
      expect(timestampDate(res.at!).getTime()).toBe(T0 + offset);
      // CheckBulk at the same instant agrees
      const bulk = await c.check.checkBulk({ items: [{ identityId: ids.carol, permission: "doc.write", nodeId: regionB }], at: timestampFromMs(T0 + offset) });
      expect(bulk.results[0].allowed).toBe(allowed);
      expect(bulk.results[0].denialReason).toBe(reason);
    });

    it.each(cases)("via the server clock: T0+%i → allowed=%s (reason %s), state %s", async (offset, allowed, reason, state) => {
      s.clock.set(T0 + offset);
      const res = await c.check.check({ identityId: ids.carol, permission: "doc.write", nodeId: regionB });
      expect(res.allowed).toBe(allowed);
      expect(res.denialReason).toBe(reason);
      expect(timestampDate(res.at!).getTime()).toBe(T0 + offset);
      const got = await c.assignments.getAssignment({ id: assignmentId });
      expect(got.assignment!.state).toBe(state);
      const listed = await c.assignments.listAssignments({ identityId: ids.carol });
      expect(listed.assignments.find((a) => a.id === assignmentId)?.state).toBe(state);
      const byState = await c.assignments.listAssignments({ identityId: ids.carol, state });
      expect(byState.assignments.map((a) => a.id)).toContain(assignmentId);
      for (const other of [AssignmentState.SCHEDULED, AssignmentState.ACTIVE, AssignmentState.EXPIRED].filter((x) => x !== state)) {
        const none = await c.assignments.listAssignments({ identityId: ids.carol, state: other });
        expect(none.assignments.map((a) => a.id)).not.toContain(assignmentId);
      }
    });

    it("the `at` field wins over the server clock", async () => {
      s.clock.set(T0 + 5000);
      const res = await c.check.check({ identityId: ids.carol, permission: "doc.write", nodeId: regionB, at: timestampFromMs(T0 + 1500) });
      expect(res.allowed).toBe(true);
      const now = await c.check.check({ identityId: ids.carol, permission: "doc.write", nodeId: regionB });
      expect(now.allowed).toBe(false);
      expect(now.denialReason).toBe(DenialReason.ONLY_EXPIRED);
    });
  });

  it("the bidirectional BulkCreateAssignments cannot run over HTTP/1.1: an error, and nothing is written", async () => {
    s.clock.set(T0);
    const before = await countAssignmentRows();
    const listBefore = await c.assignments.listAssignments({ identityId: ids.dave });
    expect(listBefore.assignments).toHaveLength(0);
    async function* requests() {
      yield { items: [{ identityId: ids.dave, roleId: viewer, nodeId: regionA }] };
      yield { items: [{ identityId: ids.dave, roleId: editor, nodeId: regionB }] };
    }
    const received: unknown[] = [];
    const err = await connectError(
      (async () => {
        for await (const m of c.assignments.bulkCreateAssignments(requests())) received.push(m);
      })(),
    );
    // observed: Code.Unknown ("HTTP 505": the server refuses a bidi stream over HTTP/1.1); any non-OK code is acceptable
    expect(typeof err.code).toBe("number");
    expect(err.code).toBeGreaterThan(0);
    expect([Code.Canceled, Code.Unknown, Code.InvalidArgument, Code.Unimplemented, Code.FailedPrecondition, Code.Internal, Code.Unavailable]).toContain(err.code);
    expect(received).toHaveLength(0);
    expect(await countAssignmentRows()).toBe(before);
    const listAfter = await c.assignments.listAssignments({ identityId: ids.dave });
    expect(listAfter.assignments).toHaveLength(0);
    const check = await c.check.check({ identityId: ids.dave, permission: "doc.read", nodeId: regionA });
    expect(check.allowed).toBe(false);
    expect(check.denialReason).toBe(DenialReason.NO_ASSIGNMENT);
  });

  it("BatchCreateAssignments (unary) works over HTTP/1.1 with partial success", async () => {
    s.clock.set(T0);
    const before = await countAssignmentRows();
    const res = await c.assignments.batchCreateAssignments({
      items: [
        { identityId: ids.dave, roleId: viewer, nodeId: regionA }, // ok
        { identityId: ids.dave, roleId: randomUUID(), nodeId: regionA }, // unknown role
        { identityId: ids.dave, roleId: editor, nodeId: regionB, effectiveFrom: timestampFromMs(T0 + 10), effectiveTo: timestampFromMs(T0 + 10) }, // bad window
        { identityId: ids.dave, roleId: viewer, nodeId: regionA }, // duplicate of item 0
        { identityId: ids.dave, roleId: editor, nodeId: regionB }, // ok
      ],
    });
    expect(res.results.map((r) => r.index)).toEqual([0, 1, 2, 3, 4]);
    expect(res.results.map((r) => r.status?.code)).toEqual([0, 5, 3, 6, 0]);
    expect(res.results.map((r) => r.status?.field)).toEqual(["", "items[1].role_id", "items[2].effective_to", "items[3]", ""]);
    expect(res.results[3].status?.reason).toBe("rbac.assignment_conflict");
    expect(res.summary).toEqual(expect.objectContaining({ total: 5, succeeded: 2, failed: 3 }));
    expect(res.replayed).toBe(false);
    expect(res.results[0].assignment?.nodeId).toBe(regionA);
    expect(res.results[1].assignment).toBeUndefined();
    expect((await countAssignmentRows()) - before).toBe(2);
    const check = await c.check.check({ identityId: ids.dave, permission: "doc.write", nodeId: regionB, minRevision: res.revision });
    expect(check.allowed).toBe(true);
    expect(check.revision).toBeGreaterThanOrEqual(res.revision);
  });

  describe("raw Connect JSON over fetch", () => {
    const post = (path: string, headers: Record<string, string>, body: unknown) =>
      fetch(`${s.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });

    it("x-api-key: a denial carries an explicit \"allowed\": false", async () => {
      const res = await post("/canopy.v1.CheckService/Check", { "x-api-key": s.devKey }, { identityId: ids.alice, permission: "doc.read", nodeId: regionB });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("application/json");
      const text = await res.text();
      expect(text).toMatch(/"allowed"\s*:\s*false/);
      const body = JSON.parse(text);
      expect(Object.prototype.hasOwnProperty.call(body, "allowed")).toBe(true);
      expect(body.allowed).toBe(false);
      expect(body.denialReason).toBe("DENIAL_REASON_NO_ASSIGNMENT");
      expect(body.identityId).toBe(ids.alice);
      expect(body.permission).toBe("doc.read");
    });

    it("authorization: Bearer works the same, and an allowed check says \"allowed\": true", async () => {
      const denied = await post("/canopy.v1.CheckService/Check", { authorization: `Bearer ${s.devKey}` }, { identityId: ids.alice, permission: "doc.read", nodeId: regionB });
      expect(denied.status).toBe(200);
      const deniedBody = (await denied.json()) as Record<string, any>;
      expect(deniedBody.allowed).toBe(false);
      expect(deniedBody.denialReason).toBe("DENIAL_REASON_NO_ASSIGNMENT");

      const allowed = await post("/canopy.v1.CheckService/Check", { authorization: `Bearer ${s.devKey}` }, { identityId: ids.alice, permission: "doc.read", nodeId: teamA1 });
      expect(allowed.status).toBe(200);
      const allowedBody = (await allowed.json()) as Record<string, any>;
      expect(allowedBody.allowed).toBe(true);
      expect(allowedBody.effectiveNodeId).toBe(teamA1);
      expect(allowedBody.grantingRoles).toEqual([{ roleId: viewer, roleName: "viewer" }]);
      expect(typeof allowedBody.revision).toBe("string"); // int64 is a JSON string
    });

    it("the JSON error of a malformed check names the field", async () => {
      const res = await post("/canopy.v1.CheckService/Check", { "x-api-key": s.devKey }, { permission: "doc.read", nodeId: regionA });
      expect(res.status).toBe(400);
      const body = (await res.json()) as Record<string, any>;
      expect(body.code).toBe("invalid_argument");
      expect(body.message).toContain("identity_id");
    });

    it("without a key the JSON call is unauthenticated (401)", async () => {
      const res = await post("/canopy.v1.CheckService/Check", {}, { identityId: ids.alice, permission: "doc.read", nodeId: regionA });
      expect(res.status).toBe(401);
      const body = (await res.json()) as Record<string, any>;
      expect(body.code).toBe("unauthenticated");
      expect(body).not.toHaveProperty("allowed");
    });

    it("the environment is the key's: the admin key needs canopy-environment", async () => {
      const noEnv = await post("/canopy.v1.CheckService/Check", { "x-api-key": s.adminKey }, { identityId: ids.alice, permission: "doc.read", nodeId: teamA1 });
      expect(noEnv.status).toBe(403);
      const withEnv = await post(
        "/canopy.v1.CheckService/Check",
        { "x-api-key": s.adminKey, "canopy-environment": envId },
        { identityId: ids.alice, permission: "doc.read", nodeId: teamA1 },
      );
      expect(withEnv.status).toBe(200);
      expect(((await withEnv.json()) as Record<string, any>).allowed).toBe(true);
    });
  });
});
