import { useMemo, useState, type FormEvent } from "react";
import { dateToTs, formatTime, fromLocalInput, listAll } from "../api";
import { ErrorText, Loading, useLoad } from "../ui";
import { isFlat, loadNodes, nodePath, useWorkspace } from "../workspace";
import { DenialReason, type CheckResponse } from "../../../src/gen/canopy/v1/check_pb.js";

const DENIAL_TEXT: Record<DenialReason, string> = {
  [DenialReason.UNSPECIFIED]: "",
  [DenialReason.UNKNOWN_IDENTITY]: "Unknown identity",
  [DenialReason.UNKNOWN_PERMISSION]: "Unknown permission",
  [DenialReason.UNKNOWN_NODE]: "Unknown node",
  [DenialReason.IDENTITY_INACTIVE]: "The identity is deactivated",
  [DenialReason.NO_MEMBERSHIP]: "The identity is not a member of this application",
  [DenialReason.MEMBERSHIP_INACTIVE]: "The identity's membership is inactive",
  [DenialReason.NO_ASSIGNMENT]: "No assignment at this node or above it",
  [DenialReason.PERMISSION_NOT_GRANTED]: "Assignments exist, but none of their roles grants this permission",
  [DenialReason.ONLY_SCHEDULED]: "The only granting assignments have not started yet",
  [DenialReason.ONLY_EXPIRED]: "The only granting assignments have expired",
};

/** Check explorer: identity + permission + node (+ time) → the decision, the denial reason, and the granting path (explain). */
export function CheckPage() {
  const { api, env, version } = useWorkspace();
  const flat = isFlat(env);
  const data = useLoad(async () => {
    const [identities, permissions, roles, nodes] = await Promise.all([
      api.identities.listIdentities({ pageSize: 1000 }).then((r) => r.identities),
      listAll((t) => api.catalog.listPermissions({ pageSize: 1000, pageToken: t }).then((r) => ({ items: r.permissions, next: r.nextPageToken }))),
      listAll((t) => api.catalog.listRoles({ pageSize: 1000, pageToken: t }).then((r) => ({ items: r.roles, next: r.nextPageToken }))),
      loadNodes(api, env.rootNodeId),
    ]);
    return { identities, permissions, roles: new Map(roles.map((r) => [r.id, r.name])), nodes: new Map(nodes.map((n) => [n.id, n])), nodeList: nodes };
  }, [api, env.rootNodeId, version]);
  const [identityId, setIdentityId] = useState("");
  const [permission, setPermission] = useState("");
  const [nodeId, setNodeId] = useState(env.rootNodeId);
  const [at, setAt] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [result, setResult] = useState<CheckResponse | null>(null);
  const identityOf = useMemo(() => new Map((data.data?.identities ?? []).map((i) => [i.id, i.email || i.displayName || i.id])), [data.data]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      setResult(await api.check.check({ identityId, permission, nodeId: flat ? "" : nodeId, at: dateToTs(fromLocalInput(at)), explain: true }));
    } catch (err) {
      setResult(null);
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const d = data.data;
  return (
    <section aria-labelledby="check-title">
      <p className="crumbs">Tools</p>
      <h1 id="check-title">Check explorer</h1>
      {data.loading && !d && <Loading />}
      <ErrorText error={data.error} />
      {d && (
        <form className="form check-form" onSubmit={submit} aria-label="Check" data-testid="check-form">
          <label>
            Identity
            <select value={identityId} onChange={(e) => setIdentityId(e.target.value)} required data-testid="check-identity">
              <option value="">Choose an identity…</option>
              {d.identities.map((i) => (
                <option key={i.id} value={i.id}>
                  {i.email || i.displayName || i.id}
                </option>
              ))}
            </select>
          </label>
          <label>
            Permission
            <select value={permission} onChange={(e) => setPermission(e.target.value)} required data-testid="check-permission">
              <option value="">Choose a permission…</option>
              {d.permissions.map((p) => (
                <option key={p.id} value={p.key}>
                  {p.key}
                </option>
              ))}
            </select>
          </label>
          {!flat && (
            <label>
              Node
              <select value={nodeId} onChange={(e) => setNodeId(e.target.value)} data-testid="check-node">
                {d.nodeList.map((n) => (
                  <option key={n.id} value={n.id}>
                    {nodePath(d.nodes, n.id)}
                  </option>
                ))}
              </select>
            </label>
          )}
          <label>
            At <span className="muted">(optional; default now)</span>
            <input type="datetime-local" value={at} onChange={(e) => setAt(e.target.value)} data-testid="check-at" />
          </label>
          <div className="buttons">
            <button type="submit" className="primary" disabled={busy || !identityId || !permission}>
              {busy ? "Checking…" : "Check"}
            </button>
          </div>
        </form>
      )}
      <ErrorText error={error} testId="check-error" />
      <div className="result-slot" aria-live="polite">
        {result && d && (
          <div className={result.allowed ? "card result allowed" : "card result denied"} data-testid="check-result" data-allowed={String(result.allowed)}>
            <p className="decision" data-testid="check-decision">
              {result.allowed ? "Allowed" : "Denied"}
            </p>
            <p className="muted">
              {identityOf.get(result.identityId) ?? result.identityId} · <code>{result.permission}</code> at {nodePath(d.nodes, result.effectiveNodeId || env.rootNodeId)} · evaluated {formatTime(result.at)}
            </p>
            {!result.allowed && (
              <p data-testid="check-denial-reason">
                Reason: {DENIAL_TEXT[result.denialReason] || "—"} <code className="muted">{DenialReason[result.denialReason]}</code>
              </p>
            )}
            {result.allowed && (
              <div>
                <h3>Granting path</h3>
                <ol className="path" data-testid="check-path">
                  {result.explanation.map((g) => (
                    <li key={g.assignmentId} data-testid="check-path-item">
                      Role <strong>{d.roles.get(g.roleId) ?? g.roleId}</strong> assigned at <strong>{nodePath(d.nodes, g.nodeId)}</strong>
                      {" "}
                      {g.inherited ? <span className="badge">inherited from {d.nodes.get(g.nodeId)?.name ?? g.nodeId}</span> : <span className="badge">at this node</span>}
                      <span className="muted">
                        {" "}
                        ({formatTime(g.effectiveFrom)} → {g.effectiveTo ? formatTime(g.effectiveTo) : "no end"})
                      </span>
                    </li>
                  ))}
                </ol>
              </div>
            )}
          </div>
        )}
      </div>
    </section>
  );
}
