import { useState } from "react";
import { Dialog, ErrorText, Loading } from "../ui";
import { useWorkspace } from "../workspace";
import { useSetupProgress } from "./Overview";

/** The Setup Guide slide-out: its "Invite & Assign Users" tab lists the steps, each linking to its page and ticked as data appears. */
export function SetupGuide(props: { onClose: () => void }) {
  const { navigate } = useWorkspace();
  const progress = useSetupProgress();
  const [tab, setTab] = useState<"invite" | "about">("invite");
  const steps = [
    { id: "invite", title: "Invite identities", done: progress.data?.hasIdentities, path: "/identities", help: "Open Identities → Directory and use Invite identity for each person or service that needs access." },
    { id: "assign", title: "Assign roles to identities", done: progress.data?.hasAssignments, path: "/identities", help: "Tick identities in the directory, then click Assign Role in the action bar. Create roles under Roles & Permissions first if there are none." },
  ];
  const go = (path: string) => {
    props.onClose();
    navigate(path);
  };
  return (
    <Dialog title="Setup Guide" onClose={props.onClose} variant="panel" testId="setup-guide">
      <div className="tabs" role="tablist" aria-label="Setup Guide">
        <button type="button" role="tab" id="tab-invite" aria-controls="panel-invite" aria-selected={tab === "invite"} className={tab === "invite" ? "tab active" : "tab"} onClick={() => setTab("invite")}>
          Invite &amp; Assign Users
        </button>
        <button type="button" role="tab" id="tab-about" aria-controls="panel-about" aria-selected={tab === "about"} className={tab === "about" ? "tab active" : "tab"} onClick={() => setTab("about")}>
          How access works
        </button>
      </div>
      {tab === "invite" ? (
        <div role="tabpanel" id="panel-invite" aria-labelledby="tab-invite">
          {progress.loading && !progress.data && <Loading />}
          <ErrorText error={progress.error} />
          <ol className="steps">
            {steps.map((s, i) => (
              <li key={s.id} data-testid={`setup-step-${s.id}`} data-completed={s.done ? "true" : "false"} className={s.done ? "done" : ""}>
                <span className="step-mark" aria-hidden="true">{s.done ? "✓" : i + 1}</span>
                <div>
                  <a href={s.path} onClick={(e) => (e.preventDefault(), go(s.path))}>
                    {s.title}
                  </a>
                  <span className="sr-only">{s.done ? " (completed)" : " (not done yet)"}</span>
                  <p className="muted">{s.help}</p>
                </div>
              </li>
            ))}
          </ol>
        </div>
      ) : (
        <div role="tabpanel" id="panel-about" aria-labelledby="tab-about">
          <p>A role assigned at a node applies there and at every node below it. In flat RBAC there is only the root, so an assignment applies to the whole environment.</p>
        </div>
      )}
    </Dialog>
  );
}
