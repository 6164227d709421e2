/**
 * What the use cases report for metrics (src/server/observability.ts turns it into Prometheus series).
 * The domain imports no metrics library and the engine knows nothing of it: the runtime calls these
 * around the engine. Every method must be cheap: `checks` runs once per Check and CheckBulk.
 */
export interface DomainObserver {
  /** decisions of one Check (1 + 0 or 0 + 1) or of a whole CheckBulk, counted item by item */
  checks(allowed: number, denied: number): void;
  /** a hierarchy write rebuilt an environment's closure in `seconds` */
  closureRebuilt(seconds: number): void;
  /** the replica poll's largest (storage revision − in-memory revision) over the loaded environments */
  revisionLag(revisions: number): void;
  /** BulkCreateAssignments / BatchCreateAssignments items: created, and failed (invalid, or aborted by an atomic batch) */
  bulkItems(created: number, failed: number): void;
}

/** Reports nothing: the default when no observer is injected (unit tests, tools). */
export const NO_OBSERVER: DomainObserver = Object.freeze({
  checks() {},
  closureRebuilt() {},
  revisionLag() {},
  bulkItems() {},
});
