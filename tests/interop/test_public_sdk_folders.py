"""Folders written by the public ML-Dash SDK are read and resumed here, and the reverse,
with real processes: point for point, nothing lost, counters continuous."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ml_dash import Experiment
from ml_dash.stores.local import LocalStore

from .conftest import PublicSDK

PREFIX = "alice/vision/run-1"
NAN, INF = float("nan"), float("inf")

SDK_WRITES = """
from ml_dash import Experiment
nan, inf = float("nan"), float("inf")
with Experiment(prefix=VALUES["prefix"], dash_root=".dash").run as exp:
    exp.params.set(lr=0.1, model={"depth": 3}, bad=nan)
    train = exp.metrics("train")
    for step, loss in enumerate([1.0, nan, inf, -inf]):
        train.log(loss=loss, step=step)
    exp.log("start", level="info", metadata={"epoch": 0})
    exp.log("plain")
    exp.tracks("robot/position").append(x=1.0, y=nan, _ts=1.0)
    exp.tracks("robot/position").append(x=2.0, y=3.0, _ts=2.0)
    exp.tracks("robot/arm/pose").append(q=[1, 2], _ts=1.5)
print(json.dumps("written"))
"""

SDK_RESUMES = """
from ml_dash import Experiment
with Experiment(prefix=VALUES["prefix"], dash_root=".dash").run as exp:
    page = exp.metrics("train").read(start_index=0, limit=100)
    track = exp.tracks("robot/position").read()
    listed = exp._storage.list_tracks(exp.run.owner, exp.run.project, exp.run._folder_path)
    exp.metrics("train").log(loss=0.25, step=VALUES["step"])
    exp.log("from the public SDK", level="warn", metadata={"who": "sdk"})
    exp.tracks("robot/position").append(x=9.0, _ts=VALUES["ts"])
print(json.dumps({"page": page, "track": track, "listed": sorted(t["topic"] for t in listed)}))
"""


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _losses(store: LocalStore) -> tuple[list[int], list[float]]:
    points = store.read_metrics(PREFIX, "train", 0, 1000)["data"]
    return [p["index"] for p in points], [p["data"]["loss"] for p in points]


def _logs(store: LocalStore) -> list[dict[str, Any]]:
    return list(store.query_logs(PREFIX, {"limit": 1000})["logs"])


def test_a_folder_the_public_sdk_wrote_is_read_and_resumed_here_and_there_again(
    public_sdk: PublicSDK, tmp_path: Path
) -> None:
    root = tmp_path / ".dash"
    public_sdk.run(SDK_WRITES, tmp_path, prefix=PREFIX)

    store = LocalStore(root)
    info = store.get_experiment(PREFIX)
    assert info is not None and info.status == "COMPLETED" and info.created_at > 0  # no status, created_at
    params = store.get_params(PREFIX).data
    assert params["lr"] == 0.1 and params["model.depth"] == 3 and math.isnan(params["bad"])
    indexes, losses = _losses(store)
    assert indexes == [0, 1, 2, 3]
    assert all(map(_same, losses, [1.0, NAN, INF, -INF]))  # bare NaN/Infinity tokens read
    logs = _logs(store)
    assert [(r["sequenceNumber"], r["message"], r["metadata"]) for r in logs] == [
        (0, "start", {"epoch": 0}), (1, "plain", {})
    ]
    entries = store.read_tracks(PREFIX, "robot/position")
    assert [e["timestamp"] for e in entries] == [1.0, 2.0] and math.isnan(entries[0]["y"])
    assert [t["topic"] for t in store.list_tracks(PREFIX)] == ["robot/arm/pose", "robot/position"]
    store.close()

    with Experiment(prefix=PREFIX, dash_root=str(root)).run as exp:  # resumed here
        exp.metrics("train").log(loss=0.5, step=4)
        exp.metrics("train").log(loss=NAN, step=5)
        exp.log("resumed here", metadata={"who": "us"})
        exp.tracks("robot/position").append(x=3.0, _ts=3.0)

    seen = public_sdk.run(SDK_RESUMES, tmp_path, prefix=PREFIX, step=6, ts=4.0)  # and there again
    assert [p["index"] for p in seen["page"]["data"]] == [0, 1, 2, 3, 4, 5]
    assert [e["timestamp"] for e in seen["track"]["entries"]] == [1.0, 2.0, 3.0]
    assert seen["listed"] == ["robot/arm/pose", "robot/position"]

    store = LocalStore(root)
    indexes, losses = _losses(store)
    assert indexes == list(range(7))
    assert all(map(_same, losses, [1.0, NAN, INF, -INF, 0.5, NAN, 0.25]))
    logs = _logs(store)
    assert [r["sequenceNumber"] for r in logs] == [0, 1, 2, 3]
    assert [r["message"] for r in logs[2:]] == ["resumed here", "from the public SDK"]
    assert logs[3]["metadata"] == {"who": "sdk"} and logs[3]["level"] == "warn"
    assert [e["timestamp"] for e in store.read_tracks(PREFIX, "robot/position")] == [1.0, 2.0, 3.0, 4.0]
    assert not (root / PREFIX / "tracks/robot/position").exists()  # one folder per topic: the SDK's
    store.close()


def test_a_folder_written_here_is_read_and_resumed_by_the_public_sdk(public_sdk: PublicSDK, tmp_path: Path) -> None:
    root = tmp_path / ".dash"
    with Experiment(prefix=PREFIX, dash_root=str(root)).run as exp:
        exp.params.set(lr=0.1)
        for step, loss in enumerate([1.0, NAN, INF]):
            exp.metrics("train").log(loss=loss, step=step)
        exp.log("start", metadata={"epoch": 0})
        exp.log("second")
        exp.tracks("robot/position").append(x=1.0, _ts=1.0)
        exp.tracks("robot/position").append(x=2.0, _ts=2.0)
        exp.tracks("pose").append(q=0.5, _ts=1.0)
    folder = root / PREFIX
    assert (folder / "logs/.log_sequence").read_text() == "2"
    assert os.path.islink(folder / "tracks/robot_position")

    seen = public_sdk.run(SDK_RESUMES, tmp_path, prefix=PREFIX, step=3, ts=3.0)
    data = seen["page"]["data"]
    assert [p["index"] for p in data] == [0, 1, 2]
    # JSON has no NaN: the SDK sees null and our map of the non-finite values beside it
    assert data[1]["data"]["loss"] is None and data[1]["nonFinite"] == {"/loss": "NaN"}
    assert [(e["timestamp"], e["x"]) for e in seen["track"]["entries"]] == [(1.0, 1.0), (2.0, 2.0)]
    assert seen["listed"] == ["pose", "robot/position"]

    store = LocalStore(root)
    indexes, losses = _losses(store)
    assert indexes == [0, 1, 2, 3]
    assert all(map(_same, losses, [1.0, NAN, INF, 0.25]))
    assert [(r["sequenceNumber"], r["message"]) for r in _logs(store)] == [
        (0, "start"), (1, "second"), (2, "from the public SDK")
    ]
    entries = store.read_tracks(PREFIX, "robot/position")
    assert [(e["timestamp"], e["x"]) for e in entries] == [(1.0, 1.0), (2.0, 2.0), (3.0, 9.0)]
    assert [t["topic"] for t in store.list_tracks(PREFIX)] == ["pose", "robot/position"]
    store.close()
