"""Picking each bucket's points, once the pyramid walk (``series_query``) has split the
range into whole nodes and raw points: per bucket the first and last point in x order,
the minimum and the maximum, and the first and last non-finite point of each kind,
chosen among the whole nodes' recorded candidates and the raw points in the order
``series.m4`` uses; then the few chosen points whose x or y no record holds are read
from their own lines.
"""

from __future__ import annotations

import math

import numpy as np

from ..series import RAW_FACTOR, Series, group_first, m4, nonfinite_kind
from . import series_lines
from . import series_records as pyramid
from .jsonl import LineReader
from .series_build import State
from .series_lines import StaleError, lines_at
from .series_points import Points, Query, Skipped, Table, node_ranges, read_positions
from .series_records import DENSE, F64, I64, KIND_VALUES, NAN, POSINF, Grow, gather


def assemble(
    state: State,
    reader: LineReader,
    q: Query,
    fx: list[Grow] | None,
    whole: list[tuple[int, I64]],
    table: Table,
    raw: Points,
    skipped: Skipped,
) -> Series:
    """Pick each bucket's points among the whole nodes' candidates (``table``), the
    skipped nodes' edge points and the raw points."""
    base = pyramid.BASE
    rec, start, size = table
    count = int(rec["count"].sum()) + len(raw.pos) + skipped.hidden
    pruned = np.zeros(0, dtype=np.int64) if skipped.probed else skipped.nodes
    if count <= RAW_FACTOR * q.width:
        if skipped.probed:  # their edge points come again with the rest of their lines
            raw = raw.take(~np.isin(raw.pos // base, skipped.nodes))
        read = node_ranges([*whole, (0, skipped.nodes)])
        points = Points.join([raw, read_positions(state, reader, q, read)]) if read else raw
        return m4(points.x, points.y, q.x0, q.x1, q.width, points.pos)
    lv = np.concatenate([np.full(len(ids), lvl, dtype=np.int64) for lvl, ids in whole] or [np.zeros(0, np.int64)])
    ids = np.concatenate([ids for _, ids in whole] or [np.zeros(0, np.int64)])
    xrec = gather(fx, whole, ("lo", "hi")) if fx is not None and whole else None
    xlo = start.astype(np.float64) if xrec is None else xrec["lo"]
    xhi = (start + size - 1).astype(np.float64) if xrec is None else xrec["hi"]
    col = q.cols(xlo)
    rcol = q.cols(raw.x)
    keyed = np.zeros(q.width, dtype=bool)  # buckets ordered by x itself (all raw there)
    if not q.by_index:
        bad = _unordered(col, start, xlo, xhi, rcol, raw)
        if len(bad):
            move = np.isin(col, bad)
            moved = [(int(lvl), ids[(lv == lvl) & move]) for lvl in np.unique(lv[move])]
            raw = Points.join([raw, read_positions(state, reader, q, node_ranges(moved))])
            rcol = q.cols(raw.x)
            keep = ~move
            rec = {k: v[keep] for k, v in rec.items()}
            lv, start, size, xlo, xhi, col = lv[keep], start[keep], size[keep], xlo[keep], xhi[keep], col[keep]
            keyed[bad] = True
    nonfinite_count = int(rec["nfcount"].sum()) + int(np.count_nonzero(~np.isfinite(raw.y)))
    kx = np.where(keyed[rcol], raw.x, 0.0)
    fin = np.isfinite(raw.y)

    def known_x(offset: I64) -> F64:
        if q.by_index:
            by_pos: F64 = (start + offset).astype(np.float64)
            return by_pos
        out: F64 = np.where(offset == 0, xlo, np.where(offset == size - 1, xhi, math.nan))
        return out

    def known_y(offset: I64) -> F64:
        out: F64 = np.where(offset == rec["alo"], rec["lo"], np.where(offset == rec["ahi"], rec["hi"], math.nan))
        return out

    # Finite candidates per role: (bucket, position, x if known, y if known, order key).
    chosen: list[tuple[I64, F64, F64]] = []
    rf = raw.take(fin)
    rfcol, rfkx = rcol[fin], kx[fin]
    # A pruned node's edge: p is the first position of its right bucket.
    ps = pruned * base
    inner = q.cols((ps[:, None] + np.arange(base)).ravel().astype(np.float64)).reshape(-1, base)
    p_edge = ps + (inner == inner[:, :1]).sum(1)
    edge_col = {"first": inner[:, -1], "last": inner[:, 0]}
    edge_pos = {"first": p_edge, "last": p_edge - 1}
    for name, sign in (("first", 1), ("last", -1)):
        has = rec[name] >= 0
        c = np.concatenate([col[has], edge_col[name], rfcol])
        p = np.concatenate([start[has] + rec[name][has], edge_pos[name], rf.pos])
        k = np.concatenate([np.zeros(int(has.sum()) + len(pruned)), rfkx])
        xv = np.concatenate([known_x(rec[name])[has], edge_pos[name].astype(np.float64), rf.x])
        yv = np.concatenate([known_y(rec[name])[has], np.full(len(pruned), math.nan), rf.y])
        win = group_first(c, sign * k, sign * p)
        chosen.append((p[win], xv[win], yv[win]))
    for name, value, sign in (("alo", "lo", 1), ("ahi", "hi", -1)):
        has = rec[name] >= 0
        c = np.concatenate([col[has], rfcol])
        p = np.concatenate([start[has] + rec[name][has], rf.pos])
        v = np.concatenate([rec[value][has], rf.y])
        xv = np.concatenate([known_x(rec[name])[has], rf.x])
        win = group_first(c, sign * v, p)
        chosen.append((p[win], xv[win], v[win]))
    pos, xs, ys = _merge(chosen)
    # Non-finite: per bucket and kind, the first and last.
    rn = raw.take(~fin)
    has_nf = rec["nfcount"] > 0
    kind_w = np.where(rec["flags"] & NAN, 0, np.where(rec["flags"] & POSINF, 1, 2))[has_nf]
    nchosen = []
    for name, sign in (("nff", 1), ("nfl", -1)):
        key = np.concatenate([col[has_nf] * 3 + kind_w, rcol[~fin] * 3 + nonfinite_kind(rn.y)])
        p = np.concatenate([start[has_nf] + rec[name][has_nf], rn.pos])
        k = np.concatenate([np.zeros(int(has_nf.sum())), kx[~fin]])
        xv = np.concatenate([known_x(rec[name])[has_nf], rn.x])
        yv = np.concatenate([KIND_VALUES[kind_w], rn.y])
        win = group_first(key, sign * k, sign * p)
        nchosen.append((p[win], xv[win], yv[win]))
    npos, nxs, nys = _merge(nchosen, keep_y=True)
    if fx is not None:
        _constant_x(state, fx, pos, xs)
        _constant_x(state, fx, npos, nxs)
    _look_up(state, reader, q, pos, xs, ys)
    _look_up(state, reader, q, npos, nxs, None)
    o, no = np.lexsort((pos, xs)), np.lexsort((npos, nxs))
    return Series(xs[o], ys[o], pos[o], nxs[no], nys[no], npos[no], False, count, nonfinite_count, q.x0, q.x1, q.width)


def _constant_x(state: State, fx: list[Grow], pos: I64, xs: F64) -> None:
    """Fill in the x of points whose level-0 node has one x on every line (an epoch,
    say): no need to read their lines."""
    base = pyramid.BASE
    where = np.flatnonzero(np.isnan(xs) & (pos < state.nodes * base))
    if len(where):
        rec = fx[0].view[pos[where] // base]
        same = ((rec["flags"] & DENSE) > 0) & (rec["lo"] == rec["hi"])
        xs[where[same]] = rec["lo"][same]


def _unordered(col: I64, start: I64, xlo: F64, xhi: F64, rcol: I64, raw: Points) -> I64:
    """Buckets in which x decreases from one piece (a whole node or a raw point) to
    the next in stream order: there the order of x is not the order of positions."""
    c = np.concatenate([col, rcol])
    p = np.concatenate([start, raw.pos])
    lo = np.concatenate([xlo, raw.x])
    hi = np.concatenate([xhi, raw.x])
    o = np.lexsort((p, c))
    c, lo, hi = c[o], lo[o], hi[o]
    bad = (c[1:] == c[:-1]) & (hi[:-1] > lo[1:])
    out: I64 = np.unique(c[1:][bad])
    return out


def _merge(parts: list[tuple[I64, F64, F64]], keep_y: bool = False) -> tuple[I64, F64, F64]:
    """The chosen points once each, with what is known of x and y (NaN: unknown)."""
    pos = np.concatenate([p for p, _, _ in parts])
    xs = np.concatenate([x for _, x, _ in parts])
    ys = np.concatenate([y for _, _, y in parts])
    if len(pos) == 0:
        return pos, xs, ys
    o = np.argsort(pos, kind="stable")
    pos, xs, ys = pos[o], xs[o], ys[o]
    starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])
    # Every known value of one point is the same number: fmin picks it over NaN.
    x_out = np.fmin.reduceat(xs, starts)
    y_out = ys[starts] if keep_y else np.fmin.reduceat(ys, starts)
    return pos[starts], x_out, y_out


def _look_up(state: State, reader: LineReader, q: Query, pos: I64, xs: F64, ys: F64 | None) -> None:
    """Fill in the x (and y) that no record holds, from the points' own lines: one read
    per level-0 node, one decode for all."""
    missing = np.isnan(xs) if ys is None else np.isnan(xs) | np.isnan(ys)
    if not missing.any():
        return
    where = np.flatnonzero(missing)
    wanted = pos[where].tolist()  # ascending: pos comes sorted from _merge
    lines = lines_at(reader, state.offsets.view, wanted, state.regular)
    block = series_lines.decode_block(b"\n".join(lines) + b"\n", q.names)
    if block.lines != len(where) or (state.regular and block.index != wanted):
        raise StaleError("lines moved")
    xs[where] = pos[where].astype(np.float64) if q.by_index else block.fields[q.x][0]
    if ys is not None:
        ys[where] = block.fields[q.y][0]
