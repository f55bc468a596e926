import { describe, expect, it } from "vitest";
import { isNews, restoreNonFinite, type LiveEvent, type RunSummary } from "../src/api";
import { lineOf, nearestIndex, chartData } from "../src/chart";
import { runColor } from "../src/colors";
import { availableColumns, compareValues, defaultColumns, describeColumn, metricColumn, nameText, paramColumn,
  parseName, serverSort, sortRuns } from "../src/columns";
import { formatDuration, formatNumber } from "../src/format";
import { diffKeys, groupParams, nestParams } from "../src/params";
import { SseParser } from "../src/sse";
import { buildTree } from "../src/tree";

function run(name: string, params: Record<string, unknown>, loss?: number): RunSummary {
  return {
    prefix: `alice/vision/${name}`, owner: "alice", project: "vision", name, folders: [], description: null, tags: [],
    metadata: {}, status: "COMPLETED", createdAt: 1, startedAt: 1, endedAt: 2, heartbeatAt: null, resumes: [], params,
    metrics: loss === undefined ? {} : { train: { loss: { count: 1, last: loss, min: loss, max: loss } } },
  };
}

describe("column names", () => {
  it("are names of the filter language", () => {
    expect(paramColumn("lr")).toBe("params.lr");
    expect(paramColumn("model.depth")).toBe("params.model.depth");
    expect(metricColumn("train", "loss", "last")).toBe("metrics.train.loss.last");
    expect(metricColumn("val/top-1", "acc", "max")).toBe('metrics["val/top-1"].acc.max');
    expect(nameText(["params", 'a"b'])).toBe('params["a\\"b"]');
  });

  it("parse back", () => {
    expect(parseName('metrics["val/top-1"].acc.max')).toEqual(["metrics", "val/top-1", "acc", "max"]);
    expect(parseName("params.model.depth")).toEqual(["params", "model", "depth"]);
    expect(parseName("a..b")).toBeNull();
    expect(describeColumn('metrics["val/top-1"].acc.max')).toMatchObject({ kind: "metric", stream: "val/top-1",
      field: "acc", stat: "max" });
    expect(describeColumn("params.model.depth")).toMatchObject({ kind: "param", key: "model.depth" });
    expect(describeColumn("bogus")).toBeNull();
    expect(serverSort("created")).toBe("created");
    expect(serverSort("metrics.train.loss.last")).toBe("metrics.train.loss.last");
    expect(serverSort("duration")).toBeNull();
  });

  it("sort any column with missing values last", () => {
    const runs = [run("a", { lr: 0.1 }, 3), run("b", {}, 1), run("c", { lr: 0.01 }, NaN), run("d", { lr: 0.5 }, 2)];
    expect(sortRuns(runs, "params.lr", false).map((r) => r.name)).toEqual(["c", "a", "d", "b"]);
    expect(sortRuns(runs, "params.lr", true).map((r) => r.name)).toEqual(["d", "a", "c", "b"]);
    expect(sortRuns(runs, "metrics.train.loss.last", false).map((r) => r.name)).toEqual(["b", "d", "a", "c"]);
    expect(compareValues("b", "a")).toBe(1);
    expect(compareValues(1, "a")).toBe(-1);
  });

  it("offer every param and metric statistic, and a default set", () => {
    const cols = availableColumns([run("a", { lr: 0.1, "model.depth": 50 }, 1)]);
    expect(cols).toContain("params.model.depth");
    expect(cols).toContain("metrics.train.loss.min");
    expect(defaultColumns(cols)).toEqual(["status", "name", "tags", "created", "duration", "params.lr",
      "params.model.depth", "metrics.train.loss.last"]);
  });
});

describe("params", () => {
  it("group by the first dotted segment and search keys and values", () => {
    const groups = groupParams({ lr: 1, "model.depth": 50, "model.name": "resnet", "data.batch": 128 });
    expect(groups.map(([g]) => g)).toEqual(["", "data", "model"]);
    expect(groupParams({ "model.name": "resnet", lr: 1 }, "RESN")).toEqual([["model", [["model.name", "resnet"]]]]);
  });

  it("nest back into objects for copying", () => {
    expect(nestParams({ lr: 1, "model.depth": 50, "model.name": "r" })).toEqual({ lr: 1, model: { depth: 50, name: "r" } });
    expect(nestParams({ a: 1, "a.b": 2 })).toEqual({ a: 1, "a.b": 2 });
  });

  it("diff shows only the keys that differ unless all are asked for", () => {
    const ps = [{ lr: 0.1, depth: 50, x: NaN }, { lr: 0.2, depth: 50, x: NaN }, { lr: 0.1, depth: 50, x: NaN, extra: 1 }];
    expect(diffKeys(ps, false)).toEqual(["extra", "lr"]);
    expect(diffKeys(ps, true)).toEqual(["depth", "extra", "lr", "x"]);
  });
});

describe("server answers", () => {
  it("non-finite values are put back where the map points", () => {
    const body: Record<string, unknown> = { data: [{ index: 7, data: { loss: null } }, { "a/b": null }],
      nonFinite: { "/0/data/loss": "NaN", "/1/a~1b": "-Infinity" } };
    restoreNonFinite(body, "data");
    const data = body.data as [{ data: { loss: number } }, Record<string, number>];
    expect(data[0].data.loss).toBeNaN();
    expect(data[1]["a/b"]).toBe(-Infinity);
    expect(body.nonFinite).toBeUndefined();
  });

  it("SSE messages parse across any split, with ids, comments and CRLF", () => {
    const text = ": hello\r\nretry: 1000\r\nid: c-1\r\nevent: points\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n: hb\n\nid: c-2\nevent: logs\ndata: {}\n\n";
    for (const size of [1, 2, 3, 7, text.length]) {
      const parser = new SseParser();
      const got = [];
      for (let i = 0; i < text.length; i += size) got.push(...parser.feed(text.slice(i, i + size)));
      expect(got).toEqual([{ id: "c-1", event: "points", data: '{"a":\n1}' }, { id: "c-2", event: "logs", data: "{}" }]);
      expect(parser.lastEventId).toBe("c-2");
      expect(parser.retry).toBe(1000);
    }
  });

  it("live events repeating a known total are not news; the first state only records", () => {
    const known = new Map<string, unknown>();
    const points = (count: number): LiveEvent => ({ type: "points", prefix: "a/b/c", name: "train", count, last: {} });
    expect(isNews(known, points(10), false)).toBe(false);
    expect(isNews(known, points(12), true)).toBe(true);
    expect(isNews(known, points(12), true)).toBe(false);
    expect(isNews(known, { type: "status", prefix: "a/b/c", status: "COMPLETED" }, true)).toBe(true);
    expect(isNews(known, { type: "experiment", prefix: "a/b/d" }, true)).toBe(true);
  });
});

describe("charts", () => {
  it("find the point nearest the cursor", () => {
    expect(nearestIndex([0, 10, 20], 14)).toBe(1);
    expect(nearestIndex([0, 10, 20], 16)).toBe(2);
    expect(nearestIndex([0, 10, 20], -5)).toBe(0);
    expect(nearestIndex([], 1)).toBe(-1);
  });

  it("shift relative time and hand uPlot raw and smoothed values, dropping ≤ 0 on a log scale", () => {
    const line = lineOf({ prefix: "p", name: "train", y: "loss", x: [100, 101], values: [0, 2], raw: true, total: 3,
      nonFinite: { x: [102], values: ["NaN"] } }, "run", "red", 100);
    expect(line.x).toEqual([0, 1]);
    expect(line.nonFinite.x).toEqual([2]);
    const data = chartData([line], 0.5, true);
    expect(data).toHaveLength(3);
    expect(data[1][1]).toEqual([null, 2]);
    expect(chartData([line], 0, false)).toEqual([null, [[0, 1], [0, 2]]]);
  });

  it("give each run the same colour every time", () => {
    expect(runColor("alice/a/run-1")).toBe(runColor("alice/a/run-1"));
    const colours = new Set(Array.from({ length: 100 }, (_, i) => runColor(`alice/a/run-${i}`)));
    expect(colours.size).toBeGreaterThan(30);
  });
});

describe("formatting and the tree", () => {
  it("formats numbers and durations", () => {
    expect(formatNumber(NaN)).toBe("NaN");
    expect(formatNumber(-Infinity)).toBe("-Infinity");
    expect(formatNumber(0.000012345)).toBe("1.2345e-5");
    expect(formatNumber(42)).toBe("42");
    expect(formatDuration(3725)).toBe("1h 02m");
    expect(formatDuration(null)).toBe("");
  });

  it("builds owners, projects and folders with counts", () => {
    const tree = buildTree([run("x", {}), { ...run("y", {}), folders: ["f"] }, { ...run("z", {}), owner: "bob" }]);
    expect(tree.map((n) => [n.name, n.count])).toEqual([["alice", 2], ["bob", 1]]);
    expect(tree[0].children[0].children.map((n) => n.path)).toEqual([["alice", "vision", "f"]]);
  });
});

describe("the fallback", () => {
  it("recognises the filters the dashboard writes itself, and only those", async () => {
    const { namedPrefixes } = await import("../src/fallback");
    expect(namedPrefixes('prefix == "a/b/c"')).toEqual(["a/b/c"]);
    expect(namedPrefixes('prefix in ["a/b/c", "a/b/d"]')).toEqual(["a/b/c", "a/b/d"]);
    expect(namedPrefixes('prefix == "a/b/c" or params.lr < 1')).toBeNull();
    expect(namedPrefixes("params.lr < 1")).toBeNull();
    expect(namedPrefixes(undefined)).toBeNull();
  });
});
