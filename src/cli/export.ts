import { closeSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { AccessModel } from "../gen/canopy/v1/common_pb.js";
import type { HierarchySchema } from "../gen/canopy/v1/hierarchy_pb.js";
import { str, type CommandSpec, type Values } from "./args.js";
import { dataPlane, dataPlaneOptions, listAll, type Clients } from "./client.js";
import { EXPORT_FORMAT, exportChunks, type ExportedSchema, type ExportFile } from "./export-format.js";
import { count, type Io } from "./io.js";

/** `canopy export`: an environment's configuration as JSON, read page by page through the API. */
export const exportSpec: CommandSpec = {
  name: "export",
  brief: "write an environment's configuration as JSON",
  summary:
    "Write the key's environment's configuration as JSON: permissions, roles with their permission keys, access model, hierarchy schema and every node (parent-linked, parents first); with --with-assignments also every assignment and the identities they name.",
  options: {
    ...dataPlaneOptions,
    out: { type: "string", value: "<file>", description: "write to this file (replaced atomically) instead of stdout" },
    "with-assignments": { type: "boolean", description: "include assignments (every state) and the identities they reference" },
  },
  notes: "Every list is read to its last page; the file records the counts so that a truncated copy is refused on import.",
};

/** The schema message as plain JSON (null = no schema). */
export function schemaJson(s: HierarchySchema | undefined): ExportedSchema | null {
  if (!s) return null;
  const allowedChildren: Record<string, string[]> = {};
  for (const [parent, list] of Object.entries(s.allowedChildren).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) allowedChildren[parent] = [...list.types];
  return { nodeTypes: [...s.nodeTypes], allowedChildren, maxDepth: s.maxDepth, rootNodeType: s.rootNodeType };
}

/** Reads everything the file holds; `withAssignments` adds assignments and their identities. */
export async function readEnvironment(c: Clients, url: string, withAssignments: boolean, io: Io): Promise<ExportFile> {
  const head = await c.hierarchy.getHierarchySchema({});
  const [permissions, roles, nodes] = await Promise.all([
    listAll((pageToken, pageSize) => c.catalog.listPermissions({ pageToken, pageSize }).then((r) => ({ items: r.permissions, next: r.nextPageToken }))),
    listAll((pageToken, pageSize) => c.catalog.listRoles({ pageToken, pageSize }).then((r) => ({ items: r.roles, next: r.nextPageToken }))),
    listAll((pageToken, pageSize) => c.hierarchy.getSubtree({ id: head.rootNodeId, maxDepth: 0, pageToken, pageSize }).then((r) => ({ items: r.nodes, next: r.nextPageToken }))),
  ]);
  const file: ExportFile = {
    format: EXPORT_FORMAT,
    exportedAt: new Date().toISOString(),
    source: { url, rootNodeId: head.rootNodeId, revision: head.revision.toString() },
    counts: { permissions: permissions.length, roles: roles.length, nodes: nodes.length },
    accessModel: head.accessModel === AccessModel.FLAT ? "flat" : "hierarchy",
    hierarchySchema: schemaJson(head.schema),
    permissions: permissions.map((p) => ({ key: p.key, description: p.description, category: p.category })),
    roles: roles.map((r) => ({ id: r.id, name: r.name, description: r.description, permissionKeys: [...r.permissionKeys] })),
    nodes: nodes.map((n) => ({ id: n.id, parentId: n.parentId || null, type: n.type, name: n.name, externalId: n.externalId, metadata: n.metadata ?? {} })),
  };
  if (withAssignments) {
    const [assignments, identities] = await Promise.all([
      listAll((pageToken, pageSize) => c.assignments.listAssignments({ pageToken, pageSize }).then((r) => ({ items: r.assignments, next: r.nextPageToken }))),
      listAll((pageToken, pageSize) => c.identities.listIdentities({ pageToken, pageSize }).then((r) => ({ items: r.identities, next: r.nextPageToken }))),
    ]);
    const referenced = new Set(assignments.map((a) => a.identityId));
    file.identities = identities.filter((i) => referenced.has(i.id)).map((i) => ({ id: i.id, email: i.email, externalId: i.externalId }));
    const listed = new Set(file.identities.map((i) => i.id));
    for (const id of referenced) if (!listed.has(id)) file.identities.push({ id, email: "", externalId: "" });
    file.assignments = assignments.map((a) => ({
      id: a.id,
      identityId: a.identityId,
      roleId: a.roleId,
      nodeId: a.nodeId,
      effectiveFrom: timestampDate(a.effectiveFrom!).toISOString(),
      effectiveTo: a.effectiveTo ? timestampDate(a.effectiveTo).toISOString() : null,
    }));
    file.counts.assignments = file.assignments.length;
    file.counts.identities = file.identities.length;
  }
  // every read answers from the current state: a write between the pages could mix two states
  const tail = await c.hierarchy.getHierarchySchema({});
  if (tail.revision !== head.revision) {
    io.err(`warning: the environment changed while it was read (revision ${head.revision} -> ${tail.revision}); export again once writes have stopped for a consistent copy\n`);
  }
  return file;
}

export async function exportCommand(values: Values, _positionals: string[], io: Io): Promise<number> {
  const c = await dataPlane(values);
  const file = await readEnvironment(c, str(values, "url")!, values["with-assignments"] === true, io);
  const out = str(values, "out");
  if (out) {
    // written next to the target and renamed over it: a reader never sees half a file
    const tmp = `${out}.${process.pid}.tmp`;
    const fd = openSync(tmp, "w");
    try {
      for (const chunk of exportChunks(file)) writeSync(fd, chunk);
      closeSync(fd);
      renameSync(tmp, out);
    } catch (err) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
      rmSync(tmp, { force: true });
      throw err;
    }
  } else {
    for (const chunk of exportChunks(file)) io.out(chunk);
  }
  const n = file.counts;
  io.err(
    `exported ${count(n.permissions, "permission")}, ${count(n.roles, "role")}, ${count(n.nodes, "node")}` +
      (n.assignments !== undefined ? `, ${count(n.assignments, "assignment")} of ${count(n.identities ?? 0, "identity", "identities")}` : "") +
      ` at revision ${file.source.revision}${out ? ` to ${out}` : ""}\n`,
  );
  return 0;
}
