"""Limits on what one request may hold (issue 9, item 2: memory amplification).

A 60 MB body of nested empty lists used to take a server from ~100 MB to 3 GB. Now a
body whose decoding would cost more than 4x its size (at least 32 MiB) is refused
unread, and the real server process's memory is measured while it refuses one.
Nesting, items per list or object and bytes per point, record, entry and params are
limits of their own, with the same defaults in the SDK, and options of ``serve``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ml_dash import Experiment, InvalidValueError, LocalStore
from ml_dash.errors import TooLargeError
from ml_dash.limits import DEFAULT, Limits
from ml_dash.server import create_app
from support.app import PREFIX, AppClient, snapshot
from support.processes import ServerProcess, ml_dash

Q = {"prefix": PREFIX}
JSON = {"content-type": "application/json"}
SMALL = Limits(max_depth=4, max_items=10, max_point_bytes=300, max_log_bytes=300, max_track_bytes=300,
               max_params_bytes=300)


def refused(response: httpx.Response, status: int, code: str, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["message"], body["message"]
    return str(body["message"])


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


# -- a real server process: memory while it refuses 60 MB bodies --------------------------


class PeakRss:
    """Samples a process's RSS every 2 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    made = ServerProcess(root=tmp_path_factory.mktemp("limits") / ".dash").start()
    yield made
    made.stop()


EMPTY_LISTS = 20_000_000  # 60 MB of "[],"
BODIES: dict[str, tuple[str, dict[str, str], Callable[[], bytes]]] = {
    "one metric point of nested empty lists": (
        "/api/v1/metrics/append", {**Q, "name": "m"},
        lambda: b'{"batchId": "b-1", "points": [{"v": [' + b"[]," * EMPTY_LISTS + b"[]]}]}",
    ),
    "params of nested empty lists": (
        "/api/v1/params", Q, lambda: b'{"params": {"a": [' + b"[]," * EMPTY_LISTS + b"[]]}}",
    ),
    "one metric point nested 30 million levels deep": (
        "/api/v1/metrics/append", {**Q, "name": "m"},
        lambda: b'{"batchId": "b-2", "points": [{"v": ' + b"[" * 30_000_000 + b"]" * 30_000_000 + b"}]}",
    ),
}


@pytest.mark.parametrize("what", list(BODIES))
def test_a_60_mb_body_of_nested_lists_is_refused_with_server_memory_under_4x_its_size(
    server: ServerProcess, what: str
) -> None:
    path, params, make = BODIES[what]
    body = make()
    assert len(body) >= 60_000_000
    with httpx.Client(base_url=server.url, timeout=120) as http:
        assert http.get("/health").status_code == 200
        with PeakRss(server.proc.pid) as rss:  # type: ignore[union-attr]
            response = http.post(path, params=params, content=body, headers=JSON)
        message = refused(response, 413, "too_large", "4x the body", "lists and objects")
        grown = rss.peak - rss.before
        assert grown <= 4 * len(body), f"{what}: the server grew by {grown / 1e6:.0f} MB for a " \
                                       f"{len(body) / 1e6:.0f} MB body ({message})"
        # Nothing was stored, and the server answers at once afterwards.
        assert http.get("/api/v1/metrics/stats", params={**Q, "name": "m"}).json()["totalDataPoints"] == 0
        assert http.get("/api/v1/params", params=Q).json()["data"] == {}
        started = time.monotonic()
        answer = http.post("/api/v1/metrics/append", params={**Q, "name": "ok"}, headers=JSON,
                           content=json.dumps({"batchId": f"ok-{len(what)}", "points": [{"v": 1}]}))
        assert answer.status_code == 200 and time.monotonic() - started < 1.0


# -- each limit, in-process, with small limits -----------------------------------------------


@pytest.fixture
def small(dash_root: Path) -> Iterator[AppClient]:
    store = LocalStore(dash_root)
    client = AppClient(create_app(store, limits=SMALL))
    assert client.post("/api/v1/experiment/open", json={"prefix": PREFIX}).status_code == 200
    yield client
    client.close()
    store.close()


def post(client: AppClient, path: str, body: Any, **params: str) -> httpx.Response:
    return client.post(path, params={**Q, **params}, content=json.dumps(body), headers=JSON)


def test_values_nested_deeper_than_the_limit_are_422_naming_the_field_and_the_limit(
    small: AppClient, dash_root: Path
) -> None:
    before = snapshot(dash_root)
    point = {"batchId": "b", "points": [{"ok": nested(4)}, {"v": nested(5)}]}
    refused(post(small, "/api/v1/metrics/append", point, name="m"), 422, "invalid_value", "points[1].v", "4")
    record = {"ts": 1.0, "level": "info", "message": "m", "metadata": {"a": nested(4)}}
    refused(post(small, "/api/v1/logs/append", {"batchId": "l", "records": [record]}), 422, "invalid_value",
            "records[0].metadata.a", "4")
    entry = {"timestamp": 1.0, "pose": {"x": nested(4)}}
    refused(post(small, "/api/v1/tracks/append", {"batchId": "t", "entries": [entry]}, topic="t"), 422,
            "invalid_value", "pose.x", "4")
    refused(post(small, "/api/v1/params", {"params": {"a": {"b": {"c": {"d": {"e": 1}}}}}}), 422, "invalid_value",
            "a.b.c.d", "4")
    refused(post(small, "/api/v1/experiment/update", {"metadata": {"x": nested(4)}}), 422, "invalid_value",
            "metadata.x", "4")
    assert snapshot(dash_root) == before


def test_lists_and_objects_with_more_items_than_the_limit_are_422_naming_the_field(
    small: AppClient, dash_root: Path
) -> None:
    before = snapshot(dash_root)
    refused(post(small, "/api/v1/metrics/append", {"batchId": "b", "points": [{"v": list(range(11))}]}, name="m"),
            422, "invalid_value", "points[0].v", "11 items", "10")
    many_fields = {f"f{i}": i for i in range(11)}
    refused(post(small, "/api/v1/metrics/append", {"batchId": "b", "points": [many_fields]}, name="m"),
            422, "invalid_value", "points[0]", "11 fields", "10")
    refused(post(small, "/api/v1/params", {"params": {"grid": {str(i): i for i in range(11)}}}), 422,
            "invalid_value", "grid", "10")
    # The batch itself is a size: more records than the limit is 413, as before.
    refused(post(small, "/api/v1/metrics/append", {"batchId": "b", "points": [{"v": 1}] * 11}, name="m"),
            413, "too_large", "11 items", "10")
    assert snapshot(dash_root) == before


def test_points_records_entries_and_params_over_their_byte_limit_are_413_naming_which(
    small: AppClient, dash_root: Path
) -> None:
    before = snapshot(dash_root)
    pad = "x" * 300
    refused(post(small, "/api/v1/metrics/append", {"batchId": "b", "points": [{"v": 1}, {"v": pad}]}, name="m"),
            413, "too_large", "points[1]", "300 bytes per metric point")
    record = {"ts": 1.0, "level": "info", "message": pad}
    refused(post(small, "/api/v1/logs/append", {"batchId": "l", "records": [record]}), 413, "too_large",
            "records[0]", "per log record")
    refused(post(small, "/api/v1/tracks/append", {"batchId": "t", "entries": [{"timestamp": 1.0, "s": pad}]},
                 topic="t"), 413, "too_large", "entries[0]", "per track entry")
    refused(post(small, "/api/v1/params", {"params": {"note": pad}}), 413, "too_large", "params",
            "per params document")
    assert snapshot(dash_root) == before
    # Just under the limits is stored.
    assert post(small, "/api/v1/metrics/append", {"batchId": "b", "points": [{"v": "x" * 250}]},
                name="m").status_code == 200


def test_a_body_too_costly_to_decode_is_413_before_decoding_and_stores_nothing(dash_root: Path) -> None:
    store = LocalStore(dash_root)
    client = AppClient(create_app(store))
    try:
        body = b'{"batchId": "b", "points": [{"v": [' + b"[]," * 1_000_000 + b"[]]}]}"  # 3 MB, ~64 MB decoded
        response = client.post("/api/v1/metrics/append", params={**Q, "name": "m"}, content=body, headers=JSON)
        refused(response, 413, "too_large", "1,000,005 lists and objects", "limit of 32.0 MiB")
        assert not dash_root.exists()
        # With a bigger budget (--max-decode-ratio) it is decoded, and then refused for its size or items.
        for limits, status, words in ((Limits(max_decode_ratio=100), 413, ("points[0]", "per metric point")),
                                      (Limits(max_decode_ratio=100, max_point_bytes=8 << 20), 422,
                                       ("points[0].v", "1000001 items"))):
            generous = AppClient(create_app(store, limits=limits))
            response = generous.post("/api/v1/metrics/append", params={**Q, "name": "m"}, content=body, headers=JSON)
            generous.close()
            refused(response, status, "too_large" if status == 413 else "invalid_value", *words)
        assert not dash_root.exists()
    finally:
        client.close()
        store.close()


def test_brackets_and_commas_inside_strings_are_text_not_structure(dash_root: Path) -> None:
    """12 MB of log messages that read like JSON arrays: counted as structure they would
    look like 3 GB of lists; they are text, and are stored."""
    store = LocalStore(dash_root)
    client = AppClient(create_app(store))
    try:
        message = "[]," * 40_000
        records = [{"ts": 1.0 + i, "level": "info", "message": message} for i in range(100)]
        response = client.post("/api/v1/logs/append", params=Q, json={"batchId": "l-1", "records": records})
        assert response.status_code == 200, response.text
        assert store.query_logs(PREFIX, {"limit": 1})["total"] == 100
    finally:
        client.close()
        store.close()


def test_a_body_nested_thousands_of_levels_deep_is_422_naming_the_depth_limit(small: AppClient) -> None:
    body = b'{"params": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    response = small.post("/api/v1/params", params=Q, content=body, headers=JSON)
    refused(response, 422, "invalid_value", "4 levels")


def test_default_limits_refuse_a_list_of_100001_items_with_422(dash_root: Path) -> None:
    store = LocalStore(dash_root)
    client = AppClient(create_app(store))
    try:
        body = {"batchId": "b", "points": [{"hist": [0] * 100_001}]}
        refused(post(client, "/api/v1/metrics/append", body, name="m"), 422, "invalid_value", "100001 items",
                "100000")
        ok = {"batchId": "b", "points": [{"hist": [0] * 100_000, "deep": nested(DEFAULT.max_depth)}]}
        assert post(client, "/api/v1/metrics/append", ok, name="m").status_code == 200
    finally:
        client.close()
        store.close()


# -- serve options -----------------------------------------------------------------------------


def test_serve_takes_the_limits_as_options_and_lists_them_in_its_help(tmp_path: Path) -> None:
    shown = ml_dash("serve", "--help").stdout
    for option in ("--max-body", "--max-decode-ratio", "--max-depth", "--max-items", "--max-point-bytes",
                   "--max-log-bytes", "--max-track-bytes", "--max-params-bytes", "--header-timeout", "--body-timeout",
                   "--max-connections", "--max-connections-per-client"):
        assert option in shown
    assert "default: 32)" in shown and "default: 100,000)" in shown and "default: 1 MiB)" in shown
    bad = ml_dash("serve", "--root", str(tmp_path), "--max-depth", "0", check=False)
    assert bad.returncode == 2 and "max_depth must be a positive whole number" in bad.stderr
    server = ServerProcess("--max-depth", "2", "--max-point-bytes", "100", root=tmp_path / ".dash").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            deep = http.post("/api/v1/metrics/append", params={**Q, "name": "m"},
                             json={"batchId": "b", "points": [{"v": nested(3)}]})
            refused(deep, 422, "invalid_value", "points[0].v", "2 levels")
            big = http.post("/api/v1/metrics/append", params={**Q, "name": "m"},
                            json={"batchId": "b", "points": [{"v": "x" * 100}]})
            refused(big, 413, "too_large", "points[0]", "100 bytes per metric point")
            fine = http.post("/api/v1/metrics/append", params={**Q, "name": "m"},
                             json={"batchId": "b", "points": [{"v": nested(2)}]})
            assert fine.status_code == 200, fine.text
    finally:
        server.stop()


def test_serve_max_open_files_is_validated_and_bounds_the_data_files_the_server_keeps_open(tmp_path: Path) -> None:
    for value in ("0", "-3"):
        bad = ml_dash("serve", "--root", str(tmp_path), "--max-open-files", value, check=False)
        assert bad.returncode == 2 and f"--max-open-files must be a positive whole number, got {value}" in bad.stderr
    word = ml_dash("serve", "--root", str(tmp_path), "--max-open-files", "many", check=False)
    assert word.returncode == 2 and "--max-open-files: invalid int value: 'many'" in word.stderr
    mongo = ml_dash("serve", "--mongo", "mongodb://127.0.0.1:9/x", "--max-open-files", "4", check=False)
    assert mongo.returncode == 2 and "the MongoDB backend keeps none open" in mongo.stderr
    assert "--max-open-files N" in ml_dash("serve", "--help").stdout

    server = ServerProcess("--max-open-files", "4", root=tmp_path / ".dash").start()
    try:
        assert "open data files: at most 4 " in server.stdout
        streams = [f"s{i:02d}" for i in range(12)]
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for round_ in range(2):
                for name in streams:
                    done = http.post("/api/v1/metrics/append", params={**Q, "name": name},
                                     json={"batchId": f"{name}-{round_}", "points": [{"v": round_}]})
                    assert done.status_code == 200, done.text
            assert server.proc is not None
            held = [f.path for f in psutil.Process(server.proc.pid).open_files() if f.path.endswith("data.jsonl")]
            assert 1 <= len(held) <= 4, held  # without the bound all 12 stay open
            for name in streams:  # the files closed to keep the bound lost nothing
                page = http.get("/api/v1/metrics/read", params={**Q, "name": name}).json()
                assert [p["data"]["v"] for p in page["data"]] == [0, 1], (name, page)
    finally:
        server.stop()


# -- the SDK refuses the same values when they are logged ------------------------------------------


def test_the_sdk_refuses_values_over_the_limits_when_they_are_logged(exp: Experiment) -> None:
    with pytest.raises(InvalidValueError, match=r"'v\[0\].*32 levels"):
        exp.metrics("m").log(v=nested(33))
    with pytest.raises(InvalidValueError, match=r"'hist': 100001 items.*100000"):
        exp.metrics("m").log(hist=list(range(100_001)))
    with pytest.raises(InvalidValueError, match=r"metadata.*32 levels"):
        exp.log("deep", metadata={"a": nested(32)})
    with pytest.raises(InvalidValueError, match=r"'a\.b\.c"):
        deep: dict[str, Any] = {"x": 1}
        for key in reversed("abcdefghijklmnopqrstuvwxyzABCDEFGH"):
            deep = {key: deep}
        exp.params.set(**deep)
    with pytest.raises(TooLargeError, match=r"params: .* over the limit of 8388608 bytes"):
        exp.params.set(blob="x" * (8 * 1024 * 1024))
    exp.metrics("m").log(v=nested(32), hist=list(range(100_000)))  # at the limits: fine
    exp.params.set(lr=0.1)
    assert exp.params.get() == {"lr": 0.1}
