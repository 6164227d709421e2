/**
 * An independent protobuf/gRPC stack for the wire-compatibility tests: the .proto contract is parsed
 * at run time by @grpc/proto-loader (protobufjs) and spoken over @grpc/grpc-js — no code shared with
 * the server's generated @bufbuild/protobuf types. Field names stay snake_case (keepCase), int64 come
 * back as decimal strings and enums as their names, as a polyglot client would see them.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

export const PROTO_DIR = fileURLToPath(new URL("../../proto", import.meta.url));

export const SERVICES = ["CheckService", "AssignmentService", "HierarchyService", "CatalogService", "IdentityService", "AdminService"] as const;
export type ServiceName = (typeof SERVICES)[number];

/* eslint-disable @typescript-eslint/no-explicit-any */
type Ctor = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions) => grpc.Client;

let loaded: Record<ServiceName, Ctor> | undefined;

/** Loads every canopy/v1/*.proto with proto-loader; google WKTs resolve from protobufjs. */
export function loadCanopyProtos(): Record<ServiceName, Ctor> {
  if (loaded) return loaded;
  const dir = join(PROTO_DIR, "canopy", "v1");
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".proto"))
    .map((f) => `canopy/v1/${f}`);
  const definition = protoLoader.loadSync(files, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [PROTO_DIR],
  });
  const pkg = grpc.loadPackageDefinition(definition) as any;
  const out = {} as Record<ServiceName, Ctor>;
  for (const s of SERVICES) {
    const ctor = pkg.canopy.v1[s];
    if (typeof ctor !== "function") throw new Error(`service canopy.v1.${s} not found in the proto contract`);
    out[s] = ctor as Ctor;
  }
  loaded = out;
  return out;
}

/** An error from a grpc-js call: code, details text and trailing metadata. */
export interface GrpcError extends Error {
  code: grpc.status;
  details: string;
  metadata: grpc.Metadata;
}

export interface GrpcJsClients {
  raw: Record<ServiceName, grpc.Client & Record<string, any>>;
  metadata(): grpc.Metadata;
  /** a unary call: resolves with the response object, rejects with a GrpcError */
  call<T = any>(service: ServiceName, method: string, request: object): Promise<T>;
  /** like call, but resolves with the error (and fails the test if the call succeeded) */
  fail(service: ServiceName, method: string, request: object): Promise<GrpcError>;
  close(): void;
}

/** Builds grpc-js clients for every service, sending `key` as x-api-key (and optional extra headers). */
export function grpcJsClients(port: number, key: string | undefined, extraHeaders: Record<string, string> = {}): GrpcJsClients {
  const ctors = loadCanopyProtos();
  const target = `127.0.0.1:${port}`;
  const creds = grpc.credentials.createInsecure();
  const raw = {} as Record<ServiceName, grpc.Client & Record<string, any>>;
  for (const s of SERVICES) raw[s] = new ctors[s](target, creds) as grpc.Client & Record<string, any>;
  const metadata = () => {
    const md = new grpc.Metadata();
    if (key !== undefined) md.set("x-api-key", key);
    for (const [k, v] of Object.entries(extraHeaders)) md.set(k, v);
    return md;
  };
  const call = <T>(service: ServiceName, method: string, request: object): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const client = raw[service];
      if (typeof client[method] !== "function") {
        reject(new Error(`no method ${service}.${method}`));
        return;
      }
      client[method](request, metadata(), { deadline: Date.now() + 30_000 }, (err: GrpcError | null, res: T) => (err ? reject(err) : resolve(res)));
    });
  return {
    raw,
    metadata,
    call,
    async fail(service, method, request) {
      try {
        const res = await call(service, method, request);
        throw new Error(`${service}.${method} unexpectedly succeeded: ${JSON.stringify(res)}`);
      } catch (err) {
        if ((err as GrpcError).code === undefined) throw err;
        return err as GrpcError;
      }
    },
    close() {
      for (const s of SERVICES) raw[s].close();
    },
  };
}

/** google.protobuf.Timestamp for epoch ms, in proto-loader's object form. */
export function tsOf(ms: number): { seconds: string; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds: String(seconds), nanos: (ms - seconds * 1000) * 1_000_000 };
}

/** epoch ms of a proto-loader Timestamp (seconds as a string because of longs: String). */
export function msOfTs(t: { seconds: string | number; nanos: number } | null | undefined): number | null {
  if (!t) return null;
  return Number(t.seconds) * 1000 + Math.floor(t.nanos / 1_000_000);
}
