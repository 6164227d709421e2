/**
 * Typed domain errors. Services throw these; the API edge maps each `code` to one Connect/gRPC code
 * (src/api/errors.ts) and the REST edge to one HTTP status. Anything else that escapes a service is an
 * internal error: logged with its cause, never sent, never turned into "allowed".
 */

export type ErrorCode =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "aborted"
  | "resource_exhausted"
  | "unauthenticated"
  | "permission_denied"
  | "unavailable";

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** the request field at fault, e.g. `items[3].role_id` */
    readonly field = "",
    /** stable machine-readable reason, e.g. `rbac.assignment_conflict` */
    readonly reason = "",
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** The same error, reported against a field nested under `prefix` (e.g. `items[3]`). */
  withFieldPrefix(prefix: string): DomainError {
    const field = this.field ? `${prefix}.${this.field}` : prefix;
    return new DomainError(this.code, this.message, field, this.reason);
  }
}

export class InvalidArgumentError extends DomainError {
  constructor(field: string, message: string, reason = "") {
    super("invalid_argument", `${field}: ${message}`, field, reason);
  }
}

/** Stable `area.thing_not_found` reasons (REST error codes and the canopy-error-reason metadata). */
const NOT_FOUND_REASON: Record<string, string> = {
  node: "nodes.node_not_found",
  role: "rbac.role_not_found",
  permission: "rbac.permission_not_found",
  assignment: "rbac.assignment_not_found",
  identity: "identities.identity_not_found",
  "membership of identity in application": "identities.membership_not_found",
  environment: "environments.environment_not_found",
  application: "applications.application_not_found",
};

export class NotFoundError extends DomainError {
  constructor(what: string, id: string, field = "") {
    super("not_found", `${what} ${JSON.stringify(id)} not found`, field, NOT_FOUND_REASON[what] ?? `${what.replace(/ /g, "_")}.not_found`);
  }
}

export class ConflictError extends DomainError {
  constructor(message: string, field = "", reason = "conflict") {
    super("already_exists", message, field, reason);
  }
}

export class FailedPreconditionError extends DomainError {
  constructor(message: string, field = "", reason = "") {
    super("failed_precondition", message, field, reason);
  }
}

/** A move would put a node under itself or one of its descendants. */
export class CycleError extends FailedPreconditionError {
  constructor(nodeId: string, newParentId: string) {
    super(
      `moving node ${JSON.stringify(nodeId)} under ${JSON.stringify(newParentId)} would create a cycle: the new parent is the node itself or one of its descendants`,
      "new_parent_id",
      "hierarchy.cycle",
    );
  }
}

export class LimitExceededError extends DomainError {
  constructor(field: string, limit: number, what: string) {
    super("resource_exhausted", `${field}: at most ${limit} ${what} allowed`, field, "limit.exceeded");
  }
}

export class UnauthenticatedError extends DomainError {
  /** reasons: auth.missing_api_key, auth.invalid_api_key, auth.api_key_revoked, auth.api_key_expired */
  constructor(message: string, reason = "auth.invalid_api_key") {
    super("unauthenticated", message, "", reason);
  }
}

export class PermissionDeniedError extends DomainError {
  /** reasons: auth.insufficient_scope, auth.environment_mismatch, auth.admin_required, auth.forbidden */
  constructor(message: string, reason = "auth.forbidden") {
    super("permission_denied", message, "", reason);
  }
}

export class UnavailableError extends DomainError {
  constructor(message: string, reason = "unavailable") {
    super("unavailable", message, "", reason);
  }
}

/** Numeric gRPC status codes, used in per-item results of batch RPCs. */
export const GRPC_CODE: Record<ErrorCode | "ok" | "internal", number> = {
  ok: 0,
  invalid_argument: 3,
  not_found: 5,
  already_exists: 6,
  permission_denied: 7,
  resource_exhausted: 8,
  failed_precondition: 9,
  aborted: 10,
  internal: 13,
  unavailable: 14,
  unauthenticated: 16,
};
