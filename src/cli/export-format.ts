import type { JsonObject } from "@bufbuild/protobuf";

/**
 * The file `canopy export` writes and `canopy import` reads: one environment's configuration as plain
 * JSON, with the source's ids kept only so that references inside the file (role and node ids of
 * assignments, parent ids of nodes) can be followed; import maps them to the ids the target assigns.
 * docs/OPERATIONS.md "CLI" shows an example.
 */
export const EXPORT_FORMAT = "canopy.environment.v1";

export interface ExportedSchema {
  nodeTypes: string[];
  /** parent type -> child types; absent = leaf */
  allowedChildren: Record<string, string[]>;
  /** 0 = only the server's depth limit */
  maxDepth: number;
  /** "" = unconstrained */
  rootNodeType: string;
}

export interface ExportedPermission {
  key: string;
  description: string;
  category: string;
}

export interface ExportedRole {
  id: string;
  name: string;
  description: string;
  permissionKeys: string[];
}

/** A node, parent-linked; the list is in pre-order (root first, every parent before its children, siblings in creation order). */
export interface ExportedNode {
  id: string;
  /** null for the root */
  parentId: string | null;
  type: string;
  name: string;
  externalId: string;
  metadata: JsonObject;
}

/** An identity referenced by assignments: identities are account-wide, so import maps them by id, else by email. */
export interface ExportedIdentity {
  id: string;
  email: string;
  externalId: string;
}

export interface ExportedAssignment {
  id: string;
  identityId: string;
  roleId: string;
  nodeId: string;
  /** ISO 8601 */
  effectiveFrom: string;
  /** ISO 8601; null = never ends */
  effectiveTo: string | null;
}

export interface ExportFile {
  format: typeof EXPORT_FORMAT;
  exportedAt: string;
  source: { url: string; rootNodeId: string; revision: string };
  /** lengths of the arrays below: a truncated file is refused on import */
  counts: { permissions: number; roles: number; nodes: number; assignments?: number; identities?: number };
  accessModel: "hierarchy" | "flat";
  hierarchySchema: ExportedSchema | null;
  permissions: ExportedPermission[];
  roles: ExportedRole[];
  nodes: ExportedNode[];
  /** only with --with-assignments */
  identities?: ExportedIdentity[];
  /** only with --with-assignments */
  assignments?: ExportedAssignment[];
}

/**
 * The file as text: small fields pretty-printed, every array item on one line, so that a large export
 * is written in chunks (no single multi-hundred-megabyte string) and diffs line by line.
 */
export function* exportChunks(file: ExportFile): Generator<string> {
  const arrays = ["permissions", "roles", "nodes", "identities", "assignments"] as const;
  const head: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(file)) if (!(arrays as readonly string[]).includes(k)) head[k] = v;
  const headText = JSON.stringify(head, null, 2);
  yield headText.slice(0, -2);
  for (const name of arrays) {
    const items = file[name];
    if (items === undefined) continue;
    if (items.length === 0) {
      yield `,\n  ${JSON.stringify(name)}: []`;
      continue;
    }
    yield `,\n  ${JSON.stringify(name)}: [\n`;
    let buf = "";
    for (let i = 0; i < items.length; i++) {
      buf += `    ${JSON.stringify(items[i])}${i === items.length - 1 ? "\n" : ",\n"}`;
      if (buf.length > 1 << 20) {
        yield buf;
        buf = "";
      }
    }
    yield buf + "  ]";
  }
  yield "\n}\n";
}

const PERMISSION_KEY = /^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/;

/** A problem in an export file, naming the item at fault, e.g. `nodes[12] (id …): …`. */
export class ExportFileError extends Error {
  override name = "ExportFileError";
}

function fail(message: string): never {
  throw new ExportFileError(message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function text(v: unknown, where: string, opts: { empty?: boolean } = {}): string {
  if (typeof v !== "string") fail(`${where} must be a string`);
  if (!opts.empty && v === "") fail(`${where} must not be empty`);
  return v;
}

function instant(v: unknown, where: string): number {
  const t = Date.parse(text(v, where));
  if (Number.isNaN(t)) fail(`${where} is not an ISO 8601 timestamp: ${JSON.stringify(v)}`);
  return t;
}

function array(file: Record<string, unknown>, name: string, optional = false): unknown[] {
  const v = file[name];
  if (v === undefined && optional) return [];
  if (!Array.isArray(v)) fail(`${name} must be an array`);
  const counts = file.counts as Record<string, unknown>;
  if (counts[name] !== undefined && counts[name] !== v.length) {
    fail(`${name} holds ${v.length} item(s) but counts.${name} says ${String(counts[name])}: the file is truncated or was edited`);
  }
  return v;
}

/**
 * Checks a parsed export file the way the server would check the same writes, without a server:
 * shapes, permission keys, role references, the tree (one root first, parents before children, the
 * schema's types, parent/child pairs and depth) and assignment references and windows. Throws
 * ExportFileError naming the first item at fault; returns the file typed.
 */
export function validateExportFile(data: unknown): ExportFile {
  if (!isObject(data)) fail("the file is not a JSON object");
  if (data.format !== EXPORT_FORMAT) fail(`format must be ${JSON.stringify(EXPORT_FORMAT)}, got ${JSON.stringify(data.format)} (is this a canopy export file?)`);
  if (!isObject(data.counts)) fail("counts must be an object");
  if (data.accessModel !== "hierarchy" && data.accessModel !== "flat") fail(`accessModel must be "hierarchy" or "flat", got ${JSON.stringify(data.accessModel)}`);

  let schema: ExportedSchema | null = null;
  if (data.hierarchySchema !== null && data.hierarchySchema !== undefined) {
    const s = data.hierarchySchema;
    if (!isObject(s) || !Array.isArray(s.nodeTypes) || !isObject(s.allowedChildren)) fail("hierarchySchema must have nodeTypes (array) and allowedChildren (object)");
    const nodeTypes = s.nodeTypes.map((t, i) => text(t, `hierarchySchema.nodeTypes[${i}]`));
    const allowedChildren: Record<string, string[]> = {};
    for (const [parent, children] of Object.entries(s.allowedChildren)) {
      if (!Array.isArray(children)) fail(`hierarchySchema.allowedChildren.${parent} must be an array`);
      allowedChildren[parent] = children.map((c, i) => text(c, `hierarchySchema.allowedChildren.${parent}[${i}]`));
    }
    const maxDepth = s.maxDepth ?? 0;
    if (typeof maxDepth !== "number" || !Number.isInteger(maxDepth) || maxDepth < 0) fail("hierarchySchema.maxDepth must be a non-negative integer");
    schema = { nodeTypes, allowedChildren, maxDepth, rootNodeType: s.rootNodeType === undefined ? "" : text(s.rootNodeType, "hierarchySchema.rootNodeType", { empty: true }) };
  }

  const keys = new Set<string>();
  const permissions = array(data, "permissions").map((p, i): ExportedPermission => {
    if (!isObject(p)) fail(`permissions[${i}] must be an object`);
    const key = text(p.key, `permissions[${i}].key`);
    if (!PERMISSION_KEY.test(key)) fail(`permissions[${i}].key ${JSON.stringify(key)} is not a permission key (lowercase resource.action)`);
    if (keys.has(key)) fail(`permissions[${i}].key ${JSON.stringify(key)} appears twice`);
    keys.add(key);
    return { key, description: text(p.description ?? "", `permissions[${i}].description`, { empty: true }), category: text(p.category ?? "", `permissions[${i}].category`, { empty: true }) };
  });

  const roleIds = new Set<string>();
  const roleNames = new Set<string>();
  const roles = array(data, "roles").map((r, i): ExportedRole => {
    if (!isObject(r)) fail(`roles[${i}] must be an object`);
    const id = text(r.id, `roles[${i}].id`);
    const name = text(r.name, `roles[${i}].name`);
    if (roleIds.has(id)) fail(`roles[${i}].id ${id} appears twice`);
    if (roleNames.has(name)) fail(`roles[${i}].name ${JSON.stringify(name)} appears twice`);
    roleIds.add(id);
    roleNames.add(name);
    if (!Array.isArray(r.permissionKeys)) fail(`roles[${i}].permissionKeys must be an array`);
    const permissionKeys = r.permissionKeys.map((k, j) => {
      const key = text(k, `roles[${i}].permissionKeys[${j}]`);
      if (!keys.has(key)) fail(`roles[${i}] (${name}): permission ${JSON.stringify(key)} is not among the file's permissions`);
      return key;
    });
    return { id, name, description: text(r.description ?? "", `roles[${i}].description`, { empty: true }), permissionKeys };
  });

  const nodes = array(data, "nodes").map((n, i): ExportedNode => {
    if (!isObject(n)) fail(`nodes[${i}] must be an object`);
    const metadata = n.metadata ?? {};
    if (!isObject(metadata)) fail(`nodes[${i}].metadata must be an object`);
    return {
      id: text(n.id, `nodes[${i}].id`),
      parentId: n.parentId === null || n.parentId === undefined ? null : text(n.parentId, `nodes[${i}].parentId`),
      type: text(n.type, `nodes[${i}].type`),
      name: text(n.name, `nodes[${i}].name`),
      externalId: text(n.externalId ?? "", `nodes[${i}].externalId`, { empty: true }),
      metadata: metadata as JsonObject,
    };
  });
  if (nodes.length === 0 || nodes[0].parentId !== null) fail("nodes must start with the root (the node whose parentId is null)");
  if (data.accessModel === "flat" && nodes.length > 1) fail(`nodes: the flat access model has only the root, but the file has ${nodes.length} nodes`);
  const types = new Map<string, string>();
  const depth = new Map<string, number>();
  nodes.forEach((n, i) => {
    const at = `nodes[${i}] (${n.name}, id ${n.id})`;
    if (types.has(n.id)) fail(`${at}: the id appears twice`);
    if (i > 0) {
      if (n.parentId === null) fail(`${at}: a second root (parentId null)`);
      const parentType = types.get(n.parentId);
      if (parentType === undefined) fail(`${at}: parent ${n.parentId} is not an earlier node of the file (nodes are listed parents first)`);
      if (schema) {
        if (!schema.nodeTypes.includes(n.type)) fail(`${at}: type ${JSON.stringify(n.type)} is not in hierarchySchema.nodeTypes`);
        if (!(schema.allowedChildren[parentType] ?? []).includes(n.type)) fail(`${at}: type ${JSON.stringify(n.type)} is not allowed under ${JSON.stringify(parentType)}`);
      }
    }
    const d = n.parentId === null ? 1 : depth.get(n.parentId)! + 1;
    if (schema && schema.maxDepth > 0 && d > schema.maxDepth) fail(`${at}: depth ${d} exceeds hierarchySchema.maxDepth ${schema.maxDepth}`);
    types.set(n.id, n.type);
    depth.set(n.id, d);
  });

  const withAssignments = data.assignments !== undefined;
  const identityIds = new Set<string>();
  const identities = array(data, "identities", true).map((x, i): ExportedIdentity => {
    if (!isObject(x)) fail(`identities[${i}] must be an object`);
    const id = text(x.id, `identities[${i}].id`);
    identityIds.add(id);
    return { id, email: text(x.email ?? "", `identities[${i}].email`, { empty: true }), externalId: text(x.externalId ?? "", `identities[${i}].externalId`, { empty: true }) };
  });
  const assignments = array(data, "assignments", true).map((a, i): ExportedAssignment => {
    if (!isObject(a)) fail(`assignments[${i}] must be an object`);
    const roleId = text(a.roleId, `assignments[${i}].roleId`);
    const nodeId = text(a.nodeId, `assignments[${i}].nodeId`);
    const identityId = text(a.identityId, `assignments[${i}].identityId`);
    if (!roleIds.has(roleId)) fail(`assignments[${i}]: role ${roleId} is not among the file's roles`);
    if (!types.has(nodeId)) fail(`assignments[${i}]: node ${nodeId} is not among the file's nodes`);
    const from = instant(a.effectiveFrom, `assignments[${i}].effectiveFrom`);
    const to = a.effectiveTo === null || a.effectiveTo === undefined ? null : instant(a.effectiveTo, `assignments[${i}].effectiveTo`);
    if (to !== null && to <= from) fail(`assignments[${i}]: effectiveTo must be after effectiveFrom`);
    return { id: text(a.id ?? "", `assignments[${i}].id`, { empty: true }), identityId, roleId, nodeId, effectiveFrom: a.effectiveFrom as string, effectiveTo: to === null ? null : (a.effectiveTo as string) };
  });

  const source = isObject(data.source) ? data.source : {};
  return {
    format: EXPORT_FORMAT,
    exportedAt: typeof data.exportedAt === "string" ? data.exportedAt : "",
    source: { url: String(source.url ?? ""), rootNodeId: String(source.rootNodeId ?? nodes[0].id), revision: String(source.revision ?? "") },
    counts: data.counts as ExportFile["counts"],
    accessModel: data.accessModel,
    hierarchySchema: schema,
    permissions,
    roles,
    nodes,
    ...(withAssignments ? { identities, assignments } : {}),
  };
}
