import { describe, expect, it } from "vitest";
import { m4 } from "../src/m4";

function walk(n: number, seed = 1): number[] {
  let s = seed;
  let v = 0;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    v += (s / 2 ** 31 - 0.5);
    return v;
  });
}

describe("m4", () => {
  it("answers a small range raw", () => {
    const out = m4([0, 1, 2], [5, 6, 7], 10);
    expect(out).toMatchObject({ x: [0, 1, 2], values: [5, 6, 7], raw: true, total: 3 });
  });

  it("keeps every bucket's first, last, min and max, so a spike survives", () => {
    const n = 100_000;
    const xs = Array.from({ length: n }, (_, i) => i);
    const ys = walk(n);
    ys[73_421] = 1e4;
    ys[12_345] = -1e4;
    const out = m4(xs, ys, 500);
    expect(out.raw).toBe(false);
    expect(out.x.length).toBeLessThanOrEqual(4 * 500);
    expect(Math.max(...out.values)).toBe(1e4);
    expect(Math.min(...out.values)).toBe(-1e4);
    expect(out.x).toContain(73_421);
    expect(out.x[0]).toBe(0);
    expect(out.x[out.x.length - 1]).toBe(n - 1);
    for (let i = 1; i < out.x.length; i++) expect(out.x[i]).toBeGreaterThan(out.x[i - 1]);
  });

  it("reports non-finite values apart and never drops them", () => {
    const xs = [0, 1, 2, 3, 4];
    const ys = [1, NaN, 2, -Infinity, Infinity];
    const out = m4(xs, ys, 100);
    expect(out.values).toEqual([1, 2]);
    expect(out.nonFinite).toEqual({ x: [1, 3, 4], values: ["NaN", "-Infinity", "Infinity"] });
    expect(out.total).toBe(5);
  });

  it("restricts to [x0, x1] and orders by x", () => {
    const out = m4([5, 1, 3, 9], [50, 10, 30, 90], 10, 2, 6);
    expect(out.x).toEqual([3, 5]);
    expect(out.values).toEqual([30, 50]);
  });
});
