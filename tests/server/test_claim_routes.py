"""The claim routes over HTTP: statuses and codes of every refusal (the behaviour itself
is the contract suite's, tests/contract/test_claim_contract.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.app import PREFIX, AppClient, app_client, snapshot


@pytest.fixture
def client(dash_root: Path) -> Iterator[AppClient]:
    client, store = app_client(dash_root)
    yield client
    client.close()
    store.close()


def claim(client: AppClient, who: str, **body: Any) -> Any:
    body = {"holder": {"id": who, "host": "gpu-1", "pid": 7}, "leaseSeconds": 30, **body}
    return client.post("/api/v1/experiment/claim", params={"prefix": PREFIX}, json=body)


def test_a_second_claim_is_409_busy_and_new_on_an_existing_experiment_is_409_exists(client: AppClient) -> None:
    granted = claim(client, "a")
    assert granted.status_code == 200
    assert granted.json() == {"prefix": PREFIX, "holderId": "a", "holders": 1, "renewed": False, "existed": False,
                              "interrupted": False}
    busy = claim(client, "b")
    assert (busy.status_code, busy.json()["code"]) == (409, "busy")
    assert "gpu-1" in busy.json()["message"]
    assert client.post("/api/v1/experiment/open", json={"prefix": PREFIX}).status_code == 200
    released = client.post("/api/v1/experiment/release", params={"prefix": PREFIX}, json={"holderId": "a"})
    assert (released.status_code, released.json()) == (200, {"holderId": "a"})
    exists = claim(client, "c", new=True)
    assert (exists.status_code, exists.json()["code"]) == (409, "exists")
    assert claim(client, "b").json()["existed"] is True


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [({"leaseSeconds": 0}, 422, "invalid_value"), ({"leaseSeconds": 10_000}, 422, "invalid_value"),
     ({"leaseSeconds": "soon"}, 400, "bad_request"), ({"replaces": ["not an id"]}, 422, "invalid_value"),
     ({"holder": {"id": "a b", "host": "h", "pid": 1}}, 422, "invalid_value"),
     ({"holder": {"id": "a", "host": "h", "pid": 1, "extra": 1}}, 400, "bad_request"), ({"join": "yes"}, 400,
                                                                                        "bad_request")],
)
def test_bad_claims_are_refused_naming_the_field_and_change_nothing(
    client: AppClient, dash_root: Path, body: dict[str, Any], status: int, code: str
) -> None:
    before = snapshot(dash_root)
    refused = claim(client, "a", **body)
    assert (refused.status_code, refused.json()["code"]) == (status, code), refused.text
    assert snapshot(dash_root) == before


def test_open_refuses_a_stale_status_and_answers_say_stale(client: AppClient) -> None:
    refused = client.post("/api/v1/experiment/open", json={"prefix": PREFIX, "status": "STALE"})
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_value")
    assert claim(client, "a", leaseSeconds=0.1).status_code == 200
    opened = client.post("/api/v1/experiment/open", json={"prefix": PREFIX, "resumes": [
        {"at": 1.0, "host": "fake", "pid": 1}]})
    assert opened.status_code == 200 and opened.json()["resumes"] == []  # the store's, not the client's
    time.sleep(0.3)  # the lease of 0.1 s lapses
    shown = client.get("/api/v1/experiment", params={"prefix": PREFIX}).json()
    assert shown["status"] == "STALE" and shown["heartbeatAt"] is not None
    listed = client.get("/api/v1/experiments").json()["experiments"]
    assert [e["status"] for e in listed] == ["STALE"]
