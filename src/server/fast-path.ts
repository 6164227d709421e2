import type * as http from "node:http";
import type * as http2 from "node:http2";
import { performance } from "node:perf_hooks";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes, parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { Logger } from "../domain/runtime.js";
import type { HeaderGetter } from "../api/call.js";
import { toConnectError } from "../api/errors.js";
import type { FastUnaryMethod, UnaryCall } from "../api/fast-unary.js";
import { REQUEST_ID_HEADER, requestIdOf, type MethodObserver, type RpcObserver } from "./observability.js";

/**
 * The fast path: a few hot unary RPCs (Check, CheckBulk, the bench echo) answered straight from the
 * node:http2 stream (or the HTTP/1.1 request), in front of the Connect adapter on the same port. It
 * exists because Connect-node's per-call machinery (AbortSignals, async iterables, Headers objects)
 * costs more than a check (docs/PERFORMANCE-NOTES.md). It is only a transport: the rules are the
 * functions the Connect interceptors and handlers call (src/api/fast-unary.ts).
 *
 * It takes a request only when the headers alone show a plain call: POST to a fast path, gRPC
 * (`application/grpc` / `application/grpc+proto`, HTTP/2) or Connect unary with binary proto
 * (`application/proto`), no request compression, a well-formed timeout. Everything else — JSON, gRPC-Web,
 * compression, GET, other paths, malformed protocol headers — goes to the Connect adapter untouched.
 * Once taken, every client-visible byte (status, content type, body, trailers, error metadata, and the
 * errors Connect raises for bodies: size limit, bad envelopes, malformed protobuf) is what Connect
 * would send; test/e2e/fast-path.test.ts compares the two. Responses are never compressed.
 */
export interface FastPath {
  /** Answers an HTTP/2 stream and returns true, or returns false having touched nothing. */
  stream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
  /** The same for an HTTP/1.1 request (Connect unary only; gRPC needs HTTP/2). */
  request(req: http.IncomingMessage, res: http.ServerResponse): boolean;
  /** calls taken so far (tests prove with it which path answered) */
  readonly calls: number;
}

type Protocol = "grpc" | "connect";

const GRPC_CONTENT_TYPE = "application/grpc+proto";
const CONNECT_CONTENT_TYPE = "application/proto";
const JSON_CONTENT_TYPE = "application/json";
/** the options the Connect adapter uses for error bodies (server.ts) */
const JSON_OPTIONS = { alwaysEmitImplicit: true };
const NO_TIMEOUT_LIMIT = Number.MAX_SAFE_INTEGER;

type RawHeaders = Record<string, string | string[] | undefined>;

const isIdentity = (v: string | string[] | undefined) => v === undefined || v === "identity";

/** The protocol of a request the fast path may take, from its headers only; undefined = Connect's. */
function protocolOf(h: RawHeaders, http2: boolean): Protocol | undefined {
  const type = h["content-type"];
  if (http2 && (type === "application/grpc" || type === "application/grpc+proto")) {
    return isIdentity(h["grpc-encoding"]) && isIdentity(h["content-encoding"]) ? "grpc" : undefined;
  }
  if (type === CONNECT_CONTENT_TYPE) {
    const version = h["connect-protocol-version"];
    return isIdentity(h["content-encoding"]) && (version === undefined || version === "1") ? "connect" : undefined;
  }
  return undefined;
}

/** The call's timeout in ms (undefined = none), or null when the header is malformed (Connect answers that). */
function timeoutOf(h: RawHeaders, protocol: Protocol): number | undefined | null {
  const raw = h[protocol === "grpc" ? "grpc-timeout" : "connect-timeout-ms"];
  if (raw === undefined) return undefined;
  if (typeof raw !== "string") return null;
  const t = protocol === "grpc" ? parseGrpcTimeout(raw, NO_TIMEOUT_LIMIT) : parseConnectTimeout(raw, NO_TIMEOUT_LIMIT);
  return t.error ? null : t.timeoutMs;
}

/** Strips HTTP whitespace as the Headers class does. */
function httpTrim(v: string): string {
  return /^[\t\n\r ]|[\t\n\r ]$/.test(v) ? v.replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "") : v;
}

function headerGetter(h: RawHeaders): HeaderGetter {
  return (name) => {
    const v = h[name];
    return v === undefined ? null : httpTrim(typeof v === "string" ? v : v.join(", "));
  };
}

/** Per-call state: the lazily created signal, aborted by the deadline or by the client going away. */
class Call implements UnaryCall {
  private controller: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  closed = false;
  readonly header: HeaderGetter;
  /** metrics and request log of the call's method, until its outcome is reported (src/server/observability.ts) */
  private stats: MethodObserver | undefined;
  private started = 0;
  private peer: string | undefined;
  requestId = "";
  /**
   * Set once the request is decoded and handed to the method, where Connect's interceptors would run:
   * from then on the answer carries `x-request-id` (header on success, error metadata on failure), as
   * the Connect adapter's would; body errors before it do not.
   */
  echo = false;

  constructor(
    headers: RawHeaders,
    /** performance.now() at which the deadline passes */
    private readonly deadline: number | undefined,
  ) {
    this.header = headerGetter(headers);
  }

  signal = (): AbortSignal => {
    if (this.controller) return this.controller.signal;
    const controller = (this.controller = new AbortController());
    if (this.closed) controller.abort(new ConnectError("the client closed the stream", Code.Canceled));
    else if (this.deadline !== undefined) {
      const left = this.deadline - performance.now();
      const expire = () => controller.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
      if (left <= 0) expire();
      else this.timer = setTimeout(expire, left);
    }
    return controller.signal;
  };

  close(): void {
    this.closed = true;
    this.controller?.abort(new ConnectError("the client closed the stream", Code.Canceled));
    this.done();
    this.finish(Code.Canceled);
  }

  /** Starts observing the call: counts it as started, takes or makes its request id. */
  observe(stats: MethodObserver, peer: string | undefined): void {
    this.stats = stats;
    this.started = performance.now();
    this.requestId = requestIdOf(this.header(REQUEST_ID_HEADER));
    this.peer = peer;
    stats.started();
  }

  /** Reports the call's outcome once (the first report wins: a client gone before the answer is CANCELED). */
  finish(code: number): void {
    const stats = this.stats;
    if (stats === undefined) return;
    this.stats = undefined;
    stats.handled(code, performance.now() - this.started, this.requestId, this.peer, "fast");
  }

  done(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * Collects a request body the way Connect reads it, failing at the same point with the same error:
 * gRPC — length-prefixed envelopes, each at most `max` bytes, exactly one, uncompressed; Connect unary —
 * the raw body, at most `max` bytes, matching `content-length` when given.
 */
class BodyReader {
  private chunks: Buffer[] = [];
  private size = 0;
  /** bytes needed before the next gRPC decision */
  private need = 5;
  /** the first gRPC envelope's payload, once complete */
  private first: Uint8Array | undefined;
  /** where the first envelope ends */
  private firstEnd = 0;
  private secondChecked = false;
  message: unknown;

  constructor(
    private readonly protocol: Protocol,
    private readonly method: FastUnaryMethod,
    private readonly max: number,
    private readonly lengthHint: number | undefined,
  ) {}

  /** An error that ends the call now, or undefined to keep reading. */
  start(): ConnectError | undefined {
    if (this.protocol === "connect" && this.lengthHint !== undefined && this.lengthHint > this.max) {
      return new ConnectError(`message size ${this.lengthHint} is larger than configured readMaxBytes ${this.max}`, Code.ResourceExhausted);
    }
    return undefined;
  }

  data(chunk: Buffer): ConnectError | undefined {
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.protocol === "connect") {
      if (this.lengthHint !== undefined) {
        if (this.size > this.lengthHint) return new ConnectError(`protocol error: promised ${this.lengthHint} bytes, received ${this.size}`, Code.InvalidArgument);
      } else if (this.size > this.max) {
        return new ConnectError(`message size is larger than configured readMaxBytes ${this.max}`, Code.ResourceExhausted);
      }
      return undefined;
    }
    if (this.size < this.need || this.secondChecked) return undefined;
    try {
      return this.scan();
    } catch (e) {
      return ConnectError.from(e);
    }
  }

  /** The decoded request, or the error Connect raises at the end of the body. */
  end(): ConnectError | undefined {
    try {
      if (this.protocol === "connect") {
        if (this.lengthHint !== undefined && this.size < this.lengthHint) {
          return new ConnectError(`protocol error: promised ${this.lengthHint} bytes, received ${this.size}`, Code.InvalidArgument);
        }
        this.message = this.method.decode(this.bytes());
        return undefined;
      }
      if (this.first === undefined) {
        return this.size === 0
          ? new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented)
          : new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
      }
      if (this.size > this.firstEnd) return new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
      return undefined;
    } catch (e) {
      return ConnectError.from(e);
    }
  }

  private bytes(): Buffer {
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks, this.size)];
    return this.chunks[0];
  }

  /** gRPC: decides what the bytes so far allow, in Connect's order (size, compression, parse, extra message). */
  private scan(): ConnectError | undefined {
    const buf = this.bytes();
    if (this.first === undefined) {
      const length = buf.readUInt32BE(1);
      if (length > this.max) return new ConnectError(`message size ${length} is larger than configured readMaxBytes ${this.max}`, Code.ResourceExhausted);
      if (buf.length < 5 + length) {
        this.need = 5 + length;
        return undefined;
      }
      if ((buf[0] & 1) === 1) return new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
      this.first = buf.subarray(5, 5 + length);
      this.firstEnd = 5 + length;
      this.message = this.method.decode(this.first);
      this.need = this.firstEnd + 5;
      if (buf.length < this.need) return undefined;
    }
    const at = this.firstEnd;
    const length = buf.readUInt32BE(at + 1);
    if (length > this.max) return new ConnectError(`message size ${length} is larger than configured readMaxBytes ${this.max}`, Code.ResourceExhausted);
    if (buf.length < at + 5 + length) {
      this.need = at + 5 + length;
      return undefined;
    }
    this.secondChecked = true;
    if ((buf[at] & 1) === 1) return new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
    this.method.decode(buf.subarray(at + 5, at + 5 + length));
    return new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented);
  }
}

/** What each transport does to send an answer. */
interface Responder {
  ok(body: Uint8Array): void;
  error(err: ConnectError): void;
}

/**
 * Runs one call once its headers were accepted: reads the body, decodes, runs the method, answers.
 * No error path answers anything but an error.
 */
function exchange(
  method: FastUnaryMethod,
  reader: BodyReader,
  call: Call,
  source: NodeJS.EventEmitter,
  respond: Responder,
  logger: Logger,
): void {
  let finished = false;
  const fail = (err: unknown) => {
    if (finished) return;
    finished = true;
    call.done();
    const e = toConnectError(err, logger, method.procedure);
    if (call.echo) e.metadata.set(REQUEST_ID_HEADER, call.requestId);
    call.finish(e.code);
    respond.error(e);
  };
  const early = reader.start();
  if (early) {
    fail(early);
    // keep draining what the client still sends; the answer is already decided
    source.on("data", () => undefined);
    return;
  }
  const onData = (chunk: Buffer) => {
    if (finished) return;
    const err = reader.data(chunk);
    if (err) fail(err);
  };
  source.on("data", onData);
  source.once("end", () => {
    if (finished) return;
    const err = reader.end();
    if (err) return fail(err);
    call.echo = call.requestId !== "";
    method.run(reader.message, call).then(
      (body) => {
        if (finished) return;
        finished = true;
        call.done();
        call.finish(0);
        respond.ok(body);
      },
      fail,
    );
  });
}

/** A gRPC length-prefixed message: flag 0 (uncompressed), u32 BE length, bytes. */
function grpcFrame(body: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = 0;
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  return frame;
}

function headersToObject(h: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  h.forEach((v, k) => (out[k] = v));
  return out;
}

/** The Connect unary error response: HTTP status from the code, JSON body, metadata as headers. */
function connectError(err: ConnectError): { status: number; headers: Record<string, string>; body: Uint8Array } {
  const body = errorToJsonBytes(err, JSON_OPTIONS);
  const headers: Record<string, string> = { "content-type": JSON_CONTENT_TYPE };
  err.metadata.forEach((v, k) => (headers[k] = v));
  headers["content-length"] = String(body.byteLength);
  return { status: codeToHttpStatus(err.code), headers, body };
}

function h2Responder(stream: http2.ServerHttp2Stream, protocol: Protocol, call: Call): Responder {
  const gone = () => call.closed || stream.destroyed || stream.closed;
  const safely = (f: () => void) => {
    if (gone()) return;
    try {
      f();
    } catch {
      // the stream went away between the check and the write: nothing left to tell the client
    }
  };
  if (protocol === "grpc") {
    const send = (body: Uint8Array | undefined, trailers: Record<string, string>) =>
      safely(() => {
        // on success Connect sends the interceptor's x-request-id as a header; on failure it is in the trailers
        const head = body && call.echo ? { ":status": 200, "content-type": GRPC_CONTENT_TYPE, [REQUEST_ID_HEADER]: call.requestId } : { ":status": 200, "content-type": GRPC_CONTENT_TYPE };
        stream.respond(head, { waitForTrailers: true });
        stream.once("wantTrailers", () => safely(() => stream.sendTrailers(trailers)));
        if (body) stream.end(grpcFrame(body));
        else stream.end();
      });
    return {
      ok: (body) => send(body, { "grpc-status": "0" }),
      error: (err) => send(undefined, headersToObject(setTrailerStatus(new Headers(), err))),
    };
  }
  return {
    ok: (body) => safely(() => {
      const head: Record<string, string | number> = { ":status": 200, "content-type": CONNECT_CONTENT_TYPE, "content-length": String(body.byteLength) };
      if (call.echo) head[REQUEST_ID_HEADER] = call.requestId;
      stream.respond(head);
      stream.end(body);
    }),
    error: (err) => safely(() => {
      const r = connectError(err);
      stream.respond({ ":status": r.status, ...r.headers });
      stream.end(r.body);
    }),
  };
}

function lengthHintOf(v: string | string[] | undefined): number | undefined {
  if (typeof v !== "string") return undefined;
  const n = parseInt(v, 10);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

export function createFastPath(deps: { methods: Map<string, FastUnaryMethod>; logger: Logger; maxRequestBytes: number; defaultDeadlineMs?: number; observer?: RpcObserver }): FastPath {
  const { methods, logger, maxRequestBytes, observer } = deps;
  // each method's metrics and log fields, bound once (the Connect interceptor's per-method observer)
  const statsOf = new Map<FastUnaryMethod, MethodObserver>();
  if (observer) {
    for (const m of methods.values()) {
      if (m.bare) continue;
      const slash = m.procedure.indexOf("/");
      statsOf.set(m, observer.method(m.procedure.slice(0, slash), m.procedure.slice(slash + 1), "unary"));
    }
  }
  // a call without a timeout header gets the server's default deadline (0 = none); the timer starts only if the call waits
  const deadlineOf = (timeout: number | undefined) => {
    const ms = timeout ?? (deps.defaultDeadlineMs || undefined);
    return ms === undefined ? undefined : performance.now() + ms;
  };
  let calls = 0;
  return {
    get calls() {
      return calls;
    },
    stream(stream, headers) {
      if (headers[":method"] !== "POST") return false;
      const method = methods.get(headers[":path"] as string);
      if (!method) return false;
      const protocol = protocolOf(headers, true);
      if (!protocol) return false;
      const timeout = timeoutOf(headers, protocol);
      if (timeout === null) return false;
      calls++;
      const call = new Call(headers, deadlineOf(timeout));
      const stats = statsOf.get(method);
      if (stats) call.observe(stats, observer!.logs ? stream.session?.socket?.remoteAddress : undefined);
      stream.on("error", () => undefined);
      stream.once("close", () => call.close());
      const hint = protocol === "connect" ? lengthHintOf(headers["content-length"]) : undefined;
      exchange(method, new BodyReader(protocol, method, maxRequestBytes, hint), call, stream, h2Responder(stream, protocol, call), logger);
      return true;
    },

    request(req, res) {
      if (req.method !== "POST" || req.url === undefined) return false;
      const method = methods.get(req.url);
      if (!method) return false;
      const protocol = protocolOf(req.headers, false);
      if (protocol !== "connect") return false;
      const timeout = timeoutOf(req.headers, protocol);
      if (timeout === null) return false;
      calls++;
      const call = new Call(req.headers, deadlineOf(timeout));
      const stats = statsOf.get(method);
      if (stats) call.observe(stats, observer!.logs ? req.socket.remoteAddress : undefined);
      res.once("close", () => {
        if (!res.writableFinished) call.close();
      });
      req.on("error", () => undefined);
      const send = (status: number, headers: Record<string, string>, body: Uint8Array) => {
        if (call.closed || res.destroyed) return;
        try {
          res.writeHead(status, headers);
          res.end(body);
        } catch {
          // the connection went away between the check and the write: nothing left to tell the client
        }
      };
      exchange(method, new BodyReader(protocol, method, maxRequestBytes, lengthHintOf(req.headers["content-length"])), call, req, {
        ok: (body) =>
          send(
            200,
            call.echo
              ? { "content-type": CONNECT_CONTENT_TYPE, "content-length": String(body.byteLength), [REQUEST_ID_HEADER]: call.requestId }
              : { "content-type": CONNECT_CONTENT_TYPE, "content-length": String(body.byteLength) },
            body,
          ),
        error(err) {
          const r = connectError(err);
          send(r.status, r.headers, r.body);
        },
      }, logger);
      return true;
    },
  };
}
