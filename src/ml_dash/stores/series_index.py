"""The series index: a pyramid of per-bucket extremes kept beside a metric stream.

A series query (one field of a stream, M4-reduced: ``ml_dash.series``) must not decode
the whole ``data.jsonl``: a million lines take seconds. So beside it, in
``metrics/<name>/.series/``, we keep for every numeric field a pyramid of summaries:
level 0 has one record per ``BASE`` (32) lines, level ``l`` one per
``BASE * FANOUT**l`` lines. A record holds the node's minimum and maximum (values and
where they are), where its first and last finite and non-finite values are, how many
lines hold the field, and flags: ``DENSE`` (every line holds a finite number),
``MONO`` (and they never decrease) and the kinds of non-finite values in it.
docs/series.md has the design and the file format.

A query walks the pyramid from the top and keeps a node *whole* when all its points
fall in one pixel bucket (x = ``index``: by position; an x field: the node is DENSE
and MONO in x and its x-range maps to one bucket), else looks at its children. Level-0
nodes that still straddle a bucket edge, and the lines after the last full node, are
read raw. Each bucket's first, last, minimum and maximum are then picked among the
whole nodes' candidates and the raw points exactly as ``series.m4`` picks them from all
points, and the few chosen points whose x or y no record holds are read from their
lines. In a bucket where x goes backwards the nodes are read raw, so every x field
gets the exact answer: fast where x never decreases (``index``, ``_ts``, ``step``), a
raw scan where it goes up and down everywhere.

The index is derived data. It records the data file's identity (device, inode), the
byte offset it covers and CRCs of the 4 KiB before that offset and at the start of the
file; a data file replaced, truncated or changed there, and index files missing, short
or failing their CRC, are rebuilt from the data. Index files are only appended to past
their committed length and committed by renaming ``manifest.json`` (which holds their
lengths and CRCs), so a crash leaves the old index or a detectably broken one: a chart
is never drawn from a wrong index. Logging never touches it: it is extended on read
(``refresh``, ``series``, ``field_stats``, ``fields``), from the last indexed offset.

This module holds :class:`SeriesIndex`; the parts live beside it:

- ``series_records``: the record layout, ``summarize`` and ``combine``;
- ``series_lines``: reading and decoding lines of ``data.jsonl``;
- ``series_build``: the index in memory and its extension by new lines;
- ``series_files``: the files, their commit, and the checks against the data file;
- ``series_points``, ``series_query``, ``series_pick``: a series query;
- ``series_stats``: per-field statistics.

Setting ``BASE``, ``FANOUT``, ``MAX_LEVELS``, ``MAX_FIELDS`` or ``_CHUNK_BYTES`` on this
module (tests do, to shrink the pyramid) sets them where they are used.
"""

from __future__ import annotations

import os
import sys
import threading
import types
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import InvalidValueError, MLDashError, StorageError
from ..series import Series, check_query
from ..summaries import FieldStats
from . import series_build, series_records
from .jsonl import LineReader, open_lines
from .series_build import State, extend
from .series_files import (
    DATA_FILE,
    FORMAT,
    FORMAT_VERSION,
    INDEX_DIR,
    MANIFEST,
    load,
    matches,
    persist,
    spot_check,
)
from .series_lines import StaleError, decode_block
from .series_points import empty_series
from .series_query import answer
from .series_records import BASE_DTYPE, DENSE, MONO, NAN, NEGINF, POSINF, UPPER_DTYPE, combine, summarize
from .series_stats import field_names, field_stats

__all__ = [
    "BASE_DTYPE",
    "DATA_FILE",
    "DENSE",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_DIR",
    "MANIFEST",
    "MONO",
    "NAN",
    "NEGINF",
    "POSINF",
    "UPPER_DTYPE",
    "SeriesIndex",
    "combine",
    "decode_block",
    "extend",
    "load",
    "persist",
    "summarize",
]

T = TypeVar("T")


class SeriesIndex:
    """The series of one metric stream (``<stream_folder>/data.jsonl``), answered from a
    pyramid of summaries kept in ``<stream_folder>/.series/``.

    Safe to share between threads (one lock). ``writable=False`` never writes a file
    (the index lives in memory only); a folder that cannot be written warns once and
    does the same. Damaged or stale index files are rebuilt, never raised; a data file
    that cannot be read raises StorageError.
    """

    def __init__(self, stream_folder: str | os.PathLike[str], *, writable: bool = True) -> None:
        self.folder = os.fspath(stream_folder)
        self.data_path = os.path.join(self.folder, DATA_FILE)
        self.index_folder = os.path.join(self.folder, INDEX_DIR)
        self.writable = writable
        self._lock = threading.Lock()
        self._state: State | None = None
        self._loaded = False

    def refresh(self) -> None:
        """Index the lines appended since the last call (building or rebuilding the
        index when it is missing, stale or damaged) and commit it to disk."""
        with self._lock:
            reader = open_lines(self.data_path)
            if reader is None:
                self._state = None
                return
            with reader:
                try:
                    self._update(reader)
                except StaleError:
                    self._state = None
                    self._update(reader)

    def series(
        self,
        y: str,
        x: str = "index",
        x0: float | None = None,
        x1: float | None = None,
        width: int = 1000,
    ) -> Series:
        """The series of field ``y`` against ``x`` (``"index"``, ``"_ts"`` or any numeric
        field) over ``[x0, x1]`` (default: the extent of x in the stream) for ``width``
        pixels: exactly ``ml_dash.series.m4`` of the stream's points, refreshed first.
        Raises InvalidValueError for a bad range or width, StorageError when the data
        file cannot be read."""
        check_query(x0, x1, width)
        if not isinstance(y, str) or not isinstance(x, str):
            raise InvalidValueError(f"y and x must be field names, got y={y!r} and x={x!r}")
        return self._read(
            lambda state, reader: answer(state, reader, y, x, x0, x1, int(width)), empty_series(x0, x1, width)
        )

    def field_stats(self) -> dict[str, FieldStats]:
        """For every numeric field of the stream (by name; a field with at least one
        number, finite or not): ``count`` of finite values, ``first``, ``last``, ``min``
        and ``max`` of them, the ``index`` of the line holding the last, the minimum and
        the maximum (ties: the earliest), and ``nonFinite``, the count of NaN and
        infinite values (an integer beyond any float counts as infinite). Values and
        indexes are None for a field without a finite value. Refreshed first; read from
        the pyramid's top records, the tail and the one or two lines holding first and
        last values, never every line (except for a stream with more numeric fields
        than are indexed). Empty when there is no data file; StorageError when it
        cannot be read."""
        return self._read(field_stats, {})

    def fields(self) -> list[str]:
        """The names of the stream's numeric fields, sorted, as ``field_stats`` lists
        them, without computing their statistics. Refreshed first."""
        return self._read(field_names, [])

    def _read(self, use: Callable[[State, LineReader], T], no_data: T) -> T:
        """``use(state, reader)`` on the refreshed index, under the lock (``no_data``
        when there is no data file). When the data file turns out to differ from the
        index, the index is rebuilt and ``use`` runs once more."""
        with self._lock:
            for attempt in range(2):
                reader = open_lines(self.data_path)
                if reader is None:
                    self._state = None
                    return no_data
                with reader:
                    try:
                        return use(self._update(reader), reader)
                    except StaleError:
                        if attempt:
                            raise StorageError(f"{self.data_path} keeps changing under the series index") from None
                        self._state = None
                    except OSError as exc:
                        raise StorageError(f"cannot read {self.data_path}: {exc}") from exc
            raise AssertionError("unreachable")

    def _update(self, reader: LineReader) -> State:
        try:
            st = os.fstat(reader.fd)
        except OSError as exc:
            raise StorageError(f"cannot read {self.data_path}: {exc}") from exc
        state = self._state
        try:
            if state is None and not self._loaded:
                self._loaded = True
                state = load(self.index_folder)
                if state is not None and not (matches(state, reader, st) and spot_check(state, reader)):
                    state = None
            elif state is not None and not matches(state, reader, st):
                state = None
            if state is None:
                state = State.empty(st.st_dev, st.st_ino)
            added = extend(state, reader)
        except StaleError:
            state = State.empty(st.st_dev, st.st_ino)
            added = extend(state, reader)
        except OSError as exc:
            raise StorageError(f"cannot read {self.data_path}: {exc}") from exc
        self._state = state
        if added and self.writable:
            try:
                persist(state, self.index_folder)
            except (OSError, MLDashError) as exc:
                self.writable = False
                warnings.warn(
                    f"ml-dash: cannot write the series index in {self.index_folder}: {exc} (kept in memory)",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return state


# -- the tunable sizes ---------------------------------------------------------------------

# name here -> (module, name there). The copies below are what this module reports;
# assignments to them go through _Module.__setattr__.
_TUNABLES: dict[str, tuple[types.ModuleType, str]] = {
    "BASE": (series_records, "BASE"),
    "FANOUT": (series_records, "FANOUT"),
    "MAX_LEVELS": (series_records, "MAX_LEVELS"),
    "MAX_FIELDS": (series_build, "MAX_FIELDS"),
    "_CHUNK_BYTES": (series_build, "CHUNK_BYTES"),
}
BASE: int = series_records.BASE
FANOUT: int = series_records.FANOUT
MAX_LEVELS: int = series_records.MAX_LEVELS
MAX_FIELDS: int = series_build.MAX_FIELDS
_CHUNK_BYTES: int = series_build.CHUNK_BYTES


class _Module(types.ModuleType):
    """This module, with assignments to the tunable sizes also made in the modules that
    read them (``monkeypatch.setattr(series_index, "BASE", 4)`` shrinks the pyramid)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _TUNABLES:
            home, there = _TUNABLES[name]
            setattr(home, there, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Module
