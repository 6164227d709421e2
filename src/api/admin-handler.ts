import type { ServiceImpl } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import { AdminService } from "../gen/canopy/v1/admin_pb.js";
import { apiKeyToPb, applicationToPb, environmentToPb, msOf } from "./convert.js";
import { principalOf } from "./context.js";

/** AdminService: applications, environments and API keys (admin key only; enforced by scope). */
export function adminHandlers(canopy: Canopy): ServiceImpl<typeof AdminService> {
  const a = canopy.admin;
  return {
    async createApplication(req, ctx) {
      const r = await a.createApplication(principalOf(ctx), req.name);
      return { application: applicationToPb(r.application), environments: r.environments.map(environmentToPb) };
    },
    async listApplications(req, ctx) {
      const p = await a.listApplications(principalOf(ctx), req.pageSize, req.pageToken);
      return { applications: p.items.map(applicationToPb), nextPageToken: p.nextPageToken };
    },
    async createEnvironment(req, ctx) {
      return { environment: environmentToPb(await a.createEnvironment(principalOf(ctx), req.applicationId, req.name)) };
    },
    async listEnvironments(req, ctx) {
      return { environments: (await a.listEnvironments(principalOf(ctx), req.applicationId)).map(environmentToPb) };
    },
    async deleteEnvironment(req, ctx) {
      await a.deleteEnvironment(principalOf(ctx), req.id);
      return {};
    },
    async createApiKey(req, ctx) {
      const r = await a.createApiKey(principalOf(ctx), {
        name: req.name,
        environmentId: req.environmentId,
        scopes: req.scopes,
        expiresAt: msOf(req.expireTime, "expire_time"),
      });
      return { apiKey: apiKeyToPb(r.apiKey), secret: r.secret };
    },
    async listApiKeys(req, ctx) {
      return { apiKeys: (await a.listApiKeys(principalOf(ctx), req.environmentId)).map(apiKeyToPb) };
    },
    async revokeApiKey(req, ctx) {
      return { apiKey: apiKeyToPb(await a.revokeApiKey(principalOf(ctx), req.id)) };
    },
  };
}
