"""Routes for metric streams, log lines and tracks (docs/http-api.md).

Appends carry a client-chosen ``batchId``; the store never stores a batch twice, and
a resent batch is answered as the first time with ``"duplicate": true``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from .. import wire
from ..limits import DEFAULT, Limits
from ..logs import normalize_level
from ..names import NAME_PATTERN, Prefix, validate_name
from ..records import LogQuery, MetricStats
from ..stores.base import Store
from .bodies import decode
from .http import answer, caller, limits_of, read_json_body, store_of
from .routes_experiments import prefix_query
from .schemas import answers, body
from .validate import (
    MAX_ITEMS,
    Access,
    check_batch_id,
    log_records,
    metric_points,
    server_prefix,
    stream_description,
    track_entries,
)

router = APIRouter(prefix="/api/v1")

# Counters past 2**53 would lose precision in a browser; no real stream gets there.
MAX_COUNTER = 2**53


def _name_query() -> Any:
    return Query(description="the metric stream; '/' nests", examples=["train/loss"],
                 json_schema_extra={"pattern": NAME_PATTERN, "maxLength": 512})


def _topic_query() -> Any:
    return Query(description="the track topic; '/' nests", examples=["robot/position"],
                 json_schema_extra={"pattern": NAME_PATTERN, "maxLength": 512})


# -- metrics -----------------------------------------------------------------------------


def _append_metrics(
    store: Store, target: Prefix, name: str, raw: bytes | bytearray, limits: Limits = DEFAULT
) -> bytes:
    points, batch_id = decode(raw, wire.MetricsAppendBody, limits).args()
    check_batch_id(batch_id)
    result = store.append_metrics(target.path, name, metric_points(name, points, limits), batch_id=batch_id)
    return wire.encode(wire.MetricsAppended.of(result))


@router.post(
    "/metrics/append", openapi_extra=body(wire.MetricsAppendBody), responses=answers(wire.MetricsAppended, 403, 422)
)
async def append_metrics(
    request: Request, prefix: str = prefix_query(), name: str = _name_query(), access: Access = Depends(caller)
) -> Response:
    """Append a batch of points (``_ts`` stamped with the server's time where absent)."""
    target = server_prefix(prefix, access)
    metric = validate_name(name, "metric name")
    raw = await read_json_body(request)
    return await answer(_append_metrics, store_of(request), target, metric, raw, limits_of(request))


def _describe_stream(
    store: Store, target: Prefix, name: str, raw: bytes | bytearray, limits: Limits = DEFAULT
) -> bytes:
    description = stream_description(decode(raw, wire.StreamDescriptionBody, limits).record(), limits)
    store.describe_stream(target.path, name, description)
    return wire.encode(wire.StreamDescriptionBody.of(description))


@router.post(
    "/metrics/describe",
    openapi_extra=body(wire.StreamDescriptionBody),
    responses=answers(wire.StreamDescriptionBody, 403, 422),
)
async def describe_stream(
    request: Request, prefix: str = prefix_query(), name: str = _name_query(), access: Access = Depends(caller)
) -> Response:
    """Record the description, tags and metadata of a metric stream (replacing earlier ones); answers them."""
    target = server_prefix(prefix, access)
    metric = validate_name(name, "metric name")
    raw = await read_json_body(request)
    return await answer(_describe_stream, store_of(request), target, metric, raw, limits_of(request))


def _read_metrics(store: Store, target: Prefix, name: str, start_index: int, limit: int) -> bytes:
    return wire.encode(wire.MetricPageOut.of(store.read_metrics(target.path, name, start_index, limit)))


@router.get("/metrics/read", responses=answers(wire.MetricPageOut, 403, 422))
async def read_metrics(
    request: Request,
    prefix: str = prefix_query(),
    name: str = _name_query(),
    start_index: int = Query(0, ge=0, le=MAX_COUNTER),
    limit: int = Query(1000, ge=0, le=MAX_ITEMS),
    access: Access = Depends(caller),
) -> Response:
    """Points ``start_index`` .. ``start_index + limit - 1`` in index order."""
    target = server_prefix(prefix, access)
    metric = validate_name(name, "metric name")
    return await answer(_read_metrics, store_of(request), target, metric, start_index, limit)


def _metric_stats(store: Store, target: Prefix, name: str) -> bytes:
    return wire.encode(store.metric_stats(target.path, name))


@router.get("/metrics/stats", responses=answers(MetricStats, 403))
async def metric_stats(
    request: Request, prefix: str = prefix_query(), name: str = _name_query(), access: Access = Depends(caller)
) -> Response:
    """Point count and first/last point times of one stream (zero for an unknown one)."""
    target = server_prefix(prefix, access)
    return await answer(_metric_stats, store_of(request), target, validate_name(name, "metric name"))


def _list_metrics(store: Store, target: Prefix) -> bytes:
    return wire.encode(wire.MetricList.of(store.list_metrics(target.path)))


@router.get("/metrics/list", responses=answers(wire.MetricList, 403))
async def list_metrics(request: Request, prefix: str = prefix_query(), access: Access = Depends(caller)) -> Response:
    """Stats of every metric stream of the experiment."""
    return await answer(_list_metrics, store_of(request), server_prefix(prefix, access))


# -- logs --------------------------------------------------------------------------------


def _append_logs(store: Store, target: Prefix, raw: bytes | bytearray, limits: Limits = DEFAULT) -> bytes:
    records, batch_id = decode(raw, wire.LogsAppendBody, limits).args()
    check_batch_id(batch_id)
    result = store.append_logs(target.path, log_records(records, limits), batch_id=batch_id)
    return wire.encode(wire.LogsAppended.of(result))


@router.post(
    "/logs/append", openapi_extra=body(wire.LogsAppendBody), responses=answers(wire.LogsAppended, 403, 422)
)
async def append_logs(request: Request, prefix: str = prefix_query(), access: Access = Depends(caller)) -> Response:
    """Append a batch of log records (levels normalised: ``"WARNING"`` -> ``"warn"``)."""
    target = server_prefix(prefix, access)
    raw = await read_json_body(request)
    return await answer(_append_logs, store_of(request), target, raw, limits_of(request))


def _query_logs(store: Store, target: Prefix, query: LogQuery) -> bytes:
    return wire.encode(wire.LogPageOut.of(store.query_logs(target.path, query)))


@router.get("/logs", responses=answers(wire.LogPageOut, 403, 422))
async def query_logs(
    request: Request,
    prefix: str = prefix_query(),
    level: list[str] | None = Query(None, description="only these levels (repeatable)",
                                    json_schema_extra={"items": {"type": "string", "pattern": wire.LEVEL_PATTERN}}),
    start_time: float | None = Query(None, allow_inf_nan=False, description="seconds, inclusive"),
    end_time: float | None = Query(None, allow_inf_nan=False, description="seconds, inclusive"),
    search: str | None = Query(None, description="message contains this text (any case)"),
    offset: int = Query(0, ge=0, le=MAX_COUNTER),
    limit: int = Query(100, ge=0, le=MAX_ITEMS),
    descending: bool = Query(False),
    access: Access = Depends(caller),
) -> Response:
    """Log lines matching every filter given, paged, oldest first unless ``descending``."""
    target = server_prefix(prefix, access)
    query = LogQuery(offset=offset, limit=limit, descending=descending)
    if level:
        query["levels"] = [normalize_level(lv) for lv in level]
    if start_time is not None:
        query["start_time"] = start_time
    if end_time is not None:
        query["end_time"] = end_time
    if search:
        query["search"] = search
    return await answer(_query_logs, store_of(request), target, query)


# -- tracks ------------------------------------------------------------------------------


def _append_tracks(
    store: Store, target: Prefix, topic: str, raw: bytes | bytearray, limits: Limits = DEFAULT
) -> bytes:
    entries, batch_id = decode(raw, wire.TracksAppendBody, limits).args()
    check_batch_id(batch_id)
    result = store.append_tracks(target.path, topic, track_entries(topic, entries, limits), batch_id=batch_id)
    return wire.encode(wire.TracksAppended.of(result))


@router.post(
    "/tracks/append", openapi_extra=body(wire.TracksAppendBody), responses=answers(wire.TracksAppended, 403, 422)
)
async def append_tracks(
    request: Request, prefix: str = prefix_query(), topic: str = _topic_query(), access: Access = Depends(caller)
) -> Response:
    """Append a batch of entries, each with a numeric ``timestamp`` (nested fields flattened)."""
    target = server_prefix(prefix, access)
    name = validate_name(topic, "track topic")
    raw = await read_json_body(request)
    return await answer(_append_tracks, store_of(request), target, name, raw, limits_of(request))


def _read_tracks(
    store: Store,
    target: Prefix,
    topic: str,
    start: float | None,
    end: float | None,
    columns: list[str] | None,
    limit: int | None,
    after: float | None,
) -> bytes:
    entries = store.read_tracks(target.path, topic, start, end, columns, limit=limit, after=after)
    return wire.encode(wire.TrackEntries.of(entries))


@router.get("/tracks/read", responses=answers(wire.TrackEntries, 403, 422))
async def read_tracks(
    request: Request,
    prefix: str = prefix_query(),
    topic: str = _topic_query(),
    start_timestamp: float | None = Query(None, allow_inf_nan=False),
    end_timestamp: float | None = Query(None, allow_inf_nan=False),
    columns: str | None = Query(None, description="comma-separated fields to keep (timestamp always)"),
    limit: int | None = Query(None, ge=0, le=MAX_ITEMS, description="at most this many entries (default: all)"),
    after: float | None = Query(
        None, allow_inf_nan=False, description="only entries after this timestamp (the last one of the previous page)"
    ),
    access: Access = Depends(caller),
) -> Response:
    """Entries in time order, entries with equal timestamps merged; paged by ``limit`` and ``after``."""
    target = server_prefix(prefix, access)
    name = validate_name(topic, "track topic")
    wanted = [c for c in columns.split(",") if c] if columns is not None else None
    return await answer(
        _read_tracks, store_of(request), target, name, start_timestamp, end_timestamp, wanted, limit, after
    )


def _list_tracks(store: Store, target: Prefix) -> bytes:
    return wire.encode(wire.TrackList.of(store.list_tracks(target.path)))


@router.get("/tracks/list", responses=answers(wire.TrackList, 403))
async def list_tracks(request: Request, prefix: str = prefix_query(), access: Access = Depends(caller)) -> Response:
    """Topic, entry count and time span of every track topic."""
    return await answer(_list_tracks, store_of(request), server_prefix(prefix, access))
