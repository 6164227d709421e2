import type * as http from "node:http";
import type * as http2 from "node:http2";
import { randomFillSync } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, createContextValues, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { DomainObserver } from "../domain/observer.js";
import type { Logger } from "../domain/runtime.js";
import type { RestOutcome } from "../rest/index.js";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

/** Request header naming a request for logs (taken when sane, else generated) and echoed in responses. */
export const REQUEST_ID_HEADER = "x-request-id";

/** Which door a call came in by: the Connect adapter, the fast path (src/server/fast-path.ts) or REST. */
export type Transport = "connect" | "fast" | "rest";

/** gRPC code names as go-grpc-prometheus writes them (`grpc_code` label, `code` log field), by code number. */
export const CODE_NAMES: readonly string[] = [
  "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists", "PermissionDenied",
  "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
];

/** RPC latency buckets (seconds): a Check takes tens of µs to a ms, a bulk import seconds. */
const RPC_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** closure rebuild buckets (seconds): ~5 ms for 111 k nodes (docs/PERFORMANCE-NOTES.md) */
const REBUILD_BUCKETS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
/** More distinct methods than this share one `unknown` series (only registered methods reach the observer anyway). */
const MAX_METHODS = 256;
const UNKNOWN = "unknown";

/** Printable, bounded, and not a Canopy API key (a client that puts its key there must not get it logged). */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:/+=-]{1,128}$/;

const idPool = Buffer.allocUnsafe(4096);
let idAt = idPool.length;

/** A short random request id (16 hex characters) cut from a pool of random bytes refilled 512 ids at a time. */
export function newRequestId(): string {
  if (idAt + 8 > idPool.length) {
    randomFillSync(idPool);
    idAt = 0;
  }
  const id = idPool.toString("hex", idAt, idAt + 8);
  idAt += 8;
  return id;
}

/** The client's `x-request-id` when sane, else a new one. */
export function requestIdOf(raw: string | string[] | null | undefined): string {
  return typeof raw === "string" && SANE_REQUEST_ID.test(raw) && !raw.startsWith("cnpy_") ? raw : newRequestId();
}

/** go-grpc-prometheus's `grpc_type` values. */
function grpcType(kind: DescMethod["methodKind"] | undefined): string {
  switch (kind) {
    case "server_streaming":
      return "server_stream";
    case "client_streaming":
      return "client_stream";
    case "bidi_streaming":
      return "bidi_stream";
    default:
      return "unary";
  }
}

/**
 * One RPC method's pre-bound metric children and its log fields. Every transport reports a call with
 * `started()` and, once it has its final status, `handled()`.
 */
export interface MethodObserver {
  readonly service: string;
  readonly method: string;
  started(): void;
  /** `code` 0 = OK; `ms` from performance.now(); `peer` only when `RpcObserver.logs` */
  handled(code: number, ms: number, requestId: string, peer: string | undefined, transport: Transport): void;
}

/** What the transports (Connect interceptor, fast path) ask for the observer of a method. */
export interface RpcObserver {
  /** true when per-request log lines are on: only then is the peer address worth reading */
  readonly logs: boolean;
  method(service: string, method: string, kind?: DescMethod["methodKind"]): MethodObserver;
}

/** The RPC and REST series of one app (a registry of its own: tests run many apps in one process). */
interface Metrics {
  started: Counter<string>;
  handled: Counter<string>;
  handling: Histogram<string>;
  http: Counter<string>;
  httpDuration: Histogram<string>;
}

class MethodStats implements MethodObserver {
  private readonly startedChild: Counter.Internal | undefined;
  private readonly handling: Histogram.Internal<string> | undefined;
  /** by code number, bound on first use */
  private readonly handledChildren: Array<Counter.Internal | undefined> = new Array(CODE_NAMES.length).fill(undefined);
  private readonly type: string;

  constructor(
    readonly service: string,
    readonly method: string,
    kind: DescMethod["methodKind"] | undefined,
    private readonly metrics: Metrics | undefined,
    private readonly logger: Logger | undefined,
  ) {
    this.type = grpcType(kind);
    this.startedChild = metrics?.started.labels(service, method, this.type);
    this.handling = metrics?.handling.labels(service, method, this.type);
  }

  started(): void {
    this.startedChild?.inc();
  }

  handled(code: number, ms: number, requestId: string, peer: string | undefined, transport: Transport): void {
    const name = CODE_NAMES[code] ?? CODE_NAMES[Code.Unknown];
    if (this.metrics) {
      (this.handledChildren[code] ??= this.metrics.handled.labels(this.service, this.method, name, this.type)).inc();
      this.handling!.observe(ms / 1000);
    }
    this.logger?.info(
      { transport, service: this.service, method: this.method, code: name, duration_ms: Math.round(ms * 1000) / 1000, request_id: requestId, peer },
      "rpc",
    );
  }
}

/** The raw node request of a Connect call, put in its context values by the adapter (peer address for logs). */
const nodeRequestKey = createContextKey<Request | undefined>(undefined, { description: "canopy node request" });

/** Default process metrics (CPU, memory, event loop, GC) once per process: each app's /metrics includes them. */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * Metrics (Prometheus, prom-client) and per-request logs (the injected pino logger) for every door into
 * the service: the Connect adapter (an interceptor, outermost), the fast path (its `rpc` observer) and
 * REST (`rest.wrap` + the router's `onOutcome`); plus the domain's hooks and the /metrics handler.
 */
export interface Observability {
  /** this app's series (RPC, REST, domain); /metrics also writes the process's default metrics */
  readonly registry: Registry;
  readonly rpc: RpcObserver;
  /** Connect interceptor: counts, times and logs each call, echoes `x-request-id` (outermost, so it sees the mapped code) */
  readonly interceptor: Interceptor;
  /** connectNodeAdapter's `contextValues` option (keeps the node request for the peer address), when logs are on */
  readonly contextValues: ((req: Request) => ContextValues) | undefined;
  readonly domain: DomainObserver;
  readonly rest: {
    /** wraps the REST router's `handle`: notes start and request id, echoes `x-request-id` */
    wrap(handle: (req: Request, res: Response) => boolean): (req: Request, res: Response) => boolean;
    /** the router's `onOutcome` hook */
    outcome(req: Request, outcome: RestOutcome): void;
  };
  /** `GET /metrics` (Prometheus text format) for the server's plain HTTP handlers; undefined when metrics are off */
  readonly metricsHandler: ((req: Request, res: Response) => boolean) | undefined;
}

export function createObservability(opts: { logger: Logger; logRequests: boolean; metrics: boolean }): Observability {
  const { logger } = opts;
  const requestLogger = opts.logRequests ? logger : undefined;
  const registry = new Registry();
  const registers = [registry];
  const metrics: Metrics | undefined = opts.metrics
    ? {
        started: new Counter({ name: "grpc_server_started_total", help: "RPCs started on the server.", labelNames: ["grpc_service", "grpc_method", "grpc_type"], registers }),
        handled: new Counter({
          name: "grpc_server_handled_total",
          help: "RPCs completed on the server, regardless of success or failure.",
          labelNames: ["grpc_service", "grpc_method", "grpc_code", "grpc_type"],
          registers,
        }),
        handling: new Histogram({
          name: "grpc_server_handling_seconds",
          help: "Response latency (seconds) of RPCs handled by the server.",
          labelNames: ["grpc_service", "grpc_method", "grpc_type"],
          buckets: RPC_BUCKETS,
          registers,
        }),
        http: new Counter({ name: "http_requests_total", help: "REST (/api/v1) requests answered, by operationId and HTTP status.", labelNames: ["operation", "status"], registers }),
        httpDuration: new Histogram({
          name: "http_request_duration_seconds",
          help: "REST (/api/v1) request latency (seconds) by operationId.",
          labelNames: ["operation"],
          buckets: RPC_BUCKETS,
          registers,
        }),
      }
    : undefined;

  const methods = new Map<string, MethodStats>();
  const lumped = new MethodStats(UNKNOWN, UNKNOWN, undefined, metrics, requestLogger);
  const rpc: RpcObserver = {
    logs: requestLogger !== undefined,
    method(service, method, kind) {
      const id = `${service}/${method}`;
      let stats = methods.get(id);
      if (stats) return stats;
      if (methods.size >= MAX_METHODS) return lumped;
      methods.set(id, (stats = new MethodStats(service, method, kind, metrics, requestLogger)));
      return stats;
    },
  };

  // the Connect path: one lookup per call by the method descriptor (a stable object)
  const byDesc = new Map<DescMethod, MethodObserver>();
  const peerOf = (values: ContextValues): string | undefined => values.get(nodeRequestKey)?.socket?.remoteAddress;
  const interceptor: Interceptor = (next) => async (req) => {
    let stats = byDesc.get(req.method);
    if (!stats) byDesc.set(req.method, (stats = rpc.method(req.service.typeName, req.method.name, req.method.methodKind)));
    stats.started();
    const started = performance.now();
    const requestId = requestIdOf(req.header.get(REQUEST_ID_HEADER));
    const observed = stats;
    try {
      const res = await next(req);
      res.header.set(REQUEST_ID_HEADER, requestId);
      if (!res.stream) {
        observed.handled(0, performance.now() - started, requestId, rpc.logs ? peerOf(req.contextValues) : undefined, "connect");
        return res;
      }
      const source = res.message;
      return {
        ...res,
        message: (async function* () {
          // a consumer that stops early (the client went away) ends the stream as CANCELED
          let code: number = Code.Canceled;
          try {
            yield* source;
            code = 0;
          } catch (e) {
            const err = ConnectError.from(e);
            err.metadata.set(REQUEST_ID_HEADER, requestId);
            code = err.code;
            throw err;
          } finally {
            observed.handled(code, performance.now() - started, requestId, rpc.logs ? peerOf(req.contextValues) : undefined, "connect");
          }
        })(),
      };
    } catch (e) {
      const err = ConnectError.from(e);
      err.metadata.set(REQUEST_ID_HEADER, requestId);
      observed.handled(err.code, performance.now() - started, requestId, rpc.logs ? peerOf(req.contextValues) : undefined, "connect");
      throw err;
    }
  };

  // REST: the start and id of each request in flight, until the router reports its outcome
  const inFlight = new WeakMap<Request, { started: number; requestId: string }>();
  const httpChildren = new Map<string, { count: Map<number, Counter.Internal>; duration: Histogram.Internal<string> }>();
  const rest: Observability["rest"] = {
    wrap: (handle) => (req, res) => {
      const started = performance.now();
      if (!handle(req, res)) return false;
      const requestId = requestIdOf(req.headers[REQUEST_ID_HEADER]);
      // the router writes its head after at least one await: this header goes out with it
      if (!res.headersSent) res.setHeader(REQUEST_ID_HEADER, requestId);
      inFlight.set(req, { started, requestId });
      return true;
    },
    outcome(req, o) {
      const call = inFlight.get(req);
      if (!call) return;
      inFlight.delete(req);
      const ms = performance.now() - call.started;
      const operation = o.operationId || "unmatched";
      if (metrics) {
        let op = httpChildren.get(operation);
        if (!op) httpChildren.set(operation, (op = { count: new Map(), duration: metrics.httpDuration.labels(operation) }));
        let count = op.count.get(o.status);
        if (!count) op.count.set(o.status, (count = metrics.http.labels(operation, String(o.status))));
        count.inc();
        op.duration.observe(ms / 1000);
      }
      requestLogger?.info(
        {
          transport: "rest",
          operation,
          http_method: o.method,
          status: o.status,
          ...(o.code ? { code: o.code } : {}),
          duration_ms: Math.round(ms * 1000) / 1000,
          request_id: call.requestId,
          peer: req.socket?.remoteAddress,
        },
        "rest",
      );
    },
  };

  const domain: DomainObserver = metrics ? domainMetrics(registers) : { checks() {}, closureRebuilt() {}, revisionLag() {}, bulkItems() {} };
  const exposition = metrics ? Registry.merge([processMetrics(), registry]) : undefined;

  return {
    registry,
    rpc,
    interceptor,
    contextValues: requestLogger
      ? (req) => {
          const values = createContextValues();
          values.set(nodeRequestKey, req);
          return values;
        }
      : undefined,
    domain,
    rest,
    metricsHandler: exposition && metricsHandler(exposition, logger),
  };
}

/** The domain's series: decisions, closure rebuilds, replica lag, bulk items. */
function domainMetrics(registers: Registry[]): DomainObserver {
  const checks = new Counter({ name: "canopy_checks_total", help: "Check decisions (CheckBulk items counted one by one).", labelNames: ["decision"], registers });
  const allowed = checks.labels("allowed");
  const denied = checks.labels("denied");
  const rebuilds = new Counter({ name: "canopy_closure_rebuilds_total", help: "Hierarchy closure rebuilds after hierarchy writes.", registers });
  const rebuildSeconds = new Histogram({ name: "canopy_closure_rebuild_seconds", help: "Duration (seconds) of hierarchy closure rebuilds.", buckets: REBUILD_BUCKETS, registers });
  const lag = new Gauge({
    name: "canopy_revision_lag",
    help: "Revisions the furthest-behind loaded environment was behind storage at the last replica poll (PostgreSQL; always 0 on SQLite).",
    registers,
  });
  const bulk = new Counter({ name: "canopy_bulk_items_total", help: "Assignment items of BulkCreateAssignments streams and batch creates, by outcome.", labelNames: ["outcome"], registers });
  const created = bulk.labels("created");
  const failed = bulk.labels("failed");
  // series that exist from the start read 0 instead of being absent
  lag.set(0);
  allowed.inc(0);
  denied.inc(0);
  created.inc(0);
  failed.inc(0);
  return {
    checks(a, d) {
      if (a > 0) allowed.inc(a);
      if (d > 0) denied.inc(d);
    },
    closureRebuilt(seconds) {
      rebuilds.inc();
      rebuildSeconds.observe(seconds);
    },
    revisionLag(revisions) {
      lag.set(revisions);
    },
    bulkItems(c, f) {
      if (c > 0) created.inc(c);
      if (f > 0) failed.inc(f);
    },
  };
}

/** GET (or HEAD) /metrics in the registry's text format. No API key: bind to loopback or restrict it at the network level. */
function metricsHandler(registry: Registry, logger: Logger): (req: Request, res: Response) => boolean {
  return (req, res) => {
    const url = req.url ?? "";
    if (url !== "/metrics" && !url.startsWith("/metrics?")) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-length": "0" });
      res.end();
      return true;
    }
    registry.metrics().then(
      (text) => {
        if (res.destroyed) return;
        const body = Buffer.from(text, "utf8");
        res.writeHead(200, { "content-type": registry.contentType, "content-length": String(body.length), "cache-control": "no-store" });
        if (req.method === "HEAD") res.end();
        else res.end(body);
      },
      (err: unknown) => {
        logger.error({ err: err instanceof Error ? err.message : String(err) }, "collecting metrics failed");
        if (res.destroyed || res.headersSent) return;
        res.writeHead(500, { "content-length": "0" });
        res.end();
      },
    );
    return true;
  };
}
