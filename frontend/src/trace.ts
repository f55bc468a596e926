// Timing marks for the benchmark (benchmarks/bench_dashboard.py). A page on which
// `window.mlDashTrace` is an array (the benchmark sets it before the page's own
// script runs) gets one entry per chart drawn, stamped at the next animation frame
// (the frame that shows it), with a `performance.mark` of the same name. A normal
// page has no such array: then this is one property read per draw, nothing else.

export interface TraceEntry {
  kind: string; // "chart": a chart drawn; "table": the run table rendered
  label: string; // which one (a chart's "stream field")
  since?: number; // performance.now() when what led to it started (the request)
  received?: number; // performance.now() when its data arrived
  lines?: number;
  points?: number;
  lastX?: number; // the largest x of the first line (which point is on screen)
  drawMs?: number; // uPlot's own drawing, synchronous
}

export interface Stamped extends TraceEntry {
  at: number; // performance.now() at the frame that shows it (ms since navigation)
  wall: number; // Date.now() then (ms since the epoch: comparable with the training process's clock)
}

type Traced = Window & { mlDashTrace?: unknown };

export function tracing(): boolean {
  return typeof window !== "undefined" && Array.isArray((window as Traced).mlDashTrace);
}

/** Record `entry` at the next animation frame, when the page is traced. */
export function trace(entry: TraceEntry): void {
  if (!tracing()) return;
  requestAnimationFrame(() => {
    const at = performance.now();
    performance.mark(`ml-dash:${entry.kind}`, { detail: entry });
    ((window as Traced).mlDashTrace as Stamped[]).push({ ...entry, at, wall: Date.now() });
  });
}
