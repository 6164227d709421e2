import type { Canopy } from "../domain/canopy.js";
import type { EnvironmentContext, Principal } from "../domain/auth.js";
import type { IdentityScope } from "../domain/identity-service.js";
import type { ApiKeyScope } from "../domain/model.js";
import { InvalidArgumentError } from "../domain/errors.js";

/**
 * The per-call rules every transport applies in the same order: authenticate the key and its scope,
 * wait for `min_revision`, resolve the environment. The Connect interceptors and the fast path
 * (src/server/fast-path.ts) both call these, so neither can drift from the other.
 */

/** Reads one request header by lowercase name, as `Headers.get` does (null when absent). */
export type HeaderGetter = (name: string) => string | null;

/** Header naming the environment an admin key acts in. */
export const ENVIRONMENT_HEADER = "canopy-environment";

/** Extracts the API key from `x-api-key` or `authorization: Bearer`. */
export function apiKeyOf(header: HeaderGetter): string | undefined {
  const direct = header("x-api-key");
  if (direct) return direct.trim();
  const auth = header("authorization");
  if (auth && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, "").trim();
  return undefined;
}

/** Authenticates the call's key and requires `scope`. */
export async function authenticateCall(canopy: Canopy, header: HeaderGetter, scope: ApiKeyScope): Promise<Principal> {
  const principal = await canopy.auth.authenticate(apiKeyOf(header));
  canopy.auth.requireScope(principal, scope);
  return principal;
}

/**
 * Read-your-writes for a unary data-plane request: with `min_revision` > 0 waits (bounded by `signal`,
 * the deadline, and CANOPY_REVISION_WAIT_MS) until this process's state of the environment has reached
 * it, else UNAVAILABLE. `signal` is only called when there is something to wait for.
 */
export async function awaitMinRevision(canopy: Canopy, principal: Principal, header: HeaderGetter, minRevision: bigint, signal: () => AbortSignal | undefined): Promise<void> {
  if (minRevision === 0n) return;
  if (minRevision < 0n) throw new InvalidArgumentError("min_revision", "must not be negative");
  const requested = header(ENVIRONMENT_HEADER) ?? undefined;
  if (principal.environmentId === null && !requested) {
    throw new InvalidArgumentError("min_revision", `an admin key must name the environment with the ${ENVIRONMENT_HEADER} header to use it`);
  }
  const env = await canopy.auth.environmentFor(principal, requested);
  await canopy.runtime.awaitRevision(env.id, Number(minRevision), signal());
}

/**
 * The environment a data-plane call acts in (the key's, or the admin's canopy-environment header),
 * loaded and — on a replicated deployment — confirmed current, else UNAVAILABLE.
 */
export async function callEnvironment(canopy: Canopy, principal: Principal, header: HeaderGetter): Promise<EnvironmentContext> {
  const environment = await canopy.auth.environmentFor(principal, header(ENVIRONMENT_HEADER) ?? undefined);
  canopy.runtime.assertFresh();
  return { principal, environment };
}

/** Identity calls may run without an environment (an admin key without the canopy-environment header). */
export async function identityScopeFor(canopy: Canopy, principal: Principal, header: HeaderGetter): Promise<IdentityScope> {
  const requested = header(ENVIRONMENT_HEADER) ?? undefined;
  if (principal.environmentId === null && !requested) return { principal, environmentId: null, applicationId: null };
  const environment = await canopy.auth.environmentFor(principal, requested);
  canopy.runtime.assertFresh();
  return { principal, environmentId: environment.id, applicationId: environment.applicationId };
}
