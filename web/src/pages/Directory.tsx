import { useEffect, useMemo, useState, type FormEvent } from "react";
import { Code } from "@connectrpc/connect";
import { dateToTs, errorCode, errorMessage, formatTime, fromLocalInput, listAll } from "../api";
import { Dialog, ErrorText, Loading, useLoad } from "../ui";
import { isFlat, loadNodes, nodePath, useWorkspace } from "../workspace";
import { AssignmentState } from "../../../src/gen/canopy/v1/common_pb.js";
import type { Identity } from "../../../src/gen/canopy/v1/identity_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AssignmentInputSchema } from "../../../src/gen/canopy/v1/assignment_pb.js";

const PAGE_SIZE = 25;
/** Items per BatchCreateAssignments call: big selections go in chunks so progress can be shown. */
const CHUNK = 100;

export const identityLabel = (i: Identity) => i.email || i.displayName || i.id;

/** Identities → Directory: search, pages, selection, bulk Assign Role, invite, and each identity's Assignments panel. */
export function DirectoryPage() {
  const { api, version } = useWorkspace();
  const [query, setQuery] = useState("");
  const [applied, setApplied] = useState("");
  const [tokens, setTokens] = useState<string[]>([""]);
  const pageToken = tokens[tokens.length - 1];
  const exact = applied.includes("@");
  const page = useLoad(() => api.identities.listIdentities({ pageSize: PAGE_SIZE, pageToken, email: exact ? applied : "" }), [api, pageToken, applied, version]);
  const [selected, setSelected] = useState<Map<string, Identity>>(new Map());
  const [assignTo, setAssignTo] = useState<Identity[] | null>(null);
  const [inviting, setInviting] = useState(false);
  const [drawer, setDrawer] = useState<Identity | null>(null);

  const rows = useMemo(() => {
    const all = page.data?.identities ?? [];
    if (!applied || exact) return all;
    const q = applied.toLowerCase();
    return all.filter((i) => i.email.toLowerCase().includes(q) || i.displayName.toLowerCase().includes(q) || i.externalId.toLowerCase().includes(q));
  }, [page.data, applied, exact]);

  const toggle = (i: Identity, on: boolean) =>
    setSelected((s) => {
      const n = new Map(s);
      if (on) n.set(i.id, i);
      else n.delete(i.id);
      return n;
    });
  const allOnPage = rows.length > 0 && rows.every((r) => selected.has(r.id));
  const count = selected.size;

  const search = (e: FormEvent) => {
    e.preventDefault();
    setApplied(query.trim());
    setTokens([""]);
  };

  return (
    <section aria-labelledby="directory-title">
      <div className={count > 0 ? "action-bar shown" : "action-bar"} data-testid="action-bar" role="region" aria-label="Selection actions" aria-hidden={count === 0} inert={count === 0 ? true : undefined}>
        <span data-testid="selection-count">
          {count === 1 ? "1 identity selected" : `${count} identities selected`}
        </span>
        <button type="button" className="primary" onClick={() => setAssignTo([...selected.values()])}>
          Assign Role
        </button>
        <button type="button" className="link" onClick={() => setSelected(new Map())}>
          Clear selection
        </button>
      </div>
      <p className="crumbs">Identities</p>
      <div className="page-head">
        <h1 id="directory-title">Directory</h1>
        <button type="button" onClick={() => setInviting(true)}>
          Invite identity
        </button>
      </div>
      <form className="search" role="search" onSubmit={search}>
        <label>
          <span className="sr-only">Search identities</span>
          <input type="search" placeholder="Exact email, or filter this page by name" value={query} onChange={(e) => setQuery(e.target.value)} aria-label="Search identities" />
        </label>
        <button type="submit">Search</button>
        {applied && (
          <button
            type="button"
            className="link"
            onClick={() => {
              setQuery("");
              setApplied("");
              setTokens([""]);
            }}
          >
            Clear search
          </button>
        )}
      </form>
      <ErrorText error={page.error} />
      <div className="table-wrap">
        <table data-testid="directory-table" aria-busy={page.loading}>
          <thead>
            <tr>
              <th className="check-col">
                <input
                  type="checkbox"
                  aria-label="Select all identities on this page"
                  data-testid="select-all"
                  checked={allOnPage}
                  disabled={rows.length === 0}
                  onChange={(e) => rows.forEach((r) => toggle(r, e.target.checked))}
                />
              </th>
              <th>Email</th>
              <th className="hide-narrow">Name</th>
              <th>Status</th>
              <th>
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.map((i) => (
              <tr key={i.id} data-testid="identity-row" data-identity-id={i.id} aria-selected={selected.has(i.id)}>
                <td className="check-col">
                  <input type="checkbox" data-testid="identity-checkbox" aria-label={`Select ${identityLabel(i)}`} checked={selected.has(i.id)} onChange={(e) => toggle(i, e.target.checked)} />
                </td>
                <td className="ellipsis" data-testid="identity-email">{i.email || "—"}</td>
                <td className="hide-narrow ellipsis">{i.displayName || "—"}</td>
                <td>{i.isActive ? "Active" : "Inactive"}</td>
                <td className="right">
                  <button type="button" className="small" data-testid="open-assignments" aria-label={`Assignments of ${identityLabel(i)}`} onClick={() => setDrawer(i)}>
                    Assignments
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {page.loading && !page.data && <Loading />}
        {!page.loading && !page.error && rows.length === 0 && (
          <p className="empty" data-testid="directory-empty">
            {applied ? "No identity matches this search." : "No identities yet. Invite one to get started."}
          </p>
        )}
      </div>
      <div className="pager">
        <button type="button" disabled={tokens.length <= 1 || page.loading} onClick={() => setTokens((t) => t.slice(0, -1))}>
          Previous page
        </button>
        <span className="muted">Page {tokens.length}</span>
        <button type="button" disabled={!page.data?.nextPageToken || page.loading} onClick={() => setTokens((t) => [...t, page.data!.nextPageToken])}>
          Next page
        </button>
      </div>
      {inviting && <InviteDialog onClose={() => setInviting(false)} />}
      {drawer && <AssignmentsPanel identity={drawer} onClose={() => setDrawer(null)} onAssign={() => setAssignTo([drawer])} />}
      {assignTo && (
        <AssignRoleDialog
          identities={assignTo}
          onClose={() => setAssignTo(null)}
          onDone={() => {
            setAssignTo(null);
            setSelected(new Map());
          }}
        />
      )}
    </section>
  );
}

function InviteDialog(props: { onClose: () => void }) {
  const { api, notify, changed } = useWorkspace();
  const [email, setEmail] = useState("");
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const r = await api.identities.createIdentity({ identity: { email: email.trim(), displayName: name.trim() } });
      notify({ tone: "ok", text: `Invited ${r.identity?.email ?? email}` });
      changed();
      props.onClose();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return (
    <Dialog title="Invite identity" onClose={props.onClose} testId="invite-dialog" busy={busy}>
      <form onSubmit={submit} className="form">
        <label>
          Email
          <input type="email" required value={email} onChange={(e) => setEmail(e.target.value)} data-testid="invite-email" data-autofocus />
        </label>
        <label>
          Display name <span className="muted">(optional)</span>
          <input value={name} onChange={(e) => setName(e.target.value)} data-testid="invite-name" />
        </label>
        <ErrorText error={error} testId="form-error" />
        <div className="buttons">
          <button type="button" onClick={props.onClose} disabled={busy}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy || !email.trim()} data-testid="invite-submit">
            {busy ? "Inviting…" : "Invite"}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

/** Assign one role at one node to the given identities: CreateAssignment for one, BatchCreateAssignments in chunks for several. */
export function AssignRoleDialog(props: { identities: Identity[]; onClose: () => void; onDone: () => void }) {
  const { api, env, notify, changed } = useWorkspace();
  const flat = isFlat(env);
  const data = useLoad(
    async () => {
      const [roles, nodes] = await Promise.all([
        listAll((t) => api.catalog.listRoles({ pageSize: 1000, pageToken: t }).then((r) => ({ items: r.roles, next: r.nextPageToken }))),
        flat ? Promise.resolve([]) : loadNodes(api, env.rootNodeId),
      ]);
      return { roles, nodes };
    },
    [api, env.rootNodeId, flat],
  );
  const [roleId, setRoleId] = useState("");
  const [nodeId, setNodeId] = useState(env.rootNodeId);
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [busy, setBusy] = useState(false);
  const [progress, setProgress] = useState<{ done: number; total: number } | null>(null);
  const [error, setError] = useState<unknown>();
  const one = props.identities.length === 1;
  const title = one ? `Assign role to ${identityLabel(props.identities[0])}` : `Assign role to ${props.identities.length} identities`;
  const nodeMap = useMemo(() => new Map((data.data?.nodes ?? []).map((n) => [n.id, n])), [data.data]);

  useEffect(() => {
    if (!roleId && data.data?.roles.length) setRoleId(data.data.roles[0].id);
  }, [data.data, roleId]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const effectiveFrom = dateToTs(fromLocalInput(from));
    const effectiveTo = dateToTs(fromLocalInput(to));
    const input = (i: Identity): MessageInitShape<typeof AssignmentInputSchema> => ({ identityId: i.id, roleId, nodeId: flat ? env.rootNodeId : nodeId, effectiveFrom, effectiveTo });
    setBusy(true);
    setError(undefined);
    if (one) {
      try {
        await api.assignments.createAssignment({ assignment: input(props.identities[0]) });
        notify({ tone: "ok", text: `Assigned the role to ${identityLabel(props.identities[0])}` });
        changed();
        props.onDone();
      } catch (err) {
        if (errorCode(err) === Code.AlreadyExists) {
          notify({ tone: "warn", text: `Skipped: ${identityLabel(props.identities[0])} already has this role at this node`, details: [errorMessage(err)] });
          props.onDone();
        } else {
          setError(err);
          setBusy(false);
        }
      }
      return;
    }
    let assigned = 0;
    let skipped = 0;
    let failed = 0;
    const reasons: string[] = [];
    setProgress({ done: 0, total: props.identities.length });
    for (let start = 0; start < props.identities.length; start += CHUNK) {
      const chunk = props.identities.slice(start, start + CHUNK);
      try {
        const r = await api.assignments.batchCreateAssignments({ items: chunk.map(input) });
        for (const res of r.results) {
          const who = identityLabel(chunk[res.index]);
          const code = res.status?.code ?? 0;
          if (code === 0) assigned++;
          else if (code === Code.AlreadyExists) {
            skipped++;
            reasons.push(`${who}: skipped, already had the role (${res.status?.message})`);
          } else {
            failed++;
            reasons.push(`${who}: ${res.status?.message || Code[code]}`);
          }
        }
      } catch (err) {
        failed += chunk.length;
        reasons.push(`${chunk.length} identities not sent: ${errorMessage(err)}`);
      }
      setProgress({ done: Math.min(start + CHUNK, props.identities.length), total: props.identities.length });
    }
    const parts = [`Assigned ${assigned}`, `skipped ${skipped} (already had the role)`];
    if (failed) parts.push(`failed ${failed}`);
    notify({ tone: failed ? "error" : skipped ? "warn" : "ok", text: parts.join(", "), details: reasons });
    changed();
    props.onDone();
  };

  const roles = data.data?.roles ?? [];
  return (
    <Dialog title={title} onClose={props.onClose} testId="assign-dialog" busy={busy}>
      {data.loading && <Loading />}
      <ErrorText error={data.error} />
      {data.data && roles.length === 0 && (
        <p className="empty" data-testid="no-roles">
          This environment has no roles yet. Create one under Roles &amp; Permissions first.
        </p>
      )}
      {data.data && roles.length > 0 && (
        <form onSubmit={submit} className="form">
          <label>
            Role
            <select value={roleId} onChange={(e) => setRoleId(e.target.value)} data-testid="assign-role" data-autofocus required>
              {roles.map((r) => (
                <option key={r.id} value={r.id}>
                  {r.name}
                </option>
              ))}
            </select>
          </label>
          {flat ? (
            <p className="muted" data-testid="assign-node-fixed">
              Node: the environment&apos;s root (flat RBAC — nothing to pick).
            </p>
          ) : (
            <label>
              Node
              <select value={nodeId} onChange={(e) => setNodeId(e.target.value)} data-testid="assign-node">
                {data.data.nodes.map((n) => (
                  <option key={n.id} value={n.id}>
                    {nodePath(nodeMap, n.id)}
                  </option>
                ))}
              </select>
            </label>
          )}
          <div className="row2">
            <label>
              Effective from <span className="muted">(optional)</span>
              <input type="datetime-local" value={from} onChange={(e) => setFrom(e.target.value)} data-testid="assign-effective-from" />
            </label>
            <label>
              Effective to <span className="muted">(optional)</span>
              <input type="datetime-local" value={to} onChange={(e) => setTo(e.target.value)} data-testid="assign-effective-to" />
            </label>
          </div>
          {progress && (
            <div className="progress">
              <progress max={progress.total} value={progress.done} aria-label="Assignment progress" data-testid="assign-progress" />
              <span className="muted">
                {progress.done} of {progress.total}
              </span>
            </div>
          )}
          <ErrorText error={error} testId="form-error" />
          <div className="buttons">
            <button type="button" onClick={props.onClose} disabled={busy}>
              Cancel
            </button>
            <button type="submit" className="primary" disabled={busy || !roleId} data-testid="assign-submit">
              {busy ? "Assigning…" : "Assign"}
            </button>
          </div>
        </form>
      )}
    </Dialog>
  );
}

const STATE_LABEL: Record<AssignmentState, string> = {
  [AssignmentState.UNSPECIFIED]: "unknown",
  [AssignmentState.SCHEDULED]: "scheduled",
  [AssignmentState.ACTIVE]: "active",
  [AssignmentState.EXPIRED]: "expired",
};

/** An identity's assignments in the active environment: node, role, window, lifecycle state; remove one. */
function AssignmentsPanel(props: { identity: Identity; onClose: () => void; onAssign: () => void }) {
  const { api, env, notify, changed, version } = useWorkspace();
  const data = useLoad(
    async () => {
      const [assignments, roles, nodes] = await Promise.all([
        listAll((t) => api.assignments.listAssignments({ identityId: props.identity.id, pageSize: 1000, pageToken: t }).then((r) => ({ items: r.assignments, next: r.nextPageToken }))),
        listAll((t) => api.catalog.listRoles({ pageSize: 1000, pageToken: t }).then((r) => ({ items: r.roles, next: r.nextPageToken }))),
        loadNodes(api, env.rootNodeId),
      ]);
      return { assignments, roles: new Map(roles.map((r) => [r.id, r.name])), nodes: new Map(nodes.map((n) => [n.id, n])) };
    },
    [api, props.identity.id, env.rootNodeId, version],
  );
  const [confirm, setConfirm] = useState<string | null>(null);
  const [error, setError] = useState<unknown>();
  const remove = async (id: string) => {
    setError(undefined);
    try {
      await api.assignments.deleteAssignment({ id });
      notify({ tone: "ok", text: "Assignment removed" });
      setConfirm(null);
      changed();
    } catch (err) {
      setError(err);
    }
  };
  const label = identityLabel(props.identity);
  return (
    <Dialog title={`Assignments of ${label}`} onClose={props.onClose} variant="panel" testId="assignments-panel">
      <div className="tabs" role="tablist" aria-label="Identity">
        <button type="button" role="tab" aria-selected="true" className="tab active">
          Assignments
        </button>
      </div>
      <div role="tabpanel" aria-label="Assignments">
        <p>
          <button type="button" className="primary" onClick={props.onAssign}>
            Assign Role
          </button>
        </p>
        <ErrorText error={data.error ?? error} />
        {data.loading && !data.data && <Loading />}
        {data.data && data.data.assignments.length === 0 && (
          <p className="empty" data-testid="assignments-empty">
            No assignments in this environment.
          </p>
        )}
        {data.data && data.data.assignments.length > 0 && (
          <ul className="assignment-list" data-testid="assignments-list">
            {data.data.assignments.map((a) => {
              const role = data.data!.roles.get(a.roleId) ?? a.roleId;
              const node = nodePath(data.data!.nodes, a.nodeId);
              const state = STATE_LABEL[a.state];
              return (
                <li key={a.id} data-testid="assignment-row" data-assignment-id={a.id}>
                  <div>
                    <strong data-testid="assignment-role">{role}</strong> <span className={`state ${state}`} data-testid="assignment-state">{state}</span>
                  </div>
                  <div className="muted" data-testid="assignment-node">
                    at {node}
                  </div>
                  <div className="muted" data-testid="assignment-window">
                    {formatTime(a.effectiveFrom)} → {a.effectiveTo ? formatTime(a.effectiveTo) : "no end"}
                  </div>
                  {confirm === a.id ? (
                    <div className="buttons">
                      <button type="button" className="danger" onClick={() => void remove(a.id)}>
                        Confirm removal
                      </button>
                      <button type="button" onClick={() => setConfirm(null)}>
                        Keep
                      </button>
                    </div>
                  ) : (
                    <button type="button" className="small" aria-label={`Remove ${role} at ${node}`} onClick={() => setConfirm(a.id)}>
                      Remove
                    </button>
                  )}
                </li>
              );
            })}
          </ul>
        )}
      </div>
    </Dialog>
  );
}

