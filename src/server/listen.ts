import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { FastPath } from "./fast-path.js";

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** How long a new connection may take to send enough bytes to tell HTTP/2 from HTTP/1.1. */
const SNIFF_TIMEOUT_MS = 10_000;
/** After the grace period: how long cancelled calls get to send their final status before connections are cut. */
export const CANCEL_WINDOW_MS = 1_000;
/**
 * How long an HTTP/2 client gets to close a connection itself after the drain's GOAWAY before the server
 * closes it (idle ones at once, busy ones after their last stream). Closing first would race the
 * client's last frames (its SETTINGS ACK, a PING) and reset the connection instead of ending it.
 */
const GOAWAY_WINDOW_MS = 1_000;

/** How a draining server treats the requests still running. */
export interface DrainOptions {
  /** how long in-flight requests (and streams) may take to finish on their own, in ms */
  graceMs: number;
  /**
   * Called when the grace period ends with requests still running: cancel them (their handlers' signals
   * abort and they answer with an error). Connections still open CANCEL_WINDOW_MS later are destroyed.
   */
  onGraceExpired?: () => void;
}

/**
 * One listening socket — a TCP port, and optionally a Unix domain socket — for HTTP/2 cleartext (gRPC,
 * Connect, gRPC-Web) and HTTP/1.1 (Connect, gRPC-Web, REST). Node's `allowHTTP1` only works with TLS,
 * so a small sniffer reads the first bytes of each connection: the HTTP/2 client preface goes to the
 * http2 server, anything else to the http1 server. Every listener feeds the same two servers.
 */
export interface DualServer {
  readonly http1: http.Server;
  readonly http2: http2.Http2Server;
  /** listens on a TCP port (0 picks a free one); resolves with the bound address */
  listen(port: number, host: string): Promise<net.AddressInfo>;
  /**
   * Listens on a Unix domain socket at `path`, with permissions `mode` (e.g. 0o660). A socket file
   * nobody listens on (left by a killed process) is replaced; a live one, or a file that is not a
   * socket, is an error. The file is removed again by `close()`.
   */
  listenUnix(path: string, mode: number): Promise<void>;
  /**
   * Graceful shutdown: stops accepting connections at once; HTTP/2 sessions get GOAWAY (streams already
   * open continue, new ones are refused; the server closes each after its last stream, giving the client
   * GOAWAY_WINDOW_MS to close it first); idle HTTP/1.1 connections are closed, busy ones answer their
   * current request with `connection: close`, and a request still arriving is answered 503. In-flight
   * requests may finish for up to `graceMs`; then `onGraceExpired` cancels them and, CANCEL_WINDOW_MS
   * later, whatever is still connected is destroyed. Resolves once every connection is gone.
   */
  close(opts?: DrainOptions): Promise<void>;
}

/** Requests `fastPath` declines, and every request when there is none, go to `handler`. */
export function createDualServer(handler: Handler, fastPath?: FastPath): DualServer {
  let draining = false;
  /** HTTP/1.1 responses not yet finished: told `connection: close` when the drain starts */
  const busy1 = new Set<http.ServerResponse>();
  const serve1: http.RequestListener = fastPath ? (req, res) => void (fastPath.request(req, res) || handler(req, res)) : (handler as http.RequestListener);
  const h1 = http.createServer((req, res) => {
    if (draining) return refuse(res);
    busy1.add(res);
    res.once("close", () => busy1.delete(res));
    serve1(req, res);
  });
  h1.keepAliveTimeout = 65_000;
  const h2 = http2.createServer({}, handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void);
  if (fastPath) {
    // The request handler above made http2 install its compatibility layer (Http2ServerRequest /
    // Http2ServerResponse) as a 'stream' listener; the fast path sees each stream first and hands the
    // ones it declines to that listener unchanged.
    const compat = h2.listeners("stream") as Array<(...args: unknown[]) => void>;
    h2.removeAllListeners("stream");
    h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) => {
      if (fastPath.stream(stream, headers)) return;
      for (const listener of compat) listener.call(h2, stream, headers, ...rest);
    });
  }
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
    // handed over while the drain began: GOAWAY, and closed as soon as it is idle
    if (draining) s.close();
  });

  /** every accepted connection until it closes; `sniffing` those not yet handed to a server */
  const sockets = new Set<net.Socket>();
  const sniffing = new Set<net.Socket>();
  /** resolved when the last connection closes (drain) */
  const idleWaiters = new Set<() => void>();
  const listeners: net.Server[] = [];

  const accept = (socket: net.Socket) => {
    if (draining) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    sniffing.add(socket);
    // small RPC frames must not wait for Nagle's algorithm (a no-op on Unix sockets)
    socket.setNoDelay(true);
    socket.on("close", () => {
      sockets.delete(socket);
      sniffing.delete(socket);
      if (sockets.size === 0) for (const wake of [...idleWaiters]) wake();
    });
    socket.on("error", () => socket.destroy());
    let seen = Buffer.alloc(0);
    // A connection that never sends enough to tell its protocol is dropped instead of held forever.
    const sniffTimer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
    sniffTimer.unref();
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const isH2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (isH2 && seen.length < PREFACE.length) return; // wait for the whole preface
      clearTimeout(sniffTimer);
      socket.off("data", onData);
      sniffing.delete(socket);
      socket.pause();
      socket.unshift(seen);
      // The http2 session drains what is buffered on the socket and then reads the handle natively;
      // the http1 server reads through the stream, which must flow again.
      (isH2 ? h2 : h1).emit("connection", socket);
      if (!isH2) socket.resume();
    };
    socket.on("data", onData);
  };

  /** Resolves true once no connection is left, or false after `ms`. */
  const allClosed = (ms: number) =>
    new Promise<boolean>((resolve) => {
      if (sockets.size === 0) return resolve(true);
      const wake = () => {
        clearTimeout(timer);
        idleWaiters.delete(wake);
        resolve(true);
      };
      const timer = setTimeout(() => {
        idleWaiters.delete(wake);
        resolve(false);
      }, ms);
      idleWaiters.add(wake);
    });

  let closing: Promise<void> | undefined;
  return {
    http1: h1,
    http2: h2,
    async listen(port, host) {
      const server = net.createServer(accept);
      await listenOn(server, (cb) => server.listen(port, host, cb));
      listeners.push(server);
      // http.Server tracks connections (for closeIdleConnections) only once it has emitted
      // 'listening'; it never listens itself here, the sniffer hands it sockets.
      if (listeners.length === 1) h1.emit("listening");
      return server.address() as net.AddressInfo;
    },
    async listenUnix(path, mode) {
      await removeStaleSocket(path);
      const server = net.createServer(accept);
      await listenOn(server, (cb) => server.listen(path, cb));
      // the socket is created with the process umask; narrow (or widen) it before anyone relies on it
      chmodSync(path, mode);
      listeners.push(server);
      if (listeners.length === 1) h1.emit("listening");
    },
    close(opts = { graceMs: 10_000 }) {
      closing ??= (async () => {
        draining = true;
        // stop accepting; a Unix listener removes its socket file as it closes
        const stopped = Promise.all(listeners.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
        for (const s of sniffing) s.destroy();
        // GOAWAY (NO_ERROR, the last stream already received): clients open no new stream here and close
        // the connection once their streams are done; those that do not are closed a moment later
        for (const s of sessions) if (!s.destroyed && !s.closed) s.goaway(http2.constants.NGHTTP2_NO_ERROR);
        const closeSessions = setTimeout(() => {
          for (const s of sessions) s.close();
        }, Math.min(GOAWAY_WINDOW_MS, opts.graceMs));
        for (const res of busy1) if (!res.headersSent) res.shouldKeepAlive = false;
        h1.closeIdleConnections();
        if (!(await allClosed(opts.graceMs))) {
          opts.onGraceExpired?.();
          if (!(await allClosed(CANCEL_WINDOW_MS))) for (const s of sockets) s.destroy();
        }
        clearTimeout(closeSessions);
        await stopped;
        h1.close();
      })();
      return closing;
    },
  };
}

/** An HTTP/1.1 request arriving on an open connection while the server drains: 503, then the connection closes. */
function refuse(res: http.ServerResponse): void {
  const body = JSON.stringify({ code: "unavailable", message: "the server is shutting down; retry on another replica" });
  res.shouldKeepAlive = false;
  res.writeHead(503, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), "retry-after": "1" });
  res.end(body);
}

function listenOn(server: net.Server, listen: (cb: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    listen(() => {
      server.off("error", reject);
      resolve();
    });
  });
}

/**
 * Removes the socket file at `path` if nothing listens on it (a previous process was killed before it
 * could remove it). A live socket, or a path that is not a socket, is left alone and reported.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  if (!isSocket) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve, reject) => {
    const probe = net.connect(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNREFUSED" || err.code === "ENOENT") resolve(false);
      else reject(err);
    });
  });
  if (live) throw new Error(`another process is listening on ${path}`);
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}
