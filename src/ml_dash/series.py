"""Chart series that keep every extreme: the M4 reduction over numpy arrays.

A series is one numeric field (``y``) of a metric stream against an x-axis, over an
x-range ``[x0, x1]``, for a chart ``width`` pixels wide. When the range holds at most
``4 * width`` points the answer is those points. Otherwise it is M4 (Jugel et al.,
PVLDB 7(10), 2014): the range is cut into ``width`` equal x-buckets (:func:`columns`
says which bucket a point falls in) and each bucket keeps

- its *first* and *last* point in x order,
- a point with its *minimum* and one with its *maximum* y,

so a line chart drawn from the answer is pixel-identical to one drawn from every
point, and no spike is ever lost. The precise rules, shared by :func:`m4`, the
brute-force :func:`m4_reference` and the index in ``stores/series_index.py``:

- A point is ``(x, y, index)`` where ``index`` is its position in the stream (the
  order it was logged). A point whose x is not a finite number is skipped; so is one
  outside ``[x0, x1]``.
- "x order" is the order of ``(x, index)``: first = smallest, last = largest.
- Ties in y go to the smallest ``index`` (the earliest logged point).
- Non-finite y values (NaN, +inf, -inf) never enter the buckets' extremes and are
  reported apart: in a raw answer every one; in an M4 answer, per bucket and per kind,
  the first and last in x order. ``count`` and ``nonfinite_count`` say how many points
  the range held, so nothing disappears silently.
- The answer lists each chosen point once, in x order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import InvalidValueError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

RAW_FACTOR = 4  # a range of at most RAW_FACTOR * width points is answered raw
MAX_WIDTH = 65_536
_NONFINITE_NAMES = ("NaN", "Infinity", "-Infinity")


@dataclass(frozen=True, eq=False)
class Series:
    """The answer to a series query, columnar.

    ``x``, ``y`` and ``index`` (the points' positions in the stream) are parallel
    arrays of the finite points, in x order. ``nonfinite_x``, ``nonfinite_y`` (NaN,
    +inf or -inf) and ``nonfinite_index`` are the non-finite points reported apart,
    also in x order. ``raw`` says every point of the range is there (else it is the
    M4 reduction). ``count`` is the number of points in the range (finite or not),
    ``nonfinite_count`` how many of them were non-finite. ``x0``/``x1`` is the range
    answered (None when the stream has no x at all).
    """

    x: FloatArray
    y: FloatArray
    index: IntArray
    nonfinite_x: FloatArray
    nonfinite_y: FloatArray
    nonfinite_index: IntArray
    raw: bool
    count: int
    nonfinite_count: int
    x0: float | None
    x1: float | None
    width: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (msgspec or json encode it as is): lists, numbers and
        the names ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` for the non-finite values."""
        return {
            "x": self.x.tolist(),
            "y": self.y.tolist(),
            "index": self.index.tolist(),
            "nonFinite": {
                "x": self.nonfinite_x.tolist(),
                "index": self.nonfinite_index.tolist(),
                "value": [nonfinite_name(v) for v in self.nonfinite_y.tolist()],
            },
            "raw": self.raw,
            "count": self.count,
            "nonFiniteCount": self.nonfinite_count,
            "x0": self.x0,
            "x1": self.x1,
            "width": self.width,
        }


def nonfinite_name(value: float) -> str:
    """``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (the names the data files use)."""
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def check_query(x0: float | None, x1: float | None, width: int) -> None:
    """Raise InvalidValueError naming the argument when a query cannot be answered."""
    if isinstance(width, bool) or not isinstance(width, int | np.integer) or not 1 <= width <= MAX_WIDTH:
        raise InvalidValueError(f"width must be an integer from 1 to {MAX_WIDTH}, got {width!r}")
    for name, value in (("x0", x0), ("x1", x1)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise InvalidValueError(f"{name} must be a number or None, got {value!r}")
        if not math.isfinite(float(value)):
            raise InvalidValueError(f"{name} must be finite, got {value!r}")
    if x0 is not None and x1 is not None and float(x0) > float(x1):
        raise InvalidValueError(f"x0 must not exceed x1, got x0={x0!r} and x1={x1!r}")


def columns(x: FloatArray, x0: float, x1: float, width: int) -> IntArray:
    """The bucket (0 .. width-1) of each x in ``[x0, x1]``.

    ``floor((x - x0) * (width / (x1 - x0)))``, clipped: a non-decreasing function of x
    (each floating-point step is monotone), which the index relies on: a run of
    non-decreasing x whose ends share a bucket lies wholly in it. Everything, the
    index included, computes buckets with this one function.
    """
    if width <= 1 or not x1 > x0:
        return np.zeros(len(x), dtype=np.int64)
    # Clipped first, so nothing overflows (no floating-point warnings, no errstate).
    xs = np.clip(np.asarray(x, dtype=np.float64), x0, x1)
    if math.isfinite(x1 - x0):
        raw = np.floor((xs - x0) * (width / (x1 - x0)))
    else:  # a span beyond the largest float: the same in halves
        raw = np.floor((xs * 0.5 - x0 * 0.5) * (width / (x1 * 0.5 - x0 * 0.5)))
    out: IntArray = np.clip(np.nan_to_num(raw, nan=0.0), 0, width - 1).astype(np.int64)
    return out


def column_of(x: float, x0: float, x1: float, width: int) -> int:
    """:func:`columns` for one number, without numpy (the same operations, so the same
    bucket)."""
    if width <= 1 or not x1 > x0:
        return 0
    xs = min(max(x, x0), x1)
    if math.isfinite(x1 - x0):
        raw = math.floor((xs - x0) * (width / (x1 - x0)))
    else:
        raw = math.floor((xs * 0.5 - x0 * 0.5) * (width / (x1 * 0.5 - x0 * 0.5)))
    return min(max(raw, 0), width - 1)


def group_first(col: IntArray, *keys: npt.NDArray[Any]) -> IntArray:
    """For each distinct ``col``, the position of its element that sorts first by
    ``keys`` (most significant first); the result is ordered by ``col``."""
    if len(col) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((*reversed(keys), col))
    sorted_col = col[order]
    starts = np.flatnonzero(np.r_[True, sorted_col[1:] != sorted_col[:-1]])
    return order[starts].astype(np.int64)


def _empty_series(raw: bool, count: int, nonfinite: int, x0: float | None, x1: float | None, width: int) -> Series:
    f = np.zeros(0, dtype=np.float64)
    i = np.zeros(0, dtype=np.int64)
    return Series(f, f, i, f, f, i, raw, count, nonfinite, x0, x1, width)


def _in_x_order(x: FloatArray, index: IntArray) -> IntArray:
    return np.lexsort((index, x)).astype(np.int64)


def m4(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    x0: float,
    x1: float,
    width: int,
    index: npt.ArrayLike | None = None,
) -> Series:
    """The series of the points ``(x[i], y[i])`` over ``[x0, x1]`` for ``width`` pixels.

    ``x`` and ``y`` are parallel arrays in stream order; ``index`` gives the points'
    stream positions (default ``0, 1, 2, ...``), which order ties. Raw when the range
    holds at most ``4 * width`` points, else M4 (see the module's rules). One
    vectorised pass of sorts: O(n log n). Raises InvalidValueError for a bad range or
    width.
    """
    check_query(x0, x1, width)
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    pos = np.arange(len(xs), dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    if not len(xs) == len(ys) == len(pos):
        raise InvalidValueError(f"x, y and index must have one length, got {len(xs)}, {len(ys)} and {len(pos)}")
    x0, x1 = float(x0), float(x1)
    keep = np.isfinite(xs) & (xs >= x0) & (xs <= x1)
    xs, ys, pos = xs[keep], ys[keep], pos[keep]
    finite = np.isfinite(ys)
    count, nonfinite = len(xs), int(len(xs) - np.count_nonzero(finite))
    if count <= RAW_FACTOR * width:
        fx, fy, fp = xs[finite], ys[finite], pos[finite]
        nx, ny, npos = xs[~finite], ys[~finite], pos[~finite]
        o, no = _in_x_order(fx, fp), _in_x_order(nx, npos)
        return Series(fx[o], fy[o], fp[o], nx[no], ny[no], npos[no], True, count, nonfinite, x0, x1, width)
    col = columns(xs, x0, x1, width)
    fin = np.flatnonzero(finite)
    fcol, fx, fy, fp = col[fin], xs[fin], ys[fin], pos[fin]
    chosen = np.unique(
        np.concatenate(
            [
                group_first(fcol, fx, fp),  # first
                group_first(fcol, -fx, -fp),  # last
                group_first(fcol, fy, fp),  # minimum
                group_first(fcol, -fy, fp),  # maximum
            ]
        )
    )
    cx, cy, cp = fx[chosen], fy[chosen], fp[chosen]
    o = _in_x_order(cx, cp)
    nx, ny, npos = _reduce_nonfinite(col[~finite], xs[~finite], ys[~finite], pos[~finite])
    return Series(cx[o], cy[o], cp[o], nx, ny, npos, False, count, nonfinite, x0, x1, width)


def nonfinite_kind(y: FloatArray) -> IntArray:
    """0 for NaN, 1 for +inf, 2 for -inf (the value of finite entries is meaningless)."""
    return np.where(np.isnan(y), 0, np.where(y > 0, 1, 2)).astype(np.int64)


def _reduce_nonfinite(
    col: IntArray, x: FloatArray, y: FloatArray, pos: IntArray
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Per bucket and kind, the first and last non-finite point in x order."""
    if len(col) == 0:
        return x, y, pos
    key = col * 3 + nonfinite_kind(y)
    chosen = np.unique(np.concatenate([group_first(key, x, pos), group_first(key, -x, -pos)]))
    cx, cy, cp = x[chosen], y[chosen], pos[chosen]
    o = _in_x_order(cx, cp)
    return cx[o], cy[o], cp[o]


def m4_reference(
    points: Sequence[tuple[float, float, int]], x0: float, x1: float, width: int
) -> tuple[bool, list[tuple[float, float, int]], list[tuple[float, float, int]], int, int]:
    """The same answer as :func:`m4`, by brute force in plain Python (for tests).

    ``points`` are ``(x, y, index)``. Returns ``(raw, finite points, non-finite points,
    count, nonfinite_count)``, the point lists in x order. Buckets come from
    :func:`columns`, the one definition of a bucket.
    """
    inside = [p for p in points if math.isfinite(p[0]) and x0 <= p[0] <= x1]
    finite = [p for p in inside if math.isfinite(p[1])]
    nonfinite = [p for p in inside if not math.isfinite(p[1])]

    def x_order(p: tuple[float, float, int]) -> tuple[float, int]:
        return (p[0], p[2])

    if len(inside) <= RAW_FACTOR * width:
        return True, sorted(finite, key=x_order), sorted(nonfinite, key=x_order), len(inside), len(nonfinite)
    cols = columns(np.array([p[0] for p in inside], dtype=np.float64), x0, x1, width).tolist()
    buckets: dict[int, list[tuple[float, float, int]]] = {}
    nf_buckets: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
    for c, p in zip(cols, inside, strict=True):
        if math.isfinite(p[1]):
            buckets.setdefault(c, []).append(p)
        else:
            kind = 0 if p[1] != p[1] else (1 if p[1] > 0 else 2)
            nf_buckets.setdefault((c, kind), []).append(p)
    chosen: dict[int, tuple[float, float, int]] = {}  # by index: NaN != NaN in a set
    for members in buckets.values():
        for p in (
            min(members, key=x_order),
            max(members, key=x_order),
            min(members, key=lambda p: (p[1], p[2])),
            min(members, key=lambda p: (-p[1], p[2])),
        ):
            chosen[p[2]] = p
    nf_chosen: dict[int, tuple[float, float, int]] = {}
    for members in nf_buckets.values():
        for p in (min(members, key=x_order), max(members, key=x_order)):
            nf_chosen[p[2]] = p
    return (
        False,
        sorted(chosen.values(), key=x_order),
        sorted(nf_chosen.values(), key=x_order),
        len(inside),
        len(nonfinite),
    )


def series_from_answer(found: Mapping[str, Any]) -> Series:
    """A Series from one item of ``GET /api/v1/metrics/series`` (RemoteStore)."""
    nonfinite = found.get("nonFinite") or {}
    values = [_NONFINITE_VALUES[v] for v in nonfinite.get("values", [])]
    return Series(
        np.asarray(found["x"], dtype=np.float64), np.asarray(found["values"], dtype=np.float64),
        np.asarray(found["index"], dtype=np.int64), np.asarray(nonfinite.get("x", []), dtype=np.float64),
        np.asarray(values, dtype=np.float64), np.asarray(nonfinite.get("index", []), dtype=np.int64),
        bool(found["raw"]), int(found["total"]), int(found.get("nonFiniteCount", len(values))),
        found.get("x0"), found.get("x1"), int(found["width"]),
    )


_NONFINITE_VALUES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
