import { DomainError, GRPC_CODE, type ErrorCode } from "../domain/errors.js";
import type { Logger } from "../domain/runtime.js";
import { StoreUnavailableError } from "../store/store.js";

/** HTTP status of each domain error code (docs/REST.md "Errors"). */
const STATUS: Record<ErrorCode, number> = {
  invalid_argument: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  already_exists: 409,
  aborted: 409,
  resource_exhausted: 413,
  failed_precondition: 422,
  unavailable: 503,
};

/** The code a REST client reads when the domain gave no specific reason. */
const DEFAULT_CODE: Record<ErrorCode, string> = {
  invalid_argument: "validation.invalid_field",
  unauthenticated: "auth.invalid_api_key",
  permission_denied: "auth.forbidden",
  not_found: "request.not_found",
  already_exists: "request.conflict",
  aborted: "request.aborted",
  resource_exhausted: "limit.exceeded",
  failed_precondition: "request.failed_precondition",
  unavailable: "service.unavailable",
};

const CODE_OF_GRPC = new Map<number, ErrorCode>(Object.entries(GRPC_CODE).filter(([k]) => k in STATUS).map(([k, v]) => [v, k as ErrorCode]));

/** The seed product's error envelope. `field` is added when one request field is at fault. */
export interface ErrorBody {
  error: { statusCode: number; code: string; message: string; field?: string };
}

/** An error the REST layer raises itself (routing, body, content type), already in REST terms. */
export class RestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field = "",
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** A domain error reported against the REST body's names: `assignment.role_id` → `role_id`, `items[2]` → `assignments[2]`. */
export function renameField(err: DomainError, from: string, to: string): DomainError {
  if (!err.field.startsWith(from)) return err;
  const field = to + err.field.slice(from.length);
  const message = err.message.startsWith(`${err.field}:`) ? field + err.message.slice(err.field.length) : err.message;
  return new DomainError(err.code, message, field, err.reason);
}

function envelope(status: number, code: string, message: string, field: string): ErrorBody {
  return { error: field ? { statusCode: status, code, message, field } : { statusCode: status, code, message } };
}

/**
 * The one mapping from anything thrown to a REST response (the REST twin of src/api/errors.ts): domain
 * errors keep their message and stable dotted reason; anything unknown is a 500 with the cause logged,
 * never sent.
 */
export function toRestError(err: unknown, logger: Logger, route: string): { status: number; body: ErrorBody; headers: Record<string, string> } {
  if (err instanceof RestError) return { status: err.status, body: envelope(err.status, err.code, err.message, err.field), headers: err.headers };
  if (err instanceof StoreUnavailableError) {
    logger.warn({ err: err.message, route }, "storage unavailable");
    return { status: 503, body: envelope(503, "storage.unavailable", "storage unavailable; retry later", ""), headers: { "retry-after": "1" } };
  }
  if (err instanceof DomainError) {
    const status = STATUS[err.code];
    return { status, body: envelope(status, err.reason || DEFAULT_CODE[err.code], err.message, err.field), headers: status === 503 ? { "retry-after": "1" } : {} };
  }
  logger.error({ err, route }, "internal error");
  return { status: 500, body: envelope(500, "internal.error", "internal error", ""), headers: {} };
}

/** A per-item status of a batch (gRPC code number + reason) in REST terms. `batch.aborted` items are 424 Failed Dependency. */
export function itemError(status: { code: number; message: string; field: string; reason: string }): { statusCode: number; code: string; message: string; field?: string } {
  const code = CODE_OF_GRPC.get(status.code);
  const statusCode = status.reason === "batch.aborted" ? 424 : code ? STATUS[code] : 500;
  const restCode = status.reason || (code ? DEFAULT_CODE[code] : "internal.error");
  return status.field ? { statusCode, code: restCode, message: status.message, field: status.field } : { statusCode, code: restCode, message: status.message };
}
