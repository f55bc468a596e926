"""Tracks as code written for the public ML-Dash SDK uses them (COMPAT-SURFACE.md, "Tracks"):
``read(format=...)``, shared ``_ts=-1``, distinct default times, ``TrackSlice`` list
queries, errors and repr. Real temporary folders; parquet read back with pyarrow; the
missing-extra error in a real child process that cannot import pyarrow."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ml_dash import Experiment, InvalidValueError, NotFoundError
from support.processes import child_env


def robot(exp: Experiment) -> None:
    topic = exp.tracks("robot/pose")
    topic.append(x=1.0, y=2.0, _ts=10.0)
    topic.append(x=1.5, arm={"j1": 0.1, "j2": 0.2}, _ts=11.0)
    topic.append(z=9.0, _ts=12.5)


# -- read formats -------------------------------------------------------------------------


def test_read_format_json_is_the_sdk_dict_of_entries_and_count(exp: Experiment) -> None:
    robot(exp)
    got = exp.tracks("robot/pose").read(format="json")
    assert got == {
        "entries": [
            {"timestamp": 10.0, "x": 1.0, "y": 2.0},
            {"timestamp": 11.0, "x": 1.5, "arm.j1": 0.1, "arm.j2": 0.2},
            {"timestamp": 12.5, "z": 9.0},
        ],
        "count": 3,
    }
    assert type(got) is dict


def test_read_without_format_is_the_entry_list_that_also_answers_entries_and_count(exp: Experiment) -> None:
    robot(exp)
    got = exp.tracks("robot/pose").read()
    assert [e["timestamp"] for e in got] == [10.0, 11.0, 12.5]
    assert got[0] == {"timestamp": 10.0, "x": 1.0, "y": 2.0}
    assert got["count"] == 3 and got.get("count") == 3
    assert got["entries"] == exp.tracks("robot/pose").read(format="json")["entries"]
    assert got.get("other", "dflt") == "dflt"
    with pytest.raises(KeyError):
        got["other"]


def test_read_format_jsonl_is_bytes_with_one_object_per_entry(exp: Experiment) -> None:
    robot(exp)
    exp.tracks("robot/pose").append(w=float("nan"), _ts=13.0)
    raw = exp.tracks("robot/pose").read(format="jsonl")
    assert isinstance(raw, bytes)
    lines = raw.split(b"\n")
    assert len(lines) == 4 and not raw.endswith(b"\n")
    parsed = [json.loads(line) for line in lines]
    assert parsed[:3] == exp.tracks("robot/pose").read(format="json")["entries"][:3]
    assert parsed[3]["w"] != parsed[3]["w"]  # NaN kept, as the bare token Python's json reads back


def test_read_format_jsonl_of_an_empty_topic_is_empty_bytes(exp: Experiment) -> None:
    assert exp.tracks("nothing").read(format="jsonl") == b""


def test_read_format_parquet_is_a_zstd_parquet_file_with_one_column_per_field(exp: Experiment) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    robot(exp)
    raw = exp.tracks("robot/pose").read(format="parquet")
    assert isinstance(raw, bytes) and raw[:4] == b"PAR1"
    meta = pq.ParquetFile(io.BytesIO(raw)).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    table = pq.read_table(io.BytesIO(raw))
    assert table.num_rows == 3
    assert set(table.column_names) == {"timestamp", "x", "y", "arm.j1", "arm.j2", "z"}
    assert table.column("timestamp").to_pylist() == [10.0, 11.0, 12.5]
    assert table.column("x").to_pylist() == [1.0, 1.5, None]


def test_read_format_parquet_of_an_empty_topic_has_a_timestamp_column(exp: Experiment) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(io.BytesIO(exp.tracks("nothing").read(format="parquet")))
    assert (table.num_rows, table.column_names) == (0, ["timestamp"])


def test_parquet_without_pyarrow_is_a_clear_error_naming_the_extra(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        sys.modules["pyarrow"] = None  # as if it were not installed
        sys.modules["pyarrow.parquet"] = None
        from ml_dash import Experiment
        with Experiment(prefix="a/b/c", dash_root={str(tmp_path / ".dash")!r}).run as exp:
            exp.tracks("t").append(x=1.0, _ts=1.0)
            try:
                exp.tracks("t").read(format="parquet")
            except ImportError as exc:
                print(type(exc).__name__, "|", exc)
            print(len(exp.tracks("t").read(format="json")["entries"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True, text=True,
                          timeout=60, check=True)
    first, second = done.stdout.strip().splitlines()
    assert first.startswith("MissingExtraError | ")
    assert "pip install 'ml-dash[parquet]'" in first and "pyarrow" in first
    assert second == "1"


def test_read_format_mocap_has_version_metadata_channels_and_frames(exp: Experiment) -> None:
    robot(exp)
    got = exp.tracks("robot/pose").read(format="mocap")
    assert got["version"] == "1.0"
    assert got["metadata"] == {"topic": "robot/pose", "description": None, "tags": [], "fps": 30,
                               "duration": 2.5, "frameCount": 3, "startTime": 10.0, "endTime": 12.5}
    assert got["channels"] == ["arm.j1", "arm.j2", "x", "y", "z"]
    assert got["frames"] == [
        {"time": 10.0, "x": 1.0, "y": 2.0},
        {"time": 11.0, "x": 1.5, "arm.j1": 0.1, "arm.j2": 0.2},
        {"time": 12.5, "z": 9.0},
    ]


def test_mocap_takes_description_tags_and_fps_given_with_the_topic(exp: Experiment) -> None:
    topic = exp.tracks("cam", description="left camera", tags=["rgb"], metadata={"fps": 60})
    topic.append(frame=0, _ts=1.0)
    assert exp.tracks("cam") is topic
    meta = topic.read(format="mocap")["metadata"]
    assert (meta["description"], meta["tags"], meta["fps"]) == ("left camera", ["rgb"], 60)


def test_mocap_of_an_empty_topic_has_zero_frames(exp: Experiment) -> None:
    got = exp.tracks("nothing").read(format="mocap")
    assert (got["channels"], got["frames"]) == ([], [])
    assert {k: got["metadata"][k] for k in ("frameCount", "duration", "startTime", "endTime")} == {
        "frameCount": 0, "duration": 0, "startTime": 0, "endTime": 0}


@pytest.mark.parametrize("fmt", ["csv", "JSON", ""])
def test_another_format_says_unsupported_format(exp: Experiment, fmt: str) -> None:
    with pytest.raises(InvalidValueError, match="Unsupported format") as info:
        exp.tracks("t").read(format=fmt)
    assert repr(fmt) in str(info.value)


def test_columns_keep_timestamp_and_the_asked_columns_that_are_present(exp: Experiment) -> None:
    robot(exp)
    got = exp.tracks("robot/pose").read(columns=["x", "missing"], format="json")
    assert got["entries"] == [{"timestamp": 10.0, "x": 1.0}, {"timestamp": 11.0, "x": 1.5}, {"timestamp": 12.5}]
    frames = exp.tracks("robot/pose").read(start_timestamp=11.0, columns=["z"], format="mocap")["frames"]
    assert frames == [{"time": 11.0}, {"time": 12.5, "z": 9.0}]


def test_numpy_values_read_back_as_lists_and_python_scalars(exp: Experiment) -> None:
    np = pytest.importorskip("numpy")
    exp.tracks("q").append(q=np.array([0.1, 0.2]), n=np.int64(3), _ts=1.0)
    (entry,) = exp.tracks("q").read(format="json")["entries"]
    assert entry == {"timestamp": 1.0, "q": [0.1, 0.2], "n": 3}
    assert type(entry["n"]) is int and type(entry["q"]) is list


# -- time -------------------------------------------------------------------------------


def test_ts_minus_one_after_a_track_append_reuses_its_time_for_metrics_and_topics(exp: Experiment) -> None:
    exp.tracks("robot/pose").append(x=1.0, _ts=500.25)
    exp.metrics("train").log(loss=0.1, _ts=-1)
    exp.tracks("camera").append(frame=1, _ts=-1)
    exp.metrics.log(epoch=1, _ts=-1)
    assert exp.metrics("train").read()["data"][0]["data"]["_ts"] == 500.25
    assert exp.metrics(None).read()["data"][0]["data"]["_ts"] == 500.25
    assert exp.tracks("camera").read()[0]["timestamp"] == 500.25


def test_ts_minus_one_after_a_default_time_shares_that_time(exp: Experiment) -> None:
    exp.tracks("a").append(x=1)
    exp.tracks("b").append(y=2, _ts=-1)
    exp.metrics("m").log(v=3, _ts=-1)
    t = exp.tracks("a").read()[0]["timestamp"]
    assert exp.tracks("b").read()[0]["timestamp"] == t
    assert exp.metrics("m").read()["data"][0]["data"]["_ts"] == t


def test_default_times_are_distinct_across_topics_and_increase(exp: Experiment) -> None:
    topics = [exp.tracks(f"t{i}") for i in range(4)]
    for _ in range(200):
        for topic in topics:
            topic.append(x=1)
    times = [e["timestamp"] for topic in topics for e in topic.read()]
    assert len(times) == 800 and len(set(times)) == 800
    for topic in topics:
        own = [e["timestamp"] for e in topic.read()]
        assert own == sorted(own)


def test_an_explicit_future_time_in_one_topic_does_not_move_the_others(exp: Experiment) -> None:
    exp.tracks("a").append(x=1, _ts=4_000_000_000.0)
    exp.tracks("b").append(x=1)
    assert exp.tracks("b").read()[0]["timestamp"] < 4_000_000_000.0


# -- TrackSlice ------------------------------------------------------------------------


def stamps(exp: Experiment, topic: str = "robot/pose") -> None:
    for t in (1.0, 3.0, 5.0, 7.0):
        exp.tracks(topic).append(v=t * 10, _ts=t)


def test_find_by_time_with_a_list_gives_a_list_of_floor_matches(exp: Experiment) -> None:
    stamps(exp)
    view = exp.tracks("robot/pose").slice(0.0, 10.0)
    assert [e["v"] for e in view.findByTime([1.0, 3.5, 7.0, 100.0, 2.0])] == [10.0, 30.0, 70.0, 70.0, 10.0]
    assert view.findByTime([]) == []
    assert view.findByTime(5.5)["v"] == 50.0


def test_find_by_time_before_the_first_entry_says_no_entry_found(exp: Experiment) -> None:
    stamps(exp)
    view = exp.tracks("robot/pose").slice(3.0, 7.0)
    with pytest.raises(NotFoundError, match="No entry found with timestamp"):
        view.findByTime(2.9)
    with pytest.raises(LookupError, match="No entry found with timestamp"):
        view.findByTime([5.0, 1.0])


def test_find_by_time_in_an_empty_slice_says_no_entries_in_track_slice(exp: Experiment) -> None:
    stamps(exp)
    view = exp.tracks("robot/pose").slice(100.0, 200.0)
    assert len(view) == 0
    with pytest.raises(NotFoundError, match="No entries in track slice"):
        view.findByTime(150.0)
    with pytest.raises(NotFoundError, match="No entries in track slice"):
        exp.tracks("never").slice().findByTime([1.0])


def test_track_slice_repr_names_topic_start_and_end(exp: Experiment) -> None:
    stamps(exp)
    assert repr(exp.tracks("robot/pose").slice(0.0, 10.0)) == "TrackSlice(topic='robot/pose', start=0.0, end=10.0)"
    assert repr(exp.tracks("robot/pose").slice()) == "TrackSlice(topic='robot/pose', start=None, end=None)"


def test_track_slice_iterates_and_counts_its_entries(exp: Experiment) -> None:
    stamps(exp)
    view = exp.tracks("robot/pose").slice(3.0, 5.0)
    assert [e["timestamp"] for e in view] == [3.0, 5.0]
    assert [e["timestamp"] for e in view] == [3.0, 5.0]  # iterable again
    assert len(view) == 2


def test_parquet_of_a_column_with_mixed_types_is_an_error_naming_the_column(exp: Experiment) -> None:
    pytest.importorskip("pyarrow")
    exp.tracks("t").append(label=1, _ts=1.0)
    exp.tracks("t").append(label="one", _ts=2.0)
    with pytest.raises(InvalidValueError, match="'label'"):
        exp.tracks("t").read(format="parquet")
