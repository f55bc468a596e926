"""Write failures never reach the training loop; bad input fails loudly and loses nothing else.

The failures are real: a file size limit (RLIMIT_FSIZE, EFBIG: what a full disk looks
like to a writer) and read-only folders (chmod; when the tests run as root the child
process drops CAP_DAC_OVERRIDE first, so the permission bits apply to it). Both run in
a child process (tests/procs/failing_logger.py) that reports what happened as JSON.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import re
import subprocess
import threading
import time
import warnings
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml_dash import Experiment, InvalidNameError, InvalidValueError, LocalStore, StorageError
from ml_dash.records import AppendResult
from ml_dash.writer import Writer
from support.files import exp_dir, logs_file, metric_file, read_jsonl, track_file
from support.processes import LineWaiter, finish, last_json, send_line, start

PREFIX = "alice/failures/run-1"
METRIC = "train"
TOPIC = "robot/pose"
CLOSE_TIMEOUT = 2.0
# Hang guard for close(): close_timeout plus generous room for a loaded machine.
CLOSE_GUARD = CLOSE_TIMEOUT + 20.0


def run_failing(root: Path, options: str) -> dict[str, Any]:
    """Run tests/procs/failing_logger.py with ``options`` (see its docstring)."""
    proc = start(
        "procs/failing_logger.py", "--root", root, "--prefix", PREFIX, "--close-timeout", CLOSE_TIMEOUT,
        *options.split(),
    )
    out, err = finish(proc, timeout=180)
    assert proc.returncode == 0, err
    result = last_json(out)
    assert result["exceptions"] == [], "a logging call raised:\n" + "\n".join(result["exceptions"])
    assert result["close_seconds"] < CLOSE_GUARD, "close() did not return within its timeout (hang guard)"
    assert result["close_report_is_report"], "exp.close_report is not the report complete() returned"
    return result


def steps_of(kind: str, path: Path) -> list[int]:
    """The step ``i`` of every stored record; checks the file's own counters are 0..n-1."""
    lines, tail = read_jsonl(path)
    assert tail == b"", f"{path} ends in a torn line"
    if kind == "metric":
        assert [line["index"] for line in lines] == list(range(len(lines))), "metric indexes are not 0..n-1"
        return [line["data"]["i"] for line in lines]
    if kind == "logs":
        assert [line["sequenceNumber"] for line in lines] == list(range(len(lines))), "sequenceNumbers not 0..n-1"
        return [line["metadata"]["i"] for line in lines]
    return [line["i"] for line in lines]


def stream_files(root: Path, metric: str = METRIC, topic: str = TOPIC) -> dict[str, tuple[str, Path]]:
    return {
        "metric": (f"metrics {metric!r}", metric_file(root, PREFIX, metric)),
        "logs": ("logs", logs_file(root, PREFIX)),
        "track": (f"tracks {topic!r}", track_file(root, PREFIX, topic)),
    }


def runtime_warnings(result: dict[str, Any], text: str) -> list[str]:
    return [w for w in result["warnings"] if w.startswith("RuntimeWarning") and text in w]


# -- a full disk (RLIMIT_FSIZE) ---------------------------------------------------------------


def test_disk_full_never_raises_and_close_reports_what_was_not_written(dash_root: Path) -> None:
    limit = 64 * 1024
    result = run_failing(dash_root, f"--failure fsize --then close --limit {limit} --before 300 --during 3000")
    assert result["failing_noticed"]
    assert runtime_warnings(result, "cannot write"), result["warnings"]
    assert runtime_warnings(result, "closing"), "complete() did not warn that data was left unwritten"
    report = result["report"]
    assert not report["ok"]
    assert report["dropped"] == {} and report["rejected"] == {}
    assert f"[Errno {errno.EFBIG}]" in (report["last_error"] or ""), report
    logged = result["logged"]
    assert logged == 3300
    for kind, (label, path) in stream_files(dash_root).items():
        steps = steps_of(kind, path)
        # What is on disk is exactly the oldest steps (at least those flushed before the
        # disk filled up); the rest is counted as not written.
        assert steps == list(range(len(steps))), f"{kind}: not a gapless prefix of what was logged"
        assert len(steps) >= 300, f"{kind}: steps written by exp.flush() before the failure are gone"
        assert len(steps) + report["unwritten"].get(label, 0) == logged, (kind, len(steps), report)
        assert report["unwritten"].get(label, 0) > 0, f"{kind}: expected the size limit to stop it"
        assert path.stat().st_size <= limit


def test_one_full_file_does_not_block_the_other_streams(dash_root: Path) -> None:
    """Only the log file is at its size limit (think: a 4 GiB FAT32 file, or this one
    file hitting RLIMIT_FSIZE). Metrics and tracks still have room: they must be written,
    and the report must name only the logs as not written."""
    result = run_failing(dash_root, "--failure fsize --prefill-logs --then close --limit 65536 --before 0 --during 500")
    assert result["failing_noticed"]
    report = result["report"]
    assert f"[Errno {errno.EFBIG}]" in (report["last_error"] or ""), report
    files = stream_files(dash_root)
    assert steps_of("metric", files["metric"][1]) == list(range(500)), report["text"]
    assert steps_of("track", files["track"][1]) == list(range(500)), report["text"]
    assert [i for i in steps_of("logs", files["logs"][1]) if i >= 0] == []
    assert report["unwritten"] == {"logs": 500}, report["text"]


def test_disk_full_then_space_freed_writes_everything_in_order(dash_root: Path) -> None:
    result = run_failing(dash_root, "--failure fsize --then recover --limit 65536 --before 0 --during 3000 --after 200")
    assert result["failing_noticed"]
    assert runtime_warnings(result, "cannot write")
    assert runtime_warnings(result, "writing works again")
    assert result["report"]["ok"], result["report"]["text"]
    assert result["logged"] == 3200
    for kind, (_label, path) in stream_files(dash_root).items():
        assert steps_of(kind, path) == list(range(3200)), f"{kind}: kept records not written in order"


def test_disk_full_memory_stays_bounded_and_drops_are_counted(dash_root: Path) -> None:
    bound = 500
    result = run_failing(
        dash_root,
        f"--failure fsize --then recover --limit 32768 --before 0 --during 6000 --after 100 --max-pending {bound}",
    )
    assert result["failing_noticed"]
    assert result["max_pending_seen"] <= bound
    report = result["report"]
    assert not report["ok"] and report["unwritten"] == {} and report["rejected"] == {}
    assert sum(report["dropped"].values()) > 0, report
    assert "dropped" in report["text"]
    logged = result["logged"]
    assert logged == 6100
    for kind, (label, path) in stream_files(dash_root).items():
        steps = steps_of(kind, path)
        assert len(steps) == logged - report["dropped"].get(label, 0), (kind, len(steps), report)
        assert all(a < b for a, b in pairwise(steps)), f"{kind}: kept records out of order"
        assert steps[-100:] == list(range(6000, 6100)), f"{kind}: steps after the recovery are missing"


# -- read-only folders ------------------------------------------------------------------------


def test_readonly_folder_never_raises_and_recovers(dash_root: Path) -> None:
    result = run_failing(dash_root, "--failure readonly --then recover --before 100 --during 1000 --after 100")
    if not result["readonly_effective"]:
        pytest.skip("chmod does not stop writes here (no way to drop CAP_DAC_OVERRIDE?)")
    assert result["failing_noticed"]
    assert runtime_warnings(result, "cannot write")
    assert runtime_warnings(result, "writing works again")
    assert result["report"]["ok"], result["report"]["text"]
    new_metric, new_topic = result["streams"]
    assert result["logged"] == 1200
    # The streams from before the failure: steps 0..99.
    assert steps_of("metric", metric_file(dash_root, PREFIX, METRIC)) == list(range(100))
    assert steps_of("track", track_file(dash_root, PREFIX, TOPIC)) == list(range(100))
    # Created while the folder was read-only: everything arrives once it is writable.
    assert steps_of("metric", metric_file(dash_root, PREFIX, new_metric)) == list(range(100, 1200))
    assert steps_of("track", track_file(dash_root, PREFIX, new_topic)) == list(range(100, 1200))
    assert steps_of("logs", logs_file(dash_root, PREFIX)) == list(range(1200))
    # The stream metadata and the final status were written after the recovery, too.
    assert (metric_file(dash_root, PREFIX, new_metric).parent / "metadata.json").exists()
    assert '"COMPLETED"' in (exp_dir(dash_root, PREFIX) / "experiment.json").read_text()


def test_readonly_folder_close_reports_unwritten(dash_root: Path) -> None:
    result = run_failing(dash_root, "--failure readonly --then close --before 100 --during 1000")
    if not result["readonly_effective"]:
        pytest.skip("chmod does not stop writes here (no way to drop CAP_DAC_OVERRIDE?)")
    assert result["failing_noticed"]
    assert runtime_warnings(result, "cannot write")
    report = result["report"]
    assert not report["ok"]
    new_metric, new_topic = result["streams"]
    assert report["unwritten"][f"metrics {new_metric!r}"] == 1000, report
    assert report["unwritten"][f"tracks {new_topic!r}"] == 1000, report
    assert report["dropped"] == {} and report["rejected"] == {}
    assert "Permission denied" in (report["last_error"] or ""), report
    assert not metric_file(dash_root, PREFIX, new_metric).parent.exists()
    # Files opened before the chmod stay writable: those records are all there.
    assert steps_of("metric", metric_file(dash_root, PREFIX, METRIC)) == list(range(100))
    assert steps_of("logs", logs_file(dash_root, PREFIX)) == list(range(1100))


# -- a store call that blocks --------------------------------------------------------------------


def test_close_is_bounded_when_the_store_blocks(dash_root: Path) -> None:
    """Another process holds the data file's lock and never lets go (stopped with
    SIGSTOP, hung on NFS, ...). Logging goes on; complete() returns after about
    close_timeout and reports the points as not written; it does not wait for the lock."""
    close_timeout = 1.0
    guard = close_timeout + 8.0  # hang guard: logging 1000 points, a 0.5 s pause, close
    options = f"--points 1000 --close-timeout {close_timeout}".split()
    proc = start("procs/stuck_logger.py", "--root", dash_root, "--prefix", PREFIX, *options, stdin=subprocess.PIPE)
    lock_fd = -1
    hung = False
    try:
        LineWaiter(proc).wait_for("ready")
        lock_fd = os.open(metric_file(dash_root, PREFIX, "m"), os.O_RDONLY)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        send_line(proc)
        try:
            out, err = proc.communicate(timeout=guard)
        except subprocess.TimeoutExpired:
            hung = True
    finally:
        if lock_fd >= 0:
            os.close(lock_fd)  # releases the lock: a hung child can finish now
    if hung:
        out, err = finish(proc, timeout=60)
        pytest.fail(
            f"complete() did not return while the lock was held ({guard:.0f}s hang guard); "
            f"after the lock was released the child reported: {out.strip()[-600:]}"
        )
    assert proc.returncode == 0, err
    result = last_json(out)
    assert result["exceptions"] == []
    assert result["close_seconds"] < close_timeout + 10
    report = result["report"]
    assert not report["ok"]
    # Every point that is not on disk is accounted for (the batch stuck in the store too).
    on_disk = len(read_jsonl(metric_file(dash_root, PREFIX, "m"))[0])
    assert on_disk + report["unwritten"].get("metrics 'm'", 0) + report["dropped"].get("metrics 'm'", 0) == 1001, report


# -- the Writer over a store that fails for a while -------------------------------------------


class FlakyStore(LocalStore):
    """A real LocalStore whose metric appends fail (ENOSPC) while ``failing`` is set."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.failing = threading.Event()
        self.broken: str | None = None  # a stream that always fails

    def append_metrics(
        self, prefix: str, name: str, points: list[dict[str, Any]], batch_id: str | None = None
    ) -> AppendResult:
        if self.failing.is_set():
            raise StorageError(f"cannot write: {os.strerror(errno.ENOSPC)}")
        if name == self.broken:
            raise StorageError(f"cannot write: {os.strerror(errno.EACCES)}")
        return super().append_metrics(prefix, name, points, batch_id)


def test_writer_keeps_order_bounds_memory_and_counts_drops(dash_root: Path) -> None:
    store = FlakyStore(dash_root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer = Writer(PREFIX, store, flush_interval=0.05, max_pending=300)
        ch = writer.channel("metrics", "m")
        now = time.time()

        def log(i: int) -> None:
            ch.queue.append({"i": i, "_ts": now + i * 1e-3})

        for i in range(50):
            log(i)
        writer.flush()
        store.failing.set()
        for i in range(50, 1050):
            log(i)
            if i % 100 == 0:
                writer.flush()  # never raises
                assert writer._pending_total <= 300
        writer.flush()
        assert writer._pending_total <= 300
        store.failing.clear()
        writer.flush()  # an explicit flush retries at once
        for i in range(1050, 1100):
            log(i)
        report = writer.close(10)
    assert report.unwritten == {} and report.rejected == {}
    assert report.dropped == {"metrics 'm'": 700}
    steps = steps_of("metric", metric_file(dash_root, PREFIX, "m"))
    # The oldest kept, the newest dropped; then the points after the recovery.
    assert steps == [*range(350), *range(1050, 1100)]
    messages = [str(w.message) for w in caught]
    assert any("cannot write" in m for m in messages)
    assert any("writing works again" in m for m in messages)


def test_writer_one_failing_stream_does_not_starve_the_others(dash_root: Path) -> None:
    """A stream that can never be written (its file cannot be created) must not keep
    the streams behind it from being written, neither while running nor at close."""
    store = FlakyStore(dash_root)
    store.broken = "broken"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer = Writer(PREFIX, store, flush_interval=0.05)
        broken = writer.channel("metrics", "broken")
        fine = writer.channel("metrics", "fine")
        for i in range(100):
            broken.queue.append({"i": i, "_ts": 1.0 + i})
            fine.queue.append({"i": i, "_ts": 1.0 + i})
        writer.flush()
        time.sleep(0.5)  # several background retries
        writer.flush()
        running = len(read_jsonl(metric_file(dash_root, PREFIX, "fine"))[0])
        report = writer.close(2)
    assert report.unwritten == {"metrics 'broken'": 100}, str(report)
    assert steps_of("metric", metric_file(dash_root, PREFIX, "fine")) == list(range(100))
    assert running == 100, "the healthy stream waited behind the broken one"


def test_writer_retries_in_the_background(dash_root: Path) -> None:
    """No flush calls at all: the background thread retries and catches up by itself."""
    store = FlakyStore(dash_root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer = Writer(PREFIX, store, flush_interval=0.05)
        ch = writer.channel("metrics", "m")
        store.failing.set()
        for i in range(2000):
            ch.queue.append({"i": i, "_ts": 1.0 + i})
            if i == 1000:
                deadline = time.monotonic() + 30
                while writer.last_error is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert writer.last_error is not None and "No space left" in writer.last_error
                store.failing.clear()
        deadline = time.monotonic() + 60  # hang guard
        while time.monotonic() < deadline:
            lines, _ = read_jsonl(metric_file(dash_root, PREFIX, "m"))
            if len(lines) >= 2000:
                break
            time.sleep(0.05)
        report = writer.close(10)
    assert report.ok, str(report)
    assert steps_of("metric", metric_file(dash_root, PREFIX, "m")) == list(range(2000))


# -- bad names ------------------------------------------------------------------------------

BAD_NAMES = [
    "",
    ".",
    "..",
    "/x",
    "/etc/passwd",
    "a//b",
    "a/",
    "a/../b",
    "../escape",
    "nul\x00byte",
    "new\nline",
    "tab\tname",
    "del\x7f",
    "x" * 513,
    "a/" + "b" * 256,  # one segment over the segment limit
    " padded",
]


def _names(name: str, message: str) -> bool:
    return repr(name) in message or (len(name) > 40 and repr(name[:40]) in message)


def _only_expected_folders(root: Path) -> None:
    """Nothing was created outside the experiment's own folder (no escape via the name)."""
    inside = exp_dir(root, PREFIX)
    for folder, _dirs, _files in os.walk(root):
        path = Path(folder)
        assert path == root or inside == path or inside in path.parents or path in inside.parents, path
    assert not Path("/x").exists()


@pytest.mark.parametrize("kind", ["metric", "track"])
def test_bad_stream_names_raise_and_lose_nothing(dash_root: Path, kind: str) -> None:
    exp = Experiment(PREFIX, dash_root=dash_root, flush_interval=60)
    exp.run.start()
    metric, track = exp.metrics("good"), exp.tracks("good/topic")
    i = 0
    # None names the unnamed metric stream (as in the ML-Dash SDK), never a topic.
    for name in [*BAD_NAMES, 5, *([None] if kind == "track" else [])]:
        metric.log(i=i)
        track.append(i=i)
        i += 1
        with pytest.raises(InvalidNameError) as info:
            if kind == "metric":
                exp.metrics(name)  # type: ignore[arg-type]
            else:
                exp.tracks(name)  # type: ignore[arg-type]
        if isinstance(name, str) and name:
            assert _names(name, str(info.value)), str(info.value)
    metric.log(i=i)
    track.append(i=i)
    report = exp.run.complete()
    assert report is not None and report.ok, str(report)
    assert steps_of("metric", metric_file(dash_root, PREFIX, "good")) == list(range(i + 1))
    assert steps_of("track", track_file(dash_root, PREFIX, "good/topic")) == list(range(i + 1))
    _only_expected_folders(dash_root)


@pytest.mark.parametrize(
    "prefix", ["alice/proj/" + n for n in BAD_NAMES if n and not n.startswith("/")] + ["", "..", "/x/y/z"]
)
def test_bad_prefixes_raise_before_anything_is_written(dash_root: Path, prefix: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        Experiment(prefix, dash_root=dash_root)
    if prefix:
        assert _names(prefix, str(info.value)) or _names(prefix.rsplit("/", 1)[-1], str(info.value)), str(info.value)
    assert not dash_root.exists()


def test_name_too_long_for_the_file_system_is_refused_or_stored(dash_root: Path) -> None:
    """100 CJK characters pass the 128-character segment limit but are 300 bytes in
    UTF-8, over the 255-byte file name limit of ext4/xfs/btrfs/APFS. The name must
    either be refused with InvalidNameError at the call, or its points must be stored;
    and other streams must not suffer either way."""
    long_segment = "日" * 100
    exp = Experiment(PREFIX, dash_root=dash_root, flush_interval=0.05, close_timeout=2)
    exp.run.start()
    exp.metrics("ok").log(i=0)
    refused = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            exp.metrics(long_segment).log(i=0)
        except InvalidNameError as exc:
            refused = True
            assert _names(long_segment, str(exc)), str(exc)
        exp.metrics("ok").log(i=1)
        report = exp.run.complete()
    assert report is not None
    assert steps_of("metric", metric_file(dash_root, PREFIX, "ok")) == [0, 1], str(report)
    if not refused:
        assert report.ok, f"an accepted name could not be stored: {report}"
        assert steps_of("metric", metric_file(dash_root, PREFIX, long_segment)) == [0]


# -- bad and unusual values ------------------------------------------------------------------------

UNSTORABLE = {
    "object": object(),
    "set": {1, 2},
    "int-keys": {1: "a"},
    "nested-int-keys": {"ok": {2: "b"}},
    "list-of-object": [1, object()],
    "bytes": b"raw",
    "complex": 1j,
    "function": len,
    "lone-surrogate": "bad \ud800 text",
    "nested-lone-surrogate": {"note": "bad \udc80"},
}


@pytest.mark.parametrize("value", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
def test_unstorable_metric_value_loses_no_other_point(dash_root: Path, value: Any) -> None:
    """The bad point is refused at the call (naming the field); every other point of the
    same batch, before and after it, is stored with gapless indexes.

    A lone surrogate in a top-level text field may instead be stored losslessly, or be
    set aside on its own by the writer with a warning naming the field (the hot path
    does not look inside every str); it must never take other points with it.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp = Experiment(PREFIX, dash_root=dash_root, flush_interval=60)  # one batch, written by flush()
        exp.run.start()
        metric = exp.metrics("m")
        for i in range(5):
            metric.log(i=i, loss=0.5)
        raised = None
        try:
            metric.log(i=5, bad=value)
        except InvalidValueError as exc:
            raised = exc
        for i in range(6, 11):
            metric.log(i=i, loss=0.5)
        exp.flush()
        stored = metric.read(0, 100)["data"]
        report = exp.run.complete()
    assert report is not None
    messages = [str(w.message) for w in caught]
    without_bad = [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    if raised is not None:
        # The field, or the path inside it ('bad.ok', 'bad[1]').
        assert re.search(r"'bad(?:'|\.|\[)", str(raised)), f"the error does not name the field: {raised}"
        expected = without_bad
        assert report.ok, f"other points were lost: {report}; warnings: {messages}"
    else:
        assert isinstance(value, str), f"{value!r} was accepted without an error"
        if report.rejected:
            assert report.rejected == {"metrics 'm'": 1}, f"other points were lost: {report}"
            assert any("'bad'" in m for m in messages), f"no warning names the field: {messages}"
            expected = without_bad
        else:
            expected = list(range(11))
            assert stored[5]["data"]["bad"] == value
        assert report.unwritten == {} and report.dropped == {}, str(report)
    assert [p["data"]["i"] for p in stored] == expected
    assert [p["index"] for p in stored] == list(range(len(expected)))


def test_unstorable_log_and_track_values_lose_nothing_else(dash_root: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp = Experiment(PREFIX, dash_root=dash_root, flush_interval=60)
        exp.run.start()
        track = exp.tracks("t")
        good = 0
        for value in UNSTORABLE.values():
            exp.log(f"good {good}", metadata={"i": good})
            track.append(i=good, _ts=float(good + 1))
            good += 1
            try:
                exp.log("bad", metadata={"bad": value})
            except InvalidValueError as exc:
                assert re.search(r"\bbad\b", str(exc)), f"the error does not name the field: {exc}"
            try:
                track.append(bad=value, _ts=1000.0 + good)
            except InvalidValueError as exc:
                assert re.search(r"\bbad\b", str(exc)), f"the error does not name the field: {exc}"
            if isinstance(value, str):  # top-level text: the log message itself
                try:
                    exp.log(value)
                except InvalidValueError as exc:
                    assert "message" in str(exc)
        exp.log(f"good {good}", metadata={"i": good})
        track.append(i=good, _ts=float(good + 1))
        exp.flush()
        logs = exp.logs.read(limit=1000)["logs"]
        entries = track.read()
        report = exp.run.complete()
    assert report is not None
    assert report.unwritten == {} and report.dropped == {}, str(report)
    # Only a record holding a bad value may have been set aside, each with a warning.
    set_aside = [str(w.message) for w in caught if "set aside" in str(w.message)]
    assert sum(report.rejected.values()) == len(set_aside), (str(report), set_aside)
    assert [r["metadata"]["i"] for r in logs if r["message"].startswith("good")] == list(range(good + 1))
    assert [r["sequenceNumber"] for r in logs] == list(range(len(logs)))
    assert [e["i"] for e in entries if "i" in e] == list(range(good + 1))


ACCEPTED: dict[str, tuple[Any, Any]] = {
    # id: (value logged, value read back)
    "np.float32": (np.float32(0.5), 0.5),
    "np.float64": (np.float64(0.1), 0.1),
    "np.int64": (np.int64(-7), -7),
    "np.int32": (np.int32(12), 12),
    "np.uint8": (np.uint8(200), 200),
    "np.bool_": (np.bool_(True), True),
    "0-d float array": (np.array(3.25), 3.25),
    "0-d int array": (np.array(9, dtype=np.int64), 9),
    "big int": (2**80, 2**80),
    "negative big int": (-(2**80), -(2**80)),
    "nan": (math.nan, math.nan),
    "inf": (math.inf, math.inf),
    "-inf": (-math.inf, -math.inf),
    "unicode": ("héllo ✓ 日本語 🎉 \u200b", "héllo ✓ 日本語 🎉 \u200b"),
    "control chars": ('tab\tnew\nline\x00nul "q" \\', 'tab\tnew\nline\x00nul "q" \\'),
    "1 MB string": ("é" * 500_000, "é" * 500_000),
    "none": (None, None),
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def test_unusual_values_round_trip_among_other_points(dash_root: Path) -> None:
    """Every accepted kind of value, in one batch with ordinary points around each one,
    read back exactly; reads starting at every index (bisection over 1 MB lines) agree."""
    exp = Experiment(PREFIX, dash_root=dash_root, flush_interval=60)
    exp.run.start()
    metric = exp.metrics("m")
    track = exp.tracks("t")
    expected: list[tuple[int, Any]] = []
    for n, (label, (value, back)) in enumerate(ACCEPTED.items()):
        metric.log(i=len(expected), plain=1.0)
        expected.append((len(expected), None))
        metric.log(i=len(expected), v=value, label=label)
        expected.append((len(expected), back))
        exp.log(label, metadata={"v": value})
        track.append(v=value, _ts=float(n + 1))
    metric.log(i=len(expected), plain=1.0)
    expected.append((len(expected), None))
    exp.flush()

    stored = metric.read(0, 1000)["data"]
    assert [p["index"] for p in stored] == list(range(len(expected)))
    for point, (i, back) in zip(stored, expected, strict=True):
        assert point["data"]["i"] == i
        if back is not None or "v" in point["data"]:
            assert _same(point["data"]["v"], back), (point["data"]["label"], point["data"]["v"], back)
    for start_index in range(len(expected)):
        page = metric.read(start_index, 2)["data"]
        assert [p["index"] for p in page] == list(range(start_index, min(start_index + 2, len(expected))))

    logs = exp.logs.read(limit=1000)["logs"]
    assert [r["message"] for r in logs] == list(ACCEPTED)
    for record, (_value, back) in zip(logs, ACCEPTED.values(), strict=True):
        assert _same(record["metadata"]["v"], back), (record["message"], record["metadata"]["v"])
    entries = track.read()
    assert len(entries) == len(ACCEPTED)
    for entry, (_value, back) in zip(entries, ACCEPTED.values(), strict=True):
        assert _same(entry["v"], back)
    report = exp.run.complete()
    assert report is not None and report.ok, str(report)
    # And the files are strict JSON throughout (read_jsonl refuses bare NaN/Infinity).
    for path in (metric_file(dash_root, PREFIX, "m"), logs_file(dash_root, PREFIX), track_file(dash_root, PREFIX, "t")):
        lines, tail = read_jsonl(path)
        assert tail == b"" and lines
