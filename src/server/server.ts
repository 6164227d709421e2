import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { Canopy } from "../domain/canopy.js";
import type { Logger } from "../domain/runtime.js";
import { canopyRoutes } from "../api/routes.js";
import { authInterceptor, consistencyInterceptor, errorInterceptor } from "../api/interceptors.js";
import { EchoService } from "../gen/canopy/bench/v1/echo_pb.js";
import { createDualServer } from "./listen.js";
import { deadlineInterceptor } from "../api/deadline.js";
import { createFastPath } from "./fast-path.js";
import { fastUnaryMethods } from "../api/fast-unary.js";
import { createRestApi } from "../rest/index.js";
import { createHealthState, type HealthState } from "./health-state.js";
import { createProbes } from "./health.js";
import { registerReflection } from "./reflection.js";
import { createObservability, type Observability } from "./observability.js";
import { createWebApp } from "./web-app.js";

/** Answers a plain HTTP request (GET /healthz, /metrics, …) and returns true, or returns false to pass it on. */
export type PlainHttpHandler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => boolean;

export interface CanopyServer {
  /** resolves with the bound address (port 0 picks a free port) */
  listen(port: number, host: string): Promise<AddressInfo>;
  /** also serves on a Unix domain socket (same protocols); see DualServer.listenUnix */
  listenSocket(path: string, mode: number): Promise<void>;
  /**
   * Graceful shutdown: starts draining (readiness false), stops accepting, lets in-flight calls finish
   * for up to `shutdownGraceMs`, then cancels the rest (UNAVAILABLE) and closes every connection.
   */
  close(): Promise<void>;
  /** calls the fast path has answered (0 when it is off) */
  fastPathCalls(): number;
  /** draining state read by the readiness probes; shutdown starts draining first */
  health: HealthState;
}

/**
 * The Connect server: every Canopy service on one port, speaking gRPC, gRPC-Web and Connect over
 * HTTP/2 cleartext and HTTP/1.1, with the REST surface (/api/v1, src/rest) beside them. Interceptors run in a fixed order: errors (outermost) → default
 * deadline (unary calls without one get `defaultDeadlineMs`) → auth → consistency (min_revision). `benchEcho` adds the benchmark's transport floor (see echo.proto).
 * `webRoot` overrides where the dashboard's build is read from (src/server/web-app.ts).
 * `fastPath` puts src/server/fast-path.ts in front for the hot unary calls: any interceptor added here
 * must be applied there too (src/api/fast-unary.ts), or the two paths stop being the same service.
 */
export function createCanopyServer(deps: { canopy: Canopy; logger: Logger; maxRequestBytes: number; benchEcho?: boolean; fastPath?: boolean; health?: HealthState; shutdownGraceMs?: number; defaultDeadlineMs?: number; observability?: Observability; webRoot?: string }): CanopyServer {
  // metrics and request logs of every door: Connect (interceptor), fast path (observer), REST (wrap + onOutcome)
  const observability = deps.observability ?? createObservability({ logger: deps.logger, logRequests: false, metrics: false });
  // aborted when the shutdown grace period ends: every Connect handler's signal aborts with it
  const shutdown = new AbortController();
  const health = deps.health ?? createHealthState();
  const routes = canopyRoutes(deps.canopy);
  const probes = createProbes({ canopy: deps.canopy, health });
  const handler = connectNodeAdapter({
    routes: (router) => {
      routes(router);
      // Per-service options replace the adapter's: an empty list runs Echo with no interceptor
      // (no auth), so it costs exactly the bare Connect stack.
      if (deps.benchEcho) router.service(EchoService, { echo: (req) => ({ payload: req.payload }) }, { interceptors: [] });
      // grpc.health.v1 and server reflection (no API key either), last: they describe every service above
      probes.routes(router);
      registerReflection(router);
    },
    interceptors: [observability.interceptor, errorInterceptor(deps.logger), deadlineInterceptor(deps.defaultDeadlineMs ?? 0), authInterceptor(deps.canopy), consistencyInterceptor(deps.canopy)],
    shutdownSignal: shutdown.signal,
    contextValues: observability.contextValues,
    readMaxBytes: deps.maxRequestBytes,
    grpc: true,
    grpcWeb: true,
    connect: true,
    // Clients of an authorization service should read `"allowed": false`, not a missing field.
    jsonOptions: { alwaysEmitImplicit: true },
  });
  // Check, CheckBulk (and the bench echo) answered without the Connect machinery; same rules, same bytes.
  const fastPath = deps.fastPath
    ? createFastPath({ methods: fastUnaryMethods(deps.canopy, { benchEcho: deps.benchEcho ?? false }), logger: deps.logger, maxRequestBytes: deps.maxRequestBytes, defaultDeadlineMs: deps.defaultDeadlineMs ?? 0, observer: observability.rpc })
    : undefined;
  // /api/v1/* is the REST surface (src/rest); everything else is Connect's
  const rest = createRestApi({ canopy: deps.canopy, logger: deps.logger, maxRequestBytes: deps.maxRequestBytes, onOutcome: observability.rest.outcome });
  const restHandle = observability.rest.wrap(rest.handle);
  // plain HTTP endpoints (probes, metrics) answered before REST and Connect; each returns false to pass
  const plainHttp: PlainHttpHandler[] = [probes.http];
  if (observability.metricsHandler) plainHttp.push(observability.metricsHandler);
  // the admin dashboard (web/, built into dist/web): last, and it passes on every API, probe and RPC path
  plainHttp.push(createWebApp({ root: deps.webRoot }));
  const server = createDualServer((req, res) => void (plainHttp.some((h) => h(req, res)) || restHandle(req, res) || handler(req, res)), fastPath);
  return {
    listen: (port, host) => server.listen(port, host),
    listenSocket: (path, mode) => server.listenUnix(path, mode),
    close() {
      health.startDraining();
      return server.close({
        graceMs: deps.shutdownGraceMs ?? 10_000,
        onGraceExpired: () => shutdown.abort(new ConnectError("the server is shutting down, retry on another replica", Code.Unavailable)),
      });
    },
    fastPathCalls: () => fastPath?.calls ?? 0,
    health,
  };
}
