import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "./harness.js";

describe("harness", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s.close());

  it.each(["connect-h1", "connect-h2", "grpc"] as const)("answers GetHierarchySchema over %s with the bootstrap development key", async (protocol) => {
    const res = await s.clients(s.devKey, { protocol }).hierarchy.getHierarchySchema({});
    expect(res.rootNodeId).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.revision).toBeGreaterThan(0n);
  });
});
