"""The OpenAPI description of the routes' bodies: the structs of ``ml_dash.wire``.

Routes decode requests and encode answers with those structs, and RemoteStore uses
the same ones, so the description is the code. This module only turns them into JSON
Schema (``msgspec.json.schema_components``) and OpenAPI fragments. The fuzz tests
check that every answer matches its description.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .. import wire
from ..records import MetricStats

REF = "#/components/schemas/{name}"

_DESCRIBED: tuple[Any, ...] = (
    wire.ErrorBody, wire.Health, wire.ExperimentOpen, wire.ExperimentBody, wire.ExperimentChanges,
    wire.ExperimentList, wire.ParamsBody, wire.ParamsOut, wire.MetricsAppendBody, wire.MetricsAppended,
    wire.StreamDescriptionBody, wire.MetricPageOut, MetricStats, wire.MetricList, wire.LogsAppendBody,
    wire.LogsAppended, wire.LogPageOut, wire.TracksAppendBody, wire.TracksAppended, wire.TrackEntries,
    wire.TrackList, wire.ClaimBody, wire.ClaimOut, wire.ReleaseBody,
)

# The read side's answers are built as plain data (``routes_reads``; RemoteStore reads
# them back with ``series_from_answer`` and the summaries' own shapes), so their schemas
# are written here. tests/server/test_openapi.py checks real answers against them.
_NUMBERS = {"type": "array", "items": {"type": "number"}}
_INTEGERS = {"type": "array", "items": {"type": "integer"}}
_NUMBER_OR_NULL = {"anyOf": [{"type": "number"}, {"type": "null"}]}
_INTEGER_OR_NULL = {"anyOf": [{"type": "integer"}, {"type": "null"}]}
_NON_FINITE_NAME = {"enum": ["NaN", "Infinity", "-Infinity"]}


def _object(description: str, properties: dict[str, Any], required: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": properties,
            "required": list(properties if required is None else required)}


READ_ANSWERS: dict[str, dict[str, Any]] = {
    "Series": _object(
        "One field of one stream against an x-axis, columnar: the raw points when the range holds at most "
        "4 x width of them (raw: true), else per pixel column the first, last, minimum and maximum point (M4). "
        "Non-finite values are apart, never dropped.",
        {
            "prefix": {"type": "string"}, "name": {"type": "string"},
            "y": {"type": "string", "description": "the field of the values"},
            "xField": {"type": "string", "description": "the x-axis: index, _ts or a numeric field"},
            "x": _NUMBERS, "values": _NUMBERS, "index": {**_INTEGERS, "description": "the index of each point"},
            "raw": {"type": "boolean"},
            "total": {"type": "integer", "minimum": 0, "description": "points in the range"},
            "nonFiniteCount": {"type": "integer", "minimum": 0, "description": "of them, values NaN or infinite"},
            "nonFinite": _object("points whose value is NaN or infinite: all of them in a raw answer, else the "
                                 "first and last of each kind per column",
                                 {"x": _NUMBERS, "index": _INTEGERS,
                                  "values": {"type": "array", "items": _NON_FINITE_NAME}}),
            "x0": _NUMBER_OR_NULL, "x1": _NUMBER_OR_NULL, "width": {"type": "integer", "minimum": 1},
        },
    ),
    "SeriesList": _object("one series per prefix and y field, prefixes first",
                          {"series": {"type": "array", "items": {"$ref": REF.format(name="Series")}}}),
    "FieldStats": _object(
        "one numeric field of a stream: count, first, last, min and max of its finite values (null without "
        "one), the index of the points holding the last, min and max, and how many values are NaN or infinite",
        {
            "count": {"type": "integer", "minimum": 0}, "first": _NUMBER_OR_NULL, "last": _NUMBER_OR_NULL,
            "min": _NUMBER_OR_NULL, "max": _NUMBER_OR_NULL, "lastIndex": _INTEGER_OR_NULL,
            "minIndex": _INTEGER_OR_NULL, "maxIndex": _INTEGER_OR_NULL, "nonFinite": {"type": "integer", "minimum": 0},
        },
    ),
    "FieldList": _object("field name -> its statistics ({} for a stream that does not exist)",
                         {"fields": {"type": "object",
                                     "additionalProperties": {"$ref": REF.format(name="FieldStats")}}}),
    "Run": {
        "description": "an Experiment with its flat params and, per metric stream and numeric field, its "
                       "statistics (wall time _ts left out)",
        "allOf": [
            {"$ref": REF.format(name="ExperimentBody")},
            _object("", {"params": {"type": "object"},
                         "metrics": {"type": "object", "additionalProperties": {
                             "type": "object", "additionalProperties": {"$ref": REF.format(name="FieldStats")}}}}),
        ],
    },
    "RunPage": _object(
        "one page of the runs that pass the filter, sorted; total: how many pass",
        {"runs": {"type": "array", "items": {"$ref": REF.format(name="Run")}},
         "total": {"type": "integer", "minimum": 0}, "offset": {"type": "integer", "minimum": 0},
         "limit": {"type": "integer", "minimum": 0}},
    ),
}


def components() -> dict[str, Any]:
    """JSON Schemas of every described struct and read answer, keyed by name (OpenAPI ``components.schemas``)."""
    _, schemas = msgspec.json.schema_components(_DESCRIBED, ref_template=REF)
    return {**schemas, **READ_ANSWERS}


def ref(kind: Any) -> dict[str, Any]:
    """A JSON Schema reference to the component of ``kind`` (a struct, or the name of a read answer)."""
    return {"$ref": REF.format(name=kind if isinstance(kind, str) else kind.__name__)}


def body(kind: Any) -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON body of type ``kind``."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref(kind)}}}}


_ERRORS = {
    400: "bad_request or invalid_name: malformed JSON, wrong types, missing parameters, bad names",
    401: "unauthorized: no token, or an unknown or revoked one",
    403: "forbidden: the token's owner is not the experiment's owner",
    404: "not_found",
    408: "timeout: the request headers did not arrive within the server's --header-timeout (10 s); the "
         "connection is closed",
    409: "busy (another process runs the experiment) or exists (it exists and `new` was asked for)",
    413: "too_large: the body is over --max-body (64 MiB), would take more memory decoded than "
         "--max-decode-ratio allows, holds more points, records or entries than --max-items (100,000), or one "
         "of them (or the params) is over its byte limit (--max-point-bytes, --max-log-bytes, "
         "--max-track-bytes, --max-params-bytes)",
    422: "invalid_value: a value of the right type that cannot be stored, out of range, nested deeper than "
         "--max-depth (32) or with more than --max-items (100,000) items in one list or object",
    503: "storage_error (the store cannot read or write now) or unavailable (the server holds too many "
         "connections: --max-connections, --max-connections-per-client; the connection is closed): retry later",
}
_BODY_TIMEOUT = ("timeout: the request headers did not arrive within the server's --header-timeout (10 s), or "
                 "the body stalled (no byte) longer than --body-timeout (30 s); the connection is closed")
_FILTER = ("bad_request, invalid_name or invalid_filter: malformed parameters, bad names, or a `where` filter "
           "that cannot be parsed or names an unknown column (the message points at the column)")


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(wire.ErrorBody)}}}


def answers(kind: Any, *errors: int, filters: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route answering ``kind`` (200: a struct, or the name of a
    read answer) or one of the listed errors, besides those every route may answer
    (400, 401, 408, 422, 503; 413 is added to the routes that take a body by
    :func:`describe_limits`). ``filters``: the route takes a filter (``invalid_filter``)."""
    out: dict[int | str, dict[str, Any]] = {
        200: {"description": "OK", "content": {"application/json": {"schema": ref(kind)}}}
    }
    for status in sorted({400, 401, 408, 422, 503, *errors}):
        out[status] = _error(_FILTER if status == 400 and filters else _ERRORS[status])
    return out


def event_answers(description: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for the event stream: 200 ``text/event-stream``, or an error before it starts."""
    out = answers(wire.ErrorBody, 403)
    out[200] = {"description": description, "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    return out


def describe_limits(doc: dict[str, Any]) -> None:
    """Describe in ``doc`` (an OpenAPI document) the limits' answers on the routes that can
    give them: the header timeout (408) on every API operation; 413 and the body timeout
    on those with a request body (the routes that read one)."""
    for path, operations in doc.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("408", _error(_ERRORS[408]))
            if "requestBody" in operation:
                responses["408"] = _error(_BODY_TIMEOUT)
                responses["413"] = _error(_ERRORS[413])
            operation["responses"] = dict(sorted(responses.items()))
