// Debiased exponential moving average, as TensorBoard's scalar dashboard draws it.
//
// smoothed[i] = ema[i] / (1 - w^n), ema[i] = w * ema[i-1] + (1 - w) * y[i], where n
// counts the finite values seen so far: without the division the first points would
// be pulled towards 0. Non-finite values (NaN, null, ±inf) are passed through as they
// are and do not enter the average. A constant series is returned unchanged (the
// float error of the average would otherwise draw a wiggle).

export function debiasedEma(values: ArrayLike<number | null>, weight: number): (number | null)[] {
  const out: (number | null)[] = new Array(values.length);
  const w = Math.min(Math.max(weight, 0), 0.999);
  let first: number | null = null;
  let constant = true;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || !Number.isFinite(v)) continue;
    if (first === null) first = v;
    else if (v !== first) {
      constant = false;
      break;
    }
  }
  if (w === 0 || constant) {
    for (let i = 0; i < values.length; i++) out[i] = values[i];
    return out;
  }
  let ema = 0;
  let wn = 1; // w^n, kept as a running product (Math.pow per point costs more than the rest)
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || !Number.isFinite(v)) {
      out[i] = v;
      continue;
    }
    ema = ema * w + (1 - w) * v;
    wn *= w;
    out[i] = ema / (1 - wn);
  }
  return out;
}
