import { useMemo, useState, type FormEvent } from "react";
import { Dialog, ErrorText, Loading, useLoad } from "../ui";
import { isFlat, loadNodes, nodePath, useWorkspace } from "../workspace";
import type { Node } from "../../../src/gen/canopy/v1/hierarchy_pb.js";

type Action = { kind: "create" | "rename" | "move" | "delete"; node: Node };

/** Hierarchy: the environment's tree with create, rename, move and delete; the server's schema errors shown in the dialog. */
export function HierarchyPage() {
  const { api, env, version } = useWorkspace();
  const data = useLoad(async () => {
    const [nodes, schema] = await Promise.all([loadNodes(api, env.rootNodeId), api.hierarchy.getHierarchySchema({})]);
    return { nodes, schema: schema.schema };
  }, [api, env.rootNodeId, version]);
  const [action, setAction] = useState<Action | null>(null);
  const children = useMemo(() => {
    const m = new Map<string, Node[]>();
    for (const n of data.data?.nodes ?? []) {
      if (!n.parentId) continue;
      const list = m.get(n.parentId) ?? [];
      list.push(n);
      m.set(n.parentId, list);
    }
    for (const list of m.values()) list.sort((a, b) => a.name.localeCompare(b.name));
    return m;
  }, [data.data]);
  const root = data.data?.nodes.find((n) => n.id === env.rootNodeId);
  const flat = isFlat(env);

  const renderNode = (n: Node) => {
    const kids = children.get(n.id) ?? [];
    const name = n.name || n.type;
    return (
      <li key={n.id} role="treeitem" aria-label={name} aria-expanded={kids.length ? true : undefined} aria-selected={false} data-testid="tree-node" data-node-id={n.id} data-node-name={name}>
        <div className="tree-row">
          <span className="node-name">{name}</span>
          <span className="badge">{n.type}</span>
          <span className="tree-actions">
            {!flat && (
              <button type="button" className="small" aria-label={`Add child to ${name}`} onClick={() => setAction({ kind: "create", node: n })}>
                Add child
              </button>
            )}
            <button type="button" className="small" aria-label={`Rename ${name}`} onClick={() => setAction({ kind: "rename", node: n })}>
              Rename
            </button>
            {n.parentId && (
              <>
                <button type="button" className="small" aria-label={`Move ${name}`} onClick={() => setAction({ kind: "move", node: n })}>
                  Move
                </button>
                <button type="button" className="small danger" aria-label={`Delete ${name}`} onClick={() => setAction({ kind: "delete", node: n })}>
                  Delete
                </button>
              </>
            )}
          </span>
        </div>
        {kids.length > 0 && <ul role="group">{kids.map(renderNode)}</ul>}
      </li>
    );
  };

  return (
    <section aria-labelledby="hierarchy-title">
      <p className="crumbs">Access Control</p>
      <h1 id="hierarchy-title">Hierarchy</h1>
      {flat && <p className="muted" data-testid="flat-note">This environment uses flat RBAC: assignments are made at the root node only, so there are no child nodes to manage.</p>}
      {data.loading && !data.data && <Loading />}
      <ErrorText error={data.error} />
      {root && (
        <ul className="tree" role="tree" aria-label="Hierarchy" data-testid="hierarchy-tree">
          {renderNode(root)}
        </ul>
      )}
      {action && data.data && (
        <NodeDialog action={action} nodes={data.data.nodes} allowedChildren={data.data.schema?.allowedChildren ?? {}} nodeTypes={data.data.schema?.nodeTypes ?? []} onClose={() => setAction(null)} />
      )}
    </section>
  );
}

function NodeDialog(props: { action: Action; nodes: Node[]; allowedChildren: Record<string, { types: string[] }>; nodeTypes: string[]; onClose: () => void }) {
  const { api, notify, changed } = useWorkspace();
  const { kind, node } = props.action;
  const nodeMap = useMemo(() => new Map(props.nodes.map((n) => [n.id, n])), [props.nodes]);
  const allowedTypes = props.allowedChildren[node.type]?.types ?? [];
  const [name, setName] = useState(kind === "rename" ? node.name : "");
  const [type, setType] = useState(allowedTypes[0] ?? "");
  const [parent, setParent] = useState(node.parentId);
  const [cascade, setCascade] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const label = node.name || node.type;
  // a node cannot move under itself or its descendants: leave those out of the picker
  const moveTargets = useMemo(() => {
    const below = new Set<string>([node.id]);
    for (const n of props.nodes) if (n.parentId && below.has(n.parentId)) below.add(n.id);
    return props.nodes.filter((n) => !below.has(n.id));
  }, [props.nodes, node.id]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      if (kind === "create") await api.hierarchy.createNode({ parentId: node.id, type: type.trim(), name: name.trim() });
      if (kind === "rename") await api.hierarchy.updateNode({ id: node.id, name: name.trim() });
      if (kind === "move") await api.hierarchy.moveNode({ id: node.id, newParentId: parent });
      if (kind === "delete") await api.hierarchy.deleteNode({ id: node.id, cascade });
      notify({ tone: "ok", text: { create: `Created ${name.trim()}`, rename: `Renamed to ${name.trim()}`, move: `Moved ${label}`, delete: `Deleted ${label}` }[kind] });
      changed();
      props.onClose();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  const title = { create: `Add a child to ${label}`, rename: `Rename ${label}`, move: `Move ${label}`, delete: `Delete ${label}` }[kind];
  return (
    <Dialog title={title} onClose={props.onClose} testId="node-dialog" busy={busy}>
      <form className="form" onSubmit={submit}>
        {kind === "create" && (
          <label>
            Type
            {allowedTypes.length > 0 ? (
              <select value={type} onChange={(e) => setType(e.target.value)} data-testid="node-type">
                {allowedTypes.map((t) => (
                  <option key={t}>{t}</option>
                ))}
              </select>
            ) : (
              <>
                <input value={type} onChange={(e) => setType(e.target.value)} list="node-types" required data-testid="node-type" />
                <datalist id="node-types">
                  {props.nodeTypes.map((t) => (
                    <option key={t} value={t} />
                  ))}
                </datalist>
              </>
            )}
          </label>
        )}
        {(kind === "create" || kind === "rename") && (
          <label>
            Name
            <input value={name} onChange={(e) => setName(e.target.value)} required data-testid="node-name" data-autofocus />
          </label>
        )}
        {kind === "move" && (
          <label>
            New parent
            <select value={parent} onChange={(e) => setParent(e.target.value)} data-testid="node-parent" data-autofocus>
              {moveTargets.map((n) => (
                <option key={n.id} value={n.id}>
                  {nodePath(nodeMap, n.id)}
                </option>
              ))}
            </select>
          </label>
        )}
        {kind === "delete" && (
          <>
            <p>Delete {label}? Without cascade, a node with children or assignments is refused.</p>
            <label className="inline">
              <input type="checkbox" checked={cascade} onChange={(e) => setCascade(e.target.checked)} data-testid="node-cascade" />
              Also delete its descendants and their assignments
            </label>
          </>
        )}
        <ErrorText error={error} testId="form-error" />
        <div className="buttons">
          <button type="button" onClick={props.onClose} disabled={busy}>
            Cancel
          </button>
          <button type="submit" className={kind === "delete" ? "danger" : "primary"} disabled={busy} data-testid="node-submit">
            {{ create: "Create", rename: "Save", move: "Move", delete: "Delete" }[kind]}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
