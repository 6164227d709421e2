/**
 * Deterministic benchmark workload (seeded): a hierarchy, a catalog, identities, time-bounded
 * assignments at every level, and checks about half of which are allowed. The same seed always
 * yields the same workload, so every run of every contender answers the same questions.
 *
 *   small: root → 5 → 10 → 10 → 10 (5,556 nodes), 100 k identities, 200 k assignments, 100 k checks
 *   large: root → 10 → 10 → 10 → 10 → 10 (111,111 nodes), 1 M assignments
 */

export interface WorkloadNode {
  id: string;
  parentId: string | null;
  type: string;
  depth: number;
}

export interface WorkloadRole {
  id: string;
  name: string;
  permissionKeys: string[];
}

export interface WorkloadAssignment {
  id: string;
  identityId: string;
  roleId: string;
  nodeId: string;
  effectiveFrom: number;
  effectiveTo: number | null;
}

export interface WorkloadCheck {
  identityId: string;
  permission: string;
  nodeId: string;
}

export interface Workload {
  name: string;
  seed: number;
  /** the instant every check is evaluated at (epoch ms) */
  at: number;
  nodes: WorkloadNode[];
  permissionKeys: string[];
  roles: WorkloadRole[];
  identityIds: string[];
  assignments: WorkloadAssignment[];
  checks: WorkloadCheck[];
}

export interface WorkloadSpec {
  name: string;
  /** children per level below the root, e.g. [5, 10, 10, 10] */
  fanout: number[];
  permissions: number;
  roles: number;
  identities: number;
  assignments: number;
  checks: number;
}

export const SMALL: WorkloadSpec = { name: "small", fanout: [5, 10, 10, 10], permissions: 50, roles: 20, identities: 100_000, assignments: 200_000, checks: 100_000 };
export const LARGE: WorkloadSpec = { name: "large", fanout: [10, 10, 10, 10, 10], permissions: 50, roles: 20, identities: 200_000, assignments: 1_000_000, checks: 100_000 };

/** mulberry32 */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const AT = Date.UTC(2026, 5, 1);
const DAY = 86_400_000;
const LEVEL_TYPES = ["root", "region", "division", "department", "team", "squad", "unit"];

/** Fixed-width ids keep string comparisons and lengths realistic (UUID-sized). */
const id = (prefix: string, n: number) => `${prefix}-${n.toString(16).padStart(34 - prefix.length, "0")}`;

export function generateWorkload(spec: WorkloadSpec, seed = 42): Workload {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];

  // hierarchy, breadth-first so nodes of each level are contiguous
  const nodes: WorkloadNode[] = [{ id: id("n", 0), parentId: null, type: "root", depth: 1 }];
  let level: WorkloadNode[] = [nodes[0]];
  spec.fanout.forEach((fan, i) => {
    const next: WorkloadNode[] = [];
    for (const parent of level) {
      for (let k = 0; k < fan; k++) {
        const n = { id: id("n", nodes.length), parentId: parent.id, type: LEVEL_TYPES[i + 1] ?? `level${i + 2}`, depth: i + 2 };
        nodes.push(n);
        next.push(n);
      }
    }
    level = next;
  });

  const resources = ["invoice", "order", "report", "customer", "ledger", "payment", "shipment", "contract", "ticket", "asset"];
  const actions = ["read", "create", "update", "delete", "approve"];
  const permissionKeys: string[] = [];
  for (let i = 0; permissionKeys.length < spec.permissions; i++) {
    permissionKeys.push(`${resources[i % resources.length]}.${actions[Math.floor(i / resources.length) % actions.length]}${i >= resources.length * actions.length ? `_${i}` : ""}`);
  }

  const roles: WorkloadRole[] = [];
  for (let r = 0; r < spec.roles; r++) {
    const count = 5 + Math.floor(rnd() * 11); // 5..15
    const keys = new Set<string>();
    while (keys.size < count) keys.add(pick(permissionKeys));
    roles.push({ id: id("r", r), name: `role-${r}`, permissionKeys: [...keys].sort() });
  }

  const identityIds = Array.from({ length: spec.identities }, (_, i) => id("i", i));

  // assignments at every level, weighted towards deeper levels (there are more nodes there)
  const assignments: WorkloadAssignment[] = [];
  const seen = new Set<string>();
  while (assignments.length < spec.assignments) {
    const identityId = pick(identityIds);
    const roleId = pick(roles).id;
    const node = nodes[Math.floor(rnd() * nodes.length)];
    const key = `${identityId}|${roleId}|${node.id}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const kind = rnd();
    let effectiveFrom = AT - 30 * DAY;
    let effectiveTo: number | null = null;
    if (kind < 0.033) {
      effectiveTo = AT - DAY; // expired
    } else if (kind < 0.066) {
      effectiveFrom = AT + DAY; // scheduled
    } else if (kind < 0.1) {
      effectiveTo = AT + DAY; // active, bounded
    }
    assignments.push({ id: id("a", assignments.length), identityId, roleId, nodeId: node.id, effectiveFrom, effectiveTo });
  }

  const checks = generateChecks(rnd, { nodes, roles, identityIds, permissionKeys }, assignments, spec.checks);
  return { name: spec.name, seed, at: AT, nodes, permissionKeys, roles, identityIds, assignments, checks };
}

/**
 * Checks over a workload: 55 % aimed at a grant (a node at or below an assignment's node, a permission of
 * its role), the rest random; the oracle decides which are allowed (about half).
 */
export function generateChecks(
  rnd: () => number,
  base: Pick<Workload, "nodes" | "roles" | "identityIds" | "permissionKeys">,
  assignments: WorkloadAssignment[],
  count: number,
): WorkloadCheck[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const children = new Map<string, string[]>();
  for (const n of base.nodes) if (n.parentId) (children.get(n.parentId) ?? children.set(n.parentId, []).get(n.parentId)!).push(n.id);
  const roleById = new Map(base.roles.map((r) => [r.id, r]));
  const checks: WorkloadCheck[] = [];
  while (checks.length < count) {
    if (rnd() < 0.55) {
      const a = pick(assignments);
      let node = a.nodeId;
      // walk down a random number of levels
      for (let steps = Math.floor(rnd() * 4); steps > 0; steps--) {
        const kids = children.get(node);
        if (!kids) break;
        node = pick(kids);
      }
      checks.push({ identityId: a.identityId, permission: pick(roleById.get(a.roleId)!.permissionKeys), nodeId: node });
    } else {
      checks.push({ identityId: pick(base.identityIds), permission: pick(base.permissionKeys), nodeId: pick(base.nodes).id });
    }
  }
  return checks;
}
