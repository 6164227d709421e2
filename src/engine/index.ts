export { Closure, type TreeNode } from "./closure.js";
export * from "./engine.js";
