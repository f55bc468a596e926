"""The real server app in-process, driven through httpx (no sockets), for the server tests.

Nothing here mocks ML-Dash. ``AppClient`` drives the real ASGI app through httpx's
ASGI transport (synchronously, via an anyio portal). Real ``ml-dash serve`` processes
are in :mod:`support.processes`.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx

from ml_dash.server import FileTokenStore, create_app
from ml_dash.stores.local import LocalStore

PREFIX = "alice/proj/run-1"


class AppClient:
    """A synchronous httpx client bound to an in-process ASGI app (no sockets)."""

    def __init__(self, app: Any, *, raise_app_exceptions: bool = True) -> None:
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] = (
            anyio.from_thread.start_blocking_portal()
        )
        self._portal = self._portal_cm.__enter__()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://testserver")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            return await self._client.request(method, url, **kwargs)

        return self._portal.call(call)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self._portal.call(self._client.aclose)
        self._portal_cm.__exit__(None, None, None)


def app_client(root: Path, *, auth: bool = False, **kwargs: Any) -> tuple[AppClient, LocalStore]:
    """A client of a fresh app over ``root`` (with a FileTokenStore in ``root`` when ``auth``)."""
    store = LocalStore(root)
    tokens = FileTokenStore(root) if auth else None
    return AppClient(create_app(store, tokens, **kwargs)), store


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), and every folder (-> b"<dir>")."""
    found: dict[str, bytes] = {}
    if not root.exists():
        return found
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root)] = b"<dir>"
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def route_calls(prefix: str) -> list[tuple[str, str, dict[str, Any], Any]]:
    """One call per route (method, path, query, JSON body) on ``prefix``."""
    q = {"prefix": prefix}
    return [
        ("POST", "/api/v1/experiment/open", {}, {"prefix": prefix}),
        ("POST", "/api/v1/experiment/update", q, {"status": "COMPLETED"}),
        ("POST", "/api/v1/experiment/claim", q, {"holder": {"id": "h-1", "host": "h", "pid": 1}, "leaseSeconds": 30}),
        ("POST", "/api/v1/experiment/release", q, {"holderId": "h-1"}),
        ("GET", "/api/v1/experiment", q, None),
        ("POST", "/api/v1/params", q, {"params": {"lr": 1}}),
        ("GET", "/api/v1/params", q, None),
        ("POST", "/api/v1/metrics/append", {**q, "name": "m"}, {"batchId": "b-9", "points": [{"v": 1}]}),
        ("GET", "/api/v1/metrics/read", {**q, "name": "m"}, None),
        ("GET", "/api/v1/metrics/stats", {**q, "name": "m"}, None),
        ("GET", "/api/v1/metrics/list", q, None),
        ("POST", "/api/v1/logs/append", q, {"batchId": "l-9", "records": [{"ts": 1.0, "level": "info",
                                                                              "message": "m"}]}),
        ("GET", "/api/v1/logs", q, None),
        ("POST", "/api/v1/tracks/append", {**q, "topic": "t"}, {"batchId": "t-9", "entries": [{"timestamp": 1.0}]}),
        ("GET", "/api/v1/tracks/read", {**q, "topic": "t"}, None),
        ("GET", "/api/v1/tracks/list", q, None),
        ("GET", "/api/v1/metrics/series", {**q, "name": "m", "y": "v"}, None),
        ("GET", "/api/v1/metrics/fields", {**q, "name": "m"}, None),
    ]
