"""The read side for charts, tables and live pages: series, the table of runs and live
events (docs/http-api.md, docs/reading.md)."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from .. import wire
from ..errors import InvalidNameError, InvalidValueError
from ..names import NAME_PATTERN, PREFIX_PATTERN, SEGMENT_PATTERN, SINGLE_NAME_PATTERN, parse_prefix, validate_name
from ..series import MAX_WIDTH, check_query
from ..stores.base import Store
from ..summaries import MAX_PAGE, select_runs, summary_to_json
from .events import HEARTBEAT, MAX_PREFIXES, Watch, event_stream
from .http import answer, caller, store_of
from .schemas import answers, event_answers
from .validate import Access, server_prefix, single_name

router = APIRouter(prefix="/api/v1")

_PREFIX_ITEMS = {"items": {"pattern": PREFIX_PATTERN, "maxLength": 512}}
_SINGLE = {"pattern": SINGLE_NAME_PATTERN, "maxLength": 512}
_EVENTS = (
    "server-sent events: `points` {prefix, name, count, last}, `logs` {prefix, count}, `status` {prefix, "
    "status}, `experiment` {prefix, status} (a new experiment of a watched owner), then once `ready` "
    "{experiments}; each with an `id` line. Totals, not deltas: every (re)connection starts with the current "
    f"state. A comment line (`: heartbeat`) every {HEARTBEAT:g} s while nothing happens."
)
_LAST_EVENT_ID = {
    "name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
    "description": "sent by a reconnecting client; accepted, and the stream starts again with the current "
                   "state (events carry totals, so nothing is missed)",
}


@router.get("/events", response_class=StreamingResponse, responses=event_answers(_EVENTS),
            openapi_extra={"parameters": [_LAST_EVENT_ID]})
async def events(
    request: Request,
    prefix: list[str] = Query(default=[], description=f"an experiment to watch (repeatable, at most {MAX_PREFIXES})",
                              json_schema_extra={**_PREFIX_ITEMS, "maxItems": MAX_PREFIXES}),
    owner: str | None = Query(None, description="watch every experiment of this owner (and project); not with prefix",
                              json_schema_extra=_SINGLE),
    project: str | None = Query(None, description="with owner: only this project's", json_schema_extra=_SINGLE),
    access: Access = Depends(caller),
) -> Any:
    """Server-sent events for the experiments named by ``prefix`` or under ``owner``
    (with auth, a token sees only its owner's): ``points``, ``logs``, ``status``,
    ``experiment``. Each (re)connection first gets the current state."""
    if prefix and (owner is not None or project is not None):
        raise InvalidValueError("give prefix=... (the experiments to watch) or owner=... (and project=...), not both")
    if len(prefix) > MAX_PREFIXES:
        raise InvalidValueError(f"at most {MAX_PREFIXES} prefixes per event stream, got {len(prefix)}")
    prefixes = [server_prefix(p, access).path for p in prefix]
    owner = single_name(owner, "owner")
    project = single_name(project, "project")
    if project is not None and owner is None:
        raise InvalidValueError("project needs owner")
    if not prefixes and owner is None:
        if access.owner is None:
            raise InvalidValueError("name the experiments to watch: prefix=... (repeatable) or owner=...")
        owner = access.owner
    if owner is not None:
        access.check(owner)
    watch = Watch(prefixes, owner, project)
    return StreamingResponse(
        event_stream(store_of(request), watch, request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- series of a metric field -------------------------------------------------------------

MAX_SERIES_PREFIXES = 100
MAX_SERIES_FIELDS = 16


def _series(store: Store, prefixes: list[str], name: str, fields: list[str], x: str, x0: float | None,
            x1: float | None, width: int) -> dict[str, Any]:
    answers = []
    for prefix in prefixes:
        for field in fields:
            found = store.metric_series(prefix, name, field, x, x0, x1, width).to_dict()
            answers.append({
                "prefix": prefix, "name": name, "y": field, "xField": x,
                "x": found["x"], "values": found["y"], "index": found["index"],
                "raw": found["raw"], "total": found["count"], "nonFiniteCount": found["nonFiniteCount"],
                "nonFinite": {"x": found["nonFinite"]["x"], "index": found["nonFinite"]["index"],
                              "values": found["nonFinite"]["value"]},
                "x0": found["x0"], "x1": found["x1"], "width": found["width"],
            })
    return {"series": answers}


_FIELD = {"minLength": 1, "maxLength": 256}


@router.get("/metrics/series", responses=answers("SeriesList", 403))
async def metric_series(
    request: Request,
    prefix: list[str] = Query(description=f"the experiment (repeatable, 1 to {MAX_SERIES_PREFIXES}: the same "
                              "field of several runs)",
                              json_schema_extra={**_PREFIX_ITEMS, "minItems": 1, "maxItems": MAX_SERIES_PREFIXES}),
    name: str = Query(description="the metric stream; '/' nests", json_schema_extra={"pattern": NAME_PATTERN,
                                                                                     "maxLength": 512}),
    y: list[str] = Query(description=f"a numeric field (repeatable, 1 to {MAX_SERIES_FIELDS})",
                         json_schema_extra={"items": _FIELD, "minItems": 1, "maxItems": MAX_SERIES_FIELDS}),
    x: str = Query("index", description="the x-axis: index, _ts (wall time) or any numeric field",
                   json_schema_extra=_FIELD),
    x0: float | None = Query(None, allow_inf_nan=False,
                             description="the start of the x-range (default: the stream's first x)"),
    x1: float | None = Query(None, allow_inf_nan=False,
                             description="the end of the x-range, not below x0 (default: the stream's last x)"),
    width: int = Query(1000, ge=1, le=MAX_WIDTH,
                       description="pixel columns: at most 4 points each (M4), raw points when few"),
    access: Access = Depends(caller),
) -> Response:
    """The M4 series of ``y`` against ``x`` of one stream of one or more experiments:
    per pixel column the first, last, minimum and maximum point (raw points when the
    range holds at most 4 × width); non-finite values apart, never dropped."""
    if not prefix or len(prefix) > MAX_SERIES_PREFIXES:
        raise InvalidValueError(f"give 1 to {MAX_SERIES_PREFIXES} prefixes, got {len(prefix)}")
    if not y or len(y) > MAX_SERIES_FIELDS:
        raise InvalidValueError(f"give 1 to {MAX_SERIES_FIELDS} y fields, got {len(y)}")
    prefixes = [server_prefix(p, access).path for p in prefix]
    validate_name(name, "metric name")
    for field in (*y, x):
        if not field or len(field) > 256:
            raise InvalidValueError(f"field name {field!r} must be 1 to 256 characters")
    check_query(x0, x1, width)
    return await answer(_series, store_of(request), prefixes, name, list(y), x, x0, x1, width)


# -- the table of runs ---------------------------------------------------------------------


def _runs(store: Store, owner: str | None, project: str | None, folder: str | None, where: str | None,
          sort: str | None, descending: bool, offset: int, limit: int) -> dict[str, Any]:
    summaries = store.run_summaries(owner, project)
    if folder:
        summaries = [s for s in summaries if s.info.prefix.startswith(folder.rstrip("/") + "/")]
    page, total = select_runs(summaries, where, sort, descending, offset, limit)
    return {"runs": [summary_to_json(s, msgspec.to_builtins(wire.ExperimentBody.of(s.info))) for s in page],
            "total": total, "offset": offset, "limit": limit}


@router.get("/runs", responses=answers("RunPage", 403, filters=True))
async def runs(
    request: Request,
    owner: str | None = Query(None, description="only this owner's (with auth: the token's owner)",
                              json_schema_extra=_SINGLE),
    project: str | None = Query(None, description="with owner: only this project's", json_schema_extra=_SINGLE),
    folder: str | None = Query(None, description="only experiments under this prefix (owner/project/folders)",
                               json_schema_extra={"pattern": f"^{SEGMENT_PATTERN}(/{SEGMENT_PATTERN})+$",
                                                  "maxLength": 512}),
    where: str | None = Query(None, description="a filter (docs/filters.md), e.g. params.lr < 0.01; a bad one "
                              "is 400 invalid_filter naming the column"),
    sort: str | None = Query(None, description="a column: name, created, params.lr, metrics.train.loss.last ... "
                             "(default: created); rows without it come last"),
    descending: bool = Query(False),
    offset: int = Query(0, ge=0, description="rows to skip"),
    limit: int = Query(100, ge=0, le=MAX_PAGE, description="rows to answer"),
    access: Access = Depends(caller),
) -> Response:
    """Experiments with their status, times, tags, params and metric field statistics,
    filtered, sorted and paged; a token sees only its owner's."""
    owner = single_name(owner, "owner")
    project = single_name(project, "project")
    if folder is not None:
        if len(folder.split("/")) < 2:
            raise InvalidNameError(f"folder {folder!r} must be 'owner/project[/folders...]'")
        parsed = parse_prefix(folder)
        owner = owner or parsed.owner
        if owner != parsed.owner:
            raise InvalidValueError(f"folder {folder!r} is not under owner {owner!r}")
        project = project or parsed.project
    if access.owner is not None:
        owner = owner or access.owner
        access.check(owner)
    if project is not None and owner is None:
        raise InvalidValueError("project needs owner")
    return await answer(_runs, store_of(request), owner, project, folder, where, sort, descending, offset, limit)


@router.get("/metrics/fields", responses=answers("FieldList", 403))
async def metric_fields(
    request: Request,
    prefix: str = Query(description="the experiment", json_schema_extra={"pattern": PREFIX_PATTERN, "maxLength": 512}),
    name: str = Query(description="the metric stream; '/' nests",
                      json_schema_extra={"pattern": NAME_PATTERN, "maxLength": 512}),
    access: Access = Depends(caller),
) -> Response:
    """``{"fields": {field: {"count", "first", "last", "min", "max", "lastIndex", "minIndex",
    "maxIndex", "nonFinite"}}}`` for one stream (from the summary kept beside the data)."""
    target = server_prefix(prefix, access).path
    validate_name(name, "metric name")
    return await answer(lambda store: {"fields": store.metric_fields(target, name)}, store_of(request))
