import type { HandlerContext } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import type { EnvironmentContext, Principal } from "../domain/auth.js";
import type { IdentityScope } from "../domain/identity-service.js";
import { UnauthenticatedError } from "../domain/errors.js";
import { principalKey } from "./interceptors.js";
import { callEnvironment, identityScopeFor } from "./call.js";

/** The principal the auth interceptor stored for this call. */
export function principalOf(ctx: HandlerContext): Principal {
  const p = ctx.values.get(principalKey);
  if (!p) throw new UnauthenticatedError("no authenticated principal for this call");
  return p;
}

/**
 * The environment a data-plane call acts in (the key's, or the admin's canopy-environment header),
 * loaded and — on a replicated deployment — confirmed current, else UNAVAILABLE.
 */
export async function environmentOf(canopy: Canopy, ctx: HandlerContext): Promise<EnvironmentContext> {
  return callEnvironment(canopy, principalOf(ctx), (name) => ctx.requestHeader.get(name));
}

/** Identity calls may run without an environment (admin key without the header). */
export function identityScopeOf(canopy: Canopy, ctx: HandlerContext): Promise<IdentityScope> {
  return identityScopeFor(canopy, principalOf(ctx), (name) => ctx.requestHeader.get(name));
}
