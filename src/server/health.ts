import { Code, ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import type { HealthState } from "./health-state.js";
import type { PlainHttpHandler } from "./server.js";

/** A trivial store query that runs longer than this fails readiness (a hung connection must not hang the probe). */
const STORE_TIMEOUT_MS = 2_000;
/** Matches no environment: the query proves storage answers without reading anything. */
const NIL_ID = "00000000-0000-0000-0000-000000000000";

/** The readiness check that failed, named in /readyz's 503 body. */
export type ReadinessCheck = "draining" | "runtime" | "store" | "freshness";

export type Readiness = { ready: true } | { ready: false; check: ReadinessCheck; message: string };

/**
 * Liveness, readiness and gRPC health checking, all derived from one readiness check: not draining,
 * runtime started, storage answering a trivial query, and (PostgreSQL) the replica confirmed current
 * (Runtime.assertFresh). `GET /healthz` is liveness only and never touches storage, so it does not flap.
 */
export interface Probes {
  /** `GET`/`HEAD` `/healthz` and `/readyz` (push onto the server's plain HTTP handlers) */
  http: PlainHttpHandler;
  /** registers `grpc.health.v1.Health` (no API key); call after every other service is registered */
  routes(router: ConnectRouter): void;
  readiness(): Promise<Readiness>;
}

export function createProbes(deps: { canopy: Canopy; health: HealthState; pollIntervalMs?: number }): Probes {
  const { canopy, health } = deps;
  const runtime = canopy.runtime;

  async function readiness(): Promise<Readiness> {
    if (health.draining) return { ready: false, check: "draining", message: "the server is shutting down" };
    if (!runtime.started) return { ready: false, check: "runtime", message: "the runtime has not started" };
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        runtime.store.revisions([NIL_ID]),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("timeout")), STORE_TIMEOUT_MS))),
      ]);
    } catch {
      // the cause (a connection string, a host) is not for unauthenticated callers; the runtime logs its own failures
      return { ready: false, check: "store", message: "storage did not answer a trivial query" };
    } finally {
      clearTimeout(timer);
    }
    try {
      runtime.assertFresh();
    } catch (err) {
      return { ready: false, check: "freshness", message: (err as Error).message };
    }
    return { ready: true };
  }

  const http: PlainHttpHandler = (req, res) => {
    const path = req.url?.split("?", 1)[0];
    if ((path !== "/healthz" && path !== "/readyz") || (req.method !== "GET" && req.method !== "HEAD")) return false;
    const send = (status: number, body: object) => {
      res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
      if (req.method === "HEAD") res.end();
      else res.end(JSON.stringify(body));
    };
    if (path === "/healthz") send(200, { status: "ok" });
    else
      void readiness().then((r) =>
        r.ready ? send(200, { status: "ready" }) : send(503, { status: "unavailable", check: r.check, message: r.message }),
      );
    return true;
  };

  const feed = createReadinessFeed(readiness, health, deps.pollIntervalMs ?? runtime.replication.pollIntervalMs);

  function routes(router: ConnectRouter): void {
    // every service on the router, read when a call arrives (all are registered by then), and "" = the whole server
    let known: Set<string> | undefined;
    const isKnown = (service: string) => (known ??= new Set(["", ...router.handlers.map((h) => h.service.typeName)])).has(service);
    const statusOf = (r: Readiness) => (r.ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
    const impl: ServiceImpl<typeof Health> = {
      async check(req) {
        if (!isKnown(req.service)) throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
        return { status: statusOf(await readiness()) };
      },
      async *watch(req, ctx) {
        if (!isKnown(req.service)) {
          // the spec: answer SERVICE_UNKNOWN and keep the call open (services never appear later here)
          yield { status: ServingStatus.SERVICE_UNKNOWN };
          await untilDrainingOr(health, ctx.signal);
          return;
        }
        let last: ServingStatus | undefined;
        for await (const r of feed.updates(ctx.signal)) {
          const status = statusOf(r);
          if (status !== last) yield { status };
          last = status;
          // A draining process never serves again: end the call (OK) so watchers do not hold graceful
          // shutdown open; per the spec clients retry, reaching another replica.
          if (!r.ready && r.check === "draining") return;
        }
      },
      async list() {
        const status = statusOf(await readiness());
        known ??= new Set(["", ...router.handlers.map((h) => h.service.typeName)]);
        return { statuses: Object.fromEntries([...known].map((name) => [name, { status }])) };
      },
    };
    // no interceptors: probes need no API key
    router.service(Health, impl, { interceptors: [] });
  }

  return { http, routes, readiness };
}

/** Resolves when the process starts draining or `signal` aborts. */
function untilDrainingOr(health: HealthState, signal: AbortSignal): Promise<void> {
  if (health.draining || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      unsubscribe();
      signal.removeEventListener("abort", done);
      resolve();
    };
    const unsubscribe = health.onChange(done);
    signal.addEventListener("abort", done);
  });
}

/**
 * Readiness pushed to open Watch calls: evaluated at once for each new watcher, again whenever the
 * draining state changes, and every `intervalMs` while anyone watches (one poll shared by all watchers).
 */
function createReadinessFeed(evaluate: () => Promise<Readiness>, health: HealthState, intervalMs: number) {
  const listeners = new Set<(r: Readiness) => void>();
  let timer: NodeJS.Timeout | undefined;
  let unsubscribeHealth: (() => void) | undefined;
  let inFlight = false;
  let again = false;

  async function poll(): Promise<void> {
    if (inFlight) {
      again = true; // a change arrived mid-evaluation: evaluate once more afterwards
      return;
    }
    inFlight = true;
    try {
      do {
        again = false;
        const r = await evaluate();
        for (const l of [...listeners]) l(r);
      } while (again && listeners.size > 0);
    } finally {
      inFlight = false;
    }
  }

  function subscribe(listener: (r: Readiness) => void): () => void {
    listeners.add(listener);
    if (listeners.size === 1) {
      timer = setInterval(() => void poll(), intervalMs);
      timer.unref();
      unsubscribeHealth = health.onChange(() => void poll());
    }
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0) {
        clearInterval(timer);
        unsubscribeHealth?.();
      }
    };
  }

  /** The current readiness first, then each re-evaluation (only the latest when several queue up), until `signal` aborts. */
  async function* updates(signal: AbortSignal): AsyncGenerator<Readiness> {
    let latest: Readiness | undefined;
    let wake: (() => void) | undefined;
    const unsubscribe = subscribe((r) => {
      latest = r;
      wake?.();
    });
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort);
    try {
      yield await evaluate();
      while (!signal.aborted) {
        if (latest === undefined) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        if (latest === undefined || signal.aborted) continue;
        const r = latest;
        latest = undefined;
        yield r;
      }
    } finally {
      unsubscribe();
      signal.removeEventListener("abort", onAbort);
    }
  }

  return { updates };
}
