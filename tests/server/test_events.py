"""GET /api/v1/events: live events from a real server process, for data that a training
script writes straight into the served folder and for data sent through the server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_dash import Experiment
from ml_dash.server.auth import FileTokenStore
from support.processes import running

PREFIX = "alice/vision/live/run-1"


class EventReader:
    """Reads an event stream on a thread; ``events`` holds (arrival time, event, data, id)."""

    def __init__(self, url: str, params: list[tuple[str, str]], headers: dict[str, str] | None = None) -> None:
        self.events: list[tuple[float, str, dict[str, Any], str]] = []
        self.comments = 0
        self.status: int | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(url, params, headers or {}), daemon=True)
        self._thread.start()

    def _run(self, url: str, params: list[tuple[str, str]], headers: dict[str, str]) -> None:
        try:
            self._read(url, params, headers)
        except httpx.HTTPError:
            if not self._stop.is_set():  # the stream ends when the test stops the server or closes it
                raise

    def _read(self, url: str, params: list[tuple[str, str]], headers: dict[str, str]) -> None:
        with httpx.Client(timeout=httpx.Timeout(30.0, read=30.0)) as client, \
                client.stream("GET", f"{url}/api/v1/events", params=params, headers=headers) as answer:
            self.status = answer.status_code
            event, data, ident = "message", "", ""
            for line in answer.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith(":"):
                    self.comments += 1
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line.startswith("id: "):
                    ident = line[4:]
                elif not line and data:
                    with self._cond:
                        self.events.append((time.monotonic(), event, json.loads(data), ident))
                        self._cond.notify_all()
                    event, data = "message", ""

    def wait_for(self, check: Any, timeout: float = 20.0) -> tuple[float, str, dict[str, Any], str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for found in self.events:
                    if check(found[1], found[2]):
                        return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such event within {timeout} s; got {[e[1:3] for e in self.events]}")
                self._cond.wait(left)

    def close(self) -> None:
        self._stop.set()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "dash"
    root.mkdir()
    with running(root=root) as server:
        yield server.url, root


def test_events_report_points_logs_and_status_written_straight_into_the_folder(served: tuple[str, Path]) -> None:
    url, root = served
    with Experiment(prefix=PREFIX, dash_root=root).run as exp:
        exp.metrics("train").log(loss=1.0, step=0)
        exp.flush()
        reader = EventReader(url, [("prefix", PREFIX)])
        try:
            reader.wait_for(lambda e, d: e == "status" and d == {"prefix": PREFIX, "status": "RUNNING"})
            reader.wait_for(lambda e, d: e == "points" and d["count"] == 1)
            for i in range(1, 6):
                exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
            exp.log("hello", level="info")
            _, _, data, _ = reader.wait_for(lambda e, d: e == "points" and d["count"] == 6)
            assert data["name"] == "train" and data["last"]["step"] == 5
            reader.wait_for(lambda e, d: e == "logs" and d["count"] == 1)
        finally:
            reader.close()
    reader = EventReader(url, [("prefix", PREFIX)])
    try:
        reader.wait_for(lambda e, d: e == "status" and d["status"] == "COMPLETED")
        ids = [e[3] for e in reader.events]
        assert len(set(ids)) == len(ids), "event ids are unique within a connection"
    finally:
        reader.close()


def test_a_reconnect_gets_the_current_state_so_nothing_is_missed(served: tuple[str, Path]) -> None:
    url, root = served
    with Experiment(prefix=PREFIX, dash_root=root).run as exp:
        exp.metrics("train").log(loss=1.0, step=0)
        exp.flush()
        first = EventReader(url, [("prefix", PREFIX)])
        _, _, _, last_id = first.wait_for(lambda e, d: e == "points" and d["count"] == 1)
        first.close()
        for i in range(1, 41):  # while no one listens
            exp.metrics("train").log(loss=1.0, step=i)
        exp.flush()
        again = EventReader(url, [("prefix", PREFIX)], headers={"Last-Event-ID": last_id})
        try:
            _, _, data, _ = again.wait_for(lambda e, d: e == "points" and d["count"] == 41)
            assert data["last"]["step"] == 40
        finally:
            again.close()


def test_watching_an_owner_reports_new_experiments(served: tuple[str, Path]) -> None:
    url, root = served
    reader = EventReader(url, [("owner", "alice")])
    try:
        reader.wait_for(lambda e, d: e == "ready" and d == {"experiments": 0})
        with Experiment(prefix="alice/vision/new-one", dash_root=root).run as exp:
            exp.metrics("m").log(x=1)
            reader.wait_for(lambda e, d: e == "experiment" and d["prefix"] == "alice/vision/new-one")
    finally:
        reader.close()


def test_events_refuse_bad_requests_with_a_clear_4xx(served: tuple[str, Path]) -> None:
    url, _ = served
    with httpx.Client() as client:
        nothing = client.get(f"{url}/api/v1/events")
        assert nothing.status_code == 422 and "prefix" in nothing.json()["message"]
        both = client.get(f"{url}/api/v1/events", params={"prefix": PREFIX, "owner": "alice"})
        assert both.status_code == 422 and "not both" in both.json()["message"]
        bad = client.get(f"{url}/api/v1/events", params={"prefix": "../etc/passwd"})
        assert bad.status_code == 400


def test_a_token_only_watches_its_owner(tmp_path: Path) -> None:
    root = tmp_path / "dash"
    with running("--auth", root=root) as server:
        bob = {"Authorization": f"Bearer {FileTokenStore(server.root).create('bob')}"}
        with httpx.Client() as client:
            answer = client.get(f"{server.url}/api/v1/events", params={"prefix": PREFIX}, headers=bob)
            assert answer.status_code == 403 and "bob" in answer.json()["message"]
            answer = client.get(f"{server.url}/api/v1/events", params={"owner": "alice"}, headers=bob)
            assert answer.status_code == 403
            assert client.get(f"{server.url}/api/v1/events", params={"prefix": PREFIX}).status_code == 401
