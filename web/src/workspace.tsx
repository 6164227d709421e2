import { createContext, useContext } from "react";
import type { Api } from "./api";
import type { ToastMessage } from "./ui";
import { AccessModel } from "../../src/gen/canopy/v1/common_pb.js";
import type { Node } from "../../src/gen/canopy/v1/hierarchy_pb.js";

/** The active environment as every page sees it. */
export interface ActiveEnvironment {
  id: string;
  label: string;
  accessModel: AccessModel;
  rootNodeId: string;
}

/** What pages share: clients scoped to the active environment, navigation, toasts, and a data version bumped after writes. */
export interface Workspace {
  api: Api;
  env: ActiveEnvironment;
  navigate(path: string): void;
  notify(toast: ToastMessage): void;
  /** bumped after every write, so the overview and setup guide re-read */
  version: number;
  changed(): void;
  openSetupGuide(): void;
}

export const WorkspaceContext = createContext<Workspace | null>(null);

export function useWorkspace(): Workspace {
  const w = useContext(WorkspaceContext);
  if (!w) throw new Error("useWorkspace outside the signed-in app");
  return w;
}

export const isFlat = (env: ActiveEnvironment) => env.accessModel === AccessModel.FLAT;

/** Every node of the environment (GetSubtree of the root, all pages, pre-order: root first). */
export async function loadNodes(api: Api, rootId: string): Promise<Node[]> {
  const nodes: Node[] = [];
  let token = "";
  do {
    const p = await api.hierarchy.getSubtree({ id: rootId, pageSize: 1000, pageToken: token });
    nodes.push(...p.nodes);
    token = p.nextPageToken;
  } while (token);
  return nodes;
}

/** "Acme / EMEA / Berlin" for a node, from a loaded node list. */
export function nodePath(nodes: Map<string, Node>, id: string): string {
  const parts: string[] = [];
  let n = nodes.get(id);
  while (n && parts.length < 64) {
    parts.unshift(n.name || n.type);
    n = n.parentId ? nodes.get(n.parentId) : undefined;
  }
  return parts.length ? parts.join(" / ") : id;
}
