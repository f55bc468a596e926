// A chart of one field of one stream for one or more runs: asks the server for the
// series at the chart's pixel width, again for a zoomed range, and again when a live
// event says the stream grew (keeping the zoom).
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { getSeries, type Series } from "../api";
import { type ChartLine, lineOf } from "../chart";
import { serverAxis } from "../urlstate";
import { Chart, formatX, type XKind } from "./Chart";

export interface RunLine {
  prefix: string;
  label: string;
  color: string;
  origin: number; // the run's start (relative time)
}

export interface SeriesChartProps {
  runs: RunLine[];
  stream: string;
  field: string;
  x: string; // "index" | "_ts" | "rel" | a field
  log: boolean;
  smooth: number;
  liveTick: number;
  height?: number;
  title?: string;
}

export function xKindOf(x: string): XKind {
  return x === "index" ? "index" : x === "_ts" ? "time" : x === "rel" ? "rel" : "field";
}

export function xLabelOf(x: string): string {
  return x === "index" ? "index" : x === "_ts" ? "wall time" : x === "rel" ? "relative time" : x;
}

async function fetchLines(p: SeriesChartProps, zoom: [number, number] | null, width: number,
  abort: AbortSignal): Promise<ChartLine[]> {
  const axis = serverAxis(p.x);
  const rel = p.x === "rel";
  const byPrefix = new Map(p.runs.map((r) => [r.prefix, r]));
  let found: Series[];
  if (rel && zoom) {
    // Each run has its own start, so each asks for its own range of wall time.
    found = (await Promise.all(p.runs.map((r) => getSeries({ prefixes: [r.prefix], name: p.stream, y: [p.field],
      x: axis, x0: zoom[0] + r.origin, x1: zoom[1] + r.origin, width }, abort)))).flat();
  } else {
    found = await getSeries({ prefixes: p.runs.map((r) => r.prefix), name: p.stream, y: [p.field], x: axis,
      x0: zoom?.[0], x1: zoom?.[1], width }, abort);
  }
  return found.filter((s) => byPrefix.has(s.prefix) && s.y === p.field).map((s) => {
    const run = byPrefix.get(s.prefix)!;
    return lineOf(s, run.label, run.color, rel ? run.origin : 0);
  });
}

export function SeriesChart(props: SeriesChartProps) {
  const [zoom, setZoom] = useState<[number, number] | null>(null);
  const [lines, setLines] = useState<ChartLine[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [width, setWidth] = useState(0);
  const box = useRef<HTMLDivElement>(null);
  const since = useRef([0, 0]); // when the lines shown were asked for, and when they arrived
  const runsKey = props.runs.map((r) => r.prefix).join("\n");

  useLayoutEffect(() => {
    const w = box.current?.clientWidth ?? 0;
    setWidth(Math.max(100, Math.min(4000, Math.round(w * Math.min(devicePixelRatio || 1, 2)))));
  }, []);
  useEffect(() => setZoom(null), [props.x, runsKey, props.stream, props.field]);

  useEffect(() => {
    if (width === 0) return;
    const abort = new AbortController();
    const started = performance.now();
    fetchLines(props, zoom, width, abort.signal).then((found) => {
      since.current = [started, performance.now()];
      setLines(found);
      setError(null);
    }, (e: unknown) => {
      if (!abort.signal.aborted) setError(e instanceof Error ? e.message : String(e));
    });
    return () => abort.abort();
  }, [width, zoom, props.x, runsKey, props.stream, props.field, props.liveTick]);

  const title = props.title ?? props.field;
  const raw = lines !== null && lines.every((l) => l.raw);
  const points = lines?.reduce((n, l) => n + l.x.length, 0) ?? 0;
  const kind = xKindOf(props.x);
  return (
    <figure class="card" data-field={props.field} data-stream={props.stream} data-zoomed={zoom ? "1" : "0"}
      data-raw={lines === null ? undefined : raw ? "1" : "0"}>
      <figcaption>
        <span class="field">{title}</span>
        <span class="muted small">
          {lines === null ? "loading…" : `${points} points${raw ? "" : " (M4)"}`}
          {zoom && <> · {formatX(kind, zoom[0])} – {formatX(kind, zoom[1])} <button type="button" class="link"
            onClick={() => setZoom(null)}>reset zoom</button></>}
        </span>
      </figcaption>
      <div ref={box}>
        {error && <p class="error" role="alert">{error}</p>}
        {lines !== null && lines.length === 0 && !error && <p class="muted empty-chart">No {props.field} values
          against {xLabelOf(props.x)}.</p>}
        {lines !== null && lines.length > 0 && (
          <Chart lines={lines} xKind={kind} xLabel={xLabelOf(props.x)} log={props.log} smooth={props.smooth}
            zoom={zoom} onZoom={setZoom} height={props.height} since={since.current[0]} received={since.current[1]} label={`${props.stream} ${title} against ${xLabelOf(props.x)}`} />
        )}
      </div>
    </figure>
  );
}
