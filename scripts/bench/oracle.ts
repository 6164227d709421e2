import type { Workload } from "./workload.js";

/**
 * The independent answer key: for each check, walk from the node up to the root and look for an
 * assignment of the identity on that path, active at `at`, whose role has the permission. Shares no
 * code with src/engine. All identities are active members in the benchmark workload.
 */
export function createOracle(w: Workload): (identityId: string, permission: string, nodeId: string) => boolean {
  const parent = new Map(w.nodes.map((n) => [n.id, n.parentId]));
  const rolePerms = new Map(w.roles.map((r) => [r.id, new Set(r.permissionKeys)]));
  const byIdentityNode = new Map<string, typeof w.assignments>();
  for (const a of w.assignments) {
    const k = `${a.identityId}|${a.nodeId}`;
    const list = byIdentityNode.get(k);
    if (list) list.push(a);
    else byIdentityNode.set(k, [a]);
  }
  return (identityId, permission, nodeId) => {
    if (!parent.has(nodeId)) return false;
    for (let n: string | null | undefined = nodeId; n; n = parent.get(n)) {
      for (const a of byIdentityNode.get(`${identityId}|${n}`) ?? []) {
        const active = a.effectiveFrom <= w.at && (a.effectiveTo === null || w.at < a.effectiveTo);
        if (active && rolePerms.get(a.roleId)?.has(permission)) return true;
      }
    }
    return false;
  };
}
