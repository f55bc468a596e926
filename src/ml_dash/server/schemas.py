"""The OpenAPI description of the bodies the routes read and write.

Request bodies are the structs of ``ml_dash.wire``; the answers are described here.
These structs only describe (JSON Schema via ``msgspec.json.schema_components``);
routes encode the store's own records directly. The fuzz tests check that every
answer matches its description.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .. import wire
from ..records import MetricStats

REF = "#/components/schemas/{name}"


class ErrorBody(msgspec.Struct):
    """Every refusal: a stable ``code`` (see docs/http-api.md) and a readable ``message``."""

    code: str
    message: str


class Health(msgspec.Struct):
    status: str
    version: str
    backend: str


class ExperimentOpen(wire.ExperimentBody, forbid_unknown_fields=True):
    """``ExperimentBody`` as ``open`` accepts it: unknown members are refused like in every other body."""


class ExperimentList(msgspec.Struct):
    experiments: list[wire.ExperimentBody]


class ParamsOut(msgspec.Struct, rename="camel"):
    version: int
    data: dict[str, Any]
    created_at: float | None
    updated_at: float | None
    non_finite: dict[str, str] = {}


class MetricsAppended(msgspec.Struct, rename="camel"):
    first_index: int
    count: int
    duplicate: bool


class MetricPointOut(msgspec.Struct):
    index: int
    data: dict[str, Any]


class MetricPageOut(msgspec.Struct, rename="camel"):
    data: list[MetricPointOut]
    start_index: int
    end_index: int
    total: int
    has_more: bool
    non_finite: dict[str, str] = {}


class MetricList(msgspec.Struct):
    metrics: list[MetricStats]


class LogsAppended(msgspec.Struct, rename="camel"):
    first_sequence: int
    count: int
    duplicate: bool


class LogPageOut(msgspec.Struct, rename="camel"):
    logs: list[dict[str, Any]]
    total: int
    offset: int
    limit: int
    has_more: bool
    non_finite: dict[str, str] = {}


class TracksAppended(msgspec.Struct):
    count: int
    duplicate: bool


class TrackEntries(msgspec.Struct, rename="camel"):
    entries: list[dict[str, Any]]
    non_finite: dict[str, str] = {}


class TrackInfo(msgspec.Struct, rename="camel"):
    topic: str
    total_entries: int
    first_timestamp: float | None
    last_timestamp: float | None


class TrackList(msgspec.Struct):
    tracks: list[TrackInfo]


_DESCRIBED: tuple[Any, ...] = (
    ErrorBody, Health, ExperimentOpen, wire.ExperimentBody, wire.ExperimentChanges, ExperimentList,
    wire.ParamsBody, ParamsOut, wire.MetricsAppendBody, MetricsAppended, MetricPageOut, MetricStats, MetricList,
    wire.LogsAppendBody, LogsAppended, LogPageOut, wire.TracksAppendBody, TracksAppended, TrackEntries, TrackList,
)


def components() -> dict[str, Any]:
    """JSON Schemas of every described struct, keyed by name (OpenAPI ``components.schemas``)."""
    _, schemas = msgspec.json.schema_components(_DESCRIBED, ref_template=REF)
    return schemas


def _ref(kind: Any) -> dict[str, Any]:
    return {"$ref": REF.format(name=kind.__name__)}


def body(kind: Any) -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON body of type ``kind``."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": _ref(kind)}}}}


_ERRORS = {
    400: "bad_request or invalid_name: malformed JSON, wrong types, missing parameters, bad names",
    401: "unauthorized: no token, or an unknown or revoked one",
    403: "forbidden: the token's owner is not the experiment's owner",
    404: "not_found",
    413: "too_large: body over the server's limit, or more than 100,000 items",
    422: "invalid_value: a value of the right type that cannot be stored",
    503: "storage_error: the store cannot read or write now; retry later",
}


def answers(kind: Any, *errors: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route answering ``kind`` (200) or one of the listed errors."""
    out: dict[int | str, dict[str, Any]] = {
        200: {"description": "OK", "content": {"application/json": {"schema": _ref(kind)}}}
    }
    for status in sorted({400, 401, 413, 422, 503, *errors}):
        out[status] = {"description": _ERRORS[status], "content": {"application/json": {"schema": _ref(ErrorBody)}}}
    return out
