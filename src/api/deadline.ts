import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** The request headers by which gRPC / gRPC-Web and Connect clients send their deadline. */
const TIMEOUT_HEADERS = ["grpc-timeout", "connect-timeout-ms"];

/**
 * The server's default deadline (CANOPY_DEFAULT_DEADLINE_MS) for unary calls that arrive without one:
 * the handler's signal aborts with DEADLINE_EXCEEDED after `ms`, exactly as it would for a client's
 * deadline, and the domain stops at its next signal check (between storage calls; a transaction already
 * running commits). A client's own deadline, longer or shorter, is left alone. Streams get none: a
 * BulkCreateAssignments import lasts as long as its client keeps sending. `ms` 0 turns it off.
 */
export function deadlineInterceptor(ms: number): Interceptor {
  return (next) => async (req) => {
    if (ms <= 0 || req.stream || TIMEOUT_HEADERS.some((h) => req.header.has(h))) return next(req);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new ConnectError(`the call took longer than the server's default deadline of ${ms} ms`, Code.DeadlineExceeded)), ms);
    const follow = () => controller.abort(req.signal.reason);
    if (req.signal.aborted) follow();
    else req.signal.addEventListener("abort", follow, { once: true });
    try {
      // the handler (and every interceptor after this one) reads its signal from the request
      return await next({ ...req, signal: controller.signal });
    } finally {
      clearTimeout(timer);
      req.signal.removeEventListener("abort", follow);
    }
  };
}
