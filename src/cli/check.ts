import { toJsonString } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { CheckResponseSchema, CheckScope, DenialReason } from "../gen/canopy/v1/check_pb.js";
import { parseInstant, str, UsageError, type CommandSpec, type Values } from "./args.js";
import { dataPlane, dataPlaneOptions } from "./client.js";
import type { Io } from "./io.js";

/** `canopy check`: one Check call whose exit code is the decision, for shell scripts. */

/** Exit code of a denied check (0 = allowed, 1 = error, 2 = usage). */
export const EXIT_DENIED = 3;

export const checkSpec: CommandSpec = {
  name: "check",
  brief: "one permission check; exit 0 allowed, 3 denied",
  summary: "Ask whether an identity holds a permission at a node (or anywhere, with --app-wide) and print the decision and its reason.",
  options: {
    ...dataPlaneOptions,
    identity: { type: "string", value: "<id>", required: true, description: "identity id" },
    permission: { type: "string", value: "<key>", required: true, description: "permission key, e.g. invoice.read" },
    node: { type: "string", value: "<id>", description: "node id (required in hierarchy mode; omit for the root in flat mode)" },
    "app-wide": { type: "boolean", description: "granted anywhere in the tree (UI gating); excludes --node" },
    at: { type: "string", value: "<iso>", description: "evaluate at this instant (ISO 8601) instead of now" },
    explain: { type: "boolean", description: "also print the granting assignments" },
    json: { type: "boolean", description: "print the whole CheckResponse as JSON" },
  },
  notes: [
    "Exit codes: 0 allowed, 3 denied, 1 error (server, network, malformed request), 2 usage.",
    "",
    "Example:",
    '  canopy check --identity "$ID" --permission invoice.read --node "$NODE" && echo may read',
  ].join("\n"),
};

/** Short explanations of the denial reasons (README "Denial reasons"). */
const REASONS: Partial<Record<DenialReason, string>> = {
  [DenialReason.UNKNOWN_IDENTITY]: "no such identity visible in this environment",
  [DenialReason.UNKNOWN_PERMISSION]: "the permission is not in this environment's catalog",
  [DenialReason.UNKNOWN_NODE]: "no such node in this environment",
  [DenialReason.IDENTITY_INACTIVE]: "the identity is deactivated",
  [DenialReason.NO_MEMBERSHIP]: "the identity has no membership in the environment's application",
  [DenialReason.MEMBERSHIP_INACTIVE]: "the identity's membership is inactive",
  [DenialReason.NO_ASSIGNMENT]: "no assignment of the identity in scope",
  [DenialReason.PERMISSION_NOT_GRANTED]: "assignments in scope exist, but none of their roles contains the permission",
  [DenialReason.ONLY_SCHEDULED]: "a granting assignment in scope starts later",
  [DenialReason.ONLY_EXPIRED]: "the only granting assignments in scope have expired",
};

export async function check(values: Values, _positionals: string[], io: Io): Promise<number> {
  const appWide = values["app-wide"] === true;
  const node = str(values, "node");
  if (appWide && node) throw new UsageError("--node and --app-wide exclude each other", "check");
  const at = str(values, "at") ? timestampFromDate(parseInstant(str(values, "at")!, "at", "check")) : undefined;
  const c = await dataPlane(values);
  const res = await c.check.check({
    identityId: str(values, "identity")!,
    permission: str(values, "permission")!,
    scope: appWide ? CheckScope.APP_WIDE : CheckScope.NODE,
    nodeId: node ?? "",
    at,
    explain: values.explain === true,
  });
  if (values.json) {
    io.out(toJsonString(CheckResponseSchema, res, { prettySpaces: 2, alwaysEmitImplicit: true }) + "\n");
    return res.allowed ? 0 : EXIT_DENIED;
  }
  const where = appWide ? "anywhere (app-wide)" : `at node ${res.effectiveNodeId || "(root)"}`;
  const when = res.at ? ` at ${timestampDate(res.at).toISOString()}` : "";
  if (res.allowed) {
    const roles = res.grantingRoles.map((r) => r.roleName).join(", ");
    const via = appWide && res.effectiveNodeId ? `, granted at node ${res.effectiveNodeId}` : "";
    io.out(`allowed: ${res.identityId} may ${res.permission} ${where}${when} (roles: ${roles}${via}; revision ${res.revision})\n`);
    for (const g of res.explanation) {
      const to = g.effectiveTo ? timestampDate(g.effectiveTo).toISOString() : "never";
      const from = g.effectiveFrom ? timestampDate(g.effectiveFrom).toISOString() : "?";
      io.out(`  assignment ${g.assignmentId}: role ${g.roleId} on node ${g.nodeId}${g.inherited ? " (inherited)" : ""}, ${from} until ${to}\n`);
    }
    return 0;
  }
  const reason = DenialReason[res.denialReason] ?? String(res.denialReason);
  io.out(`denied: ${res.identityId} may not ${res.permission} ${where}${when}: ${reason} (${REASONS[res.denialReason] ?? "see the README's denial reasons"}; revision ${res.revision})\n`);
  return EXIT_DENIED;
}
