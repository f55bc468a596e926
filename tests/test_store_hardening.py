"""Issue 9 in the folder store, in process and in local mode: a bounded number of open
files, damaged lines that are skipped and reported (never an error), and a bounded
batch-id memory that still never stores a resent batch twice within its window.

The same findings against a real ``ml-dash serve`` process: tests/server/test_hardening_streams.py.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment
from ml_dash.errors import InvalidValueError, StorageError
from ml_dash.records import AppendResult, ExperimentInfo, LogRecord
from ml_dash.stores.batch_window import WINDOW_BATCHES, WINDOW_BYTES
from ml_dash.stores.fdpool import FilePool, default_capacity
from ml_dash.stores.jsonl import LockedAppender
from ml_dash.stores.local import LocalStore
from support.processes import HANG_GUARD, child_env

PREFIX = "alice/proj/run-1"


def info(prefix: str = PREFIX) -> ExperimentInfo:
    owner, project, *_, name = prefix.split("/")
    return ExperimentInfo(prefix=prefix, owner=owner, project=project, name=name)


def points(start: int, count: int) -> list[dict[str, Any]]:
    return [{"step": i, "_ts": 100.0 + i} for i in range(start, start + count)]


def open_data_files(root: Path) -> int:
    """How many descriptors of this process point at data files under ``root``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root)) and target.endswith(".jsonl"):
            count += 1
    return count


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def store(dash_root: Path) -> Iterator[LocalStore]:
    made = LocalStore(dash_root)
    made.open_experiment(info())
    yield made
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a damaged stream warns again when close refreshes its metadata
        made.close()


# -- 1. bounded open files --------------------------------------------------------------------


def test_the_default_pool_is_a_quarter_of_the_descriptor_limit_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = 1024 if soft == resource.RLIM_INFINITY else max(16, min(1024, soft // 4))
    assert default_capacity() == expected
    monkeypatch.setenv("ML_DASH_MAX_OPEN_FILES", "77")
    assert default_capacity() == 77


def test_a_store_keeps_at_most_max_open_files_data_files_open(dash_root: Path) -> None:
    store = LocalStore(dash_root, max_open_files=8)
    store.open_experiment(info())
    try:
        for n in range(200):
            assert store.append_metrics(PREFIX, f"m{n}", points(0, 2), f"b-{n}-0").first == 0
            assert open_data_files(dash_root) <= 8
        for n in range(200):  # every file was closed and is reopened: counters and batch ids survive that
            assert store.append_metrics(PREFIX, f"m{n}", points(2, 1), f"b-{n}-1").first == 2
            again = store.append_metrics(PREFIX, f"m{n}", points(0, 2), f"b-{n}-0")
            assert (again.first, again.duplicate) == (0, True)
        assert open_data_files(dash_root) <= 8
        pages = [store.read_metrics(PREFIX, f"m{n}") for n in (0, 99, 199)]
        assert all([p["data"]["step"] for p in page["data"]] == [0, 1, 2] for page in pages)
    finally:
        store.close()
    assert open_data_files(dash_root) == 0


def test_sync_reopens_a_file_the_pool_closed_and_skips_files_already_synced(dash_root: Path) -> None:
    store = LocalStore(dash_root, max_open_files=2)
    store.open_experiment(info())
    try:
        for name in ("a", "b", "c"):
            store.append_metrics(PREFIX, name, points(0, 1))
        assert open_data_files(dash_root) == 2  # "a" was closed to make room
        data_a = dash_root / PREFIX / "metrics" / "a" / "data.jsonl"
        data_a.rename(data_a.with_suffix(".moved"))
        # "a" still owes an fsync: sync reopens it by its path, which is gone now.
        with pytest.raises(StorageError, match=r"fsync .*metrics/a/data\.jsonl"):
            store.sync(PREFIX, refresh=False)
        data_a.with_suffix(".moved").rename(data_a)
        store.sync(PREFIX, refresh=False)
        data_a.rename(data_a.with_suffix(".moved"))
        store.sync(PREFIX, refresh=False)  # nothing appended since: nothing to reopen, no error
        data_a.with_suffix(".moved").rename(data_a)
    finally:
        store.close()


def test_reads_leave_no_descriptor_open(dash_root: Path, store: LocalStore) -> None:
    store.append_metrics(PREFIX, "train", points(0, 50), "b-1")
    store.append_logs(PREFIX, [LogRecord(1.0, "info", "x", None)], "l-1")
    store.append_tracks(PREFIX, "pose", [{"timestamp": 1.0, "x": 1.0}], "t-1")
    bad = dash_root / PREFIX / "metrics/bad/data.jsonl"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b'42\nGARBAGE\n{"index":0,"data":{"step":0,"_ts":1.0}}\n{"foo":1}\n')
    store.read_metrics(PREFIX, "train", 10, 5)  # warm up lazily made things (indexes, pools)
    before = open_descriptors()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(100):
            store.read_metrics(PREFIX, "train", 10, 5)
            store.read_metrics(PREFIX, "bad")
            store.metric_stats(PREFIX, "bad")
            store.list_metrics(PREFIX)
            store.query_logs(PREFIX, {"limit": 10})
            store.read_tracks(PREFIX, "pose")
            store.list_tracks(PREFIX)
            with pytest.raises(InvalidValueError, match="must be >= 0"):
                store.read_metrics(PREFIX, "train", 0, -1)
    assert open_descriptors() == before


_MANY_STREAMS = """
import json, resource, sys, warnings
from ml_dash import Experiment
from ml_dash.errors import InvalidValueError, StorageError
from ml_dash.stores.local import LocalStore
streams = int(sys.argv[2])
with Experiment(prefix="alice/proj/many", dash_root=sys.argv[1], echo=False).run as exp:
    for n in range(streams):
        exp.metrics(f"m{n}").log(step=n)
        if n % 500 == 499:
            exp.flush()
report = exp.close_report
store = LocalStore(sys.argv[1])
totals = [store.metric_stats("alice/proj/many", f"m{n}")["totalDataPoints"] for n in range(streams)]
values = [store.read_metrics("alice/proj/many", f"m{n}")["data"][0]["data"]["step"] for n in range(0, streams, 97)]
store.close()
print(json.dumps({"ok": report.ok, "report": str(report), "totals": sorted(set(totals)), "values": values,
                  "limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "status": exp.status}))
"""


def _run_limited(script: str, nofile: int, *args: str) -> dict[str, Any]:
    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=child_env(),
        preexec_fn=lower_limit,
        timeout=HANG_GUARD * 5,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_local_mode_writes_1500_streams_with_128_descriptors(tmp_path: Path) -> None:
    answer = _run_limited(textwrap.dedent(_MANY_STREAMS), 128, str(tmp_path / ".dash"), "1500")
    assert answer["limit"] == 128
    assert answer["ok"], answer["report"]
    assert answer["status"] == "COMPLETED"
    assert answer["totals"] == [1]
    assert answer["values"] == list(range(0, 1500, 97))


# -- 3. damaged lines ----------------------------------------------------------------------------

# (kind, stream name, a damaged line whose counter is a string)
KINDS = {
    "metrics": ("metrics/train/data.jsonl", b'{"index":"5","data":{}}'),
    "logs": ("logs/logs.jsonl", b'{"sequenceNumber":"5","level":"info","message":"x"}'),
    "tracks": ("tracks/pose/data.jsonl", b'{"timestamp":"5","x":1}'),
}
LAST_LINES = [b"GARBAGE", b'{"foo":1}', "counter as a string", b"42", b"[1,2]", b""]


def _append(store: LocalStore, kind: str, start: int, count: int, batch: str | None = None) -> int | None:
    if kind == "metrics":
        return store.append_metrics(PREFIX, "train", points(start, count), batch).first
    if kind == "logs":
        records = [LogRecord(100.0 + i, "info", f"line {i}", {"step": i}) for i in range(start, start + count)]
        return store.append_logs(PREFIX, records, batch).first
    entries = [{"timestamp": 100.0 + i, "step": i} for i in range(start, start + count)]
    return store.append_tracks(PREFIX, "pose", entries, batch).first


def _steps(store: LocalStore, kind: str) -> list[int]:
    """What every read of the kind returns, as steps (and checks the reads agree)."""
    if kind == "metrics":
        page = store.read_metrics(PREFIX, "train")
        assert [p["index"] for p in page["data"]] == list(range(len(page["data"])))
        assert page["total"] == len(page["data"]) and not page["hasMore"]
        tail = store.read_metrics(PREFIX, "train", page["total"] - 2, 1)  # a bisection
        assert [p["index"] for p in tail["data"]] == [page["total"] - 2]
        return [p["data"]["step"] for p in page["data"]]
    if kind == "logs":
        logs = store.query_logs(PREFIX, {"limit": 1000})
        assert [entry["sequenceNumber"] for entry in logs["logs"]] == list(range(len(logs["logs"])))
        return [entry["metadata"]["step"] for entry in logs["logs"]]
    return [entry["step"] for entry in store.read_tracks(PREFIX, "pose")]


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("damage", range(len(LAST_LINES)), ids=["garbage", "foo", "string", "42", "array", "blank"])
def test_a_damaged_last_line_is_skipped_set_aside_and_counting_goes_on(
    dash_root: Path, store: LocalStore, kind: str, damage: int
) -> None:
    relative, string_counter = KINDS[kind]
    bad = LAST_LINES[damage]
    line = string_counter if isinstance(bad, str) else bad
    _append(store, kind, 0, 3, "b-1")
    path = dash_root / PREFIX / relative
    with path.open("ab") as fh:
        fh.write(line + b"\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _steps(store, kind) == [0, 1, 2]
        if kind == "metrics":
            stats = store.metric_stats(PREFIX, "train")
            assert (stats["totalDataPoints"], stats.get("damaged")) == (3, 1)
            assert [s.get("damaged") for s in store.list_metrics(PREFIX)] == [1]
        # The next append sets the line aside and continues after the highest valid counter.
        assert _append(store, kind, 3, 2, "b-2") == (None if kind == "tracks" else 3)
        assert _append(store, kind, 0, 3, "b-1") == (None if kind == "tracks" else 0), "a resend still a duplicate"
        assert _steps(store, kind) == [0, 1, 2, 3, 4]
    assert any("damaged line" in str(w.message) for w in caught)
    assert Path(str(path) + ".damaged").read_bytes() == line + b"\n"
    assert len(path.read_bytes().split(b"\n")) == 5 + 1, "only the five valid lines are left"
    if kind == "metrics":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert store.metric_stats(PREFIX, "train")["damaged"] == 1  # counted from the side file


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_damaged_first_or_middle_line_is_skipped_by_every_read(dash_root: Path, store: LocalStore, kind: str) -> None:
    _append(store, kind, 0, 2, "b-1")
    path = dash_root / PREFIX / KINDS[kind][0]
    good = path.read_bytes().split(b"\n")
    path.write_bytes(b"42\n" + good[0] + b"\nGARBAGE\n" + b"\n".join(good[1:]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _steps(store, kind) == [0, 1]
        assert _append(store, kind, 2, 2, "b-2") == (None if kind == "tracks" else 2)
        assert _steps(store, kind) == [0, 1, 2, 3]
        if kind == "metrics":
            stats = store.metric_stats(PREFIX, "train")
            assert (stats["totalDataPoints"], stats["firstDataAt"], stats["damaged"]) == (4, 100.0, 1)
            page = store.read_metrics(PREFIX, "train", 1, 2)
            assert [p["index"] for p in page["data"]] == [1, 2]
    assert any("damaged line" in str(w.message) for w in caught)


def test_stats_of_a_huge_point_decode_only_its_counter_and_time(dash_root: Path, store: LocalStore) -> None:
    nested = b"[" + b"[]," * 3_000_000 + b"[]]"  # 9 MB: millions of lists if decoded
    store.append_metrics(PREFIX, "train", points(0, 1))
    path = dash_root / PREFIX / "metrics/train/data.jsonl"
    with path.open("ab") as fh:
        fh.write(b'{"index":1,"data":{"big":' + nested + b',"_ts":7.5}}\n')
    tracemalloc.start()
    try:
        stats = store.metric_stats(PREFIX, "train")
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (stats["totalDataPoints"], stats["firstDataAt"], stats["lastDataAt"]) == (2, 100.0, 7.5)
    assert peak < 4 * len(nested), f"stats took {peak / 1e6:.0f} MB for a {len(nested) / 1e6:.0f} MB line"


def test_a_resumed_run_on_damaged_files_never_raises_into_the_loop(dash_root: Path) -> None:
    with Experiment(prefix=PREFIX, dash_root=dash_root, echo=False).run as exp:
        exp.metrics("train").log(step=0)
        exp.log("first", metadata={"step": 0})
        exp.tracks("pose").append(step=0)
    run = dash_root / PREFIX
    for relative in ("metrics/train/data.jsonl", "logs/logs.jsonl", "tracks/pose/data.jsonl"):
        data = (run / relative).read_bytes()
        (run / relative).write_bytes(b"42\n" + data + b'{"foo":1}\n')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the damaged lines warn
        with Experiment(prefix=PREFIX, dash_root=dash_root, echo=False).run as exp:
            for step in (1, 2):
                exp.metrics("train").log(step=step)
                exp.log("again", metadata={"step": step})
                exp.tracks("pose").append(step=step)
            exp.flush()
            page = exp.metrics("train").read()
            stats = exp.metrics("train").stats()
            logs = exp.logs.read()
            track = exp.tracks("pose").read()
        report = exp.close_report
    assert report.ok, str(report)
    assert exp.status == "COMPLETED"
    assert [(p["index"], p["data"]["step"]) for p in page["data"]] == [(0, 0), (1, 1), (2, 2)]
    assert (stats["totalDataPoints"], stats["damaged"]) == (3, 2)
    assert [entry["metadata"]["step"] for entry in logs["logs"]] == [0, 1, 2]
    assert [entry["step"] for entry in track] == [0, 1, 2]
    assert json.loads((run / "experiment.json").read_bytes())["status"] == "COMPLETED"


# -- 5. bounded batch-id memory ----------------------------------------------------------------


def _ids_file(path: Path, batches: int, first_id: str = "old") -> None:
    """A metric file of ``batches`` one-point batches, as the store writes them."""
    lines = [b'{"index":%d,"batchId":"%s-%d","data":{"step":%d,"_ts":1.0}}\n' % (i, first_id.encode(), i, i)
             for i in range(batches)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))


def _read_bytes() -> int:
    with open("/proc/self/io", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))


def test_a_restarted_store_recognises_recent_batches_reading_only_the_tail(dash_root: Path) -> None:
    path = dash_root / PREFIX / "metrics/train/data.jsonl"
    _ids_file(path, 400_000)  # 25 MB
    store = LocalStore(dash_root)
    try:
        before = _read_bytes()
        again = store.append_metrics(PREFIX, "train", points(0, 1), "old-399999")
        cost = _read_bytes() - before
        assert (again.first, again.duplicate) == (399_999, True)
        assert cost < 2 << 20, f"the first append read {cost / 1e6:.1f} MB of a {path.stat().st_size / 1e6:.0f} MB file"
        oldest = 400_000 - WINDOW_BATCHES
        assert store.append_metrics(PREFIX, "train", points(0, 1), f"old-{oldest}").duplicate
        assert store.append_metrics(PREFIX, "train", points(0, 1), "new-0").first == 400_000
    finally:
        store.close()


def test_the_window_is_bounded_a_batch_resent_beyond_it_is_stored_again(dash_root: Path) -> None:
    """The documented limit of the guarantee (docs/storage-format.md): the last 4,096
    batches and 16 MiB. No ML-Dash client resends that late; this pins the bound."""
    path = dash_root / PREFIX / "metrics/train/data.jsonl"
    _ids_file(path, WINDOW_BATCHES + 1)
    store = LocalStore(dash_root)
    try:
        assert store.append_metrics(PREFIX, "train", points(0, 1), "old-1").duplicate  # the oldest in the window
        assert not store.append_metrics(PREFIX, "train", points(0, 1), "old-0").duplicate  # one beyond
        big = [{"blob": "x" * 1000, "_ts": 1.0}] * 1000  # ≈ 1 MB a batch
        store.append_metrics(PREFIX, "train", points(0, 1), "recent")
        for n in range(WINDOW_BYTES // (1 << 20) - 2):
            store.append_metrics(PREFIX, "train", big, f"big-{n}")
        assert store.append_metrics(PREFIX, "train", points(0, 1), "recent").duplicate
        for n in range(4):
            store.append_metrics(PREFIX, "train", big, f"more-{n}")
        assert not store.append_metrics(PREFIX, "train", points(0, 1), "recent").duplicate  # 16 MiB behind
    finally:
        store.close()


def test_batch_id_memory_stays_within_the_pool_budget(tmp_path: Path) -> None:
    pool = FilePool(capacity=1000, id_budget=1000)  # a small budget to see it work (the default: 262,144 ids)
    appenders = [LockedAppender(str(tmp_path / f"m{n}.jsonl"), "index", True, pool) for n in range(10)]

    def append(stream: int, batch: int) -> AppendResult:
        line = b'{"index":%d,"batchId":"s%d-%d","data":{}}\n'
        return appenders[stream].append(lambda first: line % (first, stream, batch), 1, f"s{stream}-{batch}")

    try:
        for batch in range(300):
            for stream in range(10):
                assert append(stream, batch).first == batch
            assert pool.ids <= 1000
        assert 0 < len(pool) < 10, "streams whose windows were dropped closed their files too"
        # Windows dropped for the budget are read back from the files: resends are still recognised.
        for stream in range(10):
            for batch in (0, 150, 299):
                assert append(stream, batch) == AppendResult(batch, 1, True)
        assert pool.ids <= 1000
    finally:
        for appender in appenders:
            appender.close()
    assert pool.ids == 0 and len(pool) == 0
