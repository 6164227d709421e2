/**
 * The OpenAPI 3.1 document served at /api/v1/openapi.json, as a document: its shape, that it and
 * docs/REST.md's operations table adapt the same gRPC methods, that every request body schema refuses
 * unknown fields at every level, and that the seed documents' example bodies are valid requests
 * according to it. (rest.test.ts validates every response against it and proves each documented
 * status is produced.)
 */
import { readFileSync } from "node:fs";
import { Ajv2020 } from "ajv/dist/2020.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKEND, backendReady, startTestServer, type TestServer } from "./harness.js";
import { API, createRestClient, fetchOpenApi, OpenApiRecorder, SEED_BULK, SEED_SINGLE } from "./rest-support.js";

/** False on a PostgreSQL run whose server is down (locally: skip; under CI=true backendReady throws). */
const ready = await backendReady();

type Json = Record<string, unknown>;
type Operation = { operationId: string; summary: string; tags: string[]; description?: string; security?: unknown[]; requestBody?: { content: Record<string, { schema: Json }> }; responses: Record<string, { content?: Record<string, { schema: Json }> }> };

describe.skipIf(!ready)(`OpenAPI document (${BACKEND})`, () => {
  let s: TestServer;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let doc: any;
  let operations: Array<{ method: string; path: string; op: Operation }>;

  beforeAll(async () => {
    s = await startTestServer();
    const served = await fetchOpenApi(s.url);
    doc = served.doc;
    new OpenApiRecorder(doc).check("GET", `${s.url}${API}/openapi.json`, served.response.status, served.response.headers, served.response.text);
    operations = Object.entries(doc.paths as Record<string, Record<string, Operation>>).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ method, path, op })));
  });

  afterAll(async () => {
    await s?.close();
  });

  it("is OpenAPI 3.1 of this package's version, served without a key, with unique operation ids", async () => {
    const version = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
    expect([doc.openapi, doc.info.version]).toEqual(["3.1.0", version]);
    expect(doc.components.securitySchemes.apiKey).toEqual({ type: "apiKey", in: "header", name: "X-API-Key" });
    expect(operations.length).toBe(43);
    expect(new Set(operations.map((o) => o.op.operationId)).size).toBe(operations.length);
    for (const { path, op } of operations) {
      expect(path.startsWith(`${API}/`), path).toBe(true);
      expect(op.summary.length, op.operationId).toBeGreaterThan(0);
      expect(op.tags, op.operationId).toHaveLength(1);
    }
    // the document itself needs no key; every other operation does
    expect(operations.filter((o) => o.op.security !== undefined).map((o) => o.op.operationId)).toEqual(["getOpenApiDocument"]);
    const res = await fetch(`${s.url}${API}/openapi.json`, { headers: { "x-api-key": "cnpy_wrong" } });
    expect(res.status).toBe(200);
  });

  it("every error status is answered with the error envelope (the atomic bulk failure adds its results)", () => {
    for (const { op } of operations) {
      for (const [status, response] of Object.entries(op.responses)) {
        if (Number(status) < 400) continue;
        const schema = response.content?.["application/json"]?.schema;
        const atomic = op.operationId === "bulkCreateAssignments" && status === "422";
        expect(atomic ? (schema?.oneOf as Json[]).at(-1) : schema, `${op.operationId} ${status}`).toEqual({ $ref: "#/components/schemas/Error" });
      }
    }
  });

  it("adapts exactly the gRPC methods docs/REST.md's operations table names", () => {
    const md = readFileSync(new URL("../../docs/REST.md", import.meta.url), "utf8");
    const table = md.slice(md.indexOf("## Operations"), md.indexOf("## Bulk results"));
    const documented = new Set<string>();
    for (const line of table.split("\n")) {
      const cells = line.split("|").map((c) => c.trim());
      if (cells.length < 4 || !cells[1].includes("/api/v1/")) continue;
      for (const [name] of cells[2].matchAll(/\b[A-Z][A-Za-z]+\b/g)) documented.add(name);
    }
    const adapted = new Set(operations.flatMap((o) => [...(o.op.description ?? "").matchAll(/`canopy\.v1\.\w+\/(\w+)`/g)].map((m) => m[1])));
    expect([...adapted].sort()).toEqual([...documented].sort());
    expect(adapted.size).toBeGreaterThan(35);
  });

  it("request bodies refuse unknown fields at every level (free-form metadata aside)", () => {
    const open: string[] = [];
    const walk = (schema: Json, where: string) => {
      if (schema.type === "object" && schema.properties) {
        if (schema.additionalProperties !== false) open.push(where);
        for (const [k, v] of Object.entries(schema.properties as Record<string, Json>)) walk(v, `${where}.${k}`);
      } else if (schema.type === "object" && !String(schema.description ?? "").startsWith("free-form")) {
        if (schema.additionalProperties === undefined) open.push(where);
        else if (typeof schema.additionalProperties === "object") walk(schema.additionalProperties as Json, `${where}.*`);
      }
      if (schema.items) walk(schema.items as Json, `${where}[]`);
      for (const alt of [...((schema.oneOf as Json[]) ?? []), ...((schema.anyOf as Json[]) ?? [])]) walk(alt, where);
      if (typeof schema.$ref === "string") walk(doc.components.schemas[schema.$ref.split("/").pop()!], where);
    };
    let bodies = 0;
    for (const { op } of operations) {
      const schema = op.requestBody?.content["application/json"].schema;
      if (!schema) continue;
      bodies++;
      walk(schema, op.operationId);
    }
    expect(bodies).toBe(22);
    expect(open).toEqual([]);
  });

  it("the seed documents' example bodies are valid requests as they stand", async () => {
    const ajv = new Ajv2020({ strict: false, logger: false });
    ajv.addSchema(doc, "openapi");
    const body = (path: string) => ajv.compile({ $ref: `openapi#/paths/${encodeURIComponent(`${API}${path}`.replace(/\//g, "~1"))}/post/requestBody/content/application~1json/schema` });
    const single = body("/assignments");
    const bulk = body("/assignments/bulk-create");
    expect(single(JSON.parse(SEED_SINGLE)), JSON.stringify(single.errors)).toBe(true);
    expect(bulk(JSON.parse(SEED_BULK)), JSON.stringify(bulk.errors)).toBe(true);
    // …and the schemas are not vacuous
    expect(single({ ...JSON.parse(SEED_SINGLE), colour: "red" })).toBe(false);
    expect(bulk({ assignments: [{ node_id: "n", role_id: "r" }] })).toBe(false);

    // the server accepts them as well: sent verbatim with the example ids (which name nothing here), they fail per item, not as requests
    const api = createRestClient(s.url, new OpenApiRecorder(doc), s.devKey);
    const res = await api.call("POST", "/assignments/bulk-create", { raw: SEED_BULK });
    expect(res.status).toBe(207);
    expect(res.body.results.map((r: { code: number; error: { code: string } }) => [r.code, r.error.code])).toEqual([
      [404, "identities.identity_not_found"],
      [404, "identities.identity_not_found"],
    ]);
    const one = await api.call("POST", "/assignments", { raw: SEED_SINGLE });
    expect([one.status, one.body.error.code]).toEqual([404, "identities.identity_not_found"]);
  });
});
