// The dashboard's data API: one function per server route (docs/http-api.md), typed
// answers, errors as ApiError. Nothing else in the dashboard calls fetch.
//
// Three routes of the read side (issue 10) are answered by fallback.ts while a server
// lacks them: listRuns, getSeries and the event stream. Each tries the real route
// first; delete fallback.ts and the three `missing(...)` branches below once every
// server has them.
import { signal } from "@preact/signals";
import * as fallback from "./fallback";
import { SseParser } from "./sse";

// -- shapes (ml_dash.wire) ----------------------------------------------------------

export type Status = "RUNNING" | "COMPLETED" | "FAILED" | "CANCELLED" | "STALE";

export interface Resume {
  at: number;
  host: string;
  pid: number;
  interrupted: boolean;
  previousStatus: string;
}

export interface Experiment {
  prefix: string;
  owner: string;
  project: string;
  name: string;
  folders: string[];
  description: string | null;
  tags: string[];
  metadata: Record<string, unknown>;
  status: Status;
  createdAt: number;
  startedAt: number | null;
  endedAt: number | null;
  heartbeatAt: number | null;
  resumes: Resume[];
}

export interface FieldStats {
  count: number;
  last: number | null;
  min: number | null;
  max: number | null;
}

/** A row of the run table: the experiment, its flat params and per stream and field the metric statistics. */
export interface RunSummary extends Experiment {
  params: Record<string, unknown>;
  metrics: Record<string, Record<string, FieldStats>>;
}

export interface RunPage {
  runs: RunSummary[];
  total: number;
  /** Set when the page came from the fallback: what it cannot do. */
  limitation?: string;
}

export interface RunQuery {
  owner?: string;
  project?: string;
  folder?: string; // a folder's whole path: owner/project/folders…
  where?: string;
  sort?: string;
  descending?: boolean;
  offset?: number;
  limit?: number;
}

export interface ParamsDoc {
  version: number;
  data: Record<string, unknown>;
  createdAt: number | null;
  updatedAt: number | null;
}

export interface MetricStats {
  name: string;
  totalDataPoints: number;
  firstDataAt: number | null;
  lastDataAt: number | null;
}

export interface MetricPoint {
  index: number;
  data: Record<string, unknown>;
}

export interface MetricPage {
  data: MetricPoint[];
  startIndex: number;
  endIndex: number;
  total: number;
  hasMore: boolean;
}

export type NonFiniteName = "NaN" | "Infinity" | "-Infinity";

export interface Series {
  prefix: string;
  name: string;
  y: string;
  x: number[];
  values: number[];
  raw: boolean;
  total: number;
  nonFinite: { x: number[]; values: NonFiniteName[] };
}

export interface SeriesQuery {
  prefixes: string[];
  name: string;
  y: string[];
  x: string; // "index", "_ts" or a numeric field
  x0?: number;
  x1?: number;
  width: number;
}

export interface LogLine {
  sequenceNumber: number;
  timestamp: string;
  ts: number;
  level: string;
  message: string;
  metadata: Record<string, unknown> | null;
}

export interface LogPage {
  logs: LogLine[];
  total: number;
  offset: number;
  limit: number;
  hasMore: boolean;
}

export interface LogQuery {
  levels?: string[];
  search?: string;
  startTime?: number;
  endTime?: number;
  offset?: number;
  limit?: number;
  descending?: boolean;
}

export interface TrackInfo {
  topic: string;
  totalEntries: number;
  firstTimestamp: number | null;
  lastTimestamp: number | null;
}

export type LiveEvent =
  | { type: "points"; prefix: string; name: string; count: number; last: Record<string, unknown> }
  | { type: "logs"; prefix: string; count: number }
  | { type: "status"; prefix: string; status: Status }
  | { type: "experiment"; prefix: string };

// -- the request ---------------------------------------------------------------------

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = "ApiError";
  }
}

/** Who the server says this page is: `auth` false when it runs without auth. */
export interface Session {
  auth: boolean;
  owner: string | null;
}

/** Null until the server has said (GET /api/v1/session). */
export const session = signal<Session | null>(null);
/** Set when the server answered 401 (no session, or it ended): the page shows the login form. */
export const authNeeded = signal(false);

type QueryValue = string | number | boolean | null | undefined | readonly (string | number)[];

export function apiUrl(path: string, query: Record<string, QueryValue> = {}): string {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) for (const v of value) q.append(key, String(v));
    else q.set(key, String(value));
  }
  const text = q.toString();
  return `/api/v1/${path}${text ? "?" + text : ""}`;
}

// No Authorization header: with --auth the browser sends the session cookie
// (HttpOnly, so no script here can read it) with every same-origin request.
function headers(extra: Record<string, string> = {}): Record<string, string> {
  return { Accept: "application/json", ...extra };
}

async function failure(response: Response): Promise<ApiError> {
  let code = "error";
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = (await response.json()) as { code?: unknown; message?: unknown };
    if (typeof body.code === "string") code = body.code;
    if (typeof body.message === "string") message = body.message;
  } catch {
    // not our JSON error body: keep the status line
  }
  if (response.status === 401) authNeeded.value = true;
  return new ApiError(response.status, code, message);
}

async function getJSON<T>(path: string, query: Record<string, QueryValue>, abort?: AbortSignal): Promise<T> {
  const response = await fetch(apiUrl(path, query), { headers: headers(), signal: abort, credentials: "same-origin" });
  if (!response.ok) throw await failure(response);
  return (await response.json()) as T;
}

const NONFINITE: Record<string, number> = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };

/** Put the floats of a `nonFinite` map (JSON Pointers relative to `member`) back in place. */
export function restoreNonFinite(body: Record<string, unknown>, member: string): void {
  const map = body.nonFinite as Record<string, string> | undefined;
  if (!map) return;
  for (const [pointer, name] of Object.entries(map)) {
    const tokens = pointer.split("/").slice(1).map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
    let node: unknown = body[member];
    for (let i = 0; i < tokens.length && node !== null && typeof node === "object"; i++) {
      const container = node as Record<string, unknown>;
      if (i === tokens.length - 1) {
        if (container[tokens[i]] === null && name in NONFINITE) container[tokens[i]] = NONFINITE[name];
      } else node = container[tokens[i]];
    }
  }
  delete body.nonFinite;
}

/** A route this server does not have (an older server): Starlette's own 404. */
export function isMissingRoute(error: unknown): boolean {
  return error instanceof ApiError && (error.status === 404 || error.status === 405) && error.code === "not_found" &&
    error.message === "Not Found";
}

const missingRoutes = new Set<string>();

function missing(route: string, error: unknown): boolean {
  if (!isMissingRoute(error)) return false;
  missingRoutes.add(route);
  return true;
}

/** Which routes answered from the fallback (shown in the footer). */
export const fallbackRoutes = signal<string[]>([]);

function noteFallback(route: string): void {
  if (!fallbackRoutes.value.includes(route)) fallbackRoutes.value = [...fallbackRoutes.value, route];
}

// -- the session (docs/http-api.md, "Sessions") ------------------------------------------

async function sessionCall(method: "GET" | "POST" | "DELETE", body?: unknown): Promise<Session> {
  const response = await fetch(apiUrl("session"), {
    method, credentials: "same-origin", cache: "no-store",
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  return (await response.json()) as Session;
}

/** Ask the server who this page is; a 401 shows the login form, any other trouble is taken as "no auth". */
export async function whoAmI(): Promise<Session> {
  try {
    session.value = await sessionCall("GET");
  } catch (error) {
    session.value = { auth: error instanceof ApiError && error.status === 401, owner: null };
  }
  return session.value;
}

/** Give the token once: the server answers with its session cookie. Throws ApiError (401 for a bad token). */
export async function logIn(token: string): Promise<Session> {
  const answer = await sessionCall("POST", { token });
  session.value = answer;
  authNeeded.value = false;
  return answer;
}

/** End the session on the server (the cookie is cleared) and show the login form. */
export async function logOut(): Promise<void> {
  try {
    await sessionCall("DELETE");
  } finally {
    session.value = { auth: true, owner: null };
    authNeeded.value = true;
  }
}

// -- routes ---------------------------------------------------------------------------

export async function listExperiments(owner?: string, project?: string, abort?: AbortSignal): Promise<Experiment[]> {
  const body = await getJSON<{ experiments: Experiment[] }>("experiments", { owner, project }, abort);
  return body.experiments;
}

export function getExperiment(prefix: string, abort?: AbortSignal): Promise<Experiment> {
  return getJSON<Experiment>("experiment", { prefix }, abort);
}

export async function getParams(prefix: string, abort?: AbortSignal): Promise<ParamsDoc> {
  const body = await getJSON<ParamsDoc & { nonFinite?: unknown }>("params", { prefix }, abort);
  restoreNonFinite(body as unknown as Record<string, unknown>, "data");
  return body;
}

export async function listMetrics(prefix: string, abort?: AbortSignal): Promise<MetricStats[]> {
  return (await getJSON<{ metrics: MetricStats[] }>("metrics/list", { prefix }, abort)).metrics;
}

export async function readMetrics(prefix: string, name: string, startIndex: number, limit: number,
  abort?: AbortSignal): Promise<MetricPage> {
  const body = await getJSON<MetricPage>("metrics/read", { prefix, name, start_index: startIndex, limit }, abort);
  restoreNonFinite(body as unknown as Record<string, unknown>, "data");
  return body;
}

export async function readLogs(prefix: string, q: LogQuery, abort?: AbortSignal): Promise<LogPage> {
  const body = await getJSON<LogPage>("logs", {
    prefix, level: q.levels, search: q.search, start_time: q.startTime, end_time: q.endTime, offset: q.offset,
    limit: q.limit, descending: q.descending ? "true" : undefined,
  }, abort);
  restoreNonFinite(body as unknown as Record<string, unknown>, "logs");
  return body;
}

export async function listTracks(prefix: string, abort?: AbortSignal): Promise<TrackInfo[]> {
  return (await getJSON<{ tracks: TrackInfo[] }>("tracks/list", { prefix }, abort)).tracks;
}

/** Entries in time order; with `limit`, at most that many, after the timestamp `after` (walk a topic page by page). */
export async function readTracks(prefix: string, topic: string,
  q: { start?: number; end?: number; limit?: number; after?: number } = {},
  abort?: AbortSignal): Promise<Record<string, unknown>[]> {
  const body = await getJSON<{ entries: Record<string, unknown>[] }>("tracks/read", { prefix, topic,
    start_timestamp: q.start, end_timestamp: q.end, limit: q.limit, after: q.after }, abort);
  restoreNonFinite(body as unknown as Record<string, unknown>, "entries");
  return body.entries;
}

/** GET /api/v1/runs: a page of run summaries under a scope, filtered with the filter language and sorted. */
export async function listRuns(q: RunQuery, abort?: AbortSignal): Promise<RunPage> {
  if (!missingRoutes.has("runs")) {
    try {
      const page = await getJSON<RunPage>("runs", { ...q, descending: q.descending ? "true" : undefined }, abort);
      restoreNonFinite(page as unknown as Record<string, unknown>, "runs");
      return page;
    } catch (error) {
      if (!missing("runs", error)) throw error;
    }
  }
  noteFallback("runs");
  return fallback.listRuns(q, abort);
}

/** GET /api/v1/metrics/series: one M4-reduced series per (prefix, y field). */
export async function getSeries(q: SeriesQuery, abort?: AbortSignal): Promise<Series[]> {
  if (!missingRoutes.has("series")) {
    try {
      const body = await getJSON<{ series: Series[] }>("metrics/series", {
        prefix: q.prefixes, name: q.name, y: q.y, x: q.x, x0: q.x0, x1: q.x1, width: Math.round(q.width),
      }, abort);
      return body.series;
    } catch (error) {
      if (!missing("series", error)) throw error;
    }
  }
  noteFallback("metrics/series");
  return fallback.getSeries(q, abort);
}

// -- live events: one stream per tab ----------------------------------------------------

export type Target = { prefixes: string[] } | { owner: string; project?: string };
type Listener = (event: LiveEvent) => void;

/** "off", "live" (the event stream), "polling" (the fallback) or "retrying". */
export const liveState = signal<"off" | "live" | "polling" | "retrying">("off");

const EVENT_TYPES = new Set(["points", "logs", "status", "experiment"]);

class EventHub {
  private subscribers = new Map<number, { target: Target; listener: Listener }>();
  private next = 0;
  private key = "";
  private controller: AbortController | null = null;

  subscribe(target: Target, listener: Listener): () => void {
    const id = this.next++;
    this.subscribers.set(id, { target, listener });
    queueMicrotask(() => this.reconcile());
    return () => {
      this.subscribers.delete(id);
      queueMicrotask(() => this.reconcile());
    };
  }

  private wanted(): Record<string, QueryValue> | null {
    const prefixes = new Set<string>();
    let scope: { owner: string; project?: string } | null = null;
    for (const { target } of this.subscribers.values()) {
      if ("prefixes" in target) target.prefixes.forEach((p) => prefixes.add(p));
      else scope ??= target;
    }
    if (prefixes.size > 0) return { prefix: [...prefixes].sort() };
    if (scope !== null) return { owner: scope.owner, project: scope.project };
    return null;
  }

  private reconcile(): void {
    const wanted = this.wanted();
    const key = JSON.stringify(wanted);
    if (key === this.key) return;
    this.key = key;
    this.controller?.abort();
    this.controller = null;
    liveState.value = "off";
    if (wanted !== null) {
      this.controller = new AbortController();
      void this.run(wanted, this.controller.signal);
    }
  }

  private dispatch(event: LiveEvent): void {
    for (const { target, listener } of [...this.subscribers.values()]) {
      const match = "prefixes" in target ? target.prefixes.includes(event.prefix)
        : event.prefix.startsWith(`${target.owner}/${target.project ? target.project + "/" : ""}`);
      if (match) listener(event);
    }
  }

  private async run(query: Record<string, QueryValue>, abort: AbortSignal): Promise<void> {
    const parser = new SseParser();
    const known = new Map<string, unknown>();
    let ready = false; // the state sent at the first connection is what the page has just read
    while (!abort.aborted) {
      try {
        const extra: Record<string, string> = { Accept: "text/event-stream" };
        if (parser.lastEventId) extra["Last-Event-ID"] = parser.lastEventId;
        const response = await fetch(apiUrl("events", query), { headers: headers(extra), signal: abort,
          credentials: "same-origin", cache: "no-store" });
        if (!response.ok) {
          const error = await failure(response);
          if (missing("events", error)) {
            noteFallback("events");
            liveState.value = "polling";
            await fallback.poll(query, (e) => this.dispatch(e), abort);
            return;
          }
          throw error;
        }
        if (!response.body) throw new Error("no stream");
        liveState.value = "live";
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const message of parser.feed(value)) {
            if (message.event === "ready") ready = true;
            if (!EVENT_TYPES.has(message.event)) continue;
            try {
              const event = { type: message.event, ...JSON.parse(message.data) } as LiveEvent;
              if (isNews(known, event, ready)) this.dispatch(event);
            } catch {
              // a malformed event is skipped, the stream goes on
            }
          }
        }
      } catch (error) {
        if (abort.aborted) return;
        if (error instanceof ApiError && error.status === 401) return;
      }
      if (abort.aborted) return;
      liveState.value = "retrying";
      await sleep(parser.retry ?? 1000, abort);
    }
  }
}

/**
 * Whether an event tells something new. The server sends the current state (totals)
 * on every connection, then what changes: an event repeating a known total is
 * dropped, and the state of the first connection (before its "ready") only records
 * the totals, since the page has just read them.
 */
export function isNews(known: Map<string, unknown>, event: LiveEvent, ready: boolean): boolean {
  const key = event.type === "points" ? `p ${event.prefix}\n${event.name}` : event.type === "logs" ? `l ${event.prefix}`
    : event.type === "status" ? `s ${event.prefix}` : null;
  if (key === null) return ready;
  const value = event.type === "points" || event.type === "logs" ? event.count : event.type === "status" ? event.status
    : null;
  const seen = known.has(key);
  const before = known.get(key);
  known.set(key, value);
  return seen ? before !== value : ready;
}

export function sleep(ms: number, abort?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    abort?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

const hub = new EventHub();

/** Call `listener` for every live event about `target` until the returned function is called. */
export function subscribe(target: Target, listener: Listener): () => void {
  return hub.subscribe(target, listener);
}

/** The summary of one run (its metric fields and their statistics): /runs filtered by prefix. */
export async function getRunSummary(exp: Experiment, abort?: AbortSignal): Promise<RunSummary> {
  const page = await listRuns({ owner: exp.owner, project: exp.project, where: `prefix == ${JSON.stringify(exp.prefix)}`,
    limit: 10 }, abort);
  const found = page.runs.find((r) => r.prefix === exp.prefix);
  if (!found) throw new ApiError(404, "not_found", `no summary of ${exp.prefix}`);
  return found;
}
