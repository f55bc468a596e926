"""What a series query works with: the query itself, points read raw from the data
file, and the records of the nodes kept whole. Shared by the pyramid walk
(``series_query``) and the pick of each bucket's points (``series_pick``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..series import Series, columns
from . import series_lines
from . import series_records as pyramid
from .jsonl import LineReader
from .series_build import State
from .series_lines import StaleError, pread, regular_at
from .series_records import F64, I64, Arr, Grow, Mask, gather


@dataclass
class Points:
    """Points read raw: stream position, x and y (non-finite y restored)."""

    pos: I64
    x: F64
    y: F64

    @classmethod
    def none(cls) -> Points:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))

    @classmethod
    def join(cls, parts: list[Points]) -> Points:
        if not parts:
            return cls.none()
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("pos", "x", "y")))

    def take(self, keep: Mask | I64) -> Points:
        return Points(self.pos[keep], self.x[keep], self.y[keep])


@dataclass
class Query:
    """Field ``y`` against ``x`` over ``[x0, x1]`` at ``width``; ``names``: the fields
    to decode from a line (y, and x unless it is ``index``)."""

    y: str
    x: str
    by_index: bool
    names: tuple[str, ...]
    x0: float = 0.0
    x1: float = 0.0
    width: int = 1000
    first: int = 0  # position range [first, stop) for x = index
    stop: int = 0

    def cols(self, x: F64) -> I64:
        return columns(x, self.x0, self.x1, self.width)


@dataclass
class Skipped:
    """Level-0 nodes across one bucket edge that cannot hold an extreme, left unread:
    ``hidden`` of their points are not among the raw ones (x = index: none of them is;
    an x field (``probed``): the two around the edge are)."""

    nodes: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    probed: bool = False
    hidden: int = 0


Table = tuple[dict[str, Arr], I64, I64]


def whole_table(levels: list[Grow], whole: list[tuple[int, I64]]) -> Table:
    """The records of the whole nodes, their first positions and their sizes."""
    rec = gather(levels, whole) if levels else gather([], [])
    lv = np.concatenate([np.full(len(ids), lvl, dtype=np.int64) for lvl, ids in whole] or [np.zeros(0, np.int64)])
    ids = np.concatenate([ids for _, ids in whole] or [np.zeros(0, np.int64)])
    size: I64 = pyramid.node_size(lv)
    return rec, ids * size, size


def empty_series(x0: float | None, x1: float | None, width: int, count: int = 0) -> Series:
    """The answer without points."""
    f, i = np.zeros(0), np.zeros(0, dtype=np.int64)
    lo = None if x0 is None else float(x0)
    hi = None if x1 is None else float(x1)
    return Series(f, f, i, f, f, i, True, count, 0, lo, hi, width)


def read_positions(state: State, reader: LineReader, q: Query, ranges: list[tuple[int, int]]) -> Points:
    """The points on the lines at positions [start, stop) of each range (whole nodes,
    or the tail) that hold y and whose x is in [x0, x1]. One decode for all ranges:
    per-call overheads, not the decoding, dominate a query's many small reads."""
    if not ranges:
        return Points.none()
    base = pyramid.BASE
    nodes, lines = state.nodes, state.lines
    bounds = np.array(ranges, dtype=np.int64)
    node0, node1 = bounds[:, 0] // base, -(-bounds[:, 1] // base)
    offsets = np.r_[state.offsets.view, reader.end]  # one past the last node: the data's end
    begins, ends = offsets[node0].tolist(), offsets[np.minimum(node1, nodes + 1)].tolist()
    blocks = [pread(reader, b, e) for b, e in zip(begins, ends, strict=True)]
    firsts = (node0 * base).tolist()
    counts = (np.minimum(node1 * base, lines) - node0 * base).tolist()
    block = series_lines.decode_block(b"".join(blocks), q.names)
    if block.lines != sum(counts):
        raise StaleError("lines moved")
    lengths = np.array(counts, dtype=np.int64)
    shift = np.array(firsts, dtype=np.int64) - (np.cumsum(lengths) - lengths)
    pos = np.arange(block.lines, dtype=np.int64) + np.repeat(shift, lengths)
    if state.regular and not regular_at(block.index, pos):
        raise StaleError("index changed")
    yv, yp = block.fields[q.y]
    xv = pos.astype(np.float64) if q.by_index else block.fields[q.x][0]
    starts = np.repeat(np.array([r[0] for r in ranges], dtype=np.int64), lengths)
    stops = np.repeat(np.array([r[1] for r in ranges], dtype=np.int64), lengths)
    keep = yp & (pos >= starts) & (pos < stops) & np.isfinite(xv) & (xv >= q.x0) & (xv <= q.x1)
    return Points(pos[keep], xv[keep], yv[keep])


def read_tail_x(state: State, reader: LineReader, q: Query) -> F64:
    """The finite x values of the tail's lines."""
    if not state.tail_lines:
        return np.zeros(0)
    block = series_lines.decode_block(pread(reader, state.covered, reader.end), (q.x,))
    xv = block.fields[q.x][0]
    out: F64 = xv[np.isfinite(xv)]
    return out


def in_range(points: Points, q: Query) -> Mask:
    """Which points fall in the query's range."""
    inside: Mask = np.isfinite(points.x) & (points.x >= q.x0) & (points.x <= q.x1)
    if q.by_index:
        inside &= (points.pos >= q.first) & (points.pos < q.stop)
    return inside


def runs(nodes: I64) -> list[tuple[int, int]]:
    """Sorted level-0 node ids -> position ranges of consecutive nodes."""
    if len(nodes) == 0:
        return []
    base = pyramid.BASE
    breaks = np.flatnonzero(np.diff(nodes) != 1) + 1
    return [(int(run[0]) * base, (int(run[-1]) + 1) * base) for run in np.split(nodes, breaks)]


def node_ranges(parts: list[tuple[int, I64]]) -> list[tuple[int, int]]:
    """Nodes (level, ids) -> position ranges, adjacent ones merged, ascending."""
    size = pyramid.node_size
    spans = sorted((int(i) * size(lv), (int(i) + 1) * size(lv)) for lv, ids in parts for i in ids)
    merged: list[tuple[int, int]] = []
    for start, stop in spans:
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    return merged
