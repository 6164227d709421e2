import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { FastPath } from "./fast-path.js";

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** How long a new connection may take to send enough bytes to tell HTTP/2 from HTTP/1.1. */
const SNIFF_TIMEOUT_MS = 10_000;

/**
 * One TCP port for HTTP/2 cleartext (gRPC, Connect, gRPC-Web) and HTTP/1.1 (Connect, gRPC-Web,
 * REST). Node's `allowHTTP1` only works with TLS, so a small sniffer reads the first bytes of each
 * connection: the HTTP/2 client preface goes to the http2 server, anything else to the http1 server.
 */
export interface DualServer {
  readonly http1: http.Server;
  readonly http2: http2.Http2Server;
  readonly tcp: net.Server;
  listen(port: number, host: string): Promise<net.AddressInfo>;
  /** stops accepting, lets in-flight requests finish for up to `graceMs`, then destroys what is left */
  close(graceMs?: number): Promise<void>;
}

/** Requests `fastPath` declines, and every request when there is none, go to `handler`. */
export function createDualServer(handler: Handler, fastPath?: FastPath): DualServer {
  const h1 = http.createServer(
    fastPath ? (req, res) => void (fastPath.request(req, res) || handler(req, res)) : (handler as http.RequestListener),
  );
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
  const sockets = new Set<net.Socket>();
  let closing = false;
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });

  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    // small RPC frames must not wait for Nagle's algorithm
    socket.setNoDelay(true);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    if (closing) {
      socket.destroy();
      return;
    }
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
      socket.pause();
      socket.unshift(seen);
      // The http2 session drains what is buffered on the socket and then reads the handle natively;
      // the http1 server reads through the stream, which must flow again.
      (isH2 ? h2 : h1).emit("connection", socket);
      if (!isH2) socket.resume();
    };
    socket.on("data", onData);
  });

  return {
    http1: h1,
    http2: h2,
    tcp,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(port, host, () => {
          tcp.off("error", reject);
          // http.Server tracks connections (for closeIdleConnections) only once it has emitted
          // 'listening'; it never listens itself here, the sniffer hands it sockets.
          h1.emit("listening");
          resolve(tcp.address() as net.AddressInfo);
        });
      });
    },
    async close(graceMs = 10_000) {
      closing = true;
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      for (const s of sessions) s.close();
      h1.closeIdleConnections();
      const timer = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, graceMs);
      timer.unref();
      h1.close();
      await closed;
      clearTimeout(timer);
    },
  };
}
