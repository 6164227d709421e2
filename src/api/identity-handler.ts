import type { ServiceImpl } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import { GRPC_CODE } from "../domain/errors.js";
import { IdentityService } from "../gen/canopy/v1/identity_pb.js";
import { identityToPb, membershipStatusFromPb, membershipToPb } from "./convert.js";
import { identityScopeOf } from "./context.js";

/** IdentityService: account-level identities and their application memberships. */
export function identityHandlers(canopy: Canopy): ServiceImpl<typeof IdentityService> {
  const s = canopy.identities;
  const input = (i: { email: string; displayName: string; externalId: string; metadata?: Record<string, unknown> } | undefined) => ({
    email: i?.email ?? "",
    displayName: i?.displayName ?? "",
    externalId: i?.externalId ?? "",
    metadata: i?.metadata,
  });
  return {
    async createIdentity(req, ctx) {
      const r = await s.createIdentity((await identityScopeOf(canopy, ctx)), input(req.identity), req.skipMembership);
      return { identity: identityToPb(r.identity), revision: BigInt(r.revision) };
    },
    async batchCreateIdentities(req, ctx) {
      const r = await s.batchCreateIdentities((await identityScopeOf(canopy, ctx)), req.identities.map(input), req.skipMembership);
      return {
        results: r.outcomes.map((o) => ({
          index: o.index,
          status: o.error
            ? { code: GRPC_CODE[o.error.code], message: o.error.message, field: o.error.field, reason: o.error.reason }
            : { code: 0 },
          identity: o.value ? identityToPb(o.value) : undefined,
        })),
        summary: r.summary,
        revision: BigInt(r.revision),
      };
    },
    async getIdentity(req, ctx) {
      return { identity: identityToPb(await s.getIdentity((await identityScopeOf(canopy, ctx)), req.id)) };
    },
    async listIdentities(req, ctx) {
      const p = await s.listIdentities((await identityScopeOf(canopy, ctx)), { email: req.email, externalId: req.externalId, isActive: req.isActive }, req.pageSize, req.pageToken);
      return { identities: p.items.map(identityToPb), nextPageToken: p.nextPageToken };
    },
    async updateIdentity(req, ctx) {
      const r = await s.updateIdentity((await identityScopeOf(canopy, ctx)), req.id, {
        email: req.email,
        displayName: req.displayName,
        externalId: req.externalId,
        metadata: req.metadata,
      });
      return { identity: identityToPb(r.identity), revision: BigInt(r.revision) };
    },
    async activateIdentity(req, ctx) {
      const r = await s.setActive((await identityScopeOf(canopy, ctx)), req.id, true);
      return { identity: identityToPb(r.identity), revision: BigInt(r.revision) };
    },
    async deactivateIdentity(req, ctx) {
      const r = await s.setActive((await identityScopeOf(canopy, ctx)), req.id, false);
      return { identity: identityToPb(r.identity), revision: BigInt(r.revision) };
    },
    async addAppMembership(req, ctx) {
      const r = await s.addMembership((await identityScopeOf(canopy, ctx)), req.identityId, req.applicationId);
      return { membership: membershipToPb(r.membership), revision: BigInt(r.revision) };
    },
    async setAppMembershipStatus(req, ctx) {
      const r = await s.setMembershipStatus((await identityScopeOf(canopy, ctx)), req.identityId, req.applicationId, membershipStatusFromPb(req.status, "status"));
      return { membership: membershipToPb(r.membership), revision: BigInt(r.revision) };
    },
    async removeAppMembership(req, ctx) {
      const r = await s.removeMembership((await identityScopeOf(canopy, ctx)), req.identityId, req.applicationId);
      return { deletedAssignments: r.deletedAssignments, revision: BigInt(r.revision) };
    },
    async listAppMemberships(req, ctx) {
      return { memberships: (await s.listMemberships((await identityScopeOf(canopy, ctx)), req.identityId)).map(membershipToPb) };
    },
  };
}
