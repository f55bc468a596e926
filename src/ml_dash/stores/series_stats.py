"""Per-field statistics of a metric stream, from the series index: for every numeric
field, how many finite values, the first and last of them, the minimum and maximum
(ties: the earliest) with where they are, and how many non-finite values.

The pyramid's *cover* (the fewest nodes over every indexed line: at most
``FANOUT - 1`` per level plus the top level) holds all of that except the values of the
first and last finite points, which a record knows only when they are also its
minimum or maximum; those are read from their own lines (usually the stream's first
line, for every field at once). The tail is decoded as every query decodes it. So the
cost does not grow with the stream: a few dozen records per field, the tail and a line
or two. A stream with numeric fields beyond the indexed ones (``MAX_FIELDS``) is
scanned whole, as its series are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..summaries import FieldStats
from . import series_lines
from . import series_records as pyramid
from .jsonl import LineReader
from .series_build import State
from .series_lines import Block, StaleError, lines_at, pread, regular
from .series_records import F64, I64, Arr, Mask, cover, gather


@dataclass
class _Stats:
    """One field over some lines; positions are line numbers, -1 for none."""

    count: int = 0  # finite values
    nonfinite: int = 0
    first: int = -1
    first_value: float = math.nan  # NaN: not known yet (read from its line)
    last: int = -1
    last_value: float = math.nan
    lo: float = math.inf
    lo_at: int = -1
    hi: float = -math.inf
    hi_at: int = -1

    def then(self, later: _Stats) -> _Stats:
        """These lines followed by ``later``'s."""
        out = replace(self, count=self.count + later.count, nonfinite=self.nonfinite + later.nonfinite)
        if out.first < 0:
            out.first, out.first_value = later.first, later.first_value
        if later.last >= 0:
            out.last, out.last_value = later.last, later.last_value
        if later.lo < out.lo:  # strictly: a tie goes to the earlier point
            out.lo, out.lo_at = later.lo, later.lo_at
        if later.hi > out.hi:
            out.hi, out.hi_at = later.hi, later.hi_at
        return out

    def to_dict(self, index: Callable[[int], int | None]) -> FieldStats:
        some = self.count > 0
        return {
            "count": self.count,
            "first": float(self.first_value) if some else None,
            "last": float(self.last_value) if some else None,
            "min": float(self.lo) if some else None,
            "max": float(self.hi) if some else None,
            "lastIndex": index(self.last) if some else None,
            "minIndex": index(self.lo_at) if some else None,
            "maxIndex": index(self.hi_at) if some else None,
            "nonFinite": self.nonfinite,
        }


def _from_nodes(rec: dict[str, Arr], start: I64) -> _Stats:
    """The stats of consecutive nodes (records in line order, first lines ``start``)."""
    out = _Stats(int((rec["count"] - rec["nfcount"]).sum()), int(rec["nfcount"].sum()))
    has = np.flatnonzero(rec["first"] >= 0)
    if len(has) == 0:
        return out

    def known(k: int, offset: int) -> float:
        # A record holds the values of its extremes only.
        if offset == rec["alo"][k]:
            return float(rec["lo"][k])
        return float(rec["hi"][k]) if offset == rec["ahi"][k] else math.nan

    k, j = int(has[0]), int(has[-1])
    out.first, out.first_value = int(start[k] + rec["first"][k]), known(k, int(rec["first"][k]))
    out.last, out.last_value = int(start[j] + rec["last"][j]), known(j, int(rec["last"][j]))
    k, j = int(np.argmin(rec["lo"])), int(np.argmax(rec["hi"]))  # the first node on ties
    out.lo, out.lo_at = float(rec["lo"][k]), int(start[k] + rec["alo"][k])
    out.hi, out.hi_at = float(rec["hi"][j]), int(start[j] + rec["ahi"][j])
    return out


def _from_values(values: F64, present: Mask, first: int) -> _Stats:
    """The stats of consecutive lines, the first at position ``first``."""
    finite = present & np.isfinite(values)
    out = _Stats(int(finite.sum()), int(present.sum()) - int(finite.sum()))
    where = np.flatnonzero(finite)
    if len(where) == 0:
        return out
    v = values[where]
    k, j = int(np.argmin(v)), int(np.argmax(v))  # the first on ties
    out.first, out.first_value = first + int(where[0]), float(v[0])
    out.last, out.last_value = first + int(where[-1]), float(v[-1])
    out.lo, out.lo_at = float(v[k]), first + int(where[k])
    out.hi, out.hi_at = float(v[j]), first + int(where[j])
    return out


def _from_records(state: State) -> dict[str, _Stats]:
    if not state.nodes:
        return {}
    parts = cover(state.nodes)
    start = np.concatenate([ids * pyramid.node_size(lv) for lv, ids in parts])
    order = np.argsort(start)
    out = {}
    for name, levels in state.fields.items():
        rec = gather(levels, parts)
        out[name] = _from_nodes({k: v[order] for k, v in rec.items()}, start[order])
    return out


def _add(stats: dict[str, _Stats], block: Block, first: int) -> None:
    """Extend ``stats`` with the numeric fields of ``block`` (lines from ``first`` on)."""
    for name, (values, present) in block.fields.items():
        if present.any():
            later = _from_values(values, present, first)
            stats[name] = stats[name].then(later) if name in stats else later


def _tail(state: State, reader: LineReader) -> Block | None:
    if not state.tail_lines:
        return None
    return series_lines.decode_block(pread(reader, state.covered, reader.end), None)


def _scan(reader: LineReader) -> tuple[dict[str, _Stats], bool]:
    """The stats from every line, and whether every line's index is its position."""
    stats: dict[str, _Stats] = {}
    first, numbered = 0, True
    for data in reader.iter_blocks():
        block = series_lines.decode_block(data, None)
        numbered = numbered and regular(block.index, first)
        _add(stats, block, first)
        first += block.lines
    return stats, numbered


def field_names(state: State, reader: LineReader) -> list[str]:
    """The numeric fields of the stream: the indexed ones and the tail's (a scan when
    some are beyond the indexed ones)."""
    if state.overflow:
        return sorted(_scan(reader)[0])
    tail = _tail(state, reader)
    names = set(state.fields)
    if tail is not None:
        names.update(name for name, (_, present) in tail.fields.items() if present.any())
    return sorted(names)


def field_stats(state: State, reader: LineReader) -> dict[str, FieldStats]:
    """The stats of every numeric field (sorted by name) of the data file ``reader``
    reads, ``state`` being its current index. StaleError when a line read is not what
    the index says."""
    if state.overflow:
        stats, numbered = _scan(reader)
    else:
        stats = _from_records(state)
        tail = _tail(state, reader)
        numbered = state.regular
        if tail is not None:
            first = state.nodes * pyramid.BASE
            numbered = numbered and regular(tail.index, first)
            _add(stats, tail, first)
    index = _look_up(state, reader, stats, numbered)
    return {name: stats[name].to_dict(index) for name in sorted(stats)}


def _look_up(state: State, reader: LineReader, stats: dict[str, _Stats], numbered: bool) -> Callable[[int], int | None]:
    """Read the first and last values no record holds from their lines (one read per
    level-0 node, one decode for all), and return the map from a position to the
    ``index`` of its line: the position itself when every line is ``numbered`` so."""
    values = [(name, role) for name, s in stats.items() for role in ("first", "last") if _unknown(s, role)]
    wanted = {getattr(stats[name], role) for name, role in values}
    if not numbered:
        wanted.update(p for s in stats.values() if s.count for p in (s.last, s.lo_at, s.hi_at))
    if not wanted:
        return lambda pos: pos
    positions = sorted(wanted)
    lines = lines_at(reader, state.offsets.view, positions, numbered)
    names = tuple(sorted({name for name, _ in values}))
    block = series_lines.decode_block(b"\n".join(lines) + b"\n", names)
    if block.lines != len(positions) or (numbered and block.index != positions):
        raise StaleError("lines moved")
    row = {p: k for k, p in enumerate(positions)}
    for name, role in values:
        s, k = stats[name], row[getattr(stats[name], role)]
        value, present = block.fields[name][0][k], block.fields[name][1][k]
        if not present or not math.isfinite(value):
            raise StaleError("a line changed")
        setattr(s, f"{role}_value", float(value))
    if numbered:
        return lambda pos: pos
    found = {p: i if type(i) is int else None for p, i in zip(positions, block.index, strict=True)}
    return found.__getitem__


def _unknown(s: _Stats, role: str) -> bool:
    return bool(getattr(s, role) >= 0 and math.isnan(getattr(s, f"{role}_value")))
