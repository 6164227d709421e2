import { DENIAL_REASONS } from "../engine/index.js";

/**
 * JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of the REST surface: request bodies are validated
 * against them at runtime (unknown fields refused) and the OpenAPI document is built from them, so the
 * document cannot drift from what the server accepts. Response shapes are the named components
 * below; the e2e tests validate real responses against them.
 */
export type Schema = { [k: string]: unknown };

const str = (description: string, extra: Schema = {}): Schema => ({ type: "string", description, ...extra });
const id = (description: string): Schema => str(description, { minLength: 1 });
const time = (description: string): Schema => ({ type: "string", format: "date-time", description });
const nullable = (s: Schema): Schema => ({ ...s, type: [s.type as string, "null"] });
const int = (description: string, extra: Schema = {}): Schema => ({ type: "integer", description, ...extra });
const bool = (description: string): Schema => ({ type: "boolean", description });
const arrayOf = (items: Schema, description: string, extra: Schema = {}): Schema => ({ type: "array", items, description, ...extra });
const metadata: Schema = { type: "object", description: "free-form JSON object (at most CANOPY_MAX_METADATA_BYTES serialized)" };

/** An object schema: every listed property allowed, `required` ones required, nothing else. */
export function object(properties: Record<string, Schema>, required: string[] = [], description = ""): Schema {
  return { type: "object", ...(description ? { description } : {}), properties, required, additionalProperties: false };
}

export const ref = (name: keyof typeof components): Schema => ({ $ref: `#/components/schemas/${name}` });

const status = str("lifecycle state computed at response time from the half-open window [effective_from, effective_to)", { enum: ["scheduled", "active", "expired"] });

export const components = {
  Assignment: object(
    {
      id: id("assignment id"),
      identity_id: id("identity holding the role"),
      role_id: id("role granted"),
      node_id: id("node the grant sits on; it cascades to every descendant"),
      effective_from: time("start of the window (inclusive)"),
      effective_to: nullable(time("end of the window (exclusive); null = never")),
      status,
      created_at: time("creation time"),
      updated_at: time("last change"),
    },
    ["id", "identity_id", "role_id", "node_id", "effective_from", "effective_to", "status", "created_at", "updated_at"],
  ),
  Node: object(
    {
      id: id("node id"),
      parent_id: nullable(str("parent node; null for the root")),
      type: str("node type"),
      name: str("display name"),
      external_id: nullable(str("caller's own id for the node")),
      metadata,
      depth: int("depth in the tree; the root is 1", { minimum: 1 }),
      created_at: time("creation time"),
      updated_at: time("last change"),
    },
    ["id", "parent_id", "type", "name", "external_id", "metadata", "depth", "created_at", "updated_at"],
  ),
  Permission: object(
    {
      id: id("permission id"),
      key: str("`resource.action` key, immutable"),
      description: str("free text"),
      category: str("grouping label"),
      created_at: time("creation time"),
      updated_at: time("last change"),
    },
    ["id", "key", "description", "category", "created_at", "updated_at"],
  ),
  Role: object(
    {
      id: id("role id"),
      name: str("unique name in the environment"),
      description: str("free text"),
      permission_keys: arrayOf(str("permission key"), "the role's permissions, sorted"),
      created_at: time("creation time"),
      updated_at: time("last change"),
    },
    ["id", "name", "description", "permission_keys", "created_at", "updated_at"],
  ),
  Identity: object(
    {
      id: id("identity id"),
      email: str("unique per account"),
      display_name: str("display name"),
      external_id: nullable(str("caller's own id (e.g. from an HR system)")),
      metadata,
      is_active: bool("inactive identities are denied every check"),
      created_at: time("creation time"),
      updated_at: time("last change"),
    },
    ["id", "email", "display_name", "external_id", "metadata", "is_active", "created_at", "updated_at"],
  ),
  Membership: object(
    {
      identity_id: id("identity"),
      application_id: id("application"),
      status: str("an inactive membership denies every check in the application's environments", { enum: ["active", "inactive"] }),
      created_at: time("creation time"),
      updated_at: time("last change"),
    },
    ["identity_id", "application_id", "status", "created_at", "updated_at"],
  ),
  HierarchySchema: object(
    {
      node_types: arrayOf(str("type name"), "allowed node types"),
      allowed_children: { type: "object", additionalProperties: arrayOf(str("type name"), "child types"), description: "type → allowed child types; absent or [] = leaf" },
      max_depth: int("deepest level (root = 1); 0 = only the server limit", { minimum: 0 }),
      root_node_type: str("type of the root node; empty = any"),
    },
    [],
    "constrains node types, parent/child pairs and depth",
  ),
  HierarchyInfo: object(
    {
      access_model: str("flat keeps only the root node", { enum: ["flat", "hierarchy"] }),
      schema: { oneOf: [{ $ref: "#/components/schemas/HierarchySchema" }, { type: "null" }] },
      root_node_id: id("the root node"),
      revision: int("environment revision"),
    },
    ["access_model", "schema", "root_node_id", "revision"],
  ),
  Evaluation: object(
    {
      allowed: bool("the decision"),
      identity_id: str("identity asked about"),
      permission: str("permission asked about (echoed)"),
      scope_evaluated: str("scope the answer covers", { enum: ["node", "app_wide"] }),
      effective_node_id: nullable(str("node the decision was made at (node scope) or where a grant was found (app_wide)")),
      granting_roles: arrayOf(object({ role_id: id("role"), role_name: str("its name") }, ["role_id", "role_name"]), "roles that grant the permission"),
      denial_reason: {
        type: ["string", "null"],
        enum: [...DENIAL_REASONS, null],
        description: "why it was denied; null when allowed",
      },
      explanation: arrayOf(
        object(
          {
            assignment_id: id("granting assignment"),
            role_id: id("its role"),
            node_id: id("the node it sits on (where it was inherited from)"),
            inherited: bool("true when it sits on an ancestor"),
            effective_from: time("window start"),
            effective_to: nullable(time("window end")),
          },
          ["assignment_id", "role_id", "node_id", "inherited", "effective_from", "effective_to"],
        ),
        "with explain = true: the granting assignments",
      ),
      revision: int("environment revision the answer was computed at"),
      evaluated_at: time("instant evaluated"),
    },
    ["allowed", "identity_id", "permission", "scope_evaluated", "effective_node_id", "granting_roles", "denial_reason", "revision", "evaluated_at"],
  ),
  Pagination: object(
    {
      page: int("this page (1-based)", { minimum: 1 }),
      take: int("items per page", { minimum: 1 }),
      item_count: int("items matching in all pages", { minimum: 0 }),
      page_count: int("pages in all; 0 when nothing matches", { minimum: 0 }),
      has_previous_page: bool("page > 1"),
      has_next_page: bool("page < page_count"),
    },
    ["page", "take", "item_count", "page_count", "has_previous_page", "has_next_page"],
  ),
  BulkSummary: object(
    { total: int("items in the request", { minimum: 0 }), succeeded: int("items that succeeded", { minimum: 0 }), failed: int("items that failed", { minimum: 0 }) },
    ["total", "succeeded", "failed"],
  ),
  ItemError: object(
    { statusCode: int("HTTP status this item alone would have had"), code: str("stable dotted code"), message: str("names the field or id at fault"), field: str("the request field at fault") },
    ["statusCode", "code", "message"],
  ),
  Error: object(
    {
      error: object(
        { statusCode: int("HTTP status"), code: str("stable dotted code, e.g. rbac.assignment_conflict"), message: str("names the field or id at fault"), field: str("the request field at fault, when one is") },
        ["statusCode", "code", "message"],
      ),
    },
    ["error"],
  ),
} satisfies Record<string, Schema>;

/** A page of `item`s: the seed product's collection envelope. */
export const collection = (item: Schema): Schema => object({ items: arrayOf(item, "this page"), pagination: ref("Pagination") }, ["items", "pagination"]);

/** An unpaged list (bounded by nature, e.g. ancestors). */
export const list = (item: Schema): Schema => object({ items: arrayOf(item, "every item") }, ["items"]);

/** An item echoed as sent: its request schema without `format` (a malformed timestamp fails only its item, which is echoed unchanged). */
function asSent(s: Schema): Schema {
  const { format: _format, ...rest } = s;
  if (rest.properties) rest.properties = Object.fromEntries(Object.entries(rest.properties as Record<string, Schema>).map(([k, v]) => [k, asSent(v)]));
  return rest;
}

/** A bulk response: 200 when every item succeeded, 207 when any failed. */
export function bulkResult(data: Schema, input: Schema): Schema {
  const success = object({ index: int("0-based position in the request", { minimum: 0 }), status: { const: "success" }, code: int("HTTP status of this item"), data }, ["index", "status", "code", "data"]);
  const failure = object(
    { index: int("0-based position in the request", { minimum: 0 }), status: { const: "error" }, code: int("HTTP status of this item"), input: asSent(input), error: ref("ItemError") },
    ["index", "status", "code", "input", "error"],
  );
  return object(
    { summary: ref("BulkSummary"), results: arrayOf({ oneOf: [success, failure] }, "one per item, in request order"), revision: int("environment revision after the call"), replayed: bool("true when answered from an earlier call with the same Idempotency-Key") },
    ["summary", "results", "revision"],
  );
}

/** An atomic bulk call that failed: nothing written; the error envelope plus every item's outcome. */
export function atomicFailure(bulk: Schema): Schema {
  const props = (bulk as { properties: Record<string, Schema> }).properties;
  return object({ error: (components.Error as { properties: Record<string, Schema> }).properties.error, summary: props.summary, results: props.results, revision: props.revision, replayed: props.replayed }, ["error", "summary", "results", "revision"]);
}

// ---- request bodies (validated at runtime)

export const assignmentInput = object(
  {
    identity_id: id("identity to grant the role to (active, with an active membership)"),
    node_id: str("node the grant sits on; may be omitted (or empty) in the flat access model = the root"),
    role_id: id("role to grant"),
    effective_from: time("start (inclusive); default: now"),
    effective_to: nullable(time("end (exclusive); absent or null: never")),
  },
  ["identity_id", "role_id"],
);

export const checkInput = object(
  {
    identity_id: str("identity asked about"),
    permission: str("permission key"),
    scope: str("node (default): at node_id and via its ancestors; app_wide: anywhere in the tree (UI gating), node_id forbidden", { enum: ["node", "app_wide"] }),
    node_id: str("required for scope node (except in the flat model, where it defaults to the root); forbidden for app_wide"),
  },
  ["identity_id", "permission"],
);

export const evaluationOptions: Record<string, Schema> = {
  at: time("evaluate at this instant instead of now"),
  explain: bool("include the granting assignments"),
  min_revision: int("wait (bounded) until this replica has reached this revision, else 503", { minimum: 0 }),
};

export const identityInput = object(
  { email: str("unique per account"), display_name: str("display name"), external_id: str("caller's own id"), metadata },
  ["email"],
);

export const schemaInput = components.HierarchySchema;

export { metadata, str, id, time, int, bool, arrayOf, nullable };
