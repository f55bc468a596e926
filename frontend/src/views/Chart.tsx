// One uPlot chart (faceted mode: every line has its own x, so runs reduced to
// different points overlay without joining them). Hover shows the exact values;
// dragging asks the owner to zoom (it re-reads the range), double-click resets;
// non-finite values are marked on the plot and listed under it.
import { useEffect, useLayoutEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import { type ChartLine, chartData, nearestIndex } from "../chart";
import { formatDuration, formatNumber, formatTime } from "../format";
import { trace, tracing } from "../trace";

export type XKind = "index" | "time" | "rel" | "field";

export interface ChartProps {
  lines: ChartLine[];
  xKind: XKind;
  xLabel: string;
  log: boolean;
  smooth: number;
  zoom: [number, number] | null;
  onZoom: (range: [number, number] | null) => void;
  height?: number;
  label: string;
  since?: number; // performance.now() when the data drawn was asked for (for the benchmark's trace)
  received?: number; // and when it arrived
}

/** Above this many lines on one chart, each is drawn a hairline wide (see below). */
export const MANY_LINES = 8;
const INTEGER_STEPS = Array.from({ length: 16 }, (_, i) => [1, 2, 5].map((m) => m * 10 ** i)).flat();
const MARK: Record<string, string> = { NaN: "NaN", Infinity: "+∞", "-Infinity": "−∞" };

function cssVar(el: Element, name: string, fallback: string): string {
  return getComputedStyle(el).getPropertyValue(name).trim() || fallback;
}

export function formatX(kind: XKind, x: number): string {
  if (kind === "time") return formatTime(x);
  if (kind === "rel") return formatDuration(x) || formatNumber(x);
  return formatNumber(x);
}

function fade(color: string): string {
  return color.startsWith("hsl(") ? color.replace(/\)$/, " / 0.28)") : color;
}

export function Chart(props: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const tip = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = useRef("");
  const live = useRef(props);
  live.current = props;

  // The uPlot instance: made again when the kind of chart changes, else given new data.
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    const { lines, smooth, log, xKind } = props;
    const data = chartData(lines, smooth, log) as unknown as uPlot.AlignedData;
    const dark = matchMedia("(prefers-color-scheme: dark)").matches;
    const key = JSON.stringify([lines.map((l) => [l.key, l.color]), smooth > 0, log, xKind, dark]);
    const started = performance.now();
    if (plot.current && shape.current === key) {
      plot.current.setData(data);
      (el as HTMLElement & { mlDashChart?: unknown }).mlDashChart = { lines, uplot: plot.current,
        drawMs: performance.now() - started };
      return;
    }
    plot.current?.destroy();
    shape.current = key;
    const axis = cssVar(el, "--muted", "#667");
    const grid = cssVar(el, "--grid", "#8882");
    const series: uPlot.Series[] = [{}];
    // Many lines are drawn one device pixel wide: without a GPU, Chromium rasterizes a
    // 1-pixel line (a hairline) some 15× faster than a 1.5-pixel one (100 runs of
    // 5,000 points: 65 ms against 1.1 s, measured by benchmarks/bench_dashboard.py).
    const hair = 1 / (devicePixelRatio || 1);
    const many = lines.length > MANY_LINES;
    for (const line of lines) {
      const facets = [{ scale: "x", auto: true }, { scale: "y", auto: true }];
      const common = { facets, paths: uPlot.paths.linear!(), points: { show: false }, spanGaps: false };
      series.push({ ...common, label: line.label, stroke: smooth > 0 ? fade(line.color) : line.color,
        width: many ? hair : smooth > 0 ? 1 : 1.5 });
      if (smooth > 0) {
        series.push({ ...common, label: `${line.label} (smoothed)`, stroke: line.color, width: many ? hair : 1.75 });
      }
    }
    const opts: uPlot.Options = {
      mode: 2,
      width: Math.max(el.clientWidth, 100),
      height: props.height ?? 220,
      legend: { show: false },
      cursor: {
        drag: { x: true, y: false, setScale: false },
        points: { show: false },
        bind: {
          dblclick: () => () => {
            live.current.onZoom(null);
            return null;
          },
        },
      },
      select: { show: true, left: 0, top: 0, width: 0, height: 0 },
      scales: {
        x: {
          time: xKind === "time",
          auto: true,
          range: (_u, min, max) => {
            const zoom = live.current.zoom;
            if (zoom) return zoom;
            if (min === null || max === null) return [0, 1];
            return min === max ? [min - 1, max + 1] : [min, max];
          },
        },
        y: log ? { distr: 3, log: 10 } : {
          range: (_u, min, max) => {
            if (min === null || max === null) return [0, 1];
            if (min === max) return [min - Math.abs(min || 1) * 0.1, max + Math.abs(max || 1) * 0.1];
            const pad = (max - min) * 0.05;
            return [min - pad, max + pad];
          },
        },
      },
      axes: [
        {
          stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid },
          ...(xKind === "time" ? {} : { values: (_u: uPlot, ticks: number[]) => ticks.map((t) => formatX(xKind, t)) }),
          ...(xKind === "index" ? { incrs: INTEGER_STEPS } : {}),
        },
        { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 60,
          values: (_u: uPlot, ticks: number[]) => ticks.map((t) => formatNumber(t)) },
      ],
      series,
      hooks: {
        setSelect: [(u) => {
          if (u.select.width > 3) {
            const a = u.posToVal(u.select.left, "x");
            const b = u.posToVal(u.select.left + u.select.width, "x");
            live.current.onZoom([Math.min(a, b), Math.max(a, b)]);
          }
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        }],
        setCursor: [(u) => showTip(u)],
        draw: [(u) => {
          drawNonFinite(u, live.current.lines);
          if (tracing()) traceDraw(live.current);
        }],
      },
    };
    const u = new uPlot(opts, data, el);
    plot.current = u;
    // What tests and benchmarks read: the lines handed to uPlot, uPlot itself, how long drawing took.
    (el as HTMLElement & { mlDashChart?: unknown }).mlDashChart = { lines, uplot: u, drawMs: performance.now() - started };
  });

  function showTip(u: uPlot): void {
    const t = tip.current;
    if (!t) return;
    const left = u.cursor.left ?? -1;
    if (left < 0) {
      t.hidden = true;
      return;
    }
    const { lines, xKind, smooth, log } = live.current;
    const xv = u.posToVal(left, "x");
    const rows: { label: string; color: string; x: number; y: number; s?: number | null; dist: number }[] = [];
    const data = u.data as unknown as [null, ...[number[], (number | null)[]][]];
    let slot = 1;
    for (const line of lines) {
      const i = nearestIndex(line.x, xv);
      if (i >= 0) {
        const smoothed = smooth > 0 ? data[slot + 1]?.[1]?.[i] : undefined;
        rows.push({ label: line.label, color: line.color, x: line.x[i], y: line.y[i], s: smoothed,
          dist: Math.abs(u.valToPos(line.x[i], "x") - left) });
      }
      slot += smooth > 0 ? 2 : 1;
    }
    const near = rows.filter((r) => r.dist < 40).sort((a, b) => b.y - a.y).slice(0, 12);
    if (near.length === 0) {
      t.hidden = true;
      return;
    }
    t.replaceChildren();
    const head = document.createElement("div");
    head.className = "tip-x";
    head.textContent = `${live.current.xLabel}: ${formatX(xKind, near[0].x)}`;
    t.append(head);
    for (const r of near) {
      const row = document.createElement("div");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = r.color;
      const text = document.createElement("span");
      const smoothText = r.s !== undefined && r.s !== null ? ` (smoothed ${formatNumber(r.s)})` : "";
      text.textContent = `${lines.length > 1 ? r.label + ": " : ""}${formatNumber(r.y)}${smoothText}`;
      row.append(swatch, text);
      t.append(row);
    }
    void log;
    t.hidden = false;
    const width = u.over.clientWidth;
    t.style.left = `${Math.min(left + 14, Math.max(0, width - t.offsetWidth))}px`;
    t.style.top = `${Math.max(0, (u.cursor.top ?? 0) - 10)}px`;
  }

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const observer = new ResizeObserver(() => {
      const u = plot.current;
      if (u && el.clientWidth > 0 && Math.abs(u.width - el.clientWidth) > 1) {
        u.setSize({ width: el.clientWidth, height: u.height });
      }
    });
    observer.observe(el);
    return () => {
      observer.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);

  const marks = props.lines.flatMap((l) => l.nonFinite.values.map((v, i) => ({ line: l, v, x: l.nonFinite.x[i] })));
  return (
    <div class="chart">
      <div class="chart-plot" ref={box} role="img" aria-label={props.label} data-testid="chart">
        <div class="tip" ref={tip} hidden />
      </div>
      {marks.length > 0 && (
        <p class="nonfinite" data-testid="nonfinite">
          {marks.length} non-finite value{marks.length === 1 ? "" : "s"}:{" "}
          {marks.slice(0, 5).map((m) => `${MARK[m.v]} at ${formatX(props.xKind, m.x)}`).join(", ")}
          {marks.length > 5 ? " …" : ""}
        </p>
      )}
    </div>
  );
}

function traceDraw(props: ChartProps): void {
  const first = props.lines[0];
  trace({ kind: "chart", label: props.label, since: props.since, received: props.received, lines: props.lines.length,
    points: props.lines.reduce((n, l) => n + l.x.length, 0), lastX: first ? Math.max(...first.x.slice(-4)) : undefined });
}

function drawNonFinite(u: uPlot, lines: ChartLine[]): void {
  const ctx = u.ctx;
  const { left, top, width, height } = u.bbox;
  ctx.save();
  ctx.lineWidth = Math.max(1, devicePixelRatio);
  ctx.font = `${Math.round(10 * devicePixelRatio)}px sans-serif`;
  ctx.textAlign = "center";
  for (const line of lines) {
    line.nonFinite.x.forEach((x, i) => {
      const px = u.valToPos(x, "x", true);
      if (!(px >= left && px <= left + width)) return;
      const kind = line.nonFinite.values[i];
      ctx.strokeStyle = kind === "NaN" ? "rgba(220, 38, 38, 0.55)" : "rgba(234, 88, 12, 0.55)";
      ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
      ctx.beginPath();
      ctx.moveTo(px, top);
      ctx.lineTo(px, top + height);
      ctx.stroke();
      ctx.fillStyle = kind === "NaN" ? "rgb(220, 38, 38)" : "rgb(234, 88, 12)";
      ctx.fillText(MARK[kind], px, kind === "-Infinity" ? top + height - 3 * devicePixelRatio : top + 11 * devicePixelRatio);
    });
  }
  ctx.restore();
}
