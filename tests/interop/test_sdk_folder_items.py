"""Each item of the public SDK's folder format, written by hand from its description
(docs/storage-format.md, "Folders of the public SDK"); no SDK needed."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ml_dash.errors import InvalidNameError
from ml_dash.records import LogRecord
from ml_dash.stores.local import LocalStore

PREFIX = "alice/vision/run-1"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / ".dash" / PREFIX


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / ".dash")


def test_an_experiment_json_without_status_reads_completed_with_its_created_at(folder: Path, store: LocalStore) -> None:
    _write(folder / "experiment.json", json.dumps(
        {"name": "run-1", "project": "vision", "prefix": PREFIX, "metadata": None,
         "created_at": "2026-01-02T03:04:05.000000Z", "write_protected": False}))
    info = store.get_experiment(PREFIX)
    assert info is not None and info.status == "COMPLETED"
    assert info.created_at == 1767323045.0 and info.metadata == {}


def test_bare_nan_and_infinity_tokens_in_metric_lines_are_read_not_skipped(folder: Path, store: LocalStore) -> None:
    _write(folder / "metrics/train/data.jsonl",
           '{"index": 0, "data": {"loss": NaN}, "createdAt": "2026-01-02T03:04:05Z"}\n'
           '{"index": 1, "data": {"loss": Infinity, "b": -Infinity}}\n{"index": 2, "data": {"loss": 1}}\n')
    with _no_warning():  # not one line skipped as damaged
        points = store.read_metrics(PREFIX, "train")["data"]
        stats = store.metric_stats(PREFIX, "train")
    assert [p["index"] for p in points] == [0, 1, 2]
    assert math.isnan(points[0]["data"]["loss"]) and points[1]["data"] == {"loss": math.inf, "b": -math.inf}
    assert stats["totalDataPoints"] == 3
    store.append_metrics(PREFIX, "train", [{"loss": 2.0}])  # the appender counts from the NaN line too
    assert store.read_metrics(PREFIX, "train", 3)["data"][0]["index"] == 3


def test_bare_tokens_in_track_lines_and_a_nan_parameter_are_read(folder: Path, store: LocalStore) -> None:
    _write(folder / "tracks/pose/data.jsonl", '{"timestamp": 1.0, "x": NaN}\n{"timestamp": 2.0, "x": -Infinity}\n')
    _write(folder / "parameters.json", '{"version": 1, "data": {"lr": NaN}, "createdAt": "2026-01-02T03:04:05Z"}')
    entries = store.read_tracks(PREFIX, "pose")
    assert [e["timestamp"] for e in entries] == [1.0, 2.0] and math.isnan(entries[0]["x"])
    assert entries[1]["x"] == -math.inf
    assert math.isnan(store.get_params(PREFIX).data["lr"])


def test_a_text_that_only_looks_like_a_token_is_still_a_damaged_line(folder: Path, store: LocalStore) -> None:
    _write(folder / "metrics/train/data.jsonl", '{"index": 0, "data": {}}\nNaN garbage\n')
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert [p["index"] for p in store.read_metrics(PREFIX, "train")["data"]] == [0]


def test_a_flat_topic_folder_of_the_sdk_reads_lists_and_takes_appends_as_its_topic(
    folder: Path, store: LocalStore
) -> None:
    _write(folder / "tracks/robot_position/data.jsonl", '{"timestamp": 1.0, "x": 1.0}\n')
    _write(folder / "tracks/robot_position/metadata.json", json.dumps(
        {"trackId": "local-track-robot_position", "topic": "robot/position", "columns": ["x"], "totalEntries": 1}))
    assert [e["x"] for e in store.read_tracks(PREFIX, "robot/position")] == [1.0]
    assert store.read_tracks(PREFIX, "robot_position") == []  # the folder is robot/position's
    assert [t["topic"] for t in store.list_tracks(PREFIX)] == ["robot/position"]
    store.append_tracks(PREFIX, "robot/position", [{"timestamp": 2.0, "x": 2.0}])
    store.sync(PREFIX)
    assert [e["x"] for e in store.read_tracks(PREFIX, "robot/position")] == [1.0, 2.0]
    assert not (folder / "tracks/robot").exists()
    meta = json.loads((folder / "tracks/robot_position/metadata.json").read_text())
    assert (meta["trackId"], meta["topic"], meta["totalEntries"]) == ("local-track-robot_position", "robot/position", 2)
    with pytest.raises(InvalidNameError, match="holds topic 'robot/position'"):
        store.append_tracks(PREFIX, "robot_position", [{"timestamp": 3.0, "x": 3.0}])


def test_a_topic_with_a_slash_written_here_gets_a_flat_alias_and_metadata_the_sdk_lists(
    folder: Path, store: LocalStore
) -> None:
    store.append_tracks(PREFIX, "robot/position", [{"timestamp": 1.0, "x": 1.0}])
    store.sync(PREFIX)
    alias = folder / "tracks/robot_position"
    assert os.path.islink(alias) and os.readlink(alias) == os.path.join("robot", "position")
    meta = json.loads((alias / "metadata.json").read_text())
    assert (meta["trackId"], meta["topic"]) == ("local-track-robot_position", "robot/position")
    assert [t["topic"] for t in store.list_tracks(PREFIX)] == ["robot/position"]  # the alias is not a topic


def test_collision_a_real_topic_takes_its_name_over_from_an_alias(folder: Path, store: LocalStore) -> None:
    store.append_tracks(PREFIX, "a/b", [{"timestamp": 1.0, "x": 1.0}])
    assert os.path.islink(folder / "tracks/a_b")
    assert store.read_tracks(PREFIX, "a_b") == []  # the alias holds no data of a_b
    store.append_tracks(PREFIX, "a_b", [{"timestamp": 2.0, "y": 2.0}])
    assert not os.path.islink(folder / "tracks/a_b")
    assert [e["timestamp"] for e in store.read_tracks(PREFIX, "a/b")] == [1.0]  # a/b keeps its data
    assert [e["timestamp"] for e in store.read_tracks(PREFIX, "a_b")] == [2.0]
    assert [t["topic"] for t in store.list_tracks(PREFIX)] == ["a/b", "a_b"]
    store.append_tracks(PREFIX, "c_d", [{"timestamp": 1.0}])
    store.append_tracks(PREFIX, "c/d", [{"timestamp": 1.0}])  # the name is taken: no alias
    assert not os.path.islink(folder / "tracks/c_d") and (folder / "tracks/c/d/data.jsonl").exists()


def test_log_sequence_is_kept_current_and_sdk_log_lines_without_metadata_read(folder: Path, store: LocalStore) -> None:
    _write(folder / "logs/logs.jsonl",
           '{"sequenceNumber": 0, "timestamp": "2026-01-02T03:04:05Z", "level": "info", "message": "m"}\n')
    _write(folder / "logs/.log_sequence", "1")
    (log,) = store.query_logs(PREFIX, {})["logs"]
    assert log["metadata"] == {} and log["ts"] == 1767323045.0
    store.append_logs(PREFIX, [LogRecord(1767323046.0, "info", "n", {})])
    store.sync(PREFIX)
    assert (folder / "logs/.log_sequence").read_text() == "2"
    store.append_logs(PREFIX, [LogRecord(1767323047.0, "info", "o", {})])
    store.close()
    assert (folder / "logs/.log_sequence").read_text() == "3"


def test_metric_metadata_of_the_sdk_keeps_its_id_and_gets_a_current_next_index(folder: Path, store: LocalStore) -> None:
    line = '{"index": 0, "data": {"loss": 1}, "createdAt": "2026-01-02T03:04:05Z"}\n'
    _write(folder / "metrics/train/data.jsonl", line)
    _write(folder / "metrics/train/metadata.json", json.dumps(
        {"metricId": "local-metric-train", "name": "train", "description": "d", "tags": [], "metadata": None,
         "totalDataPoints": 1, "nextIndex": 1, "createdAt": "2026-01-02T03:04:05Z"}))
    store.append_metrics(PREFIX, "train", [{"loss": 2}, {"loss": 3}])
    store.close()
    meta = json.loads((folder / "metrics/train/metadata.json").read_text())
    assert (meta["metricId"], meta["description"], meta["nextIndex"], meta["totalDataPoints"]) == (
        "local-metric-train", "d", 3, 3)


@contextmanager
def _no_warning() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
