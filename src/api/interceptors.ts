import { createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import type { ApiKeyScope } from "../domain/model.js";
import type { Principal } from "../domain/auth.js";
import type { Logger } from "../domain/runtime.js";
import { toConnectError } from "./errors.js";
import { authenticateCall, awaitMinRevision } from "./call.js";

export { apiKeyOf, ENVIRONMENT_HEADER } from "./call.js";

/** The authenticated caller of the current RPC, set by the auth interceptor. */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "canopy principal" });

const WRITE_SCOPE: Record<string, ApiKeyScope> = {
  "canopy.v1.CheckService": "check",
  "canopy.v1.AssignmentService": "assignments:write",
  "canopy.v1.HierarchyService": "hierarchy:write",
  "canopy.v1.CatalogService": "catalog:write",
  "canopy.v1.IdentityService": "identities:write",
  "canopy.v1.AdminService": "admin",
};

/** The scope an RPC needs: `check` for CheckService, `admin` for AdminService, `read` for Get/List, else the service's write scope. */
export function scopeFor(service: string, method: string): ApiKeyScope {
  const write = WRITE_SCOPE[service];
  if (!write) return "admin";
  if (write === "check" || write === "admin") return write;
  return /^(Get|List)/.test(method) ? "read" : write;
}

/**
 * Outermost: maps every error (also those thrown while a response stream is being produced) through
 * toConnectError, so no handler needs to and nothing internal leaks.
 */
export function errorInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const source = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* source;
          } catch (err) {
            throw toConnectError(err, logger, procedure);
          }
        })(),
      };
    } catch (err) {
      throw toConnectError(err, logger, procedure);
    }
  };
}

/** Authenticates the key and enforces the RPC's scope before any handler runs. */
export function authInterceptor(canopy: Canopy): Interceptor {
  return (next) => async (req) => {
    const principal = await authenticateCall(canopy, (name) => req.header.get(name), scopeFor(req.service.typeName, req.method.name));
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}

/**
 * Read-your-writes (awaitMinRevision) for every unary data-plane request carrying `min_revision`. Runs
 * after auth; handlers then answer from state at least that new.
 */
export function consistencyInterceptor(canopy: Canopy): Interceptor {
  return (next) => async (req) => {
    if (!req.stream && req.service.typeName !== "canopy.v1.AdminService") {
      const raw = (req.message as { minRevision?: unknown }).minRevision;
      if (typeof raw === "bigint" && raw !== 0n) {
        await awaitMinRevision(canopy, req.contextValues.get(principalKey)!, (name) => req.header.get(name), raw, () => req.signal);
      }
    }
    return next(req);
  };
}
