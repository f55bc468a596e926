"""The outbox and the Writer's delivery to a replica that fails, refuses, or comes back.

The replica is a real LocalStore over a temporary folder, wrapped so that it can be
made to fail (as a server that is down) or to refuse (as a server that says 403).
"""

from __future__ import annotations

import math
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from ml_dash import LocalStore, StorageError
from ml_dash.errors import ForbiddenError
from ml_dash.outbox import Call, Outbox, apply, deliver_left_behind
from ml_dash.records import AppendResult, ExperimentInfo, LogRecord, StreamDescription
from ml_dash.writer import Writer

PREFIX = "alice/outbox/run-1"
URL = "http://127.0.0.1:9"


class Replica(LocalStore):
    """A real LocalStore that fails every call while ``down`` is set (like a server
    that cannot be reached) and refuses metric streams named in ``refused``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.down = threading.Event()
        self.refused: set[str] = set()
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down.is_set():
            raise StorageError("cannot reach the server: connection refused")

    def open_experiment(self, info: ExperimentInfo) -> ExperimentInfo:
        self._check()
        return super().open_experiment(info)

    def append_metrics(
        self, prefix: str, name: str, points: list[dict[str, Any]], batch_id: str | None = None
    ) -> AppendResult:
        self._check()
        if name in self.refused:
            raise ForbiddenError(f"metric {name!r} is not yours")
        return super().append_metrics(prefix, name, points, batch_id)


def info() -> ExperimentInfo:
    return ExperimentInfo(PREFIX, "alice", "outbox", "run-1")


def every_call() -> list[Call]:
    points = [{"_ts": 1.0, "loss": math.nan, "big": 2**80, "nested": {"a": [1, math.inf]}}, {"_ts": 2.0, "x": -0.0}]
    return [
        Call("open_experiment", PREFIX, None, (info(),), "control"),
        Call("set_params", PREFIX, None, ({"lr": 0.1, "model.depth": 50, "bad": -math.inf},), "control"),
        Call("append_metrics", PREFIX, "train", (points, "b-1"), "metrics 'train'"),
        Call("append_logs", PREFIX, None, ([LogRecord(3.0, "info", "hi", {"k": math.nan})], "b-2"), "logs"),
        Call("append_tracks", PREFIX, "pose", ([{"timestamp": 4.0, "x": 1.5}], "b-3"), "tracks 'pose'"),
        Call("describe_stream", PREFIX, "train", (StreamDescription("loss", ("a",), {"u": 1}),), "control"),
        Call("update_experiment", PREFIX, None, ({"status": "COMPLETED", "ended_at": 5.0},), "control"),
    ]


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (repr keeps -0.0, nan and inf apart)."""
    return repr(a) == repr(b)


def test_calls_read_back_from_disk_equal_what_was_put(tmp_path: Path) -> None:
    outbox = Outbox(str(tmp_path / "box"), URL)
    calls = every_call()
    for call in calls:
        outbox.put(call)
    # On disk at once, one file per call: appends in their stream's open call (.part)
    # until it is sealed (full, or older than the flush interval), the others as .req.
    assert len(list((tmp_path / "box").glob("*.req"))) == len(calls) - 3
    assert len(list((tmp_path / "box").glob("*.part"))) == 3
    outbox.seal()
    assert len(list((tmp_path / "box").glob("*.req"))) == len(calls)

    again = Outbox(str(tmp_path / "box"))  # a new process: only the files are left
    assert again.adopt_existing() == len(calls)
    for call in calls:
        taken = again.peek()
        assert taken is not None
        got, url = taken
        assert url == URL
        assert (got.op, got.prefix, got.name, got.label) == (call.op, call.prefix, call.name, call.label)
        assert same(got.args, call.args), got.op
        again.done()
    assert again.peek() is None
    assert not list((tmp_path / "box").glob("*.req"))


def test_calls_beyond_the_memory_bound_are_read_back_from_their_files(tmp_path: Path) -> None:
    outbox = Outbox(str(tmp_path / "box"), URL, max_in_memory=100)
    outbox.batch_size = 10  # each put fills an open call: one sealed call per put
    for i in range(50):
        outbox.put(Call("append_metrics", PREFIX, "m", ([{"_ts": 1.0 + i, "i": i}] * 10, f"b-{i}"), "metrics 'm'"))
    assert outbox._in_memory <= 100
    seen = []
    while (taken := outbox.peek()) is not None:
        seen.append(taken[0].args[1])
        outbox.done()
    assert seen == [f"b-{i}" for i in range(50)]


def test_a_call_the_disk_refuses_is_kept_in_memory_and_still_delivered(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    outbox = Outbox(str(blocker / "box"), URL)
    with pytest.warns(RuntimeWarning, match="cannot write the outbox"):
        outbox.put(every_call()[0])
    assert len(outbox) == 1 and outbox.on_disk == 0
    replica = LocalStore(tmp_path / "server")
    taken = outbox.peek()
    assert taken is not None
    assert apply(taken[0], replica).prefix == PREFIX
    outbox.done()
    assert len(outbox) == 0


def run_writer(replica: Replica, folder: Path, n: int, *, close_timeout: float = 10.0) -> Any:
    outbox = Outbox(str(folder), URL)
    # Batches (and sealed outbox calls) of 1,000: several outbox files.
    writer = Writer(PREFIX, None, replica=replica, outbox=outbox, flush_interval=0.05, batch_size=1000)
    control = writer.channel("control")
    control.queue.append(Call("open_experiment", PREFIX, None, (info(),), "control"))
    metric = writer.channel("metrics", "train")
    for i in range(n):
        metric.queue.append({"_ts": 1.0 + i, "i": i})
        if i % 1000 == 999:
            writer.drain(deliver=False)  # several batches, several outbox files
    return writer, outbox


def test_the_outbox_waits_for_an_unreachable_replica_and_delivers_in_order(tmp_path: Path) -> None:
    replica = Replica(tmp_path / "server")
    replica.down.set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer, outbox = run_writer(replica, tmp_path / "box", 5000)
        writer.drain()
        assert len(outbox) >= 2, "the calls wait in the outbox while the replica is down"
        assert outbox.on_disk == len(outbox)
        replica.down.clear()
        report = writer.close(10)
    assert report.ok, str(report)
    page = replica.read_metrics(PREFIX, "train", 0, 10_000)
    assert [p["data"]["i"] for p in page["data"]] == list(range(5000))
    assert [p["index"] for p in page["data"]] == list(range(5000))
    assert not list((tmp_path / "box").glob("*.req"))
    messages = [str(w.message) for w in caught]
    assert any("cannot deliver to" in m and "and retrying" in m for m in messages)
    assert any("answers again" in m for m in messages)


def test_a_refusal_for_good_is_set_aside_and_reported_not_written(tmp_path: Path) -> None:
    replica = Replica(tmp_path / "server")
    replica.refused.add("secret")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer, _ = run_writer(replica, tmp_path / "box", 10)
        secret = writer.channel("metrics", "secret")
        for i in range(7):
            secret.queue.append({"_ts": 1.0 + i, "i": i})
        report = writer.close(10)
    assert not report.ok
    assert report.refused == {"metrics 'secret'": 7} and report.rejected == {}
    assert "REFUSED by the server, not stored: 7 metrics 'secret'" in str(report)
    assert report.refused_dir == str(tmp_path / "box" / "rejected")
    assert replica.metric_stats(PREFIX, "train")["totalDataPoints"] == 10, "the other streams still arrive"
    assert len(list((tmp_path / "box" / "rejected").glob("*.req"))) == 1
    assert any("refused metrics 'secret' for good" in str(w.message) for w in caught)


def test_what_close_could_not_deliver_is_reported_and_sent_later_exactly_once(tmp_path: Path) -> None:
    replica = Replica(tmp_path / "server")
    replica.down.set()
    spool = tmp_path / ".spool"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer, outbox = run_writer(replica, spool / "host" / "session-1", 3000)
        report = writer.close(0.5)
    assert report.spooled == len(outbox) >= 2
    assert report.queued["metrics 'train'"] == 3000
    assert report.unwritten == {}
    assert "send them with `ml-dash sync`" in str(report)

    replica.down.clear()
    done = deliver_left_behind(str(spool), lambda url: replica, timeout=10)
    assert (done.sent, done.rejected, done.left) == (report.spooled, 0, 0)
    again = deliver_left_behind(str(spool), lambda url: replica, timeout=10)
    assert again.sent == 0
    page = replica.read_metrics(PREFIX, "train", 0, 10_000)
    assert [p["data"]["i"] for p in page["data"]] == list(range(3000))


def test_a_primary_is_written_even_while_the_replica_is_down(tmp_path: Path) -> None:
    """Hybrid mode: the local folder gets every point at once; the server later."""
    local = LocalStore(tmp_path / "local")
    replica = Replica(tmp_path / "server")
    replica.down.set()
    outbox = Outbox(str(tmp_path / "box"), URL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer = Writer(PREFIX, local, replica=replica, outbox=outbox, flush_interval=0.05)
        writer.channel("control").queue.append(Call("open_experiment", PREFIX, None, (info(),), "control"))
        metric = writer.channel("metrics", "train")
        for i in range(100):
            metric.queue.append({"_ts": 1.0 + i, "i": i})
        writer.flush(metric)
        assert local.metric_stats(PREFIX, "train")["totalDataPoints"] == 100
        assert replica.metric_stats(PREFIX, "train")["totalDataPoints"] == 0
        replica.down.clear()
        report = writer.close(10)
    assert report.ok, str(report)
    assert replica.metric_stats(PREFIX, "train")["totalDataPoints"] == 100
