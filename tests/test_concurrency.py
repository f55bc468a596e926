"""Many writers, one experiment: processes and threads logging into the same streams.

Every writer tags its records with its id and a per-writer step ``i``. Afterwards the
files must hold every record exactly once, the counters (metric ``index``, log
``sequenceNumber``) must be exactly 0..n-1, and each writer's own records must keep
their relative order.
"""

from __future__ import annotations

import subprocess
import threading
from collections import defaultdict
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment, LocalStore
from support.files import exp_dir, logs_file, metric_file, read_jsonl, track_file
from support.processes import LineWaiter, finish, kill_child, last_json, send_line, start

PREFIX = "alice/concurrency/run-1"
METRIC = "shared"
TOPIC = "shared/topic"


# -- checks ------------------------------------------------------------------------------


def check_metric(root: Path, writers: int, per_writer: int) -> None:
    lines, tail = read_jsonl(metric_file(root, PREFIX, METRIC))
    assert tail == b""
    total = writers * per_writer
    assert len(lines) == total, f"{len(lines)} points stored, {total} logged"
    assert [line["index"] for line in lines] == list(range(total)), "indexes are not exactly 0..n-1"
    by_writer: dict[int, list[int]] = defaultdict(list)
    for line in lines:
        by_writer[line["data"]["w"]].append(line["data"]["i"])
    assert sorted(by_writer) == list(range(writers))
    for w, steps in by_writer.items():
        assert steps == list(range(per_writer)), f"writer {w}: points missing, doubled or out of order"

    # The store's own readers agree (bisection over a file written by many writers).
    store = LocalStore(root)
    assert store.metric_stats(PREFIX, METRIC)["totalDataPoints"] == total
    for start_index in (0, 1, total // 3, total - 1, total):
        page = store.read_metrics(PREFIX, METRIC, start_index, 5)
        want = list(range(start_index, min(start_index + 5, total)))
        assert [p["index"] for p in page["data"]] == want
        assert page["total"] == total


def check_logs(root: Path, writers: int, per_writer: int) -> None:
    lines, tail = read_jsonl(logs_file(root, PREFIX))
    assert tail == b""
    total = writers * per_writer
    assert len(lines) == total, f"{len(lines)} log lines stored, {total} logged"
    assert [line["sequenceNumber"] for line in lines] == list(range(total)), "sequenceNumbers are not 0..n-1"
    by_writer: dict[int, list[int]] = defaultdict(list)
    for line in lines:
        meta = line["metadata"]
        assert line["message"] == f"w{meta['w']} {meta['i']}"
        by_writer[meta["w"]].append(meta["i"])
    for w in range(writers):
        assert by_writer[w] == list(range(per_writer)), f"writer {w}: log lines missing, doubled or out of order"
    page = LocalStore(root).query_logs(PREFIX, {"offset": total - 3, "limit": 10})
    assert [r["sequenceNumber"] for r in page["logs"]] == list(range(total - 3, total))


def check_tracks(root: Path, writers: int, per_writer: int) -> None:
    # Raw lines: every entry exactly once, in each writer's order.
    lines, tail = read_jsonl(track_file(root, PREFIX, TOPIC))
    assert tail == b""
    raw: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for line in lines:
        for w in range(writers):
            if f"w{w}" in line:
                raw[w].append((line["timestamp"], line[f"w{w}"]))
    for w in range(writers):
        assert [i for _ts, i in raw[w]] == list(range(per_writer)), f"writer {w}: track entries missing or reordered"
        times = [ts for ts, _i in raw[w]]
        assert all(a < b for a, b in pairwise(times)), f"writer {w}: track times not strictly increasing"

    # Read back (equal timestamps of different writers merge; their fields differ).
    entries = LocalStore(root).read_tracks(PREFIX, TOPIC)
    for w in range(writers):
        seen = [e[f"w{w}"] for e in entries if f"w{w}" in e]
        assert seen == list(range(per_writer)), f"writer {w}: read_tracks lost or reordered entries"


# -- processes ---------------------------------------------------------------------------


def start_writer(root: Path, w: int, points: int, logs: int, tracks: int) -> subprocess.Popen[bytes]:
    """Start tests/procs/concurrent_logger.py as writer ``w``; it waits for "go" on stdin."""
    # A short flush interval: many small batches, so many lock hand-overs between writers.
    options = f"--worker {w} --points {points} --logs {logs} --tracks {tracks} --flush-interval 0.02".split()
    return start("procs/concurrent_logger.py", "--root", root, "--prefix", PREFIX, *options, stdin=subprocess.PIPE)


def run_processes(root: Path, writers: int, points: int, logs: int, tracks: int) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for w in range(writers):
            procs.append(start_writer(root, w, points, logs, tracks))
        for proc in procs:
            LineWaiter(proc).wait_for("ready")
        for proc in procs:  # start together
            send_line(proc)
        for proc in procs:
            out, err = finish(proc, timeout=600)
            assert proc.returncode == 0, err
            report = last_json(out)
            assert report["ok"], report["report"]
    finally:
        for proc in procs:
            kill_child(proc)


def test_processes_one_metric(dash_root: Path) -> None:
    run_processes(dash_root, writers=4, points=20_000, logs=0, tracks=0)
    check_metric(dash_root, 4, 20_000)


def test_processes_logs_and_tracks(dash_root: Path) -> None:
    run_processes(dash_root, writers=4, points=2_000, logs=5_000, tracks=5_000)
    check_metric(dash_root, 4, 2_000)
    check_logs(dash_root, 4, 5_000)
    check_tracks(dash_root, 4, 5_000)


@pytest.mark.slow
def test_processes_one_metric_full(dash_root: Path) -> None:
    run_processes(dash_root, writers=4, points=100_000, logs=0, tracks=0)
    check_metric(dash_root, 4, 100_000)


@pytest.mark.slow
def test_processes_everything_full(dash_root: Path) -> None:
    run_processes(dash_root, writers=4, points=100_000, logs=50_000, tracks=50_000)
    check_metric(dash_root, 4, 100_000)
    check_logs(dash_root, 4, 50_000)
    check_tracks(dash_root, 4, 50_000)


# -- threads -----------------------------------------------------------------------------


def run_threads(threads: int, body: Callable[[int, threading.Barrier], Any]) -> None:
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def target(w: int) -> None:
        try:
            body(w, barrier)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    pool = [threading.Thread(target=target, args=(w,), name=f"writer-{w}") for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(600)
        assert not t.is_alive(), "writer thread hangs (hang guard)"
    if errors:
        raise errors[0]


def log_steps(exp: Experiment, w: int, points: int, logs: int, tracks: int) -> None:
    metric = exp.metrics(METRIC)
    track = exp.tracks(TOPIC)
    field = f"w{w}"
    for i in range(max(points, logs, tracks)):
        if i < points:
            metric.log(w=w, i=i)
        if i < logs:
            exp.log(f"w{w} {i}", metadata={"w": w, "i": i})
        if i < tracks:
            track.append(**{field: i})


def threads_one_experiment(root: Path, threads: int, points: int, logs: int, tracks: int) -> None:
    exp = Experiment(PREFIX, dash_root=root, flush_interval=0.2)
    exp.run.start()

    def body(w: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        log_steps(exp, w, points, logs, tracks)

    run_threads(threads, body)
    report = exp.run.complete()
    assert report is not None and report.ok, str(report)


def threads_many_experiments(root: Path, threads: int, points: int, logs: int, tracks: int) -> None:
    def body(w: int, barrier: threading.Barrier) -> None:
        exp = Experiment(PREFIX, dash_root=root, flush_interval=0.2, join=True)  # several writers on purpose
        exp.run.start()
        barrier.wait()
        log_steps(exp, w, points, logs, tracks)
        report = exp.run.complete()
        assert report is not None and report.ok, str(report)

    run_threads(threads, body)


@pytest.mark.parametrize("layout", [threads_one_experiment, threads_many_experiments], ids=["one-exp", "many-exps"])
def test_threads(dash_root: Path, layout: Callable[..., None]) -> None:
    layout(dash_root, threads=4, points=20_000, logs=3_000, tracks=3_000)
    check_metric(dash_root, 4, 20_000)
    check_logs(dash_root, 4, 3_000)
    check_tracks(dash_root, 4, 3_000)


@pytest.mark.slow
@pytest.mark.parametrize("layout", [threads_one_experiment, threads_many_experiments], ids=["one-exp", "many-exps"])
def test_threads_full(dash_root: Path, layout: Callable[..., None]) -> None:
    layout(dash_root, threads=8, points=50_000, logs=20_000, tracks=20_000)
    check_metric(dash_root, 8, 50_000)
    check_logs(dash_root, 8, 20_000)
    check_tracks(dash_root, 8, 20_000)


def test_threads_and_processes_together(dash_root: Path) -> None:
    """Two processes and, at the same time, two threads of this process."""
    procs = [start_writer(dash_root, w, 10_000, 1_000, 1_000) for w in (2, 3)]
    try:
        for proc in procs:
            LineWaiter(proc).wait_for("ready")
        exp = Experiment(PREFIX, dash_root=dash_root, flush_interval=0.2, join=True)  # beside the processes
        exp.run.start()

        def body(w: int, barrier: threading.Barrier) -> None:
            barrier.wait()
            if w == 0:
                for proc in procs:
                    send_line(proc)
            log_steps(exp, w, 10_000, 1_000, 1_000)

        run_threads(2, body)
        report = exp.run.complete()
        assert report is not None and report.ok, str(report)
        for proc in procs:
            out, err = finish(proc, timeout=600)
            assert proc.returncode == 0, err
            assert last_json(out)["ok"]
    finally:
        for proc in procs:
            kill_child(proc)
    check_metric(dash_root, 4, 10_000)
    check_logs(dash_root, 4, 1_000)
    check_tracks(dash_root, 4, 1_000)
    assert (exp_dir(dash_root, PREFIX) / "experiment.json").exists()
