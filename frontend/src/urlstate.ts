// Every view's state lives in its URL: the path says which view, the query says how it
// is shown. These functions are pure (unit-tested); router.ts applies them to history.

export type Route =
  | { kind: "runs"; scope: string[] } // owner / project / folders…, any depth
  | { kind: "run"; prefix: string }
  | { kind: "compare" }
  | { kind: "notfound"; path: string };

function segments(path: string): string[] | null {
  try {
    return path.split("/").filter((s) => s !== "").map((s) => decodeURIComponent(s));
  } catch {
    return null; // a malformed %-escape
  }
}

export function parseRoute(pathname: string): Route {
  const parts = segments(pathname);
  if (parts === null) return { kind: "notfound", path: pathname };
  if (parts.length === 0) return { kind: "runs", scope: [] };
  const [head, ...rest] = parts;
  if (head === "runs") return { kind: "runs", scope: rest };
  if (head === "run" && rest.length >= 3) return { kind: "run", prefix: rest.join("/") };
  if (head === "compare" && rest.length === 0) return { kind: "compare" };
  return { kind: "notfound", path: pathname };
}

const encodePath = (parts: string[]): string => parts.map(encodeURIComponent).join("/");

export function runsPath(scope: string[]): string {
  return scope.length === 0 ? "/runs" : `/runs/${encodePath(scope)}`;
}

export function runPath(prefix: string, query?: URLSearchParams): string {
  const q = query?.toString();
  return `/run/${encodePath(prefix.split("/"))}${q ? "?" + q : ""}`;
}

// -- the run table ------------------------------------------------------------------

export interface TableState {
  where: string;
  sort: string | null; // a column id (see columns.ts)
  desc: boolean;
  cols: string[] | null; // null: the default columns
}

export function readTableState(q: URLSearchParams): TableState {
  const cols = q.get("cols");
  return {
    where: q.get("where") ?? "",
    sort: q.get("sort") || null,
    desc: q.get("desc") === "1",
    cols: cols === null ? null : cols.split("\n").filter((c) => c !== ""),
  };
}

export function writeTableState(q: URLSearchParams, s: TableState): URLSearchParams {
  const out = new URLSearchParams(q);
  const set = (key: string, value: string | null): void => {
    if (value === null || value === "") out.delete(key);
    else out.set(key, value);
  };
  set("where", s.where.trim());
  set("sort", s.sort);
  set("desc", s.sort !== null && s.desc ? "1" : null);
  set("cols", s.cols === null ? null : s.cols.join("\n"));
  return out;
}

// -- charts -------------------------------------------------------------------------

/** x-axis: "index", "_ts" (wall time), "rel" (seconds since the run started) or a numeric field. */
export interface ChartState {
  x: string;
  log: boolean;
  smooth: number; // 0 (off) … 0.99
}

export const DEFAULT_CHART: ChartState = { x: "index", log: false, smooth: 0.6 };

export function readChartState(q: URLSearchParams): ChartState {
  const smooth = Number(q.get("smooth"));
  const x = q.get("x");
  return {
    x: x && x.length <= 200 ? x : DEFAULT_CHART.x,
    log: q.get("log") === "1",
    smooth: q.has("smooth") && Number.isFinite(smooth) ? Math.min(Math.max(smooth, 0), 0.99) : DEFAULT_CHART.smooth,
  };
}

export function writeChartState(q: URLSearchParams, s: ChartState): URLSearchParams {
  const out = new URLSearchParams(q);
  if (s.x === DEFAULT_CHART.x) out.delete("x");
  else out.set("x", s.x);
  if (s.log) out.set("log", "1");
  else out.delete("log");
  if (s.smooth === DEFAULT_CHART.smooth) out.delete("smooth");
  else out.set("smooth", String(Math.round(s.smooth * 100) / 100));
  return out;
}

/** The x field the server is asked for: relative time is wall time shifted by the run's start. */
export function serverAxis(x: string): string {
  return x === "rel" ? "_ts" : x;
}

// -- compare -----------------------------------------------------------------------

export const MAX_COMPARE = 100;

export interface CompareState {
  runs: string[];
  stream: string | null;
  field: string | null;
  allParams: boolean;
}

export function readCompareState(q: URLSearchParams): CompareState {
  const runs = Array.from(new Set(q.getAll("r"))).slice(0, MAX_COMPARE);
  return { runs, stream: q.get("stream"), field: q.get("field"), allParams: q.get("all") === "1" };
}

export function comparePath(s: CompareState, chart?: ChartState): string {
  let q = new URLSearchParams();
  for (const r of s.runs.slice(0, MAX_COMPARE)) q.append("r", r);
  if (s.stream !== null) q.set("stream", s.stream);
  if (s.field !== null) q.set("field", s.field);
  if (s.allParams) q.set("all", "1");
  if (chart) q = writeChartState(q, chart);
  return `/compare?${q.toString()}`;
}
