"""The Store protocol (``ml_dash.stores.base.Store``) as a contract over every backend.

Each test takes the ``kit`` fixture: a store plus a way to open a second store over
the same storage (to check persistence). To run the suite against another backend,
add a factory to ``BACKENDS``; the tests themselves use nothing but the protocol.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest

from ml_dash import NotFoundError, Store
from ml_dash.records import AppendResult, ExperimentInfo, LogRecord, StreamDescription
from ml_dash.stores.local import LocalStore

PREFIX = "alice/contract/run-1"


@dataclass
class StoreKit:
    store: Store
    reopen: Callable[[], Store]  # another store over the same storage


def _local(tmp_path: Path) -> Iterator[StoreKit]:
    root = tmp_path / ".dash"
    opened: list[LocalStore] = []

    def make() -> LocalStore:
        store = LocalStore(root)
        opened.append(store)
        return store

    yield StoreKit(make(), make)
    for store in opened:
        store.close()


def _mongo(tmp_path: Path) -> Iterator[StoreKit]:
    """A MongoStore on a throw-away database and bucket (loopback servers, see tests/mongo)."""
    from mongo.services import Place, services

    place = Place(services())  # skips when the servers cannot start
    yield StoreKit(place.store(), place.store)
    place.close()


class _PortalTransport(httpx.BaseTransport):
    """A synchronous httpx transport into an ASGI app, run on an anyio portal's event loop.

    The same bytes as over TCP (httpx's ASGITransport builds the ASGI scope), without
    sockets: the app runs in-process, its store calls in the portal's worker threads.
    """

    def __init__(self, app: Any, portal: anyio.from_thread.BlockingPortal) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            response = await self._asgi.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return self._portal.call(call)


def _remote_kit(url: str, tmp_path: Path, transport: httpx.BaseTransport | None = None) -> Iterator[StoreKit]:
    """RemoteStores (plain synchronous clients of the HTTP API) on one server."""
    from ml_dash.stores.remote import RemoteStore

    opened: list[RemoteStore] = []

    def make() -> Store:
        store = RemoteStore(url, transport=transport)
        opened.append(store)
        return store

    yield StoreKit(make(), make)
    for store in opened:
        store.close()


def _remote_asgi(tmp_path: Path) -> Iterator[StoreKit]:
    """RemoteStore -> the server app in-process (no sockets) -> LocalStore over a fresh root."""
    from ml_dash.server import create_app

    backing = LocalStore(tmp_path / "server-root")
    with anyio.from_thread.start_blocking_portal() as portal:
        yield from _remote_kit("http://testserver", tmp_path, _PortalTransport(create_app(backing), portal))
    backing.close()


def _remote_uvicorn(tmp_path: Path) -> Iterator[StoreKit]:
    """RemoteStore -> a real ``python -m ml_dash serve`` on loopback over a root nobody used.

    The pool starts the next servers while a test runs (a start costs ~0.7 s of
    interpreter start-up), so each test still gets a fresh server and a fresh root.
    """
    from support.processes import server_pool

    server = server_pool().take()
    try:
        yield from _remote_kit(server.url, tmp_path)
    finally:
        server.kill()
        server.stop()


# name -> generator of a StoreKit over fresh storage in tmp_path, each skipping with a
# reason when its service is unavailable.
def _remote_mongo(tmp_path: Path) -> Iterator[StoreKit]:
    """RemoteStore -> real `ml-dash serve --mongo --s3` processes -> MongoStore (see tests/mongo/remote_backend.py)."""
    from mongo.remote_backend import remote_mongo

    yield from remote_mongo(tmp_path)


BACKENDS: dict[str, Callable[[Path], Iterator[StoreKit]]] = {
    "local": _local,
    "mongo": _mongo,
    "remote-asgi": _remote_asgi,
    "remote-mongo": _remote_mongo,
    "remote-uvicorn": _remote_uvicorn,
}


@pytest.fixture(params=sorted(BACKENDS))
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreKit]:
    yield from BACKENDS[request.param](tmp_path)


@pytest.fixture
def store(kit: StoreKit) -> Store:
    return kit.store


def info(prefix: str = PREFIX, **kw: Any) -> ExperimentInfo:
    owner, project, *folders, name = prefix.split("/")
    return ExperimentInfo(prefix=prefix, owner=owner, project=project, name=name, folders=tuple(folders), **kw)


@pytest.fixture
def opened(store: Store) -> Store:
    """The store with the experiment PREFIX opened."""
    store.open_experiment(info())
    return store


def points(start: int, n: int, t0: float = 1000.0) -> list[dict[str, Any]]:
    return [{"step": i, "loss": 1.0 / (i + 1), "_ts": t0 + i} for i in range(start, start + n)]


def user(point: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in point["data"].items() if k != "_ts"}


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


ODD = {
    "nan": math.nan,
    "inf": math.inf,
    "ninf": -math.inf,
    "big": 2**100,
    "neg_big": -(2**70),
    "list": [1.5, math.nan, {"deep": -math.inf}],
    "none": None,
    "flag": True,
    "text": "ünï\u2028code",
}


# -- experiments --------------------------------------------------------------------------


def test_open_experiment_creates_it_and_get_returns_it(store: Store) -> None:
    given = info(description="first", tags=("a", "b"), metadata={"seed": 1}, created_at=1_700_000_000.0)
    returned = store.open_experiment(given)
    assert returned.prefix == PREFIX
    got = store.get_experiment(PREFIX)
    assert got is not None
    assert (got.prefix, got.owner, got.project, got.name, got.folders) == (PREFIX, "alice", "contract", "run-1", ())
    assert (got.description, tuple(got.tags), got.metadata) == ("first", ("a", "b"), {"seed": 1})
    assert got.status == "RUNNING"
    assert got.created_at == pytest.approx(1_700_000_000.0, abs=1e-3)


def test_check_access_lets_a_writable_prefix_through_and_changes_nothing(store: Store) -> None:
    assert store.check_access(PREFIX, 5.0) is None
    assert store.get_experiment(PREFIX) is None


def test_get_experiment_of_an_unknown_prefix_is_none(store: Store) -> None:
    assert store.get_experiment("nobody/nothing/never") is None


def test_open_experiment_again_resumes_keeping_creation_time_and_data(store: Store) -> None:
    store.open_experiment(info(metadata={"a": 1}, created_at=1_600_000_000.0))
    first = store.append_metrics(PREFIX, "train", points(0, 2))
    again = store.open_experiment(info(description="resumed", metadata={"b": 2}, created_at=1_800_000_000.0))
    assert again.created_at == pytest.approx(1_600_000_000.0, abs=1e-3)
    got = store.get_experiment(PREFIX)
    assert got is not None
    assert got.description == "resumed"
    assert got.metadata.get("b") == 2
    assert first.first == 0
    assert store.append_metrics(PREFIX, "train", points(2, 1)).first == 2


def test_open_experiment_with_folders(store: Store) -> None:
    prefix = "alice/contract/sweep/lr-0.1/run-3"
    store.open_experiment(info(prefix))
    got = store.get_experiment(prefix)
    assert got is not None
    assert (got.folders, got.name) == (("sweep", "lr-0.1"), "run-3")


@pytest.mark.parametrize("status", ["COMPLETED", "FAILED", "CANCELLED"])
def test_update_experiment_changes_status_and_times(opened: Store, status: str) -> None:
    returned = opened.update_experiment(PREFIX, status=status, ended_at=1_900_000_000.0)
    assert returned.status == status
    got = opened.get_experiment(PREFIX)
    assert got is not None
    assert got.status == status
    assert got.ended_at == pytest.approx(1_900_000_000.0, abs=1e-3)


def test_update_of_an_unknown_experiment_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.update_experiment("nobody/nothing/never", status="COMPLETED")


def test_list_experiments_all_and_by_owner_and_project(store: Store) -> None:
    prefixes = ["alice/vision/run-1", "alice/vision/sub/run-2", "alice/nlp/run-1", "bob/vision/run-1"]
    for p in prefixes:
        store.open_experiment(info(p))
    assert sorted(i.prefix for i in store.list_experiments()) == sorted(prefixes)
    assert sorted(i.prefix for i in store.list_experiments(owner="alice")) == sorted(prefixes[:3])
    assert sorted(i.prefix for i in store.list_experiments(owner="alice", project="vision")) == sorted(prefixes[:2])
    assert [i.prefix for i in store.list_experiments(owner="carol")] == []


def test_experiments_persist_for_another_store_over_the_same_storage(kit: StoreKit) -> None:
    kit.store.open_experiment(info(tags=("x",)))
    kit.store.update_experiment(PREFIX, status="COMPLETED")
    kit.store.sync(PREFIX)
    got = kit.reopen().get_experiment(PREFIX)
    assert got is not None and got.status == "COMPLETED" and tuple(got.tags) == ("x",)


# -- params -------------------------------------------------------------------------------


def test_get_params_before_any_set_is_empty(opened: Store) -> None:
    doc = opened.get_params(PREFIX)
    assert doc.data == {}
    assert doc.version == 0


def test_set_params_merges_and_counts_versions(opened: Store) -> None:
    first = opened.set_params(PREFIX, {"lr": 0.1, "model.depth": 18})
    assert first.version == 1
    second = opened.set_params(PREFIX, {"model.depth": 50, "epochs": 3})
    assert second.data == {"lr": 0.1, "model.depth": 50, "epochs": 3}
    assert second.version == 2
    doc = opened.get_params(PREFIX)
    assert doc.data == {"lr": 0.1, "model.depth": 50, "epochs": 3}
    assert doc.version == 2
    assert doc.updated_at is not None and doc.created_at is not None and doc.updated_at >= doc.created_at


def test_params_of_experiments_are_separate(store: Store) -> None:
    other = "alice/contract/run-2"
    store.open_experiment(info())
    store.open_experiment(info(other))
    store.set_params(PREFIX, {"a": 1})
    store.set_params(other, {"b": 2})
    assert store.get_params(PREFIX).data == {"a": 1}
    assert store.get_params(other).data == {"b": 2}


# -- metrics ------------------------------------------------------------------------------


def test_append_metrics_returns_the_first_index_and_indexes_are_gapless_across_batches(opened: Store) -> None:
    assert opened.append_metrics(PREFIX, "train", points(0, 3)).first == 0
    assert opened.append_metrics(PREFIX, "train", points(3, 1)).first == 3
    assert opened.append_metrics(PREFIX, "train", points(4, 5)).first == 4
    page = opened.read_metrics(PREFIX, "train", 0, 100)
    assert [p["index"] for p in page["data"]] == list(range(9))
    assert [user(p) for p in page["data"]] == [{"step": i, "loss": 1.0 / (i + 1)} for i in range(9)]
    assert [p["data"]["_ts"] for p in page["data"]] == [1000.0 + i for i in range(9)]


def test_append_metrics_with_a_repeated_batch_id_stores_it_once(opened: Store) -> None:
    assert opened.append_metrics(PREFIX, "train", points(0, 2), batch_id="b-1").first == 0
    assert opened.append_metrics(PREFIX, "train", points(2, 3), batch_id="b-2").first == 2
    assert opened.append_metrics(PREFIX, "train", points(2, 3), batch_id="b-2") == AppendResult(2, 3, True)  # resent
    assert opened.append_metrics(PREFIX, "train", points(5, 1), batch_id="b-3").first == 5
    page = opened.read_metrics(PREFIX, "train", 0, 100)
    assert [p["data"]["step"] for p in page["data"]] == list(range(6))
    assert page["total"] == 6


def test_metric_streams_are_independent(opened: Store) -> None:
    opened.append_metrics(PREFIX, "train", points(0, 3))
    assert opened.append_metrics(PREFIX, "eval", points(0, 2)).first == 0
    assert opened.read_metrics(PREFIX, "eval", 0, 10)["total"] == 2


def test_read_metrics_pages(opened: Store) -> None:
    opened.append_metrics(PREFIX, "train", points(0, 25))
    page = opened.read_metrics(PREFIX, "train", 0, 10)
    assert [p["index"] for p in page["data"]] == list(range(10))
    assert (page["startIndex"], page["endIndex"], page["total"], page["hasMore"]) == (0, 9, 25, True)
    middle = opened.read_metrics(PREFIX, "train", 12, 5)
    assert [p["data"]["step"] for p in middle["data"]] == [12, 13, 14, 15, 16]
    assert (middle["startIndex"], middle["endIndex"], middle["hasMore"]) == (12, 16, True)
    last = opened.read_metrics(PREFIX, "train", 20, 10)
    assert [p["index"] for p in last["data"]] == list(range(20, 25))
    assert (last["endIndex"], last["total"], last["hasMore"]) == (24, 25, False)
    past = opened.read_metrics(PREFIX, "train", 30, 10)
    assert (past["data"], past["total"], past["hasMore"]) == ([], 25, False)
    assert type(page["total"]) is int and type(page["hasMore"]) is bool


def test_read_metrics_from_the_middle_of_a_long_stream(opened: Store) -> None:
    for start in range(0, 6000, 1000):
        opened.append_metrics(PREFIX, "train", points(start, 1000))
    for start in (1, 2999, 4321, 5995):
        page = opened.read_metrics(PREFIX, "train", start, 10)
        expected = list(range(start, min(start + 10, 6000)))
        assert [p["index"] for p in page["data"]] == expected
        assert [p["data"]["step"] for p in page["data"]] == expected


def test_read_metrics_of_an_empty_or_unknown_stream(opened: Store) -> None:
    page = opened.read_metrics(PREFIX, "never", 0, 10)
    assert page["data"] == []
    assert (page["total"], page["hasMore"]) == (0, False)


def test_metric_stats(opened: Store) -> None:
    opened.append_metrics(PREFIX, "train", points(0, 4, t0=500.0))
    opened.append_metrics(PREFIX, "train", points(4, 3, t0=500.0))
    stats = opened.metric_stats(PREFIX, "train")
    assert stats["name"] == "train"
    assert stats["totalDataPoints"] == 7 and type(stats["totalDataPoints"]) is int
    assert (stats["firstDataAt"], stats["lastDataAt"]) == (500.0, 506.0)
    empty = opened.metric_stats(PREFIX, "never")
    assert empty["totalDataPoints"] == 0
    assert empty["firstDataAt"] is None and empty["lastDataAt"] is None


def test_list_metrics(opened: Store) -> None:
    assert opened.list_metrics(PREFIX) == []
    opened.append_metrics(PREFIX, "train", points(0, 3))
    opened.append_metrics(PREFIX, "train/grad", points(0, 1))
    opened.append_metrics(PREFIX, "eval", points(0, 2))
    counts = {s["name"]: s["totalDataPoints"] for s in opened.list_metrics(PREFIX)}
    assert counts == {"train": 3, "train/grad": 1, "eval": 2}


def test_metrics_persist_for_another_store_over_the_same_storage(kit: StoreKit) -> None:
    kit.store.open_experiment(info())
    kit.store.append_metrics(PREFIX, "train", points(0, 3))
    kit.store.sync(PREFIX)
    other = kit.reopen()
    assert [p["index"] for p in other.read_metrics(PREFIX, "train", 0, 10)["data"]] == [0, 1, 2]
    assert other.append_metrics(PREFIX, "train", points(3, 1)).first == 3


# -- logs ---------------------------------------------------------------------------------

LEVELS = ["debug", "info", "warn", "error", "fatal", "info", "warn", "info"]


def _logs(store: Store) -> None:
    records = [
        LogRecord(2000.0 + i, level, f"message {i} {'NaN seen' if i % 3 == 0 else 'ok'}", {"i": i})
        for i, level in enumerate(LEVELS)
    ]
    assert store.append_logs(PREFIX, records[:5]).first == 0
    assert store.append_logs(PREFIX, records[5:]).first == 5


def test_append_logs_returns_first_sequence_number_and_query_returns_all_in_order(opened: Store) -> None:
    _logs(opened)
    page = opened.query_logs(PREFIX, {})
    assert [r["sequenceNumber"] for r in page["logs"]] == list(range(8))
    assert [r["level"] for r in page["logs"]] == LEVELS
    assert page["logs"][2]["metadata"] == {"i": 2}
    assert page["logs"][2]["message"] == "message 2 ok"
    assert (page["total"], page["hasMore"]) == (8, False)


def test_append_logs_with_a_repeated_batch_id_stores_it_once(opened: Store) -> None:
    records = [LogRecord(1.0, "info", "a", None), LogRecord(2.0, "info", "b", None)]
    assert opened.append_logs(PREFIX, records, batch_id="L-1") == AppendResult(0, len(records), False)
    assert opened.append_logs(PREFIX, records, batch_id="L-1") == AppendResult(0, len(records), True)
    assert opened.append_logs(PREFIX, [LogRecord(3.0, "info", "c", None)], batch_id="L-2").first == 2
    assert [r["message"] for r in opened.query_logs(PREFIX, {})["logs"]] == ["a", "b", "c"]


def test_query_logs_filters_by_levels(opened: Store) -> None:
    _logs(opened)
    page = opened.query_logs(PREFIX, {"levels": ["warn", "fatal"]})
    assert [r["sequenceNumber"] for r in page["logs"]] == [2, 4, 6]
    assert page["total"] == 3


def test_query_logs_filters_by_time_range_inclusive(opened: Store) -> None:
    _logs(opened)
    page = opened.query_logs(PREFIX, {"start_time": 2002.0, "end_time": 2005.0})
    assert [r["sequenceNumber"] for r in page["logs"]] == [2, 3, 4, 5]
    assert [r["sequenceNumber"] for r in opened.query_logs(PREFIX, {"start_time": 2006.5})["logs"]] == [7]


def test_query_logs_searches_text_case_insensitively(opened: Store) -> None:
    _logs(opened)
    page = opened.query_logs(PREFIX, {"search": "nan SEEN"})
    assert [r["sequenceNumber"] for r in page["logs"]] == [0, 3, 6]
    both = opened.query_logs(PREFIX, {"search": "nan", "levels": ["warn"]})
    assert [r["sequenceNumber"] for r in both["logs"]] == [6]


def test_query_logs_pages_and_orders(opened: Store) -> None:
    _logs(opened)
    page = opened.query_logs(PREFIX, {"offset": 2, "limit": 3})
    assert [r["sequenceNumber"] for r in page["logs"]] == [2, 3, 4]
    assert (page["total"], page["offset"], page["limit"], page["hasMore"]) == (8, 2, 3, True)
    newest = opened.query_logs(PREFIX, {"descending": True, "limit": 2})
    assert [r["sequenceNumber"] for r in newest["logs"]] == [7, 6]
    filtered = opened.query_logs(PREFIX, {"levels": ["info"], "offset": 1, "limit": 1, "descending": True})
    assert [r["sequenceNumber"] for r in filtered["logs"]] == [5]
    assert (filtered["total"], filtered["hasMore"]) == (3, True)


def test_query_logs_of_an_experiment_without_logs(opened: Store) -> None:
    page = opened.query_logs(PREFIX, {"levels": ["info"]})
    assert (page["logs"], page["total"], page["hasMore"]) == ([], 0, False)



def _mixed_logs(store: Store) -> list[dict[str, Any]]:
    """40 lines of every level, their times going back now and then (two writers' clocks)."""
    levels = ["debug", "info", "warn", "error", "fatal"]
    records = [
        LogRecord(3000.0 + (i % 7) * 10 + i * 0.5, levels[(i * 3) % 5], f"line {i} {'odd' if i % 2 else 'even'}", None)
        for i in range(40)
    ]
    store.append_logs(PREFIX, records[:25])
    store.append_logs(PREFIX, records[25:])
    return store.query_logs(PREFIX, {"limit": 100})["logs"]


def test_query_logs_level_time_search_and_order_agree_with_filtering_every_line(opened: Store) -> None:
    every = _mixed_logs(opened)
    queries: list[dict[str, Any]] = [
        {"levels": ["error"], "descending": True, "limit": 3},
        {"levels": ["info", "fatal"], "offset": 2, "limit": 4},
        {"levels": ["warn", "debug"], "offset": 3, "limit": 2, "descending": True},
        {"start_time": 3020.0, "end_time": 3045.0, "limit": 5, "offset": 1},
        {"start_time": 3030.0, "descending": True, "limit": 4},
        {"levels": ["debug", "error"], "end_time": 3040.0, "limit": 100},
        {"search": "ODD", "levels": ["info", "warn"], "descending": True, "limit": 3, "offset": 1},
        {"search": "line 3", "start_time": 3010.0, "limit": 100},
        {"levels": ["error"], "offset": 100},
        {"descending": True, "offset": 38, "limit": 5},
    ]
    for query in queries:
        wanted = [
            r["sequenceNumber"]
            for r in every
            if (not query.get("levels") or r["level"] in query["levels"])
            and query.get("start_time", -math.inf) <= r["ts"] <= query.get("end_time", math.inf)
            and query.get("search", "").lower() in r["message"].lower()
        ]
        if query.get("descending"):
            wanted.reverse()
        offset, limit = query.get("offset", 0), query.get("limit", 100)
        page = opened.query_logs(PREFIX, query)  # type: ignore[arg-type]
        assert [r["sequenceNumber"] for r in page["logs"]] == wanted[offset : offset + limit], query
        assert (page["total"], page["hasMore"]) == (len(wanted), offset + limit < len(wanted)), query

# -- tracks -------------------------------------------------------------------------------


def test_append_tracks_and_read_in_time_order(opened: Store) -> None:
    assert opened.append_tracks(
        PREFIX, "robot/position", [{"timestamp": 2.0, "x": 2.0}, {"timestamp": 3.0, "x": 3.0}]
    ) == AppendResult(None, 2, False)
    opened.append_tracks(PREFIX, "robot/position", [{"timestamp": 1.0, "x": 1.0}])
    assert opened.read_tracks(PREFIX, "robot/position") == [
        {"timestamp": 1.0, "x": 1.0},
        {"timestamp": 2.0, "x": 2.0},
        {"timestamp": 3.0, "x": 3.0},
    ]


def test_read_tracks_merges_entries_with_the_same_timestamp(opened: Store) -> None:
    opened.append_tracks(PREFIX, "pose", [{"timestamp": 5.0, "x": 1.0}, {"timestamp": 5.0, "y": 2.0}])
    opened.append_tracks(PREFIX, "pose", [{"timestamp": 5.0, "x": 9.0, "z": 3.0}, {"timestamp": 6.0, "x": 0.0}])
    assert opened.read_tracks(PREFIX, "pose") == [
        {"timestamp": 5.0, "x": 9.0, "y": 2.0, "z": 3.0},
        {"timestamp": 6.0, "x": 0.0},
    ]


def test_read_tracks_time_range_and_columns(opened: Store) -> None:
    opened.append_tracks(PREFIX, "pose", [{"timestamp": float(t), "x": t, "y": -t} for t in range(10)])
    assert [e["timestamp"] for e in opened.read_tracks(PREFIX, "pose", 3.0, 5.0)] == [3.0, 4.0, 5.0]
    assert [e["timestamp"] for e in opened.read_tracks(PREFIX, "pose", start_timestamp=8.0)] == [8.0, 9.0]
    assert [e["timestamp"] for e in opened.read_tracks(PREFIX, "pose", end_timestamp=1.0)] == [0.0, 1.0]
    assert opened.read_tracks(PREFIX, "pose", 2.0, 3.0, columns=["y"]) == [
        {"timestamp": 2.0, "y": -2},
        {"timestamp": 3.0, "y": -3},
    ]


def test_append_tracks_with_a_repeated_batch_id_stores_it_once(opened: Store) -> None:
    first = opened.append_tracks(PREFIX, "pose", [{"timestamp": 1.0, "x": 1}], batch_id="T-1")
    again = opened.append_tracks(PREFIX, "pose", [{"timestamp": 1.0, "x": 1}], batch_id="T-1")
    assert (first.duplicate, again.duplicate, again.count) == (False, True, 1)
    opened.append_tracks(PREFIX, "pose", [{"timestamp": 2.0, "x": 2}], batch_id="T-2")
    assert opened.read_tracks(PREFIX, "pose") == [{"timestamp": 1.0, "x": 1}, {"timestamp": 2.0, "x": 2}]
    info_ = {t["topic"]: t for t in opened.list_tracks(PREFIX)}["pose"]
    assert info_["totalEntries"] == 2


def test_empty_appends_store_nothing_and_say_so(opened: Store) -> None:
    assert opened.append_metrics(PREFIX, "train", []) == AppendResult(None, 0, False)
    assert opened.append_logs(PREFIX, []) == AppendResult(None, 0, False)
    assert opened.append_tracks(PREFIX, "pose", []) == AppendResult(None, 0, False)
    assert opened.metric_stats(PREFIX, "train")["totalDataPoints"] == 0
    assert opened.append_metrics(PREFIX, "train", points(0, 1)).first == 0


def test_describe_stream_is_accepted_and_keeps_the_data(opened: Store) -> None:
    opened.append_metrics(PREFIX, "train", points(0, 2))
    opened.describe_stream(PREFIX, "train", StreamDescription("loss per step", ("core",), {"unit": "nats"}))
    opened.describe_stream(PREFIX, "train", StreamDescription("loss per batch", (), {}))
    assert opened.metric_stats(PREFIX, "train")["totalDataPoints"] == 2
    assert [p["index"] for p in opened.read_metrics(PREFIX, "train")["data"]] == [0, 1]


def test_read_tracks_of_an_unknown_topic_is_empty(opened: Store) -> None:
    assert opened.read_tracks(PREFIX, "never") == []


def test_list_tracks(opened: Store) -> None:
    opened.append_tracks(PREFIX, "robot/position", [{"timestamp": 1.0, "x": 1}, {"timestamp": 4.0, "x": 2}])
    opened.append_tracks(PREFIX, "camera", [{"timestamp": 2.0, "frame": 1}])
    listed = {t["topic"]: t for t in opened.list_tracks(PREFIX)}
    assert set(listed) == {"robot/position", "camera"}
    assert listed["robot/position"]["totalEntries"] == 2
    assert (listed["robot/position"]["firstTimestamp"], listed["robot/position"]["lastTimestamp"]) == (1.0, 4.0)



def test_read_tracks_pages_by_limit_and_after_like_one_read(opened: Store) -> None:
    """Out-of-order appends and equal timestamps across batches: the pages, put together,
    are the whole read, and no page splits the entries of one timestamp."""
    opened.append_tracks(PREFIX, "pose", [{"timestamp": float(t), "x": t} for t in (5, 1, 3, 3, 9)])
    opened.append_tracks(PREFIX, "pose", [{"timestamp": 3.0, "y": 30}, {"timestamp": 2.0, "x": 2}, {"timestamp": 7.0}])
    whole = opened.read_tracks(PREFIX, "pose")
    assert [e["timestamp"] for e in whole] == [1.0, 2.0, 3.0, 5.0, 7.0, 9.0]
    assert whole[2] == {"timestamp": 3.0, "x": 3, "y": 30}
    for limit in (1, 2, 4, 6, 100):
        pages, after = [], None
        while True:
            page = opened.read_tracks(PREFIX, "pose", limit=limit, after=after)
            assert len(page) <= limit
            pages.extend(page)
            if len(page) < limit:
                break
            after = page[-1]["timestamp"]
        assert pages == whole, limit
    assert opened.read_tracks(PREFIX, "pose", 2.0, 7.0, ["y"], limit=2, after=2.0) == [
        {"timestamp": 3.0, "y": 30},
        {"timestamp": 5.0},
    ]
    assert opened.read_tracks(PREFIX, "pose", limit=0) == []
    assert opened.read_tracks(PREFIX, "pose", after=9.0) == []
    assert opened.read_tracks(PREFIX, "never", limit=5) == []


def test_list_tracks_counts_merged_entries_after_out_of_order_appends(opened: Store) -> None:
    opened.append_tracks(PREFIX, "pose", [{"timestamp": 1.0, "x": 1}, {"timestamp": 3.0, "x": 3}])
    assert {t["topic"]: t["totalEntries"] for t in opened.list_tracks(PREFIX)} == {"pose": 2}
    opened.append_tracks(PREFIX, "pose", [{"timestamp": 2.0, "x": 2}, {"timestamp": 3.0, "y": 3}])
    opened.append_tracks(PREFIX, "pose", [{"timestamp": 0.5, "x": 0}, {"timestamp": 4.0, "x": 4}])
    (listed,) = opened.list_tracks(PREFIX)
    assert (listed["totalEntries"], listed["firstTimestamp"], listed["lastTimestamp"]) == (5, 0.5, 4.0)

# -- values -------------------------------------------------------------------------------


def test_non_finite_floats_and_big_ints_round_trip_everywhere(kit: StoreKit) -> None:
    store = kit.store
    store.open_experiment(info())
    store.set_params(PREFIX, dict(ODD))
    store.append_metrics(PREFIX, "odd", [{**ODD, "_ts": 1.0}, {"plain": 1, "_ts": 2.0}])
    store.append_logs(PREFIX, [LogRecord(3.0, "info", "odd", dict(ODD))])
    store.append_tracks(PREFIX, "odd", [{"timestamp": 4.0, **ODD}])
    store.sync(PREFIX)
    for reader in (store, kit.reopen()):
        assert same(reader.get_params(PREFIX).data, ODD)
        page = reader.read_metrics(PREFIX, "odd", 0, 10)
        assert same(user(page["data"][0]), ODD)
        assert same(user(page["data"][1]), {"plain": 1})
        assert same(reader.query_logs(PREFIX, {})["logs"][0]["metadata"], ODD)
        (entry,) = reader.read_tracks(PREFIX, "odd")
        assert entry.pop("timestamp") == 4.0
        assert same(entry, ODD)


def test_experiment_metadata_keeps_non_finite_floats_and_big_ints(kit: StoreKit) -> None:
    kit.store.open_experiment(info(metadata={"odd": dict(ODD)}))
    kit.store.update_experiment(PREFIX, metadata={"odd": dict(ODD), "best": math.inf})
    kit.store.sync(PREFIX)
    for reader in (kit.store, kit.reopen()):
        got = reader.get_experiment(PREFIX)
        assert got is not None
        assert same(got.metadata, {"odd": ODD, "best": math.inf}), got.metadata


def test_sync_and_close_keep_everything_readable(kit: StoreKit) -> None:
    kit.store.open_experiment(info())
    kit.store.append_metrics(PREFIX, "train", points(0, 2))
    kit.store.append_logs(PREFIX, [LogRecord(1.0, "info", "x", None)])
    kit.store.sync(PREFIX)
    kit.store.close()
    other = kit.reopen()
    assert other.metric_stats(PREFIX, "train")["totalDataPoints"] == 2
    assert other.query_logs(PREFIX, {})["total"] == 1
