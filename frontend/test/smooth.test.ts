import { describe, expect, it } from "vitest";
import { debiasedEma } from "../src/smooth";

describe("debiasedEma", () => {
  it("starts at the first value instead of being pulled towards zero", () => {
    const out = debiasedEma([10, 10, 20], 0.9);
    expect(out[0]).toBeCloseTo(10);
  });

  it("matches TensorBoard's formula: ema / (1 - w^n)", () => {
    const w = 0.6;
    const ys = [1, 3, 2, 5];
    let ema = 0;
    const expected = ys.map((y, i) => {
      ema = ema * w + (1 - w) * y;
      return ema / (1 - w ** (i + 1));
    });
    debiasedEma(ys, w).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 12));
  });

  it("passes non-finite values through and leaves them out of the average", () => {
    const out = debiasedEma([1, NaN, 3, Infinity, null, 5], 0.5);
    expect(out[1]).toBeNaN();
    expect(out[3]).toBe(Infinity);
    expect(out[4]).toBeNull();
    const again = debiasedEma([1, 3, 5], 0.5);
    expect(out[2]).toBeCloseTo(again[1] as number);
    expect(out[5]).toBeCloseTo(again[2] as number);
  });

  it("returns the values unchanged with weight 0 or a constant series", () => {
    expect(debiasedEma([1, 2, 3], 0)).toEqual([1, 2, 3]);
    expect(debiasedEma([0.1, 0.1, 0.1, 0.1], 0.99)).toEqual([0.1, 0.1, 0.1, 0.1]);
  });

  it("smooths a spike without hiding that it happened", () => {
    const ys = Array.from({ length: 100 }, (_, i) => (i === 50 ? 100 : 1));
    const out = debiasedEma(ys, 0.9) as number[];
    expect(out[50]).toBeGreaterThan(5);
    expect(out[50]).toBeLessThan(100);
  });
});
