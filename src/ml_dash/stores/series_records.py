"""The records of the series index: one packed numpy record per node of the pyramid.

Level 0 has one record per ``BASE`` lines, level ``l`` one per ``BASE * FANOUT**l``
lines. A record says, for one field over the lines of its node: the minimum and
maximum finite value and where they first are, where the first and last finite and
non-finite values are, how many lines hold a number and how many a non-finite one, and
flags (``DENSE``: every line holds a finite number; ``MONO``: and they never
decrease; the kinds of non-finite values). Offsets are counted from the node's first
line; ``0xFF`` (level 0) or ``0xFFFFFFFF`` (upper levels) where there is none.
:func:`summarize` makes level-0 records from values, :func:`combine` an upper level
from the one below; docs/series.md has the table of fields.

The other ``series_*`` modules read ``BASE``, ``FANOUT`` and ``MAX_LEVELS`` as
attributes of this module at call time (``series_records.BASE``), never by
``from ... import``: the tests shrink the pyramid by setting them, through
``series_index``, which forwards the assignment here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

Arr = npt.NDArray[Any]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

BASE = 32  # lines per level-0 node: at most what a query reads raw at each bucket edge
FANOUT = 8
MAX_LEVELS = 8  # offsets in upper records are uint32: BASE * FANOUT**7 < 2**32

DENSE, MONO, NAN, POSINF, NEGINF = 1, 2, 4, 8, 16
KINDS = NAN | POSINF | NEGINF
KIND_VALUES = np.array([math.nan, math.inf, -math.inf])  # by kind number: series.nonfinite_kind
OFFSETS = ("alo", "ahi", "first", "last", "nff", "nfl")
INTS = (*OFFSETS, "count", "nfcount")
BASE_DTYPE = np.dtype([("lo", "<f8"), ("hi", "<f8"), *[(n, "u1") for n in INTS], ("flags", "u1")])
UPPER_DTYPE = np.dtype([("lo", "<f8"), ("hi", "<f8"), *[(n, "<u4") for n in INTS], ("flags", "u1")])
OFFSETS_DTYPE = np.dtype("<i8")


def record_dtype(level: int) -> np.dtype[Any]:
    """The record type of ``level`` (25 bytes at level 0, 49 above)."""
    return BASE_DTYPE if level == 0 else UPPER_DTYPE


def _none(dtype: np.dtype[Any]) -> int:
    return 0xFF if dtype == BASE_DTYPE else 0xFFFFFFFF


def node_size(level: int | I64) -> Any:
    """Lines per node of ``level`` (elementwise for an array of levels)."""
    return BASE * FANOUT**level


def level_counts(nodes: int) -> list[int]:
    """Complete nodes per level, from level 0, for ``nodes`` level-0 nodes."""
    counts: list[int] = []
    n = nodes
    while n >= 1 and len(counts) < MAX_LEVELS:
        counts.append(n)
        n //= FANOUT
    return counts


def cover(nodes: int) -> list[tuple[int, I64]]:
    """The fewest nodes (level, ids) that cover the lines of ``nodes`` level-0 nodes:
    every node of the top level, then at each level below the ones after the last
    complete parent. Ids ascend within a level; levels go from 0 up."""
    counts = level_counts(nodes)
    parts = []
    for level, n in enumerate(counts):
        above = counts[level + 1] * FANOUT if level + 1 < len(counts) else 0
        parts.append((level, np.arange(above, n, dtype=np.int64)))
    return parts


def empty_records(level: int, n: int) -> Arr:
    """Records of ``n`` nodes without the field."""
    rec = np.zeros(n, dtype=record_dtype(level))
    rec["lo"], rec["hi"] = math.inf, -math.inf
    for name in OFFSETS:
        rec[name] = _none(rec.dtype)
    return rec


def offset_column(rec: Arr, name: str) -> I64:
    """An offset column as int64, -1 where there is none."""
    out: I64 = rec[name].astype(np.int64)
    out[out == _none(rec.dtype)] = -1
    return out


def _put(rec: Arr, name: str, values: I64) -> None:
    rec[name] = np.where(values < 0, _none(rec.dtype), values)


def _first_true(mask: Mask) -> I64:
    return np.where(mask.any(1), mask.argmax(1), -1).astype(np.int64)


def _last_true(mask: Mask) -> I64:
    return np.where(mask.any(1), mask.shape[1] - 1 - mask[:, ::-1].argmax(1), -1).astype(np.int64)


def summarize(values: F64, present: Mask) -> Arr:
    """Level-0 records for ``len(values) // BASE`` nodes. ``values`` is the field on
    each line (non-finite values restored), ``present`` whether the line holds it."""
    v = values.reshape(-1, BASE)
    p = present.reshape(-1, BASE)
    rec = np.zeros(len(v), dtype=BASE_DTYPE)
    rows = np.arange(len(v))
    with np.errstate(invalid="ignore"):
        fin = p & np.isfinite(v)
        nonfin = p & ~np.isfinite(v)
        any_fin = fin.any(1)
        alo = np.where(fin, v, math.inf).argmin(1)  # argmin/argmax: the first on ties
        ahi = np.where(fin, v, -math.inf).argmax(1)
        # The values at those places, not .min(): keeps -0.0 apart from 0.0.
        rec["lo"] = np.where(any_fin, v[rows, alo], math.inf)
        rec["hi"] = np.where(any_fin, v[rows, ahi], -math.inf)
        _put(rec, "alo", np.where(any_fin, alo, -1))
        _put(rec, "ahi", np.where(any_fin, ahi, -1))
        _put(rec, "first", _first_true(fin))
        _put(rec, "last", _last_true(fin))
        _put(rec, "nff", _first_true(nonfin))
        _put(rec, "nfl", _last_true(nonfin))
        rec["count"] = p.sum(1)
        rec["nfcount"] = nonfin.sum(1)
        dense = fin.all(1)
        mono = dense & (np.diff(v, axis=1) >= 0).all(1)
        flags = dense * DENSE + mono * MONO
        flags += (nonfin & np.isnan(v)).any(1) * NAN
        flags += (nonfin & (v == math.inf)).any(1) * POSINF
        flags += (nonfin & (v == -math.inf)).any(1) * NEGINF
    rec["flags"] = flags
    return rec


def combine(children: Arr, child_size: int) -> Arr:
    """Records one level up from ``children`` (FANOUT per parent, each covering
    ``child_size`` lines): what ``summarize`` would say of the parents' lines."""
    c = children.reshape(-1, FANOUT)
    rec = np.zeros(len(c), dtype=UPPER_DTYPE)
    rows = np.arange(len(c))

    def at(name: str, child: I64) -> I64:
        off = offset_column(c, name)[rows, child]
        return np.where(off < 0, -1, child * child_size + off)

    lo, hi = c["lo"], c["hi"]
    klo, khi = lo.argmin(1), hi.argmax(1)  # the first child on ties: the earliest point
    rec["lo"], rec["hi"] = lo[rows, klo], hi[rows, khi]
    _put(rec, "alo", at("alo", klo))
    _put(rec, "ahi", at("ahi", khi))
    for first, last in (("first", "last"), ("nff", "nfl")):
        has = offset_column(c, first) >= 0
        _put(rec, first, np.where(has.any(1), at(first, has.argmax(1)), -1))
        _put(rec, last, np.where(has.any(1), at(last, FANOUT - 1 - has[:, ::-1].argmax(1)), -1))
    rec["count"] = c["count"].sum(1, dtype=np.int64)
    rec["nfcount"] = c["nfcount"].sum(1, dtype=np.int64)
    flags = c["flags"].astype(np.int64)
    dense = ((flags & DENSE) > 0).all(1)
    mono = dense & ((flags & MONO) > 0).all(1) & (hi[:, :-1] <= lo[:, 1:]).all(1)
    rec["flags"] = dense * DENSE + mono * MONO + np.bitwise_or.reduce(flags & KINDS, axis=1)
    return rec


class Grow:
    """A numpy array that grows at the end (capacity doubles)."""

    def __init__(self, dtype: np.dtype[Any], data: Arr | None = None) -> None:
        self.buf: Arr = np.empty(max(16, 0 if data is None else len(data)), dtype=dtype)
        self.n = 0
        if data is not None:
            self.extend(data)

    @property
    def view(self) -> Arr:
        return self.buf[: self.n]

    def __len__(self) -> int:
        return self.n

    def extend(self, data: Arr) -> None:
        need = self.n + len(data)
        if need > len(self.buf):
            bigger = np.empty(max(need, 2 * len(self.buf)), dtype=self.buf.dtype)
            bigger[: self.n] = self.buf[: self.n]
            self.buf = bigger
        self.buf[self.n : need] = data
        self.n = need


def gather(
    levels: list[Grow], parts: list[tuple[int, I64]], names: tuple[str, ...] = ("lo", "hi", *INTS, "flags")
) -> dict[str, Arr]:
    """The records of nodes given as (level, ids), column by column, in the order of
    ``parts``: offsets as int64 with -1 for none, counts and flags as int64."""
    out: dict[str, list[Arr]] = {k: [] for k in names}
    for level, ids in parts:
        rec = levels[level].view[ids]
        for k in names:
            if k in ("lo", "hi"):
                out[k].append(rec[k])
            elif k in OFFSETS:
                out[k].append(offset_column(rec, k))
            else:
                out[k].append(rec[k].astype(np.int64))
    return {
        k: np.concatenate(v) if v else np.zeros(0, dtype=np.float64 if k in ("lo", "hi") else np.int64)
        for k, v in out.items()
    }
