import type { AccessModel, Environment, HierarchyNode, HierarchySchema, JsonObject } from "./model.js";
import type { EnvironmentContext } from "./auth.js";
import type { Runtime } from "./runtime.js";
import type { Closure, TreeNode } from "../engine/index.js";
import { CycleError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from "./errors.js";
import { newId } from "./ids.js";
import {
  checkMetadata,
  numberedPageRequest,
  numberedSlice,
  offsetPage,
  optionalText,
  pageRequest,
  readNumberedPage,
  requireId,
  requireText,
  requireTypeName,
  toPage,
  type NumberedPage,
  type NumberedPageInput,
} from "./validate.js";

/** A node as the API returns it: the stored node plus its depth (root = 1). */
export type NodeView = HierarchyNode & { depth: number };

/**
 * The hierarchy of one environment: its schema and access model, and the node tree. Every create and
 * move is validated against the schema and the depth limit before anything is written; a schema
 * change that would invalidate an existing node is refused. Each change rebuilds the closure and
 * swaps it in (engine.applyNodes) after the commit.
 */
export class HierarchyService {
  constructor(private readonly rt: Runtime) {}

  getSchema(ctx: EnvironmentContext): { accessModel: AccessModel; schema: HierarchySchema | null; rootNodeId: string; revision: number } {
    const env = this.rt.environment(ctx.environment.id);
    return { accessModel: env.accessModel, schema: env.schema, rootNodeId: env.rootNodeId, revision: this.rt.engine.revision(env.id) };
  }

  /** Sets (or with null removes) the schema; refused when an existing node would violate it. */
  async updateSchema(ctx: EnvironmentContext, schema: HierarchySchema | null): Promise<{ schema: HierarchySchema | null; revision: number }> {
    const normalized = schema === null ? null : this.validateSchema(schema);
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const env = this.rt.environment(envId);
      const closure = this.rt.engine.closure(envId);
      let rootType: string | undefined;
      if (normalized) {
        if (normalized.rootNodeType) rootType = normalized.rootNodeType;
        this.validateTree(closure, normalized, rootType);
      }
      await tx.updateEnvironment(envId, { schema: normalized });
      // The root's type follows the schema's root_node_type (the root is never created by a client).
      const rootChanged = rootType !== undefined && rootType !== closure.type(env.rootNodeId);
      if (rootChanged) await tx.updateNode(env.rootNodeId, { type: rootType, updatedAt: this.rt.clock.now() });
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => {
        this.rt.environment(envId).schema = normalized;
        if (rootChanged) this.rt.applyNodes(envId, { upsert: [{ id: env.rootNodeId, parentId: null, type: rootType! }] });
      });
      return { schema: normalized, revision };
    });
  }

  /** Switching to flat is refused while the tree has nodes other than the root. */
  async setAccessModel(ctx: EnvironmentContext, model: AccessModel): Promise<{ accessModel: AccessModel; revision: number }> {
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const closure = this.rt.engine.closure(envId);
      if (model === "flat" && closure.size > 1) {
        throw new FailedPreconditionError(
          `the hierarchy has ${closure.size - 1} node(s) besides the root; delete them before switching to the flat access model`,
          "access_model",
          "hierarchy.not_flat",
        );
      }
      await tx.updateEnvironment(envId, { accessModel: model });
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => {
        this.rt.environment(envId).accessModel = model;
      });
      return { accessModel: model, revision };
    });
  }

  async createNode(
    ctx: EnvironmentContext,
    input: { parentId: string; type: string; name: string; externalId: string; metadata?: JsonObject },
  ): Promise<{ node: NodeView; revision: number }> {
    const parentId = requireId(input.parentId, "parent_id");
    const type = requireTypeName(input.type, "type");
    const name = requireText(input.name, "name");
    const externalId = optionalText(input.externalId, "external_id") || null;
    const metadata = checkMetadata(input.metadata, "metadata", this.rt.limits);
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const env = this.rt.environment(envId);
      if (env.accessModel === "flat") {
        throw new FailedPreconditionError("the environment uses the flat access model: only the root exists; call SetAccessModel(HIERARCHY) first", "parent_id", "hierarchy.flat");
      }
      const closure = this.rt.engine.closure(envId);
      if (!closure.has(parentId)) throw new NotFoundError("node", parentId, "parent_id");
      const depth = closure.depth(parentId) + 1;
      this.checkPlacement(env, closure.type(parentId)!, type, depth, "type");
      const now = this.rt.clock.now();
      const node: HierarchyNode = { id: newId(), environmentId: envId, parentId, type, name, externalId, metadata, createdAt: now, updatedAt: now };
      await tx.insertNode(node);
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => this.rt.applyNodes(envId, { upsert: [{ id: node.id, parentId, type }] }));
      return { node: { ...node, depth }, revision };
    });
  }

  async getNode(ctx: EnvironmentContext, id: string): Promise<NodeView> {
    requireId(id, "id");
    const node = await this.rt.store.reader.getNode(ctx.environment.id, id);
    if (!node) throw new NotFoundError("node", id, "id");
    return this.view(ctx.environment.id, node);
  }

  async updateNode(
    ctx: EnvironmentContext,
    id: string,
    patch: { name?: string; externalId?: string; metadata?: JsonObject },
  ): Promise<{ node: NodeView; revision: number }> {
    requireId(id, "id");
    const name = patch.name === undefined ? undefined : requireText(patch.name, "name");
    const externalId = patch.externalId === undefined ? undefined : optionalText(patch.externalId, "external_id") || null;
    const metadata = patch.metadata === undefined ? undefined : checkMetadata(patch.metadata, "metadata", this.rt.limits);
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const current = await tx.getNode(envId, id);
      if (!current) throw new NotFoundError("node", id, "id");
      const updatedAt = this.rt.clock.now();
      await tx.updateNode(id, { name, externalId, metadata, updatedAt });
      const revision = await this.rt.bump(tx, effects, envId);
      const node = {
        ...current,
        name: name ?? current.name,
        externalId: externalId === undefined ? current.externalId : externalId,
        metadata: metadata ?? current.metadata,
        updatedAt,
      };
      return { node: this.view(envId, node), revision };
    });
  }

  /** Moves a node (with its subtree) under a new parent; cycles and schema violations are refused. */
  async moveNode(ctx: EnvironmentContext, id: string, newParentId: string): Promise<{ node: NodeView; revision: number }> {
    requireId(id, "id");
    requireId(newParentId, "new_parent_id");
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const env = this.rt.environment(envId);
      const closure = this.rt.engine.closure(envId);
      if (!closure.has(id)) throw new NotFoundError("node", id, "id");
      if (id === env.rootNodeId) throw new FailedPreconditionError("the root node cannot be moved", "id", "hierarchy.root");
      if (!closure.has(newParentId)) throw new NotFoundError("node", newParentId, "new_parent_id");
      if (closure.isAncestorOrSelf(id, newParentId)) throw new CycleError(id, newParentId);
      const type = closure.type(id)!;
      const newDepth = closure.depth(newParentId) + 1;
      const deepest = newDepth + closure.subtreeMaxDepth(id) - closure.depth(id);
      this.checkPlacement(env, closure.type(newParentId)!, type, newDepth, "new_parent_id", deepest);
      const updatedAt = this.rt.clock.now();
      await tx.updateNode(id, { parentId: newParentId, updatedAt });
      const node = await tx.getNode(envId, id);
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => this.rt.applyNodes(envId, { upsert: [{ id, parentId: newParentId, type }] }));
      return { node: { ...node!, depth: newDepth }, revision };
    });
  }

  /** Deletes a node; one with descendants or assignments is refused unless `cascade` removes them too. */
  async deleteNode(ctx: EnvironmentContext, id: string, cascade: boolean): Promise<{ deletedNodes: number; deletedAssignments: number; revision: number }> {
    requireId(id, "id");
    const envId = ctx.environment.id;
    return this.rt.writeIn(envId, async (tx, effects) => {
      const env = this.rt.environment(envId);
      const closure = this.rt.engine.closure(envId);
      if (!closure.has(id)) throw new NotFoundError("node", id, "id");
      if (id === env.rootNodeId) throw new FailedPreconditionError("the root node cannot be deleted", "id", "hierarchy.root");
      const subtree = closure.subtree(id);
      const assignments = await tx.countAssignmentsOnNodes(envId, subtree);
      if (!cascade && (subtree.length > 1 || assignments > 0)) {
        throw new FailedPreconditionError(
          `node ${id} has ${subtree.length - 1} descendant(s) and ${assignments} assignment(s) in its subtree; pass cascade = true to delete them too`,
          "cascade",
          "hierarchy.node_in_use",
        );
      }
      const removed = assignments > 0 ? await tx.deleteAssignmentsOnNodes(envId, subtree) : [];
      await tx.deleteNodes(envId, subtree);
      const revision = await this.rt.bump(tx, effects, envId);
      effects.push(() => {
        for (const a of removed) this.rt.engine.removeAssignment(envId, a);
        this.rt.applyNodes(envId, { remove: subtree });
      });
      return { deletedNodes: subtree.length, deletedAssignments: removed.length, revision };
    });
  }

  async listChildren(ctx: EnvironmentContext, id: string, pageSize: number, pageToken: string): Promise<{ items: NodeView[]; nextPageToken: string }> {
    requireId(id, "id");
    const page = pageRequest(pageSize, pageToken, this.rt.limits);
    const { envId, closure } = this.existing(ctx, id);
    const rows = await this.rt.store.reader.listChildren(envId, id, { limit: page.pageSize + 1, afterId: page.afterId });
    const p = toPage(rows, page);
    return { items: this.atDepth(p.items, closure.depth(id) + 1), nextPageToken: p.nextPageToken };
  }

  /** listChildren as a numbered page with the node's child count. */
  async listChildrenNumbered(ctx: EnvironmentContext, id: string, page: NumberedPageInput): Promise<NumberedPage<NodeView>> {
    requireId(id, "id");
    const req = numberedPageRequest(page, this.rt.limits);
    const { envId, closure } = this.existing(ctx, id);
    const p = await readNumberedPage(
      this.rt.store,
      req,
      (reader, window) => reader.listChildren(envId, id, window),
      (reader) => reader.countChildren(envId, id),
    );
    return { ...p, items: this.atDepth(p.items, closure.depth(id) + 1) };
  }

  /** Ancestors root first, excluding the node itself. */
  async getAncestors(ctx: EnvironmentContext, id: string): Promise<NodeView[]> {
    requireId(id, "id");
    const { envId, closure } = this.existing(ctx, id);
    return this.load(envId, closure.ancestors(id), closure);
  }

  /** The node's subtree in pre-order, `maxLevels` below it (0 = all), paged; an aborted `signal` stops before the query. */
  async getSubtree(ctx: EnvironmentContext, id: string, maxLevels: number, pageSize: number, pageToken: string, signal?: AbortSignal): Promise<{ items: NodeView[]; nextPageToken: string }> {
    requireId(id, "id");
    const { envId, closure } = this.existing(ctx, id);
    const page = offsetPage(closure.subtree(id, maxLevels), pageSize, pageToken, this.rt.limits);
    signal?.throwIfAborted();
    return { items: await this.load(envId, page.items, closure), nextPageToken: page.nextPageToken };
  }

  /** getSubtree as a numbered page; the count is the subtree's size (within `maxLevels`), from the closure. */
  async getSubtreeNumbered(ctx: EnvironmentContext, id: string, maxLevels: number, page: NumberedPageInput): Promise<NumberedPage<NodeView>> {
    requireId(id, "id");
    const { envId, closure } = this.existing(ctx, id);
    const p = numberedSlice(closure.subtree(id, maxLevels), numberedPageRequest(page, this.rt.limits));
    return { ...p, items: await this.load(envId, p.items, closure) };
  }

  /** The environment's closure, which holds node `id` (else NOT_FOUND naming `id`). */
  private existing(ctx: EnvironmentContext, id: string): { envId: string; closure: Closure } {
    const envId = ctx.environment.id;
    const closure = this.rt.engine.closure(envId);
    if (!closure.has(id)) throw new NotFoundError("node", id, "id");
    return { envId, closure };
  }

  private atDepth(nodes: HierarchyNode[], depth: number): NodeView[] {
    return nodes.map((n) => ({ ...n, depth }));
  }

  private async load(envId: string, ids: string[], closure: Closure): Promise<NodeView[]> {
    const rows = await this.rt.store.reader.getNodesByIds(envId, ids);
    const byId = new Map(rows.map((n) => [n.id, n]));
    return ids.filter((i) => byId.has(i)).map((i) => ({ ...byId.get(i)!, depth: closure.depth(i) }));
  }

  private view(envId: string, node: HierarchyNode): NodeView {
    return { ...node, depth: this.rt.engine.closure(envId).depth(node.id) };
  }

  /** Checks one placement: known type, allowed under the parent's type, within max depth. */
  private checkPlacement(env: Environment, parentType: string, type: string, depth: number, field: string, deepest = depth): void {
    const schema = env.schema;
    const maxDepth = schema && schema.maxDepth > 0 ? Math.min(schema.maxDepth, this.rt.limits.maxDepth) : this.rt.limits.maxDepth;
    if (schema) {
      if (!schema.nodeTypes.includes(type)) {
        throw new InvalidArgumentError("type", `${JSON.stringify(type)} is not a node type of the hierarchy schema (${schema.nodeTypes.join(", ")})`, "hierarchy.unknown_type");
      }
      const allowed = schema.allowedChildren[parentType] ?? [];
      if (!allowed.includes(type)) {
        throw new FailedPreconditionError(
          `the hierarchy schema does not allow a ${JSON.stringify(type)} node under a ${JSON.stringify(parentType)} node${allowed.length ? ` (allowed: ${allowed.join(", ")})` : " (it is a leaf type)"}`,
          field,
          "hierarchy.schema_violation",
        );
      }
    }
    if (deepest > maxDepth) {
      throw new FailedPreconditionError(`this would place a node at depth ${deepest}; the maximum depth is ${maxDepth} (root = 1)`, field, "hierarchy.too_deep");
    }
  }

  /** Normalises and checks a schema for internal consistency (INVALID_ARGUMENT naming the field). */
  private validateSchema(s: HierarchySchema): HierarchySchema {
    const nodeTypes = [...s.nodeTypes];
    if (nodeTypes.length === 0) throw new InvalidArgumentError("schema.node_types", "must list at least one node type");
    nodeTypes.forEach((t, i) => {
      requireTypeName(t, `schema.node_types[${i}]`);
      const first = nodeTypes.indexOf(t);
      if (first !== i) throw new InvalidArgumentError(`schema.node_types[${i}]`, `${JSON.stringify(t)} repeats schema.node_types[${first}]`);
    });
    const known = new Set(nodeTypes);
    const allowedChildren: Record<string, string[]> = {};
    for (const [parent, children] of Object.entries(s.allowedChildren)) {
      if (!known.has(parent)) throw new InvalidArgumentError(`schema.allowed_children[${JSON.stringify(parent)}]`, `${JSON.stringify(parent)} is not listed in node_types`);
      children.forEach((c, i) => {
        if (!known.has(c)) throw new InvalidArgumentError(`schema.allowed_children[${JSON.stringify(parent)}].types[${i}]`, `${JSON.stringify(c)} is not listed in node_types`);
      });
      allowedChildren[parent] = [...new Set(children)];
    }
    if (s.rootNodeType && !known.has(s.rootNodeType)) throw new InvalidArgumentError("schema.root_node_type", `${JSON.stringify(s.rootNodeType)} is not listed in node_types`);
    if (!Number.isInteger(s.maxDepth) || s.maxDepth < 0 || s.maxDepth > this.rt.limits.maxDepth) {
      throw new InvalidArgumentError("schema.max_depth", `must be between 0 (server limit) and ${this.rt.limits.maxDepth}`);
    }
    return { nodeTypes, allowedChildren, maxDepth: s.maxDepth, rootNodeType: s.rootNodeType };
  }

  /** Every existing non-root node must satisfy the schema; the first that does not is named. */
  private validateTree(closure: Closure, schema: HierarchySchema, rootType: string | undefined): void {
    const env = { schema } as Environment;
    const nodes: TreeNode[] = closure.nodes();
    const typeOf = new Map(nodes.map((n) => [n.id, n.type]));
    if (rootType !== undefined) typeOf.set(closure.rootId, rootType);
    for (const n of nodes) {
      if (n.parentId === null) continue;
      try {
        this.checkPlacement(env, typeOf.get(n.parentId)!, n.type, closure.depth(n.id), "schema");
      } catch (err) {
        throw new FailedPreconditionError(
          `the new schema would invalidate node ${n.id}: ${(err as Error).message}`,
          "schema",
          "hierarchy.schema_conflict",
        );
      }
    }
  }
}
