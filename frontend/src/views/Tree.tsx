import type { TreeNode } from "../tree";
import { runsPath } from "../urlstate";

function Node({ node, scope }: { node: TreeNode; scope: string[] }) {
  const here = node.path.join("/") === scope.join("/");
  const onPath = scope.slice(0, node.path.length).join("/") === node.path.join("/");
  const kind = node.path.length === 1 ? "owner" : node.path.length === 2 ? "project" : "folder";
  return (
    <li class={`tree-${kind}`}>
      <a href={runsPath(node.path)} aria-current={here ? "page" : undefined}>
        <span class="tree-name">{node.name}</span> <span class="count">{node.count}</span>
      </a>
      {node.children.length > 0 && (node.path.length < 2 || onPath) && (
        <ul>{node.children.map((c) => <Node key={c.name} node={c} scope={scope} />)}</ul>
      )}
    </li>
  );
}

export function Tree({ nodes, scope }: { nodes: TreeNode[]; scope: string[] }) {
  return (
    <nav class="tree" aria-label="Owners, projects and folders">
      <ul>
        <li><a href="/runs" aria-current={scope.length === 0 ? "page" : undefined}>All runs</a></li>
        {nodes.map((n) => <Node key={n.name} node={n} scope={scope} />)}
      </ul>
    </nav>
  );
}
