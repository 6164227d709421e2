import { describe, expect, it } from "vitest";
import { Closure, type TreeNode } from "../../src/engine/closure.js";
import { createRng, parentMap, pathToRoot, randomTree } from "../fixtures/random.js";

/**
 * Everything the closure answers, recomputed by walking parent links (the oracle), for every node and
 * every ordered pair of nodes.
 */
function assertMatchesOracle(c: Closure, nodes: TreeNode[], rootId: string): void {
  const parents = parentMap(nodes);
  const ids = nodes.map((n) => n.id);
  const paths = new Map(ids.map((id) => [id, pathToRoot(parents, id)]));
  const depthOf = (id: string) => paths.get(id)!.length;
  const descendants = new Map<string, string[]>(ids.map((id) => [id, []]));
  for (const id of ids) for (const anc of paths.get(id)!.slice(1)) descendants.get(anc)!.push(id);

  expect(c.size).toBe(ids.length);
  expect(c.rootId).toBe(rootId);

  const mismatches: string[] = [];
  for (const id of ids) {
    const path = paths.get(id)!;
    if (!c.has(id)) mismatches.push(`has(${id})`);
    if (c.depth(id) !== path.length) mismatches.push(`depth(${id}) = ${c.depth(id)}, want ${path.length}`);
    const wantAncestors = path.slice(1).reverse();
    if (JSON.stringify(c.ancestors(id)) !== JSON.stringify(wantAncestors)) mismatches.push(`ancestors(${id})`);
    if (c.descendantCount(id) !== descendants.get(id)!.length) mismatches.push(`descendantCount(${id})`);
    const wantMax = Math.max(path.length, ...descendants.get(id)!.map(depthOf));
    if (c.subtreeMaxDepth(id) !== wantMax) mismatches.push(`subtreeMaxDepth(${id}) = ${c.subtreeMaxDepth(id)}, want ${wantMax}`);
    if (c.parentId(id) !== (path.length > 1 ? path[1] : null)) mismatches.push(`parentId(${id})`);
    const sub = c.subtree(id);
    if (sub[0] !== id) mismatches.push(`subtree(${id}) does not start with the node`);
    if (JSON.stringify([...sub].sort()) !== JSON.stringify([id, ...descendants.get(id)!].sort())) mismatches.push(`subtree(${id}) set`);
  }
  // isAncestorOrSelf and slot containment for every ordered pair
  for (const a of ids) {
    for (const n of ids) {
      const want = paths.get(n)!.includes(a);
      if (c.isAncestorOrSelf(a, n) !== want) mismatches.push(`isAncestorOrSelf(${a}, ${n}) = ${!want}`);
      // the engine's form: slots, pre-order positions and the end of the ancestor's subtree
      const sa = c.slotOf(a);
      const pn = c.positionOfSlot(c.slotOf(n));
      const viaSlots = c.positionOfSlot(sa) <= pn && pn < c.subtreeEndOfSlot(sa);
      if (viaSlots !== want) mismatches.push(`slot containment(${a}, ${n})`);
    }
  }
  expect(mismatches.slice(0, 20)).toEqual([]);

  assertPreOrder(c, parents, descendants, rootId);
}

/**
 * The full list is a pre-order iff every node's subtree is the contiguous run starting at it, of length
 * 1 + its descendant count, and every slice answered by subtree(id) is exactly that run.
 */
function assertPreOrder(
  c: Closure,
  parents: Map<string, string | null>,
  descendants: Map<string, string[]>,
  rootId: string,
): void {
  const order = c.subtree(rootId);
  expect(order.length).toBe(parents.size);
  expect(new Set(order).size).toBe(order.length);
  const pos = new Map(order.map((id, i) => [id, i]));
  const bad: string[] = [];
  for (const [id, parent] of parents) {
    const p = pos.get(id)!;
    if (c.positionOf(id) !== p) bad.push(`positionOf(${id})`);
    if (parent !== null && !(pos.get(parent)! < p)) bad.push(`parent of ${id} comes after it`);
    const run = order.slice(p, p + 1 + descendants.get(id)!.length);
    if (JSON.stringify([...run].sort()) !== JSON.stringify([id, ...descendants.get(id)!].sort())) bad.push(`subtree of ${id} is not contiguous`);
    if (JSON.stringify(c.subtree(id)) !== JSON.stringify(run)) bad.push(`subtree(${id}) is not the pre-order slice`);
  }
  expect(bad.slice(0, 20)).toEqual([]);
}

const node = (id: string, parentId: string | null, type = "t"): TreeNode => ({ id, parentId, type });

/** A 5-level tree: root → region → country → office → team. */
const FIVE_LEVEL: TreeNode[] = [
  node("root", null, "root"),
  node("apac", "root", "region"),
  node("eu", "root", "region"),
  node("eu-de", "eu", "country"),
  node("eu-de-ber", "eu-de", "office"),
  node("eu-de-ber-t1", "eu-de-ber", "team"),
  node("eu-de-ber-t2", "eu-de-ber", "team"),
  node("eu-de-muc", "eu-de", "office"),
  node("eu-de-muc-t1", "eu-de-muc", "team"),
  node("eu-fr", "eu", "country"),
  node("eu-fr-par", "eu-fr", "office"),
  node("us", "root", "region"),
  node("us-ny", "us", "country"),
  node("us-ny-nyc", "us-ny", "office"),
  node("us-ny-nyc-t1", "us-ny-nyc", "team"),
];

describe("Closure: 5-level tree", () => {
  // Children listed in reverse and parents after children: the closure must not depend on input order.
  const input = [...FIVE_LEVEL].reverse();
  const c = new Closure(input, "root");

  it("lists every subtree in pre-order (children by id)", () => {
    expect(c.subtree("root")).toEqual([
      "root",
      "apac",
      "eu",
      "eu-de",
      "eu-de-ber",
      "eu-de-ber-t1",
      "eu-de-ber-t2",
      "eu-de-muc",
      "eu-de-muc-t1",
      "eu-fr",
      "eu-fr-par",
      "us",
      "us-ny",
      "us-ny-nyc",
      "us-ny-nyc-t1",
    ]);
    expect(c.subtree("eu")).toEqual([
      "eu",
      "eu-de",
      "eu-de-ber",
      "eu-de-ber-t1",
      "eu-de-ber-t2",
      "eu-de-muc",
      "eu-de-muc-t1",
      "eu-fr",
      "eu-fr-par",
    ]);
    expect(c.subtree("eu-de-muc")).toEqual(["eu-de-muc", "eu-de-muc-t1"]);
    expect(c.subtree("us-ny-nyc-t1")).toEqual(["us-ny-nyc-t1"]);
    expect(c.subtree("apac")).toEqual(["apac"]);
  });

  it("limits subtree to maxLevels below the node (0 = all)", () => {
    expect(c.subtree("eu", 1)).toEqual(["eu", "eu-de", "eu-fr"]);
    expect(c.subtree("eu", 2)).toEqual(["eu", "eu-de", "eu-de-ber", "eu-de-muc", "eu-fr", "eu-fr-par"]);
    expect(c.subtree("root", 1)).toEqual(["root", "apac", "eu", "us"]);
    expect(c.subtree("eu", 0)).toEqual(c.subtree("eu"));
    expect(c.subtree("eu", 99)).toEqual(c.subtree("eu"));
  });

  it("answers ancestors root first, excluding the node", () => {
    expect(c.ancestors("eu-de-ber-t2")).toEqual(["root", "eu", "eu-de", "eu-de-ber"]);
    expect(c.ancestors("us-ny")).toEqual(["root", "us"]);
    expect(c.ancestors("apac")).toEqual(["root"]);
    expect(c.ancestors("root")).toEqual([]);
  });

  it("answers depth (root = 1), subtreeMaxDepth and descendantCount", () => {
    const want: Record<string, [depth: number, maxDepth: number, descendants: number]> = {
      root: [1, 5, 14],
      apac: [2, 2, 0],
      eu: [2, 5, 8],
      "eu-de": [3, 5, 5],
      "eu-de-ber": [4, 5, 2],
      "eu-de-ber-t1": [5, 5, 0],
      "eu-fr": [3, 4, 1],
      "eu-fr-par": [4, 4, 0],
      us: [2, 5, 3],
      "us-ny-nyc": [4, 5, 1],
    };
    for (const [id, [depth, maxDepth, count]] of Object.entries(want)) {
      expect([id, c.depth(id), c.subtreeMaxDepth(id), c.descendantCount(id)]).toEqual([id, depth, maxDepth, count]);
    }
  });

  it("answers isAncestorOrSelf for every pair like the parent walk", () => {
    assertMatchesOracle(c, FIVE_LEVEL, "root");
    expect(c.isAncestorOrSelf("eu", "eu-fr-par")).toBe(true);
    expect(c.isAncestorOrSelf("eu-fr-par", "eu")).toBe(false);
    expect(c.isAncestorOrSelf("eu-de", "eu-fr")).toBe(false);
    expect(c.isAncestorOrSelf("eu-de-ber", "eu-de-ber")).toBe(true);
  });

  it("keeps types and parents and round-trips through nodes()", () => {
    expect(c.type("eu-de-ber")).toBe("office");
    expect(c.type("root")).toBe("root");
    expect(c.parentId("root")).toBeNull();
    expect(c.parentId("eu-fr-par")).toBe("eu-fr");
    const listed = c.nodes();
    expect(listed.map((n) => n.id)).toEqual(c.subtree("root"));
    expect([...listed].sort((a, b) => (a.id < b.id ? -1 : 1))).toEqual([...FIVE_LEVEL].sort((a, b) => (a.id < b.id ? -1 : 1)));
    const again = new Closure(listed, "root");
    expect(again.subtree("root")).toEqual(c.subtree("root"));
  });

  it("answers unknown ids with empty values, never throws", () => {
    expect(c.has("nope")).toBe(false);
    expect(c.positionOf("nope")).toBe(-1);
    expect(c.depth("nope")).toBe(0);
    expect(c.subtreeMaxDepth("nope")).toBe(0);
    expect(c.descendantCount("nope")).toBe(0);
    expect(c.ancestors("nope")).toEqual([]);
    expect(c.subtree("nope")).toEqual([]);
    expect(c.type("nope")).toBeUndefined();
    expect(c.parentId("nope")).toBeUndefined();
    expect(c.isAncestorOrSelf("nope", "eu")).toBe(false);
    expect(c.isAncestorOrSelf("root", "nope")).toBe(false);
    expect(c.isAncestorOrSelf("nope", "nope")).toBe(false);
  });

  it("is not affected by later mutation of its input", () => {
    const nodes = FIVE_LEVEL.map((n) => ({ ...n }));
    const own = new Closure(nodes, "root");
    nodes.find((n) => n.id === "eu-fr")!.parentId = "us";
    nodes.push(node("late", "root"));
    expect(own.ancestors("eu-fr-par")).toEqual(["root", "eu", "eu-fr"]);
    expect(own.has("late")).toBe(false);
    expect(own.size).toBe(15);
  });
});

describe("Closure: wide tree", () => {
  const nodes: TreeNode[] = [node("root", null, "root")];
  for (let i = 0; i < 200; i++) {
    const id = `c${String(i).padStart(3, "0")}`;
    nodes.push(node(id, "root", "child"));
    if (i % 10 === 0) for (let k = 0; k < 5; k++) nodes.push(node(`${id}-g${k}`, id, "grandchild"));
  }
  const c = new Closure(createRng(7).shuffle(nodes), "root");

  it("has every node, the right counts and depths", () => {
    expect(c.size).toBe(1 + 200 + 20 * 5);
    expect(c.descendantCount("root")).toBe(300);
    expect(c.subtreeMaxDepth("root")).toBe(3);
    expect(c.subtreeMaxDepth("c001")).toBe(2);
    expect(c.subtreeMaxDepth("c010")).toBe(3);
    expect(c.descendantCount("c010")).toBe(5);
    expect(c.subtree("c010")).toEqual(["c010", "c010-g0", "c010-g1", "c010-g2", "c010-g3", "c010-g4"]);
    expect(c.subtree("root", 1)).toHaveLength(201);
    expect(c.ancestors("c190-g4")).toEqual(["root", "c190"]);
  });

  it("matches the parent-walk oracle for every node and pair", () => {
    assertMatchesOracle(c, nodes, "root");
  });
});

describe("Closure: random trees", () => {
  it.each([1, 2, 3, 42, 2024])("seed %i: 300 nodes, depth <= 8, matches the oracle", (seed) => {
    const rng = createRng(seed);
    const nodes = randomTree(rng, 300, 8);
    const rootId = nodes[0].id;
    const c = new Closure(rng.shuffle(nodes), rootId);
    assertMatchesOracle(c, nodes, rootId);
    expect(c.subtreeMaxDepth(rootId)).toBeLessThanOrEqual(8);
    expect(c.subtreeMaxDepth(rootId)).toBeGreaterThanOrEqual(5);
  });
});

describe("Closure: deep chain", () => {
  it("builds a 10,000-level chain without recursion limits", () => {
    const n = 10_000;
    const nodes: TreeNode[] = Array.from({ length: n }, (_, i) => node(`d${i}`, i === 0 ? null : `d${i - 1}`));
    const c = new Closure(nodes, "d0");
    expect(c.depth(`d${n - 1}`)).toBe(n);
    expect(c.subtreeMaxDepth("d0")).toBe(n);
    expect(c.subtreeMaxDepth("d5000")).toBe(n);
    expect(c.descendantCount("d0")).toBe(n - 1);
    expect(c.ancestors(`d${n - 1}`)).toHaveLength(n - 1);
    expect(c.ancestors(`d${n - 1}`)[0]).toBe("d0");
    expect(c.isAncestorOrSelf("d0", `d${n - 1}`)).toBe(true);
    expect(c.isAncestorOrSelf(`d${n - 1}`, "d0")).toBe(false);
    expect(c.subtree("d9997")).toEqual(["d9997", "d9998", "d9999"]);
  });
});

describe("Closure: invalid hierarchies", () => {
  const base = [node("root", null), node("a", "root"), node("b", "a")];
  it.each([
    { name: "missing root", nodes: base.slice(1), rootId: "root", error: /root node root is missing/ },
    { name: "root id not among the nodes", nodes: base.slice(1).map((n) => (n.id === "a" ? node("a", "x") : n)), rootId: "other", error: /root node other is missing/ },
    { name: "a parentless node that is not the named root", nodes: base, rootId: "a", error: /node root has no parent but is not the root/ },
    { name: "orphan (parent id not present)", nodes: [...base, node("orphan", "ghost")], rootId: "root", error: /1 node\(s\) are not reachable/ },
    { name: "orphan subtree", nodes: [...base, node("o1", "ghost"), node("o2", "o1")], rootId: "root", error: /2 node\(s\) are not reachable/ },
    {
      name: "cycle of two nodes unreachable from the root",
      nodes: [...base, node("x", "y"), node("y", "x")],
      rootId: "root",
      error: /2 node\(s\) are not reachable/,
    },
    { name: "self-parenting node", nodes: [...base, node("self", "self")], rootId: "root", error: /not reachable/ },
    { name: "second parentless node", nodes: [...base, node("root2", null)], rootId: "root", error: /root2 has no parent/ },
  ])("throws on $name", ({ nodes, rootId, error }) => {
    expect(() => new Closure(nodes, rootId)).toThrow(error);
  });

  it("accepts a lone root", () => {
    const c = new Closure([node("root", null)], "root");
    expect(c.size).toBe(1);
    expect(c.subtree("root")).toEqual(["root"]);
    expect(c.depth("root")).toBe(1);
    expect(c.subtreeMaxDepth("root")).toBe(1);
    expect(c.descendantCount("root")).toBe(0);
  });
});

describe("Closure.withChanges: incremental rebuilds over stable slots", () => {
  /** Same answers as a closure built from scratch over the same node list. */
  function assertSameTree(got: Closure, nodes: Map<string, TreeNode>, rootId: string): void {
    const fresh = new Closure([...nodes.values()], rootId);
    expect(got.size).toBe(fresh.size);
    expect(got.subtree(rootId)).toEqual(fresh.subtree(rootId));
    expect(got.nodes()).toEqual(fresh.nodes());
    const bad: string[] = [];
    for (const id of nodes.keys()) {
      if (got.depth(id) !== fresh.depth(id)) bad.push(`depth(${id})`);
      if (got.subtreeMaxDepth(id) !== fresh.subtreeMaxDepth(id)) bad.push(`subtreeMaxDepth(${id})`);
      if (got.parentId(id) !== fresh.parentId(id)) bad.push(`parentId(${id})`);
      if (got.type(id) !== fresh.type(id)) bad.push(`type(${id})`);
      if (got.idOfSlot(got.slotOf(id)) !== id) bad.push(`slot round trip ${id}`);
    }
    expect(bad.slice(0, 20)).toEqual([]);
    assertMatchesOracle(got, [...nodes.values()], rootId);
  }

  it.each([5, 6, 7])("seed %i: 60 random moves, creates, retypes and subtree removals match a fresh build", (seed) => {
    const rng = createRng(seed);
    const start = randomTree(rng, 120, 7);
    const rootId = start[0].id;
    const nodes = new Map(start.map((n) => [n.id, { ...n }]));
    let c = new Closure(start, rootId);
    let created = 0;
    for (let step = 0; step < 60; step++) {
      const ids = [...nodes.keys()];
      const kind = rng.int(0, 3);
      const before = c;
      const snapshot = before.nodes();
      if (kind === 0) {
        // move a non-root node under a node outside its subtree
        const id = rng.pick(ids.filter((x) => x !== rootId));
        const inside = new Set(c.subtree(id));
        const target = rng.pick(ids.filter((x) => !inside.has(x)));
        nodes.set(id, { ...nodes.get(id)!, parentId: target });
        c = c.withChanges({ upsert: [nodes.get(id)!] });
      } else if (kind === 1) {
        const n = { id: `new${created++}`, parentId: rng.pick(ids), type: "fresh" };
        nodes.set(n.id, n);
        c = c.withChanges({ upsert: [n] });
      } else if (kind === 2) {
        const id = rng.pick(ids);
        nodes.set(id, { ...nodes.get(id)!, type: `re${step}` });
        c = c.withChanges({ upsert: [nodes.get(id)!] });
      } else {
        const id = rng.pick(ids.filter((x) => x !== rootId));
        const gone = c.subtree(id);
        for (const g of gone) nodes.delete(g);
        c = c.withChanges({ remove: gone });
        for (const g of gone) expect(c.has(g)).toBe(false);
      }
      // the closure it was built from answers exactly as before
      expect(before.nodes()).toEqual(snapshot);
      assertSameTree(c, nodes, rootId);
    }
  });

  it("a change that would make a cycle or an orphan throws and leaves the closure as it was", () => {
    const base = [node("root", null), node("a", "root"), node("b", "a"), node("c", "b")];
    const c = new Closure(base, "root");
    expect(() => c.withChanges({ upsert: [node("a", "c")] })).toThrow(/not reachable/);
    expect(() => c.withChanges({ upsert: [node("x", "ghost")] })).toThrow(/1 node\(s\) are not reachable/);
    expect(() => c.withChanges({ remove: ["a"] })).toThrow(/2 node\(s\) are not reachable/);
    expect(() => c.withChanges({ upsert: [node("r2", null)] })).toThrow(/r2 has no parent/);
    expect(c.subtree("root")).toEqual(["root", "a", "b", "c"]);
    expect(c.has("x")).toBe(false);
    // slots given out by the failed builds do not leak into later ones
    const next = c.withChanges({ upsert: [node("d", "root")] });
    expect(next.subtree("root")).toEqual(["root", "a", "b", "c", "d"]);
    expect(next.has("x")).toBe(false);
    expect(next.has("r2")).toBe(false);
  });

  it("a removed node that comes back gets its old slot and its new place", () => {
    const c = new Closure([node("root", null), node("a", "root"), node("b", "root")], "root");
    const slot = c.slotOf("a");
    const without = c.withChanges({ remove: ["a"] });
    expect(without.slotOf("a")).toBe(-1);
    expect(without.positionOfSlot(slot)).toBe(-1);
    const back = without.withChanges({ upsert: [node("a", "b", "moved")] });
    expect(back.slotOf("a")).toBe(slot);
    expect(back.parentId("a")).toBe("b");
    expect(back.type("a")).toBe("moved");
    expect(back.depth("a")).toBe(3);
    // the closures it came from still answer as they did (the type array they may share is not written)
    expect(c.type("a")).toBe("t");
    expect(c.parentId("a")).toBe("root");
    expect(without.type("a")).toBeUndefined();
  });

  it("slotForId gives a slot to an id that is not in the tree without adding it", () => {
    const c = new Closure([node("root", null)], "root");
    const s = c.slotForId("elsewhere");
    expect(c.slotForId("elsewhere")).toBe(s);
    expect(c.positionOfSlot(s)).toBe(-1);
    expect(c.has("elsewhere")).toBe(false);
    const grown = c.withChanges({ upsert: [node("elsewhere", "root")] });
    expect(grown.slotOf("elsewhere")).toBe(s);
    expect(grown.positionOfSlot(s)).toBe(1);
  });
});

describe("Closure: slots in id order skip the child sort", () => {
  it.each([11, 12])("seed %i: a tree listed by id (storage order) numbers exactly like the same tree shuffled, before and after changes", (seed) => {
    const rng = createRng(seed);
    const nodes = randomTree(rng, 400, 7);
    const rootId = nodes[0].id;
    const byId = [...nodes].sort((a, b) => (a.id < b.id ? -1 : 1));
    const ordered = new Closure(byId, rootId);
    const shuffled = new Closure(rng.shuffle(nodes), rootId);
    expect(ordered.nodes()).toEqual(shuffled.nodes());
    // a new id after every existing one keeps the fast path; an id before them falls back to comparing
    const later = { id: "z-last", parentId: rootId, type: "t" };
    const earlier = { id: "a-first", parentId: later.id, type: "t" };
    expect(ordered.withChanges({ upsert: [later] }).nodes()).toEqual(shuffled.withChanges({ upsert: [later] }).nodes());
    const both = ordered.withChanges({ upsert: [later] }).withChanges({ upsert: [earlier] });
    expect(both.nodes()).toEqual(new Closure([...nodes, later, earlier], rootId).nodes());
    const moved = nodes[5];
    expect(both.withChanges({ upsert: [{ ...moved, parentId: "a-first" }] }).subtree(rootId)).toEqual(
      new Closure([...nodes.filter((n) => n !== moved), { ...moved, parentId: "a-first" }, later, earlier], rootId).subtree(rootId),
    );
  });
});
