"""Local-mode benchmark of the ML-Dash SDK: our figures against an orjson floor, same run.

Every SDK figure is printed next to a floor measured in the same run on the same
machine (a plain loop writing or reading the same points as JSON lines with orjson),
so the ratios stay meaningful on a noisy, shared machine. Missed targets print MISS
but do not fail the run; only a crash (or wrong data) exits non-zero.

    .venv/bin/python benchmarks/bench_local.py            # 1,000,000 points, 10M memory run
    .venv/bin/python benchmarks/bench_local.py --quick    # CI smoke run, well under a minute

Reads and the memory run happen in fresh processes (this script with ``--child``).
"""

from __future__ import annotations

import argparse
import bisect
import gc
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from ml_dash import Experiment, LocalStore

PREFIX = "bench/local/run"
STREAM = "train"
PAGE = 1000  # points per page in the paged-read figures
FLOOR_FILE = "floor.jsonl"

perf = time.perf_counter


# -- results -----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a measured figure, its floor and ratio, and its target."""

    name: str
    value: str
    floor: str = ""
    ratio: str = ""
    target: str = ""
    passed: bool | None = None  # None: no target, figure for information

    @property
    def verdict(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "MISS")


def us(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:.3f} µs/pt"


def print_table(rows: list[Row]) -> None:
    headers = ("figure", "measured", "floor", "ratio", "target", "result")
    cells = [(r.name, r.value, r.floor, r.ratio, r.target, r.verdict) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


def median(values: list[float]) -> float:
    return statistics.median(values)


def load_average() -> str:
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


@contextmanager
def scratch() -> Iterator[str]:
    """A temporary folder (under the system temp dir, /tmp here), removed afterwards."""
    path = tempfile.mkdtemp(prefix="ml-dash-bench-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the floor: orjson lines into a buffered file ---------------------------------------


def floor_write_1(path: str, n: int) -> float:
    gc.collect()
    t0 = perf()
    with open(path, "wb") as f:
        for i in range(n):
            v = 1.0 / (i + 1)
            f.write(orjson.dumps({"loss": v}) + b"\n")
    return perf() - t0


def floor_write_2(path: str, n: int) -> float:
    gc.collect()
    t0 = perf()
    with open(path, "wb") as f:
        for i in range(n):
            v = 1.0 / (i + 1)
            f.write(orjson.dumps({"loss": v, "step": i}) + b"\n")
    return perf() - t0


def floor_write_10(path: str, n: int) -> float:
    gc.collect()
    t0 = perf()
    with open(path, "wb") as f:
        for i in range(n):
            v = 1.0 / (i + 1)
            f.write(
                orjson.dumps(
                    {
                        "loss": v,
                        "acc": 1.0 - v,
                        "lr": 0.001,
                        "grad_norm": v * 3.0,
                        "step": i,
                        "epoch": i >> 12,
                        "tokens": i * 512,
                        "val_loss": v + 0.5,
                        "throughput": 1234.5,
                        "clipped": False,
                    }
                )
                + b"\n"
            )
    return perf() - t0


# -- the SDK: the same loops through exp.metrics(name).log(...) ------------------------


def start(root: str) -> Experiment:
    exp = Experiment(prefix=PREFIX, dash_root=root, echo=False)
    exp.run.start()
    return exp


def complete(exp: Experiment) -> None:
    """Close the run; anything left unwritten is a crash of the benchmark, not a figure."""
    report = exp.run.complete()
    if report is None or not report.ok:
        raise RuntimeError(f"complete() did not write everything: {report}")


def check_on_disk(root: str, n: int) -> None:
    total = LocalStore(root).metric_stats(PREFIX, STREAM)["totalDataPoints"]
    if total != n:
        raise RuntimeError(f"{total} points on disk, expected {n}")


def sdk_write_1(root: str, n: int) -> float:
    exp = start(root)
    gc.collect()
    t0 = perf()
    m = exp.metrics(STREAM)
    for i in range(n):
        v = 1.0 / (i + 1)
        m.log(loss=v)
    complete(exp)
    elapsed = perf() - t0
    check_on_disk(root, n)
    return elapsed


def sdk_write_2(root: str, n: int) -> float:
    exp = start(root)
    gc.collect()
    t0 = perf()
    m = exp.metrics(STREAM)
    for i in range(n):
        v = 1.0 / (i + 1)
        m.log(loss=v, step=i)
    complete(exp)
    elapsed = perf() - t0
    check_on_disk(root, n)
    return elapsed


def sdk_write_10(root: str, n: int) -> float:
    exp = start(root)
    gc.collect()
    t0 = perf()
    m = exp.metrics(STREAM)
    for i in range(n):
        v = 1.0 / (i + 1)
        m.log(
            loss=v,
            acc=1.0 - v,
            lr=0.001,
            grad_norm=v * 3.0,
            step=i,
            epoch=i >> 12,
            tokens=i * 512,
            val_loss=v + 0.5,
            throughput=1234.5,
            clipped=False,
        )
    complete(exp)
    elapsed = perf() - t0
    check_on_disk(root, n)
    return elapsed


# -- the caller's thread: one log call at a time ----------------------------------------


def _empty(**fields: Any) -> None:
    return None


def latency_timer_only(n: int) -> array[int]:
    samples = array("q", bytes(8 * n))
    clock = time.perf_counter_ns
    gc.collect()
    for i in range(n):
        t0 = clock()
        samples[i] = clock() - t0
    return samples


def latency_empty_call(n: int) -> array[int]:
    samples = array("q", bytes(8 * n))
    clock = time.perf_counter_ns
    call = _empty
    gc.collect()
    for i in range(n):
        v = 1.0 / (i + 1)
        t0 = clock()
        call(loss=v, step=i)
        samples[i] = clock() - t0
    return samples


def latency_sdk(root: str, n: int) -> array[int]:
    samples = array("q", bytes(8 * n))
    clock = time.perf_counter_ns
    exp = start(root)
    m = exp.metrics(STREAM)
    gc.collect()
    for i in range(n):
        v = 1.0 / (i + 1)
        t0 = clock()
        m.log(loss=v, step=i)
        samples[i] = clock() - t0
    complete(exp)
    check_on_disk(root, n)
    return samples


@dataclass
class Spread:
    """Percentiles (µs) and long-call counts of per-call times in ns."""

    p50: float
    p99: float
    p999: float
    max: float
    over_1ms: int
    over_10ms: int

    @classmethod
    def of(cls, samples: array[int]) -> Spread:
        ordered = sorted(samples)
        last = len(ordered) - 1

        def at(q: float) -> float:
            return ordered[round(q * last)] / 1000

        return cls(
            p50=at(0.5),
            p99=at(0.99),
            p999=at(0.999),
            max=ordered[-1] / 1000,
            over_1ms=len(ordered) - bisect.bisect_right(ordered, 1_000_000),
            over_10ms=len(ordered) - bisect.bisect_right(ordered, 10_000_000),
        )

    def text(self) -> str:
        return f"p50 {self.p50:.2f} / p99 {self.p99:.2f} / p99.9 {self.p999:.2f} / max {self.max:,.0f} µs"


# -- a loop with real work that releases the GIL ----------------------------------------


def calibrate_work(target_us: float) -> bytes:
    """A buffer whose sha256 takes about ``target_us`` (hashlib releases the GIL on it)."""
    size = 16 * 1024
    for _ in range(3):
        buf = os.urandom(size)
        reps = 2000
        t0 = perf()
        for _ in range(reps):
            hashlib.sha256(buf).digest()
        per = (perf() - t0) / reps * 1e6
        size = max(4096, int(size * target_us / per))
    return os.urandom(size)


def work_only(buf: bytes, n: int) -> float:
    sha = hashlib.sha256
    gc.collect()
    t0 = perf()
    for i in range(n):
        v = 1.0 / (i + 1)
        sha(buf).digest()
        del v
    return perf() - t0


def work_and_log(root: str, buf: bytes, n: int, loops: list[float]) -> float:
    """End-to-end seconds; the loop alone (up to the last log call) goes into ``loops``."""
    sha = hashlib.sha256
    exp = start(root)
    gc.collect()
    t0 = perf()
    m = exp.metrics(STREAM)
    for i in range(n):
        v = 1.0 / (i + 1)
        sha(buf).digest()
        m.log(loss=v, step=i)
    loops.append(perf() - t0)
    complete(exp)
    elapsed = perf() - t0
    check_on_disk(root, n)
    return elapsed


# -- children: fresh processes for reads and memory --------------------------------------


def child_read_sdk(root: str, n: int, repeats: int) -> dict[str, Any]:
    """Resume the experiment through the public API and read the stream back."""
    t0 = perf()
    exp = start(root)  # resumes: same prefix, same dash_root
    resume = perf() - t0
    m = exp.metrics(STREAM)
    t0 = perf()
    page = m.read(start_index=0, limit=n)
    full = perf() - t0
    got = len(page["data"])
    ok = got == n and page["data"][-1]["index"] == n - 1 and page["data"][-1]["data"]["step"] == n - 1
    del page
    gc.collect()
    tail, head = [], []
    tail_start = max(0, n - PAGE)
    for _ in range(repeats):
        t0 = perf()
        page = m.read(start_index=tail_start, limit=PAGE)
        tail.append(perf() - t0)
        ok = ok and len(page["data"]) == min(PAGE, n) and page["data"][0]["index"] == tail_start
        t0 = perf()
        page = m.read(start_index=0, limit=PAGE)
        head.append(perf() - t0)
        ok = ok and len(page["data"]) == min(PAGE, n)
    exp.run.complete()
    return {"resume": resume, "full": full, "count": got, "ok": ok, "tail": median(tail), "head": median(head)}


def child_resume_append(root: str, n: int) -> dict[str, Any]:
    """Resume, then time the first and second flush of one new point each."""
    exp = start(root)
    m = exp.metrics(STREAM)
    times = []
    for step in (n, n + 1):
        m.log(loss=0.5, step=step)
        t0 = perf()
        m.flush()
        times.append(perf() - t0)
    complete(exp)
    return {"first": times[0], "second": times[1]}


def child_read_floor(path: str, n: int) -> dict[str, Any]:
    """The floor's own file, or (for context) the SDK's data file, one orjson.loads per line."""
    t0 = perf()
    with open(path, "rb") as f:
        rows = [orjson.loads(line) for line in f]
    full = perf() - t0
    last = rows[-1] if rows else {}
    step = last["data"]["step"] if "data" in last else last.get("step")
    return {"full": full, "count": len(rows), "ok": len(rows) == n and step == n - 1}


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB.

    Linux ``VmHWM`` is kept per address space, so it starts afresh at exec;
    ``ru_maxrss`` would carry over the peak of the parent that forked us.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS


def child_memory(root: str, n: int) -> dict[str, Any]:
    """Peak RSS before the loop and after complete(), for ``n`` two-field points."""
    exp = start(root)
    m = exp.metrics(STREAM)
    m.log(loss=0.0, step=-1)  # first point: lazily created state exists before we measure
    m.flush()
    gc.collect()
    before = peak_rss_kib()
    t0 = perf()
    for i in range(n):
        v = 1.0 / (i + 1)
        m.log(loss=v, step=i)
    complete(exp)
    elapsed = perf() - t0
    after = peak_rss_kib()
    check_on_disk(root, n + 1)
    return {"before_kib": before, "after_kib": after, "seconds": elapsed}


def run_child(*args: str) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("ok") is False:
        raise RuntimeError(f"child {' '.join(args)} read wrong data: {result}")
    return result


def child_main(args: argparse.Namespace) -> None:
    kind, target = args.child
    if kind == "read-sdk":
        result = child_read_sdk(target, args.points, args.repeats_read)
    elif kind == "read-floor":
        result = child_read_floor(target, args.points)
    elif kind == "resume-append":
        result = child_resume_append(target, args.points)
    elif kind == "memory":
        result = child_memory(target, args.points)
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print(json.dumps(result))


# -- the benchmark -----------------------------------------------------------------------


def interleaved(
    rounds: int, runs: dict[str, Callable[[str], float]], keep: dict[str, str] | None = None
) -> dict[str, list[float]]:
    """Run each measurement once per round, in turn, so drift on the machine hits all alike.

    Each run gets a fresh scratch folder, except that ``keep`` maps a run's name to a
    folder where its last round runs instead, so its files stay for later figures.
    """
    keep = keep or {}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            if name in keep and r == rounds - 1:
                os.makedirs(keep[name])
                times[name].append(run(keep[name]))
                continue
            with scratch() as d:
                times[name].append(run(d))
    return times


def bench_writes(n: int, rounds: int, floor_dir: str, sdk_root: str) -> list[Row]:
    """Targets 1 and 2; leaves the last two-field files in floor_dir and sdk_root."""
    print(f"writes: {n:,} points x {rounds} rounds ...", flush=True)
    t = interleaved(
        rounds,
        {
            "floor1": lambda d: floor_write_1(os.path.join(d, FLOOR_FILE), n),
            "sdk1": lambda d: sdk_write_1(d, n),
            "floor2": lambda d: floor_write_2(os.path.join(d, FLOOR_FILE), n),
            "sdk2": lambda d: sdk_write_2(d, n),
            "floor10": lambda d: floor_write_10(os.path.join(d, FLOOR_FILE), n),
            "sdk10": lambda d: sdk_write_10(d, n),
        },
        keep={"floor2": floor_dir, "sdk2": sdk_root},
    )
    rows = []
    for label, k, limit in (("1 field", "1", 1.0), ("2 fields (loss, step)", "2", 1.0), ("10 fields", "10", 3.0)):
        sdk, floor = t["sdk" + k], t["floor" + k]
        ratio = median([a / b for a, b in zip(sdk, floor, strict=True)])
        rows.append(
            Row(
                f"write {label}, end to end",
                f"{us(median(sdk), n)} (best {min(sdk) / n * 1e6:.3f})",
                us(median(floor), n),
                f"{ratio:.2f}x",
                f"≤ {limit:.1f} µs/pt",
                median(sdk) / n <= limit * 1e-6,
            )
        )
        if k != "10":
            rows.append(Row(f"write {label}: ratio to floor", f"{ratio:.2f}x", target="≤ 8x", passed=ratio <= 8.0))
    return rows


def bench_latency(n: int) -> list[Row]:
    """Target 3: one log call at a time, next to the cost of timing itself."""
    print("caller latency ...", flush=True)
    timer = Spread.of(latency_timer_only(n))
    empty = Spread.of(latency_empty_call(n))
    with scratch() as d:
        call = Spread.of(latency_sdk(d, n))
    return [
        Row("latency: timer alone", f"{timer.text()}; >1 ms: {timer.over_1ms}"),
        Row("latency: empty f(loss=, step=)", f"{empty.text()}; >1 ms: {empty.over_1ms}"),
        Row("latency: m.log(loss=, step=)", call.text(), target="p99 ≤ 5 µs", passed=call.p99 <= 5.0),
        Row(
            "latency: calls > 1 ms / > 10 ms",
            f"{call.over_1ms} / {call.over_10ms}",
            target="none > 10 ms",
            passed=call.over_10ms == 0,
        ),
    ]


def bench_reads(n: int, rounds: int, floor_file: str, sdk_root: str) -> list[Row]:
    """Targets 4 and 5, each round in fresh processes."""
    print("reads (fresh processes) ...", flush=True)
    sdk_file = os.path.join(sdk_root, *PREFIX.split("/"), "metrics", STREAM, "data.jsonl")
    sdk, floor, same = [], [], []
    for _ in range(rounds):
        floor.append(run_child("read-floor", floor_file, "--points", str(n)))
        sdk.append(run_child("read-sdk", sdk_root, "--points", str(n), "--repeats-read", "7"))
        same.append(run_child("read-floor", sdk_file, "--points", str(n)))

    def ms(results: list[dict[str, Any]], key: str = "full") -> float:
        return median([r[key] for r in results]) * 1000

    def ratio(results: list[dict[str, Any]]) -> float:
        return median([s["full"] / f["full"] for s, f in zip(sdk, results, strict=True)])

    tail, head = ms(sdk, "tail"), ms(sdk, "head")
    appended = run_child("resume-append", sdk_root, "--points", str(n))  # last: it grows the stream
    return [
        Row(
            f"read all {n:,} in a new process",
            f"{ms(sdk):.0f} ms",
            f"{ms(floor):.0f} ms",
            f"{ratio(floor):.2f}x",
            "≤ 1.5x floor",
            ratio(floor) <= 1.5,
        ),
        Row(
            "  same, floor = orjson on our data.jsonl", f"{ms(sdk):.0f} ms", f"{ms(same):.0f} ms", f"{ratio(same):.2f}x"
        ),
        Row("resume: run.start() on existing", f"{ms(sdk, 'resume'):.1f} ms"),
        Row(f"read({max(0, n - PAGE):,}, {PAGE}) tail page", f"{tail:.2f} ms", target="≤ 10 ms", passed=tail <= 10.0),
        Row(f"read(0, {PAGE}) head page", f"{head:.2f} ms"),
        Row(
            "resume, log 1 point: 1st / 2nd flush",
            f"{appended['first'] * 1000:.1f} / {appended['second'] * 1000:.1f} ms",
        ),
    ]


def bench_memory(m: int) -> list[Row]:
    """Target 6, in a fresh process."""
    print(f"memory: {m:,} points in a fresh process ...", flush=True)
    with scratch() as d:
        mem = run_child("memory", d, "--points", str(m))
    grown = (mem["after_kib"] - mem["before_kib"]) / 1024
    return [
        Row(f"peak RSS growth, {m:,} points", f"{grown:.1f} MB", target="≤ 100 MB", passed=grown <= 100.0),
        Row(
            "  peak RSS before -> after; write rate",
            f"{mem['before_kib'] / 1024:.0f} -> {mem['after_kib'] / 1024:.0f} MB; {us(mem['seconds'], m)}",
        ),
    ]


def bench_real_work(n: int, rounds: int, work_us: float) -> list[Row]:
    """What logging adds to a step that does GIL-free work (hashlib stands in for GPU/numpy)."""
    print(f"real work: {n:,} steps of ~{work_us:g} µs x {rounds} rounds ...", flush=True)
    buf = calibrate_work(work_us)
    loops: list[float] = []
    t = interleaved(rounds, {"work": lambda d: work_only(buf, n), "work+log": lambda d: work_and_log(d, buf, n, loops)})
    base = median(t["work"])
    rows = [Row("real work: step alone", us(base, n))]
    for label, logged in (("loop only", loops), ("end to end", t["work+log"])):
        extra = median([b - a for a, b in zip(t["work"], logged, strict=True)])
        rows.append(
            Row(
                f"real work: step + log, {label}",
                us(median(logged), n),
                us(base, n),
                f"+{extra / n * 1e6:.3f} µs/pt ({extra / base * 100:.1f}%)",
            )
        )
    return rows


def bench(args: argparse.Namespace) -> list[Row]:
    n, rounds = args.points, args.repeats
    rows: list[Row] = []
    with scratch() as kept:
        floor_dir, sdk_root = os.path.join(kept, "floor"), os.path.join(kept, "sdk")
        rows += bench_writes(n, rounds, floor_dir, sdk_root)
        rows += bench_latency(n)
        rows += bench_reads(n, rounds, os.path.join(floor_dir, FLOOR_FILE), sdk_root)
    if args.memory_points > 0:
        rows += bench_memory(args.memory_points)
    if args.work_us > 0:
        rows += bench_real_work(max(1000, n // 10), rounds, args.work_us)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--points", type=int, default=None, help="points per stream (default 1,000,000; --quick 100,000)")
    p.add_argument("--quick", action="store_true", help="CI smoke run: 100,000 points, 1,000,000 in the memory run")
    p.add_argument(
        "--memory-points",
        type=int,
        default=None,
        help="points in the memory run (default 10,000,000; --quick 1,000,000; 0 skips it)",
    )
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds per figure; medians are reported")
    p.add_argument("--work-us", type=float, default=20.0, help="µs of GIL-free work per step (0 skips that figure)")
    p.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("--repeats-read", type=int, default=7, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.points is None:
        args.points = 100_000 if args.quick else 1_000_000
    if args.memory_points is None:
        args.memory_points = 1_000_000 if args.quick else 10_000_000
    if args.points < 1 or args.repeats < 1:
        p.error("--points and --repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    started = perf()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"ml-dash local benchmark - {now} - Python {sys.version.split()[0]} - "
        f"{os.cpu_count()} CPUs - orjson {orjson.__version__} - load average {load_average()}"
    )
    rows = bench(args)
    print()
    print_table(rows)
    missed = [r.name for r in rows if r.passed is False]
    print(
        f"\n{len(missed)} target(s) missed"
        + (": " + "; ".join(missed) if missed else "")
        + f" - {perf() - started:.0f} s, load average now {load_average()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
