"""Crash safety with real processes: SIGKILL while logging, torn lines, resume, flush.

A child (tests/procs/crash_logger.py) logs metric points, log lines and track entries
in a loop and reports its progress; the parent kills it with SIGKILL at a random
moment and then checks the files it left behind, resumes the experiment and logs more.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import warnings
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment, LocalStore
from support.files import exp_dir, logs_file, metric_file, read_jsonl, track_file
from support.processes import LineWaiter, kill_child, start

PREFIX = "alice/crash/run-1"
METRIC = "train"
TOPIC = "robot/pose"
FLUSH_INTERVAL = 0.2
# On top of one flush interval: time for the writer thread to get the GIL and the CPU
# and to encode and write what piled up. Only points logged before
# ``kill_time - FLUSH_INTERVAL - SLACK`` are required on disk.
SLACK = 0.3
EXTRA = 50  # points/lines/entries logged after the resume


def _files(root: Path) -> dict[str, Path]:
    return {
        "metric": metric_file(root, PREFIX, METRIC),
        "logs": logs_file(root, PREFIX),
        "track": track_file(root, PREFIX, TOPIC),
    }


def _steps(kind: str, lines: list[dict[str, Any]]) -> list[int]:
    """The step ``i`` of every line, checking the line's own counter where it has one."""
    if kind == "metric":
        assert [line["index"] for line in lines] == list(range(len(lines))), "metric indexes are not 0..n-1"
        return [line["data"]["i"] for line in lines]
    if kind == "logs":
        assert [line["sequenceNumber"] for line in lines] == list(range(len(lines))), "sequenceNumbers not 0..n-1"
        for line in lines:
            assert line["message"] == f"step {line['metadata']['i']}"
        return [line["metadata"]["i"] for line in lines]
    times = [line["timestamp"] for line in lines]
    assert all(a < b for a, b in pairwise(times)), "track timestamps are not increasing"
    return [line["i"] for line in lines]


def _check_after_kill(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every complete line parses and the steps are exactly 0..n-1; returns (n, torn tail)."""
    found = {}
    for kind, path in _files(root).items():
        lines, tail = read_jsonl(path)
        assert _steps(kind, lines) == list(range(len(lines))), f"{kind}: steps on disk are not 0..n-1"
        found[kind] = (len(lines), tail)
    # Whole-file JSON documents are replaced atomically: never half written.
    info = json.loads((exp_dir(root, PREFIX) / "experiment.json").read_bytes())
    assert info["status"] == "RUNNING"
    for meta in exp_dir(root, PREFIX).rglob("metadata.json"):
        json.loads(meta.read_bytes())
    return found


def _required_steps(progress: Path, kill_time: float) -> dict[str, int]:
    """Per stream: how many steps the child had logged by ``kill_time - FLUSH_INTERVAL - SLACK``
    (counting what was on disk when it started)."""
    done = 0
    cutoff = kill_time - FLUSH_INTERVAL - SLACK
    raw = progress.read_bytes()
    first, *lines = raw.split(b"\n")[:-1]  # a last line without newline may be torn
    word, *counts = first.split()
    assert word == b"start"
    for line in lines:
        step, at = line.split()
        if float(at) <= cutoff:
            done = max(done, int(step) + 1)
    return {kind: int(count) + done for kind, count in zip(("metric", "logs", "track"), counts, strict=True)}


def _force_torn_tail(path: Path) -> bytes:
    """Append the first half of a copy of the last line (no newline): a torn write."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    model = lines[-2] if len(lines) >= 2 else b'{"index":0,"data":{"i":0,"loss":1.0}}'
    half = model[: max(1, len(model) // 2)]
    with open(path, "ab") as fh:
        fh.write(half)
    return half


def _resume_and_check(
    root: Path, found: dict[str, tuple[int, bytes]], set_aside: dict[str, bytes] | None = None
) -> None:
    """Reopen the experiment, log EXTRA more of everything, check gapless and torn handling.

    ``set_aside``: what earlier resumes already moved to each ``.torn`` file.
    """
    paths = _files(root)
    set_aside = set_aside or {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # A long flush interval: the appends (and the torn-tail repair) happen in
        # exp.flush() below, on this thread.
        exp = Experiment(PREFIX, dash_root=root, flush_interval=60)
        exp.run.start()
        metric = exp.metrics(METRIC)
        track = exp.tracks(TOPIC)
        start_of = {kind: n for kind, (n, _tail) in found.items()}
        for j in range(EXTRA):
            metric.log(i=start_of["metric"] + j, loss=0.0)
            exp.log(f"step {start_of['logs'] + j}", metadata={"i": start_of["logs"] + j})
            track.append(i=start_of["track"] + j, x=0.0)
        exp.flush()
        assert metric.stats()["totalDataPoints"] == start_of["metric"] + EXTRA
        page = metric.read(start_of["metric"], 1000)
        assert [p["index"] for p in page["data"]] == list(range(start_of["metric"], start_of["metric"] + EXTRA))
        report = exp.run.complete()
    assert report is not None and report.ok, str(report)

    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    for kind, path in paths.items():
        n, tail = found[kind]
        lines, new_tail = read_jsonl(path)
        assert new_tail == b"", f"{kind}: file does not end with a newline after the resume"
        assert _steps(kind, lines) == list(range(n + EXTRA)), f"{kind}: not exactly 0..n-1 after the resume"
        torn_path = Path(str(path) + ".torn")
        before = set_aside.get(kind, b"")
        if tail:
            assert torn_path.exists(), f"{kind}: torn tail was not set aside"
            assert torn_path.read_bytes() == before + tail + b"\n"
            assert any(str(path) in m and ".torn" in m for m in messages), f"{kind}: no warning about the torn tail"
        else:
            assert not any(str(path) in m and "incomplete line" in m for m in messages)
            if before:
                assert torn_path.read_bytes() == before
            else:
                assert not torn_path.exists(), f"{kind}: a .torn file appeared without a torn tail"
    assert json.loads((exp_dir(root, PREFIX) / "experiment.json").read_bytes())["status"] == "COMPLETED"


def _kill_once(root: Path, progress: Path, rng: random.Random, resume: bool) -> dict[str, tuple[int, bytes]]:
    """Run the logging child, SIGKILL it at a random moment, check the files it left."""
    options = f"--mode loop --flush-interval {FLUSH_INTERVAL} --every 16 --seed {rng.randrange(1 << 30)}".split()
    if resume:
        options.append("--resume")
    proc = start("procs/crash_logger.py", "--root", root, "--prefix", PREFIX, "--progress", progress, *options)
    try:
        LineWaiter(proc).wait_for("ready")
        time.sleep(rng.uniform(0.05, 1.6))
        assert proc.poll() is None, "the child stopped logging on its own"
        kill_time = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        kill_child(proc)

    found = _check_after_kill(root)
    required = _required_steps(progress, kill_time)
    for kind, (n, _tail) in found.items():
        assert n >= required[kind], (
            f"{kind}: only {n} steps on disk, but step {required[kind] - 1} was logged more than "
            f"{FLUSH_INTERVAL + SLACK:.2f}s before the kill"
        )
    return found


def _kill_at_random_moment(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    root = tmp_path / "dash"
    found = _kill_once(root, tmp_path / "progress.txt", rng, resume=False)
    # Force a torn last line in half of the runs (kill -9 rarely tears one by itself).
    if seed % 2:
        for kind, path in _files(root).items():
            n, tail = found[kind]
            if not tail and path.exists():
                found[kind] = (n, _force_torn_tail(path))
    _resume_and_check(root, found)


def _crash_again_and_again(tmp_path: Path, seed: int, generations: int) -> None:
    """Each child resumes what the one before left (torn tails included) and is killed too."""
    rng = random.Random(seed)
    root = tmp_path / "dash"
    set_aside: dict[str, bytes] = {}
    previous: dict[str, tuple[int, bytes]] = {}
    for generation in range(generations):
        found = _kill_once(root, tmp_path / f"progress-{generation}.txt", rng, resume=generation > 0)
        for kind, (n, tail) in found.items():
            old_n, old_tail = previous.get(kind, (0, b""))
            if old_tail and (n, tail) != (old_n, old_tail):
                set_aside[kind] = set_aside.get(kind, b"") + old_tail + b"\n"  # the child repaired it
            if not tail and rng.random() < 0.5 and _files(root)[kind].exists():
                found[kind] = (n, _force_torn_tail(_files(root)[kind]))
        previous = found
    _resume_and_check(root, previous, set_aside)


@pytest.mark.parametrize("seed", range(5))
def test_kill9_while_logging(tmp_path: Path, seed: int) -> None:
    _kill_at_random_moment(tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 135))
def test_kill9_while_logging_many(tmp_path: Path, seed: int) -> None:
    _kill_at_random_moment(tmp_path, seed)


def test_kill9_again_and_again_then_resume(tmp_path: Path) -> None:
    _crash_again_and_again(tmp_path, seed=7, generations=3)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_kill9_again_and_again_then_resume_many(tmp_path: Path, seed: int) -> None:
    _crash_again_and_again(tmp_path, seed=1000 + seed, generations=12)


def _run_flush_child(root: Path, count: int) -> None:
    # A flush interval of an hour: only exp.flush() (and the writer's wake-up every
    # 4096 points) writes anything.
    options = f"--mode flush --flush-interval 3600 --count {count}".split()
    proc = start("procs/crash_logger.py", "--root", root, "--prefix", PREFIX, *options)
    try:
        LineWaiter(proc).wait_for("flushed")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        kill_child(proc)


@pytest.mark.parametrize("count", [3000, 10_000])
def test_flush_makes_everything_durable_at_once(tmp_path: Path, count: int) -> None:
    root = tmp_path / "dash"
    _run_flush_child(root, count)
    found = _check_after_kill(root)
    for kind, (n, tail) in found.items():
        assert n == count, f"{kind}: {n} of {count} steps on disk after exp.flush()"
        assert tail == b""
    # flush() also refreshed the per-stream metadata.
    meta = json.loads((metric_file(root, PREFIX, METRIC).parent / "metadata.json").read_bytes())
    assert meta["totalDataPoints"] == count
    assert meta["nextIndex"] == count


def test_torn_tail_is_ignored_by_readers_and_set_aside_on_resume(tmp_path: Path) -> None:
    root = tmp_path / "dash"
    _run_flush_child(root, 500)
    found = _check_after_kill(root)
    for kind, path in _files(root).items():
        found[kind] = (found[kind][0], _force_torn_tail(path))

    # Readers never look past the last newline, and do not repair anything.
    store = LocalStore(root)
    page = store.read_metrics(PREFIX, METRIC, 0, 10_000)
    assert [p["index"] for p in page["data"]] == list(range(500))
    assert page["total"] == 500
    assert store.metric_stats(PREFIX, METRIC)["totalDataPoints"] == 500
    assert store.query_logs(PREFIX, {"limit": 10_000})["total"] == 500
    assert [e["i"] for e in store.read_tracks(PREFIX, TOPIC)] == list(range(500))
    for path in _files(root).values():
        assert not Path(str(path) + ".torn").exists()

    _resume_and_check(root, found)


def test_torn_tail_repaired_by_another_live_writer(tmp_path: Path) -> None:
    """A writer that already had the file open notices a crashed writer's torn tail too."""
    root = tmp_path / "dash"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp = Experiment(PREFIX, dash_root=root, flush_interval=60)
        exp.run.start()
        metric = exp.metrics(METRIC)
        for i in range(10):
            metric.log(i=i)
        metric.flush()
        path = metric_file(root, PREFIX, METRIC)
        # Another process dies in the middle of its append.
        tail = _force_torn_tail(path)
        for i in range(10, 20):
            metric.log(i=i)
        metric.flush()
        assert [p["data"]["i"] for p in metric.read(0, 100)["data"]] == list(range(20))
        report = exp.run.complete()
    assert report is not None and report.ok
    lines, new_tail = read_jsonl(path)
    assert new_tail == b""
    assert [line["index"] for line in lines] == list(range(20))
    assert Path(str(path) + ".torn").read_bytes() == tail + b"\n"
    assert any(".torn" in str(w.message) for w in caught)
