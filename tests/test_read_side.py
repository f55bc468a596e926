"""The read side through the SDK, the read-only handle and the HTTP API: chart series
that keep every extreme, field statistics, the table of runs and ml_dash.find."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

import ml_dash
from ml_dash import Experiment
from ml_dash.errors import FilterSyntaxError, InvalidValueError
from ml_dash.series import m4
from ml_dash.stores.local import LocalStore
from ml_dash.stores.remote import RemoteStore
from support.app import snapshot
from support.processes import running

N = 20_000
SPIKE = 7_777  # off any grid of a power of two or of 1000


def _log_runs(exp_of: dict[str, Experiment]) -> None:
    for k, (_, exp) in enumerate(sorted(exp_of.items())):
        with exp.run:
            exp.params.set(lr=10.0 ** -(k + 1), optimizer=["adam", "sgd", "adam"][k % 3], model={"depth": 18 * (k + 1)})
            m = exp.metrics("train")
            for i in range(N if k == 0 else 100):
                loss = 1000.0 if (k == 0 and i == SPIKE) else 1.0 / (i + 1) + k
                m.log(loss=loss, step=2 * i)
            exp.metrics("eval").log(accuracy=0.5 + 0.1 * k)


def _runs(root: Path | None = None, url: str | None = None) -> dict[str, Experiment]:
    kw = {"dash_root": root} if root is not None else {"dash_url": url}
    return {name: Experiment(prefix=f"alice/vision/{name}", echo=False, tags=[name], **kw)
            for name in ("run-a", "run-b", "run-c")}


def test_series_keeps_the_spike_and_matches_a_brute_force_m4(tmp_path: Path) -> None:
    exps = _runs(tmp_path)
    _log_runs(exps)
    with Experiment(prefix="alice/vision/run-a", dash_root=tmp_path, echo=False).run as exp:
        full = exp.metrics("train").series("loss", width=100)
        by_step = exp.metrics("train").series("loss", x="step", width=100)
    assert not full.raw and full.count == N and len(full.x) <= 4 * 100
    assert full.y.max() == 1000.0 and SPIKE in full.index.tolist()
    assert by_step.y.max() == 1000.0 and 2 * SPIKE in by_step.x.tolist()
    points = LocalStore(tmp_path).read_metrics("alice/vision/run-a", "train", 0, N)["data"]
    expected = m4(np.arange(N, dtype=float), [p["data"]["loss"] for p in points], 0.0, N - 1.0, 100)
    assert full.x.tolist() == expected.x.tolist() and full.y.tolist() == expected.y.tolist()
    zoom = ml_dash.open("alice/vision/run-a", root=tmp_path).metrics("train").series("loss", x0=7000, x1=8000,
                                                                                      width=1000)
    assert zoom.raw and zoom.x.tolist() == list(map(float, range(7000, 8001)))


def test_a_read_only_handle_computes_series_without_writing(tmp_path: Path) -> None:
    _log_runs(_runs(tmp_path))
    before = snapshot(tmp_path)
    with ml_dash.open("alice/vision/run-b", root=tmp_path) as run:
        assert run.metrics("train").series("loss", width=10).count == 100
        assert run.metrics("train").fields()["loss"]["count"] == 100
    assert snapshot(tmp_path) == before


def test_field_stats_and_find_over_the_folder(tmp_path: Path) -> None:
    _log_runs(_runs(tmp_path))
    fields = ml_dash.open("alice/vision/run-a", root=tmp_path).metrics("train").fields()
    assert fields["loss"]["max"] == 1000.0 and fields["loss"]["maxIndex"] == SPIKE
    assert fields["step"]["last"] == 2.0 * (N - 1) and fields["loss"]["count"] == N
    found = ml_dash.find("params.lr < 0.05 and metrics.eval.accuracy.last > 0.55", root=tmp_path)
    assert [s.info.name for s in found] == ["run-b", "run-c"]
    ordered = ml_dash.find(root=tmp_path, sort="metrics.train.loss.max", descending=True)
    assert [s.info.name for s in ordered] == ["run-a", "run-c", "run-b"]
    assert [s.info.name for s in ml_dash.find('params.optimizer in ["sgd"]', root=tmp_path)] == ["run-b"]
    with pytest.raises(FilterSyntaxError, match="column"):
        ml_dash.find("params.lr < and", root=tmp_path)
    with pytest.raises(InvalidValueError, match="cannot sort"):
        ml_dash.find(root=tmp_path, sort="nonsense")


def test_the_http_api_serves_series_runs_and_fields(tmp_path: Path) -> None:
    with running(root=tmp_path / "server") as server:
        _log_runs(_runs(url=server.url))
        local = LocalStore(server.root)
        remote = RemoteStore(server.url)
        try:
            got = remote.metric_series("alice/vision/run-a", "train", "loss", "step", width=200)
            want = local.metric_series("alice/vision/run-a", "train", "loss", "step", width=200)
            assert got.x.tolist() == want.x.tolist() and got.y.tolist() == want.y.tolist()
            assert got.y.max() == 1000.0
            assert remote.metric_fields("alice/vision/run-a", "train")["loss"]["maxIndex"] == SPIKE
        finally:
            remote.close()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            many = http.get("/api/v1/metrics/series", params=[
                ("prefix", "alice/vision/run-a"), ("prefix", "alice/vision/run-b"), ("name", "train"),
                ("y", "loss"), ("width", "50")]).json()["series"]
            assert [s["prefix"] for s in many] == ["alice/vision/run-a", "alice/vision/run-b"]
            assert max(many[0]["values"]) == 1000.0 and many[1]["total"] == 100
            page = http.get("/api/v1/runs", params={"owner": "alice", "where": "params.lr < 0.05",
                                                    "sort": "params.lr"}).json()
            assert page["total"] == 2 and [r["name"] for r in page["runs"]] == ["run-c", "run-b"]
            assert page["runs"][0]["params"]["model.depth"] == 54
            assert page["runs"][0]["metrics"]["eval"]["accuracy"]["last"] == pytest.approx(0.7)
            bad = http.get("/api/v1/runs", params={"owner": "alice", "where": "params.lr <"})
            assert bad.status_code == 400 and "column" in bad.json()["message"]
            wide = http.get("/api/v1/metrics/series", params={"prefix": "alice/vision/run-a", "name": "train",
                                                              "y": "loss", "width": "0"})
            assert wide.status_code == 422 and "width" in wide.json()["message"]
        found = ml_dash.find("tags contains 'run-b'", url=server.url)
        assert [s.info.prefix for s in found] == ["alice/vision/run-b"]


def test_the_command_lists_with_a_filter_and_a_sort(tmp_path: Path) -> None:
    from support.processes import ml_dash as run_cli

    _log_runs(_runs(tmp_path))
    before = snapshot(tmp_path)
    done = run_cli("--root", str(tmp_path), "list", "--where", "params.lr < 0.05", "--sort", "params.lr")
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["alice/vision/run-c", "alice/vision/run-b"]
    bad = run_cli("--root", str(tmp_path), "list", "--where", "params.lr <<", check=False)
    assert bad.returncode != 0 and "column" in bad.stderr
    assert snapshot(tmp_path) == before, "listing must not write"


def test_the_table_of_runs_obeys_tokens(tmp_path: Path) -> None:
    from ml_dash.server.auth import FileTokenStore

    root = tmp_path / "server"
    with Experiment(prefix="alice/vision/run-a", dash_root=root, echo=False).run as exp:
        exp.metrics("train").log(loss=1.0)
    with running("--auth", root=root) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        tokens = FileTokenStore(server.root)
        bob = {"Authorization": f"Bearer {tokens.create('bob')}"}
        alice = {"Authorization": f"Bearer {tokens.create('alice')}"}
        assert http.get("/api/v1/runs", headers=bob).json()["total"] == 0  # bob's own: none
        assert http.get("/api/v1/runs", params={"owner": "alice"}, headers=bob).status_code == 403
        assert http.get("/api/v1/runs", params={"folder": "alice/vision"}, headers=bob).status_code == 403
        series = {"prefix": "alice/vision/run-a", "name": "train", "y": "loss"}
        assert http.get("/api/v1/metrics/series", params=series, headers=bob).status_code == 403
        assert http.get("/api/v1/metrics/series", params=series, headers=alice).json()["series"][0]["total"] == 1
        assert [r["name"] for r in http.get("/api/v1/runs", headers=alice).json()["runs"]] == ["run-a"]
        assert http.get("/api/v1/runs", params={"folder": "alice"}, headers=alice).status_code == 400
