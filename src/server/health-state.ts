/**
 * Whether this process is draining (shutting down): readiness (/readyz, grpc.health.v1) reports
 * NOT_SERVING from the moment shutdown starts, before in-flight work finishes. Listeners hear each change
 * (health Watch streams push it).
 */
export interface HealthState {
  readonly draining: boolean;
  /** called once when shutdown begins; idempotent */
  startDraining(): void;
  /** returns an unsubscribe function */
  onChange(listener: () => void): () => void;
}

export function createHealthState(): HealthState {
  let draining = false;
  const listeners = new Set<() => void>();
  return {
    get draining() {
      return draining;
    },
    startDraining() {
      if (draining) return;
      draining = true;
      for (const l of [...listeners]) l();
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
