"""A series query on the index: walk the pyramid from the top, keep *whole* the nodes
whose points all fall in one pixel bucket (x = ``index``: by position; an x field: the
node is DENSE and MONO in x and its x-range maps to one bucket), split the others, and
read raw the level-0 nodes still split at a bucket edge (except those that provably
cannot hold an extreme: their two points around the edge are probed instead) and the
tail. ``series_pick`` then picks each bucket's points. What the pyramid cannot answer
(a stream whose ``index`` values are not its line numbers, a field beyond the indexed
ones) is answered by a scan of every line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from ..series import Series, column_of, m4
from . import series_lines
from . import series_records as pyramid
from .jsonl import LineReader
from .series_build import State
from .series_lines import StaleError, UntypedNameError, pread, to_float, typed_decoder
from .series_pick import assemble
from .series_points import (
    Points,
    Query,
    Skipped,
    Table,
    empty_series,
    in_range,
    read_positions,
    read_tail_x,
    runs,
    whole_table,
)
from .series_records import DENSE, F64, I64, MONO, NAN, NEGINF, POSINF, Grow, cover, gather


def answer(state: State, reader: LineReader, y: str, x: str, x0: float | None, x1: float | None, width: int) -> Series:
    """``series.m4`` of field ``y`` against ``x`` over ``[x0, x1]`` (default: the extent
    of x) from the index ``state`` of the data file ``reader`` reads. StaleError when
    the data file is not what the index says."""
    base = pyramid.BASE
    by_index = x == "index"
    q = Query(y, x, by_index, (y,) if by_index or x == y else (y, x), width=width)
    fy = state.fields.get(y)
    fx = None if by_index else state.fields.get(x)
    if not state.regular or (state.overflow and (fy is None or (not by_index and fx is None))):
        return scan(reader, q, x0, x1)
    if state.lines == 0:
        return empty_series(x0, x1, width)
    # The range asked for, or the extent of x.
    q.x0, q.x1 = -math.inf, math.inf
    tail = read_positions(state, reader, q, [(state.nodes * base, state.lines)]) if state.tail_lines else None
    if by_index:
        lo, hi = 0.0, float(state.lines - 1)
    else:
        lo, hi = math.inf, -math.inf
        if fx is not None and state.nodes:
            rec = gather(fx, cover(state.nodes))
            lo, hi = float(np.min(rec["lo"], initial=math.inf)), float(np.max(rec["hi"], initial=-math.inf))
        if x0 is None or x1 is None:  # the tail's x, whatever its y
            tail_x = read_tail_x(state, reader, q)
            if len(tail_x):
                lo, hi = min(lo, float(tail_x.min())), max(hi, float(tail_x.max()))
    q.x0 = float(x0) if x0 is not None else lo
    q.x1 = float(x1) if x1 is not None else hi
    if not (math.isfinite(q.x0) and math.isfinite(q.x1)) or q.x0 > q.x1:
        return empty_series(x0, x1, width)
    q.first = max(0, math.ceil(q.x0)) if by_index else 0
    q.stop = min(state.lines, math.floor(q.x1) + 1) if by_index else state.lines
    raw = tail.take(in_range(tail, q)) if tail is not None else Points.none()
    whole: list[tuple[int, I64]] = []
    table = whole_table([], [])
    skipped = Skipped()
    if fy is not None and (by_index or fx is not None) and state.nodes and q.first < q.stop:
        whole, edges = _decompose(state, fy, fx, q)
        table = whole_table(fy, whole)
        if by_index:
            edges, skipped.nodes = _prune(table, q, edges, fy, None)
            skipped.hidden = base * len(skipped.nodes)
        elif fx is not None and _x_sorted(state, reader, q, fx):
            edges, probed = _prune(table, q, edges, fy, fx, gather(fx, whole, ("lo",))["lo"])
            found, failed = _edge_points(state, reader, q, fx, probed)
            edges = np.union1d(edges, failed)
            skipped.nodes, skipped.probed = np.setdiff1d(probed, failed), True
            skipped.hidden = (base - 2) * len(skipped.nodes)
            raw = Points.join([raw, found])
        raw = Points.join([raw, read_positions(state, reader, q, runs(edges))])
    return assemble(state, reader, q, fx, whole, table, raw, skipped)


def scan(reader: LineReader, q: Query, x0: float | None, x1: float | None) -> Series:
    """The answer from every line, for what the index cannot answer: a file whose
    ``index`` values are not its line numbers (not one LocalStore writes), or a field
    beyond MAX_FIELDS. A line without an integer ``index`` holds no point."""
    parts = []
    for block_bytes in reader.iter_blocks():
        block = series_lines.decode_block(block_bytes, q.names)
        iv, ip = to_float(block.index)
        valid = ip & np.isfinite(iv) & (iv == np.floor(iv)) & (np.abs(iv) < 2**53)
        xv = iv if q.by_index else block.fields[q.x][0]
        yv, yp = block.fields[q.y]
        parts.append((np.where(valid, iv, 0).astype(np.int64), np.where(valid, xv, math.nan), yv, yp & valid))
    if not parts:
        return empty_series(x0, x1, q.width)
    pos, xv, yv, yp = (np.concatenate([p[i] for p in parts]) for i in range(4))
    finite_x = xv[np.isfinite(xv)]
    if len(finite_x) == 0:
        return empty_series(x0, x1, q.width)
    lo = float(finite_x.min()) if x0 is None else float(x0)
    hi = float(finite_x.max()) if x1 is None else float(x1)
    if lo > hi:
        return empty_series(lo, hi, q.width)
    return m4(xv[yp], yv[yp], lo, hi, q.width, pos[yp])


def _decompose(state: State, fy: list[Grow], fx: list[Grow] | None, q: Query) -> tuple[list[tuple[int, I64]], I64]:
    """Walk the pyramid from the top: nodes whose points all fall in one bucket are
    kept whole, the others are split into their children; the level-0 nodes still
    split are returned to be read raw. Nodes without y, or outside the range, drop out."""
    fanout = pyramid.FANOUT
    counts = state.level_counts()
    whole: list[tuple[int, I64]] = []
    ids = np.zeros(0, dtype=np.int64)
    for level in range(len(counts) - 1, -1, -1):
        above = counts[level + 1] * fanout if level + 1 < len(counts) else 0
        ids = np.concatenate([ids, np.arange(above, counts[level], dtype=np.int64)])
        size = pyramid.node_size(level)
        ry = fy[level].view[ids]
        keep = ry["count"] > 0
        start = ids * size
        if q.by_index:
            keep &= (start < q.stop) & (start + size > q.first)
        else:
            assert fx is not None
            rx = fx[level].view[ids]
            keep &= (rx["lo"] <= q.x1) & (rx["hi"] >= q.x0)
            rx = rx[keep]
        ids, start, flags = ids[keep], start[keep], ry["flags"][keep].astype(np.int64)
        kinds = ((flags & NAN) > 0).astype(int) + ((flags & POSINF) > 0) + ((flags & NEGINF) > 0)
        if q.by_index:
            ok = (start >= q.first) & (start + size <= q.stop)
            ok &= q.cols(start.astype(np.float64)) == q.cols((start + size - 1).astype(np.float64))
        else:
            xflags = rx["flags"].astype(np.int64)
            ok = ((xflags & DENSE) > 0) & ((xflags & MONO) > 0) & (rx["lo"] >= q.x0) & (rx["hi"] <= q.x1)
            ok &= q.cols(rx["lo"]) == q.cols(rx["hi"])
        ok &= kinds <= 1  # a node with two kinds of non-finite values cannot name each one's first
        whole.append((level, ids[ok]))
        split = ids[~ok]
        ids = (split[:, None] * fanout + np.arange(fanout)).ravel() if level else split
    return whole, np.sort(ids)


def _prune(
    table: Table, q: Query, edges: I64, fy: list[Grow], fx: list[Grow] | None, whole_xlo: F64 | None = None
) -> tuple[I64, I64]:
    """Split the level-0 nodes to read raw into those that must be read and those that
    cannot hold a bucket's minimum or maximum: a node across one bucket edge, inside the
    range, with a finite y on every line (and, for an x field, a finite x on every line,
    never decreasing), whose minimum and maximum are beaten in both buckets by whole
    nodes. They give only the last point of the left bucket and the first of the right."""
    base = pyramid.BASE
    rec, start, _ = table
    if len(start) == 0 or len(edges) == 0:
        return edges, np.zeros(0, dtype=np.int64)
    col = q.cols(start.astype(np.float64) if whole_xlo is None else whole_xlo)
    best_lo = np.full(q.width, math.inf)
    best_hi = np.full(q.width, -math.inf)
    np.minimum.at(best_lo, col, rec["lo"])
    np.maximum.at(best_hi, col, rec["hi"])
    e = fy[0].view[edges]
    if fx is None:
        s = edges * base
        left, right = q.cols(s.astype(np.float64)), q.cols((s + base - 1).astype(np.float64))
        ok = (s >= q.first) & (s + base <= q.stop)
    else:
        r = fx[0].view[edges]
        left, right = q.cols(r["lo"]), q.cols(r["hi"])
        ok = ((r["flags"] & (DENSE | MONO)) == DENSE | MONO) & (r["lo"] >= q.x0) & (r["hi"] <= q.x1)
    ok &= ((e["flags"] & DENSE) > 0) & (right == left + 1)
    ok &= (e["lo"] > best_lo[left]) & (e["lo"] > best_lo[right])
    ok &= (e["hi"] < best_hi[left]) & (e["hi"] < best_hi[right])
    return edges[~ok], edges[ok]


def _x_sorted(state: State, reader: LineReader, q: Query, fx: list[Grow]) -> bool:
    """Whether x never decreases along the whole stream (every line of every node has
    one; the tail's are not below them): then the order of x is the order of lines."""
    parts = cover(state.nodes)
    rec = gather(fx, parts, ("lo", "hi", "flags"))
    start = np.concatenate([ids * pyramid.node_size(lv) for lv, ids in parts])
    o = np.argsort(start)
    lo, hi, flags = rec["lo"][o], rec["hi"][o], rec["flags"][o]
    if not ((flags & (DENSE | MONO)) == DENSE | MONO).all() or (hi[:-1] > lo[1:]).any():
        return False
    tail = read_tail_x(state, reader, q) if state.tail_lines else np.zeros(0)
    return bool(len(tail) == 0 or (tail[0] >= hi[-1] and (np.diff(tail) >= 0).all()))


def _edge_points(state: State, reader: LineReader, q: Query, fx: list[Grow], nodes: I64) -> tuple[Points, I64]:
    """For each node (x never decreasing on it, one bucket edge inside it): the points
    just before and at the edge, found by probing single lines instead of decoding all
    of them. Nodes that cannot be probed (a line of another shape) are returned to be
    read raw."""
    base = pyramid.BASE
    try:
        decode = typed_decoder(q.names, None).decode
    except UntypedNameError:  # a name only dicts can hold: every node is read raw
        return Points(np.zeros(0, np.int64), np.zeros(0), np.zeros(0)), nodes
    xi = q.names.index(q.x)
    offsets, rec = state.offsets.view, fx[0].view[nodes]
    out: list[tuple[int, float, float]] = []
    failed = []
    for node, xlo, xhi in zip(nodes.tolist(), rec["lo"].tolist(), rec["hi"].tolist(), strict=True):
        lines = pread(reader, int(offsets[node]), int(offsets[node + 1])).split(b"\n")
        try:
            out.extend(_probe_edge(q, lines, node * base, xlo, xhi, lambda line: decode(line), xi))
        except (msgspec.DecodeError, AttributeError, IndexError):
            failed.append(node)
    points = Points(
        np.array([p[0] for p in out], dtype=np.int64),
        np.array([p[1] for p in out], dtype=np.float64),
        np.array([p[2] for p in out], dtype=np.float64),
    )
    return points, np.array(failed, dtype=np.int64)


def _probe_edge(
    q: Query, lines: list[bytes], first: int, xlo: float, xhi: float, decode: Callable[[bytes], Any], xi: int
) -> list[tuple[int, float, float]]:
    """The points (position, x, y) on both sides of the bucket edge inside one node
    whose lines are ``lines`` (x[0] in the left bucket, x[-1] in the right one)."""
    base = pyramid.BASE
    right = column_of(xhi, q.x0, q.x1, q.width)
    seen: dict[int, tuple[float, float]] = {}

    def past_edge(k: int) -> bool:
        if k not in seen:
            line = decode(lines[k])
            xv, yv = getattr(line.data, f"f{xi}"), line.data.f0
            if line.index != first + k or type(xv) not in (int, float) or type(yv) not in (int, float):
                raise StaleError("a probed line changed")
            seen[k] = (float(xv), float(yv))
        return column_of(seen[k][0], q.x0, q.x1, q.width) >= right

    lo, hi = 0, base - 1
    # First guess: where a straight line from xlo to xhi crosses the edge (timestamps
    # are nearly evenly spaced: usually right, or one off); then bisection.
    try:
        edge = q.x0 + right * (q.x1 - q.x0) / q.width
        guess = min(base - 2, max(1, math.ceil((edge - xlo) / (xhi - xlo) * (base - 1))))
    except (ValueError, OverflowError, ZeroDivisionError):  # a span beyond the largest float
        guess = base // 2
    if past_edge(guess):
        hi = guess
        if not past_edge(guess - 1):
            lo = guess - 1
    else:
        lo = guess
        if past_edge(guess + 1):
            hi = guess + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if past_edge(mid):
            hi = mid
        else:
            lo = mid
    past_edge(lo)
    past_edge(hi)
    return [(first + k, *seen[k]) for k in (lo, hi)]
