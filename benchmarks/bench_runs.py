"""Runs-table benchmark (issue 10): a filtered, sorted page of 1,000 run summaries.

Builds N experiments (1,000 by default) under one owner/project, each with 50 params,
3 metric streams holding 10 numeric fields in all (plus ``_ts``) and a few points per
stream, on the folder store (LocalStore) and on MongoStore (nx-27017 and moto on
loopback, started as the tests start them, unless ``ML_DASH_TEST_MONGO_URI`` /
``ML_DASH_TEST_S3_ENDPOINT`` name real services). Then it times what the server does
for ``GET /api/v1/runs?owner=…&project=…&where=…&sort=…&descending=true&limit=50``
(the route's handler body, ``routes_reads._runs``: ``Store.run_summaries``, the filter,
the sort, the page and its JSON form):

- cold: on a fresh store object each time (what a server answers right after a
  restart; files the store keeps on disk are there, nothing in memory);
- warm: the same store object again (a running server);
- first ever (folder store): right after the data was written, before any read built
  the derived files beside it (reported once, not a target).

Every answer is checked against the page computed from the generated data (a wrong
answer exits non-zero). Floors measured in the same run, on the same data: listing the
experiment folders (``os.walk`` until ``experiment.json``, nothing read), and decoding
the JSON of all N summaries (msgspec, one buffer); on MongoDB, fetching the N
``experiments`` documents. Ratios to them are what compare across machines.

    .venv/bin/python benchmarks/bench_runs.py            # 1,000 experiments, both stores
    .venv/bin/python benchmarks/bench_runs.py --quick    # 200 experiments, fewer repeats
    .venv/bin/python benchmarks/bench_runs.py --only local --profile   # where the time goes

Target (issue 10): ≤ 300 ms server time for 1,000 experiments × 50 params × 10 metric
fields, on the folder store right after a restart and on MongoDB. Missed targets print
MISS; only a failure or a wrong answer exits non-zero.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from ml_dash.records import ExperimentInfo  # noqa: E402
from ml_dash.server.routes_reads import _runs  # noqa: E402 - the route's handler body
from ml_dash.stores.base import Store  # noqa: E402
from ml_dash.stores.local import LocalStore  # noqa: E402

OWNER, PROJECT = "bench", "runs"
WHERE = 'params.optimizer in ["adam", "adamw"] and metrics.train.loss.min < 1.5 and status != "FAILED"'
SORT = "metrics.eval.acc.max"
PAGE = 50
TARGET = 0.300
STREAMS = {"train": ("loss", "acc", "lr", "grad_norm"), "eval": ("loss", "acc", "top5", "f1"),
           "sys": ("gpu_util", "mem_gb")}
OPTIMIZERS = ("adam", "adamw", "sgd", "lion")
STATUSES = ("COMPLETED", "COMPLETED", "COMPLETED", "FAILED", "RUNNING")
perf = time.perf_counter


# -- the data ---------------------------------------------------------------------------------


class Run:
    """What one generated experiment holds, to check answers against."""

    def __init__(self, i: int, points: int) -> None:
        rng = random.Random(i)
        self.prefix = f"{OWNER}/{PROJECT}/run-{i:04d}"
        self.name = f"run-{i:04d}"
        self.status = STATUSES[i % len(STATUSES)]
        self.tags = ("baseline",) if i % 7 == 0 else ("sweep", f"seed-{i % 5}")
        self.params: dict[str, Any] = {
            "lr": round(10 ** rng.uniform(-5, -1), 8), "batch_size": rng.choice((32, 64, 128, 256)),
            "optimizer": OPTIMIZERS[i % 4], "model.depth": rng.choice((18, 34, 50, 101)),
            "model.width": rng.randint(64, 1024), "augment": i % 2 == 0,
        }
        for k in range(len(self.params), 50):
            self.params[f"group{k % 5}.p{k:02d}"] = rng.random() if k % 3 else f"value-{rng.randint(0, 9)}"
        self.streams: dict[str, list[dict[str, Any]]] = {}
        t0 = 1_760_000_000.0 + i * 3600
        for name, fields in STREAMS.items():
            scale = rng.uniform(0.5, 3.0)
            self.streams[name] = [
                {**{f: round(scale * math.exp(-s / 10) + rng.random() * 0.1 if "loss" in f else rng.random(), 6)
                    for f in fields}, "step": s * 100, "_ts": t0 + s}
                for s in range(points)
            ]

    def stat(self, stream: str, field: str, which: str) -> float:
        values = [p[field] for p in self.streams[stream]]
        return float(min(values) if which == "min" else max(values))


def expected_page(runs: list[Run]) -> list[str]:
    """The prefixes the route must answer, computed from the generated data."""
    chosen = [r for r in runs if r.params["optimizer"] in ("adam", "adamw") and r.stat("train", "loss", "min") < 1.5
              and r.status != "FAILED"]
    chosen.sort(key=lambda r: r.prefix)
    chosen.sort(key=lambda r: r.stat("eval", "acc", "max"), reverse=True)
    return [r.prefix for r in chosen[:PAGE]]


def fill(store: Store, runs: list[Run]) -> float:
    """Write every run through the Store protocol; seconds spent."""
    began = perf()
    for run in runs:
        info = ExperimentInfo(prefix=run.prefix, owner=OWNER, project=PROJECT, name=run.name, tags=run.tags,
                              description="a benchmark run", created_at=1_760_000_000.0 + int(run.name[4:]))
        store.open_experiment(info)
        store.set_params(run.prefix, run.params)
        for name, points in run.streams.items():
            store.append_metrics(run.prefix, name, points)
        store.update_experiment(run.prefix, status=run.status)
    return perf() - began


# -- timing -----------------------------------------------------------------------------------


def query(store: Store) -> dict[str, Any]:
    return _runs(store, OWNER, PROJECT, None, WHERE, SORT, True, 0, PAGE)


def check(answer: dict[str, Any], want: list[str], total: int, what: str) -> None:
    got = [row["prefix"] for row in answer["runs"]]
    if got != want or answer["total"] != total:
        raise SystemExit(f"WRONG: {what}: got {got[:5]}… ({answer['total']} in all), want {want[:5]}… ({total})")
    if len(answer["runs"][0]["params"]) != 50 or len(answer["runs"][0]["metrics"]) != 3:
        raise SystemExit(f"WRONG: {what}: a row lacks params or metrics")


def median_time(call: Callable[[], Any], repeats: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = perf(), time.process_time()
        call()
        walls.append(perf() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, name: str, value: str, ratio: str = "", target: str = "", verdict: str = "") -> None:
        self.rows.append((name, value, ratio, target, verdict))
        print(f"  {name}: {value} {ratio} {target} {verdict}".rstrip(), flush=True)

    def timed(self, name: str, seconds: float, cpu: float, floor: float, target: float | None = None) -> None:
        verdict = "" if target is None else ("PASS" if seconds <= target else "MISS")
        if target is not None and cpu <= target < seconds:
            verdict = "MISS (CPU time passes)"
        self.add(name, f"{ms(seconds)} (CPU {ms(cpu)})", f"{seconds / floor:.1f}x",
                 "" if target is None else f"≤ {target * 1e3:.0f} ms", verdict)

    def print(self) -> None:
        headers = ("figure", "measured", "vs floor", "target", "result")
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) for i, h in enumerate(headers)]
        print()
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        print("-" * (sum(widths) + 8))
        for row in self.rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def profile(call: Callable[[], Any], what: str) -> None:
    prof = cProfile.Profile()
    prof.enable()
    call()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
    print(f"\n-- profile: {what} --\n{out.getvalue()}")


def decode_floor(answer_all: dict[str, Any], repeats: int) -> tuple[float, int]:
    """Seconds to decode the JSON of every summary (one buffer), and its size."""
    blob = msgspec.json.encode(answer_all["runs"])
    return median_time(lambda: msgspec.json.decode(blob), repeats)[0], len(blob)


# -- the two stores ---------------------------------------------------------------------------


def bench_local(args: argparse.Namespace, runs: list[Run], want: list[str], total: int, table: Table) -> None:
    root = args.keep or tempfile.mkdtemp(prefix="bench-runs-")
    try:
        store = LocalStore(root, scan_batch_ids=False)
        if len(store.list_experiments(OWNER, PROJECT)) != len(runs):
            print(f"folder store: writing {len(runs):,} experiments …", flush=True)
            table.add("folder: write the experiments", f"{fill(store, runs):.1f} s")
            store.close()
            t = perf()
            first = query(LocalStore(root))
            table.add("folder: first query ever (builds what is kept beside the data)", ms(perf() - t))
            check(first, want, total, "first query")
        base = os.path.join(root, OWNER, PROJECT)

        def walk() -> int:
            found = 0
            for _folder, dirs, files in os.walk(base):
                if "experiment.json" in files:
                    dirs[:] = []
                    found += 1
            return found

        floor, floor_cpu = median_time(walk, args.repeats)
        table.add("folder floor: list the experiment folders (os.walk)", f"{ms(floor)} (CPU {ms(floor_cpu)})", "1.0x")
        everything = _runs(LocalStore(root), OWNER, PROJECT, None, None, None, False, 0, 10_000)
        dec, size = decode_floor(everything, args.repeats)
        table.add(f"folder floor: decode the JSON of all summaries ({size / 1e6:.1f} MB)", ms(dec),
                  f"{dec / floor:.1f}x")

        def cold() -> dict[str, Any]:
            return query(LocalStore(root))

        check(cold(), want, total, "cold query")
        seconds, cpu = median_time(cold, args.repeats)
        table.timed("folder: cold (fresh store object, as after a restart)", seconds, cpu, floor, TARGET)
        warm_store = LocalStore(root)
        check(query(warm_store), want, total, "warm query")
        seconds, cpu = median_time(lambda: query(warm_store), args.repeats)
        table.timed("folder: warm (same store object)", seconds, cpu, floor, TARGET)
        if args.profile:
            profile(cold, "folder store, cold")
            profile(lambda: query(warm_store), "folder store, warm")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def bench_mongo(args: argparse.Namespace, runs: list[Run], want: list[str], total: int, table: Table) -> None:
    from ml_dash.stores.mongo import MongoStore
    from mongo.services import (
        REAL_MONGO_URI,
        REAL_S3_ENDPOINT,
        LocalServer,
        create_bucket,
        drop,
        fresh_names,
        s3_credentials,
        start_mongo,
        start_s3,
    )

    workdir = Path(tempfile.mkdtemp(prefix="ml-dash-bench-runs-"))
    started: list[LocalServer] = []
    database, bucket = fresh_names()
    try:
        mongo_uri = REAL_MONGO_URI
        if not mongo_uri:
            started.append(start_mongo(workdir))
            mongo_uri = f"mongodb://127.0.0.1:{started[-1].port}"
        s3 = REAL_S3_ENDPOINT
        if not s3:
            started.append(start_s3(workdir))
            s3 = f"http://127.0.0.1:{started[-1].port}"
        from mongo.services import Services

        svc = Services(mongo_uri, s3, workdir, started)
        create_bucket(svc, bucket)
        keys = s3_credentials()

        def open_store() -> MongoStore:
            return MongoStore(mongo_uri, database, bucket, s3_endpoint=s3, s3_access_key=keys.get("s3_access_key"),
                              s3_secret_key=keys.get("s3_secret_key"))

        store = open_store()
        print(f"MongoDB ({'real' if REAL_MONGO_URI else 'nx-27017'}): writing {len(runs):,} experiments …", flush=True)
        table.add("mongo: write the experiments", f"{fill(store, runs):.1f} s")
        store.close()

        def list_docs() -> int:
            return len(list(store.experiments.find({"owner": OWNER, "project": PROJECT})))

        store = open_store()
        floor, floor_cpu = median_time(list_docs, args.repeats)
        table.add("mongo floor: fetch the experiments documents", f"{ms(floor)} (CPU {ms(floor_cpu)})", "1.0x")
        t = perf()
        first = query(store)
        table.add("mongo: first query ever", ms(perf() - t))
        check(first, want, total, "first mongo query")
        store.close()

        opened: list[MongoStore] = []

        def cold() -> dict[str, Any]:
            fresh = open_store()
            opened.append(fresh)
            return query(fresh)

        check(cold(), want, total, "cold mongo query")
        seconds, cpu = median_time(cold, args.repeats)
        table.timed("mongo: cold (fresh store object, as after a restart)", seconds, cpu, floor, TARGET)
        warm = open_store()
        opened.append(warm)
        check(query(warm), want, total, "warm mongo query")
        seconds, cpu = median_time(lambda: query(warm), args.repeats)
        table.timed("mongo: warm (same store object)", seconds, cpu, floor, TARGET)
        if args.profile:
            profile(cold, "mongo, cold")
        for each in opened:
            each.close()
        drop(svc, database, bucket)
    finally:
        for server in started:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 experiments, 3 repeats")
    parser.add_argument("--experiments", type=int, default=None, help="default 1,000 (200 with --quick)")
    parser.add_argument("--points", type=int, default=20, help="points per stream (default 20)")
    parser.add_argument("--repeats", type=int, default=None, help="default 7 (3 with --quick)")
    parser.add_argument("--only", choices=("local", "mongo"), help="one store only")
    parser.add_argument("--profile", action="store_true", help="print where the time of a query goes")
    parser.add_argument("--keep", help="folder store: write into this folder and keep it (reused when run again)")
    args = parser.parse_args()
    n = args.experiments or (200 if args.quick else 1000)
    args.repeats = args.repeats or (3 if args.quick else 7)
    runs = [Run(i, args.points) for i in range(n)]
    want = expected_page(runs)
    total = sum(1 for r in runs if r.params["optimizer"] in ("adam", "adamw")
                and r.stat("train", "loss", "min") < 1.5 and r.status != "FAILED")
    print(f"{n:,} experiments × 50 params × 10 metric fields ({args.points} points per stream); "
          f"where {WHERE!r}, sort {SORT} descending, page of {PAGE} ({total} match)", flush=True)
    table = Table()
    if args.only in (None, "local"):
        bench_local(args, runs, want, total, table)
    if args.only in (None, "mongo"):
        bench_mongo(args, runs, want, total, table)
    table.print()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{sys.platform}, {os.cpu_count()} CPUs, load average {load:.1f} at the end")


if __name__ == "__main__":
    main()
