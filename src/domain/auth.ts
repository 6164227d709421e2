import { hash, randomBytes, timingSafeEqual } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { ApiKey, ApiKeyScope, Environment } from "./model.js";
import type { Runtime } from "./runtime.js";
import { PermissionDeniedError, UnauthenticatedError } from "./errors.js";

/** Every scope an environment key can hold; an admin key holds `admin`. */
export const ENVIRONMENT_SCOPES: readonly ApiKeyScope[] = [
  "check",
  "read",
  "assignments:write",
  "hierarchy:write",
  "catalog:write",
  "identities:write",
];

/** Who is calling: an authenticated API key. */
export interface Principal {
  keyId: string;
  accountId: string;
  /** null = admin key */
  environmentId: string | null;
  scopes: readonly ApiKeyScope[];
}

/** A principal acting inside one environment (data-plane RPCs). */
export interface EnvironmentContext {
  principal: Principal;
  environment: Environment;
}

export const KEY_PREFIX = "cnpy_";

/** A fresh secret: `cnpy_` + 32 random bytes base64url (43 chars). */
export function generateSecret(): string {
  return KEY_PREFIX + randomBytes(32).toString("base64url");
}

/** Keys are high-entropy secrets, so a plain SHA-256 is the right hash (no stretching needed). */
export function hashSecret(secret: string): string {
  // one-shot hash (Node ≥ 20.12): the same digest without a Hash object per call, ~3× cheaper per check
  return hash("sha256", secret, "hex");
}

/**
 * Authenticates API keys and resolves the environment a call acts in. Keys are looked up by hash
 * (the plaintext is never stored) and the stored hash is compared in constant time. Validated keys
 * are cached by hash; revocation and environment deletion evict them.
 */
export class Authenticator {
  /** hash -> key and when it was read (monotonic ms) */
  private readonly cache = new Map<string, { key: ApiKey; readAt: number }>();

  /**
   * @param ttlMs how long a validated key is trusted before it is read again: a revocation made on
   *   another replica takes effect here within this time (this process evicts its own at once)
   */
  constructor(
    private readonly rt: Runtime,
    private readonly ttlMs = 1000,
  ) {}

  async authenticate(secret: string | undefined): Promise<Principal> {
    if (!secret) throw new UnauthenticatedError("missing API key: send it in the x-api-key header or as 'authorization: Bearer <key>'", "auth.missing_api_key");
    if (!secret.startsWith(KEY_PREFIX) || secret.length > 256) throw new UnauthenticatedError("invalid API key");
    const hash = hashSecret(secret);
    const cached = this.cache.get(hash);
    let key = cached && performance.now() - cached.readAt < this.ttlMs ? cached.key : undefined;
    if (!key) {
      const readAt = performance.now();
      key = await this.rt.store.reader.getApiKeyByHash(hash);
      if (key && key.revokedAt === null) this.cache.set(hash, { key, readAt });
      else this.cache.delete(hash);
    }
    if (!key || !timingSafeEqual(Buffer.from(key.keyHash, "hex"), Buffer.from(hash, "hex"))) {
      throw new UnauthenticatedError("invalid API key");
    }
    if (key.revokedAt !== null) throw new UnauthenticatedError(`API key ${key.id} has been revoked`, "auth.api_key_revoked");
    if (key.expiresAt !== null && this.rt.clock.now() >= key.expiresAt) throw new UnauthenticatedError(`API key ${key.id} has expired`, "auth.api_key_expired");
    return { keyId: key.id, accountId: key.accountId, environmentId: key.environmentId, scopes: key.scopes };
  }

  /** Forgets a key (after revocation) so the next call re-reads it. */
  evict(keyId: string): void {
    for (const [h, c] of this.cache) if (c.key.id === keyId) this.cache.delete(h);
  }

  evictEnvironment(environmentId: string): void {
    for (const [h, c] of this.cache) if (c.key.environmentId === environmentId) this.cache.delete(h);
  }

  /**
   * The environment a data-plane call acts in: an environment key's own; for an admin key, the one
   * named by the `canopy-environment` header (which must belong to the key's account).
   */
  async environmentFor(p: Principal, requestedEnvironmentId: string | undefined): Promise<Environment> {
    if (p.environmentId !== null) {
      if (requestedEnvironmentId && requestedEnvironmentId !== p.environmentId) {
        throw new PermissionDeniedError("this API key acts only in its own environment; drop the canopy-environment header or use that environment's key", "auth.environment_mismatch");
      }
      const env = await this.rt.ensureLoaded(p.environmentId);
      if (!env) throw new UnauthenticatedError(`the environment of API key ${p.keyId} no longer exists`);
      return env;
    }
    if (!requestedEnvironmentId) {
      throw new PermissionDeniedError("an admin key must name the environment to act in with the canopy-environment header", "auth.environment_required");
    }
    const denied = () => new PermissionDeniedError(`environment ${JSON.stringify(requestedEnvironmentId)} is not accessible with this key`, "auth.environment_mismatch");
    if (requestedEnvironmentId.length > 64) throw denied();
    const env = await this.rt.ensureLoaded(requestedEnvironmentId);
    if (!env || env.accountId !== p.accountId) throw denied();
    return env;
  }

  /** Throws PERMISSION_DENIED unless the key may use `scope`. Empty scopes = all of the key's kind. */
  requireScope(p: Principal, scope: ApiKeyScope): void {
    if (p.environmentId === null) {
      if (p.scopes.length === 0 || p.scopes.includes("admin")) return;
      throw new PermissionDeniedError(`API key ${p.keyId} lacks the "admin" scope`, "auth.insufficient_scope");
    }
    if (scope === "admin") throw new PermissionDeniedError("this RPC needs an admin key; environment keys act only inside their environment", "auth.admin_required");
    if (p.scopes.length === 0 || p.scopes.includes(scope)) return;
    if (scope === "read" && p.scopes.some((s) => s.endsWith(":write"))) return;
    throw new PermissionDeniedError(`API key ${p.keyId} lacks the ${JSON.stringify(scope)} scope`, "auth.insufficient_scope");
  }
}
