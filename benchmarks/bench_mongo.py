"""MongoStore benchmark: one long metric through MongoDB (hot) and S3 (cold).

Stores ``--points`` points (1,005,000 by default: 100 full chunks in S3 and a hot tail
of 5,000) of ``{"step", "loss", "acc", "_ts"}``
through MongoStore in appends of ``--batch`` points (what the SDK's writer sends), then
measures ``read_metrics(start_index=k, limit=1000)`` at random ``k`` (over the whole
stream, in the cold part, in the hot tail and straddling the hot/cold boundary), a
full read of the stream page by page, and the stored bytes per point in S3 and in
MongoDB against the JSON lines of LocalStore.

    .venv/bin/python benchmarks/bench_mongo.py               # 1,005,000 points (about a minute)
    .venv/bin/python benchmarks/bench_mongo.py --quick       # 55,000 points, CI smoke run

It starts ``nx-27017 --db memory`` and ``moto_server`` on loopback (as the tests do),
unless ``ML_DASH_TEST_MONGO_URI`` / ``ML_DASH_TEST_S3_ENDPOINT`` name real services.
The emulators bound the figures: nx-27017 is a single Python process over SQLite that
stores documents as JSON text, and moto keeps objects in a Python dict behind a
development HTTP server; real MongoDB and S3 differ in both directions (faster
servers, but network round trips instead of loopback). Exits non-zero only when the
benchmark fails (an exception, or points missing or out of order).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from ml_dash.records import ExperimentInfo  # noqa: E402
from ml_dash.stores import codec  # noqa: E402
from ml_dash.stores.mongo import MongoStore  # noqa: E402
from mongo.services import (  # noqa: E402 - the test helpers start the loopback servers
    REAL_MONGO_URI,
    REAL_S3_ENDPOINT,
    LocalServer,
    Services,
    create_bucket,
    drop,
    fresh_names,
    s3_credentials,
    start_mongo,
    start_s3,
)

PREFIX = "bench/mongo/run"
T0 = 1_764_000_000.0


def make_points(start: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "step": i,
            "loss": 2.5 * math.exp(-i / 300_000) + rng.random() * 0.05,
            "acc": min(1.0, i / 1_000_000 + rng.random() * 0.01),
            "_ts": T0 + i * 0.0213 + rng.random() * 0.001,
        }
        for i in range(start, start + count)
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_reads(store: MongoStore, starts: list[int], total: int) -> tuple[float, float]:
    """p50 and p99 in ms of read(k, 1000), checking every answer."""
    times = []
    for k in starts:
        began = time.perf_counter()
        page = store.read_metrics(PREFIX, "train", k, 1000)
        times.append((time.perf_counter() - began) * 1000)
        want = list(range(k, min(k + 1000, total)))
        if [p["index"] for p in page["data"]] != want or page["data"][0]["data"]["step"] != k:
            raise SystemExit(f"read({k}, 1000) returned the wrong points")
    return percentile(times, 0.5), percentile(times, 0.99)


def run(args: argparse.Namespace, svc: Services) -> None:
    database, bucket = fresh_names()
    create_bucket(svc, bucket)
    keys = s3_credentials()
    store = MongoStore(svc.mongo_uri, database, bucket, s3_endpoint=svc.s3_endpoint, chunk_size=args.chunk_size,
                       s3_access_key=keys.get("s3_access_key"), s3_secret_key=keys.get("s3_secret_key"))
    rng = random.Random(1)
    try:
        store.open_experiment(ExperimentInfo(prefix=PREFIX, owner="bench", project="mongo", name="run"))
        jsonl_bytes = 0
        began = time.perf_counter()
        for start in range(0, args.points, args.batch):
            batch = make_points(start, min(args.batch, args.points - start), rng)
            jsonl_bytes += len(codec.encode_metric_lines(batch, start))
            store.append_metrics(PREFIX, "train", batch, batch_id=f"b{start}")
        write_s = time.perf_counter() - began
        stats = store.metric_stats(PREFIX, "train")
        counts: dict[str, Any] = dict(stats)
        total, hot, cold = counts["totalDataPoints"], counts["hotDataPoints"], counts["coldDataPoints"]
        if total != args.points:
            raise SystemExit(f"stored {total} points, expected {args.points}")

        boundary = cold
        pick = random.Random(2)
        last = max(0, total - 1000)
        mixes = {
            "anywhere": [pick.randint(0, last) for _ in range(args.reads)],
            "cold only": [pick.randint(0, max(0, boundary - 1000)) for _ in range(args.reads)] if cold else [],
            "hot only": [pick.randint(boundary, last) for _ in range(args.reads)] if hot >= 1000 else [],
            "across the boundary": [pick.randint(max(0, boundary - 999), boundary - 1) for _ in range(args.reads)]
            if cold and hot else [],
        }
        read_figures = {name: timed_reads(store, starts, total) for name, starts in mixes.items() if starts}

        began = time.perf_counter()
        seen = 0
        while seen < total:
            page = store.read_metrics(PREFIX, "train", seen, args.page)
            if not page["data"] or page["data"][0]["index"] != seen:
                raise SystemExit(f"full read: gap at index {seen}")
            seen = page["data"][-1]["index"] + 1
        full_s = time.perf_counter() - began

        s3_bytes = sum(int(m["bytes"]) for m in store.db["metric_chunks"].find({}, {"bytes": 1}))
        hot_bytes = sum(len(b.encode()) for doc in store.db["metric_buckets"].find({}, {"p": 1}) for b in doc["p"])
        buckets = store.db["metric_buckets"].count_documents({})
    finally:
        store.close()
        drop(svc, database, bucket)

    print(f"MongoStore benchmark: {args.points:,} points, appends of {args.batch:,}, chunk {args.chunk_size:,}")
    print(f"  services: MongoDB {svc.mongo_uri} ({'real' if REAL_MONGO_URI else 'nx-27017 emulator'}), "
          f"S3 {svc.s3_endpoint} ({'real' if REAL_S3_ENDPOINT else 'moto emulator'})")
    print(f"  write (incl. moves to S3)     {write_s:8.2f} s   {args.points / write_s:12,.0f} points/s")
    print(f"  stored                        {cold:,} cold in {cold // args.chunk_size} S3 objects, "
          f"{hot:,} hot in {buckets} bucket documents")
    for name, (p50, p99) in read_figures.items():
        print(f"  read(k, 1000) {name:<20s} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   ({args.reads} reads)")
    print(f"  full read, pages of {args.page:,}     {full_s:8.2f} s   {total / full_s:12,.0f} points/s")
    print(f"  JSON lines (LocalStore)       {jsonl_bytes / total:8.1f} bytes/point")
    if cold:
        print(f"  S3 objects                    {s3_bytes / cold:8.1f} bytes/point "
              f"({jsonl_bytes / total / (s3_bytes / cold):.1f}x smaller)")
    if hot:
        print(f"  MongoDB hot blocks (text)     {hot_bytes / hot:8.1f} bytes/point")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=None,
                        help="points to store (default 1,005,000: 100 cold chunks and a hot tail)")
    parser.add_argument("--quick", action="store_true", help="55,000 points and fewer reads (CI smoke run)")
    parser.add_argument("--batch", type=int, default=1000, help="points per append (default 1,000)")
    parser.add_argument("--chunk-size", type=int, default=10_000, help="points per S3 object (default 10,000)")
    parser.add_argument("--reads", type=int, default=None, help="random reads per mix (default 200; 50 quick)")
    parser.add_argument("--page", type=int, default=10_000, help="page size of the full read (default 10,000)")
    args = parser.parse_args()
    args.points = args.points or (55_000 if args.quick else 1_005_000)
    args.reads = args.reads or (50 if args.quick else 200)

    workdir = Path(tempfile.mkdtemp(prefix="ml-dash-bench-"))
    started: list[LocalServer] = []
    try:
        mongo_uri = REAL_MONGO_URI
        if not mongo_uri:
            started.append(start_mongo(workdir))
            mongo_uri = f"mongodb://127.0.0.1:{started[-1].port}"
        s3 = REAL_S3_ENDPOINT
        if not s3:
            started.append(start_s3(workdir))
            s3 = f"http://127.0.0.1:{started[-1].port}"
        run(args, Services(mongo_uri, s3, workdir, started))
    finally:
        for server in started:
            server.stop()
        for path in workdir.iterdir():
            os.unlink(path)
        workdir.rmdir()


if __name__ == "__main__":
    main()
