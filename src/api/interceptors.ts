import { createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import type { ApiKeyScope } from "../domain/model.js";
import type { Principal } from "../domain/auth.js";
import type { Logger } from "../domain/runtime.js";
import { toConnectError } from "./errors.js";
import { InvalidArgumentError } from "../domain/errors.js";

/** The authenticated caller of the current RPC, set by the auth interceptor. */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "canopy principal" });

/** Header naming the environment an admin key acts in. */
export const ENVIRONMENT_HEADER = "canopy-environment";

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

/** Extracts the API key from `x-api-key` or `authorization: Bearer`. */
export function apiKeyOf(header: Headers): string | undefined {
  const direct = header.get("x-api-key");
  if (direct) return direct.trim();
  const auth = header.get("authorization");
  if (auth && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, "").trim();
  return undefined;
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
    const principal = await canopy.auth.authenticate(apiKeyOf(req.header));
    canopy.auth.requireScope(principal, scopeFor(req.service.typeName, req.method.name));
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}

/**
 * Read-your-writes: a unary data-plane request carrying `min_revision` > 0 waits (bounded by the
 * deadline and CANOPY_REVISION_WAIT_MS) until this process's state of the environment has reached that
 * revision, else UNAVAILABLE. Runs after auth; handlers then answer from state at least that new.
 */
export function consistencyInterceptor(canopy: Canopy): Interceptor {
  return (next) => async (req) => {
    if (!req.stream && req.service.typeName !== "canopy.v1.AdminService") {
      const raw = (req.message as { minRevision?: unknown }).minRevision;
      if (typeof raw === "bigint" && raw !== 0n) {
        if (raw < 0n) throw new InvalidArgumentError("min_revision", "must not be negative");
        const principal = req.contextValues.get(principalKey)!;
        const header = req.header.get(ENVIRONMENT_HEADER) ?? undefined;
        if (principal.environmentId === null && !header) {
          throw new InvalidArgumentError("min_revision", `an admin key must name the environment with the ${ENVIRONMENT_HEADER} header to use it`);
        }
        const env = await canopy.auth.environmentFor(principal, header);
        await canopy.runtime.awaitRevision(env.id, Number(raw), req.signal);
      }
    }
    return next(req);
  };
}
