"""``ml_dash.wire``: store calls and answers survive the trip through their JSON bodies."""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_dash import wire
from ml_dash.errors import BadRequestError, InvalidValueError
from ml_dash.records import (
    STATUSES,
    AppendResult,
    ExperimentInfo,
    LogRecord,
    MetricPage,
    ParamsDoc,
    StreamDescription,
)
from ml_dash.server.validate import BATCH_ID as BATCH_ID_RULE

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # no lone surrogates: not UTF-8
NUMBERS = st.integers() | st.floats()  # unbounded ints, NaN, infinities, -0.0
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)
OBJECT = st.dictionaries(TEXT, JSON, max_size=6)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
NAME = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,11}", fullmatch=True)
BATCH_ID = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
TAGS = st.lists(TEXT, max_size=3).map(tuple)


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN and types compared exactly (1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    return bool(a == b)


@st.composite
def infos(draw: st.DrawFn) -> ExperimentInfo:
    owner, project, name = draw(NAME), draw(NAME), draw(NAME)
    folders = tuple(draw(st.lists(NAME, max_size=2)))
    return ExperimentInfo(
        prefix="/".join((owner, project, *folders, name)),
        owner=owner,
        project=project,
        name=name,
        folders=folders,
        description=draw(st.none() | TEXT),
        tags=draw(TAGS),
        metadata=draw(OBJECT),
        status=draw(st.sampled_from(STATUSES)),
        created_at=draw(FINITE),
        started_at=draw(st.none() | FINITE),
        ended_at=draw(st.none() | FINITE),
        format_version=draw(st.integers(0, 9)),
    )


CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(STATUSES),
        "started_at": st.none() | FINITE,
        "ended_at": st.none() | FINITE,
        "description": st.none() | TEXT,
        "tags": TAGS,
        "metadata": OBJECT,
    },
)
LOG_RECORDS = st.lists(
    st.builds(LogRecord, FINITE, TEXT, TEXT, st.none() | OBJECT),
    max_size=5,
)
DESCRIPTIONS = st.builds(StreamDescription, st.none() | TEXT, TAGS, OBJECT)
POINTS = st.lists(OBJECT, max_size=5)
CALLS = st.one_of(
    st.tuples(st.just("open_experiment"), st.tuples(infos())),
    st.tuples(st.just("update_experiment"), st.tuples(CHANGES)),
    st.tuples(st.just("set_params"), st.tuples(OBJECT)),
    st.tuples(st.just("append_metrics"), st.tuples(POINTS, BATCH_ID)),
    st.tuples(st.just("append_logs"), st.tuples(LOG_RECORDS, BATCH_ID)),
    st.tuples(st.just("append_tracks"), st.tuples(POINTS, BATCH_ID)),
    st.tuples(st.just("describe_stream"), st.tuples(DESCRIPTIONS)),
)


@given(CALLS)
def test_every_store_write_decodes_to_the_arguments_it_was_encoded_from(call: tuple[str, tuple[Any, ...]]) -> None:
    op, args = call
    body = wire.encode_call(op, args)
    msgspec.json.decode(body)  # plain JSON, NaN and infinities included
    assert same(wire.decode_call(op, body), args)


@given(st.sampled_from(["append_metrics", "append_tracks"]), POINTS)
def test_a_write_without_a_batch_id_gets_one_that_every_replay_keeps(op: str, points: list[dict[str, Any]]) -> None:
    body = wire.encode_call(op, (points, None))
    decoded, batch_id = wire.decode_call(op, body)
    assert same(decoded, points) and BATCH_ID_RULE.match(batch_id)
    assert wire.decode_call(op, body)[1] == batch_id


def test_non_finite_values_travel_as_null_with_a_pointer_map() -> None:
    body = wire.encode_call("append_metrics", ([{"loss": math.nan, "a/b": {"c": -math.inf}}, {"x": 1}], "b-1"))
    assert msgspec.json.decode(body) == {
        "batchId": "b-1",
        "points": [{"loss": None, "a/b": {"c": None}}, {"x": 1}],
        "nonFinite": {"/0/loss": "NaN", "/0/a~1b/c": "-Infinity"},
    }
    finite = wire.encode_call("append_logs", ([LogRecord(1.0, "info", "m", None)], "l-1"))
    assert msgspec.json.decode(finite) == {
        "batchId": "l-1", "records": [{"ts": 1.0, "level": "info", "message": "m", "metadata": None}]
    }


class Batch(list[Any]):
    """Like the writer's batches: a list subclass with an id."""


def test_batches_that_are_list_subclasses_keep_their_non_finite_values() -> None:
    points = Batch([{"x": math.nan}])
    back, _ = wire.decode_call("append_metrics", wire.encode_call("append_metrics", (points, "b")))
    assert math.isnan(back[0]["x"])
    entries = Batch([{"timestamp": 1.0, "y": math.inf}])
    assert wire.decode_call("append_tracks", wire.encode_call("append_tracks", (entries, "t")))[0] == entries

def test_a_log_record_pointer_may_only_reach_its_time_or_metadata() -> None:
    body = (b'{"batchId": "b", "records": [{"ts": 1, "level": "info", "message": "m"}],'
            b' "nonFinite": {"/0/message": "NaN"}}')
    with pytest.raises(InvalidValueError, match="/0/message"):
        wire.decode_call("append_logs", body)
    record = LogRecord(1.0, "info", "m", {"": math.nan, "a": [math.inf]})
    ((back,), _) = wire.decode_call("append_logs", wire.encode_call("append_logs", ([record], "b")))
    assert math.isnan(back.metadata[""]) and back.metadata["a"] == [math.inf]
    with pytest.raises(InvalidValueError, match="finite"):
        wire.encode_call("append_logs", ([LogRecord(math.nan, "info", "m", None)], "b"))


def test_unknown_calls_changes_and_bodies_are_refused() -> None:
    with pytest.raises(InvalidValueError, match="not a store write"):
        wire.encode_call("delete_everything", ())
    with pytest.raises(InvalidValueError, match="'name'"):
        wire.encode_call("update_experiment", ({"name": "other"},))
    with pytest.raises(BadRequestError):
        wire.decode_call("set_params", b'{"params": {}, "extra": 1}')
    with pytest.raises(BadRequestError):
        wire.decode_call("append_metrics", b"not json")


@given(st.none() | st.integers(0, 2**53), st.integers(0, 10**5), st.booleans())
def test_append_answers_round_trip(first: int | None, count: int, duplicate: bool) -> None:
    result = AppendResult(first, count, duplicate)
    for kind in (wire.MetricsAppended, wire.LogsAppended):
        assert wire.decode(wire.encode(kind.of(result)), kind).record() == result
    tracks = AppendResult(None, count, duplicate)
    assert wire.decode(wire.encode(wire.TracksAppended.of(tracks)), wire.TracksAppended).record() == tracks


@given(st.lists(infos(), max_size=3), OBJECT, st.integers(0, 99))
def test_experiment_lists_and_params_answers_round_trip(
    listed: list[ExperimentInfo], data: dict[str, Any], version: int
) -> None:
    back = wire.decode(wire.encode(wire.ExperimentList.of(listed)), wire.ExperimentList).record()
    assert same(back, listed)
    doc = ParamsDoc(data, version, 1.5, None)
    assert same(wire.decode(wire.encode(wire.ParamsOut.of(doc)), wire.ParamsOut).record(), doc)


@given(st.lists(st.fixed_dictionaries({"index": st.integers(0, 2**53), "data": OBJECT}), max_size=4))
def test_metric_pages_round_trip(points: list[dict[str, Any]]) -> None:
    page = MetricPage(data=points, startIndex=0, endIndex=len(points) - 1, total=len(points), hasMore=False)
    back = wire.decode(wire.encode(wire.MetricPageOut.of(page)), wire.MetricPageOut).record()
    assert same(dict(back), page)
