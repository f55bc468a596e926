"""Names the stores give their own files and folders cannot be a user's name segment.

A metric named ``train/.series`` would be the folder ``metrics/train/.series/``: the
series index of the stream ``train``. ``ml_dash.names`` refuses every such segment, in
the SDK and on the server, with a message that names it and says what the store uses
it for. The last test builds a real folder with every kind of data, index and set-aside
file and checks that each name the store created for itself is refused.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_dash import Experiment, InvalidNameError, LocalStore
from ml_dash.names import reserved_use, validate_name
from ml_dash.records import LogQuery
from ml_dash.server import create_app
from ml_dash.stores import factory, line_index, local_claims, series_files
from support.app import AppClient

PREFIX = "alice/vision/run-1"
# segment -> words of what the message says the store uses it for
TAKEN = {
    ".series": "series index",
    ".ml-dash": "indexes and summaries",
    "data.jsonl": "data file",
    "metadata.json": "description of a stream",
    "data.jsonl.damaged": "damaged lines",
    "data.jsonl.torn": "torn line",
    ".tmp-123-456-experiment.json": "temporary file",
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[AppClient]:
    store = LocalStore(tmp_path / ".dash")
    made = AppClient(create_app(store))
    try:
        yield made
    finally:
        made.close()
        store.close()


def test_the_store_constants_for_its_own_names_are_all_reserved() -> None:
    for name in (series_files.INDEX_DIR, line_index.FOLDER, local_claims.CLAIMS_FILE, local_claims.OWNER_LOCK,
                 local_claims.RESUMES_FILE, factory.SPOOL_FOLDER, factory.CLAIMS_FOLDER, series_files.DATA_FILE):
        assert reserved_use(name) is not None, name
    assert reserved_use("train") is None and reserved_use("series") is None and reserved_use("damaged") is None


@pytest.mark.parametrize(("segment", "use"), TAKEN.items())
def test_a_metric_or_track_named_with_a_store_segment_is_refused_by_the_sdk_naming_it(
    tmp_path: Path, segment: str, use: str
) -> None:
    with Experiment(prefix=PREFIX, dash_root=tmp_path / ".dash").run as exp:
        exp.metrics("train").log(loss=1.0)
        with pytest.raises(InvalidNameError) as metric:
            exp.metrics(f"train/{segment}")
        with pytest.raises(InvalidNameError) as topic:
            exp.tracks(f"robot/{segment}")
    for refused, name in ((metric.value, f"train/{segment}"), (topic.value, f"robot/{segment}")):
        message = str(refused)
        assert repr(name) in message and repr(segment) in message, message
        assert "a name the store uses itself" in message and use in message, message
    stream = tmp_path / ".dash" / PREFIX / "metrics" / "train"
    assert not (stream / segment).is_dir()  # nothing was made under the refused name


@pytest.mark.parametrize("segment", [".series", "data.jsonl.damaged"])
def test_the_server_refuses_a_store_segment_in_a_metric_name_or_topic_with_invalid_name(
    client: AppClient, segment: str
) -> None:
    q = {"prefix": PREFIX}
    for route, key, body in (("/api/v1/metrics/append", "name", {"batchId": "b", "points": [{"v": 1}]}),
                             ("/api/v1/tracks/append", "topic", {"batchId": "b", "entries": [{"timestamp": 1.0}]})):
        answer = client.post(route, params={**q, key: f"train/{segment}"}, json=body)
        assert answer.status_code == 400, answer.text
        found = answer.json()
        assert found["code"] == "invalid_name", found
        assert repr(segment) in found["message"] and "the store uses itself" in found["message"], found


def _build_everything(root: Path) -> None:
    """A folder with every file and folder the store makes for itself: data, indexes,
    claims, resumes, descriptions, and lines set aside (torn and damaged)."""
    with Experiment(prefix=PREFIX, dash_root=root).run as exp:
        exp.params.set(lr=0.1)
        for step in range(100):  # enough points for the series index to keep files
            exp.metrics("train", description="loss").log(loss=1.0 / (step + 1), step=step)
        exp.metrics("eval/acc").log(acc=0.5)
        exp.tracks("robot/position").append(x=1.0, _ts=1.0)
        exp.log("hello", level="warn")
    data = root / PREFIX / "metrics" / "train" / "data.jsonl"
    with open(data, "ab") as f:
        f.write(b'GARBAGE\n{"index":')  # a damaged line, then a torn one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the set-aside is reported as a warning
        with Experiment(prefix=PREFIX, dash_root=root).run as exp:
            exp.metrics("train").log(loss=0.5, step=100)
    store = LocalStore(root)
    try:
        store.metric_series(PREFIX, "train", "loss", "step", None, None, 10)
        store.metric_fields(PREFIX, "train")
        store.run_summaries("alice", "vision")
        store.read_tracks(PREFIX, "robot/position", limit=10)
        store.list_tracks(PREFIX)
        store.query_logs(PREFIX, LogQuery(levels=["warn"], limit=10))
    finally:
        store.close()
    assert (data.parent / "data.jsonl.damaged").exists() and (data.parent / "data.jsonl.torn").exists()
    assert (data.parent / ".series").is_dir()


def test_every_name_the_folder_store_gives_its_own_files_is_refused_as_a_name_segment(tmp_path: Path) -> None:
    root = tmp_path / ".dash"
    _build_everything(root)
    # robot_position: the alias through which the ML-Dash SDK finds topic robot/position, a
    # name in the users' space on purpose (a user's own topic robot_position replaces it).
    users = {"alice", "vision", "run-1", "train", "eval", "acc", "robot", "position", "robot_position"}
    kinds = {"metrics", "logs", "tracks"}  # one level inside an experiment, never beside a user's stream
    store_names = set()
    for _folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            if name in users or name in kinds:
                continue
            store_names.add(name)
            with pytest.raises(InvalidNameError, match="the store uses itself"):
                validate_name(f"train/{name}", "metric name")
        dirs[:] = [d for d in dirs if d in users or d in kinds]  # inside the store's own folders no name reaches
    assert {".series", "data.jsonl", "data.jsonl.damaged", "data.jsonl.torn", "experiment.json"} <= store_names
