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
    p50: float  # µs
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
            over_1ms=len(ordered) - _count_below(ordered, 1_000_000),
            over_10ms=len(ordered) - _count_below(ordered, 10_000_000),
        )

    def text(self) -> str:
        return f"p50 {self.p50:.2f} / p99 {self.p99:.2f} / p99.9 {self.p999:.2f} / max {self.max:,.0f} µs"


def _count_below(ordered: list[int], limit_ns: int) -> int:
    return bisect.bisect_right(ordered, limit_ns)


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


def work_and_log(root: str, buf: bytes, n: int) -> float:
    sha = hashlib.sha256
    exp = start(root)
    gc.collect()
    t0 = perf()
    m = exp.metrics(STREAM)
    for i in range(n):
        v = 1.0 / (i + 1)
        sha(buf).digest()
        m.log(loss=v, step=i)
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


def child_read_floor(path: str, n: int) -> dict[str, Any]:
    t0 = perf()
    with open(path, "rb") as f:
        rows = [orjson.loads(line) for line in f]
    full = perf() - t0
    return {"full": full, "count": len(rows), "ok": len(rows) == n and rows[-1]["step"] == n - 1}


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
    elif kind == "memory":
        result = child_memory(target, args.points)
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print(json.dumps(result))


# -- the benchmark -----------------------------------------------------------------------


def interleaved(
    rounds: int, runs: dict[str, Callable[[str], float]], kept: str | None = None
) -> dict[str, list[float]]:
    """Run each measurement once per round, in turn, so drift on the machine hits all alike.

    Each run gets a fresh scratch folder; with ``kept``, the last round runs in
    ``kept/<name>`` instead and its files stay there (for the read figures).
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            if kept is not None and r == rounds - 1:
                folder = os.path.join(kept, name)
                os.makedirs(folder)
                times[name].append(run(folder))
                continue
            with scratch() as d:
                times[name].append(run(d))
    return times


def bench(args: argparse.Namespace) -> list[Row]:
    n, rounds = args.points, args.repeats
    rows: list[Row] = []
    with scratch() as kept:
        floor_file = os.path.join(kept, "floor2", FLOOR_FILE)
        sdk_root = os.path.join(kept, "sdk2")

        # 1, 2: end-to-end writes against the orjson floor, interleaved rounds.
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
            kept=kept,
        )
        for label, k in (("1 field", "1"), ("2 fields (loss, step)", "2")):
            sdk, floor = median(t["sdk" + k]), median(t["floor" + k])
            ratio = median([s / f for s, f in zip(t["sdk" + k], t["floor" + k], strict=True)])
            rows.append(
                Row(
                    f"write {label}, end to end",
                    us(sdk, n),
                    us(floor, n),
                    f"{ratio:.2f}x",
                    "≤ 1.0 µs/pt",
                    sdk / n <= 1.0e-6,
                )
            )
            rows.append(Row(f"write {label}: ratio to floor", f"{ratio:.2f}x", target="≤ 8x", passed=ratio <= 8.0))
        sdk, floor = median(t["sdk10"]), median(t["floor10"])
        ratio = median([s / f for s, f in zip(t["sdk10"], t["floor10"], strict=True)])
        rows.append(
            Row(
                "write 10 fields, end to end",
                us(sdk, n),
                us(floor, n),
                f"{ratio:.2f}x",
                "≤ 3.0 µs/pt",
                sdk / n <= 3.0e-6,
            )
        )

        # 3: the caller's thread, one call at a time.
        print("caller latency ...", flush=True)
        timer = Spread.of(latency_timer_only(n))
        empty = Spread.of(latency_empty_call(n))
        with scratch() as d:
            call = Spread.of(latency_sdk(d, n))
        rows.append(Row("latency: timer alone", timer.text()))
        rows.append(Row("latency: empty f(loss=, step=)", empty.text()))
        rows.append(Row("latency: m.log(loss=, step=)", call.text(), target="p99 ≤ 5 µs", passed=call.p99 <= 5.0))
        rows.append(
            Row(
                "latency: calls > 1 ms / > 10 ms",
                f"{call.over_1ms} / {call.over_10ms}",
                target="none > 10 ms",
                passed=call.over_10ms == 0,
            )
        )

        # 4, 5: reads in fresh processes.
        print("reads (fresh processes) ...", flush=True)
        sdk_reads, floor_reads = [], []
        for _ in range(rounds):
            floor_reads.append(run_child("read-floor", floor_file, "--points", str(n)))
            sdk_reads.append(run_child("read-sdk", sdk_root, "--points", str(n), "--repeats-read", "7"))
        sdk_full = median([r["full"] for r in sdk_reads])
        floor_full = median([r["full"] for r in floor_reads])
        ratio = median([s["full"] / f["full"] for s, f in zip(sdk_reads, floor_reads, strict=True)])
        rows.append(
            Row(
                f"read all {n:,} in a new process",
                f"{sdk_full * 1000:.0f} ms",
                f"{floor_full * 1000:.0f} ms",
                f"{ratio:.2f}x",
                "≤ 1.5x floor",
                ratio <= 1.5,
            )
        )
        rows.append(Row("resume: run.start() on existing", f"{median([r['resume'] for r in sdk_reads]) * 1000:.1f} ms"))
        tail = median([r["tail"] for r in sdk_reads]) * 1000
        head = median([r["head"] for r in sdk_reads]) * 1000
        rows.append(
            Row(
                f"read({max(0, n - PAGE):,}, {PAGE}) tail page", f"{tail:.2f} ms", target="≤ 10 ms", passed=tail <= 10.0
            )
        )
        rows.append(Row(f"read(0, {PAGE}) head page", f"{head:.2f} ms"))

    # 6: memory stays bounded, in a fresh process.
    if args.memory_points > 0:
        m = args.memory_points
        print(f"memory: {m:,} points in a fresh process ...", flush=True)
        with scratch() as d:
            mem = run_child("memory", d, "--points", str(m))
        grown = (mem["after_kib"] - mem["before_kib"]) / 1024
        rows.append(Row(f"peak RSS growth, {m:,} points", f"{grown:.1f} MB", target="≤ 100 MB", passed=grown <= 100.0))
        rows.append(Row(f"  (peak RSS {mem['after_kib'] / 1024:.0f} MB; write rate)", us(mem["seconds"], m)))

    # A loop with real work (hashlib, which releases the GIL): what logging costs there.
    if args.work_us > 0:
        nw = max(1000, n // 10)
        print(f"real work: {nw:,} steps of ~{args.work_us:g} µs x {rounds} rounds ...", flush=True)
        buf = calibrate_work(args.work_us)
        t = interleaved(rounds, {"work": lambda d: work_only(buf, nw), "work+log": lambda d: work_and_log(d, buf, nw)})
        base, logged = median(t["work"]), median(t["work+log"])
        extra = median([b - a for a, b in zip(t["work"], t["work+log"], strict=True)])
        rows.append(Row("real work: step alone", us(base, nw)))
        rows.append(
            Row(
                "real work: step + log, end to end",
                us(logged, nw),
                us(base, nw),
                f"+{extra / nw * 1e6:.3f} µs/pt ({extra / base * 100:.1f}%)",
            )
        )
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
        f"{os.cpu_count()} CPUs - orjson {orjson.__version__}"
    )
    rows = bench(args)
    print()
    print_table(rows)
    missed = [r.name for r in rows if r.passed is False]
    print(
        f"\n{len(missed)} target(s) missed"
        + (": " + "; ".join(missed) if missed else "")
        + f" - {perf() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
