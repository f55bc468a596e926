"""Streams as tables: metric streams, logs and tracks as pandas DataFrames or Arrow tables.

A stream is read a page at a time through the store's own paged reads and gathered
into columns (one Python list per column, never a list of row dicts); each column is
converted once, at the end, to a numpy array (pandas) or an Arrow array.

Columns: a metric stream gives ``index``, ``time`` (``_ts``: seconds since the epoch,
a float) and one column per field, in the order fields first appear. A field whose
name is a column already taken (``index``, ``time``) comes out prefixed with ``data.``
(``data.index``), as often as it takes to be unique. NaN and ±inf stay floats; a point
that lacks a field has a missing value there (NaN in pandas, null in Arrow).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from types import ModuleType
from typing import Any

import msgspec

from .errors import InvalidValueError
from .records import LogQuery
from .stores.base import Store
from .track_formats import MissingExtraError

PAGE = 50_000  # points per read: big enough that paging costs nothing, small enough to stay bounded
TRACK_PAGE = 10_000
RENAME_PREFIX = "data."
LONG_COLUMNS = ("experiment", "stream", "index", "time", "field", "value")

Columns = Mapping[str, Sequence[Any]]  # a metric stream's gapless index is a range
_Lists = dict[str, list[Any]]


def pandas() -> ModuleType:
    """The pandas module, or MissingExtraError naming the extra that installs it."""
    try:
        import pandas as pd  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as exc:
        raise MissingExtraError("to_pandas() needs pandas, which is not installed: pip install 'ml-dash[pandas]'") \
            from exc
    return pd  # type: ignore[no-any-return,unused-ignore]


def arrow() -> ModuleType:
    """The pyarrow module, or MissingExtraError naming the extra that installs it."""
    try:
        import pyarrow as pa  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as exc:
        raise MissingExtraError("to_arrow() and Parquet need pyarrow, which is not installed: "
                                "pip install 'ml-dash[arrow]'") from exc
    return pa  # type: ignore[no-any-return,unused-ignore]


def unique_name(name: str, taken: Iterable[str]) -> str:
    """``name``, or ``data.<name>`` (repeated) when a column of that name is taken."""
    used = set(taken)
    while name in used:
        name = RENAME_PREFIX + name
    return name


class _Gather:
    """Columns built up page by page: fixed columns plus the fields of nested dicts."""

    def __init__(self, fixed: tuple[str, ...]) -> None:
        self.fixed: _Lists = {name: [] for name in fixed}
        self.fields: _Lists = {}
        self.rows = 0

    def add(self, fixed: dict[str, list[Any]], records: list[dict[str, Any]]) -> None:
        """One page: a list per fixed column and the records whose keys become fields."""
        for name, values in fixed.items():
            self.fixed[name].extend(values)
        count = len(records)
        if not count:
            return
        keys = list(records[0])
        seen = set(keys)
        if count > 1:
            keys += sorted(set().union(*records) - seen, key=str)
        for key in keys:
            try:
                values = list(map(itemgetter(key), records))
            except KeyError:  # some records lack it
                values = [r.get(key) for r in records]
            column = self.fields.get(key)
            if column is None:
                self.fields[key] = column = [None] * self.rows
            column.extend(values)
        for column in self.fields.values():
            if len(column) < self.rows + count:
                column.extend([None] * (self.rows + count - len(column)))
        self.rows += count

    def columns(self, time_key: str | None = None) -> _Lists:
        """The fixed columns, ``time`` (popped from the fields when ``time_key`` is given),
        then every field under a name no fixed column has."""
        out: _Lists = dict(self.fixed)
        fields = dict(self.fields)
        if time_key is not None:
            times = fields.pop(time_key, None)
            out["time"] = [None] * self.rows if times is None else times
        for key, values in fields.items():
            out[unique_name(str(key), out)] = values
        return out


def metric_columns(store: Store, prefix: str, name: str) -> Columns:
    """Every point of a metric stream as columns ``index``, ``time`` and the fields."""
    gather = _Gather(("index",))
    start = 0
    while True:
        page = store.read_metrics(prefix, name, start, PAGE)
        points = page["data"]
        if points:
            gather.add({"index": list(map(itemgetter("index"), points))}, list(map(itemgetter("data"), points)))
        if not page["hasMore"] or not points:
            break
        start = points[-1]["index"] + 1
    cols = gather.columns("_ts")
    index = cols["index"]
    # Indexes come strictly increasing: first and last tell a gapless run, which is
    # kept as a range (no million ints to convert one by one).
    if index and index[-1] - index[0] + 1 == len(index):
        return {**cols, "index": range(index[0], index[-1] + 1)}
    return cols


def log_columns(store: Store, prefix: str) -> Columns:
    """Every log line as columns ``index`` (sequence number), ``time``, ``level``,
    ``message`` and ``metadata`` (a dict, or None)."""
    cols: _Lists = {"index": [], "time": [], "level": [], "message": [], "metadata": []}
    offset = 0
    while True:
        page = store.query_logs(prefix, LogQuery(offset=offset, limit=TRACK_PAGE))
        logs = page["logs"]
        cols["index"].extend(r.get("sequenceNumber") for r in logs)
        cols["time"].extend(r.get("ts") for r in logs)
        cols["level"].extend(r.get("level") for r in logs)
        cols["message"].extend(r.get("message") for r in logs)
        cols["metadata"].extend(r.get("metadata") or None for r in logs)
        offset += len(logs)
        if not page["hasMore"] or not logs:
            return cols


def track_columns(store: Store, prefix: str, topic: str) -> Columns:
    """Every entry of a track topic as columns ``time`` and its (flattened) fields."""
    gather = _Gather(())
    after: float | None = None
    while True:
        entries = list(store.read_tracks(prefix, topic, limit=TRACK_PAGE, after=after))
        gather.add({}, entries)
        if len(entries) < TRACK_PAGE:
            break
        after = entries[-1]["timestamp"]
    return gather.columns("timestamp")


# -- conversion --------------------------------------------------------------------------

_NUMBER = {float, int}
_NONE = type(None)


def _kinds(values: Sequence[Any]) -> set[type]:
    return set(map(type, values))


def _numpy_column(values: Sequence[Any]) -> Any:
    import numpy as np

    if isinstance(values, range):
        return np.arange(values.start, values.stop, values.step, dtype=np.int64)
    kinds = _kinds(values)
    if kinds == {int}:
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            return np.array(values, dtype=object)
    if kinds and kinds <= _NUMBER | {_NONE} and kinds != {_NONE}:
        return np.array(values, dtype=np.float64)  # None (a point without the field) -> NaN
    if kinds == {bool}:
        return np.array(values, dtype=bool)
    return values  # text, mixed or nested: pandas chooses (str or object)


def to_pandas(columns: Columns) -> Any:
    """A DataFrame of ``columns``: whole numbers int64 (float64 once a value is missing),
    numbers float64 (NaN and ±inf kept), booleans bool, anything else as pandas infers."""
    pd = pandas()
    return pd.DataFrame({name: _numpy_column(values) for name, values in columns.items()}, copy=False)


_json = msgspec.json.Encoder()


def _arrow_column(pa: ModuleType, values: Sequence[Any]) -> Any:
    if isinstance(values, range):
        import numpy as np

        return pa.array(np.arange(values.start, values.stop, values.step, dtype=np.int64))
    # Arrow's own type inference, in C: a scan of the types in Python cost as much as
    # writing the Parquet file. It refuses mixed columns (bool with numbers, text with
    # numbers) rather than coercing them, and those become JSON text below.
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        array = None
    if array is not None:
        kind = array.type
        if kind in (pa.int64(), pa.float64(), pa.bool_(), pa.string(), pa.null()):
            return array
    # nested or mixed values: JSON text, one type for the whole column
    return pa.array([None if v is None else _json_text(v) for v in values], type=pa.string())


def _json_text(value: Any) -> str:
    try:
        return _json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return str(value)


def to_arrow(columns: Columns) -> Any:
    """An Arrow table of ``columns``: int64, float64 (NaN and ±inf kept; a missing value
    is null), bool or string; mixed or nested values become JSON text."""
    pa = arrow()
    return pa.table({name: _arrow_column(pa, values) for name, values in columns.items()})


# -- many experiments ------------------------------------------------------------------------


def wide_columns(parts: Iterable[tuple[str, Columns]]) -> Columns:
    """One table of several experiments' columns: ``experiment`` first, then the
    union of their columns (missing where an experiment lacks one)."""
    out: _Lists = {"experiment": []}
    rows = 0
    for experiment, cols in parts:
        count = len(next(iter(cols.values()), []))
        out["experiment"].extend([experiment] * count)
        for name, values in cols.items():
            key = name if name != "experiment" else unique_name(name, out)
            column = out.get(key)
            if column is None:
                out[key] = column = [None] * rows
            column.extend(values)
        rows += count
        for column in out.values():
            if len(column) < rows:
                column.extend([None] * (rows - len(column)))
    return out


def _numeric(values: Sequence[Any]) -> Sequence[float | None] | None:
    """The values as floats (bool -> 0/1; None kept), or None for a column of other values."""
    kinds = _kinds(values) - {_NONE}
    if not kinds or not kinds <= _NUMBER | {bool}:
        return None
    if kinds == {float}:
        return values
    return [None if v is None else float(v) for v in values]


def long_columns(parts: Iterable[tuple[str, str, Columns]]) -> Columns:
    """Rows ``experiment, stream, index, time, field, value`` of every numeric field of
    every point (a point without a field has no row for it; text fields are left out)."""
    out: _Lists = {name: [] for name in LONG_COLUMNS}
    for experiment, stream, cols in parts:
        index, times = cols.get("index", []), cols.get("time", [])
        for name, values in cols.items():
            if name in ("index", "time"):
                continue
            numbers = _numeric(values)
            if numbers is None:
                continue
            keep = [i for i, v in enumerate(numbers) if v is not None]
            if len(keep) == len(numbers):
                out["index"].extend(index)
                out["time"].extend(times)
                out["value"].extend(numbers)
            else:
                out["index"].extend(index[i] for i in keep)
                out["time"].extend(times[i] for i in keep)
                out["value"].extend(numbers[i] for i in keep)
            out["experiment"].extend([experiment] * len(keep))
            out["stream"].extend([stream] * len(keep))
            out["field"].extend([name] * len(keep))
    return out


def check_shape(shape: str) -> str:
    """``shape`` if it is ``"long"`` or ``"wide"``, else InvalidValueError."""
    if shape not in ("long", "wide"):
        raise InvalidValueError(f"shape must be 'long' or 'wide', got {shape!r}")
    return shape


def records(columns: Columns) -> Iterator[dict[str, Any]]:
    """The rows of ``columns`` as dicts, leaving out missing (None) values."""
    names = list(columns)
    for row in zip(*columns.values(), strict=True):
        yield {k: v for k, v in zip(names, row, strict=True) if v is not None}

