import type { ConnectRouter } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import { AdminService } from "../gen/canopy/v1/admin_pb.js";
import { AssignmentService } from "../gen/canopy/v1/assignment_pb.js";
import { CatalogService } from "../gen/canopy/v1/catalog_pb.js";
import { CheckService } from "../gen/canopy/v1/check_pb.js";
import { HierarchyService } from "../gen/canopy/v1/hierarchy_pb.js";
import { IdentityService } from "../gen/canopy/v1/identity_pb.js";
import { adminHandlers } from "./admin-handler.js";
import { assignmentHandlers } from "./assignment-handler.js";
import { catalogHandlers } from "./catalog-handler.js";
import { checkHandlers } from "./check-handler.js";
import { hierarchyHandlers } from "./hierarchy-handler.js";
import { identityHandlers } from "./identity-handler.js";

/** Registers every Canopy service on a Connect router. */
export function canopyRoutes(canopy: Canopy): (router: ConnectRouter) => void {
  return (router) => {
    router.service(CheckService, checkHandlers(canopy));
    router.service(AssignmentService, assignmentHandlers(canopy));
    router.service(HierarchyService, hierarchyHandlers(canopy));
    router.service(CatalogService, catalogHandlers(canopy));
    router.service(IdentityService, identityHandlers(canopy));
    router.service(AdminService, adminHandlers(canopy));
  };
}
