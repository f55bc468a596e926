// What a chart draws, independent of uPlot: lines built from server series, the
// smoothed copy, the nearest point to the cursor, and the data handed to uPlot.
import type { NonFiniteName, Series } from "./api";
import { debiasedEma } from "./smooth";

export interface ChartLine {
  key: string; // the run's prefix
  label: string;
  color: string;
  x: number[];
  y: number[];
  raw: boolean; // every point of the range (else the M4 reduction)
  total: number;
  nonFinite: { x: number[]; values: NonFiniteName[] };
}

/** A server series as a line, x shifted by `origin` (relative time). */
export function lineOf(series: Series, label: string, color: string, origin = 0): ChartLine {
  const shift = (xs: number[]): number[] => (origin === 0 ? xs : xs.map((x) => x - origin));
  return {
    key: series.prefix, label, color, x: shift(series.x), y: series.values, raw: series.raw, total: series.total,
    nonFinite: { x: shift(series.nonFinite.x), values: series.nonFinite.values },
  };
}

/** Index of the point whose x is closest to `x` in a sorted array (-1 when empty). */
export function nearestIndex(xs: ArrayLike<number>, x: number): number {
  if (xs.length === 0) return -1;
  let lo = 0;
  let hi = xs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && Math.abs(xs[lo - 1] - x) <= Math.abs(xs[lo] - x)) return lo - 1;
  return lo;
}

/** Values as drawn: on a log scale, values ≤ 0 cannot be placed and are left out (null). */
export function drawable(ys: number[], log: boolean): (number | null)[] {
  return log ? ys.map((v) => (v > 0 ? v : null)) : ys;
}

/** uPlot's faceted data (mode 2): per line its raw values, then (when smoothing) the smoothed ones. */
export function chartData(lines: ChartLine[], smooth: number, log: boolean): [null, ...[number[], (number | null)[]][]] {
  const out: [null, ...[number[], (number | null)[]][]] = [null];
  for (const line of lines) {
    const y = drawable(line.y, log);
    out.push([line.x, y]);
    if (smooth > 0) out.push([line.x, debiasedEma(y, smooth)]);
  }
  return out;
}

/** The x range [x0, x1] of a drag from pixel a to pixel b (ordered). */
export function dragRange(a: number, b: number): [number, number] {
  return a <= b ? [a, b] : [b, a];
}
