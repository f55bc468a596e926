"""MongoStore reads of logs and tracks follow the page: the indexes they need exist, a
track page stops its cursor at the page's end, and (against a real MongoDB, whose
``explain`` reports plan stages) level pages are answered from an index scan."""

from __future__ import annotations

from typing import Any

import pytest

from ml_dash.records import ExperimentInfo, LogRecord

from .services import Place

PREFIX = "alice/reads/run-1"


def info() -> ExperimentInfo:
    return ExperimentInfo(prefix=PREFIX, owner="alice", project="reads", name="run-1")


def _stages(plan: Any) -> list[str]:
    """Every ``stage`` named in a MongoDB query plan (nested dicts and lists)."""
    found: list[str] = []
    if isinstance(plan, dict):
        if isinstance(plan.get("stage"), str):
            found.append(plan["stage"])
        for value in plan.values():
            found += _stages(value)
    elif isinstance(plan, list):
        for value in plan:
            found += _stages(value)
    return found


def test_level_pages_by_sequence_have_their_index(place: Place) -> None:
    store = place.store()
    store.open_experiment(info())
    store.append_logs(PREFIX, [LogRecord(1.0, "info", "x", None)])
    keys = {tuple(k for k, _ in spec["key"]) for spec in store.logs.index_information().values()}
    assert ("exp", "level", "seq") in keys


def test_level_pages_newest_first_are_an_index_scan_on_a_real_mongodb(place: Place) -> None:
    store = place.store()
    store.open_experiment(info())
    store.append_logs(PREFIX, [LogRecord(float(i), ("info", "error")[i % 10 == 0], f"m{i}", None) for i in range(300)])
    plan = store.logs.find({"exp": PREFIX, "level": {"$in": ["error", "warn"]}}).sort("seq", -1).limit(10).explain()
    stages = _stages(plan.get("queryPlanner", {}).get("winningPlan"))
    if not stages:
        pytest.skip("this MongoDB-protocol server does not report plan stages (the emulator scans its table)")
    assert "IXSCAN" in stages and "COLLSCAN" not in stages and "SORT" not in stages, stages
    page = store.query_logs(PREFIX, {"levels": ["error"], "descending": True, "limit": 3})
    assert [r["sequenceNumber"] for r in page["logs"]] == [290, 280, 270] and page["total"] == 30


def test_a_track_page_reads_only_up_to_its_last_timestamp(place: Place) -> None:
    store = place.store()
    store.open_experiment(info())
    store.append_tracks(PREFIX, "pose", [{"timestamp": float(t % 50), "n": t} for t in range(200)])
    page = store.read_tracks(PREFIX, "pose", limit=3, after=10.0)
    assert [e["timestamp"] for e in page] == [11.0, 12.0, 13.0]
    assert page[0]["n"] == 161  # the last of the four lines at 11.0 wins
    walked: list[dict[str, Any]] = []
    after = None
    while True:
        chunk = store.read_tracks(PREFIX, "pose", limit=7, after=after)
        walked += chunk
        if len(chunk) < 7:
            break
        after = chunk[-1]["timestamp"]
    assert walked == store.read_tracks(PREFIX, "pose")
