import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { withPgClient } from "./db.js";
import { backendReady, startTestServer, type TestServer } from "./harness.js";

/**
 * grpc.health.v1 (Check, Watch, List) and the plain HTTP probes /healthz (liveness) and /readyz
 * (readiness): no API key, per-service status, NOT_SERVING while the store does not answer, the runtime
 * is stopped or the server drains, and Watch pushing each change.
 */
const ready = await backendReady();

const CANOPY_SERVICES = [
  "canopy.v1.AdminService",
  "canopy.v1.AssignmentService",
  "canopy.v1.CatalogService",
  "canopy.v1.CheckService",
  "canopy.v1.HierarchyService",
  "canopy.v1.IdentityService",
];

/** Health clients without any API key, over gRPC (HTTP/2) and Connect (HTTP/1.1). */
function healthClients(url: string): Record<"grpc" | "connect-h1", Client<typeof Health>> {
  return {
    grpc: createClient(Health, createGrpcTransport({ baseUrl: url })),
    "connect-h1": createClient(Health, createConnectTransport({ baseUrl: url, httpVersion: "1.1" })),
  };
}

async function probe(url: string, path: string, method = "GET"): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(url + path, { method });
  return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
}

async function codeOf(p: Promise<unknown>): Promise<Code | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e).code,
  );
}

describe.skipIf(!ready)("health checking and probes", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(async () => {
    await s?.close();
  });

  it.each(["grpc", "connect-h1"] as const)("Check answers SERVING for the server and each canopy.v1 service without an API key (%s)", async (protocol) => {
    const health = healthClients(s.url)[protocol];
    for (const service of ["", ...CANOPY_SERVICES]) {
      expect({ service, status: (await health.check({ service })).status }).toEqual({ service, status: ServingStatus.SERVING });
    }
  });

  it.each(["grpc", "connect-h1"] as const)("Check of an unknown service is NOT_FOUND (%s)", async (protocol) => {
    const health = healthClients(s.url)[protocol];
    expect(await codeOf(health.check({ service: "canopy.v1.NoSuchService" }))).toBe(Code.NotFound);
  });

  it("List names the server, every canopy.v1 service, health and reflection, all SERVING", async () => {
    const { statuses } = await healthClients(s.url).grpc.list({});
    expect(Object.keys(statuses).sort()).toEqual(
      ["", ...CANOPY_SERVICES, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"].sort(),
    );
    expect(new Set(Object.values(statuses).map((r) => r.status))).toEqual(new Set([ServingStatus.SERVING]));
  });

  it("Watch of an unknown service answers SERVICE_UNKNOWN and keeps the call open", async () => {
    const abort = new AbortController();
    const stream = healthClients(s.url).grpc.watch({ service: "nope.Service" }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);
    const next = stream.next();
    abort.abort();
    // the call only ends because the client cancelled it
    expect(await codeOf(next)).toBe(Code.Canceled);
  });

  it("answers grpc-js with the vendored health.proto (an independent protobuf stack)", async () => {
    const protoDir = fileURLToPath(new URL("../../proto-vendor", import.meta.url));
    const def = protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: [protoDir], enums: String });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const Ctor = (grpc.loadPackageDefinition(def) as any).grpc.health.v1.Health;
    const client = new Ctor(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
    try {
      const call = (service: string) =>
        new Promise<{ status?: string; code?: number }>((resolve) =>
          client.check({ service }, (err: grpc.ServiceError | null, res: { status: string }) => resolve(err ? { code: err.code } : { status: res.status })),
        );
      expect(await call("canopy.v1.CheckService")).toEqual({ status: "SERVING" });
      expect(await call("missing")).toEqual({ code: grpc.status.NOT_FOUND });
    } finally {
      client.close();
    }
  });

  it("GET /healthz and /readyz answer 200 with a JSON body (HEAD: no body)", async () => {
    expect(await probe(s.url, "/healthz")).toEqual({ status: 200, type: "application/json", body: '{"status":"ok"}' });
    expect(await probe(s.url, "/readyz")).toEqual({ status: 200, type: "application/json", body: '{"status":"ready"}' });
    expect(await probe(s.url, "/readyz?verbose=1", "HEAD")).toEqual({ status: 200, type: "application/json", body: "" });
  });

  it("leaves other methods on the probe paths to the rest of the server", async () => {
    expect((await probe(s.url, "/healthz", "POST")).status).not.toBe(200);
  });
});

describe.skipIf(!ready)("health while degraded and draining", () => {
  let s: TestServer;
  beforeAll(async () => {
    // a short poll so Watch notices storage and runtime changes soon (the interval is what Watch polls at)
    s = await startTestServer({ env: { CANOPY_POLL_INTERVAL_MS: "100" } });
  });
  afterAll(async () => {
    await s?.close();
  });

  /** Makes the trivial readiness query fail (its table is renamed away), or puts it back. */
  async function breakStore(broken: boolean): Promise<void> {
    const [from, to] = broken ? ["environments", "environments_away"] : ["environments_away", "environments"];
    const sql = `alter table ${from} rename to ${to}`;
    if (s.backend === "postgres") await withPgClient(s, (c) => c.query(sql));
    else {
      const db = new Database(s.databaseFile);
      try {
        db.exec(sql);
      } finally {
        db.close();
      }
    }
  }

  it("readiness fails on storage, then on a stopped runtime, then on draining; Watch follows; liveness stays 200", async () => {
    const { grpc: health } = healthClients(s.url);
    const abort = new AbortController();
    const watch = health.watch({ service: "canopy.v1.CheckService" }, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      expect((await watch.next()).value?.status).toBe(ServingStatus.SERVING);

      await breakStore(true);
      try {
        expect(await probe(s.url, "/readyz")).toEqual({
          status: 503,
          type: "application/json",
          body: JSON.stringify({ status: "unavailable", check: "store", message: "storage did not answer a trivial query" }),
        });
        expect((await health.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
        expect((await watch.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
        expect((await probe(s.url, "/healthz")).status).toBe(200);
      } finally {
        await breakStore(false);
      }
      expect((await watch.next()).value?.status).toBe(ServingStatus.SERVING);
      expect((await probe(s.url, "/readyz")).status).toBe(200);

      await s.app.canopy.stop();
      expect(JSON.parse((await probe(s.url, "/readyz")).body)).toMatchObject({ status: "unavailable", check: "runtime" });
      expect((await watch.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
      await s.app.canopy.start();
      expect((await watch.next()).value?.status).toBe(ServingStatus.SERVING);

      s.app.health.startDraining();
      expect((await watch.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
      // a draining server never serves again: the call ends (OK) instead of holding shutdown open
      expect((await watch.next()).done).toBe(true);
    } finally {
      abort.abort();
    }
    expect(await probe(s.url, "/readyz")).toEqual({
      status: 503,
      type: "application/json",
      body: JSON.stringify({ status: "unavailable", check: "draining", message: "the server is shutting down" }),
    });
    expect(await probe(s.url, "/healthz")).toEqual({ status: 200, type: "application/json", body: '{"status":"ok"}' });
    for (const service of ["", ...CANOPY_SERVICES]) {
      expect({ service, status: (await health.check({ service })).status }).toEqual({ service, status: ServingStatus.NOT_SERVING });
    }
    // a new watcher during draining hears NOT_SERVING once, then the call ends
    const statuses: ServingStatus[] = [];
    for await (const r of health.watch({ service: "" })) statuses.push(r.status);
    expect(statuses).toEqual([ServingStatus.NOT_SERVING]);
  });
});
