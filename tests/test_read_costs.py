"""Log and track reads of the folder store cost the page asked for, not the stream.

Costs are measured without a clock: the bytes this process read (``rchar`` of
``/proc/self/io``, every ``read``/``pread`` of any file), the lines decoded and indexed
(``line_index.counters``) and the Python memory allocated (``tracemalloc``). Correctness
is checked against filtering every record by brute force (hypothesis), and after the
kinds of damage a crash or a careless hand can leave in the index or the data.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_dash.records import LogRecord, merge_track_entries
from ml_dash.stores.line_index import counters
from ml_dash.stores.local import LocalStore
from support.processes import child_env

PREFIX = "alice/costs/run-1"
T0 = 1_700_000_000.0
LINES = 100_000
PAGE = 100
OPEN_PROBE = 1 << 16  # what opening a data file reads to find its last newline (jsonl.LineReader)


def rchar() -> int:
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


needs_proc_io = pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs /proc/self/io (Linux)")


class Cost:
    """What one call read, decoded, indexed and allocated."""

    def __init__(self, call: Callable[[], Any]) -> None:
        counters.reset()
        tracemalloc.start()
        before = rchar()
        self.result = call()
        self.bytes_read = rchar() - before
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        self.decoded, self.indexed = counters.lines_decoded, counters.lines_indexed


def level_of(i: int) -> str:
    return "error" if i % 100 == 7 else ("warn" if i % 10 == 3 else ("debug" if i % 2 else "info"))


def write_logs(store: LocalStore, first: int, count: int) -> None:
    for start in range(first, first + count, 10_000):
        end = min(first + count, start + 10_000)
        store.append_logs(
            PREFIX, [LogRecord(T0 + i * 0.01, level_of(i), f"step {i} done", {"i": i}) for i in range(start, end)]
        )


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStore]:
    """A store with a 100,000-line log and a 100,000-entry track (100 Hz), indexes not built."""
    store = LocalStore(tmp_path_factory.mktemp("costs") / ".dash")
    write_logs(store, 0, LINES)
    for start in range(0, LINES, 20_000):
        store.append_tracks(
            PREFIX, "pose", [{"timestamp": T0 + i * 0.01, "x": float(i), "y": -i} for i in range(start, start + 20_000)]
        )
    yield store
    store.close()


def logs_file(store: LocalStore) -> Path:
    return Path(store.experiment_dir(PREFIX)) / "logs" / "logs.jsonl"


@needs_proc_io
def test_a_level_filtered_descending_page_of_a_large_log_reads_only_its_page(big: LocalStore) -> None:
    first = Cost(lambda: big.query_logs(PREFIX, {"levels": ["error"], "descending": True, "limit": PAGE}))
    assert first.indexed == LINES  # the first filtered read builds the index, once
    size = logs_file(big).stat().st_size
    query = {"levels": ["error"], "descending": True, "offset": 300, "limit": PAGE}
    cost = Cost(lambda: big.query_logs(PREFIX, query))  # type: ignore[arg-type]
    page = cost.result
    assert [r["sequenceNumber"] for r in page["logs"]] == [i for i in range(LINES - 1, -1, -1) if i % 100 == 7][
        300 : 300 + PAGE
    ]
    assert page["total"] == LINES // 100
    assert (cost.indexed, cost.decoded) == (0, PAGE)
    # 100 error lines 100 lines apart: about one small read each, never the file (16 MB).
    assert cost.bytes_read < 600_000 and cost.bytes_read < size // 25, (cost.bytes_read, size)
    assert cost.peak < 2_000_000, cost.peak


@needs_proc_io
def test_time_windows_and_mixed_level_pages_read_only_their_lines(big: LocalStore) -> None:
    big.query_logs(PREFIX, {"levels": ["warn"]})
    window = Cost(lambda: big.query_logs(PREFIX, {"start_time": T0 + 500.0, "end_time": T0 + 510.0, "limit": PAGE}))
    assert window.result["total"] == 1001
    assert [r["sequenceNumber"] for r in window.result["logs"]] == list(range(50_000, 50_000 + PAGE))
    assert window.decoded == PAGE and window.bytes_read < OPEN_PROBE + 30_000
    mixed = Cost(lambda: big.query_logs(PREFIX, {"levels": ["warn", "error"], "offset": 5_000, "limit": PAGE}))
    wanted = [i for i in range(LINES) if level_of(i) in ("warn", "error")]
    assert [r["sequenceNumber"] for r in mixed.result["logs"]] == wanted[5_000 : 5_000 + PAGE]
    assert mixed.result["total"] == len(wanted)
    assert mixed.decoded == PAGE and mixed.bytes_read < 600_000


@needs_proc_io
def test_an_unfiltered_newest_first_page_is_a_bisection(big: LocalStore) -> None:
    cost = Cost(lambda: big.query_logs(PREFIX, {"descending": True, "offset": 1_000, "limit": PAGE}))
    assert [r["sequenceNumber"] for r in cost.result["logs"]] == list(range(LINES - 1_001, LINES - 1_001 - PAGE, -1))
    # jsonl's primitives: the tail probe, the last line, O(log n) 4 KiB probes, one 64 KiB block
    assert cost.decoded == PAGE and cost.indexed == 0 and cost.bytes_read < 7 * OPEN_PROBE


@needs_proc_io
def test_a_track_window_and_a_track_page_read_only_their_lines(big: LocalStore) -> None:
    big.read_tracks(PREFIX, "pose", limit=1)  # builds the index
    window = Cost(lambda: big.read_tracks(PREFIX, "pose", T0 + 300.0, T0 + 310.0))
    assert [e["x"] for e in window.result] == [float(i) for i in range(30_000, 31_001)]
    assert window.decoded == 1001 and window.indexed == 0 and window.bytes_read < OPEN_PROBE + 80_000
    page = Cost(lambda: big.read_tracks(PREFIX, "pose", limit=PAGE, after=T0 + 700.0))
    assert [e["x"] for e in page.result] == [float(i) for i in range(70_001, 70_001 + PAGE)]
    assert page.decoded == PAGE and page.bytes_read < OPEN_PROBE + 15_000 and page.peak < 1_000_000


@needs_proc_io
def test_listing_tracks_reads_no_data_once_indexed(big: LocalStore) -> None:
    big.list_tracks(PREFIX)
    cost = Cost(lambda: big.list_tracks(PREFIX))
    assert cost.result == [
        {"topic": "pose", "totalEntries": LINES, "firstTimestamp": T0, "lastTimestamp": T0 + (LINES - 1) * 0.01}
    ]
    assert cost.decoded == 0 and cost.indexed == 0 and cost.bytes_read < OPEN_PROBE + 5_000


def test_the_index_grows_by_the_lines_appended_since_the_last_read(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / ".dash")
    write_logs(store, 0, 5_000)
    assert Cost(lambda: store.query_logs(PREFIX, {"levels": ["error"]})).indexed == 5_000
    write_logs(store, 5_000, 1_234)
    grown = Cost(lambda: store.query_logs(PREFIX, {"levels": ["error"], "descending": True, "limit": 3}))
    assert grown.indexed == 1_234
    assert [r["sequenceNumber"] for r in grown.result["logs"]] == [6207, 6107, 6007]
    store.append_tracks(PREFIX, "t", [{"timestamp": float(i), "v": i} for i in range(3_000)])
    assert Cost(lambda: store.list_tracks(PREFIX)).indexed == 3_000
    store.append_tracks(PREFIX, "t", [{"timestamp": 5_000.0, "w": 1}])
    listed = Cost(lambda: store.list_tracks(PREFIX))
    assert listed.indexed == 1 and listed.result[0]["totalEntries"] == 3_001
    store.close()


# -- damage: a read is never wrong ---------------------------------------------------------------


def _expected_logs(levels: list[str], query: dict[str, Any]) -> list[int]:
    found = [i for i, level in enumerate(levels) if level in query.get("levels", [level])]
    return found[::-1] if query.get("descending") else found


def _index_folder(store: LocalStore) -> Path:
    return logs_file(store).parent / ".ml-dash"


def _append_garbage_records(store: LocalStore) -> None:
    for path in _index_folder(store).glob("*.idx"):
        with path.open("ab") as fh:
            fh.write(os.urandom(24 * 7))


def _damage_state(store: LocalStore) -> None:
    (_index_folder(store) / "index.json").write_text("{not json")


def _cut_a_list(store: LocalStore) -> None:
    for path in _index_folder(store).glob("info.*.idx"):
        with path.open("r+b") as fh:
            fh.truncate(24 * 3)


def _drop_the_index(store: LocalStore) -> None:
    shutil.rmtree(_index_folder(store))


def _cut_the_data(store: LocalStore) -> None:
    data = logs_file(store)
    lines = data.read_bytes().splitlines(keepends=True)
    data.write_bytes(b"".join(lines[: len(lines) // 2]))


def _replace_the_data(store: LocalStore) -> None:
    data = logs_file(store)
    other = data.with_name("other.jsonl")
    other.write_bytes(data.read_bytes().replace(b'"level":"info"', b'"level":"warn"'))
    os.replace(other, data)


def _rewrite_the_last_time_in_place(store: LocalStore) -> None:
    data = logs_file(store)
    raw = bytearray(data.read_bytes())
    at = raw.rfind(b'"ts":') + len(b'"ts":')
    raw[at] = ord("9") if raw[at] != ord("9") else ord("8")
    with data.open("r+b") as fh:
        fh.write(raw)


DAMAGE = {
    "uncommitted records": _append_garbage_records,
    "damaged state": _damage_state,
    "list shorter than counted": _cut_a_list,
    "index gone": _drop_the_index,
    "data cut shorter": _cut_the_data,
    "data replaced": _replace_the_data,
    "data changed at its end": _rewrite_the_last_time_in_place,
}


@pytest.mark.parametrize("damage", list(DAMAGE.values()), ids=list(DAMAGE))
def test_a_damaged_or_outdated_index_is_rebuilt_and_reads_stay_right(
    tmp_path: Path, damage: Callable[[LocalStore], None]
) -> None:
    store = LocalStore(tmp_path / ".dash")
    write_logs(store, 0, 3_000)
    store.close()
    query = {"levels": ["info", "error"], "descending": True, "limit": 50, "offset": 10}
    store.query_logs(PREFIX, query)  # type: ignore[arg-type]
    damage(store)
    every = store.query_logs(PREFIX, {"limit": 100_000})["logs"]  # by sequence: no index
    stored = [r["level"] for r in every]
    page = store.query_logs(PREFIX, query)  # type: ignore[arg-type]
    wanted = _expected_logs(stored, query)
    assert [r["sequenceNumber"] for r in page["logs"]] == wanted[10:60]
    assert page["total"] == len(wanted)
    window = store.query_logs(PREFIX, {"start_time": T0 + 10.0, "end_time": T0 + 40.0, "limit": 100_000})
    assert [r["sequenceNumber"] for r in window["logs"]] == [
        r["sequenceNumber"] for r in every if T0 + 10.0 <= r["ts"] <= T0 + 40.0
    ]
    write_logs(store, len(stored), 500)  # and it keeps growing from there
    stored += [level_of(i) for i in range(len(stored), len(stored) + 500)]
    page = store.query_logs(PREFIX, {"levels": ["error"], "limit": 1_000})
    assert [r["sequenceNumber"] for r in page["logs"]] == _expected_logs(stored, {"levels": ["error"]})
    store.close()


def test_reads_without_a_usable_index_folder_scan_and_stay_right(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / ".dash")
    write_logs(store, 0, 2_000)
    store.append_tracks(PREFIX, "t", [{"timestamp": float(t), "v": t} for t in (3, 1, 2, 2)])
    (logs_file(store).parent / ".ml-dash").write_text("a file where the index folder goes")
    track_folder = Path(store.experiment_dir(PREFIX)) / "tracks" / "t"
    (track_folder / ".ml-dash").write_text("a file")
    page = store.query_logs(PREFIX, {"levels": ["error"], "descending": True, "limit": 2})
    assert [r["sequenceNumber"] for r in page["logs"]] == [1907, 1807] and page["total"] == 20
    assert store.read_tracks(PREFIX, "t", limit=2) == [{"timestamp": 1, "v": 1}, {"timestamp": 2, "v": 2}]
    assert store.list_tracks(PREFIX) == [{"topic": "t", "totalEntries": 3, "firstTimestamp": 1, "lastTimestamp": 3}]
    store.close()


def test_damaged_lines_are_left_out_of_indexed_reads_with_a_warning(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / ".dash")
    write_logs(store, 0, 200)
    store.append_tracks(PREFIX, "t", [{"timestamp": 1.0, "v": 1}])
    with logs_file(store).open("ab") as fh:
        fh.write(b'GARBAGE\n{"foo":1}\n42\n{"sequenceNumber":"x","level":"error"}\n')
    data = Path(store.experiment_dir(PREFIX)) / "tracks" / "t" / "data.jsonl"
    with data.open("ab") as fh:  # in the middle: an append would set damaged lines at the end aside
        fh.write(b'GARBAGE\n{"v":2}\n{"timestamp":"soon"}\n[1]\n{"timestamp":2.0,"v":3}\n')
    with pytest.warns(RuntimeWarning, match="4 damaged lines"):
        page = store.query_logs(PREFIX, {"levels": ["error"], "descending": True})
    assert [r["sequenceNumber"] for r in page["logs"]] == [107, 7]
    with pytest.warns(RuntimeWarning, match="4 damaged lines"):
        assert store.read_tracks(PREFIX, "t") == [{"timestamp": 1.0, "v": 1}, {"timestamp": 2.0, "v": 3}]
    assert store.list_tracks(PREFIX)[0]["totalEntries"] == 2
    store.close()


_BUILDER = """
import sys
from ml_dash.records import LogRecord
from ml_dash.stores.local import LocalStore
store, prefix, n = LocalStore(sys.argv[1]), sys.argv[2], 0
print("ready", flush=True)
while True:
    store.append_logs(prefix, [LogRecord(1e9 + (n + i) % 997, ("info", "error")[(n + i) % 3 == 0], "m", None)
                               for i in range(3000)])
    store.append_tracks(prefix, "pose", [{"timestamp": float((n + i) * 7919 % 5000), "n": n + i} for i in range(700)])
    n += 3000
    store.query_logs(prefix, {"levels": ["error"]})
    store.read_tracks(prefix, "pose", limit=1)
"""


def test_a_reader_killed_while_indexing_never_makes_a_later_read_wrong(tmp_path: Path) -> None:
    """SIGKILL, at three moments, a process that keeps appending and extending the indexes;
    then the indexed reads agree with filtering the data files by brute force."""
    root = tmp_path / ".dash"
    for delay in (0.15, 0.4, 0.8):
        child = subprocess.Popen(
            [sys.executable, "-c", _BUILDER, str(root), PREFIX], stdout=subprocess.PIPE, text=True,
            env=child_env(),
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    store = LocalStore(root)
    every = store.query_logs(PREFIX, {"limit": 10**9})["logs"]  # by sequence: no index
    assert every
    page = store.query_logs(PREFIX, {"levels": ["error"], "descending": True, "limit": 10**6})
    assert [r["sequenceNumber"] for r in page["logs"]] == [r["sequenceNumber"] for r in every if r["level"] == "error"][
        ::-1
    ]
    window = store.query_logs(PREFIX, {"start_time": 1e9 + 100, "end_time": 1e9 + 200, "limit": 10**6})
    assert [r["sequenceNumber"] for r in window["logs"]] == [
        r["sequenceNumber"] for r in every if 1e9 + 100 <= r["ts"] <= 1e9 + 200
    ]
    data = Path(store.experiment_dir(PREFIX)) / "tracks" / "pose" / "data.jsonl"
    lines = [msgspec.json.decode(line) for line in data.read_bytes().splitlines()]
    whole = merge_track_entries(sorted(lines, key=lambda e: e["timestamp"]))
    assert store.read_tracks(PREFIX, "pose") == whole
    assert store.read_tracks(PREFIX, "pose", 1000.0, limit=50) == [e for e in whole if e["timestamp"] >= 1000.0][:50]
    assert store.list_tracks(PREFIX)[0]["totalEntries"] == len(whole)
    store.close()


# -- correctness against brute force -----------------------------------------------------------------

LEVEL_NAMES = ["debug", "info", "warn", "error", "fatal", "verbose"]
_records = st.lists(
    st.tuples(st.sampled_from(LEVEL_NAMES), st.integers(0, 30), st.sampled_from(["alpha", "Beta", "gamma beta", ""])),
    min_size=0,
    max_size=25,
)
_times = st.none() | st.integers(-1, 31).map(float)


@st.composite
def _log_queries(draw: st.DrawFn) -> dict[str, Any]:
    query: dict[str, Any] = {"offset": draw(st.integers(0, 30)), "limit": draw(st.integers(0, 30))}
    levels = draw(st.none() | st.lists(st.sampled_from(LEVEL_NAMES[:5]), min_size=1, max_size=3, unique=True))
    if levels:
        query["levels"] = levels
    for key in ("start_time", "end_time"):
        value = draw(_times)
        if value is not None:
            query[key] = value
    if draw(st.booleans()):
        query["descending"] = True
    search = draw(st.sampled_from(["", "", "beta", "A"]))
    if search:
        query["search"] = search
    return query


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.tuples(_records, _log_queries()), min_size=1, max_size=5))
def test_log_queries_match_a_brute_force_filter(
    batches: list[tuple[list[tuple[str, int, str]], dict[str, Any]]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = LocalStore(Path(folder) / ".dash")
        kept: list[tuple[str, float, str]] = []
        for records, query in batches:
            store.append_logs(PREFIX, [LogRecord(float(t), level, text, None) for level, t, text in records])
            kept += [(level, float(t), text) for level, t, text in records]
            wanted = [
                seq
                for seq, (level, ts, text) in enumerate(kept)
                if level in query.get("levels", [level])
                and query.get("start_time", -math.inf) <= ts <= query.get("end_time", math.inf)
                and query.get("search", "").lower() in text.lower()
            ]
            if query.get("descending"):
                wanted.reverse()
            page = store.query_logs(PREFIX, query)  # type: ignore[arg-type]
            offset, limit = query["offset"], query["limit"]
            assert [r["sequenceNumber"] for r in page["logs"]] == wanted[offset : offset + limit], query
            assert page["total"] == len(wanted)
            assert page["hasMore"] == (offset + len(page["logs"]) < len(wanted))
        store.close()


_entries = st.lists(
    st.tuples(st.integers(0, 20), st.sampled_from(["x", "y", "z"]), st.integers(-5, 5)), min_size=0, max_size=15
)


@st.composite
def _track_reads(draw: st.DrawFn) -> dict[str, Any]:
    read: dict[str, Any] = {}
    for key in ("start", "end", "after"):
        value = draw(st.none() | st.integers(-1, 21).map(float))
        if value is not None:
            read[key] = value
    read["limit"] = draw(st.none() | st.integers(0, 8))
    read["columns"] = draw(st.none() | st.lists(st.sampled_from(["x", "y", "z"]), max_size=2, unique=True))
    return read


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.tuples(_entries, _track_reads()), min_size=1, max_size=5))
def test_track_pages_and_summaries_match_a_brute_force_merge(
    batches: list[tuple[list[tuple[int, str, int]], dict[str, Any]]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = LocalStore(Path(folder) / ".dash")
        kept: list[dict[str, Any]] = []
        for entries, read in batches:
            batch = [{"timestamp": float(t), field: value} for t, field, value in entries]
            store.append_tracks(PREFIX, "topic", batch)
            kept += batch
            merged = merge_track_entries(sorted(kept, key=lambda e: e["timestamp"]))
            wanted = [
                e for e in merged
                if read.get("start", -math.inf) <= e["timestamp"] <= read.get("end", math.inf)
                and e["timestamp"] > read.get("after", -math.inf)
            ]
            wanted = merge_track_entries(wanted, read["columns"])
            if read["limit"] is not None:
                wanted = wanted[: read["limit"]]
            got = store.read_tracks(
                PREFIX, "topic", read.get("start"), read.get("end"), read["columns"], read["limit"], read.get("after")
            )
            assert got == wanted, read
            listed = store.list_tracks(PREFIX)
            if merged:
                assert listed == [{"topic": "topic", "totalEntries": len(merged),
                                   "firstTimestamp": merged[0]["timestamp"], "lastTimestamp": merged[-1]["timestamp"]}]
        store.close()


# -- the SDK ---------------------------------------------------------------------------------------


def test_sdk_track_pages_walk_a_topic_in_time_order(make_exp: Callable[..., Any]) -> None:
    exp = make_exp(flush_interval=3600)
    with exp.run:
        pose = exp.tracks("pose")
        for t in (5, 1, 4, 2, 3, 3):
            pose.append(_ts=float(t), x=t)
        pose.append(_ts=3.0, y=-3)
        pages = list(pose.pages(limit=2))
        assert [[e["timestamp"] for e in page] for page in pages] == [[1.0, 2.0], [3.0, 4.0], [5.0]]
        assert pages[1][0] == {"timestamp": 3.0, "x": 3, "y": -3}
        assert pose.read(limit=1, after=4.0) == [{"timestamp": 5.0, "x": 5}]
        assert [e["timestamp"] for e in pose.read(2.0, 4.0)] == [2.0, 3.0, 4.0]  # no limit: all, as before
        with pytest.raises(Exception, match="limit >= 1"):
            next(pose.pages(limit=0))
