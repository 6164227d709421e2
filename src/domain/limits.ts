/** Enforced limits (README "Limits"). Every one is configurable through src/config.ts. */
export interface Limits {
  /** items in one BatchCreateAssignments / BatchDeleteAssignments / BatchCreateIdentities / BatchCreatePermissions call */
  maxBatchItems: number;
  /** items in one BulkCreateAssignments stream message */
  maxStreamMessageItems: number;
  /** items in one whole BulkCreateAssignments stream */
  maxStreamItems: number;
  /** checks in one CheckBulk */
  maxCheckBulk: number;
  /** largest page_size */
  maxPageSize: number;
  /** page size when page_size is 0 */
  defaultPageSize: number;
  /** deepest hierarchy level (root = 1), applies with or without a schema */
  maxDepth: number;
  /**
   * most items written per transaction by bulk writes; BulkCreateAssignments groups stream messages
   * that are already waiting into one transaction up to this many items (group commit)
   */
  writeChunkSize: number;
  /** longest wait for min_revision, in ms (the request deadline may shorten it) */
  revisionWaitMs: number;
  /** largest serialized metadata object, in bytes */
  maxMetadataBytes: number;
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  maxBatchItems: 1000,
  maxStreamMessageItems: 1000,
  maxStreamItems: 100_000,
  maxCheckBulk: 1000,
  maxPageSize: 1000,
  defaultPageSize: 100,
  maxDepth: 32,
  writeChunkSize: 5000,
  revisionWaitMs: 5000,
  maxMetadataBytes: 16 * 1024,
});
