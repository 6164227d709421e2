import { Code, ConnectError } from "@connectrpc/connect";
import { DomainError, type ErrorCode } from "../domain/errors.js";
import type { Logger } from "../domain/runtime.js";
import { StoreUnavailableError } from "../store/store.js";

const CODE: Record<ErrorCode, Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  aborted: Code.Aborted,
  resource_exhausted: Code.ResourceExhausted,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  unavailable: Code.Unavailable,
};

/**
 * The one mapping from anything thrown to what a client sees. Domain errors keep their message (it
 * names the field) and carry `canopy-error-field` / `canopy-error-reason` metadata; Connect errors
 * pass through; anything else is INTERNAL with the cause logged, never sent.
 */
export function toConnectError(err: unknown, logger: Logger, procedure: string): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof StoreUnavailableError) {
    logger.warn({ err: err.message, procedure }, "storage unavailable");
    return new ConnectError("storage unavailable; retry later", Code.Unavailable);
  }
  if (err instanceof DomainError) {
    const meta = new Headers();
    if (err.field) meta.set("canopy-error-field", err.field);
    if (err.reason) meta.set("canopy-error-reason", err.reason);
    return new ConnectError(err.message, CODE[err.code], meta);
  }
  logger.error({ err, procedure }, "internal error");
  return new ConnectError("internal error", Code.Internal);
}
