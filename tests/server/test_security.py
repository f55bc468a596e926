"""Hostile input: bad names, oversized bodies, foreign Host headers, cross-site posts, exposed servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_dash.names import parse_prefix
from ml_dash.records import ExperimentInfo
from ml_dash.stores.local import LocalStore
from support.app import PREFIX, AppClient, app_client, route_calls, snapshot
from support.processes import ml_dash, running

BAD_SEGMENTS = {
    "dotdot": "..",
    "dot": ".",
    "control-nul": "a\x00b",
    "control-newline": "a\nb",
    "control-escape": "a\x1bb",
    "backslash": "a\\b",
    "reserved": "experiment.json",
    "tmp": ".tmp-x",
    "spaces": " a",
    "long-segment": "x" * 256,
}
BAD_NAMES = {
    **BAD_SEGMENTS,
    "absolute": "/x",
    "double-slash": "a//b",
    "trailing-slash": "a/",
    "escape": "a/../../b",
    "ten-thousand": "n" * 10_000,
    "empty": "",
}
BAD_PREFIXES = {
    **{f"segment-{k}": f"alice/proj/{v}" for k, v in BAD_SEGMENTS.items()},
    "owner-dotdot": "../proj/run",
    "absolute": "/alice/proj/run",
    "double-slash": "alice//proj/run",
    "escape": "alice/proj/../../../etc/passwd",
    "two-segments": "proj/run",
    "one-segment": "run",
    "hidden-owner": ".ml-dash/proj/run",
    "ten-thousand": "alice/proj/" + "r" * 10_000,
    "empty": "",
}


LIMIT = 32 * 1024


@pytest.fixture
def seeded(dash_root: Path) -> Iterator[tuple[AppClient, Path]]:
    """An app (no auth) over a root that already holds one experiment with data."""
    seed = LocalStore(dash_root)
    p = parse_prefix(PREFIX)
    seed.open_experiment(ExperimentInfo(prefix=PREFIX, owner=p.owner, project=p.project, name=p.name))
    seed.append_metrics(PREFIX, "m", [{"v": 1, "_ts": 1.0}], batch_id="seed")
    seed.close()
    client, store = app_client(dash_root, max_body=LIMIT)
    yield client, dash_root
    client.close()
    store.close()


def refused_4xx(response: httpx.Response, code: str | None = None) -> None:
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert set(body) == {"code", "message"}
    if code is not None:
        assert body["code"] == code, body


def name_calls(name: str) -> list[tuple[str, str, dict[str, Any], Any]]:
    q = {"prefix": PREFIX}
    return [
        ("POST", "/api/v1/metrics/append", {**q, "name": name}, {"batchId": "b", "points": [{"v": 2}]}),
        ("GET", "/api/v1/metrics/read", {**q, "name": name}, None),
        ("GET", "/api/v1/metrics/stats", {**q, "name": name}, None),
        ("POST", "/api/v1/tracks/append", {**q, "topic": name}, {"batchId": "b", "entries": [{"timestamp": 1}]}),
        ("GET", "/api/v1/tracks/read", {**q, "topic": name}, None),
        ("GET", "/api/v1/experiments", {"owner": name}, None),
        ("GET", "/api/v1/experiments", {"owner": "alice", "project": name}, None),
    ]


def send(client: AppClient, call: tuple[str, str, dict[str, Any], Any]) -> httpx.Response:
    method, path, query, body = call
    return client.request(method, path, params=query, json=body)


@pytest.mark.parametrize("prefix", list(BAD_PREFIXES.values()), ids=list(BAD_PREFIXES))
def test_bad_prefixes_are_invalid_names_on_every_route_and_change_nothing(
    seeded: tuple[AppClient, Path], prefix: str
) -> None:
    client, root = seeded
    before = snapshot(root)
    for call in route_calls(prefix):
        response = send(client, call)
        refused_4xx(response, "invalid_name")
        assert response.status_code == 400
    assert snapshot(root) == before


@pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
def test_bad_metric_topic_owner_and_project_names_are_refused_and_change_nothing(
    seeded: tuple[AppClient, Path], name: str
) -> None:
    client, root = seeded
    before = snapshot(root)
    for call in name_calls(name):
        response = send(client, call)
        if name == "" and call[1] == "/api/v1/experiments":
            continue  # an empty filter is no filter
        refused_4xx(response, "invalid_name")
    assert snapshot(root) == before


def test_escaping_names_touch_nothing_outside_the_root(seeded: tuple[AppClient, Path]) -> None:
    client, root = seeded

    def outside() -> dict[str, bytes]:
        return {k: v for k, v in snapshot(root.parent).items() if not k.startswith(root.name)}

    before = outside()
    for prefix in ("../../x/y/z", "alice/../../../tmp/x", "alice/proj/../../../../x"):
        for call in route_calls(prefix):
            refused_4xx(send(client, call), "invalid_name")
    for name in ("../../../x", "a/../../../../x"):
        for call in name_calls(name):
            refused_4xx(send(client, call), "invalid_name")
    assert outside() == before


@pytest.mark.parametrize("prefix", [f"{PREFIX}/.lock", f"{PREFIX}/.lock/x", f"{PREFIX}/logs/logs.jsonl"])
def test_prefixes_running_into_the_stores_own_files_are_invalid_names(
    seeded: tuple[AppClient, Path], prefix: str
) -> None:
    client, root = seeded
    logs = {"batchId": "l", "records": [{"ts": 1.0, "level": "info", "message": "m"}]}
    assert client.post("/api/v1/logs/append", params={"prefix": PREFIX}, json=logs).status_code == 200
    before = snapshot(root)
    for call in route_calls(prefix):
        response = send(client, call)
        if response.status_code != 200:  # reads that find nothing answer empty
            refused_4xx(response, "invalid_name")
    assert snapshot(root) == before


# -- body limits -----------------------------------------------------------------------------


def test_a_body_over_the_limit_by_content_length_is_413_and_changes_nothing(seeded: tuple[AppClient, Path]) -> None:
    client, root = seeded
    before = snapshot(root)
    points = [{"v": i} for i in range(5000)]
    response = client.post("/api/v1/metrics/append", params={"prefix": PREFIX, "name": "m"},
                           json={"batchId": "big", "points": points})
    assert int(response.request.headers["content-length"]) > LIMIT
    refused_4xx(response, "too_large")
    assert response.status_code == 413
    assert snapshot(root) == before


def test_a_chunked_body_over_the_limit_is_413_and_changes_nothing(seeded: tuple[AppClient, Path]) -> None:
    client, root = seeded
    before = snapshot(root)
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"batchId": "big", "points": ['
        for _ in range(10_000):  # 10 MB offered; the server must stop long before
            sent += 1
            yield b'{"v": 1},' * 100
        yield b'{"v": 1}]}'

    response = client.post("/api/v1/metrics/append", params={"prefix": PREFIX, "name": "m"}, content=chunks(),
                           headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    refused_4xx(response, "too_large")
    assert response.status_code == 413
    assert sent < 2 * LIMIT // 900  # it read about max_body bytes, not the whole stream
    assert snapshot(root) == before


def test_a_body_just_under_the_limit_is_accepted(seeded: tuple[AppClient, Path]) -> None:
    client, _ = seeded
    body = b'{"batchId": "ok", "points": [{"v": "' + b"x" * (LIMIT - 100) + b'"}]}'
    response = client.post("/api/v1/metrics/append", params={"prefix": PREFIX, "name": "m"}, content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


def test_a_non_numeric_content_length_is_a_bad_request(seeded: tuple[AppClient, Path]) -> None:
    client, _ = seeded
    response = client.post("/api/v1/params", params={"prefix": PREFIX}, content=b"{}",
                           headers={"content-type": "application/json", "content-length": "lots"})
    refused_4xx(response, "bad_request")


# -- cross-site requests and DNS rebinding ---------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_posts_that_a_web_page_could_send_without_asking_are_refused(
    seeded: tuple[AppClient, Path], content_type: str | None
) -> None:
    client, root = seeded
    before = snapshot(root)
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/api/v1/params", params={"prefix": PREFIX}, content=b'{"params": {"x": 1}}',
                           headers=headers)
    refused_4xx(response, "bad_request")
    assert snapshot(root) == before


def test_an_app_with_allowed_hosts_refuses_other_host_headers(dash_root: Path) -> None:
    client, store = app_client(dash_root, allowed_hosts=["localhost", "127.0.0.1", "::1"])
    try:
        for host in ("localhost:8000", "127.0.0.1", "[::1]:9"):
            assert client.get("/health", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "localhost.evil.example", ""):
            refused_4xx(client.get("/health", headers={"host": host}), "bad_request")
    finally:
        client.close()
        store.close()


# -- ml-dash serve and its address -----------------------------------------------------------


def test_serve_answers_only_loopback_host_names_and_limits_bodies(tmp_path: Path) -> None:
    root = tmp_path / "dash"
    with running("--max-body", "4096", root=root) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/health").status_code == 200
        foreign = http.get("/api/v1/experiments", headers={"host": "attacker.example"})
        assert foreign.status_code == 400 and foreign.json()["code"] == "bad_request"
        query = {"prefix": PREFIX, "name": "m"}
        declared = http.post("/api/v1/metrics/append", params=query, content=b"x" * 5000,
                             headers={"content-type": "application/json"})
        assert declared.status_code == 413 and declared.json()["code"] == "too_large"

        def chunks() -> Iterator[bytes]:
            yield b'{"batchId": "b", "points": ['
            for _ in range(16):
                yield b'{"v": 1},' * 100
            yield b'{"v": 1}]}'

        chunked = http.post("/api/v1/metrics/append", params=query, content=chunks(),
                            headers={"content-type": "application/json"})
        assert chunked.request.headers["transfer-encoding"] == "chunked"
        assert chunked.status_code == 413 and chunked.json()["code"] == "too_large"
    assert not (root / "alice").exists()


def test_serve_on_all_interfaces_turns_auth_on_without_being_asked(tmp_path: Path) -> None:
    root = tmp_path / "dash"
    token = ml_dash("token", "create", "--owner", "alice", "--root", str(root)).stdout.strip()
    with running(root=root, host="0.0.0.0") as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert "auth: ON" in server.stdout
        refused = http.post("/api/v1/experiment/open", json={"prefix": "alice/p/r"})
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
        assert not (root / "alice").exists()
        allowed = http.post("/api/v1/experiment/open", json={"prefix": "alice/p/r"},
                            headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200, allowed.text
        other = http.post("/api/v1/experiment/open", json={"prefix": "bob/p/r"},
                          headers={"Authorization": f"Bearer {token}"})
        assert other.status_code == 403


def test_serve_on_all_interfaces_with_insecure_warns_loudly_and_serves_without_tokens(tmp_path: Path) -> None:
    with running("--insecure", root=tmp_path / "dash", host="0.0.0.0") as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        assert "auth: OFF" in server.stdout
        assert "WARNING: auth is OFF on 0.0.0.0" in server.stderr
        assert http.post("/api/v1/experiment/open", json={"prefix": "anyone/p/r"}).status_code == 200


def test_serve_with_auth_on_loopback_requires_tokens_and_says_how_to_make_one(tmp_path: Path) -> None:
    with running("--auth", root=tmp_path / "dash") as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert "auth: ON" in server.stdout and "ml-dash token create" in server.stdout
        assert http.get("/api/v1/experiments").status_code == 401
