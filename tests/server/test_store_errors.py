"""The store's own errors through the HTTP API: the server maps codes, the LocalStore
knows the disk (a name running into a file is 400 ``invalid_name``, a damaged
experiment is left out of lists)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.app import PREFIX, AppClient, app_client, snapshot

Q = {"prefix": PREFIX}


@pytest.fixture
def client(dash_root: Path) -> Iterator[AppClient]:
    made, store = app_client(dash_root)
    yield made
    made.close()
    store.close()


def test_a_metric_name_running_into_a_file_is_400_invalid_name_naming_it(
    client: AppClient, dash_root: Path
) -> None:
    assert client.post("/api/v1/experiment/open", json={"prefix": PREFIX}).status_code == 200
    (dash_root / PREFIX / "metrics").mkdir()
    (dash_root / PREFIX / "metrics/blocker").write_text("a file")
    before = snapshot(dash_root)
    response = client.post(
        "/api/v1/metrics/append", params={**Q, "name": "blocker/loss"}, json={"batchId": "b-1", "points": [{"v": 1}]}
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_name"
    assert "'blocker/loss'" in body["message"] and str(dash_root) not in body["message"]
    assert snapshot(dash_root) == before


def test_open_with_an_unknown_field_is_400_bad_request(client: AppClient, dash_root: Path) -> None:
    response = client.post("/api/v1/experiment/open", json={"prefix": PREFIX, "colour": "red"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_request"
    assert "colour" in response.json()["message"]
    assert not dash_root.exists()


@pytest.mark.filterwarnings("ignore:ml-dash. leaving out")
def test_a_damaged_experiment_is_left_out_of_the_list(client: AppClient, dash_root: Path) -> None:
    assert client.post("/api/v1/experiment/open", json={"prefix": PREFIX}).status_code == 200
    (dash_root / "alice/proj/broken").mkdir(parents=True)
    (dash_root / "alice/proj/broken/experiment.json").write_text("{not json")
    response = client.get("/api/v1/experiments", params={"owner": "alice"})
    assert response.status_code == 200, response.text
    assert [e["prefix"] for e in response.json()["experiments"]] == [PREFIX]
    damaged = client.get("/api/v1/experiment", params={"prefix": "alice/proj/broken"})
    assert damaged.status_code == 503 and damaged.json()["code"] == "storage_error"
    assert str(dash_root) not in damaged.text
