"""The read side of the Store protocol (metric_series, metric_fields, run_summaries) as a
contract over every backend: the same answers from the folder, MongoDB + S3, and
RemoteStore through a real server."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ml_dash import Store
from ml_dash.series import m4

from .test_store_contract import BACKENDS, PREFIX, StoreKit, info

SECOND = "alice/contract/run-2"


@pytest.fixture(params=sorted(BACKENDS))
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreKit]:
    yield from BACKENDS[request.param](tmp_path)


@pytest.fixture
def store(kit: StoreKit) -> Store:
    return kit.store


def _stream(n: int, seed: int) -> list[dict[str, float | int]]:
    rng = random.Random(seed)
    points: list[dict[str, float | int]] = []
    for i in range(n):
        value = rng.gauss(0.0, 1.0)
        if i == n // 3 + 1:
            value = 500.0  # a spike off any grid
        points.append({"loss": value, "step": 10 * i, "_ts": 1000.0 + i})
    points[n // 2]["loss"] = math.nan
    return points


def test_series_equals_a_brute_force_m4_and_reports_non_finite_values_apart(store: Store) -> None:
    store.open_experiment(info())
    data = _stream(3000, 1)
    for start in range(0, len(data), 1000):
        store.append_metrics(PREFIX, "train", data[start:start + 1000])
    got = store.metric_series(PREFIX, "train", "loss", "step", width=50)
    finite = [(p["step"], p["loss"], i) for i, p in enumerate(data)]
    want = m4(np.array([f[0] for f in finite], float), np.array([f[1] for f in finite], float), 0.0, 29990.0, 50)
    assert got.x.tolist() == want.x.tolist() and got.y.tolist() == want.y.tolist()
    assert 500.0 in got.y.tolist() and not got.raw and got.count == 3000
    assert got.nonfinite_x.tolist() == [10.0 * 1500] and math.isnan(got.nonfinite_y[0])
    zoom = store.metric_series(PREFIX, "train", "loss", "index", 100.0, 199.0, 1000)
    assert zoom.raw and zoom.index.tolist() == list(range(100, 200))
    assert store.metric_series(PREFIX, "nothing", "loss").count == 0


def test_field_stats_and_summaries_agree_on_every_store(store: Store) -> None:
    store.open_experiment(info())
    store.open_experiment(info(SECOND, tags=("baseline",)))
    store.set_params(PREFIX, {"lr": 0.01, "model.depth": 50})
    store.set_params(SECOND, {"lr": 0.1})
    data = _stream(500, 2)
    store.append_metrics(PREFIX, "train", data)
    store.append_metrics(SECOND, "train", [{"loss": 3.0, "_ts": 1.0}, {"loss": 2.0, "_ts": 2.0}])
    fields = store.metric_fields(PREFIX, "train")
    finite = [p["loss"] for p in data if not math.isnan(float(p["loss"]))]
    assert fields["loss"]["count"] == len(finite) and fields["loss"]["nonFinite"] == 1
    assert fields["loss"]["max"] == 500.0 and fields["loss"]["maxIndex"] == 500 // 3 + 1
    assert fields["loss"]["min"] == min(finite) and fields["loss"]["last"] == data[-1]["loss"]
    assert fields["step"]["last"] == 4990.0
    summaries = {s.info.prefix: s for s in store.run_summaries("alice", "contract")}
    assert set(summaries) == {PREFIX, SECOND}
    assert summaries[PREFIX].params == {"lr": 0.01, "model.depth": 50}
    assert summaries[SECOND].metrics["train"]["loss"]["last"] == 2.0
    assert summaries[SECOND].info.tags == ("baseline",)
    assert "_ts" not in summaries[PREFIX].metrics["train"]
    assert store.run_summaries("bob") == []


@pytest.mark.parametrize("width", [1, 7, 64])
def test_series_of_a_field_some_points_lack(store: Store, width: int) -> None:
    store.open_experiment(info())
    store.append_metrics(PREFIX, "m", [{"a": 1.0, "_ts": 1.0}, {"b": 2.0, "_ts": 2.0}, {"a": 3.0, "_ts": 3.0},
                                       {"a": True, "_ts": 4.0}, {"a": "text", "_ts": 5.0}])
    got = store.metric_series(PREFIX, "m", "a", width=width)
    assert got.index.tolist() == [0, 2] and got.y.tolist() == [1.0, 3.0]
