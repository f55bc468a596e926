// Params as the views show them: grouped by their first dotted segment, nested back
// into objects for "copy as JSON", and the keys on which runs differ.

export function groupParams(flat: Record<string, unknown>, search = ""): [string, [string, unknown][]][] {
  const needle = search.trim().toLowerCase();
  const groups = new Map<string, [string, unknown][]>();
  for (const key of Object.keys(flat).sort()) {
    const value = flat[key];
    if (needle && !key.toLowerCase().includes(needle) && !String(JSON.stringify(value)).toLowerCase().includes(needle)) {
      continue;
    }
    const dot = key.indexOf(".");
    const group = dot > 0 ? key.slice(0, dot) : "";
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group)!.push([key, value]);
  }
  return [...groups.entries()].sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : 1));
}

/** {"model.depth": 50} -> {"model": {"depth": 50}} (a key that is both a value and a prefix keeps its dotted form). */
export function nestParams(flat: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(flat).sort()) {
    const parts = key.split(".");
    let node = out;
    let ok = true;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (next === undefined) node = (node[part] = {}) as Record<string, unknown>;
      else if (next !== null && typeof next === "object" && !Array.isArray(next)) node = next as Record<string, unknown>;
      else {
        ok = false;
        break;
      }
    }
    const last = parts[parts.length - 1];
    if (ok && !(last in node)) node[last] = flat[key];
    else out[key] = flat[key];
  }
  return out;
}

/** JSON that keeps NaN and infinities readable (JSON itself has no such numbers). */
export function paramsJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v), 2);
}

function same(a: unknown, b: unknown): boolean {
  if (typeof a === "number" && typeof b === "number" && Number.isNaN(a) && Number.isNaN(b)) return true;
  return JSON.stringify(a) === JSON.stringify(b) && typeof a === typeof b;
}

/** The keys of any run's params, sorted; only those whose values differ between runs (a missing key differs) unless `all`. */
export function diffKeys(params: Record<string, unknown>[], all: boolean): string[] {
  const keys = new Set<string>();
  params.forEach((p) => Object.keys(p).forEach((k) => keys.add(k)));
  return [...keys].sort().filter((k) => all || params.some((p) => !(k in p) || !same(p[k], params[0][k])));
}
