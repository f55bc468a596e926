"""ml_dash.open: read any experiment, running or finished, without changing it."""

from __future__ import annotations

from pathlib import Path

import pytest

import ml_dash
from ml_dash import Experiment
from ml_dash.errors import InvalidValueError, NotFoundError
from support.app import snapshot
from support.processes import running

PREFIX = "alice/vision/resnet/run-1"


def _log_some(exp: Experiment, n: int = 25) -> None:
    exp.params.set(lr=1e-3, model={"depth": 50})
    for i in range(n):
        exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
    exp.log("epoch done", level="info", metadata={"epoch": 1})
    exp.log("careful", level="warn")
    exp.tracks("robot/pos").append(_ts=1.0, x=1.0, y=2.0)
    exp.tracks("robot/pos").append(_ts=2.0, x=1.5, y=2.5)


def test_open_reads_a_finished_experiment_from_the_folder(tmp_path: Path) -> None:
    with Experiment(prefix=PREFIX, dash_root=tmp_path).run as exp:
        _log_some(exp)
    before = snapshot(tmp_path)
    with ml_dash.open(PREFIX, root=tmp_path) as run:
        assert run.info.status == "COMPLETED"
        assert run.params.get() == {"lr": 1e-3, "model.depth": 50}
        assert run.params.get(flatten=False) == {"lr": 1e-3, "model": {"depth": 50}}
        page = run.metrics("train").read(20, 100)
        assert [p["index"] for p in page["data"]] == [20, 21, 22, 23, 24]
        assert page["data"][0]["data"]["step"] == 20
        assert [p["data"]["step"] for p in run.metrics("train")] == list(range(25))
        assert run.metrics("train").stats()["totalDataPoints"] == 25
        assert [m["name"] for m in run.metrics.list()] == ["train"]
        warn = run.logs.read(level="warn")
        assert [r["message"] for r in warn["logs"]] == ["careful"]
        assert [e["x"] for e in run.tracks("robot/pos").read()] == [1.0, 1.5]
        assert [t["topic"] for t in run.tracks.list()] == ["robot/pos"]
    assert snapshot(tmp_path) == before, "reading must not write, move or remove any file"


def test_open_reads_a_running_experiment_without_changing_its_status(tmp_path: Path) -> None:
    with Experiment(prefix=PREFIX, dash_root=tmp_path).run as exp:
        _log_some(exp, 10)
        exp.flush()
        with ml_dash.open(PREFIX, root=tmp_path) as run:
            assert run.info.status == "RUNNING"
            assert run.metrics("train").stats()["totalDataPoints"] == 10
        exp.metrics("train").log(loss=0.01, step=10)  # the writer still owns the run
    with ml_dash.open(PREFIX, root=tmp_path) as run:
        assert run.info.status == "COMPLETED"
        assert run.metrics("train").stats()["totalDataPoints"] == 11


def test_open_refuses_what_does_not_exist_and_ambiguous_places(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="alice/vision/nothing"):
        ml_dash.open("alice/vision/nothing", root=tmp_path)
    assert not (tmp_path / "alice").exists(), "a failed open must not create folders"
    with pytest.raises(InvalidValueError, match="not both"):
        ml_dash.open(PREFIX, root=tmp_path, url="http://127.0.0.1:1")
    with pytest.raises(ml_dash.InvalidNameError):
        ml_dash.open("no-project", root=tmp_path)


def test_open_reads_from_a_server(tmp_path: Path) -> None:
    with running(root=tmp_path / "server") as server:
        with Experiment(prefix=PREFIX, dash_url=server.url).run as exp:
            _log_some(exp)
        with ml_dash.open(PREFIX, url=server.url) as run:
            assert run.info.status == "COMPLETED"
            assert run.params.get(flatten=False)["model"] == {"depth": 50}
            assert run.metrics("train").stats()["totalDataPoints"] == 25
            assert len(list(run.metrics("train"))) == 25
            assert [r["message"] for r in run.logs.read(descending=True)["logs"]] == ["careful", "epoch done"]
