import { MAX_IDEMPOTENCY_KEY_LENGTH } from "../domain/validate.js";
import type { RestRoute } from "./router.js";
import { REST_PREFIX } from "./router.js";
import { components, ref, type Schema } from "./schemas.js";

const REASON: Record<number, string> = {
  400: "malformed request: the message and `field` name what is wrong",
  401: "no API key, or an invalid, revoked or expired one",
  403: "the key lacks the scope, or belongs to another environment",
  404: "an id in the path or body does not exist in this environment",
  405: "method not supported on this path",
  409: "conflicts with existing data (e.g. rbac.assignment_conflict)",
  413: "body or item count over a limit",
  415: "body is not JSON",
  422: "well-formed but refused by a rule (schema, cycle, in use, inactive identity, …)",
  503: "storage unavailable or replica behind min_revision; retry",
};

/**
 * The OpenAPI 3.1 document of the /api/v1 surface, generated from the route table (the same schemas
 * validate request bodies at runtime), served at /api/v1/openapi.json.
 */
export function openApiDocument(routes: RestRoute[], version: string): Schema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = REST_PREFIX + r.path;
    const pathParams = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: "path", required: true, schema: { type: "string" } }));
    const queryParams = Object.entries(r.query ?? {}).map(([name, q]) => ({
      name,
      in: "query",
      required: false,
      description: q.description,
      schema: { type: q.type, ...(q.enum ? { enum: q.enum } : {}), ...(q.minimum !== undefined ? { minimum: q.minimum } : {}) },
    }));
    const headerParams =
      r.operationId === "bulkCreateAssignments"
        ? [{ name: "Idempotency-Key", in: "header", required: false, description: "replays the first response of the same request for 24 h; a different request with the key is 422 idempotency.key_reused", schema: { type: "string", maxLength: MAX_IDEMPOTENCY_KEY_LENGTH } }]
        : [];
    const responses: Record<string, unknown> = {};
    for (const [status, res] of Object.entries(r.responses)) {
      responses[status] = { description: res.description, ...(res.schema ? { content: { "application/json": { schema: res.schema } } } : {}) };
    }
    for (const status of r.errors) {
      if (!responses[status]) responses[status] = { description: REASON[status] ?? "error", content: { "application/json": { schema: ref("Error") } } };
    }
    (paths[path] ??= {})[r.method.toLowerCase()] = {
      operationId: r.operationId,
      summary: r.summary,
      tags: [r.tag],
      ...(r.rpc ? { description: `Adapts \`${r.rpc.service}/${r.rpc.method}\` (same rules, same scope).` } : { security: [] }),
      parameters: [...pathParams, ...queryParams, ...headerParams],
      ...(r.body ? { requestBody: { required: r.bodyRequired !== false, content: { "application/json": { schema: r.body } } } } : {}),
      responses,
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Canopy REST API",
      version,
      description:
        "JSON surface of Canopy, the hierarchical RBAC service, on the same port as gRPC and Connect. Authenticate with the X-API-Key header (or Authorization: Bearer). Writes return the environment revision in the canopy-revision header; reads accept min_revision. Errors are {error:{statusCode, code, message, field?}}.",
    },
    servers: [{ url: "/" }],
    security: [{ apiKey: [] }, { bearer: [] }],
    tags: ["Assignments", "Evaluation", "Hierarchy", "Nodes", "Permissions", "Roles", "Identities", "Meta"].map((name) => ({ name })),
    paths,
    components: {
      schemas: components,
      securitySchemes: {
        apiKey: { type: "apiKey", in: "header", name: "X-API-Key" },
        bearer: { type: "http", scheme: "bearer" },
      },
    },
  };
}
