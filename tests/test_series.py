"""Chart series that keep every extreme: M4 (``ml_dash.series``) and the series index.

The one definition of the answer is ``series.m4_reference`` (plain Python, brute
force). The properties: ``m4`` (numpy) equals it on random arrays; the index
(``stores.series_index.SeriesIndex``) equals it on random streams written by the real
LocalStore and read back with ``read_metrics``, for every x-axis, range and width:
the same points (x, y, index) in the same order, the same non-finite points, the same
counts. Most index tests shrink the pyramid (BASE 4, FANOUT 2) so that small streams
have many levels; a few run with the real sizes.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ml_dash.stores.series_index as si
from ml_dash import Experiment
from ml_dash.errors import InvalidValueError
from ml_dash.records import ExperimentInfo
from ml_dash.series import Series, column_of, columns, m4, m4_reference
from ml_dash.stores import series_lines
from ml_dash.stores.local import LocalStore
from ml_dash.stores.series_index import INDEX_DIR, MANIFEST, SeriesIndex

PREFIX = "alice/charts/run-1"
STREAM = "train"


# -- helpers -------------------------------------------------------------------------------


def as_number(value: Any) -> float | None:
    """The rule for a point's x or y: an int or float (not a bool), else missing."""
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return None


def brute_force(store: LocalStore, y: str, x: str, x0: float | None, x1: float | None, width: int) -> Series | None:
    """The expected answer: every point read back with read_metrics, then m4_reference."""
    page = store.read_metrics(PREFIX, STREAM, 0, 10**9)
    points, xs = [], []
    for line in page["data"]:
        xv = float(line["index"]) if x == "index" else as_number(line["data"].get(x))
        yv = as_number(line["data"].get(y))
        if xv is not None and math.isfinite(xv):
            xs.append(xv)
        if xv is not None and yv is not None:
            points.append((xv, yv, line["index"]))
    if not xs:
        return None
    lo = min(xs) if x0 is None else x0
    hi = max(xs) if x1 is None else x1
    if lo > hi:
        return None
    raw, finite, nonfinite, count, nonfinite_count = m4_reference(points, lo, hi, width)
    return Series(
        np.array([p[0] for p in finite]),
        np.array([p[1] for p in finite]),
        np.array([p[2] for p in finite], dtype=np.int64),
        np.array([p[0] for p in nonfinite]),
        np.array([p[1] for p in nonfinite]),
        np.array([p[2] for p in nonfinite], dtype=np.int64),
        raw,
        count,
        nonfinite_count,
        lo,
        hi,
        width,
    )


def assert_same(got: Series, expected: Series | None) -> None:
    if expected is None:
        assert got.count == 0 and len(got.x) == 0 and len(got.nonfinite_x) == 0
        return
    assert (got.raw, got.count, got.nonfinite_count) == (expected.raw, expected.count, expected.nonfinite_count)
    assert got.index.dtype == got.nonfinite_index.dtype == np.int64
    assert got.x.dtype == got.y.dtype == got.nonfinite_x.dtype == got.nonfinite_y.dtype == np.float64
    assert got.index.tolist() == expected.index.tolist()
    assert got.x.tolist() == expected.x.tolist()
    assert got.y.tolist() == expected.y.tolist()
    assert got.nonfinite_index.tolist() == expected.nonfinite_index.tolist()
    assert got.nonfinite_x.tolist() == expected.nonfinite_x.tolist()
    assert [repr(v) for v in got.nonfinite_y.tolist()] == [repr(v) for v in expected.nonfinite_y.tolist()]
    assert (got.x0, got.x1, got.width) == (expected.x0, expected.x1, expected.width)


def stream_folder(store: LocalStore) -> str:
    return os.path.join(store.experiment_dir(PREFIX), "metrics", STREAM)


def append(store: LocalStore, points: list[dict[str, Any]], batch: int = 1000) -> None:
    for start in range(0, len(points), batch):
        store.append_metrics(PREFIX, STREAM, points[start : start + batch])


@pytest.fixture
def small_pyramid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes of 4 lines, 2 children each: small streams get deep pyramids and many
    bucket edges fall inside nodes."""
    monkeypatch.setattr(si, "BASE", 4)
    monkeypatch.setattr(si, "FANOUT", 2)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s = LocalStore(tmp_path / ".dash")
    yield s
    s.close()


def walk(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    loss = np.cumsum(rng.normal(0, 1, n)).tolist()
    return [{"loss": v, "step": i, "_ts": 1_795_730_519.5 + i * 0.25} for i, v in enumerate(loss)]


# -- m4 over arrays ------------------------------------------------------------------------

specials = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0])
small_numbers = st.one_of(st.integers(-6, 6).map(float), specials)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(small_numbers, small_numbers), max_size=120),
    st.integers(-8, 8),
    st.integers(0, 16),
    st.integers(1, 12),
)
def test_m4_equals_brute_force_on_random_arrays(
    pairs: list[tuple[float, float]], x0: int, span: int, width: int
) -> None:
    x = np.array([p[0] for p in pairs], dtype=np.float64)
    y = np.array([p[1] for p in pairs], dtype=np.float64)
    got = m4(x, y, x0, x0 + span, width)
    raw, finite, nonfinite, count, nonfinite_count = m4_reference(
        [(a, b, i) for i, (a, b) in enumerate(pairs)], x0, x0 + span, width
    )
    assert (got.raw, got.count, got.nonfinite_count) == (raw, count, nonfinite_count)
    assert list(zip(got.x.tolist(), got.y.tolist(), got.index.tolist(), strict=True)) == finite
    assert got.nonfinite_index.tolist() == [p[2] for p in nonfinite]


finite_floats = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(finite_floats, finite_floats, st.lists(st.floats(allow_nan=False), max_size=20), st.integers(1, 5000))
def test_one_bucket_function_for_arrays_and_numbers(a: float, b: float, xs: list[float], width: int) -> None:
    x0, x1 = min(a, b), max(a, b)
    probe = [*xs, x0, x1, (x0 + x1) / 2]
    assert columns(np.array(probe), x0, x1, width).tolist() == [column_of(v, x0, x1, width) for v in probe]


def test_m4_keeps_at_most_four_points_per_bucket_and_every_extreme() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=100_000)
    y[54_321] = 1e6
    y[12_345] = -1e6
    got = m4(np.arange(len(y)), y, 0, len(y) - 1, 100)
    assert not got.raw and got.count == 100_000
    assert len(got.x) <= 400
    assert {54_321, 12_345} <= set(got.index.tolist())
    assert got.y.max() == 1e6 and got.y.min() == -1e6


def test_a_range_of_at_most_four_points_per_pixel_is_answered_raw() -> None:
    got = m4(np.arange(40.0), np.arange(40.0), 0, 39, 10)
    assert got.raw and got.index.tolist() == list(range(40))
    assert not m4(np.arange(41.0), np.arange(41.0), 0, 40, 10).raw


def test_non_finite_values_are_reported_apart_never_dropped() -> None:
    y = np.array([1.0, math.nan, 2.0, math.inf, -math.inf, 3.0])
    got = m4(np.arange(6.0), y, 0, 5, 100)
    assert got.index.tolist() == [0, 2, 5]
    assert got.nonfinite_index.tolist() == [1, 3, 4]
    assert got.to_dict()["nonFinite"]["value"] == ["NaN", "Infinity", "-Infinity"]
    assert got.nonfinite_count == 3 and got.count == 6


def test_to_dict_encodes_as_json() -> None:
    got = m4(np.arange(10.0), np.r_[np.arange(9.0), math.nan], 0, 9, 3)
    doc = json.loads(msgspec.json.encode(got.to_dict()))
    assert doc["x"] == [float(i) for i in range(9)] and doc["index"] == list(range(9))
    assert doc["nonFinite"] == {"x": [9.0], "index": [9], "value": ["NaN"]}
    assert doc["raw"] is True and doc["count"] == 10 and doc["nonFiniteCount"] == 1


@pytest.mark.parametrize(
    ("x0", "x1", "width", "field"),
    [(0, 1, 0, "width"), (0, 1, 10**6, "width"), (2, 1, 10, "x0"), (math.nan, 1, 10, "x0"), (0, math.inf, 10, "x1")],
)
def test_bad_query_raises_naming_the_argument(x0: float, x1: float, width: int, field: str) -> None:
    with pytest.raises(InvalidValueError, match=field):
        m4(np.arange(3.0), np.arange(3.0), x0, x1, width)


# -- the index against brute force ---------------------------------------------------------

values = st.one_of(
    st.floats(-5, 5, allow_nan=False).map(lambda v: round(v, 1)),
    st.integers(-5, 5),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.sampled_from(["text", True, None, {"nested": 1}, 2**70, 10**400, -(10**400)]),
)


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Points with a y that may be missing, non-finite or not a number; a `step` that
    never decreases except at rare resets; `wobbly`, any order; `_ts` almost sorted."""
    n = draw(st.integers(0, 220))
    rng = random.Random(draw(st.integers(0, 2**32)))
    flat = draw(st.booleans())  # long runs of equal values: ties everywhere
    points, step = [], 0
    for i in range(n):
        point: dict[str, Any] = {}
        roll = rng.random()
        if roll < 0.75:
            point["loss"] = float(rng.randint(0, 2)) if flat else round(rng.gauss(0, 3), 1)
        elif roll < 0.85:
            point["loss"] = draw(values)
        step += rng.choice([0, 1, 1, 2]) if rng.random() > 0.01 else -rng.randint(1, 20)
        if rng.random() > 0.03:
            point["step"] = step
        point["wobbly"] = rng.randint(-30, 30)
        point["_ts"] = 1000.0 + i * 0.5 + (rng.random() - 0.9 if rng.random() < 0.02 else 0.0)
        if rng.random() < 0.02:
            point["step"] = draw(values)
        points.append(point)
    return points


queries = st.tuples(
    st.sampled_from(["index", "step", "_ts", "wobbly", "loss", "nothing"]),
    st.one_of(st.none(), st.integers(-20, 240).map(float)),
    st.one_of(st.none(), st.integers(-20, 260).map(float)),
    st.integers(1, 40),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(streams(), st.lists(queries, min_size=1, max_size=4), st.integers(1, 50))
def test_index_answer_equals_brute_force(
    small_pyramid: None, tmp_path_factory: pytest.TempPathFactory, points: list[dict[str, Any]], asks: Any, batch: int
) -> None:
    store = LocalStore(tmp_path_factory.mktemp("series") / ".dash")
    try:
        append(store, points, batch)
        index = SeriesIndex(stream_folder(store))
        for x, x0, x1, width in asks:
            if x0 is not None and x1 is not None and x0 > x1:
                x0, x1 = x1, x0
            assert_same(index.series("loss", x, x0, x1, width), brute_force(store, "loss", x, x0, x1, width))
    finally:
        store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(streams(), st.lists(st.integers(1, 60), min_size=1, max_size=6), queries)
def test_extending_piece_by_piece_equals_building_at_once(
    small_pyramid: None,
    tmp_path_factory: pytest.TempPathFactory,
    points: list[dict[str, Any]],
    cuts: list[int],
    ask: Any,
) -> None:
    store = LocalStore(tmp_path_factory.mktemp("series") / ".dash")
    try:
        folder = stream_folder(store)
        growing = SeriesIndex(folder)
        done = 0
        for cut in cuts:
            append(store, points[done : done + cut], 7)
            done += cut
            growing.refresh()
        append(store, points[done:], 7)
        x, x0, x1, width = ask
        if x0 is not None and x1 is not None and x0 > x1:
            x0, x1 = x1, x0
        answer = growing.series("loss", x, x0, x1, width)
        fresh = SeriesIndex(folder, writable=False)
        fresh._loaded = True  # build from the data, not from the files `growing` wrote
        assert_same(fresh.series("loss", x, x0, x1, width), brute_force(store, "loss", x, x0, x1, width))
        assert_same(answer, brute_force(store, "loss", x, x0, x1, width))
        if not points:
            return
        assert growing._state is not None and fresh._state is not None
        assert_same_index(growing._state, fresh._state)
        reopened = SeriesIndex(folder)
        assert_same(reopened.series("loss", x, x0, x1, width), answer)
        if growing._state.nodes:  # it wrote files: the new object uses them
            assert reopened._state is not None
            assert reopened._state.generation == growing._state.generation
    finally:
        store.close()


def assert_same_index(a: Any, b: Any) -> None:
    assert a.offsets.view.tolist() == b.offsets.view.tolist()
    assert sorted(a.fields) == sorted(b.fields)
    for name in a.fields:
        assert len(a.fields[name]) == len(b.fields[name])
        for level_a, level_b in zip(a.fields[name], b.fields[name], strict=True):
            assert level_a.view.tobytes() == level_b.view.tobytes(), name


# -- real sizes ----------------------------------------------------------------------------


def test_a_spike_at_an_off_grid_index_is_in_the_full_range_answer(store: LocalStore) -> None:
    n = 200_003
    points = walk(n, seed=5)
    spike = 131_071 + 17
    points[spike]["loss"] = 1e9
    append(store, points, 50_000)
    index = SeriesIndex(stream_folder(store))
    for x in ("index", "_ts", "step"):
        got = index.series("loss", x, width=1000)
        assert not got.raw and spike in got.index.tolist(), x
        assert got.y.max() == 1e9
        assert got.count == n
    assert_same(index.series("loss", "index", width=700), brute_force(store, "loss", "index", None, None, 700))
    assert_same(index.series("loss", "_ts", width=333), brute_force(store, "loss", "_ts", None, None, 333))
    zoom = (float(spike - 5000), float(spike + 5000))
    assert_same(index.series("loss", "step", *zoom, width=1000), brute_force(store, "loss", "step", *zoom, 1000))


def test_index_stays_under_five_percent_of_the_data(store: LocalStore) -> None:
    append(store, walk(100_000), 20_000)
    folder = stream_folder(store)
    SeriesIndex(folder).refresh()
    data = os.path.getsize(os.path.join(folder, "data.jsonl"))
    index = sum(p.stat().st_size for p in Path(folder, INDEX_DIR).iterdir())
    assert index < 0.05 * data


def test_points_logged_through_the_sdk_give_the_same_answer(tmp_path: Path) -> None:
    root = tmp_path / ".dash"
    with Experiment(prefix=PREFIX, dash_root=root, echo=False).run as exp:
        for i in range(5_000):
            exp.metrics(STREAM).log(loss=math.sin(i / 50) if i != 4321 else math.nan, step=i // 3)
    store = LocalStore(root)
    index = SeriesIndex(stream_folder(store))
    for x in ("index", "_ts", "step"):
        assert_same(index.series("loss", x, width=100), brute_force(store, "loss", x, None, None, 100))
    assert 4321 in index.series("loss", width=100).nonfinite_index.tolist()
    store.close()


# -- a crash must never make a chart wrong -------------------------------------------------


def check(store: LocalStore, index: SeriesIndex, width: int = 37) -> None:
    for x in ("index", "_ts"):
        assert_same(index.series("loss", x, width=width), brute_force(store, "loss", x, None, None, width))


def test_a_truncated_data_file_is_indexed_again(small_pyramid: None, store: LocalStore) -> None:
    append(store, walk(500))
    folder = stream_folder(store)
    check(store, SeriesIndex(folder))
    data = os.path.join(folder, "data.jsonl")
    with open(data, "rb") as f:
        lines = f.readlines()
    with open(data, "r+b") as f:
        f.truncate(sum(len(line) for line in lines[:200]))
    store.close()
    append(store, walk(300, seed=9))  # indexes 200.. with other values
    check(store, SeriesIndex(folder))


def test_a_replaced_data_file_is_indexed_again(small_pyramid: None, store: LocalStore) -> None:
    append(store, walk(400))
    folder = stream_folder(store)
    index = SeriesIndex(folder)
    check(store, index)
    data = os.path.join(folder, "data.jsonl")
    store.close()
    other = LocalStore(Path(store.root).parent / "other")
    other.append_metrics(PREFIX, STREAM, walk(450, seed=4))
    os.replace(os.path.join(stream_folder(other), "data.jsonl"), data)
    other.close()
    check(store, index)  # the same object notices
    check(store, SeriesIndex(folder))  # and a new one


def test_a_data_file_changed_near_the_end_of_the_index_is_indexed_again(small_pyramid: None, store: LocalStore) -> None:
    append(store, walk(300))
    folder = stream_folder(store)
    check(store, SeriesIndex(folder))
    data = os.path.join(folder, "data.jsonl")
    with open(data, "rb") as f:
        text = f.read()
    at = text.rindex(b'"loss":', 0, len(text) - 400) + len(b'"loss":')
    changed = text[:at] + (b"9" if text[at : at + 1] != b"9" else b"8") + text[at + 1 :]
    with open(data, "wb") as f:  # same inode, same size, one digit different
        f.write(changed)
    check(store, SeriesIndex(folder))


def test_a_torn_last_line_is_ignored_then_repaired(small_pyramid: None, store: LocalStore) -> None:
    append(store, walk(150))
    folder = stream_folder(store)
    index = SeriesIndex(folder)
    with open(os.path.join(folder, "data.jsonl"), "ab") as f:
        f.write(b'{"index":150,"data":{"loss":12')
    check(store, index)
    with pytest.warns(RuntimeWarning, match="incomplete line"):
        store.append_metrics(PREFIX, STREAM, walk(20, seed=3))
    check(store, index)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest", "empty-manifest", "offsets"])
def test_a_damaged_index_is_rebuilt_never_trusted(small_pyramid: None, store: LocalStore, damage: str) -> None:
    append(store, walk(600))
    folder = stream_folder(store)
    check(store, SeriesIndex(folder))
    index_dir = Path(folder, INDEX_DIR)
    level0 = sorted(p for p in index_dir.iterdir() if p.name.endswith(".0"))[0]
    offsets = next(p for p in index_dir.iterdir() if p.name.endswith(".offsets"))
    if damage == "flip":
        raw = bytearray(level0.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        level0.write_bytes(bytes(raw))
    elif damage == "truncate":
        level0.write_bytes(level0.read_bytes()[:-5])
    elif damage == "delete":
        level0.unlink()
    elif damage == "manifest":
        Path(index_dir, MANIFEST).write_text('{"format": "ml-dash-series", "version": 1')
    elif damage == "empty-manifest":
        Path(index_dir, MANIFEST).write_text("")
    else:
        raw = bytearray(offsets.read_bytes())
        raw[8 * 5 : 8 * 6] = (12345).to_bytes(8, "little")
        offsets.write_bytes(bytes(raw))
    check(store, SeriesIndex(folder))
    check(store, SeriesIndex(folder))  # and from what the rebuild wrote


def test_consistent_but_wrong_offsets_never_give_a_wrong_answer(small_pyramid: None, store: LocalStore) -> None:
    """An index whose CRCs are right but whose offsets are not (a bug, a foreign copy)."""
    append(store, walk(600))
    folder = stream_folder(store)
    SeriesIndex(folder).refresh()
    state = si.load(os.path.join(folder, INDEX_DIR))
    assert state is not None
    state.offsets.buf[3] += 1
    state.generation = "forged000000"
    si.persist(state, os.path.join(folder, INDEX_DIR))
    check(store, SeriesIndex(folder))


def test_an_index_that_cannot_be_written_stays_in_memory(small_pyramid: None, store: LocalStore) -> None:
    append(store, walk(300))
    folder = stream_folder(store)
    Path(folder, INDEX_DIR).write_text("a file where the folder goes")
    index = SeriesIndex(folder)
    with pytest.warns(RuntimeWarning, match="cannot write the series index"):
        check(store, index)
    append(store, walk(50, seed=2))
    check(store, index)


def test_a_read_only_index_writes_no_file(small_pyramid: None, store: LocalStore) -> None:
    append(store, walk(300))
    folder = stream_folder(store)
    check(store, SeriesIndex(folder, writable=False))
    assert not Path(folder, INDEX_DIR).exists()


def test_two_readers_share_one_folder(small_pyramid: None, store: LocalStore) -> None:
    folder = stream_folder(store)
    first, second = SeriesIndex(folder), SeriesIndex(folder)
    errors: list[BaseException] = []

    def read(index: SeriesIndex) -> None:
        try:
            for _ in range(15):
                index.series("loss", width=9)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for round_ in range(4):
        append(store, walk(97, seed=round_))
        threads = [threading.Thread(target=read, args=(ix,)) for ix in (first, second, first)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    check(store, first)
    check(store, second)
    check(store, SeriesIndex(folder))


def test_a_stream_without_data_has_an_empty_series(tmp_path: Path) -> None:
    got = SeriesIndex(tmp_path / "nothing").series("loss")
    assert got.count == 0 and len(got.x) == 0 and got.x0 is None


def test_a_field_never_logged_has_an_empty_series(store: LocalStore) -> None:
    append(store, walk(100))
    got = SeriesIndex(stream_folder(store)).series("accuracy", width=10)
    assert got.count == 0 and got.x0 == 0.0 and got.x1 == 99.0


# -- what the pyramid cannot answer is scanned, never guessed ------------------------------


def rewrite_lines(folder: str, change: Any) -> None:
    """Rewrite data.jsonl line by line (``change(number, line) -> line``), in place."""
    path = os.path.join(folder, "data.jsonl")
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")[:-1]
    with open(path, "r+b") as f:
        f.write(b"".join(change(i, line) + b"\n" for i, line in enumerate(lines)))
        f.truncate()


@pytest.mark.parametrize("x", ["index", "_ts", "step"])
def test_an_index_that_is_not_the_line_number_is_answered_by_a_scan(
    small_pyramid: None, store: LocalStore, x: str
) -> None:
    append(store, walk(300))
    folder = stream_folder(store)
    rewrite_lines(folder, lambda i, line: line.replace(b'{"index":%d,' % i, b'{"index":%d,' % (3 * i + 7)))
    index = SeriesIndex(folder)
    for width in (5, 40, 100):
        assert_same(index.series("loss", x, width=width), brute_force(store, "loss", x, None, None, width))
    assert index._state is not None and not index._state.regular


def test_unreadable_lines_count_as_lines_without_a_point(small_pyramid: None, store: LocalStore) -> None:
    append(store, walk(200))
    folder = stream_folder(store)
    broken = {50: b'{"index":50,"data":null}', 51: b"{not json at all", 120: b'{"index":120,"data":[1,2]}'}
    rewrite_lines(folder, lambda i, line: broken.get(i, line))
    index = SeriesIndex(folder)
    with pytest.warns(RuntimeWarning, match="unreadable"):
        for x in ("index", "_ts"):
            assert_same(index.series("loss", x, width=10), brute_force(store, "loss", x, None, None, 10))


def test_fields_beyond_the_limit_are_answered_by_a_scan(
    small_pyramid: None, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(si, "MAX_FIELDS", 2)
    append(store, [{**p, "a": i % 7, "b": -i} for i, p in enumerate(walk(300))])
    index = SeriesIndex(stream_folder(store))
    for y, x in (("loss", "index"), ("loss", "_ts"), ("a", "step"), ("b", "loss")):
        got = index.series(y, x, width=20)
        page_store_answer = brute_force_field(store, y, x, 20)
        assert_same(got, page_store_answer)
    assert index._state is not None and index._state.overflow


def brute_force_field(store: LocalStore, y: str, x: str, width: int) -> Series | None:
    page = store.read_metrics(PREFIX, STREAM, 0, 10**9)
    points, xs = [], []
    for line in page["data"]:
        xv = float(line["index"]) if x == "index" else as_number(line["data"].get(x))
        yv = as_number(line["data"].get(y))
        if xv is not None and math.isfinite(xv):
            xs.append(xv)
        if xv is not None and yv is not None:
            points.append((xv, yv, line["index"]))
    if not xs:
        return None
    raw, finite, nonfinite, count, nonfinite_count = m4_reference(points, min(xs), max(xs), width)
    return Series(
        np.array([p[0] for p in finite]),
        np.array([p[1] for p in finite]),
        np.array([p[2] for p in finite], dtype=np.int64),
        np.array([p[0] for p in nonfinite]),
        np.array([p[1] for p in nonfinite]),
        np.array([p[2] for p in nonfinite], dtype=np.int64),
        raw,
        count,
        nonfinite_count,
        min(xs),
        max(xs),
        width,
    )


def test_a_line_changed_under_the_index_is_noticed_when_read(small_pyramid: None, store: LocalStore) -> None:
    """A change in the middle of the file (where no CRC looks) shows when its lines are
    read raw: the index is rebuilt and the answer is still the brute-force one. (Lines
    the query answers from whole nodes are not read: such an edit in place is not a
    crash and is not looked for; see docs/series.md.)"""
    append(store, walk(3000))
    folder = stream_folder(store)
    index = SeriesIndex(folder)
    index.refresh()
    rewrite_lines(folder, lambda i, line: line.replace(b'{"index":1501,', b'{"index":1599,') if i == 1501 else line)
    zoom = (1501.0, 1700.0)  # the range starts inside the node of line 1501: read raw
    assert_same(index.series("loss", "index", *zoom, width=3), brute_force(store, "loss", "index", *zoom, 3))
    assert index._state is not None and not index._state.regular


def test_lines_longer_than_a_read_chunk(
    small_pyramid: None, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(si, "_CHUNK_BYTES", 64)
    append(store, [{**p, "note": "x" * 300} for p in walk(120)])
    check(store, SeriesIndex(stream_folder(store)), width=7)


def test_uneven_x_is_probed_exactly(store: LocalStore) -> None:
    """x that never decreases but jumps unevenly (bursts of logging): the probes that
    find each bucket edge inside a node guess wrong and bisect; still exact."""
    rng = np.random.default_rng(11)
    n = 60_000
    clock = np.cumsum(rng.pareto(0.8, n) + 1e-3).tolist()
    loss = np.cumsum(rng.normal(0, 1, n)).tolist()
    append(store, [{"loss": y, "clock": x} for x, y in zip(clock, loss, strict=True)], 10_000)
    index = SeriesIndex(stream_folder(store))
    for width in (1000, 257):
        assert_same(index.series("loss", "clock", width=width), brute_force(store, "loss", "clock", None, None, width))
    lo, hi = clock[20_000], clock[45_000]
    assert_same(index.series("loss", "clock", lo, hi, 500), brute_force(store, "loss", "clock", lo, hi, 500))


def test_the_small_pyramid_reaches_every_part_of_the_index(small_pyramid: None, store: LocalStore) -> None:
    """The sizes set on ``series_index`` are the ones its parts use (they live in
    ``series_records``): 40 lines make 10 nodes of 4 lines, on 4 levels of fanout 2."""
    append(store, walk(40))
    index = SeriesIndex(stream_folder(store))
    index.refresh()
    assert index._state is not None and index._state.nodes == 10
    assert [len(level) for level in index._state.fields["loss"]] == [10, 5, 2, 1]


# -- field statistics ----------------------------------------------------------------------


def brute_force_stats(store: LocalStore) -> dict[str, dict[str, Any]]:
    """The expected field_stats: every point read back with read_metrics."""
    out: dict[str, dict[str, Any]] = {}
    for line in store.read_metrics(PREFIX, STREAM, 0, 10**9)["data"]:
        for name, raw in line.get("data", {}).items():  # a point without fields has no "data"
            value = as_number(raw)
            if value is None:
                continue
            s = out.setdefault(
                name,
                dict.fromkeys(("count", "first", "last", "min", "max", "lastIndex", "minIndex", "maxIndex"))
                | {"count": 0, "nonFinite": 0},
            )
            if not math.isfinite(value):
                s["nonFinite"] += 1
                continue
            s["count"] += 1
            if s["first"] is None:
                s["first"] = value
            s["last"], s["lastIndex"] = value, line["index"]
            if s["min"] is None or value < s["min"]:  # strictly: ties go to the earliest
                s["min"], s["minIndex"] = value, line["index"]
            if s["max"] is None or value > s["max"]:
                s["max"], s["maxIndex"] = value, line["index"]
    return out


def assert_same_stats(got: Mapping[str, Mapping[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    assert sorted(got) == sorted(expected)
    for name, stats in expected.items():
        # repr: 0.0 and -0.0 differ, and an int where a float belongs would show.
        assert {k: repr(v) for k, v in got[name].items()} == {k: repr(v) for k, v in stats.items()}, name


@st.composite
def field_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Points whose fields start late and are often missing; values that are
    non-finite, not numbers or ints beyond any float; a `note` that is text before it
    holds numbers; runs of equal values (ties) and -0.0."""
    n = draw(st.integers(0, 160))
    rng = random.Random(draw(st.integers(0, 2**32)))
    flat = draw(st.booleans())
    names = ["loss", "acc", "lr/group~0", "note"]
    starts = {name: rng.randint(0, n) for name in names}
    text_until = rng.randint(0, n)
    points = []
    for i in range(n):
        point: dict[str, Any] = {}
        for name in names:
            if i < starts[name] or rng.random() < 0.3:
                continue
            roll = rng.random()
            if name == "note" and i < text_until:
                point[name] = "text"
            elif roll < 0.75:
                point[name] = rng.choice([0.0, -0.0, 1.0]) if flat else round(rng.gauss(0, 3), 1)
            else:
                point[name] = draw(values)
        points.append(point)
    return points


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field_streams(), st.lists(st.integers(1, 60), min_size=1, max_size=5))
def test_field_stats_equal_brute_force_as_the_stream_grows(
    small_pyramid: None, tmp_path_factory: pytest.TempPathFactory, points: list[dict[str, Any]], cuts: list[int]
) -> None:
    store = LocalStore(tmp_path_factory.mktemp("stats") / ".dash")
    try:
        folder = stream_folder(store)
        growing = SeriesIndex(folder)
        if not points:
            assert growing.field_stats() == {} and growing.fields() == []
            return
        done = 0
        for cut in [*cuts, len(points)]:
            append(store, points[done : done + cut], 7)
            done = min(len(points), done + cut)
            expected = brute_force_stats(store)
            assert_same_stats(growing.field_stats(), expected)
            assert growing.fields() == sorted(expected)
        fresh = SeriesIndex(folder, writable=False)
        fresh._loaded = True  # built from the data at once
        assert_same_stats(fresh.field_stats(), expected)
        assert_same_stats(SeriesIndex(folder).field_stats(), expected)  # from the files `growing` wrote
    finally:
        store.close()


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of lines of each decode of data lines (every block decode goes
    through series_lines.decode_block; single lines through decode_line)."""
    calls: list[int] = []
    block, line = series_lines.decode_block, series_lines.decode_line

    def count_block(data: bytes, *args: Any) -> Any:
        out = block(data, *args)
        calls.append(out.lines)
        return out

    def count_line(data: bytes) -> Any:
        calls.append(1)
        return line(data)

    monkeypatch.setattr(series_lines, "decode_block", count_block)
    monkeypatch.setattr(series_lines, "decode_line", count_line)
    return calls


@pytest.mark.parametrize("n", [20_000, 20_007])
def test_field_stats_of_a_current_index_decode_no_indexed_line(store: LocalStore, decoded: list[int], n: int) -> None:
    """Real sizes: 625 nodes of 32 lines, and a tail of 0 or 7 lines. The build decodes
    every line once; then field_stats decodes the tail and at most the two lines with
    the first and last values, and fields() the tail only."""
    append(store, walk(n), 5_000)
    index = SeriesIndex(stream_folder(store))
    index.refresh()
    assert sum(decoded) == 20_000  # the counter sees the build (of the nodes, not the tail)
    state = index._state
    assert state is not None and state.nodes == 625 and state.tail_lines == n - 20_000
    decoded.clear()
    stats = index.field_stats()
    assert len(decoded) <= 2 and sum(decoded) <= state.tail_lines + 2
    assert_same_stats(stats, brute_force_stats(store))
    decoded.clear()
    assert index.fields() == ["_ts", "loss", "step"]
    assert sum(decoded) == state.tail_lines
    decoded.clear()
    tail = state.tail_lines
    append(store, walk(1_000, seed=2))  # growth: only the new lines are decoded
    assert_same_stats(index.field_stats(), brute_force_stats(store))
    assert sum(decoded) <= tail + 1_000 + 2 and index._state is state


def test_field_stats_use_the_lines_index_when_it_is_not_the_line_number(small_pyramid: None, store: LocalStore) -> None:
    append(store, walk(300))
    folder = stream_folder(store)
    rewrite_lines(folder, lambda i, line: line.replace(b'{"index":%d,' % i, b'{"index":%d,' % (3 * i + 7)))
    index = SeriesIndex(folder)
    assert_same_stats(index.field_stats(), brute_force_stats(store))
    assert index._state is not None and not index._state.regular


def test_field_stats_beyond_the_indexed_fields_come_from_a_scan(
    small_pyramid: None, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(si, "MAX_FIELDS", 2)
    append(store, [{**p, "a": i % 7, "b": -i} for i, p in enumerate(walk(300))])
    index = SeriesIndex(stream_folder(store))
    expected = brute_force_stats(store)
    assert_same_stats(index.field_stats(), expected)
    assert index.fields() == sorted(expected) == ["_ts", "a", "b", "loss", "step"]
    assert index._state is not None and index._state.overflow


def test_a_field_first_logged_as_text_is_indexed_once_it_holds_numbers(small_pyramid: None, store: LocalStore) -> None:
    append(store, [{"loss": 1.0, "note": "text"} for _ in range(40)])
    index = SeriesIndex(stream_folder(store))
    index.refresh()
    append(store, [{"loss": 2.0, "note": i} for i in range(40)])
    assert_same(index.series("note", width=10), brute_force(store, "note", "index", None, None, 10))
    assert_same_stats(index.field_stats(), brute_force_stats(store))
    assert index._state is not None and "note" in index._state.fields


def test_a_stream_without_data_has_no_field_stats(tmp_path: Path) -> None:
    index = SeriesIndex(tmp_path / "nothing")
    assert index.field_stats() == {} and index.fields() == []


@pytest.mark.parametrize("odd", ['say "hi"', "back\\slash", "tab\there", "nul\x00l"])
def test_field_names_a_typed_decoder_cannot_hold_still_give_series_and_statistics(tmp_path: Path, odd: str) -> None:
    # Found by the slow fuzz run: such a name made /metrics/fields and /runs answer 500.
    store = LocalStore(tmp_path)
    prefix = "alice/proj/run-1"
    store.open_experiment(ExperimentInfo(prefix=prefix, owner="alice", project="proj", name="run-1"))
    store.append_metrics(prefix, "train", [{odd: float(i % 7), "loss": 1.0 / (i + 1)} for i in range(5_000)])
    fields = store.metric_fields(prefix, "train")
    assert fields[odd]["count"] == 5_000 and (fields[odd]["min"], fields[odd]["max"]) == (0.0, 6.0)
    series = store.metric_series(prefix, "train", odd, width=10)
    assert max(series.y.tolist()) == 6.0 and min(series.y.tolist()) == 0.0
    by_odd_x = store.metric_series(prefix, "train", "loss", x=odd, width=10)
    assert len(by_odd_x.x) > 0
    summary = store.run_summaries("alice")[0]
    assert summary.metrics["train"][odd]["max"] == 6.0
