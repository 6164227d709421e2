import type { AppMembership, Identity, JsonObject, MembershipStatus } from "./model.js";
import type { Principal } from "./auth.js";
import type { Effects, Runtime } from "./runtime.js";
import type { IdentityFilter, StoreReader, StoreWriter } from "../store/store.js";
import { ConflictError, DomainError, GRPC_CODE, NotFoundError, PermissionDeniedError } from "./errors.js";
import { newId } from "./ids.js";
import {
  checkCount,
  checkMetadata,
  numberedPageRequest,
  optionalText,
  pageRequest,
  readNumberedPage,
  requireEmail,
  requireId,
  toPage,
  type NumberedPage,
  type NumberedPageInput,
} from "./validate.js";
import { StoreConflictError } from "../store/store.js";
import { yieldToEventLoop } from "./runtime.js";

export interface IdentityInput {
  email: string;
  displayName: string;
  externalId: string;
  metadata?: JsonObject;
}

/** What ListIdentities filters on; "" / undefined = any. */
export interface IdentityListFilter {
  email: string;
  externalId: string;
  isActive?: boolean;
}

/** Where an identity call acts: the caller, and the application its environment key belongs to. */
export interface IdentityScope {
  principal: Principal;
  /** the environment key's (or the admin's `canopy-environment`) environment, if any */
  environmentId: string | null;
  /** that environment's application; env keys see only identities with a membership in it */
  applicationId: string | null;
}

export interface ItemOutcome<T> {
  index: number;
  error?: DomainError;
  value?: T;
}

/**
 * Identities belong to the account and are shared by all its environments; an AppMembership ties
 * one to an application. Both gates (identity active, membership active) are evaluated at check
 * time, so deactivating either denies every check at once. Every change bumps the revision of each
 * environment whose checks it can affect.
 */
export class IdentityService {
  constructor(private readonly rt: Runtime) {}

  async createIdentity(scope: IdentityScope, input: IdentityInput, skipMembership: boolean): Promise<{ identity: Identity; revision: number }> {
    const identity = this.build(scope, input, "identity.");
    const membershipApp = !skipMembership ? scope.applicationId : null;
    return this.rt.write(
      async (tx, effects, locked) => {
        await this.insert(tx, effects, identity, "identity.");
        if (membershipApp) await this.insertMembership(tx, effects, identity.id, membershipApp);
        return { identity, revision: await this.bumpFor(tx, effects, scope, locked) };
      },
      (tx) => this.affected(tx, scope, membershipApp ? [membershipApp] : []),
    );
  }

  /** Items are independent: one bad item never fails its neighbours. Written in chunked transactions. */
  async batchCreateIdentities(scope: IdentityScope, inputs: IdentityInput[], skipMembership: boolean) {
    checkCount(inputs.length, this.rt.limits.maxBatchItems, "identities", "identities per call");
    const outcomes: ItemOutcome<Identity>[] = [];
    let revision = scope.environmentId ? this.rt.engine.revision(scope.environmentId) : 0;
    const chunk = this.rt.limits.writeChunkSize;
    for (let start = 0; start < inputs.length; start += chunk) {
      const slice = inputs.slice(start, start + chunk);
      const membershipApp = !skipMembership ? scope.applicationId : null;
      revision = await this.rt.write(async (tx, effects, locked) => {
        let written = 0;
        for (let k = 0; k < slice.length; k++) {
          const index = start + k;
          const prefix = `identities[${index}].`;
          try {
            const identity = this.build(scope, slice[k], prefix);
            await this.insert(tx, effects, identity, prefix);
            if (membershipApp) await this.insertMembership(tx, effects, identity.id, membershipApp);
            outcomes.push({ index, value: identity });
            written++;
          } catch (err) {
            if (!(err instanceof DomainError)) throw err;
            outcomes.push({ index, error: err });
          }
        }
        // nothing written, nothing to bump: the revision stays as it was
        if (written === 0) return scope.environmentId ? this.rt.engine.revision(scope.environmentId) : 0;
        return this.bumpFor(tx, effects, scope, locked);
      }, (tx) => this.affected(tx, scope, membershipApp ? [membershipApp] : []));
      await yieldToEventLoop();
    }
    const succeeded = outcomes.filter((o) => !o.error).length;
    return { outcomes, summary: { total: inputs.length, succeeded, failed: inputs.length - succeeded }, revision };
  }

  async getIdentity(scope: IdentityScope, id: string): Promise<Identity> {
    requireId(id, "id");
    const reader = this.rt.store.reader;
    return this.visible(reader, scope, await reader.getIdentity(id), id);
  }

  async listIdentities(scope: IdentityScope, filter: IdentityListFilter, pageSize: number, pageToken: string) {
    const page = pageRequest(pageSize, pageToken, this.rt.limits);
    const rows = await this.rt.store.reader.listIdentities(this.listFilter(scope, filter), { limit: page.pageSize + 1, afterId: page.afterId });
    return toPage(rows, page);
  }

  /** listIdentities as a numbered page with the total count of identities the caller sees under `filter`. */
  async listIdentitiesNumbered(scope: IdentityScope, filter: IdentityListFilter, page: NumberedPageInput): Promise<NumberedPage<Identity>> {
    const req = numberedPageRequest(page, this.rt.limits);
    const storeFilter = this.listFilter(scope, filter);
    return readNumberedPage(
      this.rt.store,
      req,
      (reader, window) => reader.listIdentities(storeFilter, window),
      (reader) => reader.countIdentities(storeFilter),
    );
  }

  /** The store filter of a list: the caller's account, and its application's members only when scoped to one. */
  private listFilter(scope: IdentityScope, filter: IdentityListFilter): IdentityFilter {
    return {
      accountId: scope.principal.accountId,
      applicationId: scope.applicationId ?? undefined,
      email: filter.email ? filter.email.trim().toLowerCase() : undefined,
      externalId: filter.externalId || undefined,
      isActive: filter.isActive,
    };
  }

  async updateIdentity(
    scope: IdentityScope,
    id: string,
    patch: { email?: string; displayName?: string; externalId?: string; metadata?: JsonObject },
  ): Promise<{ identity: Identity; revision: number }> {
    this.requireAdmin(scope, "UpdateIdentity");
    requireId(id, "id");
    const email = patch.email === undefined ? undefined : requireEmail(patch.email, "email");
    const displayName = patch.displayName === undefined ? undefined : optionalText(patch.displayName, "display_name");
    const externalId = patch.externalId === undefined ? undefined : optionalText(patch.externalId, "external_id") || null;
    const metadata = patch.metadata === undefined ? undefined : checkMetadata(patch.metadata, "metadata", this.rt.limits);
    return this.rt.write(async (tx, effects, locked) => {
      const current = await this.visible(tx, scope, await tx.getIdentity(id), id);
      // Checked first so the error names the right field (on PostgreSQL a failed statement aborts the
      // transaction, so nothing can be asked after a constraint error); the unique indexes are the backstop.
      if (email !== undefined) {
        const other = await tx.getIdentityByEmail(current.accountId, email);
        if (other && other.id !== id) throw this.conflict(email, undefined, "");
      }
      if (externalId) {
        const other = await tx.getIdentityByExternalId(current.accountId, externalId);
        if (other && other.id !== id) throw this.conflict(undefined, externalId, "");
      }
      const updatedAt = this.rt.clock.now();
      try {
        await tx.updateIdentity(id, { email, displayName, externalId, metadata, updatedAt });
      } catch (err) {
        if (err instanceof StoreConflictError) throw this.conflict(email, externalId, "");
        throw err;
      }
      const identity: Identity = {
        ...current,
        email: email ?? current.email,
        displayName: displayName ?? current.displayName,
        externalId: externalId === undefined ? current.externalId : externalId,
        metadata: metadata ?? current.metadata,
        updatedAt,
      };
      return { identity, revision: await this.bumpFor(tx, effects, scope, locked) };
    }, (tx) => this.affected(tx, scope, []));
  }

  /** Activating or deactivating applies to every check in every environment at once. */
  async setActive(scope: IdentityScope, id: string, active: boolean): Promise<{ identity: Identity; revision: number }> {
    this.requireAdmin(scope, active ? "ActivateIdentity" : "DeactivateIdentity");
    requireId(id, "id");
    return this.rt.write(async (tx, effects, locked) => {
      const current = await this.visible(tx, scope, await tx.getIdentity(id), id);
      const updatedAt = this.rt.clock.now();
      await tx.updateIdentity(id, { isActive: active, updatedAt });
      effects.push(() => this.rt.engine.setIdentity(id, current.accountId, active));
      const revision = await this.bumpFor(tx, effects, scope, locked);
      return { identity: { ...current, isActive: active, updatedAt }, revision };
    }, (tx) => this.affected(tx, scope, null));
  }

  async addMembership(scope: IdentityScope, identityId: string, applicationId: string): Promise<{ membership: AppMembership; revision: number }> {
    this.requireAdmin(scope, "AddAppMembership (a membership spans every environment of the application)");
    requireId(identityId, "identity_id");
    const appId = this.applicationFor(scope, applicationId);
    return this.rt.write(async (tx, effects, locked) => {
      // An environment key cannot reach identities outside its application (visible() says NOT_FOUND,
      // the same as for an unknown id): enrolling an existing identity of the account needs the admin key.
      await this.visible(tx, scope, await tx.getIdentity(identityId), identityId, "identity_id");
      const app = await tx.getApplication(appId);
      if (!app || app.accountId !== scope.principal.accountId) throw new NotFoundError("application", appId, "application_id");
      if (await tx.getMembership(identityId, appId)) {
        throw new ConflictError(`identity ${identityId} already has a membership in application ${appId}`, "identity_id", "identity.membership_exists");
      }
      const membership = await this.insertMembership(tx, effects, identityId, appId);
      return { membership, revision: await this.bumpFor(tx, effects, scope, locked) };
    }, (tx) => this.affected(tx, scope, [appId]));
  }

  async setMembershipStatus(scope: IdentityScope, identityId: string, applicationId: string, status: MembershipStatus): Promise<{ membership: AppMembership; revision: number }> {
    this.requireAdmin(scope, "SetAppMembershipStatus (a membership spans every environment of the application)");
    requireId(identityId, "identity_id");
    const appId = this.applicationFor(scope, applicationId);
    return this.rt.write(async (tx, effects, locked) => {
      const current = await this.membershipOf(tx, scope, identityId, appId);
      const at = this.rt.clock.now();
      await tx.updateMembershipStatus(identityId, appId, status, at);
      effects.push(() => this.rt.engine.setMembership(appId, identityId, status));
      return { membership: { ...current, status, updatedAt: at }, revision: await this.bumpFor(tx, effects, scope, locked) };
    }, (tx) => this.affected(tx, scope, [appId]));
  }

  /** Removes the membership and deletes the identity's assignments in every environment of the application. */
  async removeMembership(scope: IdentityScope, identityId: string, applicationId: string): Promise<{ deletedAssignments: number; revision: number }> {
    this.requireAdmin(scope, "RemoveAppMembership (a membership spans every environment of the application)");
    requireId(identityId, "identity_id");
    const appId = this.applicationFor(scope, applicationId);
    return this.rt.write(async (tx, effects, locked) => {
      await this.membershipOf(tx, scope, identityId, appId);
      const envIds = (await tx.listEnvironments(scope.principal.accountId, appId)).map((e) => e.id);
      const removed = await tx.deleteAssignmentsOfIdentity(identityId, envIds);
      await tx.deleteMembership(identityId, appId);
      effects.push(() => {
        for (const a of removed) if (this.rt.engine.hasEnvironment(a.environmentId)) this.rt.engine.removeAssignment(a.environmentId, a.id);
        this.rt.engine.setMembership(appId, identityId, null);
      });
      return { deletedAssignments: removed.length, revision: await this.bumpFor(tx, effects, scope, locked) };
    }, (tx) => this.affected(tx, scope, [appId]));
  }

  async listMemberships(scope: IdentityScope, identityId: string): Promise<AppMembership[]> {
    requireId(identityId, "identity_id");
    const reader = this.rt.store.reader;
    await this.visible(reader, scope, await reader.getIdentity(identityId), identityId, "identity_id");
    const all = await reader.listMembershipsOfIdentity(identityId);
    return scope.applicationId && scope.principal.environmentId !== null ? all.filter((m) => m.applicationId === scope.applicationId) : all;
  }

  /**
   * Identity state is account-wide and memberships application-wide, so changing them reaches beyond
   * one environment: environment keys may not (SPEC: they act only inside their environment).
   */
  private requireAdmin(scope: IdentityScope, what: string): void {
    if (scope.principal.environmentId !== null) {
      throw new PermissionDeniedError(
        `${what} affects every environment of the ${what.includes("membership") ? "application" : "account"}; use the admin key (with the canopy-environment header if needed)`,
        "auth.admin_required",
      );
    }
  }

  private build(scope: IdentityScope, input: IdentityInput, prefix: string): Identity {
    const now = this.rt.clock.now();
    return {
      id: newId(),
      accountId: scope.principal.accountId,
      email: requireEmail(input.email, `${prefix}email`),
      displayName: optionalText(input.displayName, `${prefix}display_name`),
      externalId: optionalText(input.externalId, `${prefix}external_id`) || null,
      metadata: checkMetadata(input.metadata, `${prefix}metadata`, this.rt.limits),
      isActive: true,
      createdAt: now,
      updatedAt: now,
    };
  }

  private async insert(tx: StoreWriter, effects: Effects, identity: Identity, prefix: string): Promise<void> {
    // Checked first so the error names the field; the unique index is the backstop.
    if (await tx.getIdentityByEmail(identity.accountId, identity.email)) throw this.conflict(identity.email, undefined, prefix);
    if (identity.externalId && (await tx.getIdentityByExternalId(identity.accountId, identity.externalId))) {
      throw this.conflict(undefined, identity.externalId, prefix);
    }
    await tx.insertIdentity(identity);
    effects.push(() => this.rt.engine.setIdentity(identity.id, identity.accountId, identity.isActive));
  }

  private async insertMembership(tx: StoreWriter, effects: Effects, identityId: string, applicationId: string): Promise<AppMembership> {
    const now = this.rt.clock.now();
    const membership: AppMembership = { identityId, applicationId, status: "active", createdAt: now, updatedAt: now };
    await tx.insertMembership(membership);
    effects.push(() => this.rt.engine.setMembership(applicationId, identityId, "active"));
    return membership;
  }

  private conflict(email: string | undefined, externalId: string | null | undefined, prefix: string): ConflictError {
    return email !== undefined
      ? new ConflictError(`an identity with email ${JSON.stringify(email)} already exists`, `${prefix}email`, "identity.email_exists")
      : new ConflictError(`an identity with external_id ${JSON.stringify(externalId)} already exists`, `${prefix}external_id`, "identity.external_id_exists");
  }

  /**
   * Environment keys see only identities with a membership (any status) in their application; read
   * through `reader` (the transaction, for writes) so every replica decides on committed data.
   */
  private async visible(reader: StoreReader, scope: IdentityScope, identity: Identity | undefined, id: string, field = "id"): Promise<Identity> {
    if (!identity || identity.accountId !== scope.principal.accountId) throw new NotFoundError("identity", id, field);
    if (scope.principal.environmentId !== null && scope.applicationId && !(await reader.getMembership(id, scope.applicationId))) {
      throw new NotFoundError("identity", id, field);
    }
    return identity;
  }

  private async membershipOf(tx: StoreWriter, scope: IdentityScope, identityId: string, appId: string): Promise<AppMembership> {
    const identity = await tx.getIdentity(identityId);
    if (!identity || identity.accountId !== scope.principal.accountId) throw new NotFoundError("identity", identityId, "identity_id");
    const m = await tx.getMembership(identityId, appId);
    if (!m) throw new NotFoundError("membership of identity in application", `${identityId}/${appId}`, "application_id");
    return m;
  }

  /** The application a membership call targets: an environment key's own (naming another is denied). */
  private applicationFor(scope: IdentityScope, applicationId: string): string {
    if (scope.principal.environmentId !== null) {
      if (applicationId && applicationId !== scope.applicationId) {
        throw new PermissionDeniedError("an environment key manages memberships of its own application only", "auth.environment_mismatch");
      }
      return scope.applicationId!;
    }
    const appId = applicationId || scope.applicationId;
    if (!appId) return requireId("", "application_id");
    return appId;
  }

  /**
   * The environments an identity change can affect: those of `applications`, or with null every
   * environment of the account, plus the caller's. The write locks and catches them all up first.
   */
  private async affected(tx: StoreWriter, scope: IdentityScope, applications: string[] | null): Promise<string[]> {
    // the account lock first: no environment of the account can be created or deleted until commit
    await tx.lockAccount(scope.principal.accountId);
    const envs =
      applications === null
        ? await tx.listEnvironments(scope.principal.accountId)
        : (await Promise.all(applications.map((a) => tx.listEnvironments(scope.principal.accountId, a)))).flat();
    const ids = new Set(envs.map((e) => e.id));
    if (scope.environmentId) ids.add(scope.environmentId);
    return [...ids].sort();
  }

  /** Bumps the locked environments; returns the caller's environment revision (0 without one). */
  private async bumpFor(tx: StoreWriter, effects: Effects, scope: IdentityScope, locked: string[]): Promise<number> {
    const revisions = await this.rt.bumpAll(tx, effects, locked);
    return scope.environmentId ? revisions.get(scope.environmentId)! : 0;
  }

}
