import type { ServiceImpl } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import { HierarchyService } from "../gen/canopy/v1/hierarchy_pb.js";
import { accessModelFromPb, accessModelToPb, nodeToPb, schemaFromPb, schemaToPb } from "./convert.js";
import { environmentOf } from "./context.js";

/** HierarchyService: schema, access model and the node tree. */
export function hierarchyHandlers(canopy: Canopy): ServiceImpl<typeof HierarchyService> {
  const h = canopy.hierarchy;
  return {
    async getHierarchySchema(_req, ctx) {
      const s = h.getSchema((await environmentOf(canopy, ctx)));
      return { accessModel: accessModelToPb(s.accessModel), schema: schemaToPb(s.schema), rootNodeId: s.rootNodeId, revision: BigInt(s.revision) };
    },
    async updateHierarchySchema(req, ctx) {
      const r = await h.updateSchema((await environmentOf(canopy, ctx)), schemaFromPb(req.schema));
      return { schema: schemaToPb(r.schema), revision: BigInt(r.revision) };
    },
    async setAccessModel(req, ctx) {
      const r = await h.setAccessModel((await environmentOf(canopy, ctx)), accessModelFromPb(req.accessModel, "access_model"));
      return { accessModel: accessModelToPb(r.accessModel), revision: BigInt(r.revision) };
    },
    async createNode(req, ctx) {
      const r = await h.createNode((await environmentOf(canopy, ctx)), {
        parentId: req.parentId,
        type: req.type,
        name: req.name,
        externalId: req.externalId,
        metadata: req.metadata,
      });
      return { node: nodeToPb(r.node), revision: BigInt(r.revision) };
    },
    async getNode(req, ctx) {
      return { node: nodeToPb(await h.getNode((await environmentOf(canopy, ctx)), req.id)) };
    },
    async updateNode(req, ctx) {
      const r = await h.updateNode((await environmentOf(canopy, ctx)), req.id, { name: req.name, externalId: req.externalId, metadata: req.metadata });
      return { node: nodeToPb(r.node), revision: BigInt(r.revision) };
    },
    async moveNode(req, ctx) {
      const r = await h.moveNode((await environmentOf(canopy, ctx)), req.id, req.newParentId);
      return { node: nodeToPb(r.node), revision: BigInt(r.revision) };
    },
    async deleteNode(req, ctx) {
      const r = await h.deleteNode((await environmentOf(canopy, ctx)), req.id, req.cascade);
      return { deletedNodes: r.deletedNodes, deletedAssignments: r.deletedAssignments, revision: BigInt(r.revision) };
    },
    async listChildren(req, ctx) {
      const p = await h.listChildren((await environmentOf(canopy, ctx)), req.id, req.pageSize, req.pageToken);
      return { nodes: p.items.map(nodeToPb), nextPageToken: p.nextPageToken };
    },
    async getAncestors(req, ctx) {
      return { ancestors: (await h.getAncestors((await environmentOf(canopy, ctx)), req.id)).map(nodeToPb) };
    },
    async getSubtree(req, ctx) {
      const p = await h.getSubtree((await environmentOf(canopy, ctx)), req.id, req.maxDepth, req.pageSize, req.pageToken, ctx.signal);
      return { nodes: p.items.map(nodeToPb), nextPageToken: p.nextPageToken };
    },
  };
}
