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
  /** node id -> index in the input list; `posOfInput` maps that to the pre-order position */
  private readonly inputIndex: Map<string, number>;
  private readonly posOfInput: Int32Array;
  /** node ids in pre-order: the subtree of position p is ids[p .. tout[p]) */
  private readonly ids: string[];
  private readonly types: string[];
  private readonly parent: Int32Array;
  private readonly depthOf: Int32Array;
  private readonly tout: Int32Array;
  /** deepest level (root = 1) below each position, inclusive: used to validate moves against max depth */
  private readonly heightOf: Int32Array;

  /**
   * Builds the closure; throws when the nodes are not one tree rooted at `rootId`. Flat arrays only
   * (no per-node objects): numbering, child lists (CSR) and an explicit integer DFS stack.
   */
  constructor(nodes: Iterable<TreeNode>, readonly rootId: string) {
    const list = Array.isArray(nodes) ? (nodes as TreeNode[]) : [...nodes];
    const count = list.length;
    const input = new Map<string, number>();
    for (let i = 0; i < count; i++) input.set(list[i].id, i);
    const rootIn = input.get(rootId);
    if (rootIn === undefined) throw new Error(`root node ${rootId} is missing`);

    // parent of each input index, and children counts -> CSR offsets
    const parentIn = new Int32Array(count).fill(-1);
    const childCount = new Int32Array(count + 1);
    for (let i = 0; i < count; i++) {
      if (i === rootIn) continue;
      const pid = list[i].parentId;
      if (pid === null) throw new Error(`node ${list[i].id} has no parent but is not the root`);
      const p = input.get(pid);
      if (p === undefined) continue; // orphan: reported below as unreachable
      parentIn[i] = p;
      childCount[p + 1]++;
    }
    for (let i = 0; i < count; i++) childCount[i + 1] += childCount[i];
    const fill = childCount.slice(0, count);
    const kids = new Int32Array(Math.max(0, childCount[count]));
    for (let i = 0; i < count; i++) if (parentIn[i] >= 0) kids[fill[parentIn[i]]++] = i;
    // children in id order, so the pre-order (and every listing built on it) is deterministic
    for (let p = 0; p < count; p++) {
      const from = childCount[p];
      const to = childCount[p + 1];
      if (to - from < 2) continue;
      let sorted = true;
      for (let k = from + 1; k < to && sorted; k++) if (list[kids[k - 1]].id > list[kids[k]].id) sorted = false;
      if (!sorted) {
        const seg = Array.from(kids.subarray(from, to)).sort((a, b) => (list[a].id < list[b].id ? -1 : 1));
        kids.set(seg, from);
      }
    }

    this.ids = new Array<string>(count);
    this.types = new Array<string>(count);
    this.parent = new Int32Array(count);
    this.depthOf = new Int32Array(count);
    this.tout = new Int32Array(count);
    this.heightOf = new Int32Array(count);

    // Iterative DFS over input indexes; stack holds (input index, next child cursor).
    const posOf = new Int32Array(count).fill(-1);
    const stackNode = new Int32Array(count);
    const stackCursor = new Int32Array(count);
    let top = 0;
    let next = 0;
    const enter = (i: number, parentPos: number) => {
      const pos = next++;
      posOf[i] = pos;
      this.ids[pos] = list[i].id;
      this.types[pos] = list[i].type;
      this.parent[pos] = parentPos;
      this.depthOf[pos] = parentPos < 0 ? 1 : this.depthOf[parentPos] + 1;
      this.heightOf[pos] = this.depthOf[pos];
      stackNode[top] = i;
      stackCursor[top] = childCount[i];
      top++;
    };
    enter(rootIn, -1);
    while (top > 0) {
      const i = stackNode[top - 1];
      const cursor = stackCursor[top - 1];
      if (cursor < childCount[i + 1]) {
        stackCursor[top - 1] = cursor + 1;
        enter(kids[cursor], posOf[i]);
        continue;
      }
      top--;
      const pos = posOf[i];
      this.tout[pos] = next;
      const pp = this.parent[pos];
      if (pp >= 0 && this.heightOf[pos] > this.heightOf[pp]) this.heightOf[pp] = this.heightOf[pos];
    }
    if (next !== count || input.size !== count) throw new Error(`${count - next} node(s) are not reachable from the root (orphans or a cycle)`);
    this.inputIndex = input;
    this.posOfInput = posOf;
  }

  /** Pre-order position, or undefined when unknown. */
  private pos(id: string): number | undefined {
    const i = this.inputIndex.get(id);
    return i === undefined ? undefined : this.posOfInput[i];
  }

  get size(): number {
    return this.ids.length;
  }

  has(id: string): boolean {
    return this.inputIndex.has(id);
  }

  /** Pre-order position of a node, or -1. */
  positionOf(id: string): number {
    const i = this.inputIndex.get(id);
    return i === undefined ? -1 : this.posOfInput[i];
  }

  /** True when position `a` is `n` or one of its ancestors. O(1). */
  containsPosition(a: number, n: number): boolean {
    return a <= n && n < this.tout[a];
  }

  /** True when `ancestorId` is `nodeId` or one of its ancestors; false when either is unknown. */
  isAncestorOrSelf(ancestorId: string, nodeId: string): boolean {
    const a = this.pos(ancestorId);
    const n = this.pos(nodeId);
    return a !== undefined && n !== undefined && a <= n && n < this.tout[a];
  }

  /** Depth of a node (root = 1), or 0 when unknown. */
  depth(id: string): number {
    const p = this.pos(id);
    return p === undefined ? 0 : this.depthOf[p];
  }

  /** Depth of a pre-order position (root = 1). */
  depthAt(pos: number): number {
    return this.depthOf[pos];
  }

  /** Deepest absolute depth inside the node's subtree (the node itself included), or 0 when unknown. */
  subtreeMaxDepth(id: string): number {
    const p = this.pos(id);
    return p === undefined ? 0 : this.heightOf[p];
  }

  type(id: string): string | undefined {
    const p = this.pos(id);
    return p === undefined ? undefined : this.types[p];
  }

  parentId(id: string): string | null | undefined {
    const p = this.pos(id);
    if (p === undefined) return undefined;
    const pp = this.parent[p];
    return pp < 0 ? null : this.ids[pp];
  }

  /** Ancestors of the node, root first, excluding the node itself. */
  ancestors(id: string): string[] {
    const out: string[] = [];
    let p = this.pos(id);
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
    const p = this.pos(id);
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
    const p = this.pos(id);
    return p === undefined ? 0 : this.tout[p] - p - 1;
  }

  /** Every node as (id, parentId, type), in pre-order. */
  nodes(): TreeNode[] {
    return this.ids.map((id, i) => ({ id, parentId: this.parent[i] < 0 ? null : this.ids[this.parent[i]], type: this.types[i] }));
  }
}
