/**
 * An immutable closure of one environment's hierarchy.
 *
 * Every node id gets a stable integer slot the first time it is seen; the slot never changes while
 * the environment is loaded, so the engine can store node slots (not strings) in its assignment index.
 * Each closure numbers the nodes in pre-order (Euler tour): slot s's subtree is exactly the positions
 * [tin[s], tout[s]). "Is A an ancestor-or-self of N" is then two integer comparisons, and a subtree or
 * an ancestor path is a slice.
 *
 * A closure is never mutated: a hierarchy change builds a new one (`withChanges`) and the engine swaps
 * the reference, so a check sees the old tree or the new one, never a half-built one. Closures of one
 * environment share the append-only id → slot table; a closure only answers for the slots it was built
 * with. A rebuild touches flat typed arrays only (no per-node objects, no per-node Map inserts), which
 * keeps it to milliseconds for 100 k nodes.
 */

/** The parts of a node the closure needs. */
export interface TreeNode {
  id: string;
  parentId: string | null;
  type: string;
}

/** Append-only id <-> slot table shared by the closures of one lineage. */
class SlotTable {
  readonly slotOf = new Map<string, number>();
  readonly ids: string[] = [];
  /**
   * True while slots were handed out in increasing id order (storage lists nodes by id, and new ids
   * are time-ordered): then slot order is id order and a rebuild need not compare id strings to put
   * children in id order.
   */
  ordered = true;

  slot(id: string): number {
    let s = this.slotOf.get(id);
    if (s === undefined) {
      s = this.ids.length;
      if (s > 0 && this.ordered && !(id > this.ids[s - 1])) this.ordered = false;
      this.slotOf.set(id, s);
      this.ids.push(id);
    }
    return s;
  }
}

/** parentOf values besides a slot: the root, a slot not in this tree, a node whose parent is unknown */
const ROOT = -1;
const ABSENT = -2;
const ORPHAN = -3;

export class Closure {
  private readonly table: SlotTable;
  /** slots this closure was built with (the table may have grown since) */
  private readonly count: number;
  /** per slot: parent slot, ROOT, ABSENT or ORPHAN */
  private readonly parentOf: Int32Array;
  private readonly typeOf: string[];
  /** per slot: pre-order position (-1 when absent), end of subtree, depth (root = 1), deepest depth below */
  private readonly tin: Int32Array;
  private readonly tout: Int32Array;
  private readonly depthOf: Int32Array;
  private readonly heightOf: Int32Array;
  /** pre-order position -> slot */
  private readonly order: Int32Array;
  private readonly rootSlot: number;

  /** Builds the closure; throws when the nodes are not one tree rooted at `rootId`. */
  constructor(nodes: Iterable<TreeNode>, rootId: string);
  /** @internal a rebuild from prepared arrays (see withChanges) */
  constructor(nodes: null, rootId: string, table: SlotTable, parentOf: Int32Array, typeOf: string[], count: number);
  constructor(nodes: Iterable<TreeNode> | null, readonly rootId: string, table?: SlotTable, parentOf?: Int32Array, typeOf?: string[], count?: number) {
    if (nodes !== null) {
      const list = Array.isArray(nodes) ? (nodes as TreeNode[]) : [...nodes];
      table = new SlotTable();
      for (let i = 0; i < list.length; i++) table.slot(list[i].id);
      count = table.ids.length;
      parentOf = new Int32Array(count);
      typeOf = new Array<string>(count);
      const duplicates = list.length - count;
      for (let i = 0; i < list.length; i++) {
        const n = list[i];
        const s = table.slotOf.get(n.id)!;
        typeOf[s] = n.type;
        if (n.parentId === null) parentOf[s] = ROOT;
        else {
          const p = table.slotOf.get(n.parentId);
          parentOf[s] = p === undefined ? ORPHAN : p;
        }
      }
      if (duplicates > 0) throw new Error(`${duplicates} node(s) are not reachable from the root (duplicate ids)`);
    }
    this.table = table!;
    this.count = count!;
    this.parentOf = parentOf!;
    this.typeOf = typeOf!;
    const rootSlot = this.table.slotOf.get(rootId);
    if (rootSlot === undefined || rootSlot >= this.count || this.parentOf[rootSlot] === ABSENT) throw new Error(`root node ${rootId} is missing`);
    this.rootSlot = rootSlot;
    const built = build(this.table.ids, this.parentOf, this.count, rootSlot, this.table.ordered);
    this.tin = built.tin;
    this.tout = built.tout;
    this.depthOf = built.depth;
    this.heightOf = built.height;
    this.order = built.order;
  }

  /**
   * A new closure with nodes upserted (new, moved or retyped) and removed; this one is unchanged.
   * Throws (and nothing changes) when the result is not one tree under the same root.
   */
  withChanges(change: { upsert?: readonly TreeNode[]; remove?: readonly string[] }): Closure {
    const table = this.table;
    const upsert = change.upsert ?? [];
    for (const n of upsert) table.slot(n.id);
    const count = table.ids.length;
    const parentOf = new Int32Array(count).fill(ABSENT);
    parentOf.set(this.parentOf.subarray(0, this.count));
    // The type array is shared with this closure (and the older closures it shares it with) unless an
    // upsert would write below this.count — a present node changing type, or a slot absent here that an
    // older closure may still hold: then only slots at or above this.count are written, which no closure
    // sharing the array reads.
    let typeOf = this.typeOf;
    for (const n of upsert) {
      const s = table.slotOf.get(n.id)!;
      if (s < this.count && (this.parentOf[s] === ABSENT || this.typeOf[s] !== n.type)) {
        typeOf = this.typeOf.slice();
        break;
      }
    }
    if (typeOf.length < count) typeOf.length = count;
    for (const id of change.remove ?? []) {
      const s = table.slotOf.get(id);
      if (s !== undefined && s < count) parentOf[s] = ABSENT;
    }
    for (const n of upsert) {
      const s = table.slotOf.get(n.id)!;
      typeOf[s] = n.type;
      if (n.parentId === null) parentOf[s] = ROOT;
      else {
        const p = table.slotOf.get(n.parentId);
        parentOf[s] = p === undefined || p >= count ? ORPHAN : p;
      }
    }
    return new Closure(null, this.rootId, table, parentOf, typeOf, count);
  }

  /** Stable slot of a node present in this tree, or -1. Slots never change while the lineage lives. */
  slotOf(id: string): number {
    const s = this.table.slotOf.get(id);
    return s !== undefined && s < this.count && this.tin[s] >= 0 ? s : -1;
  }

  /**
   * The slot of any id, given out now when the id was never seen: lets the engine index an
   * assignment whose node is not (or not yet) in this tree; such a slot is simply not present here.
   */
  slotForId(id: string): number {
    return this.table.slot(id);
  }

  /** The slot this lineage gave the id (present in this tree or not), or -1 when it never saw it. */
  slotOfAny(id: string): number {
    return this.table.slotOf.get(id) ?? -1;
  }

  /** Id of a slot (any slot this lineage ever gave out). */
  idOfSlot(slot: number): string {
    return this.table.ids[slot];
  }

  /** Pre-order position of a slot in this tree, or -1 when the node is not in it. */
  positionOfSlot(slot: number): number {
    return slot < this.count ? this.tin[slot] : -1;
  }

  /** End (exclusive) of a present slot's subtree in pre-order positions. */
  subtreeEndOfSlot(slot: number): number {
    return this.tout[slot];
  }

  /** Depth of a present slot (root = 1). */
  depthOfSlot(slot: number): number {
    return this.depthOf[slot];
  }

  get size(): number {
    return this.order.length;
  }

  has(id: string): boolean {
    return this.slotOf(id) >= 0;
  }

  /** Pre-order position of a node, or -1. */
  positionOf(id: string): number {
    const s = this.slotOf(id);
    return s < 0 ? -1 : this.tin[s];
  }

  /** True when `ancestorId` is `nodeId` or one of its ancestors; false when either is unknown. */
  isAncestorOrSelf(ancestorId: string, nodeId: string): boolean {
    const a = this.slotOf(ancestorId);
    const n = this.slotOf(nodeId);
    return a >= 0 && n >= 0 && this.tin[a] <= this.tin[n] && this.tin[n] < this.tout[a];
  }

  /** Depth of a node (root = 1), or 0 when unknown. */
  depth(id: string): number {
    const s = this.slotOf(id);
    return s < 0 ? 0 : this.depthOf[s];
  }

  /** Deepest absolute depth inside the node's subtree (the node itself included), or 0 when unknown. */
  subtreeMaxDepth(id: string): number {
    const s = this.slotOf(id);
    return s < 0 ? 0 : this.heightOf[s];
  }

  type(id: string): string | undefined {
    const s = this.slotOf(id);
    return s < 0 ? undefined : this.typeOf[s];
  }

  parentId(id: string): string | null | undefined {
    const s = this.slotOf(id);
    if (s < 0) return undefined;
    const p = this.parentOf[s];
    return p < 0 ? null : this.table.ids[p];
  }

  /** Ancestors of the node, root first, excluding the node itself. */
  ancestors(id: string): string[] {
    const out: string[] = [];
    const s = this.slotOf(id);
    if (s < 0) return out;
    for (let p = this.parentOf[s]; p >= 0; p = this.parentOf[p]) out.push(this.table.ids[p]);
    return out.reverse();
  }

  /** The node's subtree in pre-order, starting with the node; `maxLevels` below it (0 = all). */
  subtree(id: string, maxLevels = 0): string[] {
    const s = this.slotOf(id);
    if (s < 0) return [];
    const ids = this.table.ids;
    const from = this.tin[s];
    const end = this.tout[s];
    const limit = maxLevels <= 0 ? Infinity : this.depthOf[s] + maxLevels;
    const out: string[] = [];
    for (let p = from; p < end; p++) {
      const slot = this.order[p];
      if (this.depthOf[slot] <= limit) out.push(ids[slot]);
    }
    return out;
  }

  /** Number of nodes strictly below the node. */
  descendantCount(id: string): number {
    const s = this.slotOf(id);
    return s < 0 ? 0 : this.tout[s] - this.tin[s] - 1;
  }

  /** Every node as (id, parentId, type), in pre-order. */
  nodes(): TreeNode[] {
    const ids = this.table.ids;
    return Array.from(this.order, (s) => {
      const p = this.parentOf[s];
      return { id: ids[s], parentId: p < 0 ? null : ids[p], type: this.typeOf[s] };
    });
  }
}

/**
 * Numbers the tree under `root` in pre-order with children in id order (so listings are deterministic):
 * child lists in CSR form, an explicit integer DFS stack, per-slot arrays. Throws when a present slot
 * is not reachable from the root (orphan, cycle) or a second node has no parent.
 */
/** Scratch arrays of `build` (child lists and the DFS stack), reused: a build is synchronous and leaves nothing in them. */
let scratch = new Int32Array(0);

function build(ids: string[], parentOf: Int32Array, count: number, root: number, slotsInIdOrder: boolean) {
  let present = 0;
  // childStart [count + 1] | fill [count] | kids [count] | stackSlot [count + 1] | stackCursor [count + 1]
  if (scratch.length < 5 * count + 3) scratch = new Int32Array(Math.max(1024, Math.ceil((5 * count + 3) * 1.25)));
  const childStart = scratch.subarray(0, count + 1).fill(0);
  for (let s = 0; s < count; s++) {
    const p = parentOf[s];
    if (p === ABSENT) continue;
    present++;
    if (p === ROOT && s !== root) throw new Error(`node ${ids[s]} has no parent but is not the root`);
    if (p >= 0 && s !== root) {
      if (parentOf[p] === ABSENT) parentOf[s] = ORPHAN;
      else childStart[p + 1]++;
    }
  }
  for (let s = 0; s < count; s++) childStart[s + 1] += childStart[s];
  const fill = scratch.subarray(count + 1, 2 * count + 1);
  fill.set(childStart.subarray(0, count));
  const kids = scratch.subarray(2 * count + 1, 2 * count + 1 + childStart[count]);
  for (let s = 0; s < count; s++) {
    const p = parentOf[s];
    if (p >= 0 && s !== root) kids[fill[p]++] = s;
  }
  // Children were filled in slot order; when that is id order there is nothing to sort or compare.
  for (let p = 0; p < count && !slotsInIdOrder; p++) {
    const from = childStart[p];
    const to = childStart[p + 1];
    if (to - from < 2) continue;
    let sorted = true;
    for (let k = from + 1; k < to && sorted; k++) if (ids[kids[k - 1]] > ids[kids[k]]) sorted = false;
    if (!sorted) kids.set(Array.from(kids.subarray(from, to)).sort((a, b) => (ids[a] < ids[b] ? -1 : 1)), from);
  }

  const tin = new Int32Array(count).fill(-1);
  const tout = new Int32Array(count);
  const depth = new Int32Array(count);
  const height = new Int32Array(count);
  const order = new Int32Array(present);
  const stackSlot = scratch.subarray(3 * count + 1, 4 * count + 2);
  const stackCursor = scratch.subarray(4 * count + 2, 5 * count + 3);
  let top = 0;
  let next = 0;
  tin[root] = next;
  order[next++] = root;
  depth[root] = height[root] = 1;
  stackSlot[0] = root;
  stackCursor[0] = childStart[root];
  top = 1;
  while (top > 0) {
    const s = stackSlot[top - 1];
    const cursor = stackCursor[top - 1];
    if (cursor < childStart[s + 1]) {
      stackCursor[top - 1] = cursor + 1;
      const c = kids[cursor];
      if (next >= present) throw new Error(`node ${ids[c]} is reachable twice (a cycle)`);
      tin[c] = next;
      order[next++] = c;
      depth[c] = height[c] = depth[s] + 1;
      stackSlot[top] = c;
      stackCursor[top] = childStart[c];
      top++;
      continue;
    }
    top--;
    tout[s] = next;
    if (top > 0) {
      const p = stackSlot[top - 1];
      if (height[s] > height[p]) height[p] = height[s];
    }
  }
  if (next !== present) throw new Error(`${present - next} node(s) are not reachable from the root (orphans or a cycle)`);
  return { tin, tout, depth, height, order };
}
