"""The OpenAPI description says what the server does: the limits' answers on the routes
that can give them, and the read routes with their parameters and answer schemas —
checked against real answers of the app over a real LocalStore."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ml_dash import LocalStore
from ml_dash.series import MAX_WIDTH
from ml_dash.server import create_app
from ml_dash.summaries import MAX_PAGE
from support.app import PREFIX, AppClient

READS = ("/api/v1/metrics/series", "/api/v1/metrics/fields", "/api/v1/runs")


@pytest.fixture
def client(dash_root: Path) -> Iterator[AppClient]:
    store = LocalStore(dash_root)
    made = AppClient(create_app(store))
    try:
        yield made
    finally:
        made.close()
        store.close()


@pytest.fixture
def doc(client: AppClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def params_of(doc: dict[str, Any], path: str, method: str = "get") -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in doc["paths"][path][method]["parameters"]}


def check(doc: dict[str, Any], component: str, value: Any) -> None:
    """jsonschema-validate ``value`` against ``#/components/schemas/<component>`` of ``doc``."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(value)


def test_routes_with_a_body_describe_413_and_the_body_timeout_and_every_route_the_header_timeout(
    doc: dict[str, Any],
) -> None:
    operations = [(path, method, op) for path, ops in doc["paths"].items() if path.startswith("/api/")
                  for method, op in ops.items()]
    with_body = [(path, op) for path, method, op in operations if "requestBody" in op]
    assert len(with_body) >= 7  # open, update, claim, release, params, 3 appends, describe
    for path, method, op in operations:
        responses = op["responses"]
        assert "408" in responses and "timeout" in responses["408"]["description"], (method, path)
        if "503" in responses:
            assert {"unavailable", "storage_error"} <= set(re.findall(r"[a-z_]+", responses["503"]["description"]))
        if "422" in responses:
            assert "--max-depth" in responses["422"]["description"]
        if "requestBody" in op:
            assert "--body-timeout" in responses["408"]["description"], path
            assert "--max-body" in responses["413"]["description"] and "--max-items" in responses["413"]["description"]
        else:
            assert "413" not in responses and "--body-timeout" not in responses["408"]["description"], (method, path)
        for answer in responses.values():
            if answer is not responses["200"]:
                assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


def test_the_read_routes_describe_their_parameters_and_the_invalid_filter_error(doc: dict[str, Any]) -> None:
    series = params_of(doc, "/api/v1/metrics/series")
    assert set(series) == {"prefix", "name", "y", "x", "x0", "x1", "width"}
    assert series["prefix"]["required"] and series["prefix"]["schema"]["maxItems"] == 100
    assert series["y"]["schema"]["minItems"] == 1 and series["y"]["schema"]["items"]["maxLength"] == 256
    assert (series["width"]["schema"]["minimum"], series["width"]["schema"]["maximum"]) == (1, MAX_WIDTH)
    assert "pattern" in series["name"]["schema"]

    runs = params_of(doc, "/api/v1/runs")
    assert set(runs) == {"owner", "project", "folder", "where", "sort", "descending", "offset", "limit"}
    assert runs["limit"]["schema"]["maximum"] == MAX_PAGE and runs["offset"]["schema"]["minimum"] == 0
    assert "invalid_filter" in doc["paths"]["/api/v1/runs"]["get"]["responses"]["400"]["description"]
    assert "invalid_filter" not in doc["paths"]["/api/v1/metrics/read"]["get"]["responses"]["400"]["description"]

    assert set(params_of(doc, "/api/v1/metrics/fields")) == {"prefix", "name"}

    events = doc["paths"]["/api/v1/events"]["get"]
    assert set(params_of(doc, "/api/v1/events")) == {"prefix", "owner", "project", "Last-Event-ID"}
    assert params_of(doc, "/api/v1/events")["Last-Event-ID"]["in"] == "header"
    assert set(events["responses"]["200"]["content"]) == {"text/event-stream"}
    assert "heartbeat" in events["responses"]["200"]["description"]

    for path, component in zip(READS, ("SeriesList", "FieldList", "RunPage"), strict=True):
        schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{component}"}


def test_real_read_answers_match_the_described_schemas(client: AppClient, doc: dict[str, Any]) -> None:
    assert client.post("/api/v1/experiment/open", json={"prefix": PREFIX, "tags": ["baseline"]}).status_code == 200
    assert client.post("/api/v1/params", params={"prefix": PREFIX}, json={"params": {"lr": 0.01}}).status_code == 200
    points = [{"loss": 1.0 / (i + 1), "step": i, "_ts": 1000.0 + i} for i in range(50)]
    points[7]["loss"] = None
    body = {"batchId": "b-1", "points": points, "nonFinite": {"/7/loss": "NaN"}}
    assert client.post("/api/v1/metrics/append", params={"prefix": PREFIX, "name": "train"}, json=body).status_code \
        == 200

    series = client.get("/api/v1/metrics/series", params={"prefix": PREFIX, "name": "train", "y": "loss",
                                                         "x": "step", "width": 5})
    assert series.status_code == 200, series.text
    check(doc, "SeriesList", series.json())
    (one,) = series.json()["series"]
    assert not one["raw"] and one["nonFinite"] == {"x": [7.0], "index": [7], "values": ["NaN"]}

    fields = client.get("/api/v1/metrics/fields", params={"prefix": PREFIX, "name": "train"})
    check(doc, "FieldList", fields.json())
    assert fields.json()["fields"]["loss"]["nonFinite"] == 1

    runs = client.get("/api/v1/runs", params={"owner": "alice", "where": "params.lr < 0.1", "sort": "params.lr"})
    check(doc, "RunPage", runs.json())
    assert [r["prefix"] for r in runs.json()["runs"]] == [PREFIX]
    assert runs.json()["runs"][0]["metrics"]["train"]["loss"]["min"] == pytest.approx(0.02)

    with pytest.raises(jsonschema.ValidationError):  # the schemas do tell answers apart
        check(doc, "RunPage", {**runs.json(), "runs": [{"prefix": PREFIX, "metrics": {"train": {"loss": 1}}}]})


def test_a_filter_that_cannot_be_parsed_is_400_invalid_filter_naming_the_column(client: AppClient) -> None:
    answer = client.get("/api/v1/runs", params={"owner": "alice", "where": "params.lr <<< 1"})
    assert answer.status_code == 400, answer.text
    found = answer.json()
    assert found["code"] == "invalid_filter" and "column" in found["message"], found
    assert json.dumps(sorted(found)) == '["code", "message"]'
