import { useEffect, useState, type FormEvent } from "react";
import { listAll } from "../api";
import { ErrorText, Loading, useAction, useLoad } from "../ui";
import { useWorkspace } from "../workspace";
import type { Permission, Role } from "../../../src/gen/canopy/v1/catalog_pb.js";

/** Roles & Permissions: create permissions and roles, tick each role's permissions (SetRolePermissions). */
export function RolesPage() {
  const { api, version } = useWorkspace();
  const data = useLoad(async () => {
    const [permissions, roles] = await Promise.all([
      listAll((t) => api.catalog.listPermissions({ pageSize: 1000, pageToken: t }).then((r) => ({ items: r.permissions, next: r.nextPageToken }))),
      listAll((t) => api.catalog.listRoles({ pageSize: 1000, pageToken: t }).then((r) => ({ items: r.roles, next: r.nextPageToken }))),
    ]);
    return { permissions, roles };
  }, [api, version]);
  return (
    <section aria-labelledby="roles-title">
      <p className="crumbs">Access Control</p>
      <h1 id="roles-title">Roles &amp; Permissions</h1>
      {data.loading && !data.data && <Loading />}
      <ErrorText error={data.error} />
      <div className="split">
        <div>
          <h2>Permissions</h2>
          <CreatePermission />
          {data.data && data.data.permissions.length === 0 && <p className="empty" data-testid="permissions-empty">No permissions yet.</p>}
          <ul className="plain-list" data-testid="permission-list">
            {data.data?.permissions.map((p) => (
              <li key={p.id} data-testid="permission-row">
                <code>{p.key}</code> {p.description && <span className="muted">— {p.description}</span>}
              </li>
            ))}
          </ul>
        </div>
        <div>
          <h2>Roles</h2>
          <CreateRole />
          {data.data && data.data.roles.length === 0 && <p className="empty" data-testid="roles-empty">No roles yet.</p>}
          {data.data?.roles.map((r) => <RoleCard key={r.id} role={r} permissions={data.data!.permissions} />)}
        </div>
      </div>
    </section>
  );
}

function CreatePermission() {
  const { api, notify, changed } = useWorkspace();
  const [key, setKey] = useState("");
  const [description, setDescription] = useState("");
  const { busy, error, run } = useAction();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      await api.catalog.batchCreatePermissions({ permissions: [{ key: key.trim(), description: description.trim() }] });
      notify({ tone: "ok", text: `Created permission ${key.trim()}` });
      setKey("");
      setDescription("");
      changed();
    });
  };
  return (
    <form className="form compact" onSubmit={submit} aria-label="Create permission" data-testid="create-permission-form">
      <label>
        Permission key
        <input value={key} onChange={(e) => setKey(e.target.value)} placeholder="invoice.read" required />
      </label>
      <label>
        Description <span className="muted">(optional)</span>
        <input value={description} onChange={(e) => setDescription(e.target.value)} />
      </label>
      <ErrorText error={error} testId="form-error" />
      <button type="submit" disabled={busy || !key.trim()}>
        Create permission
      </button>
    </form>
  );
}

function CreateRole() {
  const { api, notify, changed } = useWorkspace();
  const [name, setName] = useState("");
  const { busy, error, run } = useAction();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      await api.catalog.createRole({ name: name.trim() });
      notify({ tone: "ok", text: `Created role ${name.trim()}` });
      setName("");
      changed();
    });
  };
  return (
    <form className="form compact" onSubmit={submit} aria-label="Create role" data-testid="create-role-form">
      <label>
        Role name
        <input value={name} onChange={(e) => setName(e.target.value)} placeholder="invoice-viewer" required />
      </label>
      <ErrorText error={error} testId="form-error" />
      <button type="submit" disabled={busy || !name.trim()}>
        Create role
      </button>
    </form>
  );
}

function RoleCard(props: { role: Role; permissions: Permission[] }) {
  const { api, notify, changed } = useWorkspace();
  const [keys, setKeys] = useState(new Set(props.role.permissionKeys));
  useEffect(() => setKeys(new Set(props.role.permissionKeys)), [props.role]);
  const { busy, error, run } = useAction();
  const dirty = keys.size !== props.role.permissionKeys.length || props.role.permissionKeys.some((k) => !keys.has(k));
  const save = () =>
    run(async () => {
      await api.catalog.setRolePermissions({ id: props.role.id, permissionKeys: [...keys] });
      notify({ tone: "ok", text: `Saved the permissions of ${props.role.name}` });
      changed();
    });
  return (
    <fieldset className="card role-card" data-testid="role-card" data-role-id={props.role.id} data-role-name={props.role.name}>
      <legend>{props.role.name}</legend>
      {props.permissions.length === 0 && <p className="muted">Create permissions to grant them.</p>}
      <div className="perm-grid">
        {props.permissions.map((p) => (
          <label key={p.id} className="inline">
            <input
              type="checkbox"
              aria-label={`${p.key} for ${props.role.name}`}
              checked={keys.has(p.key)}
              onChange={(e) =>
                setKeys((s) => {
                  const n = new Set(s);
                  if (e.target.checked) n.add(p.key);
                  else n.delete(p.key);
                  return n;
                })
              }
            />
            <code>{p.key}</code>
          </label>
        ))}
      </div>
      <ErrorText error={error} testId="form-error" />
      <button type="button" className="primary small" disabled={!dirty || busy} onClick={() => void save()} aria-label={`Save permissions of ${props.role.name}`}>
        {busy ? "Saving…" : "Save permissions"}
      </button>
    </fieldset>
  );
}
