import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { loadConfig } from "../../src/config.js";
import { startApp, type App } from "../../src/app.js";
import type { Clients } from "../../src/cli/client.js";
import { createManualClock } from "../../src/domain/clock.js";
import type { Limits } from "../../src/domain/limits.js";
import type { Logger } from "../../src/domain/runtime.js";
import { AdminService } from "../../src/gen/canopy/v1/admin_pb.js";
import { freshSchema, usePostgres } from "../support/postgres.js";
import { AssignmentService } from "../../src/gen/canopy/v1/assignment_pb.js";
import { CatalogService } from "../../src/gen/canopy/v1/catalog_pb.js";
import { CheckService } from "../../src/gen/canopy/v1/check_pb.js";
import { HierarchyService } from "../../src/gen/canopy/v1/hierarchy_pb.js";
import { IdentityService } from "../../src/gen/canopy/v1/identity_pb.js";

/** A fixed start instant for the manual clock: 2026-01-01T00:00:00.000Z. */
export const T0 = Date.UTC(2026, 0, 1);

const silent = { info() {}, warn() {}, error() {} };

/** Typed clients of every canopy.v1 service (the CLI's type: src/cli/client.ts). */
export type { Clients } from "../../src/cli/client.js";

/** The backend this run of the e2e suite uses (vitest project e2e-sqlite / e2e-postgres). */
export const BACKEND: "sqlite" | "postgres" = process.env.CANOPY_TEST_BACKEND === "postgres" ? "postgres" : "sqlite";

/**
 * Whether this e2e run can execute: always for SQLite; for PostgreSQL when the server is reachable
 * (under CI=true an unreachable server throws instead). Use: `describe.skipIf(!(await backendReady()))`.
 */
export async function backendReady(): Promise<boolean> {
  return BACKEND === "sqlite" || (await usePostgres());
}

export type Protocol = "connect-h1" | "connect-h2" | "grpc" | "grpc-web";

export interface TestServer {
  app: App;
  /** base URL, e.g. http://127.0.0.1:54321 */
  url: string;
  port: number;
  backend: "sqlite" | "postgres";
  /** the SQLite file behind the server ("" on PostgreSQL) */
  databaseFile: string;
  /** CANOPY_DATABASE_URL of the server (on PostgreSQL its search_path names a schema of its own) */
  databaseUrl: string;
  /** PostgreSQL: the schema holding this server's tables ("" on SQLite) */
  schema: string;
  adminKey: string;
  /** key of the bootstrap "development" environment */
  devKey: string;
  clock: ReturnType<typeof createManualClock>;
  /** typed clients for `key` (optionally acting in `environment` via the canopy-environment header) */
  clients(key: string, opts?: { protocol?: Protocol; environment?: string }): Clients;
  close(): Promise<void>;
}

/**
 * Starts a real Canopy server on 127.0.0.1 port 0 over a fresh database (a SQLite file in a temp dir,
 * or a new PostgreSQL schema, by BACKEND), with a manual clock at T0. Every e2e test talks to it through real clients over real sockets.
 */
export async function startTestServer(opts: { limits?: Partial<Limits>; env?: Record<string, string>; logger?: Logger } = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), "canopy-e2e-"));
  const pg = BACKEND === "postgres" ? await freshSchema("e2e") : undefined;
  const databaseFile = pg ? "" : join(dir, "canopy.db");
  const databaseUrl = pg ? pg.url : `sqlite:${databaseFile}`;
  const base = loadConfig({ CANOPY_PORT: "0", CANOPY_DATABASE_URL: databaseUrl, CANOPY_DATABASE_POOL_SIZE: "4", ...opts.env });
  const config = { ...base, limits: { ...base.limits, ...opts.limits } };
  const clock = createManualClock(T0);
  const app = await startApp(config, { clock, logger: opts.logger ?? silent });
  if (!app.bootstrap) throw new Error("expected a fresh database");
  const transports = new Map<string, Transport>();
  const transport = (protocol: Protocol, key: string, environment?: string): Transport => {
    const id = `${protocol}|${key}|${environment ?? ""}`;
    let t = transports.get(id);
    if (t) return t;
    const auth: Interceptor = (next) => (req) => {
      req.header.set("x-api-key", key);
      if (environment) req.header.set("canopy-environment", environment);
      return next(req);
    };
    t =
      protocol === "grpc"
        ? createGrpcTransport({ baseUrl: app.url, interceptors: [auth] })
        : protocol === "grpc-web"
          ? createGrpcWebTransport({ baseUrl: app.url, httpVersion: "1.1", interceptors: [auth] })
          : createConnectTransport({ baseUrl: app.url, httpVersion: protocol === "connect-h1" ? "1.1" : "2", interceptors: [auth] });
    transports.set(id, t);
    return t;
  };
  return {
    app,
    url: app.url,
    port: app.port,
    backend: BACKEND,
    databaseFile,
    databaseUrl,
    schema: pg?.schema ?? "",
    adminKey: app.bootstrap.adminKey,
    devKey: app.bootstrap.developmentKey,
    clock,
    clients(key, o = {}) {
      const t = transport(o.protocol ?? "connect-h1", key, o.environment);
      const c = <S extends DescService>(s: S) => createClient(s, t);
      return {
        check: c(CheckService),
        assignments: c(AssignmentService),
        hierarchy: c(HierarchyService),
        catalog: c(CatalogService),
        identities: c(IdentityService),
        admin: c(AdminService),
      };
    },
    async close() {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
      await pg?.drop();
    },
  };
}
