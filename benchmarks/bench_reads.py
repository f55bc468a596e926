"""Read-cost benchmark of the folder store: a 100-entry page of a 1M-entry log or track.

Writes (once, with ``LocalStore`` directly) a log of N lines (levels: 50 % debug, 45 %
info, 4 % warn, 1 % error, 100 lines a second) and a track of N entries (100 a second),
then measures each read in a fresh process: the median wall time of R runs, the extra
peak RSS over the process's RSS just before (``ru_maxrss``; the process first reads a
tiny experiment the same way, so imports are not counted), and the bytes read and lines
decoded (``ml_dash.stores.line_index.counters``). The first filtered read builds the
index (reported apart, "cold"); the others find it built ("warm").

Floors measured in the same run: the same 100 lines read by offset with ``os.pread`` and
decoded with msgspec (what reading a page costs at least), and an unfiltered log page at
the same depth (a bisection by sequence number, which needs no index).

    .venv/bin/python benchmarks/bench_reads.py            # N = 1,000,000, R = 5
    .venv/bin/python benchmarks/bench_reads.py --quick    # N = 200,000, R = 3

Targets (issue 9): a warm 100-entry page (level-filtered and descending, or a track
page) within 50 ms and 20 MB of extra RSS. Missed targets print MISS; only a failure of
the benchmark exits non-zero. Runs against any ml_dash on ``PYTHONPATH`` (figures a tree
cannot produce, e.g. track pages before they existed, print n/a).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

PREFIX = "bench/reads/run"
TINY = "bench/reads/tiny"
TOPIC = "pose"
PAGE = 100
T0 = 1_700_000_000.0
TARGET_MS = 50.0
TARGET_MB = 20.0
LEVELS = ["debug"] * 50 + ["info"] * 45 + ["warn"] * 4 + ["error"]


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1e3  # kB
    raise RuntimeError(f"no {key} in /proc/self/status")


def rss_mb() -> float:
    """The RSS now; also resets the peak (VmHWM) to it, so that ``peak_mb`` is the peak
    since this call (Linux: ``clear_refs`` 5)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_mb("VmRSS")


def peak_mb() -> float:
    return _status_mb("VmHWM")


# -- the data ----------------------------------------------------------------------------------


def write_data(root: str, n: int) -> None:
    from ml_dash.records import LogRecord
    from ml_dash.stores.local import LocalStore

    store = LocalStore(root, scan_batch_ids=False)
    rnd = random.Random(7)
    for prefix, count in ((PREFIX, n), (TINY, 300)):
        for start in range(0, count, 10_000):
            stop = min(count, start + 10_000)
            store.append_logs(prefix, [
                LogRecord(T0 + i * 0.01, rnd.choice(LEVELS), f"step {i}: loss went down a little", {"step": i})
                for i in range(start, stop)
            ])
            store.append_tracks(prefix, TOPIC, [
                {"timestamp": T0 + i * 0.01, "x": rnd.random(), "y": rnd.random(), "z": float(i)}
                for i in range(start, stop)
            ])
    store.close()


# -- one figure, in a fresh process ----------------------------------------------------------------


def reads(n: int) -> dict[str, Any]:
    """name -> (callable on a store and prefix) of every read measured."""
    mid = T0 + n * 0.005  # the middle of the stream, in seconds
    return {
        "logs error newest-first": lambda s, p: s.query_logs(p, {"levels": ["error"], "descending": True,
                                                                 "limit": PAGE}),
        f"logs error newest-first, offset {n // 500:,}": lambda s, p: s.query_logs(
            p, {"levels": ["error"], "descending": True, "offset": n // 500, "limit": PAGE}),
        "logs warn+error, offset 5000": lambda s, p: s.query_logs(
            p, {"levels": ["warn", "error"], "offset": 5000, "limit": PAGE}),
        "logs 10 s window, first page": lambda s, p: s.query_logs(
            p, {"start_time": mid, "end_time": mid + 10.0, "limit": PAGE}),
        "logs newest-first, no filter": lambda s, p: s.query_logs(p, {"descending": True, "limit": PAGE}),
        "floor: logs page, no filter, offset n/2": lambda s, p: s.query_logs(p, {"offset": n // 2, "limit": PAGE}),
        "tracks 10 s window (1,001 entries)": lambda s, p: s.read_tracks(p, TOPIC, mid, mid + 10.0),
        "tracks page of 100 (limit, after)": lambda s, p: s.read_tracks(p, TOPIC, limit=PAGE, after=mid),
        "tracks list": lambda s, p: s.list_tracks(p),
    }


def child_measure(root: str, name: str, n: int, repeats: int) -> dict[str, Any]:
    from ml_dash.stores.local import LocalStore

    try:
        from ml_dash.stores.line_index import counters
    except ImportError:
        counters = None
    call = reads(n)[name]
    store = LocalStore(root, scan_batch_ids=False)
    try:
        call(store, TINY)  # imports, on a tiny experiment
    except TypeError:
        return {"na": True}
    before = rss_mb()
    times, result = [], None
    for _ in range(repeats):
        if counters is not None:
            counters.reset()
        t = time.perf_counter()
        result = call(store, PREFIX)
        times.append(time.perf_counter() - t)
    out = {
        "ms": statistics.median(times) * 1e3,
        "first_ms": times[0] * 1e3,
        "extra_mb": max(0.0, peak_mb() - before),
        "items": len(result["logs"]) if isinstance(result, dict) else len(result),
    }
    if counters is not None:
        out.update(bytes=counters.data_bytes, decoded=counters.lines_decoded, indexed=counters.lines_indexed)
    store.close()
    return out


def child_floor(root: str, n: int, repeats: int) -> dict[str, Any]:
    """100 log lines at the middle of the file, by offset: pread + msgspec decode."""
    import msgspec

    path = os.path.join(root, *PREFIX.split("/"), "logs", "logs.jsonl")
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    with open(path, "rb") as fh:
        fh.seek(size // 2)
        fh.readline()
        offset = fh.tell()
        length = sum(len(fh.readline()) for _ in range(PAGE))
    before = rss_mb()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        lines = msgspec.json.Decoder().decode_lines(os.pread(fd, length, offset))
        times.append(time.perf_counter() - t)
    os.close(fd)
    return {"ms": statistics.median(times) * 1e3, "extra_mb": max(0.0, peak_mb() - before), "items": len(lines),
            "bytes": length, "decoded": len(lines)}


def child_cold(root: str, n: int) -> dict[str, Any]:
    """The first filtered log read and the first track page: they build the indexes."""
    from ml_dash.stores.local import LocalStore

    store = LocalStore(root, scan_batch_ids=False)
    out: dict[str, Any] = {}
    store.query_logs(TINY, {"levels": ["error"]})
    store.read_tracks(TINY, TOPIC, T0, T0 + 1.0)
    for key, call in (
        ("logs", lambda: store.query_logs(PREFIX, {"levels": ["error"], "descending": True, "limit": PAGE})),
        ("tracks", lambda: store.read_tracks(PREFIX, TOPIC, T0, T0 + 1.0)),
    ):
        before = rss_mb()
        t = time.perf_counter()
        call()
        out[key] = {"ms": (time.perf_counter() - t) * 1e3, "extra_mb": max(0.0, peak_mb() - before)}
    store.close()
    return out


def run_child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# -- the table ------------------------------------------------------------------------------------


def bench(n: int, repeats: int, root: str) -> int:
    import ml_dash

    print(f"ml_dash from {os.path.dirname(ml_dash.__file__)}; {n:,} log lines and track entries; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; load {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
    t = time.perf_counter()
    write_data(root, n)
    size = os.path.getsize(os.path.join(root, *PREFIX.split("/"), "logs", "logs.jsonl"))
    print(f"wrote the data in {time.perf_counter() - t:.1f} s (log file {size / 1e6:.0f} MB)\n")
    for kind in ("logs", os.path.join("tracks", TOPIC)):  # closing the store built the track index
        shutil.rmtree(os.path.join(root, *PREFIX.split("/"), kind, ".ml-dash"), ignore_errors=True)
    cold = run_child("cold", root, str(n), "1")
    print(f"cold: first filtered log read {cold['logs']['ms']:.0f} ms (+{cold['logs']['extra_mb']:.1f} MB), "
          f"first track read {cold['tracks']['ms']:.0f} ms (+{cold['tracks']['extra_mb']:.1f} MB)"
          " (with an index: its build; before: every read)\n")
    floor = run_child("floor", root, str(n), str(repeats))
    floor_ms = floor["ms"]
    header = f"{'read (warm)':<42} {'median':>10} {'extra RSS':>10} {'/floor':>8} {'bytes':>12} {'decoded':>9}  target"
    print(header)
    print("-" * len(header))
    print(f"{'floor: 100 lines by offset (pread+decode)':<42} {floor_ms:>8.2f}ms {floor['extra_mb']:>8.1f}MB "
          f"{'1.0':>8} {floor['bytes']:>12,} {floor['decoded']:>9,}")
    misses = 0
    for name in reads(n):
        got = run_child("measure", root, str(n), str(repeats), name)
        if got.get("na"):
            print(f"{name:<42} {'n/a':>10}")
            continue
        targeted = name.startswith(("logs error", "tracks page"))
        verdict = ""
        if targeted:
            ok = got["ms"] <= TARGET_MS and got["extra_mb"] <= TARGET_MB
            verdict = f"{'PASS' if ok else 'MISS'} (<= {TARGET_MS:.0f} ms, <= {TARGET_MB:.0f} MB)"
            misses += not ok
        read, decoded = (f"{got['bytes']:,}", f"{got['decoded']:,}") if "bytes" in got else ("-", "-")
        print(f"{name:<42} {got['ms']:>8.2f}ms {got['extra_mb']:>8.1f}MB {got['ms'] / floor_ms:>8.1f} "
              f"{read:>12} {decoded:>9}  {verdict}")
    print(f"\n{misses} target(s) missed" if misses else "\nall targets met")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 lines, 3 repeats")
    parser.add_argument("--lines", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, root, n, repeats, *rest = args.child
        if kind == "measure":
            out = child_measure(root, rest[0], int(n), int(repeats))
        elif kind == "floor":
            out = child_floor(root, int(n), int(repeats))
        else:
            out = child_cold(root, int(n))
        print(json.dumps(out))
        return 0
    n = args.lines or (200_000 if args.quick else 1_000_000)
    repeats = args.repeats or (3 if args.quick else 5)
    root = tempfile.mkdtemp(prefix="bench-reads-")
    try:
        return bench(n, repeats, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
