"""Remote and hybrid modes against a real ``ml-dash serve`` on loopback."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_dash import Experiment
from ml_dash.stores.local import LocalStore
from support.processes import ServerProcess, free_port, ml_dash, running


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running(root=tmp_path / "server-root") as proc:
        yield proc


def _indexes(root: Path, prefix: str, name: str) -> list[int]:
    page = LocalStore(root).read_metrics(prefix, name, 0, 10_000_000)
    return [p["index"] for p in page["data"]]


def test_remote_mode_stores_everything_on_the_server(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    prefix = "alice/vision/resnet/run-1"
    with Experiment(prefix=prefix, dash_url=server.url, dash_root=None, close_timeout=20).run as exp:
        exp.params.set(lr=1e-3, model={"depth": 50})
        for i in range(5000):
            exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
        exp.metrics("train").log(loss=float("nan"), step=5000)
        exp.log("epoch done", level="info", metadata={"epoch": 1})
        exp.tracks("robot/position").append(x=1.0, y=float("inf"), _ts=10.0)
        page = exp.metrics("train").read(start_index=4998, limit=10)
        assert [p["index"] for p in page["data"]] == [4998, 4999, 5000]
        assert page["data"][-1]["data"]["loss"] != page["data"][-1]["data"]["loss"]  # NaN came back
        assert exp.metrics("train").stats()["totalDataPoints"] == 5001
        assert exp.params.get()["model.depth"] == 50
        assert exp.logs.read(level="info")["logs"][0]["message"] == "epoch done"
        assert exp.tracks("robot/position").read() == [{"timestamp": 10.0, "x": 1.0, "y": float("inf")}]
    assert exp.close_report is not None and exp.close_report.ok, str(exp.close_report)
    assert exp.path is None
    stored = server.root / "alice" / "vision" / "resnet" / "run-1"
    assert json.loads((stored / "experiment.json").read_text())["status"] == "COMPLETED"
    assert _indexes(server.root, prefix, "train") == list(range(5001))
    assert not list((tmp_path / ".dash" / ".spool").rglob("*.req"))


def test_hybrid_mode_writes_the_local_folder_and_the_server(server: ServerProcess, tmp_path: Path) -> None:
    local = tmp_path / "local"
    prefix = "alice/vision/hybrid"
    with Experiment(prefix=prefix, dash_url=server.url, dash_root=local, close_timeout=20).run as exp:
        for i in range(3000):
            exp.metrics("train").log(loss=float(i))
        exp.log("hello", level="warn")
    assert exp.close_report is not None and exp.close_report.ok
    assert _indexes(local, prefix, "train") == list(range(3000))
    assert _indexes(server.root, prefix, "train") == list(range(3000))
    assert LocalStore(server.root).query_logs(prefix, {"levels": ["warn"]})["total"] == 1


def test_close_is_bounded_when_the_server_is_down_and_sync_sends_the_rest_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / ".dash"
    port = free_port()
    prefix = "alice/proj/offline"
    url = f"http://127.0.0.1:{port}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Experiment(prefix=prefix, dash_url=url, dash_root=None, close_timeout=1.5).run as exp:
            for i in range(2000):
                exp.metrics("train").log(step=i)
            exp.log("offline", level="info")
    report = exp.close_report
    assert report is not None and report.spooled > 0 and not report.ok
    assert any("spooled" in str(w.message) for w in caught)

    # Nothing reached a server; the requests wait in the spool under the default root.
    server = ServerProcess(root=tmp_path / "server-root", port=port)
    try:
        server.start()
        result = ml_dash("--root", str(root), "sync", check=False, timeout=120)  # in tmp_path, the working folder
        assert result.returncode == 0, result.stderr
        assert _indexes(server.root, prefix, "train") == list(range(2000))
        # A second sync finds nothing left and stores nothing twice.
        again = ml_dash("--root", str(root), "sync", check=False)
        assert again.returncode == 0
        assert _indexes(server.root, prefix, "train") == list(range(2000))
    finally:
        server.stop()
