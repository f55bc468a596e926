// The M4 reduction (Jugel et al., PVLDB 7(10), 2014) over columnar points, in the shape
// of the server's series answer. The dashboard uses it only when it has to read raw
// points itself (the fallback in api.ts); the server does the same for every series.
//
// The range [x0, x1] is cut into `width` equal buckets; each keeps its first and last
// point in x order and a point with its minimum and its maximum y. Ranges with at most
// 4 * width points are answered raw. Non-finite y values never enter the extremes and
// are reported apart, every one of them, so nothing is ever dropped silently.

export type NonFiniteName = "NaN" | "Infinity" | "-Infinity";

export interface Reduced {
  x: number[];
  values: number[];
  raw: boolean;
  total: number;
  nonFinite: { x: number[]; values: NonFiniteName[] };
}

export function nonFiniteName(v: number): NonFiniteName {
  return Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
}

/** Points (xs[i], ys[i]) sorted by x (stable), restricted to [x0, x1], reduced to `width` columns. */
export function m4(xs: ArrayLike<number>, ys: ArrayLike<number>, width: number, x0?: number, x1?: number): Reduced {
  const order: number[] = [];
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i];
    if (!Number.isFinite(x)) continue;
    if ((x0 !== undefined && x < x0) || (x1 !== undefined && x > x1)) continue;
    order.push(i);
  }
  order.sort((a, b) => xs[a] - xs[b] || a - b);
  const out: Reduced = { x: [], values: [], raw: true, total: order.length, nonFinite: { x: [], values: [] } };
  for (const i of order) {
    if (!Number.isFinite(ys[i])) {
      out.nonFinite.x.push(xs[i]);
      out.nonFinite.values.push(nonFiniteName(ys[i]));
    }
  }
  const finite = order.filter((i) => Number.isFinite(ys[i]));
  const columns = Math.max(1, Math.floor(width));
  if (finite.length <= 4 * columns) {
    for (const i of finite) {
      out.x.push(xs[i]);
      out.values.push(ys[i]);
    }
    return out;
  }
  out.raw = false;
  const lo = x0 ?? xs[finite[0]];
  const hi = x1 ?? xs[finite[finite.length - 1]];
  const span = hi - lo;
  const bucketOf = (x: number): number =>
    span > 0 ? Math.min(columns - 1, Math.max(0, Math.floor(((x - lo) / span) * columns))) : 0;
  let start = 0;
  while (start < finite.length) {
    const bucket = bucketOf(xs[finite[start]]);
    let end = start;
    let min = start;
    let max = start;
    while (end + 1 < finite.length && bucketOf(xs[finite[end + 1]]) === bucket) {
      end++;
      if (ys[finite[end]] < ys[finite[min]]) min = end;
      if (ys[finite[end]] > ys[finite[max]]) max = end;
    }
    const kept = Array.from(new Set([start, min, max, end])).sort((a, b) => a - b);
    for (const k of kept) {
      out.x.push(xs[finite[k]]);
      out.values.push(ys[finite[k]]);
    }
    start = end + 1;
  }
  return out;
}
