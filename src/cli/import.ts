import { readFileSync } from "node:fs";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AccessModel } from "../gen/canopy/v1/common_pb.js";
import type { Node } from "../gen/canopy/v1/hierarchy_pb.js";
import { positiveInt, str, UsageError, type CommandSpec, type Values } from "./args.js";
import { codeName, dataPlane, dataPlaneOptions, describeError, listAll, type Clients } from "./client.js";
import { schemaJson } from "./export.js";
import { ExportFileError, validateExportFile, type ExportedNode, type ExportedSchema, type ExportFile } from "./export-format.js";
import { count, type Io } from "./io.js";

/** `canopy import`: recreate an export file's configuration in the key's environment. */
export const importSpec: CommandSpec = {
  name: "import",
  brief: "recreate an exported configuration in an environment",
  summary:
    "Recreate an export file's configuration in the key's environment: permissions (in batches), roles, hierarchy schema and access model, nodes (parents first, source ids mapped to new ids) and, with --with-assignments, assignments (BatchCreateAssignments in chunks).",
  positionals: ["<file>"],
  options: {
    ...dataPlaneOptions,
    key: { ...dataPlaneOptions.key, required: false, description: "environment API key (or the admin key with --environment); not needed with --dry-run" },
    "with-assignments": { type: "boolean", description: "also create the file's assignments (identities must already be members of the target's application)" },
    "dry-run": { type: "boolean", description: "only validate the file and print its counts; contacts no server" },
    "batch-size": { type: "string", value: "<n>", default: "1000", description: "permissions and assignments per call (halved automatically if the server refuses a batch as too large)" },
    "progress-interval": { type: "string", value: "<ms>", default: "1000", description: "least time between progress lines on stderr" },
    quiet: { type: "boolean", description: "no progress lines" },
  },
  notes: [
    "<file> is a file written by `canopy export`, or - for stdin.",
    "",
    "Re-running an import is safe: permissions with the same key, roles with the same name and",
    "permissions, nodes with the same parent, type, name and external id, and assignments that already",
    "exist are reused rather than created again, so an import that stopped half-way can simply be run",
    "again. A role of the same name with other permissions, or an identity the target cannot see, stops",
    "the import before anything is written.",
  ].join("\n"),
};

/** An import step that failed, naming the item; exit code 1. */
class ImportError extends Error {
  override name = "ImportError";
}

/** JSON with object keys sorted, to compare metadata and schemas regardless of key order. */
function canonical(v: JsonValue | undefined): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as JsonObject)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v ?? null);
}

function schemaMessage(s: ExportedSchema) {
  return {
    nodeTypes: s.nodeTypes,
    allowedChildren: Object.fromEntries(Object.entries(s.allowedChildren).map(([k, types]) => [k, { types }])),
    maxDepth: s.maxDepth,
    rootNodeType: s.rootNodeType,
  };
}

/** A progress printer: "nodes 12000/111000" on stderr, at most once per interval, and always the last. */
function progressPrinter(io: Io, quiet: boolean, intervalMs: number) {
  let last = 0;
  return (phase: string, done: number, total: number) => {
    if (quiet) return;
    const now = Date.now();
    if (done < total && now - last < intervalMs) return;
    last = now;
    io.err(`${phase} ${done}/${total}\n`);
  };
}

/**
 * Runs `fn` over `items` in chunks of `size`. A chunk refused as too large (RESOURCE_EXHAUSTED: batch
 * or request size limit) is retried in halves; any other failure stops, named by `what(chunk, offset)`.
 */
async function inChunks<T>(items: T[], size: number, what: (chunk: T[], offset: number) => string, fn: (chunk: T[], offset: number) => Promise<void>): Promise<void> {
  let offset = 0;
  let n = size;
  while (offset < items.length) {
    const chunk = items.slice(offset, offset + n);
    try {
      await fn(chunk, offset);
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.ResourceExhausted && n > 1) {
        n = Math.max(1, Math.floor(n / 2));
        continue;
      }
      throw new ImportError(`${what(chunk, offset)}: ${describeError(err)}`);
    }
    offset += chunk.length;
  }
}

function readFile(path: string): string {
  try {
    return readFileSync(path === "-" ? 0 : path, "utf8");
  } catch (err) {
    throw new ImportError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

/** Parses and validates the file; ExportFileError and JSON syntax errors become ImportError naming the file. */
export function loadExportFile(path: string): ExportFile {
  const raw = readFile(path);
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch (err) {
    throw new ImportError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  try {
    return validateExportFile(data);
  } catch (err) {
    if (err instanceof ExportFileError) throw new ImportError(`${path}: ${err.message}`);
    throw err;
  }
}

function describeNode(n: ExportedNode, index: number): string {
  return `nodes[${index}] "${n.name}" (type ${n.type}, source id ${n.id})`;
}

interface Tally {
  created: number;
  present: number;
}

export async function importCommand(values: Values, positionals: string[], io: Io): Promise<number> {
  const path = positionals[0];
  const batchSize = positiveInt(values, "batch-size", "import");
  const interval = Number(str(values, "progress-interval"));
  if (!Number.isSafeInteger(interval) || interval < 0) throw new UsageError(`--progress-interval must be a non-negative integer, got ${JSON.stringify(str(values, "progress-interval"))}`, "import");
  const withAssignments = values["with-assignments"] === true;
  const file = loadExportFile(path);
  const assignments = file.assignments ?? [];
  if (withAssignments && file.assignments === undefined) throw new ImportError(`${path} holds no assignments: export with --with-assignments to include them`);
  const counts = `${count(file.permissions.length, "permission")}, ${count(file.roles.length, "role")}, ${count(file.nodes.length, "node")}${
    file.assignments ? `, ${count(assignments.length, "assignment")} of ${count(file.identities?.length ?? 0, "identity", "identities")}` : ""
  }`;
  if (values["dry-run"] === true) {
    const depth = new Map<string, number>();
    let deepest = 0;
    for (const n of file.nodes) {
      const d = n.parentId === null ? 1 : depth.get(n.parentId)! + 1;
      depth.set(n.id, d);
      deepest = Math.max(deepest, d);
    }
    io.out(
      `${path} is valid: ${counts}; access model ${file.accessModel}, ${file.hierarchySchema ? `schema of ${count(file.hierarchySchema.nodeTypes.length, "node type")}` : "no schema"}, tree depth ${deepest}.\n` +
        `Dry run: nothing was written${file.assignments && !withAssignments ? " (assignments would be skipped without --with-assignments)" : ""}.\n`,
    );
    return 0;
  }
  if (!str(values, "key")) throw new UsageError("missing --key (or CANOPY_KEY)", "import");
  if (file.assignments && !withAssignments) io.err(`note: skipping the file's ${count(assignments.length, "assignment")} (pass --with-assignments to import them)\n`);

  const c = await dataPlane(values);
  const progress = progressPrinter(io, values.quiet === true, interval);
  const url = str(values, "url")!;
  try {
    return await runImport(c, file, { withAssignments, batchSize, progress, io });
  } catch (err) {
    if (err instanceof ImportError) throw err;
    throw new ImportError(describeError(err, url));
  }
}

async function runImport(
  c: Clients,
  file: ExportFile,
  opts: { withAssignments: boolean; batchSize: number; progress: (phase: string, done: number, total: number) => void; io: Io },
): Promise<number> {
  const { io, progress } = opts;
  // --- the target as it is, and everything that would stop the import, before any write
  const head = await c.hierarchy.getHierarchySchema({});
  const [existingPermissions, existingRoles, existingNodes] = await Promise.all([
    listAll((pageToken, pageSize) => c.catalog.listPermissions({ pageToken, pageSize }).then((r) => ({ items: r.permissions, next: r.nextPageToken }))),
    listAll((pageToken, pageSize) => c.catalog.listRoles({ pageToken, pageSize }).then((r) => ({ items: r.roles, next: r.nextPageToken }))),
    listAll((pageToken, pageSize) => c.hierarchy.getSubtree({ id: head.rootNodeId, maxDepth: 0, pageToken, pageSize }).then((r) => ({ items: r.nodes, next: r.nextPageToken }))),
  ]);
  const rolesByName = new Map(existingRoles.map((r) => [r.name, r]));
  for (const r of file.roles) {
    const there = rolesByName.get(r.name);
    if (there && canonical([...there.permissionKeys].sort()) !== canonical([...r.permissionKeys].sort())) {
      throw new ImportError(
        `role "${r.name}" already exists in the target with other permissions (${there.permissionKeys.join(", ") || "none"}; the file has ${r.permissionKeys.join(", ") || "none"}); import does not change existing roles: rename or update one of them first`,
      );
    }
  }
  const identityMap = new Map<string, string>();
  if (opts.withAssignments) {
    const visible = await listAll((pageToken, pageSize) => c.identities.listIdentities({ pageToken, pageSize }).then((r) => ({ items: r.identities, next: r.nextPageToken })));
    const ids = new Set(visible.map((i) => i.id));
    const byEmail = new Map(visible.map((i) => [i.email.toLowerCase(), i.id]));
    const label = new Map<string, string>();
    for (const x of file.identities ?? []) {
      const id = ids.has(x.id) ? x.id : byEmail.get(x.email.toLowerCase());
      if (id) identityMap.set(x.id, id);
      label.set(x.id, x.email ? `${x.email} (${x.id})` : x.id);
    }
    const missing = [...new Set(assignments(file).map((a) => a.identityId).filter((id) => !identityMap.has(id)))].map((id) => label.get(id) ?? id);
    if (missing.length) {
      throw new ImportError(
        `${count(missing.length, "identity", "identities")} named by the file's assignments ${missing.length === 1 ? "is" : "are"} not visible in the target environment: ${missing.slice(0, 10).join(", ")}${missing.length > 10 ? ", …" : ""}. ` +
          "Identities are account-wide and are not imported: add them to the target's application (IdentityService.AddAppMembership with the admin key) and run the import again. Nothing was written.",
      );
    }
  }

  // --- permissions, in batches (BatchCreatePermissions is all-or-nothing per call)
  const have = new Set(existingPermissions.map((p) => p.key));
  const newPermissions = file.permissions.filter((p) => !have.has(p.key));
  const permissions: Tally = { created: 0, present: file.permissions.length - newPermissions.length };
  const permissionsAt = (chunk: typeof newPermissions, offset: number) => `permissions ${offset + 1}..${offset + chunk.length} (${chunk[0].key} …)`;
  await inChunks(newPermissions, opts.batchSize, permissionsAt, async (chunk) => {
    await c.catalog.batchCreatePermissions({ permissions: chunk });
    permissions.created += chunk.length;
    progress("permissions", permissions.created, newPermissions.length);
  });

  // --- roles
  const roleMap = new Map<string, string>();
  const roles: Tally = { created: 0, present: 0 };
  for (const r of file.roles) {
    const there = rolesByName.get(r.name);
    if (there) {
      roleMap.set(r.id, there.id);
      roles.present++;
      continue;
    }
    try {
      const res = await c.catalog.createRole({ name: r.name, description: r.description, permissionKeys: r.permissionKeys });
      roleMap.set(r.id, res.role!.id);
    } catch (err) {
      throw new ImportError(`role "${r.name}": ${describeError(err)}`);
    }
    roles.created++;
    progress("roles", roles.created, file.roles.length - roles.present);
  }

  // --- schema and access model (before the nodes they constrain)
  const want = file.hierarchySchema;
  if (canonical(want as unknown as JsonValue) !== canonical(schemaJson(head.schema) as unknown as JsonValue)) {
    try {
      await c.hierarchy.updateHierarchySchema({ schema: want ? schemaMessage(want) : undefined });
    } catch (err) {
      throw new ImportError(`hierarchy schema: ${describeError(err)}`);
    }
  }
  const model = file.accessModel === "flat" ? AccessModel.FLAT : AccessModel.HIERARCHY;
  if (head.accessModel !== model) {
    try {
      await c.hierarchy.setAccessModel({ accessModel: model });
    } catch (err) {
      throw new ImportError(`access model ${file.accessModel}: ${describeError(err)}`);
    }
  }

  // --- the root: the target's own, updated to the file's name, external id and metadata
  const [root, ...rest] = file.nodes;
  const targetRoot = (await c.hierarchy.getNode({ id: head.rootNodeId })).node!;
  if (targetRoot.type !== root.type) {
    io.err(`warning: the target's root has type ${JSON.stringify(targetRoot.type)}, the file's ${JSON.stringify(root.type)} (a root's type follows the schema's rootNodeType and cannot be set)\n`);
  }
  if (targetRoot.name !== root.name || targetRoot.externalId !== root.externalId || canonical(targetRoot.metadata ?? {}) !== canonical(root.metadata)) {
    await c.hierarchy.updateNode({ id: targetRoot.id, name: root.name, externalId: root.externalId, metadata: root.metadata });
  }

  // --- nodes, parents first
  const nodes = await createNodes(c, rest, root.id, targetRoot.id, existingNodes, (done) => progress("nodes", done, rest.length));

  // --- assignments, in chunks; items are independent, so failures are collected and reported at the end
  const assigned: Tally = { created: 0, present: 0 };
  const failures: string[] = [];
  if (opts.withAssignments) {
    const nodeMap = nodes.map;
    const roleName = new Map(file.roles.map((r) => [r.id, r.name]));
    const nodeName = new Map(file.nodes.map((n) => [n.id, n.name]));
    const email = new Map((file.identities ?? []).map((i) => [i.id, i.email || i.id]));
    const items = assignments(file).map((a) => ({
      identityId: identityMap.get(a.identityId)!,
      roleId: roleMap.get(a.roleId)!,
      nodeId: nodeMap.get(a.nodeId)!,
      effectiveFrom: timestampFromDate(new Date(a.effectiveFrom)),
      effectiveTo: a.effectiveTo === null ? undefined : timestampFromDate(new Date(a.effectiveTo)),
    }));
    let done = 0;
    const assignmentsAt = (chunk: typeof items, offset: number) => `assignments[${offset}..${offset + chunk.length - 1}]`;
    await inChunks(items, opts.batchSize, assignmentsAt, async (chunk, offset) => {
      const res = await c.assignments.batchCreateAssignments({ items: chunk });
      for (const r of res.results) {
        const code = r.status?.code ?? 0;
        if (code === 0) assigned.created++;
        else if (code === Code.AlreadyExists && r.status?.reason === "rbac.assignment_conflict") assigned.present++;
        else {
          const a = assignments(file)[offset + r.index];
          failures.push(
            `assignments[${offset + r.index}] (identity ${email.get(a.identityId) ?? a.identityId}, role ${roleName.get(a.roleId)}, node "${nodeName.get(a.nodeId)}"): ${codeName(code)}: ${r.status?.message ?? ""}`,
          );
        }
      }
      done += chunk.length;
      progress("assignments", done, items.length);
    });
  }

  const rows: Array<[string, Tally]> = [
    ["permissions", permissions],
    ["roles", roles],
    ["nodes", nodes.tally],
  ];
  if (opts.withAssignments) rows.push(["assignments", assigned]);
  const revision = (await c.hierarchy.getHierarchySchema({})).revision;
  io.out(
    `Imported into the environment of root ${targetRoot.id} (revision ${revision}):\n` +
      rows.map(([name, t]) => `  ${name.padEnd(12)} ${String(t.created).padStart(7)} created, ${t.present} already present\n`).join(""),
  );
  if (failures.length) {
    io.err(`error: ${count(failures.length, "assignment")} of ${assignments(file).length} could not be created:\n`);
    for (const f of failures.slice(0, 20)) io.err(`  ${f}\n`);
    if (failures.length > 20) io.err(`  … and ${failures.length - 20} more\n`);
    return 1;
  }
  return 0;
}

function assignments(file: ExportFile) {
  return file.assignments ?? [];
}

/**
 * Creates the file's non-root nodes under the mapped root, one call at a time in file order (parents
 * first, siblings in their order). A node of the target with the same parent, type, name and external
 * id is reused, so a re-run continues where a stopped import ended. Measured: calls in flight gain
 * nothing, since every node write takes the environment's lock and rebuilds its closure.
 */
async function createNodes(
  c: Clients,
  nodes: ExportedNode[],
  sourceRoot: string,
  targetRoot: string,
  existing: Node[],
  onProgress: (done: number) => void,
): Promise<{ map: Map<string, string>; tally: Tally }> {
  const map = new Map<string, string>([[sourceRoot, targetRoot]]);
  const tally: Tally = { created: 0, present: 0 };
  // the target's children by parent, in order: matched first come, first served
  const children = new Map<string, Node[]>();
  for (const n of existing) if (n.parentId) (children.get(n.parentId) ?? children.set(n.parentId, []).get(n.parentId)!).push(n);
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i];
    const parentId = map.get(n.parentId!)!;
    const siblings = children.get(parentId) ?? [];
    const match = siblings.findIndex((x) => x.type === n.type && x.name === n.name && x.externalId === n.externalId);
    if (match >= 0) {
      map.set(n.id, siblings.splice(match, 1)[0].id);
      tally.present++;
    } else {
      try {
        const metadata = Object.keys(n.metadata).length ? n.metadata : undefined;
        map.set(n.id, (await c.hierarchy.createNode({ parentId, type: n.type, name: n.name, externalId: n.externalId, metadata })).node!.id);
      } catch (err) {
        throw new ImportError(`${describeNode(n, i + 1)}: ${describeError(err)} (${count(tally.created, "node")} created before it; running the import again continues from there)`);
      }
      tally.created++;
    }
    onProgress(i + 1);
  }
  if (nodes.length === 0) onProgress(0);
  return { map, tally };
}
