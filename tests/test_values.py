"""Values round-trip exactly: metric points, params, log metadata and track fields.

Property tests (hypothesis) over finite and non-finite floats, ints of any size,
bools, None, unicode text and nested dicts/lists; numpy scalars and 0-d arrays are
converted to Python values; torch tensors when torch is installed.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import from_dtype

from ml_dash import Experiment, InvalidValueError, LocalStore
from support.experiments import fields
from support.files import jsonl, strict_json

# -- strategies ---------------------------------------------------------------------------

# Unicode text without lone surrogates (those are not encodable as UTF-8; see the
# dedicated test below for how they must be handled).
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308]
)
INTS = (
    st.integers()
    | st.integers(min_value=2**63, max_value=2**300)
    | st.integers(min_value=-(2**300), max_value=-(2**63) - 1)
    | st.sampled_from([2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**64)])
)
SCALARS = st.none() | st.booleans() | INTS | FLOATS | TEXT
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
# Field names: any unicode text; "_ts" is the point's time, not a field.
FIELD_NAMES = TEXT.filter(lambda k: k != "_ts")
METRIC_FIELDS = st.dictionaries(FIELD_NAMES, VALUES, min_size=1, max_size=6)
# Param names: nested dicts are joined with ".", so names must be non-empty and dot-free
# for the flat form to be unambiguous.
PARAM_NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="."), min_size=1, max_size=10
)
PARAM_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(PARAM_NAMES, children, max_size=4),
    max_leaves=12,
)
PARAMS = st.dictionaries(PARAM_NAMES, PARAM_VALUES, min_size=1, max_size=6)
TRACK_NAMES = FIELD_NAMES.filter(
    lambda k: k not in ("timestamp", "_nonFinite", "_batchId") and "." not in k and k != ""
)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- helpers ------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Exact, type-strict equality where NaN equals NaN and 0.0 differs from -0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def flatten(params: Mapping[str, Any], parent: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{parent}{key}."))
        else:
            out[f"{parent}{key}"] = value
    return out


_counter = itertools.count()


@pytest.fixture
def exp(dash_root: Path) -> Iterator[Experiment]:
    e = Experiment(prefix="alice/values/run-1", dash_root=dash_root, flush_interval=3600)
    with e.run:
        yield e


# -- metrics ------------------------------------------------------------------------------


def test_same_tells_nan_zero_signs_and_types_apart() -> None:
    # The comparison the property tests rely on must itself be able to fail.
    assert same([math.nan, {"a": 1}], [math.nan, {"a": 1}])
    assert not same(0.0, -0.0)
    assert not same(1, 1.0)
    assert not same(True, 1)
    assert not same({"a": math.nan}, {"a": None})


@SETTINGS
@given(points=st.lists(METRIC_FIELDS, min_size=1, max_size=4))
def test_metric_points_round_trip_exactly_through_log_and_read(exp: Experiment, points: list[dict[str, Any]]) -> None:
    name = f"s{next(_counter)}"
    stream = exp.metrics(name)
    for point in points:
        stream.log(**point)
    page = stream.read()
    assert [p["index"] for p in page["data"]] == list(range(len(points)))
    for logged, stored in zip(points, page["data"], strict=True):
        assert same(fields(stored), logged), (logged, stored)
    stream.flush()
    jsonl(Path(exp.path) / "metrics" / name / "data.jsonl")


@SETTINGS
@given(metadata=st.dictionaries(TEXT, VALUES, max_size=6), message=TEXT)
def test_log_metadata_and_message_round_trip_exactly(exp: Experiment, metadata: dict[str, Any], message: str) -> None:
    marker = f"#{next(_counter)}#"
    exp.log(marker + message, level="debug", metadata=metadata)
    (record,) = exp.logs.read(search=marker)["logs"]
    assert record["message"] == marker + message
    assert same(record["metadata"], metadata)


@SETTINGS
@given(entry=st.dictionaries(TRACK_NAMES, SCALARS | st.lists(SCALARS, max_size=3), min_size=1, max_size=5))
def test_track_fields_round_trip_exactly(exp: Experiment, entry: dict[str, Any]) -> None:
    topic = exp.tracks(f"t{next(_counter)}")
    topic.append(_ts=42.5, **entry)
    (stored,) = topic.read()
    assert stored.pop("timestamp") == 42.5
    assert same(stored, entry)


@SETTINGS
@given(params=PARAMS)
def test_params_round_trip_exactly_through_set_and_get(dash_root: Path, params: dict[str, Any]) -> None:
    prefix = f"alice/params/run-{next(_counter)}"
    with Experiment(prefix=prefix, dash_root=dash_root).run as e:
        e.params.set(**params)
        got = e.params.get()
    expected = flatten(params)
    assert same(got, expected)
    # ...and the same from disk, through a fresh store.
    assert same(LocalStore(dash_root).get_params(prefix).data, expected)
    strict_json((dash_root / prefix / "parameters.json").read_text(encoding="utf-8"))


# -- numpy, torch and other value kinds ---------------------------------------------------

NUMPY_DTYPES = [
    np.dtype(t)
    for t in (
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
    )
]


@st.composite
def numpy_scalars(draw: st.DrawFn) -> Any:
    dtype = draw(st.sampled_from(NUMPY_DTYPES))
    value = draw(from_dtype(dtype))
    scalar = dtype.type(value)
    return np.array(scalar) if draw(st.booleans()) else scalar  # 0-d array or scalar


@SETTINGS
@given(values=st.lists(numpy_scalars(), min_size=1, max_size=6))
def test_numpy_scalars_and_0d_arrays_are_stored_as_python_values(exp: Experiment, values: list[Any]) -> None:
    stream = exp.metrics(f"np{next(_counter)}")
    stream.log(**{f"v{i}": v for i, v in enumerate(values)})
    (point,) = stream.read()["data"]
    got = fields(point)
    for i, v in enumerate(values):
        expected = v.item()
        assert type(expected) in (bool, int, float)
        assert same(got[f"v{i}"], expected), (v, v.dtype, got[f"v{i}"])


def test_numpy_arrays_and_tuples_become_lists(exp: Experiment) -> None:
    exp.metrics("arr").log(
        vec=np.arange(3, dtype=np.int32),
        mat=np.array([[0.5, np.nan], [np.inf, -1.0]]),
        pair=(1, "two"),
        nested={"a": np.float32(0.25), "b": [np.int8(-3)]},
    )
    exp.params.set(shape=(2, 3), scale=np.float64(0.1))
    got = fields(exp.metrics("arr").read()["data"][0])
    assert same(got["vec"], [0, 1, 2])
    assert same(got["mat"], [[0.5, math.nan], [math.inf, -1.0]])
    assert same(got["pair"], [1, "two"])
    assert same(got["nested"], {"a": 0.25, "b": [-3]})
    assert same(exp.params.get(), {"shape": [2, 3], "scale": 0.1})


def test_numpy_scalars_as_params_and_log_metadata(exp: Experiment) -> None:
    exp.params.set(lr=np.float32(0.5), steps=np.int64(10), flag=np.bool_(False))
    exp.log("np", metadata={"loss": np.float64(math.nan), "n": np.uint64(2**64 - 1)})
    assert same(exp.params.get(), {"lr": 0.5, "steps": 10, "flag": False})
    meta = exp.logs.read()["logs"][0]["metadata"]
    assert math.isnan(meta["loss"]) and same(meta["n"], 2**64 - 1)


def test_numpy_ts_is_accepted(exp: Experiment) -> None:
    exp.metrics("t").log(x=1, _ts=np.float64(1234.5))
    exp.tracks("t").append(x=1, _ts=np.float32(8.0))
    assert exp.metrics("t").read()["data"][0]["data"]["_ts"] == 1234.5
    assert exp.tracks("t").read()[0]["timestamp"] == 8.0


def test_torch_tensors_are_converted(exp: Experiment) -> None:
    torch = pytest.importorskip("torch")
    exp.metrics("torch").log(
        loss=torch.tensor(0.5),
        step=torch.tensor(3),
        vec=torch.tensor([1.0, 2.0]),
        nan=torch.tensor(float("nan")),
        grad=torch.tensor(2.0, requires_grad=True) * 1.5,
    )
    got = fields(exp.metrics("torch").read()["data"][0])
    assert same(got["loss"], 0.5)
    assert same(got["step"], 3)
    assert same(got["vec"], [1.0, 2.0])
    assert math.isnan(got["nan"])
    assert same(got["grad"], 3.0)
    exp.params.set(lr=torch.tensor(0.25))
    assert same(exp.params.get()["lr"], 0.25)


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


@pytest.mark.parametrize(
    ("write", "field"),
    [
        (lambda e: e.metrics("m").log(good=1, opaque_field=_Opaque()), "opaque_field"),
        (lambda e: e.metrics("m").log(good=1, nested={"deep": {"opaque_key": _Opaque()}}), "opaque_key"),
        (lambda e: e.metrics("m").log(good=1, keyed={1: "int key"}), "keyed"),
        (lambda e: e.params.set(opaque_param=_Opaque()), "opaque_param"),
        (lambda e: e.log("m", metadata={"opaque_meta": _Opaque()}), "opaque_meta"),
        (lambda e: e.tracks("t").append(opaque_track=_Opaque()), "opaque_track"),
        (lambda e: e.metrics("m").log(good=1, s={1, 2}), "s"),
    ],
    ids=["metric", "nested-metric", "int-key", "param", "log-metadata", "track", "set"],
)
def test_unstorable_values_raise_at_once_naming_the_field_and_nothing_else_is_lost(
    exp: Experiment, write: Any, field: str
) -> None:
    exp.metrics("m").log(good=0)
    exp.params.set(kept=1)
    exp.log("before")
    exp.tracks("t").append(x=0, _ts=1.0)
    with pytest.raises(InvalidValueError) as info:
        write(exp)
    assert field in str(info.value)
    exp.metrics("m").log(good=2)
    page = exp.metrics("m").read()
    assert [fields(p) for p in page["data"]] == [{"good": 0}, {"good": 2}]
    assert [p["index"] for p in page["data"]] == [0, 1]
    assert exp.params.get() == {"kept": 1}
    assert [r["message"] for r in exp.logs.read()["logs"]] == ["before"]
    assert exp.tracks("t").read() == [{"timestamp": 1.0, "x": 0}]


BAD = "lone \ud800 surrogate"


def _metric_kept(e: Experiment, key: str) -> bool:
    return any(key in p["data"] for p in e.metrics("m").read()["data"])


SURROGATE_CASES: dict[str, tuple[Any, str, Any]] = {
    # id: (write, what the error or warning must name, was the bad value kept?)
    "metric-value": (lambda e: e.metrics("m").log(good=1, note=BAD), "note", lambda e: _metric_kept(e, "note")),
    "metric-key": (
        lambda e: e.metrics("m").log(good=1, **{"key\udcff": 1.0}),
        "key",
        lambda e: _metric_kept(e, "key\udcff"),
    ),
    "log-message": (lambda e: e.log(BAD), "message", lambda e: BAD in [r["message"] for r in e.logs.read()["logs"]]),
    "log-metadata": (
        lambda e: e.log("m", metadata={"note": BAD}),
        "note",
        lambda e: any(r["metadata"].get("note") == BAD for r in e.logs.read()["logs"]),
    ),
    "param": (
        lambda e: e.params.set(note=BAD),
        "note",
        lambda e: LocalStore(e.dash_root).get_params(e.prefix).data.get("note") == BAD,
    ),
    "track": (
        lambda e: e.tracks("t").append(note=BAD, _ts=5.0),
        "note",
        lambda e: any(x.get("note") == BAD for x in e.tracks("t").read()),
    ),
}


@pytest.mark.parametrize("case", list(SURROGATE_CASES.values()), ids=list(SURROGATE_CASES))
def test_lone_surrogate_text_is_kept_or_rejected_by_name_without_losing_other_data(
    exp: Experiment, case: tuple[Any, str, Any]
) -> None:
    """A str with a lone surrogate cannot be written as UTF-8. COMPAT: accept values
    losslessly, or "reject truly unserialisable values with a clear error that names the
    field, losing nothing else". Accepted here: kept exactly; or InvalidValueError at the
    call naming the field; or (for buffered writes) a warning naming the field."""
    write, name, kept = case
    exp.metrics("m").log(good=0)
    exp.params.set(kept=1)
    exp.log("before")
    exp.tracks("t").append(x=0, _ts=1.0)
    raised: InvalidValueError | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            write(exp)
        except InvalidValueError as err:
            raised = err
        exp.metrics("m").log(good=2)
        exp.log("after")
        exp.tracks("t").append(x=2, _ts=9.0)
        exp.params.set(also_kept=2)
        exp.flush()
        was_kept = kept(exp)
    warned = [str(w.message) for w in caught if name in str(w.message)]
    if raised is not None:
        assert name in str(raised)
    else:
        assert was_kept or warned, "the value was neither stored, nor rejected with an error or warning naming it"
    # Nothing else is lost.
    page = exp.metrics("m").read()["data"]
    goods = [p["data"].get("good") for p in page]
    assert goods in ([0, 2], [0, 1, 2]), goods
    assert [p["index"] for p in page] == list(range(len(goods)))
    messages = [r["message"] for r in exp.logs.read()["logs"]]
    assert messages[:1] == ["before"] and messages[-1:] == ["after"] and len(messages) in (2, 3), messages
    on_disk = LocalStore(exp.dash_root).get_params(exp.prefix).data
    assert {"kept": 1, "also_kept": 2}.items() <= on_disk.items()
    stamps = [e["timestamp"] for e in exp.tracks("t").read()]
    assert stamps[:1] == [1.0] and stamps[-1:] == [9.0], stamps


def test_experiment_metadata_accepts_numpy_scalars_and_everything_is_written(dash_root: Path) -> None:
    # close_timeout only bounds the wait when writing fails; nothing here asserts a time.
    e = Experiment(
        prefix="alice/values/meta",
        dash_root=dash_root,
        close_timeout=2.0,
        metadata={"lr": np.float32(0.5), "n": np.int64(3), "shape": np.array([2, 3])},
    )
    with e.run:
        e.metrics("m").log(x=1)
    assert e.close_report is not None and e.close_report.ok, str(e.close_report)
    doc = json.loads((Path(e.path) / "experiment.json").read_text(encoding="utf-8"))
    assert {k: v for k, v in doc["metadata"].items() if k != "context"} == {"lr": 0.5, "n": 3, "shape": [2, 3]}
    assert doc["status"] == "COMPLETED"
    assert (Path(e.path) / "metrics/m/data.jsonl").read_text(encoding="utf-8").count("\n") == 1


def test_experiment_metadata_with_an_unstorable_value_is_rejected_naming_it(dash_root: Path) -> None:
    with pytest.raises(InvalidValueError, match="opaque_meta"):
        e = Experiment(
            prefix="alice/values/meta", dash_root=dash_root, close_timeout=2.0, metadata={"opaque_meta": _Opaque()}
        )
        e.run.start()
        e.run.complete()
