/**
 * An immutable closure of one environment's hierarchy, built from its node list.
 *
 * Nodes are numbered in pre-order (Euler tour): node i's subtree is exactly the positions
 * [tin[i], tout[i]). "Is A an ancestor-or-self of N" is then two integer comparisons, and a subtree
 * or an ancestor path is a slice. A closure is never mutated: a hierarchy change builds a new one and
 * the engine swaps the reference, so a check sees the old tree or the new one, never a half-built one.
 */

/** The parts of a node the closure needs. */
export interface TreeNode {
  id: string;
  parentId: string | null;
  type: string;
}

export class Closure {
  /** node id -> position in `ids` (pre-order) */
  private readonly index: Map<string, number>;
  /** node ids in pre-order: the subtree of position p is ids[p .. tout[p]) */
  private readonly ids: string[];
  private readonly types: string[];
  private readonly parent: Int32Array;
  private readonly depthOf: Int32Array;
  private readonly tout: Int32Array;
  /** deepest level (root = 1) below each position, inclusive: used to validate moves against max depth */
  private readonly heightOf: Int32Array;

  /** Builds the closure; throws when the nodes are not one tree rooted at `rootId`. */
  constructor(nodes: Iterable<TreeNode>, readonly rootId: string) {
    const children = new Map<string, TreeNode[]>();
    let root: TreeNode | undefined;
    let count = 0;
    for (const n of nodes) {
      count++;
      if (n.id === rootId) {
        root = n;
        continue;
      }
      if (n.parentId === null) throw new Error(`node ${n.id} has no parent but is not the root`);
      let list = children.get(n.parentId);
      if (!list) children.set(n.parentId, (list = []));
      list.push(n);
    }
    if (!root) throw new Error(`root node ${rootId} is missing`);
    for (const list of children.values()) list.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

    this.ids = new Array<string>(count);
    this.types = new Array<string>(count);
    this.parent = new Int32Array(count);
    this.depthOf = new Int32Array(count);
    this.tout = new Int32Array(count);
    this.heightOf = new Int32Array(count);
    this.index = new Map();

    // Iterative DFS: a frame is (node, parent position); exit markers close the interval.
    let next = 0;
    const stack: Array<{ node: TreeNode; parentPos: number; exit: number }> = [{ node: root, parentPos: -1, exit: -1 }];
    while (stack.length > 0) {
      const frame = stack.pop()!;
      if (frame.exit >= 0) {
        const p = frame.exit;
        this.tout[p] = next;
        const pp = this.parent[p];
        if (pp >= 0 && this.heightOf[p] > this.heightOf[pp]) this.heightOf[pp] = this.heightOf[p];
        continue;
      }
      const pos = next++;
      const { node, parentPos } = frame;
      this.ids[pos] = node.id;
      this.types[pos] = node.type;
      this.parent[pos] = parentPos;
      this.depthOf[pos] = parentPos < 0 ? 1 : this.depthOf[parentPos] + 1;
      this.heightOf[pos] = this.depthOf[pos];
      this.index.set(node.id, pos);
      stack.push({ node, parentPos, exit: pos });
      const kids = children.get(node.id);
      if (kids) for (let k = kids.length - 1; k >= 0; k--) stack.push({ node: kids[k], parentPos: pos, exit: -1 });
    }
    if (next !== count) throw new Error(`${count - next} node(s) are not reachable from the root (orphans or a cycle)`);
  }

  get size(): number {
    return this.ids.length;
  }

  has(id: string): boolean {
    return this.index.has(id);
  }

  /** Pre-order position of a node, or -1. */
  positionOf(id: string): number {
    return this.index.get(id) ?? -1;
  }

  /** True when position `a` is `n` or one of its ancestors. O(1). */
  containsPosition(a: number, n: number): boolean {
    return a <= n && n < this.tout[a];
  }

  /** True when `ancestorId` is `nodeId` or one of its ancestors; false when either is unknown. */
  isAncestorOrSelf(ancestorId: string, nodeId: string): boolean {
    const a = this.index.get(ancestorId);
    const n = this.index.get(nodeId);
    return a !== undefined && n !== undefined && a <= n && n < this.tout[a];
  }

  /** Depth of a node (root = 1), or 0 when unknown. */
  depth(id: string): number {
    const p = this.index.get(id);
    return p === undefined ? 0 : this.depthOf[p];
  }

  /** Depth of a pre-order position (root = 1). */
  depthAt(pos: number): number {
    return this.depthOf[pos];
  }

  /** Deepest absolute depth inside the node's subtree (the node itself included), or 0 when unknown. */
  subtreeMaxDepth(id: string): number {
    const p = this.index.get(id);
    return p === undefined ? 0 : this.heightOf[p];
  }

  type(id: string): string | undefined {
    const p = this.index.get(id);
    return p === undefined ? undefined : this.types[p];
  }

  parentId(id: string): string | null | undefined {
    const p = this.index.get(id);
    if (p === undefined) return undefined;
    const pp = this.parent[p];
    return pp < 0 ? null : this.ids[pp];
  }

  /** Ancestors of the node, root first, excluding the node itself. */
  ancestors(id: string): string[] {
    const out: string[] = [];
    let p = this.index.get(id);
    if (p === undefined) return out;
    p = this.parent[p];
    while (p >= 0) {
      out.push(this.ids[p]);
      p = this.parent[p];
    }
    return out.reverse();
  }

  /** The node's subtree in pre-order, starting with the node; `maxLevels` below it (0 = all). */
  subtree(id: string, maxLevels = 0): string[] {
    const p = this.index.get(id);
    if (p === undefined) return [];
    const end = this.tout[p];
    if (maxLevels <= 0) return this.ids.slice(p, end);
    const limit = this.depthOf[p] + maxLevels;
    const out: string[] = [];
    for (let i = p; i < end; i++) if (this.depthOf[i] <= limit) out.push(this.ids[i]);
    return out;
  }

  /** Number of nodes strictly below the node. */
  descendantCount(id: string): number {
    const p = this.index.get(id);
    return p === undefined ? 0 : this.tout[p] - p - 1;
  }

  /** Every node as (id, parentId, type), in pre-order. */
  nodes(): TreeNode[] {
    return this.ids.map((id, i) => ({ id, parentId: this.parent[i] < 0 ? null : this.ids[this.parent[i]], type: this.types[i] }));
  }
}
