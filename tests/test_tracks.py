"""Tracks: timestamped entries, merges, reads by time, files and field names, as COMPAT.md states them."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ml_dash import Experiment, InvalidValueError
from ml_dash.errors import NotFoundError
from support.files import jsonl, strict_json

# -- tracks -------------------------------------------------------------------------------


def test_track_append_writes_timestamped_entries(exp: Experiment) -> None:
    topic = exp.tracks("robot/position")
    topic.append(x=1.0, y=2.0, _ts=10.0)
    topic.append(x=1.5, y=2.5, _ts=11.0)
    assert topic.read() == [{"timestamp": 10.0, "x": 1.0, "y": 2.0}, {"timestamp": 11.0, "x": 1.5, "y": 2.5}]


def test_track_topic_with_slash_is_a_nested_folder(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run:
        exp.tracks("robot/position").append(x=1.0, _ts=5.0)
    (line,) = jsonl(Path(exp.path) / "tracks" / "robot" / "position" / "data.jsonl")
    assert (line["timestamp"], line["x"]) == (5.0, 1.0)  # the store may add keys of its own


def test_track_entries_with_the_same_timestamp_merge(exp: Experiment) -> None:
    topic = exp.tracks("pose")
    topic.append(x=1.0, _ts=5.0)
    topic.append(y=2.0, _ts=5.0)
    topic.append(x=3.0, _ts=6.0)
    topic.flush()
    topic.append(z=9.0, x=4.0, _ts=6.0)  # in a later batch: still merges, later fields win
    assert topic.read() == [{"timestamp": 5.0, "x": 1.0, "y": 2.0}, {"timestamp": 6.0, "x": 4.0, "z": 9.0}]


def test_track_default_timestamps_strictly_increase(exp: Experiment) -> None:
    topic = exp.tracks("fast")
    before = time.time()
    for i in range(300):
        topic.append(i=i)
    entries = topic.read()
    assert [e["i"] for e in entries] == list(range(300))
    stamps = [e["timestamp"] for e in entries]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert stamps[0] >= before


def test_track_default_timestamp_after_an_explicit_future_one_still_increases(exp: Experiment) -> None:
    topic = exp.tracks("pose")
    future = time.time() + 10_000
    topic.append(x=1, _ts=future)
    topic.append(x=2)
    entries = topic.read()
    assert len(entries) == 2
    assert entries[1]["timestamp"] > future


def test_track_ts_minus_one_lines_up_with_metrics_and_other_topics(exp: Experiment) -> None:
    exp.metrics("train").log(loss=1.0)
    exp.tracks("robot/position").append(x=1.0, _ts=-1)
    exp.tracks("robot/velocity").append(v=0.5, _ts=-1)
    metric_ts = exp.metrics("train").read()["data"][0]["data"]["_ts"]
    assert exp.tracks("robot/position").read()[0]["timestamp"] == metric_ts
    assert exp.tracks("robot/velocity").read()[0]["timestamp"] == metric_ts

    exp.tracks("robot/position").append(x=2.0, _ts=777.0)
    exp.metrics("eval").log(acc=0.1, _ts=-1)
    assert exp.metrics("eval").read()["data"][0]["data"]["_ts"] == 777.0


def test_track_read_with_time_range_and_columns(exp: Experiment) -> None:
    topic = exp.tracks("pose")
    for i in range(10):
        topic.append(x=float(i), y=float(-i), label=f"t{i}", _ts=100.0 + i)
    window = topic.read(start_timestamp=103.0, end_timestamp=106.0)
    assert [e["timestamp"] for e in window] == [103.0, 104.0, 105.0, 106.0]
    assert window[0] == {"timestamp": 103.0, "x": 3.0, "y": -3.0, "label": "t3"}
    only_x = topic.read(start_timestamp=108.0, columns=["x"])
    assert only_x == [{"timestamp": 108.0, "x": 8.0}, {"timestamp": 109.0, "x": 9.0}]
    assert [e["timestamp"] for e in topic.read(end_timestamp=101.0)] == [100.0, 101.0]


def test_track_read_returns_time_order_even_when_appended_out_of_order(exp: Experiment) -> None:
    topic = exp.tracks("pose")
    topic.append(x=3, _ts=3.0)
    topic.append(x=1, _ts=1.0)
    topic.flush()
    topic.append(x=2, _ts=2.0)
    assert [e["x"] for e in topic.read()] == [1, 2, 3]


def test_track_slice_find_by_time_gives_the_last_entry_at_or_before(exp: Experiment) -> None:
    topic = exp.tracks("pose")
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):
        topic.append(x=t * 10, _ts=t)
    view = topic.slice(2.0, 4.0)
    assert [e["timestamp"] for e in view] == [2.0, 3.0, 4.0]
    assert len(view) == 3
    assert view.findByTime(3.5)["x"] == 30.0
    assert view.findByTime(3.0)["x"] == 30.0
    assert view.findByTime(100.0)["x"] == 40.0
    with pytest.raises(NotFoundError, match="No entry found with timestamp"):
        view.findByTime(1.5)


def test_track_flush_writes_the_data_file(exp: Experiment) -> None:
    topic = exp.tracks("pose")
    topic.append(x=1.0, _ts=1.0)
    topic.append(x=2.0, _ts=2.0)
    topic.flush()
    lines = jsonl(Path(exp.path) / "tracks/pose/data.jsonl")
    assert [line["x"] for line in lines] == [1.0, 2.0]


def test_track_nested_field_dicts_are_flattened_with_dots(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run:
        exp.tracks("robot").append(pose={"x": 1.0, "rot": {"yaw": 0.1}}, speed=2.0, _ts=3.0)
        assert exp.tracks("robot").read() == [{"timestamp": 3.0, "pose.x": 1.0, "pose.rot.yaw": 0.1, "speed": 2.0}]
    (line,) = jsonl(Path(exp.path) / "tracks/robot/data.jsonl")
    expected = {"timestamp": 3.0, "pose.x": 1.0, "pose.rot.yaw": 0.1, "speed": 2.0}
    assert {k: line.get(k) for k in expected} == expected  # the store may add keys of its own
    assert "pose" not in line and "pose.rot" not in line


def test_track_metadata_json_holds_columns_count_and_time_span(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run:
        topic = exp.tracks("robot/position")
        topic.append(x=1.0, _ts=10.0)
        topic.append(y=2.0, _ts=12.5)
    meta = strict_json((Path(exp.path) / "tracks/robot/position/metadata.json").read_text())
    assert set(meta["columns"]) >= {"x", "y"}
    assert meta["totalEntries"] == 2
    assert (meta["firstTimestamp"], meta["lastTimestamp"]) == (10.0, 12.5)


def test_track_append_without_fields_or_with_reserved_field_is_an_error(exp: Experiment) -> None:
    with pytest.raises(InvalidValueError):
        exp.tracks("pose").append(_ts=1.0)
    with pytest.raises(InvalidValueError, match="timestamp"):
        exp.tracks("pose").append(timestamp=5.0, x=1.0)
