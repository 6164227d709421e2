import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { ApiKey, Environment } from "../gen/canopy/v1/admin_pb.js";
import { list, parseInstant, str, type CommandSpec, type Values } from "./args.js";
import { connectClients, listAll, resolveEnvironment, type Clients } from "./client.js";
import type { Io } from "./io.js";

/** `canopy keys create|list|revoke`: API keys through AdminService, with the admin key. */

const server = {
  url: { type: "string", value: "<url>", description: "Canopy server", env: "CANOPY_URL", default: "http://127.0.0.1:8080" },
  "admin-key": { type: "string", value: "<key>", description: "admin API key", env: "CANOPY_ADMIN_KEY", required: true },
} as const;

export const keysCreateSpec: CommandSpec = {
  name: "keys create",
  brief: "create an environment API key (prints its secret once)",
  summary: "Create an environment API key and print its secret (shown only this once; only a hash is stored).",
  options: {
    ...server,
    environment: { type: "string", value: "<env>", required: true, description: "environment id, name (e.g. development) or application/name" },
    name: { type: "string", value: "<name>", required: true, description: 'display name, e.g. "billing-service production"' },
    scope: {
      type: "string",
      value: "<scope>",
      multiple: true,
      description: "limit the key to a scope: check, read, assignments:write, hierarchy:write, catalog:write, identities:write; none = every scope",
    },
    expires: { type: "string", value: "<when>", description: "expiry: ISO 8601 timestamp (2027-01-01T00:00:00Z) or a duration from now (90d, 12h)" },
    json: { type: "boolean", description: "print the key and its secret as JSON" },
  },
  notes: "Example:\n  canopy keys create --environment development --name ci --scope check --scope read --expires 90d",
};

export const keysListSpec: CommandSpec = {
  name: "keys list",
  brief: "list API keys (table or --json)",
  summary: "List API keys (never their secrets), including expired and revoked ones, in creation order.",
  options: {
    ...server,
    environment: { type: "string", value: "<env>", description: "only keys of this environment (id, name or application/name); default: every key of the account" },
    json: { type: "boolean", description: "print JSON (one array) instead of a table" },
  },
};

export const keysRevokeSpec: CommandSpec = {
  name: "keys revoke",
  brief: "revoke an API key by id",
  summary: "Revoke an API key by id (not by secret); it is refused from then on.",
  positionals: ["<key-id>"],
  options: { ...server, json: { type: "boolean", description: "print the revoked key as JSON" } },
};

function iso(t: Timestamp | undefined): string | null {
  return t ? timestampDate(t).toISOString() : null;
}

/** The JSON shape of a key in `--json` output; `envNames` maps environment ids to "application/environment". */
function keyJson(k: ApiKey, envNames: Map<string, string>) {
  return {
    id: k.id,
    name: k.name,
    environmentId: k.environmentId || null,
    environment: k.environmentId ? (envNames.get(k.environmentId) ?? null) : null,
    scopes: k.scopes,
    prefix: k.prefix,
    createTime: iso(k.createTime),
    expireTime: iso(k.expireTime),
    revokeTime: iso(k.revokeTime),
    status: status(k),
  };
}

/** revoked / expired (by this machine's clock) / active */
function status(k: ApiKey): "revoked" | "expired" | "active" {
  if (k.revokeTime) return "revoked";
  if (k.expireTime && timestampDate(k.expireTime).getTime() <= Date.now()) return "expired";
  return "active";
}

/** Environment id -> "application/environment" (e.g. "default/development"), for listings. */
async function labels(c: Clients): Promise<Map<string, string>> {
  const [{ environments }, applications] = await Promise.all([
    c.admin.listEnvironments({}),
    listAll((pageToken, pageSize) => c.admin.listApplications({ pageToken, pageSize }).then((r) => ({ items: r.applications, next: r.nextPageToken }))),
  ]);
  const appNames = new Map(applications.map((a) => [a.id, a.name]));
  return new Map(environments.map((e: Environment) => [e.id, `${appNames.get(e.applicationId) ?? e.applicationId}/${e.name}`]));
}

export async function keysCreate(values: Values, _positionals: string[], io: Io): Promise<number> {
  const url = str(values, "url")!;
  const expireTime = str(values, "expires") ? timestampFromDate(parseInstant(str(values, "expires")!, "expires", "keys create", Date.now())) : undefined;
  const c = connectClients(url, str(values, "admin-key")!);
  const env = await resolveEnvironment(c.admin, str(values, "environment")!);
  const res = await c.admin.createApiKey({ name: str(values, "name")!, environmentId: env.id, scopes: list(values, "scope"), expireTime });
  const k = res.apiKey!;
  if (values.json) {
    io.out(JSON.stringify({ ...keyJson(k, await labels(c)), secret: res.secret }, null, 2) + "\n");
    return 0;
  }
  io.out(
    [
      `Created API key ${k.id} "${k.name}" for environment ${env.name} (${env.id})`,
      `  scopes:  ${k.scopes.length ? k.scopes.join(", ") : "all (check, read and every :write scope)"}`,
      `  expires: ${iso(k.expireTime) ?? "never"}`,
      "Secret (shown only now; store it safely):",
      res.secret,
      "",
    ].join("\n"),
  );
  return 0;
}

export async function keysList(values: Values, _positionals: string[], io: Io): Promise<number> {
  const c = connectClients(str(values, "url")!, str(values, "admin-key")!);
  const envRef = str(values, "environment");
  const environmentId = envRef ? (await resolveEnvironment(c.admin, envRef)).id : "";
  const [{ apiKeys }, names] = await Promise.all([c.admin.listApiKeys({ environmentId }), labels(c)]);
  if (values.json) {
    io.out(JSON.stringify(apiKeys.map((k) => keyJson(k, names)), null, 2) + "\n");
    return 0;
  }
  const rows = [
    ["ID", "NAME", "ENVIRONMENT", "SCOPES", "PREFIX", "STATUS", "CREATED", "EXPIRES"],
    ...apiKeys.map((k) => [
      k.id,
      k.name,
      k.environmentId ? (names.get(k.environmentId) ?? k.environmentId) : "(admin)",
      k.scopes.length ? k.scopes.join(",") : "*",
      k.prefix,
      status(k),
      iso(k.createTime) ?? "",
      iso(k.expireTime) ?? "never",
    ]),
  ];
  io.out(table(rows));
  return 0;
}

export async function keysRevoke(values: Values, positionals: string[], io: Io): Promise<number> {
  const c = connectClients(str(values, "url")!, str(values, "admin-key")!);
  const { apiKey } = await c.admin.revokeApiKey({ id: positionals[0] });
  const k = apiKey!;
  if (values.json) io.out(JSON.stringify(keyJson(k, await labels(c)), null, 2) + "\n");
  else io.out(`Revoked API key ${k.id} "${k.name}" at ${iso(k.revokeTime)}\n`);
  return 0;
}

/** Left-aligned columns separated by two spaces. */
export function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]))).join("  ")).join("\n") + "\n";
}
