import type { Canopy } from "../domain/canopy.js";
import type { AssignmentInput, ItemResult } from "../domain/assignment-service.js";
import type { NumberedPage } from "../domain/validate.js";
import { DomainError, GRPC_CODE } from "../domain/errors.js";
import { AssignmentService } from "../gen/canopy/v1/assignment_pb.js";
import { CatalogService } from "../gen/canopy/v1/catalog_pb.js";
import { CheckService } from "../gen/canopy/v1/check_pb.js";
import { HierarchyService } from "../gen/canopy/v1/hierarchy_pb.js";
import { IdentityService } from "../gen/canopy/v1/identity_pb.js";
import { itemError, renameField } from "./errors.js";
import {
  assignmentJson,
  evaluationJson,
  identityJson,
  membershipJson,
  nodeJson,
  optionalTime,
  parseTime,
  permissionJson,
  roleJson,
  schemaFromJson,
  schemaJson,
} from "./json.js";
import type { QueryParam, Reply, RestRoute, RouteContext } from "./router.js";
import {
  arrayOf,
  assignmentInput,
  atomicFailure,
  bool,
  bulkResult,
  checkInput,
  collection,
  evaluationOptions,
  id,
  identityInput,
  int,
  list,
  metadata,
  nullable,
  object,
  ref,
  schemaInput,
  str,
  time,
  type Schema,
} from "./schemas.js";

const A = AssignmentService.typeName;
const C = CheckService.typeName;
const H = HierarchyService.typeName;
const K = CatalogService.typeName;
const I = IdentityService.typeName;

const minRevision: Record<string, QueryParam> = {
  min_revision: { type: "integer", description: "wait (bounded by CANOPY_REVISION_WAIT_MS) until this replica has reached this revision, else 503" },
};
const paging: Record<string, QueryParam> = {
  page: { type: "integer", description: "1-based page number (default 1; 0 = the default)", minimum: 0 },
  take: { type: "integer", description: "items per page (default CANOPY_DEFAULT_PAGE_SIZE, at most CANOPY_MAX_PAGE_SIZE; 0 = the default)", minimum: 0 },
  ...minRevision,
};
const cascade: Record<string, QueryParam> = { cascade: { type: "boolean", description: "also delete what depends on it instead of refusing (422)" } };

const READ_ERRORS = [400, 401, 403, 404, 503];
const WRITE_ERRORS = [400, 401, 403, 404, 413, 415, 422, 503];
/** Writes that no rule can refuse once the body is well-formed (no 422 path in their domain method). */
const PLAIN_WRITE_ERRORS = [400, 401, 403, 404, 413, 415, 503];

/** Re-reports domain errors against the REST body's names (`assignment.role_id` → `role_id`). */
async function renamed<T>(from: string, to: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw err instanceof DomainError ? renameField(err, from, to) : err;
  }
}

const rename = (field: string, from: string, to: string): string => (field.startsWith(from) ? to + field.slice(from.length) : field);

function paged<T, U>(p: NumberedPage<T>, map: (t: T) => U) {
  const pageCount = Math.ceil(p.itemCount / p.take);
  return {
    items: p.items.map(map),
    pagination: { page: p.page, take: p.take, item_count: p.itemCount, page_count: pageCount, has_previous_page: p.page > 1, has_next_page: p.page < pageCount },
  };
}

const pageOf = (ctx: RouteContext) => ({ page: (ctx.query.page as number | undefined) ?? 0, take: (ctx.query.take as number | undefined) ?? 0 });

/** One bulk item in the seed's shape: `{index, status, code, data}` or `{index, status, code, input, error}`. */
function bulkItem(index: number, okStatus: number, input: unknown, outcome: { data: unknown } | { error: ReturnType<typeof itemError> }) {
  if ("data" in outcome) return { index, status: "success", code: okStatus, data: outcome.data };
  return { index, status: "error", code: outcome.error.statusCode, input, error: outcome.error };
}

/** 200 when every item succeeded, 207 Multi-Status when any failed (partial success is the norm). */
const bulkStatus = (failed: number): number => (failed === 0 ? 200 : 207);

/** A bulk item's status renamed to the REST body's array (`items[3].role_id` → `assignments[3].role_id`). */
function itemErrorIn(status: ItemResult["status"], array: string) {
  const e = itemError(status);
  if (e.field) {
    const field = rename(e.field, "items", array);
    return { ...e, field, message: e.message.startsWith(`${e.field}:`) ? field + e.message.slice(e.field.length) : e.message };
  }
  return e;
}

function assignmentInputOf(body: Record<string, string | null | undefined>, prefix: string): AssignmentInput {
  return {
    identityId: body.identity_id ?? "",
    roleId: body.role_id ?? "",
    nodeId: body.node_id ?? "",
    effectiveFrom: body.effective_from == null ? null : parseTime(body.effective_from, `${prefix}effective_from`),
    effectiveTo: body.effective_to == null ? null : parseTime(body.effective_to, `${prefix}effective_to`),
  };
}

const checkItemOf = (b: { identity_id: string; permission: string; scope?: "node" | "app_wide"; node_id?: string }) => ({
  identityId: b.identity_id,
  permission: b.permission,
  scope: b.scope ?? "node",
  nodeId: b.node_id ?? "",
});

const checkOptionsOf = (ctx: RouteContext) => ({
  at: optionalTime(ctx.body.at, "at") ?? null,
  explain: ctx.body.explain === true,
  minRevision: ctx.body.min_revision ?? 0,
  signal: ctx.signal,
});

/** Every /api/v1 operation. Each adapts one gRPC method (its scope applies) and calls its domain service. */
export function restRoutes(canopy: Canopy, openapi: () => unknown): RestRoute[] {
  const now = () => canopy.runtime.clock.now();
  const limits = canopy.runtime.limits;
  const ok = (body: unknown, revision?: number): Reply => ({ status: 200, body, revision });
  const created = (body: unknown, revision: number): Reply => ({ status: 201, body, revision });

  const assignmentBulk = bulkResult(ref("Assignment"), assignmentInput);
  const idBulk = bulkResult(object({ id: id("deleted assignment") }, ["id"]), object({ id: str("requested id") }, ["id"]));
  const identityBulk = bulkResult(ref("Identity"), identityInput);
  const deletedCounts = (names: string[]): Schema => object(Object.fromEntries(names.map((n) => [n, int(`${n.replace(/_/g, " ")}`, { minimum: 0 })])), names);

  return [
    // ---------------------------------------------------------------- assignments
    {
      method: "POST",
      path: "/assignments",
      operationId: "createAssignment",
      summary: "Assign a role to an identity at a node (optionally time-bound)",
      tag: "Assignments",
      rpc: { service: A, method: "CreateAssignment" },
      body: assignmentInput,
      responses: { 201: { description: "the created assignment with its lifecycle status", schema: ref("Assignment") } },
      errors: [...WRITE_ERRORS, 409],
      async handle(ctx) {
        // a duplicate names the whole gRPC message ("assignment"); docs/REST.md reports it against role_id
        const r = await renamed("assignment", "role_id", () =>
          renamed("assignment.", "", async () => canopy.assignments.createAssignment(await ctx.environment(), assignmentInputOf(ctx.body, ""))),
        );
        return created(assignmentJson(r.assignment, now()), r.revision);
      },
    },
    {
      method: "POST",
      path: "/assignments/bulk-create",
      operationId: "bulkCreateAssignments",
      summary: "Create many assignments; each item succeeds or fails on its own unless atomic",
      tag: "Assignments",
      rpc: { service: A, method: "BatchCreateAssignments" },
      query: { atomic: { type: "boolean", description: "all-or-nothing (same as the body's atomic)" } },
      body: object(
        { assignments: arrayOf(assignmentInput, `the items (at most CANOPY_MAX_BATCH_ITEMS, default ${limits.maxBatchItems})`), atomic: bool("all-or-nothing: any failed item writes nothing (422)") },
        ["assignments"],
      ),
      responses: {
        200: { description: "every item succeeded", schema: assignmentBulk },
        207: { description: "at least one item failed; the others were written", schema: assignmentBulk },
        422: {
          description: "atomic: an item failed and nothing was written (items not at fault are 424); or the Idempotency-Key was used for another request (error only)",
          schema: { oneOf: [atomicFailure(assignmentBulk), ref("Error")] },
        },
      },
      errors: WRITE_ERRORS,
      async handle(ctx) {
        const items: Array<Record<string, string | undefined>> = ctx.body.assignments;
        const inputs = items.map((item, k): AssignmentInput => {
          try {
            return assignmentInputOf(item, `items[${k}].`);
          } catch (err) {
            if (!(err instanceof DomainError)) throw err;
            return { identityId: item.identity_id ?? "", roleId: item.role_id ?? "", nodeId: item.node_id ?? "", effectiveFrom: null, effectiveTo: null, error: err };
          }
        });
        const atomic = ctx.query.atomic === true || ctx.body.atomic === true;
        const key = ctx.header("idempotency-key") ?? "";
        const r = await renamed("items", "assignments", async () => canopy.assignments.batchCreate(await ctx.environment(), inputs, atomic, key));
        const t = now();
        const body: Record<string, unknown> = {
          summary: r.summary,
          results: r.results.map((x) =>
            bulkItem(x.index, 201, items[x.index], x.status.code === 0 ? { data: assignmentJson(x.assignment!, t) } : { error: itemErrorIn(x.status, "assignments") }),
          ),
          revision: r.revision,
          replayed: r.replayed,
        };
        const headers = r.replayed ? { "idempotent-replayed": "true" } : undefined;
        if (atomic && r.summary.failed > 0) {
          const first = r.results.find((x) => x.status.code !== 0 && x.status.reason !== "batch.aborted") ?? r.results.find((x) => x.status.code !== 0)!;
          const e = itemErrorIn(first.status, "assignments");
          body.error = { statusCode: 422, code: "rbac.bulk_atomic_failed", message: `atomic batch: nothing was written because item ${first.index} failed (${e.code}: ${e.message})`, field: e.field ?? `assignments[${first.index}]` };
          return { status: 422, body, revision: r.revision, headers };
        }
        return { status: bulkStatus(r.summary.failed), body, revision: r.revision, headers };
      },
    },
    {
      method: "POST",
      path: "/assignments/bulk-remove",
      operationId: "bulkRemoveAssignments",
      summary: "Delete many assignments by id; each id succeeds or fails on its own",
      tag: "Assignments",
      rpc: { service: A, method: "BatchDeleteAssignments" },
      body: object({ ids: arrayOf(str("assignment id"), `ids (at most ${limits.maxBatchItems})`) }, ["ids"]),
      responses: {
        200: { description: "every id was deleted", schema: idBulk },
        207: { description: "at least one id failed (e.g. not found); the others were deleted", schema: idBulk },
      },
      errors: PLAIN_WRITE_ERRORS,
      async handle(ctx) {
        const ids: string[] = ctx.body.ids;
        const r = await renamed("items", "ids", async () => canopy.assignments.batchDelete(await ctx.environment(), ids));
        const results = r.results.map((x) => bulkItem(x.index, 200, { id: ids[x.index] }, x.status.code === 0 ? { data: { id: ids[x.index] } } : { error: itemErrorIn(x.status, "ids") }));
        return { status: bulkStatus(r.summary.failed), body: { summary: r.summary, results, revision: r.revision }, revision: r.revision };
      },
    },
    {
      method: "GET",
      path: "/assignments",
      operationId: "listAssignments",
      summary: "List assignments, filtered and paged",
      tag: "Assignments",
      rpc: { service: A, method: "ListAssignments" },
      query: {
        identity_id: { type: "string", description: "only this identity's" },
        node_id: { type: "string", description: "only those sitting on this node (not inherited ones)" },
        role_id: { type: "string", description: "only this role's" },
        status: { type: "string", description: "lifecycle status now", enum: ["scheduled", "active", "expired"] },
        ...paging,
      },
      responses: { 200: { description: "a page of assignments in creation order", schema: collection(ref("Assignment")) } },
      errors: READ_ERRORS,
      async handle(ctx) {
        const q = ctx.query as Record<string, string | undefined>;
        const p = await canopy.assignments.listAssignmentsNumbered(
          await ctx.environment(),
          { identityId: q.identity_id ?? "", nodeId: q.node_id ?? "", roleId: q.role_id ?? "", state: q.status as "scheduled" | "active" | "expired" | undefined },
          pageOf(ctx),
        );
        const t = now();
        return ok(paged(p, (a) => assignmentJson(a, t)));
      },
    },
    {
      method: "GET",
      path: "/assignments/{id}",
      operationId: "getAssignment",
      summary: "Get one assignment",
      tag: "Assignments",
      rpc: { service: A, method: "GetAssignment" },
      query: minRevision,
      responses: { 200: { description: "the assignment", schema: ref("Assignment") } },
      errors: READ_ERRORS,
      async handle(ctx) {
        return ok(assignmentJson(await canopy.assignments.getAssignment(await ctx.environment(), ctx.params.id), now()));
      },
    },
    {
      method: "PATCH",
      path: "/assignments/{id}",
      operationId: "updateAssignment",
      summary: "Change an assignment's role or window (effective_to: null = never expires)",
      tag: "Assignments",
      rpc: { service: A, method: "UpdateAssignment" },
      body: object({ role_id: id("new role"), effective_from: time("new start"), effective_to: nullable(time("new end; null = never")) }),
      responses: { 200: { description: "the updated assignment", schema: ref("Assignment") } },
      errors: [...PLAIN_WRITE_ERRORS, 409],
      async handle(ctx) {
        const b = ctx.body as { role_id?: string; effective_from?: string; effective_to?: string | null };
        const r = await canopy.assignments.updateAssignment(await ctx.environment(), ctx.params.id, {
          roleId: b.role_id,
          effectiveFrom: b.effective_from === undefined ? undefined : parseTime(b.effective_from, "effective_from"),
          effectiveTo: b.effective_to === undefined || b.effective_to === null ? undefined : parseTime(b.effective_to, "effective_to"),
          clearEffectiveTo: b.effective_to === null,
        });
        return ok(assignmentJson(r.assignment, now()), r.revision);
      },
    },
    {
      method: "DELETE",
      path: "/assignments/{id}",
      operationId: "deleteAssignment",
      summary: "Delete an assignment",
      tag: "Assignments",
      rpc: { service: A, method: "DeleteAssignment" },
      responses: { 204: { description: "deleted (the canopy-revision header carries the new revision)" } },
      errors: [400, 401, 403, 404, 503],
      async handle(ctx) {
        return { status: 204, revision: await canopy.assignments.deleteAssignment(await ctx.environment(), ctx.params.id) };
      },
    },

    // ---------------------------------------------------------------- evaluation
    {
      method: "POST",
      path: "/permissions/evaluate",
      operationId: "evaluatePermission",
      summary: "May this identity use this permission at this node (or anywhere: app_wide)?",
      tag: "Evaluation",
      rpc: { service: C, method: "Check" },
      body: object({ ...(checkInput.properties as Record<string, Schema>), ...evaluationOptions }, ["identity_id", "permission"]),
      responses: { 200: { description: "the decision (a well-formed request about unknown ids is a denial, not an error)", schema: ref("Evaluation") } },
      errors: [400, 401, 403, 413, 415, 503],
      async handle(ctx) {
        const r = await canopy.checks.check(await ctx.environment(), checkItemOf(ctx.body), checkOptionsOf(ctx));
        return ok(evaluationJson(r, ctx.body.explain === true));
      },
    },
    {
      method: "POST",
      path: "/permissions/bulk-evaluate",
      operationId: "bulkEvaluatePermissions",
      summary: "Many evaluations at one instant from one state, results in request order",
      tag: "Evaluation",
      rpc: { service: C, method: "CheckBulk" },
      body: object({ checks: arrayOf(checkInput, `the checks (at most CANOPY_MAX_CHECK_BULK, default ${limits.maxCheckBulk})`), ...evaluationOptions }, ["checks"]),
      responses: { 200: { description: "one decision per check", schema: object({ results: arrayOf(ref("Evaluation"), "in request order"), revision: int("revision evaluated at") }, ["results", "revision"]) } },
      errors: [400, 401, 403, 413, 415, 503],
      async handle(ctx) {
        const checks = (ctx.body.checks as Parameters<typeof checkItemOf>[0][]).map(checkItemOf);
        const r = await renamed("items", "checks", async () => canopy.checks.checkBulk(await ctx.environment(), checks, checkOptionsOf(ctx)));
        const explain = ctx.body.explain === true;
        return ok({ results: r.results.map((x) => evaluationJson(x, explain)), revision: r.revision });
      },
    },

    // ---------------------------------------------------------------- hierarchy
    {
      method: "GET",
      path: "/hierarchy/schema",
      operationId: "getHierarchySchema",
      summary: "The access model, schema and root node",
      tag: "Hierarchy",
      rpc: { service: H, method: "GetHierarchySchema" },
      query: minRevision,
      responses: { 200: { description: "the environment's hierarchy settings", schema: ref("HierarchyInfo") } },
      errors: READ_ERRORS,
      async handle(ctx) {
        const s = canopy.hierarchy.getSchema(await ctx.environment());
        return ok({ access_model: s.accessModel, schema: schemaJson(s.schema), root_node_id: s.rootNodeId, revision: s.revision });
      },
    },
    {
      method: "PUT",
      path: "/hierarchy/schema",
      operationId: "updateHierarchySchema",
      summary: "Set (or with null remove) the schema; refused when an existing node would violate it",
      tag: "Hierarchy",
      rpc: { service: H, method: "UpdateHierarchySchema" },
      body: object({ schema: { oneOf: [schemaInput, { type: "null" }] } }, ["schema"]),
      responses: { 200: { description: "the schema now in force", schema: object({ schema: { oneOf: [ref("HierarchySchema"), { type: "null" }] }, revision: int("new revision") }, ["schema", "revision"]) } },
      errors: WRITE_ERRORS,
      async handle(ctx) {
        const r = await canopy.hierarchy.updateSchema(await ctx.environment(), schemaFromJson(ctx.body.schema));
        return ok({ schema: schemaJson(r.schema), revision: r.revision }, r.revision);
      },
    },
    {
      method: "PUT",
      path: "/hierarchy/access-model",
      operationId: "setAccessModel",
      summary: "Switch between flat (root only) and hierarchy",
      tag: "Hierarchy",
      rpc: { service: H, method: "SetAccessModel" },
      body: object({ access_model: str("the model", { enum: ["flat", "hierarchy"] }) }, ["access_model"]),
      responses: { 200: { description: "the model now in force", schema: object({ access_model: str("the model", { enum: ["flat", "hierarchy"] }), revision: int("new revision") }, ["access_model", "revision"]) } },
      errors: WRITE_ERRORS,
      async handle(ctx) {
        const r = await canopy.hierarchy.setAccessModel(await ctx.environment(), ctx.body.access_model);
        return ok({ access_model: r.accessModel, revision: r.revision }, r.revision);
      },
    },
    {
      method: "POST",
      path: "/nodes",
      operationId: "createNode",
      summary: "Create a node under a parent (validated against the schema first)",
      tag: "Nodes",
      rpc: { service: H, method: "CreateNode" },
      body: object({ parent_id: id("parent node"), type: str("node type"), name: str("display name"), external_id: str("caller's own id"), metadata }, ["parent_id", "type", "name"]),
      responses: { 201: { description: "the created node", schema: ref("Node") } },
      errors: WRITE_ERRORS,
      async handle(ctx) {
        const b = ctx.body;
        const r = await canopy.hierarchy.createNode(await ctx.environment(), { parentId: b.parent_id, type: b.type, name: b.name, externalId: b.external_id ?? "", metadata: b.metadata });
        return created(nodeJson(r.node), r.revision);
      },
    },
    {
      method: "GET",
      path: "/nodes/{id}",
      operationId: "getNode",
      summary: "Get one node",
      tag: "Nodes",
      rpc: { service: H, method: "GetNode" },
      query: minRevision,
      responses: { 200: { description: "the node", schema: ref("Node") } },
      errors: READ_ERRORS,
      async handle(ctx) {
        return ok(nodeJson(await canopy.hierarchy.getNode(await ctx.environment(), ctx.params.id)));
      },
    },
    {
      method: "PATCH",
      path: "/nodes/{id}",
      operationId: "updateNode",
      summary: "Rename a node or change its external id / metadata",
      tag: "Nodes",
      rpc: { service: H, method: "UpdateNode" },
      body: object({ name: str("display name"), external_id: str("caller's own id"), metadata }),
      responses: { 200: { description: "the updated node", schema: ref("Node") } },
      errors: PLAIN_WRITE_ERRORS,
      async handle(ctx) {
        const b = ctx.body;
        const r = await canopy.hierarchy.updateNode(await ctx.environment(), ctx.params.id, { name: b.name, externalId: b.external_id, metadata: b.metadata });
        return ok(nodeJson(r.node), r.revision);
      },
    },
    {
      method: "POST",
      path: "/nodes/{id}/move",
      operationId: "moveNode",
      summary: "Move a node (and its subtree) under a new parent; cycles and schema violations are refused",
      tag: "Nodes",
      rpc: { service: H, method: "MoveNode" },
      body: object({ new_parent_id: id("the new parent") }, ["new_parent_id"]),
      responses: { 200: { description: "the moved node", schema: ref("Node") } },
      errors: WRITE_ERRORS,
      async handle(ctx) {
        const r = await canopy.hierarchy.moveNode(await ctx.environment(), ctx.params.id, ctx.body.new_parent_id);
        return ok(nodeJson(r.node), r.revision);
      },
    },
    {
      method: "DELETE",
      path: "/nodes/{id}",
      operationId: "deleteNode",
      summary: "Delete a node; with cascade=true also its subtree and every assignment on it",
      tag: "Nodes",
      rpc: { service: H, method: "DeleteNode" },
      query: cascade,
      responses: { 200: { description: "what was deleted", schema: deletedCounts(["deleted_nodes", "deleted_assignments"]) } },
      errors: [400, 401, 403, 404, 422, 503],
      async handle(ctx) {
        const r = await canopy.hierarchy.deleteNode(await ctx.environment(), ctx.params.id, ctx.query.cascade === true);
        return ok({ deleted_nodes: r.deletedNodes, deleted_assignments: r.deletedAssignments }, r.revision);
      },
    },
    {
      method: "GET",
      path: "/nodes/{id}/children",
      operationId: "listChildren",
      summary: "The node's children, paged",
      tag: "Nodes",
      rpc: { service: H, method: "ListChildren" },
      query: paging,
      responses: { 200: { description: "a page of children in creation order", schema: collection(ref("Node")) } },
      errors: READ_ERRORS,
      async handle(ctx) {
        return ok(paged(await canopy.hierarchy.listChildrenNumbered(await ctx.environment(), ctx.params.id, pageOf(ctx)), nodeJson));
      },
    },
    {
      method: "GET",
      path: "/nodes/{id}/ancestors",
      operationId: "getAncestors",
      summary: "The node's ancestors from the root down (not paged: bounded by the depth limit)",
      tag: "Nodes",
      rpc: { service: H, method: "GetAncestors" },
      query: minRevision,
      responses: { 200: { description: "root first, parent last", schema: list(ref("Node")) } },
      errors: READ_ERRORS,
      async handle(ctx) {
        return ok({ items: (await canopy.hierarchy.getAncestors(await ctx.environment(), ctx.params.id)).map(nodeJson) });
      },
    },
    {
      method: "GET",
      path: "/nodes/{id}/subtree",
      operationId: "getSubtree",
      summary: "The node and its descendants in depth-first order, paged",
      tag: "Nodes",
      rpc: { service: H, method: "GetSubtree" },
      query: { max_depth: { type: "integer", description: "levels below the node to include (0 = all)" }, ...paging },
      responses: { 200: { description: "a page of the subtree", schema: collection(ref("Node")) } },
      errors: READ_ERRORS,
      async handle(ctx) {
        const p = await canopy.hierarchy.getSubtreeNumbered(await ctx.environment(), ctx.params.id, (ctx.query.max_depth as number | undefined) ?? 0, pageOf(ctx));
        return ok(paged(p, nodeJson));
      },
    },

    // ---------------------------------------------------------------- permissions and roles
    {
      method: "POST",
      path: "/permissions",
      operationId: "createPermission",
      summary: "Create a permission (`resource.action` key)",
      tag: "Permissions",
      rpc: { service: K, method: "BatchCreatePermissions" },
      body: object({ key: str("lowercase resource.action"), description: str("free text"), category: str("grouping label") }, ["key"]),
      responses: { 201: { description: "the created permission", schema: ref("Permission") } },
      errors: [...PLAIN_WRITE_ERRORS, 409],
      async handle(ctx) {
        const b = ctx.body;
        const r = await renamed("permissions[0].", "", async () =>
          canopy.catalog.batchCreatePermissions(await ctx.environment(), [{ key: b.key, description: b.description ?? "", category: b.category ?? "" }]),
        );
        return created(permissionJson(r.permissions[0]), r.revision);
      },
    },
    {
      method: "POST",
      path: "/permissions/batch-create",
      operationId: "batchCreatePermissions",
      summary: "Create several permissions at once (all or nothing)",
      tag: "Permissions",
      rpc: { service: K, method: "BatchCreatePermissions" },
      body: object({ permissions: arrayOf(object({ key: str("lowercase resource.action"), description: str("free text"), category: str("grouping label") }, ["key"]), "the permissions") }, ["permissions"]),
      responses: { 201: { description: "the created permissions, in request order", schema: list(ref("Permission")) } },
      errors: [...PLAIN_WRITE_ERRORS, 409],
      async handle(ctx) {
        const inputs = (ctx.body.permissions as Array<{ key: string; description?: string; category?: string }>).map((p) => ({ key: p.key, description: p.description ?? "", category: p.category ?? "" }));
        const r = await canopy.catalog.batchCreatePermissions(await ctx.environment(), inputs);
        return created({ items: r.permissions.map(permissionJson) }, r.revision);
      },
    },
    {
      method: "GET",
      path: "/permissions",
      operationId: "listPermissions",
      summary: "List the permission catalog, paged",
      tag: "Permissions",
      rpc: { service: K, method: "ListPermissions" },
      query: { category: { type: "string", description: "only this category" }, ...paging },
      responses: { 200: { description: "a page of permissions", schema: collection(ref("Permission")) } },
      errors: READ_ERRORS,
      async handle(ctx) {
        return ok(paged(await canopy.catalog.listPermissionsNumbered(await ctx.environment(), (ctx.query.category as string | undefined) ?? "", pageOf(ctx)), permissionJson));
      },
    },
    {
      method: "PATCH",
      path: "/permissions/{id}",
      operationId: "updatePermission",
      summary: "Change a permission's description or category (the key is immutable)",
      tag: "Permissions",
      rpc: { service: K, method: "UpdatePermission" },
      body: object({ description: str("free text"), category: str("grouping label"), key: str("must equal the current key (keys are immutable)") }),
      responses: { 200: { description: "the updated permission", schema: ref("Permission") } },
      errors: PLAIN_WRITE_ERRORS,
      async handle(ctx) {
        const b = ctx.body;
        const r = await canopy.catalog.updatePermission(await ctx.environment(), ctx.params.id, { description: b.description, category: b.category, key: b.key });
        return ok(permissionJson(r.permission), r.revision);
      },
    },
    {
      method: "DELETE",
      path: "/permissions/{id}",
      operationId: "deletePermission",
      summary: "Delete a permission (it leaves every role)",
      tag: "Permissions",
      rpc: { service: K, method: "DeletePermission" },
      responses: { 204: { description: "deleted" } },
      errors: [400, 401, 403, 404, 503],
      async handle(ctx) {
        return { status: 204, revision: await canopy.catalog.deletePermission(await ctx.environment(), ctx.params.id) };
      },
    },
    {
      method: "POST",
      path: "/roles",
      operationId: "createRole",
      summary: "Create a role bundling permissions",
      tag: "Roles",
      rpc: { service: K, method: "CreateRole" },
      body: object({ name: str("unique in the environment"), description: str("free text"), permission_keys: arrayOf(str("permission key"), "its permissions") }, ["name"]),
      responses: { 201: { description: "the created role", schema: ref("Role") } },
      errors: [...PLAIN_WRITE_ERRORS, 409],
      async handle(ctx) {
        const b = ctx.body;
        const r = await canopy.catalog.createRole(await ctx.environment(), { name: b.name, description: b.description ?? "", permissionKeys: b.permission_keys ?? [] });
        return created(roleJson(r.role), r.revision);
      },
    },
    {
      method: "GET",
      path: "/roles",
      operationId: "listRoles",
      summary: "List roles, paged",
      tag: "Roles",
      rpc: { service: K, method: "ListRoles" },
      query: paging,
      responses: { 200: { description: "a page of roles", schema: collection(ref("Role")) } },
      errors: READ_ERRORS,
      async handle(ctx) {
        return ok(paged(await canopy.catalog.listRolesNumbered(await ctx.environment(), pageOf(ctx)), roleJson));
      },
    },
    {
      method: "GET",
      path: "/roles/{id}",
      operationId: "getRole",
      summary: "Get one role",
      tag: "Roles",
      rpc: { service: K, method: "GetRole" },
      query: minRevision,
      responses: { 200: { description: "the role", schema: ref("Role") } },
      errors: READ_ERRORS,
      async handle(ctx) {
        return ok(roleJson(await canopy.catalog.getRole(await ctx.environment(), ctx.params.id)));
      },
    },
    {
      method: "PATCH",
      path: "/roles/{id}",
      operationId: "updateRole",
      summary: "Rename a role or change its description",
      tag: "Roles",
      rpc: { service: K, method: "UpdateRole" },
      body: object({ name: str("new name"), description: str("free text") }),
      responses: { 200: { description: "the updated role", schema: ref("Role") } },
      errors: [...PLAIN_WRITE_ERRORS, 409],
      async handle(ctx) {
        const r = await canopy.catalog.updateRole(await ctx.environment(), ctx.params.id, { name: ctx.body.name, description: ctx.body.description });
        return ok(roleJson(r.role), r.revision);
      },
    },
    {
      method: "PUT",
      path: "/roles/{id}/permissions",
      operationId: "setRolePermissions",
      summary: "Replace a role's permissions (every holder's access changes at once)",
      tag: "Roles",
      rpc: { service: K, method: "SetRolePermissions" },
      body: object({ permission_keys: arrayOf(str("permission key"), "the role's permissions from now on") }, ["permission_keys"]),
      responses: { 200: { description: "the updated role", schema: ref("Role") } },
      errors: PLAIN_WRITE_ERRORS,
      async handle(ctx) {
        const r = await canopy.catalog.setRolePermissions(await ctx.environment(), ctx.params.id, ctx.body.permission_keys);
        return ok(roleJson(r.role), r.revision);
      },
    },
    {
      method: "DELETE",
      path: "/roles/{id}",
      operationId: "deleteRole",
      summary: "Delete a role; with cascade=true also its assignments",
      tag: "Roles",
      rpc: { service: K, method: "DeleteRole" },
      query: cascade,
      responses: { 200: { description: "what was deleted", schema: deletedCounts(["deleted_assignments"]) } },
      errors: [400, 401, 403, 404, 422, 503],
      async handle(ctx) {
        const r = await canopy.catalog.deleteRole(await ctx.environment(), ctx.params.id, ctx.query.cascade === true);
        return ok({ deleted_assignments: r.deletedAssignments }, r.revision);
      },
    },

    // ---------------------------------------------------------------- identities
    {
      method: "POST",
      path: "/identities",
      operationId: "createIdentity",
      summary: "Create an identity (with a membership in the key's application unless skip_membership)",
      tag: "Identities",
      rpc: { service: I, method: "CreateIdentity" },
      body: object({ ...(identityInput.properties as Record<string, Schema>), skip_membership: bool("do not add the membership") }, ["email"]),
      responses: { 201: { description: "the created identity", schema: ref("Identity") } },
      errors: [...PLAIN_WRITE_ERRORS, 409],
      async handle(ctx) {
        const b = ctx.body;
        const r = await renamed("identity.", "", async () =>
          canopy.identities.createIdentity(await ctx.identityScope(), { email: b.email, displayName: b.display_name ?? "", externalId: b.external_id ?? "", metadata: b.metadata }, b.skip_membership === true),
        );
        return created(identityJson(r.identity), r.revision);
      },
    },
    {
      method: "POST",
      path: "/identities/bulk-create",
      operationId: "bulkCreateIdentities",
      summary: "Create many identities; each succeeds or fails on its own",
      tag: "Identities",
      rpc: { service: I, method: "BatchCreateIdentities" },
      body: object({ identities: arrayOf(identityInput, `the identities (at most ${limits.maxBatchItems})`), skip_membership: bool("do not add memberships") }, ["identities"]),
      responses: {
        200: { description: "every identity was created", schema: identityBulk },
        207: { description: "at least one failed; the others were created", schema: identityBulk },
      },
      errors: PLAIN_WRITE_ERRORS,
      async handle(ctx) {
        const items = ctx.body.identities as Array<{ email: string; display_name?: string; external_id?: string; metadata?: Record<string, unknown> }>;
        const r = await canopy.identities.batchCreateIdentities(
          await ctx.identityScope(),
          items.map((b) => ({ email: b.email, displayName: b.display_name ?? "", externalId: b.external_id ?? "", metadata: b.metadata })),
          ctx.body.skip_membership === true,
        );
        const results = r.outcomes.map((o) => {
          if (!o.error) return bulkItem(o.index, 201, items[o.index], { data: identityJson(o.value!) });
          return bulkItem(o.index, 201, items[o.index], { error: itemError({ code: GRPC_CODE[o.error.code], message: o.error.message, field: o.error.field, reason: o.error.reason }) });
        });
        return { status: bulkStatus(r.summary.failed), body: { summary: r.summary, results, revision: r.revision }, revision: r.revision };
      },
    },
    {
      method: "GET",
      path: "/identities",
      operationId: "listIdentities",
      summary: "List identities (an environment key sees its application's members), paged",
      tag: "Identities",
      rpc: { service: I, method: "ListIdentities" },
      query: {
        email: { type: "string", description: "exact email" },
        external_id: { type: "string", description: "exact external id" },
        is_active: { type: "boolean", description: "only active (true) or inactive (false) identities" },
        ...paging,
      },
      responses: { 200: { description: "a page of identities", schema: collection(ref("Identity")) } },
      errors: READ_ERRORS,
      async handle(ctx) {
        const q = ctx.query;
        const p = await canopy.identities.listIdentitiesNumbered(
          await ctx.identityScope(),
          { email: (q.email as string | undefined) ?? "", externalId: (q.external_id as string | undefined) ?? "", isActive: q.is_active as boolean | undefined },
          pageOf(ctx),
        );
        return ok(paged(p, identityJson));
      },
    },
    {
      method: "GET",
      path: "/identities/{id}",
      operationId: "getIdentity",
      summary: "Get one identity",
      tag: "Identities",
      rpc: { service: I, method: "GetIdentity" },
      query: minRevision,
      responses: { 200: { description: "the identity", schema: ref("Identity") } },
      errors: READ_ERRORS,
      async handle(ctx) {
        return ok(identityJson(await canopy.identities.getIdentity(await ctx.identityScope(), ctx.params.id)));
      },
    },
    {
      method: "PATCH",
      path: "/identities/{id}",
      operationId: "updateIdentity",
      summary: "Change an identity's email, names, external id or metadata",
      tag: "Identities",
      rpc: { service: I, method: "UpdateIdentity" },
      body: object(identityInput.properties as Record<string, Schema>),
      responses: { 200: { description: "the updated identity", schema: ref("Identity") } },
      errors: [...PLAIN_WRITE_ERRORS, 409],
      async handle(ctx) {
        const b = ctx.body;
        const r = await canopy.identities.updateIdentity(await ctx.identityScope(), ctx.params.id, { email: b.email, displayName: b.display_name, externalId: b.external_id, metadata: b.metadata });
        return ok(identityJson(r.identity), r.revision);
      },
    },
    ...(["activate", "deactivate"] as const).map(
      (action): RestRoute => ({
        method: "POST",
        path: `/identities/{id}/${action}`,
        operationId: `${action}Identity`,
        summary: action === "activate" ? "Activate an identity (admin key)" : "Deactivate an identity: every check denies it at once (admin key)",
        tag: "Identities",
        rpc: { service: I, method: action === "activate" ? "ActivateIdentity" : "DeactivateIdentity" },
        responses: { 200: { description: "the identity", schema: ref("Identity") } },
        errors: [400, 401, 403, 404, 503],
        async handle(ctx) {
          const r = await canopy.identities.setActive(await ctx.identityScope(), ctx.params.id, action === "activate");
          return ok(identityJson(r.identity), r.revision);
        },
      }),
    ),
    {
      method: "GET",
      path: "/identities/{id}/memberships",
      operationId: "listMemberships",
      summary: "The identity's application memberships",
      tag: "Identities",
      rpc: { service: I, method: "ListAppMemberships" },
      query: minRevision,
      responses: { 200: { description: "every membership", schema: list(ref("Membership")) } },
      errors: READ_ERRORS,
      async handle(ctx) {
        return ok({ items: (await canopy.identities.listMemberships(await ctx.identityScope(), ctx.params.id)).map(membershipJson) });
      },
    },
    {
      method: "POST",
      path: "/identities/{id}/memberships",
      operationId: "addMembership",
      summary: "Add the identity to an application (admin key)",
      tag: "Identities",
      rpc: { service: I, method: "AddAppMembership" },
      body: object({ application_id: id("the application") }, ["application_id"]),
      responses: { 201: { description: "the membership", schema: ref("Membership") } },
      errors: [...PLAIN_WRITE_ERRORS, 409],
      async handle(ctx) {
        const r = await canopy.identities.addMembership(await ctx.identityScope(), ctx.params.id, ctx.body.application_id);
        return created(membershipJson(r.membership), r.revision);
      },
    },
    {
      method: "PUT",
      path: "/identities/{id}/memberships/{application_id}",
      operationId: "setMembershipStatus",
      summary: "Activate or deactivate a membership (admin key)",
      tag: "Identities",
      rpc: { service: I, method: "SetAppMembershipStatus" },
      body: object({ status: str("new status", { enum: ["active", "inactive"] }) }, ["status"]),
      responses: { 200: { description: "the membership", schema: ref("Membership") } },
      errors: PLAIN_WRITE_ERRORS,
      async handle(ctx) {
        const r = await canopy.identities.setMembershipStatus(await ctx.identityScope(), ctx.params.id, ctx.params.application_id, ctx.body.status);
        return ok(membershipJson(r.membership), r.revision);
      },
    },
    {
      method: "DELETE",
      path: "/identities/{id}/memberships/{application_id}",
      operationId: "removeMembership",
      summary: "Remove a membership and the identity's assignments in that application (admin key)",
      tag: "Identities",
      rpc: { service: I, method: "RemoveAppMembership" },
      responses: { 200: { description: "what was deleted", schema: deletedCounts(["deleted_assignments"]) } },
      errors: [400, 401, 403, 404, 503],
      async handle(ctx) {
        const r = await canopy.identities.removeMembership(await ctx.identityScope(), ctx.params.id, ctx.params.application_id);
        return ok({ deleted_assignments: r.deletedAssignments }, r.revision);
      },
    },

    // ---------------------------------------------------------------- the document itself
    {
      method: "GET",
      path: "/openapi.json",
      operationId: "getOpenApiDocument",
      summary: "This API's OpenAPI 3.1 document (no key needed)",
      tag: "Meta",
      rpc: null,
      responses: { 200: { description: "the document", schema: { type: "object" } } },
      errors: [400],
      async handle() {
        return ok(openapi());
      },
    },
  ];
}
