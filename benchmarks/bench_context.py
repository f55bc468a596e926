"""Run context and system metrics (issue 15): what they cost.

1. Start time of a run (``exp.run.start()``) with the run context on and off, its entry
   script inside a git repository of ``--files`` committed files (20,000 by default),
   interleaved rounds, medians: the context may add at most 200 ms.
2. The system-metrics sampler: CPU time of its thread per sample (real psutil probes,
   writing into a real experiment), as a share of one core at the default 10 s interval
   (target < 1 %); and, as a check, the whole process's CPU over a window with the
   sampler at a fast interval, scaled to the default one.

    .venv/bin/python benchmarks/bench_context.py [--files 20000] [--rounds 15] [--samples 200]

Prints PASS or MISS per target; exits non-zero only when the benchmark itself fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

from ml_dash import Experiment
from ml_dash.context import capture
from ml_dash.system_metrics import DEFAULT_INTERVAL, SystemSampler


def make_repo(folder: Path, files: int) -> Path:
    """A git repository with ``files`` small files in 100 folders, committed, plus ``train.py``."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}
    repo = folder / "repo"
    for i in range(files):
        sub = repo / f"pkg{i % 100:03d}"
        if i < 100:
            sub.mkdir(parents=True)
        (sub / f"mod{i}.py").write_text(f"X = {i}\n")
    (repo / "train.py").write_text("print('train')\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "many files"],
                 ["remote", "add", "origin", "https://u:t@git.example.com/big.git"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    (repo / "pkg000" / "mod0.py").write_text("X = -1\n")  # a dirty tree, as during real work
    return repo


def start_seconds(root: Path, entry: Path, context: bool, n: int) -> float:
    exp = Experiment(f"bench/context/run-{n}-{int(context)}", dash_root=root, entry=str(entry), context=context,
                     echo=False)
    started = time.perf_counter()
    exp.run.start()
    elapsed = time.perf_counter() - started
    exp.run.complete()
    return elapsed


def bench_start(folder: Path, files: int, rounds: int) -> bool:
    made = time.perf_counter()
    repo = make_repo(folder, files)
    print(f"git repository of {files:,} files made in {time.perf_counter() - made:.1f} s")
    entry = repo / "train.py"
    git = capture(["git"], entry=str(entry))["git"]
    assert git["dirty"] is True and git["commit"], git
    root = folder / ".dash"
    on: list[float] = []
    off: list[float] = []
    for n in range(rounds + 1):
        pair = [(True, on), (False, off)] if n % 2 else [(False, off), (True, on)]
        for context, times in pair:
            seconds = start_seconds(root, entry, context, n)
            if n:  # the first round warms caches and imports
                times.append(seconds)
    capture_alone = [0.0] * rounds
    for i in range(rounds):
        t = time.perf_counter()
        capture(entry=str(entry))
        capture_alone[i] = time.perf_counter() - t
    med_on, med_off = statistics.median(on), statistics.median(off)
    added = med_on - med_off
    print(f"start, context off: median {med_off * 1e3:.1f} ms (min {min(off) * 1e3:.1f}, max {max(off) * 1e3:.1f})")
    print(f"start, context on:  median {med_on * 1e3:.1f} ms (min {min(on) * 1e3:.1f}, max {max(on) * 1e3:.1f})")
    print(f"capture() alone:    median {statistics.median(capture_alone) * 1e3:.1f} ms")
    ok = added < 0.2
    print(f"added by the context: {added * 1e3:.1f} ms (ratio {med_on / med_off:.2f}x); target < 200 ms: "
          f"{'PASS' if ok else 'MISS'}")
    return ok


def bench_sampler(folder: Path, samples: int) -> bool:
    root = folder / ".dash-sampler"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failing probe would warn: fail the benchmark instead
        with Experiment("bench/context/sampler", dash_root=root, echo=False, context=False).run as exp:
            sampler = SystemSampler(exp.metrics("system"), 0.01).start()
            deadline = time.monotonic() + 120
            while sampler.samples < samples and time.monotonic() < deadline:
                time.sleep(0.05)
            sampler.stop()
            per_sample = sampler.cpu_seconds / sampler.samples
            stored = exp.metrics("system").stats()["totalDataPoints"]
    assert stored >= sampler.samples - 1, (stored, sampler.samples)
    share = per_sample / DEFAULT_INTERVAL
    ok = share < 0.01
    print(f"sampler: {sampler.samples} samples, {per_sample * 1e3:.2f} ms of thread CPU per sample "
          f"-> {share * 100:.4f} % of one core at {DEFAULT_INTERVAL:g} s; target < 1 %: {'PASS' if ok else 'MISS'}")

    # Whole-process check: an idle process for `window` seconds, without and with a 0.1 s sampler.
    window, fast = 3.0, 0.1
    cpu = {}
    for label, on in (("without", False), ("with", True)):
        with Experiment(f"bench/context/idle-{label}", dash_root=root, echo=False, context=False,
                        system_metrics=on, system_metrics_interval=fast).run:
            t = time.process_time()
            time.sleep(window)
            cpu[label] = time.process_time() - t
    extra = max(0.0, cpu["with"] - cpu["without"])
    scaled = extra / window * fast / DEFAULT_INTERVAL
    print(f"process CPU over {window:g} s idle: {cpu['without'] * 1e3:.1f} ms without, {cpu['with'] * 1e3:.1f} ms "
          f"with a {fast:g} s sampler ({window / fast:.0f} samples) -> {scaled * 100:.4f} % of one core at "
          f"{DEFAULT_INTERVAL:g} s")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ml-dash-bench-context-"))
    try:
        bench_start(folder, args.files, args.rounds)
        bench_sampler(folder, args.samples)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
