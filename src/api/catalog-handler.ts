import type { ServiceImpl } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import { CatalogService } from "../gen/canopy/v1/catalog_pb.js";
import { permissionToPb, roleToPb } from "./convert.js";
import { environmentOf } from "./context.js";

/** CatalogService: permissions and roles of one environment. */
export function catalogHandlers(canopy: Canopy): ServiceImpl<typeof CatalogService> {
  const c = canopy.catalog;
  return {
    async batchCreatePermissions(req, ctx) {
      const r = await c.batchCreatePermissions((await environmentOf(canopy, ctx)), req.permissions);
      return { permissions: r.permissions.map(permissionToPb), revision: BigInt(r.revision) };
    },
    async listPermissions(req, ctx) {
      const p = await c.listPermissions((await environmentOf(canopy, ctx)), req.category, req.pageSize, req.pageToken);
      return { permissions: p.items.map(permissionToPb), nextPageToken: p.nextPageToken };
    },
    async updatePermission(req, ctx) {
      const r = await c.updatePermission((await environmentOf(canopy, ctx)), req.id, { description: req.description, category: req.category, key: req.key });
      return { permission: permissionToPb(r.permission), revision: BigInt(r.revision) };
    },
    async deletePermission(req, ctx) {
      return { revision: BigInt(await c.deletePermission((await environmentOf(canopy, ctx)), req.id)) };
    },
    async createRole(req, ctx) {
      const r = await c.createRole((await environmentOf(canopy, ctx)), { name: req.name, description: req.description, permissionKeys: req.permissionKeys });
      return { role: roleToPb(r.role), revision: BigInt(r.revision) };
    },
    async getRole(req, ctx) {
      return { role: roleToPb(await c.getRole((await environmentOf(canopy, ctx)), req.id)) };
    },
    async listRoles(req, ctx) {
      const p = await c.listRoles((await environmentOf(canopy, ctx)), req.pageSize, req.pageToken);
      return { roles: p.items.map(roleToPb), nextPageToken: p.nextPageToken };
    },
    async updateRole(req, ctx) {
      const r = await c.updateRole((await environmentOf(canopy, ctx)), req.id, { name: req.name, description: req.description });
      return { role: roleToPb(r.role), revision: BigInt(r.revision) };
    },
    async setRolePermissions(req, ctx) {
      const r = await c.setRolePermissions((await environmentOf(canopy, ctx)), req.id, req.permissionKeys);
      return { role: roleToPb(r.role), revision: BigInt(r.revision) };
    },
    async deleteRole(req, ctx) {
      const r = await c.deleteRole((await environmentOf(canopy, ctx)), req.id, req.cascade);
      return { deletedAssignments: r.deletedAssignments, revision: BigInt(r.revision) };
    },
  };
}
