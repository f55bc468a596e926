// The run table's columns. A column's id is its name in the filter language
// (docs/filters.md), which is also what the server sorts by: `status`, `name`,
// `created`, `params.lr`, `params.model.depth`, `metrics.train.loss.last`,
// `metrics["val/top-1"].acc.max`. `duration` and `tags` are sorted in the page only.
import type { RunSummary } from "./api";

export const BASE_COLUMNS = ["status", "name", "tags", "created", "duration"] as const;
export const METRIC_STATS = ["last", "min", "max"] as const;
export type MetricStat = (typeof METRIC_STATS)[number];

const FIRST = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LATER = /^[A-Za-z0-9_]+$/;

export function quote(text: string): string {
  let out = '"';
  for (const ch of text) {
    const code = ch.charCodeAt(0);
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (code < 32 || code === 127) out += "\\u" + code.toString(16).padStart(4, "0");
    else out += ch;
  }
  return out + '"';
}

/** A path of segments as a name of the filter language. */
export function nameText(path: string[]): string {
  return path.map((s, i) => ((i === 0 ? FIRST : LATER).test(s) ? (i === 0 ? s : "." + s) : `[${quote(s)}]`)).join("");
}

/** The segments of a name of the filter language (null when it is not one). */
export function parseName(text: string): string[] | null {
  const out: string[] = [];
  let i = 0;
  const ident = /[A-Za-z0-9_]+/y;
  while (i < text.length) {
    if (out.length > 0) {
      if (text[i] === ".") i++;
      else if (text[i] !== "[") return null;
    }
    if (text[i] === "[") {
      if (text[i + 1] !== '"') return null;
      let j = i + 2;
      let s = "";
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === "\\") {
          const esc = text[++j];
          if (esc === "u") {
            s += String.fromCharCode(parseInt(text.slice(j + 1, j + 5), 16));
            j += 4;
          } else s += ({ n: "\n", r: "\r", t: "\t", "0": "\0" } as Record<string, string>)[esc] ?? esc;
        } else s += text[j];
      }
      if (text[j + 1] !== "]") return null;
      out.push(s);
      i = j + 2;
    } else {
      ident.lastIndex = i;
      const m = ident.exec(text);
      if (!m) return null;
      out.push(m[0]);
      i += m[0].length;
    }
  }
  return out.length > 0 ? out : null;
}

export function paramColumn(key: string): string {
  return nameText(["params", ...key.split(".")]);
}

export function metricColumn(stream: string, field: string, stat: MetricStat): string {
  return nameText(["metrics", stream, field, stat]);
}

export type Column =
  | { kind: "base"; id: string; label: string }
  | { kind: "param"; id: string; label: string; key: string }
  | { kind: "metric"; id: string; label: string; stream: string; field: string; stat: MetricStat };

export function describeColumn(id: string): Column | null {
  if ((BASE_COLUMNS as readonly string[]).includes(id)) return { kind: "base", id, label: id };
  const path = parseName(id);
  if (path === null) return null;
  if (path[0] === "params" && path.length >= 2) {
    const key = path.slice(1).join(".");
    return { kind: "param", id, label: key, key };
  }
  if (path[0] === "metrics" && path.length === 4 && (METRIC_STATS as readonly string[]).includes(path[3])) {
    const [, stream, field, stat] = path;
    return { kind: "metric", id, label: `${stream}.${field} ${stat}`, stream, field, stat: stat as MetricStat };
  }
  return null;
}

/** The sort key the server understands for a column (null: sorted in the page only). */
export function serverSort(id: string): string | null {
  if (id === "tags" || id === "duration") return null;
  return id;
}

/** The value a column shows and sorts by. */
export function sortValue(run: RunSummary, id: string, now = Date.now() / 1000): unknown {
  switch (id) {
    case "status": return run.status;
    case "name": return run.name;
    case "tags": return run.tags.join(", ");
    case "created": case "createdAt": return run.createdAt;
    case "duration": {
      const start = run.startedAt ?? run.createdAt;
      return run.endedAt !== null ? run.endedAt - start : run.status === "RUNNING" ? now - start : null;
    }
  }
  const column = describeColumn(id);
  if (column?.kind === "param") return run.params[column.key];
  if (column?.kind === "metric") return run.metrics[column.stream]?.[column.field]?.[column.stat] ?? null;
  return null;
}

const TYPE_ORDER: Record<string, number> = { number: 0, string: 1, boolean: 2, object: 3 };

/** Order for sorting: numbers, then text, booleans, the rest; missing values (and NaN) last. */
export function compareValues(a: unknown, b: unknown): number {
  const aMissing = a === null || a === undefined || (typeof a === "number" && Number.isNaN(a));
  const bMissing = b === null || b === undefined || (typeof b === "number" && Number.isNaN(b));
  if (aMissing || bMissing) return aMissing === bMissing ? 0 : aMissing ? 1 : -1;
  if (typeof a === "number" && typeof b === "number") return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === "string" && typeof b === "string") return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a !== typeof b) return (TYPE_ORDER[typeof a] ?? 9) - (TYPE_ORDER[typeof b] ?? 9);
  const sa = JSON.stringify(a);
  const sb = JSON.stringify(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

/** Sort runs by a column in the page (missing values last in both directions). */
export function sortRuns(runs: RunSummary[], id: string, descending: boolean): RunSummary[] {
  const now = Date.now() / 1000;
  const keyed = runs.map((run, i) => ({ run, i, v: sortValue(run, id, now) }));
  keyed.sort((x, y) => {
    const xm = x.v === null || x.v === undefined;
    const ym = y.v === null || y.v === undefined;
    if (xm !== ym) return xm ? 1 : -1;
    const c = compareValues(x.v, y.v);
    return (descending ? -c : c) || x.i - y.i;
  });
  return keyed.map((k) => k.run);
}

/** Every column the loaded runs could show: the base ones, each param, each metric field's statistics. */
export function availableColumns(runs: RunSummary[]): string[] {
  const params = new Set<string>();
  const metrics = new Set<string>();
  for (const run of runs) {
    for (const key of Object.keys(run.params)) params.add(key);
    for (const [stream, fields] of Object.entries(run.metrics)) {
      for (const field of Object.keys(fields)) if (field !== "_ts") metrics.add(JSON.stringify([stream, field]));
    }
  }
  const out: string[] = [...BASE_COLUMNS];
  for (const key of [...params].sort()) out.push(paramColumn(key));
  for (const pair of [...metrics].sort()) {
    const [stream, field] = JSON.parse(pair) as [string, string];
    for (const stat of METRIC_STATS) out.push(metricColumn(stream, field, stat));
  }
  return out;
}

/** The columns shown until the user chooses: the base ones, up to 4 params and the last value of up to 3 fields. */
export function defaultColumns(available: string[]): string[] {
  const params = available.filter((id) => id.startsWith("params"));
  const metrics = available.filter((id) => describeColumn(id)?.kind === "metric" && id.endsWith(".last"));
  return [...BASE_COLUMNS, ...params.slice(0, 4), ...metrics.slice(0, 3)];
}
