"""The HTTP API over a real LocalStore: every route's happy path and its error shapes."""

from __future__ import annotations

import errno
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_dash import Experiment
from ml_dash.errors import StorageError
from ml_dash.records import StreamDescription
from ml_dash.server import create_app
from ml_dash.stores.local import LocalStore
from support.app import PREFIX, AppClient, app_client
from support.processes import running

Q = {"prefix": PREFIX}


@pytest.fixture
def client_store(dash_root: Path) -> Iterator[tuple[AppClient, LocalStore]]:
    client, store = app_client(dash_root)
    yield client, store
    client.close()
    store.close()


@pytest.fixture
def client(client_store: tuple[AppClient, LocalStore]) -> AppClient:
    return client_store[0]


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == code
    assert body["message"]
    return str(body["message"])


def open_run(client: AppClient, prefix: str = PREFIX, **fields: Any) -> Any:
    return ok(client.post("/api/v1/experiment/open", json={"prefix": prefix, **fields}))


# -- health and description ----------------------------------------------------------------


def test_health_answers_status_version_and_backend(client: AppClient) -> None:
    assert ok(client.get("/health")) == {"status": "ok", "version": "0.1.0", "backend": "local"}


def test_openapi_describes_every_route_with_its_body_and_answer_schemas(client: AppClient) -> None:
    doc = ok(client.get("/openapi.json"))
    routes = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert routes == {
        ("GET", "/health"),
        ("POST", "/api/v1/experiment/open"), ("POST", "/api/v1/experiment/update"),
        ("POST", "/api/v1/experiment/claim"), ("POST", "/api/v1/experiment/release"),
        ("GET", "/api/v1/experiment"), ("GET", "/api/v1/experiments"),
        ("POST", "/api/v1/params"), ("GET", "/api/v1/params"),
        ("POST", "/api/v1/metrics/append"), ("POST", "/api/v1/metrics/describe"), ("GET", "/api/v1/metrics/read"),
        ("GET", "/api/v1/metrics/stats"), ("GET", "/api/v1/metrics/list"),
        ("POST", "/api/v1/logs/append"), ("GET", "/api/v1/logs"),
        ("POST", "/api/v1/tracks/append"), ("GET", "/api/v1/tracks/read"), ("GET", "/api/v1/tracks/list"),
        ("GET", "/api/v1/metrics/series"), ("GET", "/api/v1/metrics/fields"), ("GET", "/api/v1/runs"),
        ("GET", "/api/v1/events"),
    }
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # errors are {code, message}, not FastAPI's shape
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            content = op["responses"]["200"]["content"]
            if path == "/api/v1/events":
                assert set(content) == {"text/event-stream"}
            else:
                assert content["application/json"]["schema"]["$ref"].split("/")[-1] in schemas, (method, path)
            if method == "post":
                body = op["requestBody"]["content"]["application/json"]["schema"]
                assert body["$ref"].split("/")[-1] in schemas
            if path.startswith("/api/"):
                assert op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    assert schemas["MetricsAppendBody"]["required"] == ["batchId", "points"]
    assert schemas["MetricsAppendBody"]["additionalProperties"] is False


# -- experiments ---------------------------------------------------------------------------


def test_open_creates_the_experiment_folder_and_a_second_open_resumes_it(
    client: AppClient, dash_root: Path
) -> None:
    first = open_run(client, tags=["a"], metadata={"k": 1}, description="first")
    assert first["owner"] == "alice" and first["project"] == "proj" and first["name"] == "run-1"
    assert first["status"] == "RUNNING"
    assert (dash_root / "alice/proj/run-1/experiment.json").is_file()
    again = open_run(client, metadata={"j": 2})
    assert again["createdAt"] == pytest.approx(first["createdAt"], abs=1e-5)
    assert again["tags"] == ["a"] and again["metadata"] == {"k": 1, "j": 2} and again["description"] == "first"


def test_open_with_folders_in_the_prefix(client: AppClient) -> None:
    info = open_run(client, "alice/proj/sweep/lr-3/run-7", folders=["sweep", "lr-3"])
    assert info["folders"] == ["sweep", "lr-3"] and info["name"] == "run-7"


def test_open_refuses_body_fields_that_contradict_the_prefix(client: AppClient, dash_root: Path) -> None:
    response = client.post("/api/v1/experiment/open", json={"prefix": PREFIX, "owner": "bob"})
    assert "owner 'bob'" in refused(response, 422, "invalid_value")
    refused(client.post("/api/v1/experiment/open", json={"prefix": PREFIX, "status": "DONE"}), 422, "invalid_value")
    refused(client.post("/api/v1/experiment/open", json={"prefix": PREFIX, "createdAt": -5}), 422, "invalid_value")
    assert not dash_root.exists()


def test_update_changes_the_stored_experiment(client: AppClient) -> None:
    open_run(client)
    updated = ok(client.post("/api/v1/experiment/update", params=Q,
                             json={"status": "COMPLETED", "endedAt": 1_800_000_000.5, "tags": ["done"]}))
    assert updated["status"] == "COMPLETED" and updated["tags"] == ["done"]
    assert updated["endedAt"] == pytest.approx(1_800_000_000.5, abs=1e-5)
    assert ok(client.get("/api/v1/experiment", params=Q))["status"] == "COMPLETED"


def test_update_of_a_missing_experiment_is_404_and_creates_no_folder(client: AppClient, dash_root: Path) -> None:
    response = client.post("/api/v1/experiment/update", params=Q, json={"status": "FAILED"})
    refused(response, 404, "not_found")
    assert not dash_root.exists()


def test_update_refuses_unknown_fields_and_bad_status(client: AppClient) -> None:
    open_run(client)
    refused(client.post("/api/v1/experiment/update", params=Q, json={"colour": "red"}), 400, "bad_request")
    refused(client.post("/api/v1/experiment/update", params=Q, json={"status": "PAUSED"}), 422, "invalid_value")


def test_get_experiment_answers_the_stored_one_or_404(client: AppClient) -> None:
    refused(client.get("/api/v1/experiment", params=Q), 404, "not_found")
    open_run(client, description="d")
    assert ok(client.get("/api/v1/experiment", params=Q))["description"] == "d"


def test_list_experiments_filters_by_owner_and_project(client: AppClient) -> None:
    for prefix in ("alice/proj/a", "alice/proj/b", "alice/other/c", "bob/proj/d"):
        open_run(client, prefix)

    def prefixes(**query: str) -> list[str]:
        return [e["prefix"] for e in ok(client.get("/api/v1/experiments", params=query))["experiments"]]

    assert prefixes() == ["alice/other/c", "alice/proj/a", "alice/proj/b", "bob/proj/d"]
    assert prefixes(owner="alice") == ["alice/other/c", "alice/proj/a", "alice/proj/b"]
    assert prefixes(owner="alice", project="proj") == ["alice/proj/a", "alice/proj/b"]


def test_an_experiment_logged_locally_with_the_sdk_is_served(client: AppClient, dash_root: Path) -> None:
    with Experiment(prefix="alice/proj/sdk-run", dash_root=dash_root).run as exp:
        exp.params.set(lr=0.1)
        exp.metrics("train").log(loss=0.5, step=0)
        exp.log("hello", level="info")
        exp.tracks("pos").append(x=1.0, _ts=10.0)
    q = {"prefix": "alice/proj/sdk-run"}
    assert ok(client.get("/api/v1/experiment", params=q))["status"] == "COMPLETED"
    assert ok(client.get("/api/v1/params", params=q))["data"] == {"lr": 0.1}
    page = ok(client.get("/api/v1/metrics/read", params={**q, "name": "train"}))
    assert [(p["index"], p["data"]["loss"]) for p in page["data"]] == [(0, 0.5)]
    assert [line["message"] for line in ok(client.get("/api/v1/logs", params=q))["logs"]] == ["hello"]
    assert ok(client.get("/api/v1/tracks/read", params={**q, "topic": "pos"}))["entries"] == [
        {"timestamp": 10.0, "x": 1.0}
    ]


# -- params --------------------------------------------------------------------------------


def test_params_merge_flatten_and_carry_non_finite_values_both_ways(client: AppClient) -> None:
    open_run(client)
    first = ok(client.post("/api/v1/params", params=Q, json={"params": {"lr": 0.1, "model": {"depth": 50}}}))
    assert first["version"] == 1 and first["data"] == {"lr": 0.1, "model.depth": 50}
    body = {"params": {"clip": None, "floor": None}, "nonFinite": {"/clip": "Infinity", "/floor": "-Infinity"}}
    second = ok(client.post("/api/v1/params", params=Q, json=body))
    assert second["version"] == 2
    assert second["nonFinite"] == {"/clip": "Infinity", "/floor": "-Infinity"}
    stored = ok(client.get("/api/v1/params", params=Q))
    assert stored["data"] == {"lr": 0.1, "model.depth": 50, "clip": None, "floor": None}
    assert stored["nonFinite"] == {"/clip": "Infinity", "/floor": "-Infinity"}


def test_params_of_an_experiment_without_params_are_empty(client: AppClient) -> None:
    assert ok(client.get("/api/v1/params", params=Q))["data"] == {}


# -- metrics -------------------------------------------------------------------------------


def append_metrics(client: AppClient, batch: str, points: list[Any], name: str = "train/loss",
                   **extra: Any) -> httpx.Response:
    return client.post("/api/v1/metrics/append", params={**Q, "name": name},
                       json={"batchId": batch, "points": points, **extra})


def test_metrics_round_trip_with_nan_and_infinities(client: AppClient, client_store: Any) -> None:
    store: LocalStore = client_store[1]
    open_run(client)
    answer = ok(append_metrics(client, "b-1", [{"loss": None, "_ts": 1.0}, {"loss": 0.5, "acc": None, "_ts": 2.0}],
                               nonFinite={"/0/loss": "NaN", "/1/acc": "-Infinity"}))
    assert answer == {"firstIndex": 0, "count": 2, "duplicate": False}
    stored = store.read_metrics(PREFIX, "train/loss")["data"]
    assert math.isnan(stored[0]["data"]["loss"]) and stored[1]["data"]["acc"] == -math.inf
    page = ok(client.get("/api/v1/metrics/read", params={**Q, "name": "train/loss"}))
    assert page["data"] == [{"index": 0, "data": {"loss": None, "_ts": 1.0}},
                            {"index": 1, "data": {"loss": 0.5, "acc": None, "_ts": 2.0}}]
    assert page["nonFinite"] == {"/0/data/loss": "NaN", "/1/data/acc": "-Infinity"}
    assert (page["total"], page["startIndex"], page["endIndex"], page["hasMore"]) == (2, 0, 1, False)


def test_metric_points_without_ts_get_the_server_time(client: AppClient) -> None:
    before = time.time()
    ok(append_metrics(client, "b-1", [{"loss": 1}]))
    point = ok(client.get("/api/v1/metrics/read", params={**Q, "name": "train/loss"}))["data"][0]["data"]
    assert point["loss"] == 1 and point["_ts"] >= before


def test_a_resent_metrics_batch_is_stored_once_and_answered_as_duplicate(client: AppClient) -> None:
    points = [{"loss": 1.0, "_ts": 1.0}, {"loss": 2.0, "_ts": 2.0}]
    assert ok(append_metrics(client, "b-1", points))["duplicate"] is False
    assert ok(append_metrics(client, "b-2", points))["firstIndex"] == 2
    again = ok(append_metrics(client, "b-1", points))
    assert again == {"firstIndex": 0, "count": 2, "duplicate": True}
    assert ok(client.get("/api/v1/metrics/stats", params={**Q, "name": "train/loss"}))["totalDataPoints"] == 4


def test_metrics_read_pages_stats_and_list(client: AppClient) -> None:
    ok(append_metrics(client, "b-1", [{"v": i, "_ts": 100.0 + i} for i in range(10)]))
    ok(append_metrics(client, "e-1", [{"acc": 0.9, "_ts": 50.0}], name="eval"))
    page = ok(client.get("/api/v1/metrics/read", params={**Q, "name": "train/loss", "start_index": 7, "limit": 2}))
    assert [p["index"] for p in page["data"]] == [7, 8] and page["hasMore"] is True and "nonFinite" not in page
    stats = ok(client.get("/api/v1/metrics/stats", params={**Q, "name": "train/loss"}))
    assert stats == {"name": "train/loss", "totalDataPoints": 10, "firstDataAt": 100.0, "lastDataAt": 109.0}
    listed = ok(client.get("/api/v1/metrics/list", params=Q))["metrics"]
    assert [(m["name"], m["totalDataPoints"]) for m in listed] == [("eval", 1), ("train/loss", 10)]
    unknown = ok(client.get("/api/v1/metrics/stats", params={**Q, "name": "nope"}))
    assert unknown["totalDataPoints"] == 0


def test_metrics_read_limit_over_100000_is_invalid_value(client: AppClient) -> None:
    response = client.get("/api/v1/metrics/read", params={**Q, "name": "m", "limit": 100_001})
    assert "limit" in refused(response, 422, "invalid_value")
    refused(client.get("/api/v1/metrics/read", params={**Q, "name": "m", "start_index": -1}), 422, "invalid_value")


class DescribingStore(LocalStore):
    """A LocalStore that also keeps the stream descriptions it was given."""

    described: list[tuple[str, str, StreamDescription]]

    def describe_stream(self, prefix: str, name: str, description: StreamDescription) -> None:
        self.described.append((prefix, name, description))
        super().describe_stream(prefix, name, description)


def test_describe_stream_hands_description_tags_and_metadata_to_the_store(dash_root: Path) -> None:
    store = DescribingStore(dash_root)
    store.described = []
    client = AppClient(create_app(store))
    try:
        open_run(client)
        body = {"description": "training loss", "tags": ["loss", "train"],
                "metadata": {"unit": "nats", "floor": None}, "nonFinite": {"/floor": "-Infinity"}}
        answer = ok(client.post("/api/v1/metrics/describe", params={**Q, "name": "train/loss"}, json=body))
        assert answer == body
        assert store.described == [
            (PREFIX, "train/loss", StreamDescription("training loss", ("loss", "train"),
                                                     {"unit": "nats", "floor": -math.inf}))
        ]
        stored = json.loads((dash_root / PREFIX / "metrics/train/loss/metadata.json").read_text())
        assert (stored["description"], stored["tags"]) == ("training loss", ["loss", "train"])
        again = ok(client.post("/api/v1/metrics/describe", params={**Q, "name": "train/loss"}, json={}))
        assert again == {"description": None, "tags": [], "metadata": {}}
        assert store.described[-1][2] == StreamDescription()
    finally:
        client.close()


def test_describe_stream_refuses_bad_bodies_and_names(client: AppClient, dash_root: Path) -> None:
    def describe(name: str, body: Any) -> httpx.Response:
        return client.post("/api/v1/metrics/describe", params={**Q, "name": name}, json=body)

    refused(describe("train", {"colour": "red"}), 400, "bad_request")
    refused(describe("train", {"tags": "one"}), 400, "bad_request")
    refused(describe("../up", {}), 400, "invalid_name")
    nested: Any = {}
    for _ in range(40):
        nested = {"n": nested}
    refused(describe("train", {"metadata": nested}), 422, "invalid_value")
    refused(describe("train", {"metadata": {"x": None}, "nonFinite": {"/x": "Big"}}), 422, "invalid_value")
    assert not dash_root.exists()

# -- logs ----------------------------------------------------------------------------------


def append_logs(client: AppClient, batch: str, records: list[Any], **extra: Any) -> httpx.Response:
    return client.post("/api/v1/logs/append", params=Q, json={"batchId": batch, "records": records, **extra})


def test_logs_append_normalises_levels_and_queries_filter_and_page(client: AppClient) -> None:
    records = [
        {"ts": 10.0, "level": "INFO", "message": "start", "metadata": None},
        {"ts": 11.0, "level": "warning", "message": "Loss spiked", "metadata": {"loss": None}},
        {"ts": 12.0, "level": "error", "message": "boom", "metadata": {"code": 3}},
    ]
    answer = ok(append_logs(client, "l-1", records, nonFinite={"/1/metadata/loss": "Infinity"}))
    assert answer == {"firstSequence": 0, "count": 3, "duplicate": False}
    everything = ok(client.get("/api/v1/logs", params=Q))
    assert [(r["level"], r["message"]) for r in everything["logs"]] == [
        ("info", "start"), ("warn", "Loss spiked"), ("error", "boom")
    ]
    assert everything["nonFinite"] == {"/1/metadata/loss": "Infinity"}
    warned = ok(client.get("/api/v1/logs", params={**Q, "level": ["warn", "ERROR"]}))
    assert [r["message"] for r in warned["logs"]] == ["Loss spiked", "boom"]
    timed = ok(client.get("/api/v1/logs", params={**Q, "start_time": 11.0, "end_time": 11.5}))
    assert [r["message"] for r in timed["logs"]] == ["Loss spiked"] and timed["nonFinite"] == {
        "/0/metadata/loss": "Infinity"
    }
    found = ok(client.get("/api/v1/logs", params={**Q, "search": "SPIKE"}))
    assert [r["sequenceNumber"] for r in found["logs"]] == [1]
    newest = ok(client.get("/api/v1/logs", params={**Q, "descending": "true", "limit": 1}))
    assert [r["message"] for r in newest["logs"]] == ["boom"] and newest["hasMore"] is True


def test_a_resent_logs_batch_is_stored_once_and_answered_as_duplicate(client: AppClient) -> None:
    records = [{"ts": 1.0, "level": "info", "message": "m"}]
    ok(append_logs(client, "l-1", records))
    ok(append_logs(client, "l-2", records))
    assert ok(append_logs(client, "l-1", records)) == {"firstSequence": 0, "count": 1, "duplicate": True}
    assert ok(client.get("/api/v1/logs", params=Q))["total"] == 2


def test_log_records_with_bad_levels_or_times_are_invalid_values(client: AppClient, dash_root: Path) -> None:
    bad = [
        {"ts": 1.0, "level": "loud", "message": "m"},
        {"ts": -1.0, "level": "info", "message": "m"},
        {"ts": 1e300, "level": "info", "message": "m"},
    ]
    for record in bad:
        refused(append_logs(client, "l-1", [record]), 422, "invalid_value")
    nan_time = append_logs(client, "l-1", [{"ts": 0, "level": "info", "message": "m"}], nonFinite={"/0/ts": "NaN"})
    refused(nan_time, 422, "invalid_value")
    refused(client.get("/api/v1/logs", params={**Q, "level": "loud"}), 422, "invalid_value")
    assert not dash_root.exists()


# -- tracks --------------------------------------------------------------------------------


def append_tracks(client: AppClient, batch: str, entries: list[Any], topic: str = "robot/pos",
                  **extra: Any) -> httpx.Response:
    return client.post("/api/v1/tracks/append", params={**Q, "topic": topic},
                       json={"batchId": batch, "entries": entries, **extra})


def test_tracks_round_trip_merge_columns_and_list(client: AppClient) -> None:
    entries = [
        {"timestamp": 2.0, "x": 1.0, "pose": {"yaw": None}},
        {"timestamp": 1.0, "x": 0.0},
        {"timestamp": 2.0, "y": 5.0},
    ]
    answer = ok(append_tracks(client, "t-1", entries, nonFinite={"/0/pose/yaw": "NaN"}))
    assert answer == {"count": 3, "duplicate": False}
    read = ok(client.get("/api/v1/tracks/read", params={**Q, "topic": "robot/pos"}))
    assert read["entries"] == [{"timestamp": 1.0, "x": 0.0}, {"timestamp": 2.0, "x": 1.0, "pose.yaw": None, "y": 5.0}]
    assert read["nonFinite"] == {"/1/pose.yaw": "NaN"}
    some = ok(client.get("/api/v1/tracks/read", params={**Q, "topic": "robot/pos", "columns": "y",
                                                        "start_timestamp": 1.5}))
    assert some == {"entries": [{"timestamp": 2.0, "y": 5.0}]}
    listed = ok(client.get("/api/v1/tracks/list", params=Q))["tracks"]
    assert listed == [{"topic": "robot/pos", "totalEntries": 2, "firstTimestamp": 1.0, "lastTimestamp": 2.0}]


def test_a_resent_tracks_batch_is_stored_once(client: AppClient, dash_root: Path) -> None:
    entries = [{"timestamp": 1.0, "x": 1}, {"timestamp": 2.0, "x": 2}]
    ok(append_tracks(client, "t-1", entries))
    assert ok(append_tracks(client, "t-1", entries))["count"] == 2
    lines = (dash_root / "alice/proj/run-1/tracks/robot/pos/data.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_a_resent_tracks_batch_is_answered_as_duplicate(client: AppClient) -> None:
    entries = [{"timestamp": 1.0, "x": 1}]
    ok(append_tracks(client, "t-1", entries))
    assert ok(append_tracks(client, "t-1", entries))["duplicate"] is True


def test_track_entries_need_a_timestamp_and_no_reserved_fields(client: AppClient, dash_root: Path) -> None:
    refused(append_tracks(client, "t-1", [{"x": 1}]), 422, "invalid_value")
    refused(append_tracks(client, "t-1", [{"timestamp": "noon", "x": 1}]), 422, "invalid_value")
    refused(append_tracks(client, "t-1", [{"timestamp": True}]), 422, "invalid_value")
    refused(append_tracks(client, "t-1", [{"timestamp": 1.0, "_batchId": "x"}]), 422, "invalid_value")
    refused(append_tracks(client, "t-1", [{"timestamp": 1.0, "_nonFinite": {}}]), 422, "invalid_value")
    assert not dash_root.exists()


# -- malformed requests ----------------------------------------------------------------------


def test_missing_and_unparsable_query_parameters_are_bad_requests(client: AppClient) -> None:
    assert "'prefix' is required" in refused(client.get("/api/v1/experiment"), 400, "bad_request")
    assert "'name'" in refused(client.get("/api/v1/metrics/read", params=Q), 400, "bad_request")
    refused(client.get("/api/v1/metrics/read", params={**Q, "name": "m", "limit": "ten"}), 400, "bad_request")
    refused(client.get("/api/v1/logs", params={**Q, "start_time": "yesterday"}), 400, "bad_request")
    refused(client.get("/api/v1/logs", params={**Q, "descending": "maybe"}), 400, "bad_request")
    refused(client.get("/api/v1/tracks/read", params={**Q, "topic": "t", "end_timestamp": "nan"}), 422,
            "invalid_value")


def test_unknown_routes_and_methods_answer_in_the_error_shape(client: AppClient) -> None:
    refused(client.get("/api/v1/nothing"), 404, "not_found")
    response = client.request("DELETE", "/api/v1/params", params=Q)
    refused(response, 405, "bad_request")
    assert response.headers["allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_request"),
        (b"", 400, "bad_request"),
        (b"[]", 400, "bad_request"),
        (b'{"batchId": "b", "points": "many"}', 400, "bad_request"),
        (b'{"batchId": 7, "points": []}', 400, "bad_request"),
        (b'{"points": []}', 400, "bad_request"),
        (b'{"batchId": "b", "points": [], "extra": 1}', 400, "bad_request"),
        (b'{"batchId": "b", "points": [{"x": 1e999}]}', 400, "bad_request"),
        (b'{"batchId": "b", "points": [' + b"[" * 5000 + b"]" * 5000 + b"]}", 400, "bad_request"),
        (b'{"batchId": "b", "points": [{"x": ' + b"[" * 40 + b"]" * 40 + b"}]}", 422, "invalid_value"),
        (b'{"batchId": "b", "points": [{"x": 1, "_ts": 1' + b"0" * 400 + b"}]}", 422, "invalid_value"),
        (b'{"batchId": "b", "points": [{"x": 1, "_ts": "now"}]}', 422, "invalid_value"),
        (b'{"batchId": "b", "points": [{"x": 1, "_ts": -3}]}', 422, "invalid_value"),
        (b'{"batchId": "b", "points": [5]}', 400, "bad_request"),
        (b'{"batchId": "b", "points": [{"x": null}], "nonFinite": {"/0/x": "Huge"}}', 422, "invalid_value"),
        (b'{"batchId": "b", "points": [{"x": null}], "nonFinite": {"0/x": "NaN"}}', 422, "invalid_value"),
        (b'{"batchId": "b", "points": [{"x": null}], "nonFinite": {"/0": "NaN"}}', 422, "invalid_value"),
        (b'{"batchId": "no spaces", "points": []}', 422, "invalid_value"),
        (b'{"batchId": "' + b"b" * 65 + b'", "points": []}', 422, "invalid_value"),
        (b"\xff\xfe", 400, "bad_request"),
    ],
)
def test_malformed_metric_bodies_are_refused_and_store_nothing(
    client: AppClient, dash_root: Path, body: bytes, status: int, code: str
) -> None:
    response = client.post("/api/v1/metrics/append", params={**Q, "name": "m"}, content=body,
                           headers={"content-type": "application/json"})
    refused(response, status, code)
    assert not dash_root.exists()


def test_more_than_100000_items_in_one_append_is_too_large(client: AppClient, dash_root: Path) -> None:
    body = json.dumps({"batchId": "b", "points": [{}] * 100_001})
    response = client.post("/api/v1/metrics/append", params={**Q, "name": "m"}, content=body,
                           headers={"content-type": "application/json"})
    refused(response, 413, "too_large")
    assert not dash_root.exists()


def test_an_empty_append_stores_nothing_and_answers_no_first_index(client: AppClient, dash_root: Path) -> None:
    assert ok(append_metrics(client, "b-1", [])) == {"firstIndex": None, "count": 0, "duplicate": False}
    assert ok(append_logs(client, "l-1", [])) == {"firstSequence": None, "count": 0, "duplicate": False}
    assert ok(append_tracks(client, "t-1", [])) == {"count": 0, "duplicate": False}
    assert not (dash_root / "alice/proj/run-1/metrics").exists()


class FullDiskStore(LocalStore):
    """A LocalStore whose disk is full for params, which lets an OSError escape (a bug:
    stores translate their backend's errors), and with a bug in listing."""

    def set_params(self, prefix: str, flat: dict[str, Any]) -> Any:
        raise StorageError(f"cannot write {self.root}/{prefix}/parameters.json: [Errno 28] No space left on device")

    def get_params(self, prefix: str) -> Any:
        raise OSError(errno.EIO, "Input/output error", f"{self.root}/{prefix}/parameters.json")

    def list_experiments(self, owner: str | None = None, project: str | None = None) -> Any:
        raise KeyError("a bug")


def test_storage_trouble_is_503_and_bugs_are_500_without_server_paths(dash_root: Path) -> None:
    client = AppClient(create_app(FullDiskStore(dash_root)), raise_app_exceptions=False)
    try:
        message = refused(client.post("/api/v1/params", params=Q, json={"params": {"a": 1}}), 503, "storage_error")
        assert "retry later" in message and str(dash_root) not in message
        for response in (client.get("/api/v1/params", params=Q), client.get("/api/v1/experiments")):
            message = refused(response, 500, "error")
            assert "bug" in message and str(dash_root) not in message
    finally:
        client.close()


# -- a real server process -------------------------------------------------------------------


def test_ml_dash_serve_serves_the_folder_the_sdk_writes(tmp_path: Path) -> None:
    root = tmp_path / ".dash"
    with Experiment(prefix="alice/proj/local", dash_root=root).run as exp:
        exp.metrics("train").log(loss=0.25, _ts=5.0)
    with running(root=root) as server:
        assert "auth: OFF" in server.stdout and "single-server" in server.stdout
        assert f"http://127.0.0.1:{server.port}" in server.stdout
        with httpx.Client(base_url=server.url, timeout=30) as http:
            page = ok(http.get("/api/v1/metrics/read", params={"prefix": "alice/proj/local", "name": "train"}))
            assert page["data"] == [{"index": 0, "data": {"loss": 0.25, "_ts": 5.0}}]
            open_body = {"prefix": "alice/proj/remote"}
            ok(http.post("/api/v1/experiment/open", json=open_body))
            answer = ok(http.post("/api/v1/metrics/append", params={"prefix": "alice/proj/remote", "name": "m"},
                                  json={"batchId": "b-1", "points": [{"v": None}], "nonFinite": {"/0/v": "NaN"}}))
            assert answer["count"] == 1
    assert "Application shutdown complete" in server.stderr  # a graceful stop on SIGTERM
    store = LocalStore(root)
    assert math.isnan(store.read_metrics("alice/proj/remote", "m")["data"][0]["data"]["v"])
