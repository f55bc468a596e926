import { describe, expect, it } from "vitest";
import {
  comparePath, DEFAULT_CHART, parseRoute, readChartState, readCompareState, readTableState, runPath, runsPath,
  serverAxis, writeChartState, writeTableState,
} from "../src/urlstate";

describe("routes", () => {
  it("names every view by its path", () => {
    expect(parseRoute("/")).toEqual({ kind: "runs", scope: [] });
    expect(parseRoute("/runs/alice/vision/resnet")).toEqual({ kind: "runs", scope: ["alice", "vision", "resnet"] });
    expect(parseRoute("/run/alice/vision/resnet/run-1")).toEqual({ kind: "run", prefix: "alice/vision/resnet/run-1" });
    expect(parseRoute("/compare")).toEqual({ kind: "compare" });
    expect(parseRoute("/run/alice").kind).toBe("notfound");
    expect(parseRoute("/nope").kind).toBe("notfound");
    expect(parseRoute("/runs/%E0%A4%A").kind).toBe("notfound");
  });

  it("round-trips names that need escaping", () => {
    const prefix = "al ice/vi#sion/r?n/run 1%";
    const path = runPath(prefix);
    expect(path).not.toContain("#");
    expect(parseRoute(new URL(path, "http://x").pathname)).toEqual({ kind: "run", prefix });
    expect(parseRoute(new URL(runsPath(["a b", "c"]), "http://x").pathname)).toEqual({ kind: "runs", scope: ["a b", "c"] });
  });
});

describe("table state", () => {
  it("round-trips through the query and keeps other parameters", () => {
    const q = new URLSearchParams("tab=x");
    const state = { where: 'params.lr < 0.01 and tags contains "a&b"', sort: "metrics.train.loss.last", desc: true,
      cols: ["status", "params.lr", 'metrics["val/top-1"].acc.max'] };
    const written = writeTableState(q, state);
    expect(written.get("tab")).toBe("x");
    expect(readTableState(new URLSearchParams(written.toString()))).toEqual(state);
  });

  it("leaves defaults out of the URL", () => {
    const written = writeTableState(new URLSearchParams(), { where: " ", sort: null, desc: true, cols: null });
    expect(written.toString()).toBe("");
  });
});

describe("chart state", () => {
  it("defaults and clamps", () => {
    expect(readChartState(new URLSearchParams())).toEqual(DEFAULT_CHART);
    expect(readChartState(new URLSearchParams("smooth=5&x=step&log=1"))).toEqual({ x: "step", log: true, smooth: 0.99 });
    expect(readChartState(new URLSearchParams("smooth=abc")).smooth).toBe(DEFAULT_CHART.smooth);
    expect(readChartState(new URLSearchParams("smooth=0")).smooth).toBe(0);
  });

  it("round-trips", () => {
    const s = { x: "rel", log: true, smooth: 0 };
    expect(readChartState(writeChartState(new URLSearchParams("a=1"), s))).toEqual(s);
    expect(writeChartState(new URLSearchParams(), DEFAULT_CHART).toString()).toBe("");
  });

  it("asks the server for wall time when the axis is relative time", () => {
    expect(serverAxis("rel")).toBe("_ts");
    expect(serverAxis("step")).toBe("step");
  });
});

describe("compare state", () => {
  it("keeps at most 100 distinct runs in order", () => {
    const runs = Array.from({ length: 120 }, (_, i) => `a/p/run-${i}`);
    const path = comparePath({ runs: [...runs, runs[0]], stream: "train", field: "loss", allParams: true });
    const state = readCompareState(new URL(path, "http://x").searchParams);
    expect(state.runs).toHaveLength(100);
    expect(state.runs[0]).toBe("a/p/run-0");
    expect(state).toMatchObject({ stream: "train", field: "loss", allParams: true });
  });
});
