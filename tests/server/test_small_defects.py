"""The smaller defects of issue 9 (item 7), each reproduced as found.

- after a 500 the kept-alive connection goes on (a real uvicorn server on a socket);
- a ``nonFinite`` map may only put floats where the body has ``null``;
- a query name that is not UTF-8 once percent-decoded is 400, not U+FFFD;
- ``{"a.b": 1, "a": {"b": 2}}`` (params or track fields) is refused, by the server and
  by the SDK, instead of keeping one value;
- a run that lost points to a full disk records the loss in ``experiment.json``;
- the OpenAPI description has the patterns and enums the server checks.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_dash import Experiment, InvalidNameError, InvalidValueError, LocalStore
from ml_dash.limits import ConnectionLimits
from ml_dash.logs import normalize_level
from ml_dash.names import NAME_PATTERN, PREFIX_PATTERN, validate_name
from ml_dash.records import READ_STATUSES, STATUSES
from ml_dash.server import create_app
from ml_dash.server.connections import ConnectionGuard, GuardedProtocol
from ml_dash.server.validate import check_batch_id
from ml_dash.wire import BATCH_ID_PATTERN, LEVEL_PATTERN
from support.app import PREFIX, AppClient
from support.files import exp_dir, strict_json
from support.processes import finish, free_port, last_json, start

Q = {"prefix": PREFIX}
JSON = {"content-type": "application/json"}


def refused(response: httpx.Response, status: int, code: str, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["message"], body["message"]
    return str(body["message"])


@pytest.fixture
def client(dash_root: Path) -> Iterator[AppClient]:
    store = LocalStore(dash_root)
    made = AppClient(create_app(store))
    yield made
    made.close()
    store.close()


# -- a 500 answers, and the connection goes on ---------------------------------------------------


class BuggyStore(LocalStore):
    """A LocalStore with a bug in reading params and in setting them (after the body is read)."""

    def get_params(self, prefix: str) -> Any:
        raise KeyError("secret detail 42")

    def set_params(self, prefix: str, flat: dict[str, Any]) -> Any:
        raise RuntimeError("another bug")


@contextmanager
def uvicorn_serving(app: Any) -> Iterator[int]:
    """``app`` on a loopback port with the protocol ``ml-dash serve`` uses, in a thread; yields the port."""
    port = free_port()
    protocol = GuardedProtocol.configured(ConnectionGuard(ConnectionLimits()))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", http=protocol))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


def read_response(sock: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """(status line, headers, body) of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection in the middle of a body"
        body += chunk
    return status.encode(), headers, body


def test_a_500_is_a_json_answer_and_the_kept_alive_connection_goes_on(dash_root: Path) -> None:
    with uvicorn_serving(create_app(BuggyStore(dash_root))) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        host = b"Host: 127.0.0.1\r\n"
        sock.sendall(b"GET /api/v1/params?prefix=alice/proj/run-1 HTTP/1.1\r\n" + host + b"\r\n")
        status, headers, body = read_response(sock)
        assert status.startswith(b"HTTP/1.1 500 "), status
        assert json.loads(body)["code"] == "error" and "secret detail" not in body.decode()
        assert headers.get("connection") != "close"
        payload = b'{"params": {"lr": 0.1}}'
        sock.sendall(b"POST /api/v1/params?prefix=alice/proj/run-1 HTTP/1.1\r\n" + host
                     + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
        status, _, body = read_response(sock)
        assert status.startswith(b"HTTP/1.1 500 ") and json.loads(body)["code"] == "error"
        sock.sendall(b"GET /health HTTP/1.1\r\n" + host + b"\r\n")  # the same connection, a third request
        status, _, body = read_response(sock)
        assert status.startswith(b"HTTP/1.1 200 ") and json.loads(body)["status"] == "ok"


def test_an_httpx_client_keeps_its_connection_across_a_500(dash_root: Path) -> None:
    with uvicorn_serving(create_app(BuggyStore(dash_root))) as port, \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        ports = []
        for path in ("/api/v1/params", "/health", "/api/v1/params", "/health"):
            response = http.get(path, params=Q)
            assert response.status_code == (500 if "params" in path else 200)
            ports.append(response.extensions["network_stream"].get_extra_info("client_addr")[1])
        assert len(set(ports)) == 1, f"the client had to reconnect: local ports {ports}"


# -- nonFinite: floats only where the body has null ------------------------------------------------


@pytest.mark.parametrize(
    ("points", "pointers"),
    [
        ([{"x": 1.5}], {"/0/x": "NaN"}),  # a real number
        ([{"x": None}], {"/0/y": "NaN"}),  # a field that is not there
        ([{"x": None}], {"/0": "NaN"}),  # the point itself
        ([{"x": None}], {"/5/x": "NaN"}),  # no such point
        ([{"x": None}], {"/00/x": "NaN"}),  # not an array index
        ([{"x": None}], {"/-/x": "NaN"}),
        ([{"x": [None]}], {"/0/x/1": "NaN"}),
        ([{"x": None}], {"/0/x/y": "NaN"}),  # through a null
        ([{"x": None, "y": None}], {"/0/x": "NaN", "/0/y": "Big"}),  # one bad name spoils the batch
    ],
)
def test_a_non_finite_pointer_to_anything_but_a_null_is_refused_and_stores_nothing(
    client: AppClient, dash_root: Path, points: list[Any], pointers: dict[str, str]
) -> None:
    body = {"batchId": "b-1", "points": points, "nonFinite": pointers}
    refused(client.post("/api/v1/metrics/append", params={**Q, "name": "m"}, json=body), 422, "invalid_value")
    assert not dash_root.exists()


def test_non_finite_pointers_to_nulls_put_the_floats_back(client: AppClient, dash_root: Path) -> None:
    body = {"batchId": "b-1", "points": [{"x": None, "a/b": {"c": [1.0, None]}}],
            "nonFinite": {"/0/x": "NaN", "/0/a~1b/c/1": "-Infinity"}}
    assert client.post("/api/v1/metrics/append", params={**Q, "name": "m"}, json=body).status_code == 200
    params = {"params": {"clip": None, "ok": 2.0}, "nonFinite": {"/clip": "Infinity"}}
    assert client.post("/api/v1/params", params=Q, json=params).status_code == 200
    refused(client.post("/api/v1/params", params=Q, json={"params": {"ok": 2.0}, "nonFinite": {"/ok": "NaN"}}),
            422, "invalid_value", "/ok")
    refused(client.post("/api/v1/params", params=Q, json={"params": {"a": None}, "nonFinite": {"/b": "NaN"}}),
            422, "invalid_value", "/b")
    record = {"ts": 1.0, "level": "info", "message": "m", "metadata": {"loss": None, "n": 3}}
    logs = {"batchId": "l-1", "records": [record]}
    refused(client.post("/api/v1/logs/append", params=Q, json={**logs, "nonFinite": {"/0/metadata/n": "NaN"}}),
            422, "invalid_value")
    refused(client.post("/api/v1/logs/append", params=Q, json={**logs, "nonFinite": {"/0/ts": "NaN"}}),
            422, "invalid_value")
    assert client.post("/api/v1/logs/append", params=Q,
                       json={**logs, "nonFinite": {"/0/metadata/loss": "NaN"}}).status_code == 200
    store = LocalStore(dash_root)
    point = store.read_metrics(PREFIX, "m")["data"][0]["data"]
    assert math.isnan(point["x"]) and point["a/b"] == {"c": [1.0, -math.inf]}
    assert store.get_params(PREFIX).data == {"clip": math.inf, "ok": 2.0}
    (line,) = store.query_logs(PREFIX, {})["logs"]
    assert math.isnan(line["metadata"]["loss"]) and line["metadata"]["n"] == 3


# -- query names must be UTF-8 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "prefix=alice/proj/run-1&name=%FF",
        "prefix=alice/proj/run-1&name=loss%C3%28",
        "prefix=alice/proj/run-%E9&name=loss",
        "prefix=alice/proj/run-1&name=%ED%A0%80",  # an encoded surrogate
    ],
)
def test_query_names_that_are_not_utf8_are_400_and_change_nothing(
    client: AppClient, dash_root: Path, query: str
) -> None:
    body = json.dumps({"batchId": "b-1", "points": [{"v": 1}]})
    response = client.post(f"/api/v1/metrics/append?{query}", content=body, headers=JSON)
    message = refused(response, 400, "bad_request", "not valid UTF-8")
    assert ("'name'" in message) if "name=%" in query or "%C3%28" in query else ("'prefix'" in message)
    refused(client.get(f"/api/v1/metrics/read?{query}"), 400, "bad_request", "not valid UTF-8")
    assert not dash_root.exists()


def test_percent_encoded_utf8_names_are_taken_as_they_are(client: AppClient, dash_root: Path) -> None:
    body = json.dumps({"batchId": "b-1", "points": [{"v": 1}]})
    answer = client.post("/api/v1/metrics/append?prefix=alice/proj/run-1&name=caf%C3%A9%20%EF%BF%BD",
                         content=body, headers=JSON)
    assert answer.status_code == 200, answer.text
    assert (dash_root / PREFIX / "metrics" / "café \ufffd").is_dir()


# -- names that flatten to one -----------------------------------------------------------------------


def test_params_and_track_fields_whose_names_collide_are_refused_by_the_server(
    client: AppClient, dash_root: Path
) -> None:
    refused(client.post("/api/v1/params", params=Q, json={"params": {"a.b": 1, "a": {"b": 2}}}), 422,
            "invalid_value", "'a.b' is given twice", "'a.b'", "{'a': {'b': ...}}")
    entries = [{"timestamp": 1.0, "pose": {"x": 1}, "pose.x": 2}]
    refused(client.post("/api/v1/tracks/append", params={**Q, "topic": "t"}, json={"batchId": "t", "entries": entries}),
            422, "invalid_value", "entries[0]", "'pose.x' is given twice")
    assert not dash_root.exists()


def test_the_sdk_refuses_colliding_names_when_they_are_set(exp: Experiment, dash_root: Path) -> None:
    with pytest.raises(InvalidValueError, match=r"param 'a\.b' is given twice, as 'a\.b' and as \{'a': \{'b'"):
        exp.params.set(**{"a.b": 1, "a": {"b": 2}})
    with pytest.raises(InvalidValueError, match=r"'pose\.x' is given twice"):
        exp.tracks("t").append(pose={"x": 1}, **{"pose.x": 2})
    exp.params.set(a={"b": 2})
    exp.params.set(**{"a.b": 3})  # a later call may change the value: that is no collision
    assert exp.params.get() == {"a.b": 3}


# -- a loss to a full disk is in experiment.json -------------------------------------------------------


def test_a_run_that_lost_points_to_a_full_disk_says_so_in_experiment_json(dash_root: Path) -> None:
    prefix = "alice/failures/run-1"
    proc = start("procs/failing_logger.py", "--root", dash_root, "--prefix", prefix, "--close-timeout", 2.0,
                 "--failure", "fsize", "--then", "close", "--limit", 65536, "--before", 300, "--during", 3000)
    out, err = finish(proc, timeout=180)
    assert proc.returncode == 0, err
    report = last_json(out)["report"]
    assert report["unwritten"], report  # the disk filled up
    info = strict_json((exp_dir(dash_root, prefix) / "experiment.json").read_bytes())
    assert info["status"] == "COMPLETED"
    lost = info["metadata"]["lost"]
    assert lost["unwritten"] == report["unwritten"]
    assert "Errno 27" in lost["lastError"]
    assert LocalStore(dash_root).get_experiment(prefix).metadata["lost"]["unwritten"] == report["unwritten"]


def test_a_run_that_lost_nothing_has_no_loss_record(make_exp: Any, dash_root: Path) -> None:
    exp = make_exp()
    with exp.run:
        exp.metrics("m").log(v=1)
    assert exp.close_report is not None and exp.close_report.ok
    assert "lost" not in LocalStore(dash_root).get_experiment(exp.prefix).metadata


# -- the OpenAPI description ---------------------------------------------------------------------------


def test_openapi_describes_prefix_and_batch_id_patterns_and_status_level_and_non_finite_enums(
    client: AppClient,
) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for path, method in (("/api/v1/metrics/append", "post"), ("/api/v1/params", "get"), ("/api/v1/logs", "get")):
        params = {p["name"]: p["schema"] for p in doc["paths"][path][method]["parameters"]}
        assert params["prefix"]["pattern"] == PREFIX_PATTERN
    append = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/metrics/append"]["post"]["parameters"]}
    assert append["name"]["pattern"] == NAME_PATTERN
    levels = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/logs"]["get"]["parameters"]}["level"]
    assert json.dumps(LEVEL_PATTERN) in json.dumps(levels)
    for body in ("MetricsAppendBody", "LogsAppendBody", "TracksAppendBody"):
        assert schemas[body]["properties"]["batchId"]["pattern"] == BATCH_ID_PATTERN
        (described,) = [s for s in schemas[body]["properties"]["nonFinite"]["anyOf"] if s.get("type") == "object"]
        assert described["additionalProperties"]["enum"] == ["NaN", "Infinity", "-Infinity"]
        assert described["propertyNames"] == {"pattern": "^/"}
    assert schemas["ExperimentOpen"]["properties"]["prefix"]["pattern"] == PREFIX_PATTERN
    assert schemas["ExperimentOpen"]["properties"]["status"]["enum"] == list(STATUSES)
    assert schemas["ExperimentBody"]["properties"]["status"]["enum"] == list(READ_STATUSES)
    assert schemas["ExperimentChanges"]["properties"]["status"]["enum"] == list(STATUSES)
    assert schemas["LogRecordBody"]["properties"]["level"]["pattern"] == LEVEL_PATTERN


def _accepts(check: Any, value: str) -> bool:
    try:
        check(value)
    except (InvalidNameError, InvalidValueError):
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["a/b/c", "alice/proj/run-1", "INFO", " Warning ", "err", "fatal\t", "batch_1-A", "x" * 64, "x" * 65]))
def test_whatever_the_server_accepts_matches_the_described_pattern(text: str) -> None:
    """What schemathesis sends as 'not matching the schema' must be refused, so the patterns
    must take in everything the server takes."""
    for pattern, check in ((NAME_PATTERN, lambda v: validate_name(v)),
                           (PREFIX_PATTERN, lambda v: validate_name(v) if v.count("/") >= 2 else int("x")),
                           (LEVEL_PATTERN, normalize_level), (BATCH_ID_PATTERN, check_batch_id)):
        try:
            accepted = _accepts(check, text)
        except ValueError:
            accepted = False
        if accepted:
            assert re.search(pattern, text), (pattern, text)
    if re.search(BATCH_ID_PATTERN, text) and "\n" not in text:
        assert _accepts(check_batch_id, text)
