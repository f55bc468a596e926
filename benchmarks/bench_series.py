"""Series benchmark: chart series that keep every extreme, from the series index.

Builds metric streams with the real LocalStore (a random walk ``loss`` with one spike
at an off-grid index, ``step`` and ``_ts``), builds the series index once, then times
queries: the full range at width 1000 (x = index and x = _ts), a zoomed 1 % of the
range, on the big stream and on a 1,000,000-point one. Every figure is printed next to
a floor measured in the same run: reading 1,000 raw points with ``read_metrics`` (a
page of a table), so ratios stay comparable on a loaded machine. Each query is also
checked: the spike must be in the full-range answer. Missed targets print MISS but do
not fail the run; only a crash or a wrong answer exits non-zero.

    .venv/bin/python benchmarks/bench_series.py            # 10,000,000 and 1,000,000 points
    .venv/bin/python benchmarks/bench_series.py --quick    # 1,000,000 and 100,000 points, under a minute

Timings are medians over ``--repeats`` runs on an index object already open (a
server keeps it), plus the first query on a freshly opened one (it loads the index
files). The cost on logging is reported too: the index is extended on read, so
logging does not pay it; the figure says what extending on every append would cost.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ml_dash.stores.local import LocalStore
from ml_dash.stores.series_index import INDEX_DIR, SeriesIndex

PREFIX = "bench/series/run"
perf = time.perf_counter


def make_stream(store: LocalStore, name: str, n: int, spike_at: int) -> float:
    """Append ``n`` points with LocalStore.append_metrics; returns seconds per point."""
    rng = np.random.default_rng(7)
    walk = np.cumsum(rng.normal(0, 1, n))
    walk[spike_at] += 50 * (np.abs(walk).max() + 1)
    ts0 = 1_795_730_519.6415806
    batch = 100_000
    spent = 0.0
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        loss = walk[lo:hi].tolist()
        points = [{"loss": v, "step": i, "_ts": ts0 + i * 0.001} for i, v in zip(range(lo, hi), loss, strict=True)]
        t = perf()
        store.append_metrics(PREFIX, name, points)
        spent += perf() - t
    return spent / n


def median_time(call: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``repeats`` calls (CPU time: what this process
    spent, which a machine shared with other work inflates less than wall time)."""
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = perf(), time.process_time()
        call()
        walls.append(perf() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def folder_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, name: str, value: str, ratio: str = "", target: str = "", verdict: str = "") -> None:
        self.rows.append((name, value, ratio, target, verdict))
        print(f"  {name}: {value} {ratio} {target} {verdict}".rstrip(), flush=True)

    def print(self) -> None:
        headers = ("figure", "measured", "vs floor", "target", "result")
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) for i, h in enumerate(headers)]
        print()
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        print("-" * (sum(widths) + 8))
        for row in self.rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def bench_stream(
    store: LocalStore, table: Table, name: str, n: int, repeats: int, floor: float, targets: dict[str, float]
) -> None:
    spike = n // 2 + 12_345 % max(1, n // 7) + 1  # off any power-of-two grid
    folder = os.path.join(store.experiment_dir(PREFIX), "metrics", name)
    if store.metric_stats(PREFIX, name)["totalDataPoints"] == n:  # --keep from an earlier run
        write_per_point = float("nan")
        print(f"{name}: reusing the {n:,} points written by an earlier run", flush=True)
    else:
        print(f"{name}: writing {n:,} points …", flush=True)
        write_per_point = make_stream(store, name, n, spike)
        table.add(f"{name}: write (LocalStore.append_metrics)", f"{write_per_point * 1e6:.2f} µs/pt")
    shutil.rmtree(os.path.join(folder, INDEX_DIR), ignore_errors=True)
    data_size = os.path.getsize(os.path.join(folder, "data.jsonl"))

    index = SeriesIndex(folder)
    t = perf()
    index.refresh()
    build = perf() - t
    index_size = folder_size(os.path.join(folder, INDEX_DIR))
    table.add(f"{name}: index build", f"{build:.1f} s ({build / n * 1e6:.2f} µs/pt)")
    share = index_size / data_size
    table.add(
        f"{name}: index size",
        f"{index_size / 1e6:.1f} MB of {data_size / 1e6:.0f} MB data ({share:.1%})",
        target="≤ 5 %",
        verdict="PASS" if share <= 0.05 else "MISS",
    )
    if write_per_point == write_per_point:
        table.add(
            f"{name}: logging cost if extended on each append",
            f"+{build / n / write_per_point:.0%} per point (extended on read instead: +0 %)",
        )

    def check(series: Any, what: str) -> None:
        if spike not in series.index.tolist():
            raise SystemExit(f"WRONG: {what}: the spike at index {spike} is missing from the answer")

    queries: list[tuple[str, dict[str, Any], bool]] = [
        ("full range, x=index, width 1000", dict(y="loss", x="index", width=1000), True),
        ("full range, x=_ts, width 1000", dict(y="loss", x="_ts", width=1000), True),
        ("zoom 1 %, x=index, width 1000", dict(y="loss", x="index", x0=n * 0.4, x1=n * 0.41, width=1000), False),
        ("zoom 1 %, x=step, width 1000", dict(y="loss", x="step", x0=n * 0.4, x1=n * 0.41, width=1000), False),
    ]
    fresh = SeriesIndex(folder)
    t = perf()
    first = fresh.series("loss", width=1000)
    table.add(f"{name}: first query on a fresh object (loads the index)", ms(perf() - t))
    check(first, "first query")
    for label, kw, full in queries:
        answer = index.series(**kw)
        if full:
            check(answer, label)
        seconds, cpu = median_time(functools.partial(index.series, **kw), repeats)
        target = targets.get("full" if full else "zoom")
        verdict = "" if target is None else ("PASS" if seconds <= target else "MISS")
        if target is not None and cpu <= target < seconds:
            verdict = "MISS (CPU time passes)"
        table.add(
            f"{name}: {label} ({len(answer.x)} points)",
            f"{ms(seconds)} (CPU {ms(cpu)})",
            f"{seconds / floor:.1f}x",
            "" if target is None else f"≤ {target * 1e3:.0f} ms",
            verdict,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000,000 and 100,000 points")
    parser.add_argument("--big", type=int, default=None, help="points in the big stream (default 10,000,000)")
    parser.add_argument("--small", type=int, default=None, help="points in the small stream (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--keep", help="write the streams into this folder and keep them (reused when run again)")
    args = parser.parse_args()
    big = args.big or (1_000_000 if args.quick else 10_000_000)
    small = args.small or (100_000 if args.quick else 1_000_000)
    root = args.keep or tempfile.mkdtemp(prefix="bench-series-")
    table = Table()
    try:
        store = LocalStore(root)
        if store.metric_stats(PREFIX, "floor")["totalDataPoints"] == 0:
            store.append_metrics(PREFIX, "floor", [{"loss": float(i), "step": i} for i in range(100_000)])
        floor, floor_cpu = median_time(lambda: store.read_metrics(PREFIX, "floor", 50_000, 1000), args.repeats)
        table.add("floor: read_metrics, 1000 raw points", f"{ms(floor)} (CPU {ms(floor_cpu)})", "1.0x")
        bench_stream(store, table, f"{small:,} points", small, args.repeats, floor, {"full": 0.030})
        bench_stream(store, table, f"{big:,} points", big, args.repeats, floor, {"full": 0.200, "zoom": 0.100})
        store.close()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    table.print()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{sys.platform}, {os.cpu_count()} CPUs, load average {load:.1f} at the end, numpy {np.__version__}")


if __name__ == "__main__":
    main()
