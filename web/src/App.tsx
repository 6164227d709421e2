import { useCallback, useEffect, useMemo, useState, type FormEvent, type ReactNode } from "react";
import { Code } from "@connectrpc/connect";
import { createApi, errorCode, session } from "./api";
import { ErrorText, Loading, Toast, type ToastMessage } from "./ui";
import { WorkspaceContext, type ActiveEnvironment, type Workspace } from "./workspace";
import { AccessModel } from "../../src/gen/canopy/v1/common_pb.js";
import { OverviewPage } from "./pages/Overview";
import { DirectoryPage } from "./pages/Directory";
import { HierarchyPage } from "./pages/Hierarchy";
import { RolesPage } from "./pages/Roles";
import { CheckPage } from "./pages/Check";
import { SetupGuide } from "./pages/SetupGuide";

/** Client-side routes; their first segments are listed in src/server/web-app.ts (DASHBOARD_ROUTES). */
const NAV: Array<{ path: string; label: string; section: string }> = [
  { path: "/overview", label: "Overview", section: "Workspace" },
  { path: "/identities", label: "Identities", section: "Access Control" },
  { path: "/roles", label: "Roles & Permissions", section: "Access Control" },
  { path: "/hierarchy", label: "Hierarchy", section: "Access Control" },
  { path: "/check", label: "Check explorer", section: "Tools" },
];

function usePath(): [string, (p: string) => void] {
  const [path, setPath] = useState(window.location.pathname);
  useEffect(() => {
    const onPop = () => setPath(window.location.pathname);
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);
  const navigate = useCallback((p: string) => {
    if (p !== window.location.pathname + window.location.search) window.history.pushState(null, "", p);
    setPath(window.location.pathname);
    window.scrollTo(0, 0);
  }, []);
  return [path, navigate];
}

interface SignedIn {
  key: string;
  kind: "admin" | "environment";
  environments: ActiveEnvironment[];
}

/** Admin keys list every environment (AdminService); an environment key sees only its own. */
async function signIn(key: string): Promise<SignedIn> {
  const plain = createApi(key);
  try {
    const [{ environments }, { applications }] = await Promise.all([plain.admin.listEnvironments({}), plain.admin.listApplications({ pageSize: 1000 })]);
    const appName = new Map(applications.map((a) => [a.id, a.name]));
    return {
      key,
      kind: "admin",
      environments: environments.map((e) => ({
        id: e.id,
        label: `${appName.get(e.applicationId) ?? "application"} / ${e.name}`,
        accessModel: e.accessModel,
        rootNodeId: e.rootNodeId,
      })),
    };
  } catch (err) {
    if (errorCode(err) !== Code.PermissionDenied) throw err;
  }
  const schema = await plain.hierarchy.getHierarchySchema({});
  return { key, kind: "environment", environments: [{ id: "", label: "This key's environment", accessModel: schema.accessModel, rootNodeId: schema.rootNodeId }] };
}

function SignIn(props: { onSignedIn: (s: SignedIn) => void; initialError?: unknown }) {
  const [key, setKey] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(props.initialError);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const s = await signIn(key.trim());
      session.setKey(key.trim());
      props.onSignedIn(s);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <form className="card" onSubmit={submit} data-testid="signin-form" aria-labelledby="signin-title">
        <h1 id="signin-title">Canopy dashboard</h1>
        <p className="muted">Paste an API key: the development key printed at first start, or the admin key. It is kept in this tab only (sessionStorage).</p>
        <label>
          API key
          <input type="password" autoComplete="off" spellCheck={false} value={key} onChange={(e) => setKey(e.target.value)} required placeholder="cnpy_…" data-autofocus autoFocus />
        </label>
        <ErrorText error={error} testId="signin-error" />
        <button type="submit" className="primary" disabled={busy || !key.trim()}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

/** The shell: sign-in, environment switcher, navigation, routed pages, toasts and the setup guide. */
export function App() {
  const [path, navigate] = usePath();
  const [signed, setSigned] = useState<SignedIn | null>(null);
  const [restoring, setRestoring] = useState(() => session.key() !== "");
  const [restoreError, setRestoreError] = useState<unknown>();
  const [envId, setEnvId] = useState(session.environment());
  const [toast, setToast] = useState<ToastMessage | null>(null);
  const [version, setVersion] = useState(0);
  const [guideOpen, setGuideOpen] = useState(false);
  const [menuOpen, setMenuOpen] = useState(false);

  useEffect(() => {
    const key = session.key();
    if (!key) return;
    signIn(key).then(
      (s) => {
        setSigned(s);
        setRestoring(false);
      },
      (err: unknown) => {
        session.clear();
        setRestoreError(err);
        setRestoring(false);
      },
    );
  }, []);

  const env = useMemo(() => {
    if (!signed) return undefined;
    return signed.environments.find((e) => e.id === envId) ?? signed.environments.find((e) => e.label.endsWith("/ development")) ?? signed.environments[0];
  }, [signed, envId]);

  // the access model and root can change (SetAccessModel): read them for the active environment
  const [liveEnv, setLiveEnv] = useState<ActiveEnvironment | undefined>();
  const [envError, setEnvError] = useState<unknown>();
  useEffect(() => {
    if (!signed || !env) return;
    let live = true;
    setEnvError(undefined);
    createApi(signed.key, env.id || undefined)
      .hierarchy.getHierarchySchema({})
      .then(
        (s) => live && setLiveEnv({ ...env, accessModel: s.accessModel, rootNodeId: s.rootNodeId }),
        (err: unknown) => live && setEnvError(err),
      );
    return () => {
      live = false;
    };
  }, [signed, env, version]);

  const notify = useCallback((t: ToastMessage) => setToast(t), []);
  const dismiss = useCallback(() => setToast(null), []);
  const liveId = liveEnv?.id;
  const api = useMemo(() => (signed && liveId !== undefined ? createApi(signed.key, liveId || undefined) : null), [signed, liveId]);
  const workspace: Workspace | null = useMemo(
    () =>
      api && liveEnv && liveEnv.id === env?.id
        ? {
            api,
            env: liveEnv,
            navigate: (p: string) => {
              setMenuOpen(false);
              navigate(p);
            },
            notify,
            version,
            changed: () => setVersion((v) => v + 1),
            openSetupGuide: () => setGuideOpen(true),
          }
        : null,
    [api, liveEnv, env, navigate, notify, version],
  );

  if (restoring) return <Loading label="Signing in…" />;
  if (!signed) return <SignIn onSignedIn={setSigned} initialError={restoreError} />;
  if (signed.environments.length === 0) {
    return (
      <main className="signin">
        <div className="card">
          <h1>No environments</h1>
          <p>This admin key sees no environment yet: create an application (AdminService.CreateApplication) first.</p>
        </div>
      </main>
    );
  }

  const route = path === "/" ? "/overview" : "/" + (path.split("/")[1] ?? "");
  let page: ReactNode;
  if (!workspace) page = envError ? <ErrorText error={envError} /> : <Loading />;
  else if (route === "/overview") page = <OverviewPage />;
  else if (route === "/identities") page = <DirectoryPage />;
  else if (route === "/hierarchy") page = <HierarchyPage />;
  else if (route === "/roles") page = <RolesPage />;
  else if (route === "/check") page = <CheckPage />;
  else page = <p>Page not found. <a href="/overview" onClick={(e) => (e.preventDefault(), navigate("/overview"))}>Go to the overview</a></p>;

  const sections = [...new Set(NAV.map((n) => n.section))];
  return (
    <div className="shell">
      <header className="topbar">
        <button type="button" className="icon menu-toggle" aria-label="Menu" aria-expanded={menuOpen} aria-controls="sidenav" onClick={() => setMenuOpen((o) => !o)}>
          ☰
        </button>
        <span className="brand">Canopy</span>
        <label className="env-switch">
          <span>Environment</span>
          <select
            data-testid="env-switcher"
            value={env?.id ?? ""}
            disabled={signed.kind !== "admin"}
            onChange={(e) => {
              session.setEnvironment(e.target.value);
              setEnvId(e.target.value);
              setLiveEnv(undefined);
            }}
          >
            {signed.environments.map((e) => (
              <option key={e.id} value={e.id}>
                {e.label}
              </option>
            ))}
          </select>
        </label>
        {liveEnv && <span className="badge" data-testid="access-model">{liveEnv.accessModel === AccessModel.FLAT ? "Flat RBAC" : "Hierarchy RBAC"}</span>}
        <button
          type="button"
          className="link signout"
          onClick={() => {
            session.clear();
            setSigned(null);
            setLiveEnv(undefined);
          }}
        >
          Sign out
        </button>
      </header>
      <nav id="sidenav" className={menuOpen ? "sidenav open" : "sidenav"} aria-label="Main">
        {sections.map((s) => (
          <div key={s}>
            <p className="nav-section">{s}</p>
            <ul>
              {NAV.filter((n) => n.section === s).map((n) => (
                <li key={n.path}>
                  <a
                    href={n.path}
                    aria-current={route === n.path ? "page" : undefined}
                    onClick={(e) => {
                      e.preventDefault();
                      setMenuOpen(false);
                      navigate(n.path);
                    }}
                  >
                    {n.label}
                  </a>
                </li>
              ))}
            </ul>
          </div>
        ))}
        <button type="button" className="link" onClick={() => setGuideOpen(true)}>
          Setup guide
        </button>
      </nav>
      <main className="content" key={env?.id}>
        {workspace ? <WorkspaceContext.Provider value={workspace}>{page}</WorkspaceContext.Provider> : page}
      </main>
      {workspace && guideOpen && (
        <WorkspaceContext.Provider value={workspace}>
          <SetupGuide onClose={() => setGuideOpen(false)} />
        </WorkspaceContext.Provider>
      )}
      <Toast toast={toast} onDismiss={dismiss} />
    </div>
  );
}
