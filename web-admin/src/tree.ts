// Tenants ordered as a tree: each parent followed by its children (by name),
// depth-first; a tenant whose parent is not in the list is a root.
export interface TreeNode {
  id: string;
  name: string;
  parent_id?: string | null;
}

export function asTree<T extends TreeNode>(tenants: T[]): { tenant: T; depth: number }[] {
  const ids = new Set(tenants.map((x) => x.id));
  const children = new Map<string, T[]>();
  const roots: T[] = [];
  for (const x of tenants) {
    if (x.parent_id && ids.has(x.parent_id)) {
      const list = children.get(x.parent_id) ?? [];
      list.push(x);
      children.set(x.parent_id, list);
    } else roots.push(x);
  }
  const out: { tenant: T; depth: number }[] = [];
  const walk = (x: T, depth: number) => {
    out.push({ tenant: x, depth });
    for (const c of (children.get(x.id) ?? []).sort((a, b) => a.name.localeCompare(b.name))) walk(c, depth + 1);
  };
  roots.sort((a, b) => a.name.localeCompare(b.name)).forEach((r) => walk(r, 0));
  return out;
}
