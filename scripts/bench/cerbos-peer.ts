import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { create, createFileRegistry, fromJson, type DescMessage, type DescService, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
  file_google_protobuf_struct,
  ValueSchema,
} from "@bufbuild/protobuf/wkt";
import type { Workload, WorkloadCheck } from "./workload.js";

/**
 * Cerbos (a Go policy decision point) as an out-of-process peer: installed from npm into a scratch
 * directory at bench time (never a dependency of Canopy), fed policies derived from the workload, and
 * spoken to over gRPC `cerbos.svc.v1.CerbosService/CheckResources`.
 *
 * Cerbos is stateless, so hierarchical RBAC is modelled as in ../shared/peers-RESULTS.md: the caller
 * sends the identity's assignments (role, node, window) as the principal attribute `g` and the
 * checked node's path to the root as the resource attribute `path`; one derived role per workload
 * role holds when some assignment of that role sits on the path and is active; one resource policy
 * maps each permission (action) to the derived roles whose role grants it. One difference: the
 * evaluation instant travels as the resource attribute `at` (the workload's fixed instant) instead
 * of Cerbos's `now()`, so Cerbos answers the same questions as the oracle whatever the wall clock.
 * Looking up the assignments and the path on the caller's side is not part of the measured time.
 */

export const CERBOS_VERSION = "0.55.0";
export const CERBOS_SCRATCH = "/tmp/canopy-bench-peers";
const BINARY = join(CERBOS_SCRATCH, "node_modules", "@cerbos", "cerbos-linux-x64", "cerbos-linux-x64");
/** stands for "no end" in an assignment window (year 33658) */
const NO_END = 1e15;

/**
 * The subset of Cerbos's public API the benchmark speaks, built at run time (no codegen, nothing in
 * proto/): field numbers and types follow cerbos/request/v1, cerbos/engine/v1 and cerbos/response/v1,
 * so the bytes on the wire are Cerbos's own. Maps are declared as repeated key/value entries, which
 * is the same encoding.
 */
function cerbosRegistry() {
  const f = (name: string, number: number, type: Type, opts: { repeated?: boolean; typeName?: string } = {}) => ({
    name,
    number,
    type,
    label: opts.repeated ? Label.REPEATED : Label.OPTIONAL,
    typeName: opts.typeName,
    jsonName: name.replace(/_(\w)/g, (_, c: string) => c.toUpperCase()),
  });
  const P = ".cerbos.svc.v1.";
  const file = create(FileDescriptorProtoSchema, {
    name: "canopy-bench/cerbos-subset.proto",
    package: "cerbos.svc.v1",
    dependency: ["google/protobuf/struct.proto"],
    syntax: "proto3",
    messageType: [
      { name: "AttrEntry", field: [f("key", 1, Type.STRING), f("value", 2, Type.MESSAGE, { typeName: ".google.protobuf.Value" })] },
      {
        name: "Principal",
        field: [f("id", 1, Type.STRING), f("policy_version", 2, Type.STRING), f("roles", 3, Type.STRING, { repeated: true }), f("attr", 4, Type.MESSAGE, { repeated: true, typeName: `${P}AttrEntry` })],
      },
      {
        name: "Resource",
        field: [f("kind", 1, Type.STRING), f("policy_version", 2, Type.STRING), f("id", 3, Type.STRING), f("attr", 4, Type.MESSAGE, { repeated: true, typeName: `${P}AttrEntry` })],
      },
      { name: "ResourceEntry", field: [f("actions", 1, Type.STRING, { repeated: true }), f("resource", 2, Type.MESSAGE, { typeName: `${P}Resource` })] },
      {
        name: "CheckResourcesRequest",
        field: [f("request_id", 1, Type.STRING), f("principal", 3, Type.MESSAGE, { typeName: `${P}Principal` }), f("resources", 4, Type.MESSAGE, { repeated: true, typeName: `${P}ResourceEntry` })],
      },
      { name: "EffectEntry", field: [f("key", 1, Type.STRING), f("value", 2, Type.INT32)] },
      { name: "ResultResource", field: [f("id", 1, Type.STRING), f("kind", 2, Type.STRING)] },
      { name: "ResultEntry", field: [f("resource", 1, Type.MESSAGE, { typeName: `${P}ResultResource` }), f("actions", 2, Type.MESSAGE, { repeated: true, typeName: `${P}EffectEntry` })] },
      { name: "CheckResourcesResponse", field: [f("request_id", 1, Type.STRING), f("results", 2, Type.MESSAGE, { repeated: true, typeName: `${P}ResultEntry` })] },
    ],
    service: [{ name: "CerbosService", method: [{ name: "CheckResources", inputType: `${P}CheckResourcesRequest`, outputType: `${P}CheckResourcesResponse` }] }],
  });
  const registry = createFileRegistry(file, (name) => (name === "google/protobuf/struct.proto" ? file_google_protobuf_struct : undefined));
  const message = (name: string) => registry.getMessage(`cerbos.svc.v1.${name}`)!;
  return {
    service: registry.getService("cerbos.svc.v1.CerbosService")!,
    request: message("CheckResourcesRequest"),
    response: message("CheckResourcesResponse"),
  };
}

let cached: ReturnType<typeof cerbosRegistry> | undefined;
export function cerbosSchemas(): { service: DescService; request: DescMessage; response: DescMessage } {
  return (cached ??= cerbosRegistry());
}

/** Effect of the one action of the one resource in a CheckResources response: allowed or not. */
export function cerbosAllowed(response: unknown, permission: string): boolean {
  const r = response as { results: Array<{ actions: Array<{ key: string; value: number }> }> };
  return r.results[0]?.actions.some((a) => a.key === permission && a.value === 1) ?? false;
}

/** Builds CheckResources requests for workload checks: the facts Cerbos needs travel in each request. */
export function cerbosRequestBuilder(w: Workload): (c: WorkloadCheck) => MessageShape<DescMessage> {
  const { request } = cerbosSchemas();
  const parent = new Map(w.nodes.map((n) => [n.id, n.parentId]));
  const grants = new Map<string, Array<{ r: string; n: string; f: number; t: number }>>();
  for (const a of w.assignments) {
    const list = grants.get(a.identityId) ?? grants.set(a.identityId, []).get(a.identityId)!;
    list.push({ r: a.roleId, n: a.nodeId, f: a.effectiveFrom, t: a.effectiveTo ?? NO_END });
  }
  return (c) => {
    const path: string[] = [];
    for (let n: string | null | undefined = c.nodeId; n; n = parent.get(n)) path.push(n);
    return create(request, {
      principal: { id: c.identityId, roles: ["user"], attr: [{ key: "g", value: fromJson(ValueSchema, (grants.get(c.identityId) ?? []) as JsonValue) }] },
      resources: [
        {
          actions: [c.permission],
          resource: {
            kind: "node",
            id: c.nodeId,
            attr: [
              { key: "path", value: fromJson(ValueSchema, path) },
              { key: "at", value: fromJson(ValueSchema, w.at) },
            ],
          },
        },
      ],
    } as never);
  };
}

/** Policies (JSON, which is YAML) for the workload: one derived role per role, one resource policy. */
export function cerbosPolicies(w: Workload): Record<string, string> {
  const roleName = new Map(w.roles.map((r, i) => [r.id, `holds_role_${i}`]));
  const derived = {
    apiVersion: "api.cerbos.dev/v1",
    derivedRoles: {
      name: "canopy_roles",
      definitions: w.roles.map((r) => ({
        name: roleName.get(r.id),
        parentRoles: ["user"],
        condition: { match: { expr: `P.attr.g.exists(a, a.r == ${JSON.stringify(r.id)} && a.n in R.attr.path && a.f <= R.attr.at && R.attr.at < a.t)` } },
      })),
    },
  };
  const rules = w.permissionKeys
    .map((key) => ({ actions: [key], effect: "EFFECT_ALLOW", derivedRoles: w.roles.filter((r) => r.permissionKeys.includes(key)).map((r) => roleName.get(r.id)) }))
    .filter((rule) => rule.derivedRoles.length > 0);
  const resource = { apiVersion: "api.cerbos.dev/v1", resourcePolicy: { version: "default", resource: "node", importDerivedRoles: ["canopy_roles"], rules } };
  return { "canopy_roles.yaml": JSON.stringify(derived, null, 1), "node.yaml": JSON.stringify(resource, null, 1) };
}

/**
 * The Cerbos binary, installed on first use with `npm install --prefix /tmp/canopy-bench-peers`
 * (outside the repository; not in package.json). Returns the path, or why it is unavailable.
 */
export function installCerbos(): { binary: string } | { skipped: string } {
  if (existsSync(BINARY)) return { binary: BINARY };
  if (process.platform !== "linux" || process.arch !== "x64") return { skipped: `no @cerbos/cerbos-linux-x64 build for ${process.platform}-${process.arch}` };
  console.log(`installing @cerbos/cerbos-linux-x64@${CERBOS_VERSION} into ${CERBOS_SCRATCH} (npm install --prefix; not a Canopy dependency)…`);
  mkdirSync(CERBOS_SCRATCH, { recursive: true });
  if (!existsSync(join(CERBOS_SCRATCH, "package.json"))) writeFileSync(join(CERBOS_SCRATCH, "package.json"), '{ "private": true }\n');
  const npm = spawnSync("npm", ["install", "--prefix", CERBOS_SCRATCH, "--no-audit", "--no-fund", `@cerbos/cerbos-linux-x64@${CERBOS_VERSION}`], { encoding: "utf8", timeout: 180_000 });
  if (npm.status !== 0 || !existsSync(BINARY)) {
    const why = (npm.error?.message ?? npm.stderr ?? "").trim().split("\n").filter((l) => !/^npm warn/i.test(l)).slice(-1)[0] ?? "";
    return { skipped: `npm install @cerbos/cerbos-linux-x64@${CERBOS_VERSION} failed${why ? `: ${why}` : ""}` };
  }
  return { binary: BINARY };
}

export interface RunningCerbos {
  /** http://127.0.0.1:<grpc port> */
  grpcUrl: string;
  child: ChildProcess;
  startMs: number;
  close(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Writes the policies and a config into `dir`, starts `cerbos server` and waits until it is healthy. */
export async function startCerbos(binary: string, w: Workload, dir: string): Promise<RunningCerbos> {
  const policies = join(dir, "policies");
  mkdirSync(policies, { recursive: true });
  for (const [name, text] of Object.entries(cerbosPolicies(w))) writeFileSync(join(policies, name), text);
  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  const config = [
    "server:",
    `  httpListenAddr: "127.0.0.1:${httpPort}"`,
    `  grpcListenAddr: "127.0.0.1:${grpcPort}"`,
    "storage:",
    "  driver: disk",
    "  disk:",
    `    directory: ${JSON.stringify(policies)}`,
    "    watchForChanges: false",
    "audit:",
    "  enabled: false",
    "telemetry:",
    "  disabled: true",
    "",
  ].join("\n");
  writeFileSync(join(dir, "cerbos.yaml"), config);
  const t0 = performance.now();
  const child = spawn(binary, ["server", `--config=${join(dir, "cerbos.yaml")}`, "--log-level=warn"], {
    env: { ...process.env, CERBOS_NO_TELEMETRY: "1", HTTPS_PROXY: "http://127.0.0.1:9", NO_PROXY: "127.0.0.1,localhost" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  const close = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      child.once("exit", () => (clearTimeout(timer), resolve()));
      child.kill("SIGTERM");
    });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`cerbos exited with ${child.exitCode}: ${stderr.trim()}`);
    try {
      const res = await fetch(`http://127.0.0.1:${httpPort}/_cerbos/health`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await close();
      throw new Error(`cerbos did not become healthy within 30 s: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { grpcUrl: `http://127.0.0.1:${grpcPort}`, child, startMs: performance.now() - t0, close };
}
