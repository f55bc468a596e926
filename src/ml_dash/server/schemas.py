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


def components() -> dict[str, Any]:
    """JSON Schemas of every described struct, keyed by name (OpenAPI ``components.schemas``)."""
    _, schemas = msgspec.json.schema_components(_DESCRIBED, ref_template=REF)
    return schemas


def ref(kind: Any) -> dict[str, Any]:
    """A JSON Schema reference to the component of ``kind``."""
    return {"$ref": REF.format(name=kind.__name__)}


def body(kind: Any) -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON body of type ``kind``."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref(kind)}}}}


_ERRORS = {
    400: "bad_request or invalid_name: malformed JSON, wrong types, missing parameters, bad names",
    401: "unauthorized: no token, or an unknown or revoked one",
    403: "forbidden: the token's owner is not the experiment's owner",
    404: "not_found",
    409: "busy (another process runs the experiment) or exists (it exists and `new` was asked for)",
    413: "too_large: body over the server's limit, or more than 100,000 items",
    422: "invalid_value: a value of the right type that cannot be stored",
    503: "storage_error: the store cannot read or write now; retry later",
}


def answers(kind: Any, *errors: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route answering ``kind`` (200) or one of the listed errors."""
    out: dict[int | str, dict[str, Any]] = {
        200: {"description": "OK", "content": {"application/json": {"schema": ref(kind)}}}
    }
    for status in sorted({400, 401, 413, 422, 503, *errors}):
        out[status] = {"description": _ERRORS[status],
                       "content": {"application/json": {"schema": ref(wire.ErrorBody)}}}
    return out
