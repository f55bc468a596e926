"""RemoteStore as an HTTP client: what it sends, and which error each answer becomes.

Its behaviour against the real server is the contract suite's (tests/contract). Here a
``httpx.MockTransport`` stands in for answers our server never gives (a proxy's 502
page, 429 with ``Retry-After``) and records the requests.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import httpx
import pytest

from ml_dash import wire
from ml_dash.errors import ForbiddenError, InvalidValueError, MLDashError, StorageError
from ml_dash.records import AppendResult, LogRecord, StreamDescription
from ml_dash.stores.remote import RemoteStore, ServerUnavailableError
from support.processes import free_port

PREFIX = "alice/proj/run-1"


def answering(handler: Callable[[httpx.Request], httpx.Response]) -> RemoteStore:
    return RemoteStore("http://server.test", api_key="k", timeout=2.0, transport=httpx.MockTransport(handler))


def error(status: int, code: str, headers: dict[str, str] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(status, json={"code": code, "message": "no"}, headers=headers)


def test_writes_send_the_bodies_the_outbox_stores_and_return_the_servers_answer() -> None:
    sent: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path.endswith("/metrics/append"):
            return httpx.Response(200, json={"firstIndex": 7, "count": 1, "duplicate": True})
        if request.url.path.endswith("/logs/append"):
            return httpx.Response(200, json={"firstSequence": None, "count": 0, "duplicate": False})
        return httpx.Response(200, content=request.content)  # describe answers what it recorded

    store = answering(server)
    points = [{"loss": math.nan, "_ts": 1.0}]
    assert store.append_metrics(PREFIX, "train", points, "b-1") == AppendResult(7, 1, True)
    assert store.append_logs(PREFIX, [], "l-1") == AppendResult(None, 0, False)
    store.describe_stream(PREFIX, "train", StreamDescription("loss", ("a",), {"floor": -math.inf}))
    store.close()
    assert [(r.method, r.url.path, dict(r.url.params)) for r in sent] == [
        ("POST", "/api/v1/metrics/append", {"prefix": PREFIX, "name": "train"}),
        ("POST", "/api/v1/logs/append", {"prefix": PREFIX}),
        ("POST", "/api/v1/metrics/describe", {"prefix": PREFIX, "name": "train"}),
    ]
    assert sent[0].content == wire.encode_call("append_metrics", (points, "b-1"))
    assert sent[1].content == wire.encode_call("append_logs", ([], "l-1"))
    assert all(r.headers["authorization"] == "Bearer k" for r in sent)
    assert all(r.headers["content-type"] == "application/json" for r in sent)


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [(429, {"Retry-After": "7"}, 7.0), (503, None, None), (408, None, None), (500, {"Retry-After": "soon"}, None)],
)
def test_busy_or_failing_servers_raise_storage_error_with_their_retry_after(
    status: int, headers: dict[str, str] | None, retry_after: float | None
) -> None:
    store = answering(error(status, "storage_error", headers))
    with pytest.raises(ServerUnavailableError) as raised:
        store.set_params(PREFIX, {"lr": 0.1})
    assert isinstance(raised.value, StorageError) and raised.value.retry_after == retry_after
    assert str(status) in str(raised.value)


def test_a_proxy_page_instead_of_an_answer_is_storage_error() -> None:
    store = answering(lambda _r: httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(StorageError, match="502"):
        store.get_params(PREFIX)
    garbled = answering(lambda _r: httpx.Response(200, text="<html>welcome</html>"))
    with pytest.raises(StorageError, match="ParamsOut"):
        garbled.get_params(PREFIX)


def test_refusals_raise_the_class_the_server_raised() -> None:
    with pytest.raises(ForbiddenError):
        answering(error(403, "forbidden")).append_logs(PREFIX, [LogRecord(1.0, "info", "m", None)], "l-1")
    with pytest.raises(InvalidValueError):
        answering(error(422, "invalid_value")).append_tracks(PREFIX, "pos", [{"timestamp": 1.0}], "t-1")
    with pytest.raises(MLDashError) as raised:
        answering(error(418, "teapot")).list_tracks(PREFIX)
    assert type(raised.value) is MLDashError
    assert answering(error(404, "not_found")).get_experiment(PREFIX) is None


def test_an_unreachable_server_or_a_timeout_is_storage_error() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(ServerUnavailableError, match="cannot reach"):
        RemoteStore(f"http://127.0.0.1:{port}", timeout=2.0).list_experiments()

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(StorageError, match="ReadTimeout"):
        answering(slow).read_metrics(PREFIX, "train")
