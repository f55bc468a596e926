"""Data-out benchmark (issue 14): a 1M-point metric stream to a pandas DataFrame and to Parquet.

Writes one experiment with N points (``loss``, ``acc`` floats, ``step`` int, ``_ts``)
with the SDK into a temporary folder, then measures, best of R runs each, with the
garbage collector off during every timed section (the same for every figure):

- ``to_pandas``: ``ml_dash.open(...).metrics("train").to_pandas()``, against the floor
  measured in the same run: the raw ``data.jsonl`` read, each line decoded with orjson,
  the frame built with pandas, both ways (rows: ``DataFrame([{"index", **data}])``;
  columns: one list per field); the faster of the two is the floor.
- Parquet: the write step of ``ml-dash export --format parquet`` (our columns to an
  Arrow table to a file) against ``pyarrow.parquet.write_table`` of that same table,
  and the whole export (read + build + write) against the orjson floor plus
  ``pyarrow.Table.from_pandas`` plus the same write.

    .venv/bin/python benchmarks/bench_export.py            # N = 1,000,000, R = 3
    .venv/bin/python benchmarks/bench_export.py --quick    # N = 200,000, R = 2

Targets: to_pandas ≤ 1.5× the floor; the Parquet write ≤ 2× pyarrow's own write.
Missed targets print MISS; only a failure (frames that differ) exits non-zero.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import ml_dash
from ml_dash import export, frames

PREFIX = "bench/export/run"
T0 = 1_700_000_000.0


def best(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``repeats`` timed calls (gc off while timing) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        result = None
        gc.collect()
        gc.disable()
        try:
            t = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t)
        finally:
            gc.enable()
    return min(times), result


def write_points(root: str, n: int) -> str:
    with ml_dash.Experiment(prefix=PREFIX, dash_root=root, echo=False).run as exp:
        m = exp.metrics("train")
        for i in range(n):
            m.log(loss=1.0 / (i + 1), acc=i / n, step=i, _ts=T0 + i * 0.01)
    return str(Path(root, *PREFIX.split("/"), "metrics", "train", "data.jsonl"))


def floor_rows(path: str) -> Any:
    with open(path, "rb") as fh:
        lines = fh.read().splitlines()
    return pd.DataFrame([{"index": r["index"], **r["data"]} for r in map(orjson.loads, lines)])


def floor_columns(path: str) -> Any:
    with open(path, "rb") as fh:
        lines = fh.read().splitlines()
    rows = list(map(orjson.loads, lines))
    data = [r["data"] for r in rows]
    cols: dict[str, Any] = {"index": [r["index"] for r in rows], "time": [d["_ts"] for d in data]}
    for key in ("loss", "acc", "step"):
        cols[key] = [d[key] for d in data]
    return pd.DataFrame(cols)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 points, 2 repeats")
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    n = args.points or (200_000 if args.quick else 1_000_000)
    repeats = args.repeats or (2 if args.quick else 3)
    root = tempfile.mkdtemp(prefix="bench-export-")
    failed = False
    try:
        t = time.perf_counter()
        path = write_points(root, n)
        print(f"{n:,} points written in {time.perf_counter() - t:.1f} s ({os.path.getsize(path) / 1e6:.0f} MB)")
        with ml_dash.open(PREFIX, root=root) as run:
            stream = run.metrics("train")
            ours, frame = best(repeats, stream.to_pandas)
            rows, _ = best(repeats, lambda: floor_rows(path))
            cols, expected = best(repeats, lambda: floor_columns(path))
            floor = min(rows, cols)
            same = frame[["index", "time", "loss", "acc", "step"]].equals(expected)
            failed |= not same

            columns = frames.metric_columns(run.store, PREFIX, "train")
            table = frames.to_arrow(columns)
            out = os.path.join(root, "out.parquet")
            pa_write, _ = best(repeats, lambda: pq.write_table(table, out))
            our_write, _ = best(repeats, lambda: export.write(columns, "parquet", out))
            back = pq.read_table(out)
            failed |= not back.equals(table)

            def whole() -> None:
                export.write(export.gather(run.store, [PREFIX], metric="train"), "parquet", out)

            def whole_floor() -> None:
                pq.write_table(pa.Table.from_pandas(floor_columns(path), preserve_index=False), out)

            our_whole, _ = best(repeats, whole)
            floor_whole, _ = best(repeats, whole_floor)

        def line(what: str, measured: float, base: float, target: float | None) -> None:
            ratio = measured / base
            verdict = "" if target is None else ("  PASS" if ratio <= target else "  MISS")
            goal = "" if target is None else f" (target ≤ {target}×)"
            print(f"{what:<44} {measured:7.3f} s  floor {base:7.3f} s  {ratio:5.2f}×{goal}{verdict}")

        print(f"floors: orjson rows -> DataFrame {rows:.3f} s, orjson columns -> DataFrame {cols:.3f} s")
        line("to_pandas()", ours, floor, 1.5)
        line("Parquet write (columns -> Arrow -> file)", our_write, pa_write, 2.0)
        line("export --format parquet, whole (read + write)", our_whole, floor_whole, None)
        print(f"frames equal to the floor's: {same}; Parquet read back equal: {back.equals(table)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
