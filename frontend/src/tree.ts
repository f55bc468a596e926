// Owners → projects → folders, from the list of experiments.
import type { Experiment } from "./api";

export interface TreeNode {
  name: string;
  path: string[]; // owner, project, folders…
  count: number; // experiments at or below this node
  children: TreeNode[];
}

export function buildTree(experiments: Experiment[]): TreeNode[] {
  const root: TreeNode = { name: "", path: [], count: 0, children: [] };
  for (const exp of experiments) {
    let node = root;
    node.count++;
    for (const part of [exp.owner, exp.project, ...exp.folders]) {
      let child = node.children.find((c) => c.name === part);
      if (!child) {
        child = { name: part, path: [...node.path, part], count: 0, children: [] };
        node.children.push(child);
      }
      child.count++;
      node = child;
    }
  }
  const sort = (nodes: TreeNode[]): void => {
    nodes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    nodes.forEach((n) => sort(n.children));
  };
  sort(root.children);
  return root.children;
}
