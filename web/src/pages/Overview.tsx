import { useWorkspace } from "../workspace";
import { ErrorText, Loading, useLoad } from "../ui";

/** Whether the environment has identities and assignments yet (one-item pages: cheap). */
export function useSetupProgress() {
  const { api, version } = useWorkspace();
  return useLoad(async () => {
    const [ids, asg] = await Promise.all([api.identities.listIdentities({ pageSize: 1 }), api.assignments.listAssignments({ pageSize: 1 })]);
    return { hasIdentities: ids.identities.length > 0, hasAssignments: asg.assignments.length > 0 };
  }, [api, version]);
}

/** Overview: the getting-started banner while the environment is empty, and where to go next. */
export function OverviewPage() {
  const { env, navigate, openSetupGuide } = useWorkspace();
  const progress = useSetupProgress();
  const incomplete = progress.data && (!progress.data.hasIdentities || !progress.data.hasAssignments);
  return (
    <section aria-labelledby="overview-title">
      <h1 id="overview-title">Overview</h1>
      <p className="muted">
        Environment: <span data-testid="overview-env">{env.label}</span>
      </p>
      <div className="banner-slot">
        {progress.loading && !progress.data && <Loading />}
        <ErrorText error={progress.error} />
        {incomplete && (
          <div className="banner" data-testid="overview-banner" role="region" aria-label="Getting started">
            <p>You haven&apos;t invited any users or assigned them roles yet.</p>
            <button type="button" className="primary" onClick={openSetupGuide}>
              Complete Invite &amp; Assign Users Setup
            </button>
          </div>
        )}
        {progress.data && !incomplete && (
          <p className="ok-note" data-testid="overview-ready">
            Identities are invited and hold roles in this environment.
          </p>
        )}
      </div>
      <div className="cards">
        {[
          { path: "/identities", title: "Identities", text: "Invite identities and assign them roles, one at a time or in bulk." },
          { path: "/roles", title: "Roles & Permissions", text: "Define permissions and bundle them into roles." },
          { path: "/hierarchy", title: "Hierarchy", text: "Shape the tree roles cascade down." },
          { path: "/check", title: "Check explorer", text: "Ask whether an identity may do something, and why." },
        ].map((c) => (
          <a key={c.path} className="card link-card" href={c.path} onClick={(e) => (e.preventDefault(), navigate(c.path))}>
            <strong>{c.title}</strong>
            <span className="muted">{c.text}</span>
          </a>
        ))}
      </div>
    </section>
  );
}
