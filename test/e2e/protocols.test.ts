import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendReady, startTestServer, type TestServer } from "./harness.js";

/** False on a PostgreSQL run whose server is down (locally: skip; under CI=true backendReady throws). */
const ready = await backendReady();

describe.skipIf(!ready)("one port, every protocol", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s.close());

  it.each(["connect-h1", "connect-h2", "grpc", "grpc-web"] as const)("answers GetHierarchySchema over %s on the one port", async (protocol) => {
    const res = await s.clients(s.devKey, { protocol }).hierarchy.getHierarchySchema({});
    expect(res.rootNodeId).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.revision).toBeGreaterThan(0n);
  });

  it.each(["connect-h1", "connect-h2", "grpc", "grpc-web"] as const)("maps a domain error to the same code and field over %s", async (protocol) => {
    const err = await s
      .clients(s.devKey, { protocol })
      .catalog.batchCreatePermissions({ permissions: [{ key: "Not A Key" }] })
      .then(() => undefined, (e: unknown) => e as { code: number; rawMessage: string; metadata: Headers });
    expect(err?.code).toBe(3);
    expect(err?.rawMessage).toContain("permissions[0].key");
    expect(err?.metadata.get("canopy-error-field")).toBe("permissions[0].key");
  });
});
