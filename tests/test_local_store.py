"""LocalStore on its own, over real temporary folders: what appends return, the
stream metadata it keeps, and the errors it raises at its edge (never an OSError)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_dash.errors import InvalidNameError, MLDashError, NotFoundError, StorageError
from ml_dash.records import AppendResult, ExperimentInfo, LogRecord, StreamDescription
from ml_dash.stores.local import LocalStore

PREFIX = "alice/proj/run-1"


def info(prefix: str = PREFIX) -> ExperimentInfo:
    owner, project, *_, name = prefix.split("/")
    return ExperimentInfo(prefix=prefix, owner=owner, project=project, name=name)


def points(start: int, count: int) -> list[dict[str, Any]]:
    return [{"step": i, "_ts": 100.0 + i} for i in range(start, start + count)]


def meta(root: Path, kind: str, name: str, prefix: str = PREFIX) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((root / prefix / kind / name / "metadata.json").read_bytes())
    return loaded


@pytest.fixture
def store(dash_root: Path) -> Iterator[LocalStore]:
    made = LocalStore(dash_root)
    made.open_experiment(info())
    yield made
    made.close()


# -- what appends return -----------------------------------------------------------------


def test_metric_and_log_appends_return_first_index_count_and_duplicate(store: LocalStore) -> None:
    assert store.append_metrics(PREFIX, "train", points(0, 3), "m-1") == AppendResult(0, 3, False)
    assert store.append_metrics(PREFIX, "train", points(3, 2), "m-2") == AppendResult(3, 2, False)
    assert store.append_metrics(PREFIX, "train", points(3, 2), "m-2") == AppendResult(3, 2, True)
    logs = [LogRecord(1.0, "info", "a", None), LogRecord(2.0, "warn", "b", None)]
    assert store.append_logs(PREFIX, logs, "l-1") == AppendResult(0, 2, False)
    assert store.append_logs(PREFIX, logs, "l-1") == AppendResult(0, 2, True)
    assert store.append_logs(PREFIX, logs[:1]) == AppendResult(2, 1, False)
    assert store.metric_stats(PREFIX, "train")["totalDataPoints"] == 5


def test_track_appends_have_no_first_and_a_resent_batch_is_a_duplicate(dash_root: Path, store: LocalStore) -> None:
    entries = [{"timestamp": 1.0, "x": 1.0}, {"timestamp": 2.0, "x": 2.0}]
    assert store.append_tracks(PREFIX, "pose", entries, "t-1") == AppendResult(None, 2, False)
    assert store.append_tracks(PREFIX, "pose", entries, "t-1") == AppendResult(None, 2, True)
    # Another store over the same folder (the server after a restart) knows it from the file.
    other = LocalStore(dash_root)
    try:
        assert other.append_tracks(PREFIX, "pose", entries, "t-1") == AppendResult(None, 2, True)
        assert other.append_tracks(PREFIX, "pose", entries[:1], "t-2") == AppendResult(None, 1, False)
    finally:
        other.close()
    assert [e["timestamp"] for e in store.read_tracks(PREFIX, "pose")] == [1.0, 2.0]


def test_empty_batches_return_no_first_and_create_nothing(dash_root: Path, store: LocalStore) -> None:
    assert store.append_metrics(PREFIX, "train", []) == AppendResult(None, 0, False)
    assert store.append_logs(PREFIX, []) == AppendResult(None, 0, False)
    assert store.append_tracks(PREFIX, "pose", []) == AppendResult(None, 0, False)
    assert sorted(p.name for p in (dash_root / PREFIX).iterdir()) == [".lock", "experiment.json"]


# -- stream metadata ---------------------------------------------------------------------------


def test_describe_stream_writes_metadata_json_before_any_point(dash_root: Path, store: LocalStore) -> None:
    store.describe_stream(PREFIX, "train/loss", StreamDescription("loss per step", ("core",), {"unit": "nats"}))
    doc = meta(dash_root, "metrics", "train/loss")
    assert doc["name"] == "train/loss" and doc["metricId"] == "local-metric-train/loss"
    assert (doc["description"], doc["tags"], doc["metadata"]) == ("loss per step", ["core"], {"unit": "nats"})
    assert (doc["totalDataPoints"], doc["nextIndex"], doc["firstDataAt"], doc["lastDataAt"]) == (0, 0, None, None)
    assert {"createdAt", "updatedAt"} <= set(doc)
    # A second description replaces the first; the creation time stays.
    store.describe_stream(PREFIX, "train/loss", StreamDescription("loss per batch"))
    again = meta(dash_root, "metrics", "train/loss")
    assert (again["description"], again["tags"], again["metadata"]) == ("loss per batch", [], {})
    assert again["createdAt"] == doc["createdAt"]
    assert store.list_metrics(PREFIX) == []  # a description alone is no data


def test_sync_refreshes_the_counters_of_streams_appended_to_and_keeps_the_description(
    dash_root: Path, store: LocalStore
) -> None:
    store.append_metrics(PREFIX, "train", points(0, 3))
    store.describe_stream(PREFIX, "train", StreamDescription("training loss", ("loss",)))
    store.append_metrics(PREFIX, "train", points(3, 4))
    store.append_tracks(PREFIX, "robot/pose", [{"timestamp": 5.0, "x": 1.0}, {"timestamp": 5.0, "y": 2.0}])
    store.append_tracks(PREFIX, "robot/pose", [{"timestamp": 7.5, "z": 3.0}])
    assert meta(dash_root, "metrics", "train")["totalDataPoints"] == 3  # as described, before the sync
    assert not (dash_root / PREFIX / "tracks/robot/pose/metadata.json").exists()
    store.sync(PREFIX)
    doc = meta(dash_root, "metrics", "train")
    assert (doc["totalDataPoints"], doc["nextIndex"], doc["firstDataAt"], doc["lastDataAt"]) == (7, 7, 100.0, 106.0)
    assert (doc["description"], doc["tags"], doc["metadata"]) == ("training loss", ["loss"], {})
    track = meta(dash_root, "tracks", "robot/pose")
    assert track["name"] == "robot/pose"
    assert track["columns"] == ["timestamp", "x", "y", "z"]  # derived from the data
    assert (track["totalEntries"], track["firstTimestamp"], track["lastTimestamp"]) == (2, 5.0, 7.5)
    assert set(track) == {
        "name", "createdAt", "columns", "totalEntries", "firstTimestamp", "lastTimestamp", "updatedAt",
        "trackId", "topic",  # what the ML-Dash SDK's lister needs
    }


def test_a_stream_without_description_gets_the_usual_keys(dash_root: Path, store: LocalStore) -> None:
    store.append_metrics(PREFIX, "eval", points(0, 2))
    store.sync(PREFIX)
    doc = meta(dash_root, "metrics", "eval")
    assert list(doc) == [
        "name", "createdAt", "metricId", "totalDataPoints", "nextIndex", "firstDataAt", "lastDataAt",
        "description", "tags", "metadata", "updatedAt",
    ]
    assert (doc["description"], doc["tags"], doc["metadata"]) == (None, [], {})


def test_sync_refreshes_only_its_experiment_and_close_refreshes_the_rest(dash_root: Path, store: LocalStore) -> None:
    other = "alice/proj/run-2"
    store.open_experiment(info(other))
    store.append_metrics(PREFIX, "train", points(0, 2))
    store.append_metrics(other, "train", points(0, 5))
    store.sync(PREFIX)
    assert meta(dash_root, "metrics", "train")["totalDataPoints"] == 2
    assert not (dash_root / other / "metrics/train/metadata.json").exists()
    assert store.close() is None
    assert meta(dash_root, "metrics", "train", other)["totalDataPoints"] == 5
    # Closed, the store still works (files reopen) and remembers new appends again.
    store.append_metrics(other, "train", points(5, 1))
    store.close()
    assert meta(dash_root, "metrics", "train", other)["totalDataPoints"] == 6


def test_a_failed_metadata_refresh_warns_and_is_tried_again(dash_root: Path, store: LocalStore) -> None:
    store.append_metrics(PREFIX, "train", points(0, 2))
    in_the_way = dash_root / PREFIX / "metrics/train/metadata.json"
    in_the_way.mkdir()  # a folder where the file must go: the rewrite fails
    with pytest.warns(RuntimeWarning, match=r"cannot refresh metrics/train/metadata.json"):
        store.sync(PREFIX)  # the data is durable all the same: no exception
    in_the_way.rmdir()
    store.close()
    assert meta(dash_root, "metrics", "train")["totalDataPoints"] == 2


def test_a_damaged_metadata_json_is_written_anew(dash_root: Path, store: LocalStore) -> None:
    store.append_metrics(PREFIX, "train", points(0, 2))
    (dash_root / PREFIX / "metrics/train/metadata.json").write_text("{broken")
    with pytest.warns(RuntimeWarning, match="writing it anew"):
        store.sync(PREFIX)
    assert meta(dash_root, "metrics", "train")["totalDataPoints"] == 2


# -- errors at the edge ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["blocker", "blocker/loss"])
def test_a_metric_name_running_into_a_file_is_an_invalid_name(dash_root: Path, store: LocalStore, name: str) -> None:
    (dash_root / PREFIX / "metrics").mkdir()
    (dash_root / PREFIX / "metrics/blocker").write_text("not a folder")
    with pytest.raises(InvalidNameError) as caught:
        store.append_metrics(PREFIX, name, points(0, 1))
    message = str(caught.value)
    assert f"metric {name!r}" in message and PREFIX in message
    assert str(dash_root) not in message  # a refusal a client sees names no server path
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(InvalidNameError, match=f"metric {name!r}"):
        store.describe_stream(PREFIX, name, StreamDescription("d"))
    # Reading a stream that cannot exist finds nothing.
    assert store.read_metrics(PREFIX, name)["total"] == 0
    assert store.metric_stats(PREFIX, name)["totalDataPoints"] == 0
    assert (dash_root / PREFIX / "metrics/blocker").read_text() == "not a folder"


def test_a_track_topic_and_a_prefix_running_into_files_are_invalid_names(dash_root: Path, store: LocalStore) -> None:
    (dash_root / PREFIX / "tracks").write_text("not a folder")
    with pytest.raises(InvalidNameError, match="track 'pose'"):
        store.append_tracks(PREFIX, "pose", [{"timestamp": 1.0, "x": 1}])
    assert store.read_tracks(PREFIX, "pose") == []
    (dash_root / "alice/proj/file").write_text("not a folder")
    with pytest.raises(InvalidNameError, match="alice/proj/file/run"):
        store.open_experiment(info("alice/proj/file/run"))
    with pytest.raises(InvalidNameError, match="alice/proj/file/run"):
        store.append_logs("alice/proj/file/run", [LogRecord(1.0, "info", "m", None)])
    assert store.get_experiment("alice/proj/file/run") is None


def test_disk_failures_are_storage_errors_naming_the_file(dash_root: Path, store: LocalStore) -> None:
    store.append_metrics(PREFIX, "train", points(0, 1))
    store.close()
    data = dash_root / PREFIX / "metrics/train/data.jsonl"
    data.unlink()
    data.mkdir()  # the store's own file is a folder: reads and appends fail like a broken disk
    for call in (
        lambda: store.read_metrics(PREFIX, "train"),
        lambda: store.metric_stats(PREFIX, "train"),
        lambda: store.append_metrics(PREFIX, "train", points(0, 1)),
    ):
        with pytest.raises(StorageError, match=r"data\.jsonl") as caught:
            call()
        assert isinstance(caught.value.__cause__, OSError) and not isinstance(caught.value.__cause__, StorageError)


def test_a_damaged_last_line_is_skipped_by_reads_and_counted_in_stats(dash_root: Path, store: LocalStore) -> None:
    """Issue 9: a damaged line is skipped and reported, never an error (more in test_store_hardening.py)."""
    store.append_metrics(PREFIX, "train", points(0, 2))
    data = dash_root / PREFIX / "metrics/train/data.jsonl"
    with data.open("ab") as fh:
        fh.write(b'{"index":"two","data":{}}\n')
    with pytest.warns(RuntimeWarning, match="damaged line"):
        page = store.read_metrics(PREFIX, "train")
    assert [p["index"] for p in page["data"]] == [0, 1] and page["total"] == 2
    with pytest.warns(RuntimeWarning, match="damaged line"):
        stats = store.metric_stats(PREFIX, "train")
    assert (stats["totalDataPoints"], stats.get("damaged")) == (2, 1)


def test_list_experiments_leaves_out_damaged_ones_with_a_warning(dash_root: Path, store: LocalStore) -> None:
    damaged = {
        "alice/proj/bad-json": "{not json",
        "alice/proj/not-an-object": "[1, 2]",
        "alice/proj/wrong-types": json.dumps({"tags": 5, "formatVersion": "one"}),
    }
    for prefix, text in damaged.items():
        (dash_root / prefix).mkdir(parents=True)
        (dash_root / prefix / "experiment.json").write_text(text)
    store.open_experiment(info("alice/proj/run-2"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        listed = [i.prefix for i in store.list_experiments()]
    assert listed == [PREFIX, "alice/proj/run-2"]
    messages = " ".join(str(w.message) for w in caught)
    for prefix in damaged:
        assert prefix in messages
    for prefix in damaged:
        with pytest.raises(StorageError, match=r"experiment\.json"):
            store.get_experiment(prefix)


class BuggyStore(LocalStore):
    def get_experiment(self, prefix: str) -> ExperimentInfo | None:
        raise KeyError("a bug, not a damaged file")


def test_list_experiments_lets_a_bug_surface(dash_root: Path, store: LocalStore) -> None:
    with pytest.raises(KeyError, match="a bug"):
        BuggyStore(dash_root).list_experiments()


def test_a_torn_tail_that_cannot_be_set_aside_is_left_in_place(dash_root: Path, store: LocalStore) -> None:
    store.append_metrics(PREFIX, "train", points(0, 2))
    store.close()
    data = dash_root / PREFIX / "metrics/train/data.jsonl"
    with data.open("ab") as fh:
        fh.write(b'{"index":2,"da')  # a crash in the middle of a write
    before = data.read_bytes()
    side = Path(f"{data}.torn")
    side.mkdir()  # the side file cannot be written
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(StorageError, match="cannot be set aside") as failed:
            store.append_metrics(PREFIX, "train", points(2, 1))
    assert "left as it is" in str(failed.value)
    assert not any("moved it" in str(w.message) for w in caught)
    assert data.read_bytes() == before
    assert store.read_metrics(PREFIX, "train")["total"] == 2  # readers stop at the last newline
    side.rmdir()
    with pytest.warns(RuntimeWarning, match="moved it to"):
        assert store.append_metrics(PREFIX, "train", points(2, 1)) == AppendResult(2, 1, False)
    assert side.read_bytes() == b'{"index":2,"da\n'
    assert [p["index"] for p in store.read_metrics(PREFIX, "train")["data"]] == [0, 1, 2]


def test_no_public_call_lets_an_os_error_out(dash_root: Path) -> None:
    """A root that is a file: every call fails, and each with one of our errors."""
    dash_root.parent.mkdir(parents=True, exist_ok=True)
    dash_root.write_text("a file where the root folder should be")
    store = LocalStore(dash_root)
    calls: dict[str, tuple[Callable[[], object], type[MLDashError]]] = {
        "open_experiment": (lambda: store.open_experiment(info()), InvalidNameError),
        "update_experiment": (lambda: store.update_experiment(PREFIX, status="COMPLETED"), NotFoundError),
        "set_params": (lambda: store.set_params(PREFIX, {"a": 1}), InvalidNameError),
        "append_metrics": (lambda: store.append_metrics(PREFIX, "m", points(0, 1)), InvalidNameError),
        "describe_stream": (lambda: store.describe_stream(PREFIX, "m", StreamDescription()), InvalidNameError),
        "append_logs": (lambda: store.append_logs(PREFIX, [LogRecord(1.0, "info", "x", None)]), InvalidNameError),
        "append_tracks": (lambda: store.append_tracks(PREFIX, "t", [{"timestamp": 1.0, "x": 1}]), InvalidNameError),
    }
    for name, (call, expected) in calls.items():
        with pytest.raises(MLDashError) as caught:
            call()
        assert type(caught.value) is expected, f"{name}: {caught.value!r}"
    # Reads find nothing, and syncing or closing a store that wrote nothing is fine.
    assert store.get_experiment(PREFIX) is None
    assert store.get_params(PREFIX).data == {}
    assert store.list_experiments() == [] and store.list_metrics(PREFIX) == [] and store.list_tracks(PREFIX) == []
    assert store.query_logs(PREFIX, {})["total"] == 0
    store.sync(PREFIX)
    store.close()
    assert os.path.isfile(dash_root)
