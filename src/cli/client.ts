import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { AdminService, type Environment } from "../gen/canopy/v1/admin_pb.js";
import { AssignmentService } from "../gen/canopy/v1/assignment_pb.js";
import { CatalogService } from "../gen/canopy/v1/catalog_pb.js";
import { CheckService } from "../gen/canopy/v1/check_pb.js";
import { HierarchyService } from "../gen/canopy/v1/hierarchy_pb.js";
import { IdentityService } from "../gen/canopy/v1/identity_pb.js";
import { str, UsageError, type OptionSpec, type Values } from "./args.js";

/** Typed Connect clients of a running server, all sending one API key. */
export interface Clients {
  admin: Client<typeof AdminService>;
  catalog: Client<typeof CatalogService>;
  hierarchy: Client<typeof HierarchyService>;
  assignments: Client<typeof AssignmentService>;
  identities: Client<typeof IdentityService>;
  check: Client<typeof CheckService>;
}

/** Header through which an admin key acts inside one environment (src/api/call.ts). */
const ENVIRONMENT_HEADER = "canopy-environment";

/** Longest wait for one call; a hung server must not hang a script. */
const CALL_TIMEOUT_MS = 120_000;

/**
 * Clients over the Connect protocol (binary protobuf over HTTP/1.1 with keep-alive: unlike an HTTP/2
 * session, idle keep-alive sockets do not keep the CLI alive once its work is done) sending `key`, and `canopy-environment` when acting with an admin key.
 */
export function connectClients(url: string, key: string, environmentId?: string): Clients {
  let base: URL;
  try {
    base = new URL(url);
  } catch {
    throw new UsageError(`--url must be an http:// or https:// URL, got ${JSON.stringify(url)}`);
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") throw new UsageError(`--url must be an http:// or https:// URL, got ${JSON.stringify(url)}`);
  const auth: Interceptor = (next) => (req) => {
    req.header.set("x-api-key", key);
    if (environmentId) req.header.set(ENVIRONMENT_HEADER, environmentId);
    return next(req);
  };
  const transport = createConnectTransport({ baseUrl: url, httpVersion: "1.1", useBinaryFormat: true, interceptors: [auth], defaultTimeoutMs: CALL_TIMEOUT_MS });
  const c = <S extends DescService>(s: S) => createClient(s, transport);
  return {
    admin: c(AdminService),
    catalog: c(CatalogService),
    hierarchy: c(HierarchyService),
    assignments: c(AssignmentService),
    identities: c(IdentityService),
    check: c(CheckService),
  };
}

/** --url, --key and --environment, shared by the data-plane commands (check, export, import). */
export const dataPlaneOptions: Record<string, OptionSpec> = {
  url: { type: "string", value: "<url>", description: "Canopy server", env: "CANOPY_URL", default: "http://127.0.0.1:8080" },
  key: { type: "string", value: "<key>", description: "environment API key (or the admin key with --environment)", env: "CANOPY_KEY", required: true },
  environment: { type: "string", value: "<env>", description: "with an admin key: the environment to act in (id, name or application/name)" },
};

/** Clients for a data-plane command: the key's environment, or the admin key's --environment. */
export async function dataPlane(values: Values): Promise<Clients> {
  const url = str(values, "url")!;
  const key = str(values, "key")!;
  const ref = str(values, "environment");
  if (!ref) return connectClients(url, key);
  const environment = UUID.test(ref) ? ref : (await resolveEnvironment(connectClients(url, key).admin, ref)).id;
  return connectClients(url, key, environment);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `NOT_FOUND` for Code.NotFound: the names the server's docs and logs use. */
export function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/**
 * One line for a failed call: the gRPC code, the server's message, and the `canopy-error-reason` /
 * `canopy-error-field` metadata when present; transport failures name the URL.
 */
export function describeError(err: unknown, url?: string): string {
  if (!(err instanceof ConnectError)) return err instanceof Error ? err.message : String(err);
  const reason = err.metadata.get("canopy-error-reason");
  const field = err.metadata.get("canopy-error-field");
  const extra = [reason ? `reason ${reason}` : "", field ? `field ${field}` : ""].filter(Boolean).join(", ");
  const unreachable = err.code === Code.Unavailable && /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ECONNRESET|socket hang up/.test(err.rawMessage);
  const where = unreachable && url ? ` (is a Canopy server running at ${url}?)` : "";
  return `${codeName(err.code)}: ${err.rawMessage}${extra ? ` (${extra})` : ""}${where}`;
}

/** An environment id (UUID) as given, or looked up by name (`development`) or `application/environment`. */
export async function resolveEnvironment(admin: Client<typeof AdminService>, ref: string): Promise<Environment> {
  const { environments } = await admin.listEnvironments({});
  const byId = environments.find((e) => e.id === ref);
  if (byId) return byId;
  const slash = ref.indexOf("/");
  let candidates: Environment[];
  if (slash > 0) {
    const appRef = ref.slice(0, slash);
    const envName = ref.slice(slash + 1);
    const apps = await listAll((pageToken, pageSize) => admin.listApplications({ pageToken, pageSize }).then((r) => ({ items: r.applications, next: r.nextPageToken })));
    const appIds = new Set(apps.filter((a) => a.id === appRef || a.name === appRef).map((a) => a.id));
    candidates = environments.filter((e) => appIds.has(e.applicationId) && e.name === envName);
  } else {
    candidates = environments.filter((e) => e.name === ref);
  }
  if (candidates.length === 1) return candidates[0];
  if (candidates.length === 0) throw new Error(`no environment ${JSON.stringify(ref)} (give an environment id, a name, or application/name)`);
  throw new Error(
    `environment name ${JSON.stringify(ref)} is ambiguous: ${candidates.map((e) => e.id).join(", ")}; give the id or application/name`,
  );
}

/** Largest page the server accepts by default (CANOPY_MAX_PAGE_SIZE). */
const PAGE_SIZE = 1000;

/**
 * Every item of a paged List RPC, page after page until the token is empty: never a silent
 * truncation. Pages of 1000; a server configured with a smaller maximum refuses that (INVALID_ARGUMENT
 * on page_size), and the listing starts again with the server's default page size.
 */
export async function listAll<T>(page: (pageToken: string, pageSize: number) => Promise<{ items: T[]; next: string }>): Promise<T[]> {
  try {
    return await pages(page, PAGE_SIZE);
  } catch (err) {
    const refused = err instanceof ConnectError && err.code === Code.InvalidArgument && err.metadata.get("canopy-error-field") === "page_size";
    if (!refused) throw err;
    return pages(page, 0);
  }
}

async function pages<T>(page: (pageToken: string, pageSize: number) => Promise<{ items: T[]; next: string }>, pageSize: number): Promise<T[]> {
  const all: T[] = [];
  let token = "";
  do {
    const { items, next } = await page(token, pageSize);
    all.push(...items);
    if (next !== "" && next === token) throw new Error("the server answered the same page token twice");
    token = next;
  } while (token !== "");
  return all;
}
