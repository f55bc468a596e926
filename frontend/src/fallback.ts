// TEMPORARY: what the dashboard does on a server without the read side of issue 10
// (GET /api/v1/runs, /api/v1/metrics/series, /api/v1/events). api.ts calls these only
// after the real route answered Starlette's 404; delete this file and those branches
// once every server has the routes.
//
// - runs: /experiments plus, per run, /params, /metrics/list and every point of small
//   streams (≤ 50,000) for last/min/max; sorted here; the filter is not applied.
// - series: every point read page by page (kept per stream, extended as it grows),
//   reduced here with the same M4 the server uses.
// - events: polling once a second.
import {
  type Experiment, type LiveEvent, type MetricPoint, type RunPage, type RunQuery, type RunSummary, type Series,
  type SeriesQuery, type FieldStats, getExperiment, getParams, listExperiments, listMetrics, readLogs, readMetrics,
  sleep,
} from "./api";
import { m4 } from "./m4";
import { compareValues, sortValue } from "./columns";

const SUMMARY_LIMIT = 50_000;
const SERIES_LIMIT = 2_000_000;
const PAGE = 100_000;

async function mapLimited<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

// Points of each stream read so far (a stream only grows, so a longer one is read on from its end).
const points = new Map<string, MetricPoint[]>();

const reading = new Map<string, Promise<MetricPoint[]>>();

/** Every point of a stream, read once at a time per stream (charts of one stream share the read). */
// Not aborted with the view that asked first: other charts may wait for it, and what it reads is kept.
function allPoints(prefix: string, name: string, total: number | null): Promise<MetricPoint[]> {
  const key = `${prefix}\n${name}`;
  const running = reading.get(key);
  if (running) return running;
  const read = readOn(key, prefix, name, total).finally(() => reading.delete(key));
  reading.set(key, read);
  return read;
}

async function readOn(key: string, prefix: string, name: string, total: number | null): Promise<MetricPoint[]> {
  const have = points.get(key) ?? [];
  let start = have.length;
  for (;;) {
    if (total !== null && start >= total) break;
    const page = await readMetrics(prefix, name, start, PAGE);
    have.push(...page.data);
    start = have.length;
    if (page.total > SERIES_LIMIT) throw new Error(`${name} has ${page.total} points: too many to read without ` +
      "the server's /api/v1/metrics/series");
    if (!page.hasMore || page.data.length === 0) break;
  }
  points.set(key, have);
  return have;
}

function summarize(data: MetricPoint[]): Record<string, FieldStats> {
  const out: Record<string, FieldStats> = {};
  for (const point of data) {
    for (const [field, value] of Object.entries(point.data)) {
      if (field === "_ts" || typeof value !== "number") continue;
      const s = (out[field] ??= { count: 0, last: null, min: null, max: null });
      s.count++;
      s.last = value;
      if (Number.isFinite(value)) {
        s.min = s.min === null ? value : Math.min(s.min, value);
        s.max = s.max === null ? value : Math.max(s.max, value);
      }
    }
  }
  return out;
}

async function summary(exp: Experiment, abort?: AbortSignal): Promise<RunSummary> {
  const [params, streams] = await Promise.all([getParams(exp.prefix, abort), listMetrics(exp.prefix, abort)]);
  const metrics: RunSummary["metrics"] = {};
  for (const stream of streams) {
    metrics[stream.name] = stream.totalDataPoints <= SUMMARY_LIMIT
      ? summarize(await allPoints(exp.prefix, stream.name, stream.totalDataPoints)) : {};
  }
  return { ...exp, params: params.data, metrics };
}

/** The prefixes named by the filters the dashboard itself writes (`prefix == "…"`, `prefix in […]`), else null. */
export function namedPrefixes(where: string | undefined): string[] | null {
  const m = /^prefix (==|in) (.*)$/s.exec(where?.trim() ?? "");
  if (!m) return null;
  try {
    const value: unknown = JSON.parse(m[2]);
    const list = m[1] === "==" ? [value] : value;
    return Array.isArray(list) && list.every((p) => typeof p === "string") ? (list as string[]) : null;
  } catch {
    return null;
  }
}

export async function listRuns(q: RunQuery, abort?: AbortSignal): Promise<RunPage> {
  let experiments = await listExperiments(q.owner, q.project, abort);
  const named = namedPrefixes(q.where);
  if (named !== null) experiments = experiments.filter((e) => named.includes(e.prefix));
  if (q.folder) {
    const folder = q.folder;
    experiments = experiments.filter((e) => e.prefix.startsWith(folder.replace(/\/+$/, "") + "/"));
  }
  const runs = await mapLimited(experiments.slice(0, 1000), 4, (e) => summary(e, abort));
  if (q.sort) {
    const key = q.sort;
    const sign = q.descending ? -1 : 1;
    runs.sort((a, b) => sign * compareValues(sortValue(a, key), sortValue(b, key)));
  }
  const offset = q.offset ?? 0;
  const page = runs.slice(offset, offset + (q.limit ?? runs.length));
  const limitation = q.where && named === null ? "This server has no /api/v1/runs route: the filter was not applied."
    : undefined;
  return { runs: page, total: runs.length, limitation };
}

export async function getSeries(q: SeriesQuery, abort?: AbortSignal): Promise<Series[]> {
  const out: Series[] = [];
  for (const prefix of q.prefixes) {
    const data = await allPoints(prefix, q.name, null);
    if (abort?.aborted) throw new DOMException("aborted", "AbortError");
    for (const y of q.y) {
      const xs: number[] = [];
      const ys: number[] = [];
      for (const point of data) {
        const value = point.data[y];
        const x = q.x === "index" ? point.index : point.data[q.x];
        if (typeof value !== "number" || typeof x !== "number") continue;
        xs.push(x);
        ys.push(value);
      }
      out.push({ prefix, name: q.name, y, ...m4(xs, ys, q.width, q.x0, q.x1) });
    }
  }
  return out;
}

export async function poll(query: Record<string, unknown>, dispatch: (event: LiveEvent) => void,
  abort: AbortSignal): Promise<void> {
  const seen = new Map<string, string | number>();
  let first = true;
  const changed = (key: string, value: string | number): boolean => {
    const before = seen.get(key);
    seen.set(key, value);
    return !first && before !== value;
  };
  while (!abort.aborted) {
    try {
      if (Array.isArray(query.prefix)) {
        for (const prefix of (query.prefix as string[]).slice(0, 20)) {
          const [exp, streams, logs] = await Promise.all([getExperiment(prefix, abort), listMetrics(prefix, abort),
            readLogs(prefix, { limit: 1 }, abort)]);
          if (changed(`s ${prefix}`, exp.status)) dispatch({ type: "status", prefix, status: exp.status });
          for (const s of streams) {
            if (changed(`m ${prefix}\n${s.name}`, s.totalDataPoints)) {
              dispatch({ type: "points", prefix, name: s.name, count: s.totalDataPoints, last: {} });
            }
          }
          if (changed(`l ${prefix}`, logs.total)) dispatch({ type: "logs", prefix, count: logs.total });
        }
      } else if (typeof query.owner === "string") {
        const project = typeof query.project === "string" ? query.project : undefined;
        for (const exp of await listExperiments(query.owner, project, abort)) {
          const isNew = !seen.has(`s ${exp.prefix}`);
          if (changed(`s ${exp.prefix}`, exp.status)) dispatch({ type: "status", prefix: exp.prefix, status: exp.status });
          if (isNew && !first) dispatch({ type: "experiment", prefix: exp.prefix });
        }
      }
    } catch {
      // the next round tries again
    }
    first = false;
    await sleep(1000, abort);
  }
}
