import { performance } from "node:perf_hooks";
import { createEngine, type Engine } from "../../src/engine/index.js";
import { createOracle } from "./oracle.js";
import { fmtInt, fmtMiB, fmtMs, type Table } from "./report.js";
import type { Workload } from "./workload.js";

export const ENV = "bench-env";
const ACCOUNT = "bench-account";
const APP = "bench-app";

/** Loads a workload into a fresh engine, as the service does at first use of an environment. */
export function loadEngine(w: Workload): { engine: Engine; ms: number } {
  const t0 = performance.now();
  const engine = createEngine();
  for (const id of w.identityIds) engine.setIdentity(id, ACCOUNT, true);
  engine.resetMemberships(APP, w.identityIds.map((identityId) => ({ identityId, status: "active" as const })));
  engine.loadEnvironment({
    id: ENV,
    accountId: ACCOUNT,
    applicationId: APP,
    rootNodeId: w.nodes[0].id,
    revision: 1,
    nodes: w.nodes,
    permissionKeys: w.permissionKeys,
    roles: w.roles,
    assignments: w.assignments,
  });
  return { engine, ms: performance.now() - t0 };
}

/** Every check answered by the engine and by the oracle; returns the mismatch count and the allowed share. */
export function verify(engine: Engine, w: Workload): { mismatches: number; allowed: number } {
  const oracle = createOracle(w);
  let mismatches = 0;
  let allowed = 0;
  for (const c of w.checks) {
    const got = engine.check(ENV, { ...c, scope: "node", at: w.at, explain: false }).allowed;
    const want = oracle(c.identityId, c.permission, c.nodeId);
    if (got !== want) mismatches++;
    if (want) allowed++;
  }
  return { mismatches, allowed };
}

/** Engine throughput from string ids for `seconds`: decisions out, nothing else. */
export function engineThroughput(engine: Engine, w: Workload, seconds: number): { checksPerSec: number; count: number } {
  const checks = w.checks;
  let count = 0;
  let sink = 0;
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  while (performance.now() < deadline) {
    for (let i = 0; i < 10_000; i++) {
      const c = checks[(count + i) % checks.length];
      if (engine.check(ENV, { identityId: c.identityId, permission: c.permission, scope: "node", nodeId: c.nodeId, at: w.at, explain: false }).allowed) sink++;
    }
    count += 10_000;
  }
  const elapsed = (performance.now() - t0) / 1000;
  if (sink < 0) console.log(sink);
  return { checksPerSec: count / elapsed, count };
}

/**
 * The floor under any evaluator that takes string ids: the same loop over the same checks doing only
 * the three hash lookups every check needs (identity, node, permission) in plain Maps of the
 * workload's ids, and nothing else. On a machine whose memory latency dominates, this bounds the
 * engine's checks/s from above.
 */
export function lookupFloor(w: Workload, seconds: number): number {
  const identities = new Map(w.identityIds.map((id, i) => [id, i]));
  const nodes = new Map(w.nodes.map((n, i) => [n.id, i]));
  const permissions = new Map(w.permissionKeys.map((k, i) => [k, i]));
  const checks = w.checks;
  let count = 0;
  let sink = 0;
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  while (performance.now() < deadline) {
    for (let i = 0; i < 10_000; i++) {
      const c = checks[(count + i) % checks.length];
      sink += (identities.get(c.identityId) ?? 0) + (nodes.get(c.nodeId) ?? 0) + (permissions.get(c.permission) ?? 0);
    }
    count += 10_000;
  }
  const elapsed = (performance.now() - t0) / 1000;
  if (sink < 0) console.log(sink);
  return count / elapsed;
}

export function engineSection(workloads: Workload[], seconds: number): { table: Table; failed: boolean; results: Array<{ name: string; checksPerSec: number; rebuildMs: number }> } {
  const rows: Table["rows"] = [];
  const results: Array<{ name: string; checksPerSec: number; rebuildMs: number }> = [];
  let failed = false;
  for (const w of workloads) {
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    const { engine, ms } = loadEngine(w);
    const rss1 = process.memoryUsage().rss;
    const v = verify(engine, w);
    if (v.mismatches > 0) failed = true;
    const tp = engineThroughput(engine, w, seconds);
    const floor = lookupFloor(w, Math.max(1, seconds / 2));
    // a full closure rebuild, as a hierarchy write triggers it (same nodes, new tree object)
    const t0 = performance.now();
    engine.applyNodes(ENV, { upsert: [{ id: w.nodes[w.nodes.length - 1].id, parentId: w.nodes[w.nodes.length - 1].parentId, type: w.nodes[w.nodes.length - 1].type }] });
    const rebuildMs = performance.now() - t0;
    results.push({ name: w.name, checksPerSec: tp.checksPerSec, rebuildMs });
    rows.push([
      w.name,
      fmtInt(w.nodes.length),
      fmtInt(w.assignments.length),
      fmtMs(ms),
      fmtMiB(rss1 - rss0),
      `${v.mismatches} / ${fmtInt(w.checks.length)}`,
      `${((v.allowed / w.checks.length) * 100).toFixed(1)} %`,
      fmtInt(tp.checksPerSec),
      fmtInt(floor),
      `${((tp.checksPerSec / floor) * 100).toFixed(0)} %`,
      fmtMs(rebuildMs),
    ]);
  }
  return {
    failed,
    results,
    table: {
      title: "Engine in-process (string ids in, decisions out)",
      columns: ["Workload", "Nodes", "Assignments", "Load", "RSS growth MiB", "Mismatches / checked", "Allowed", "Checks/s", "Lookup floor/s", "Engine / floor", "Closure rebuild"],
      rows,
      notes: [
        "Every check is also answered by an independent walk-to-root oracle (scripts/bench/oracle.ts); any mismatch fails the run.",
        "Lookup floor: the same loop over the same checks doing only the three hash lookups any string-id evaluator needs (identity, node and permission ids in plain Maps), nothing else: an upper bound for the engine on this machine.",
        "Closure rebuild: a hierarchy write's rebuild of the tree numbering (Closure.withChanges), the same nodes with one upserted.",
      ],
    },
  };
}
