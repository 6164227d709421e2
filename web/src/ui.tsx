import { useCallback, useEffect, useId, useRef, useState, type ReactNode } from "react";
import { errorMessage } from "./api";

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/**
 * A modal dialog (or, with `variant="panel"`, a slide-out panel from the right): focus moves in and is
 * trapped, Esc and the backdrop close it, focus returns to what opened it.
 */
export function Dialog(props: { title: ReactNode; onClose: () => void; children: ReactNode; variant?: "dialog" | "panel"; testId?: string; ariaLabel?: string; busy?: boolean }) {
  const ref = useRef<HTMLDivElement>(null);
  const titleId = useId();
  const { onClose, busy } = props;
  useEffect(() => {
    const opener = document.activeElement as HTMLElement | null;
    const first = ref.current?.querySelector<HTMLElement>("[data-autofocus]") ?? ref.current?.querySelector<HTMLElement>(FOCUSABLE);
    (first ?? ref.current)?.focus();
    return () => opener?.focus?.();
  }, []);
  const onKeyDown = (e: React.KeyboardEvent) => {
    if (e.key === "Escape" && !busy) {
      e.stopPropagation();
      onClose();
    }
    if (e.key !== "Tab" || !ref.current) return;
    const items = [...ref.current.querySelectorAll<HTMLElement>(FOCUSABLE)].filter((el) => el.offsetParent !== null || el === document.activeElement);
    if (items.length === 0) return e.preventDefault();
    const first = items[0];
    const last = items[items.length - 1];
    if (e.shiftKey && document.activeElement === first) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && document.activeElement === last) {
      e.preventDefault();
      first.focus();
    }
  };
  const panel = props.variant === "panel";
  return (
    <div className="backdrop" onMouseDown={(e) => e.target === e.currentTarget && !busy && onClose()}>
      <div
        ref={ref}
        className={panel ? "panel" : "dialog"}
        role="dialog"
        aria-modal="true"
        aria-labelledby={props.ariaLabel ? undefined : titleId}
        aria-label={props.ariaLabel}
        data-testid={props.testId}
        tabIndex={-1}
        onKeyDown={onKeyDown}
      >
        <div className="dialog-head">
          <h2 id={titleId}>{props.title}</h2>
          <button type="button" className="icon" aria-label="Close" onClick={onClose} disabled={busy}>
            ×
          </button>
        </div>
        <div className="dialog-body">{props.children}</div>
      </div>
    </div>
  );
}

/** The server's message for a failed call, announced to screen readers. */
export function ErrorText(props: { error: unknown; testId?: string }) {
  if (props.error === undefined || props.error === null) return null;
  return (
    <p className="error" role="alert" data-testid={props.testId ?? "error"}>
      {typeof props.error === "string" ? props.error : errorMessage(props.error)}
    </p>
  );
}

export function Loading(props: { label?: string }) {
  return (
    <p className="muted" role="status" data-testid="loading">
      {props.label ?? "Loading…"}
    </p>
  );
}

export interface ToastMessage {
  text: string;
  tone: "ok" | "warn" | "error";
  details?: string[];
}

/** One toast at a time, bottom right; details (per-item reasons) expand on demand. */
export function Toast(props: { toast: ToastMessage | null; onDismiss: () => void }) {
  const { toast, onDismiss } = props;
  useEffect(() => {
    if (!toast || toast.details?.length) return;
    const t = setTimeout(onDismiss, 8000);
    return () => clearTimeout(t);
  }, [toast, onDismiss]);
  return (
    <div className="toast-slot" role="status" aria-live="polite">
      {toast && (
        <div className={`toast ${toast.tone}`} data-testid="toast">
          <div className="toast-row">
            <span data-testid="toast-text">{toast.text}</span>
            <button type="button" className="icon" aria-label="Dismiss notification" onClick={onDismiss}>
              ×
            </button>
          </div>
          {toast.details && toast.details.length > 0 && (
            <details data-testid="toast-details">
              <summary>Show reasons ({toast.details.length})</summary>
              <ul>
                {toast.details.map((d, i) => (
                  <li key={i}>{d}</li>
                ))}
              </ul>
            </details>
          )}
        </div>
      )}
    </div>
  );
}

/** Runs `load` on mount and whenever `deps` change; `reload` runs it again. Stale answers are dropped. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): { data: T | undefined; error: unknown; loading: boolean; reload: () => void } {
  const [state, setState] = useState<{ data: T | undefined; error: unknown; loading: boolean }>({ data: undefined, error: undefined, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, error: undefined, loading: false }),
      (error: unknown) => live && setState({ data: undefined, error, loading: false }),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/**
 * One server action at a time with its busy flag and the error to show: `run` clears the error, sets busy,
 * keeps the error if the action throws, and clears busy either way.
 */
export function useAction(): { busy: boolean; error: unknown; run: (action: () => Promise<void>) => Promise<void> } {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const run = useCallback(async (action: () => Promise<void>) => {
    setBusy(true);
    setError(undefined);
    try {
      await action();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, run };
}
