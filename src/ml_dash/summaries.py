"""Run summaries and the table of runs: one row per experiment, filtered, sorted, paged.

A :class:`RunSummary` is what a table of runs shows of one experiment: its info, its
params (flat) and, for every metric stream and numeric field, count, first, last, min
and max with the index of each extreme. Stores make them (``Store.run_summaries``)
from what they keep up to date as data arrives; :func:`select_runs` applies the filter
language (``ml_dash.query``), a sort on any column and a page, the same way for every
store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from .errors import FilterSyntaxError, InvalidValueError
from .query import MISSING, DictRow, Exists, compile_filter, parse_expr, row_from_info
from .records import ExperimentInfo

MAX_PAGE = 10_000
_PLAIN = frozenset({str, int, float, bool, type(None), list})
DEFAULT_SORT = "created"


def as_number(value: Any) -> float | None:
    """``value`` as a float when it is a number a field statistic counts (not a bool):
    an int too large for a float is ±inf; anything else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.copysign(math.inf, value)


class FieldStats(TypedDict, total=False):
    """One numeric field of one metric stream: ``count`` finite values (first, last,
    min and max are among them; ties go to the earliest point) and ``nonFinite``
    NaN/±inf values apart."""

    count: int
    first: float | None
    last: float | None
    min: float | None
    max: float | None
    lastIndex: int | None
    minIndex: int | None
    maxIndex: int | None
    nonFinite: int


@dataclass(frozen=True)
class RunSummary:
    """One experiment as a table of runs shows it."""

    info: ExperimentInfo
    params: dict[str, Any] = field(default_factory=dict)  # flat: "model.depth"
    metrics: dict[str, dict[str, FieldStats]] = field(default_factory=dict)

    def row(self) -> DictRow:
        """The row the filter language evaluates (``ml_dash.query``)."""
        for value in self.params.values():
            # type() first: isinstance against the Mapping ABC costs ~1 µs a value.
            if type(value) not in _PLAIN and isinstance(value, Mapping) and value:
                return row_from_info(self.info, self.params, self.metrics)
        # Already flat (as every store keeps them): DictRow would only copy them, at
        # about 40 µs per 50 params, which a table of 1,000 runs pays 1,000 times.
        return _FlatRow({**row_from_info(self.info, None, self.metrics).data, "params": self.params}, self.params)


class _FlatRow(DictRow):
    """A DictRow over params that are flat already."""

    __slots__ = ()

    def __init__(self, data: Mapping[str, Any], flat_params: dict[str, Any]) -> None:
        self.data = data
        self.params = flat_params


def sort_path(text: str) -> tuple[str, ...]:
    """The column ``text`` names (``name``, ``created``, ``params.lr``,
    ``metrics.train.loss.last`` ...), parsed with the filter language's rules."""
    try:
        expr = parse_expr(f"{text} exists")
    except FilterSyntaxError as exc:
        raise InvalidValueError(f"cannot sort by {text!r}: {exc.reason}") from exc
    if not isinstance(expr, Exists):
        raise InvalidValueError(f"cannot sort by {text!r}: name one column")
    return expr.name.path


def _sort_key(value: Any) -> tuple[int, Any]:
    # Numbers before strings before the rest; booleans with numbers would surprise.
    if isinstance(value, bool):
        return (2, int(value))
    if isinstance(value, int | float):
        return (0, value) if not (isinstance(value, float) and math.isnan(value)) else (3, 0)
    if isinstance(value, str):
        return (1, value)
    return (4, repr(value))


def select_runs(
    summaries: Iterable[RunSummary],
    where: str | None = None,
    sort: str | None = None,
    descending: bool = False,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[RunSummary], int]:
    """The page ``[offset, offset + limit)`` of the summaries that pass ``where``,
    ordered by ``sort`` (default: creation time; rows without the column come last
    either way, ties keep prefix order), and how many passed in all."""
    if offset < 0 or not 0 <= limit <= MAX_PAGE:
        raise InvalidValueError(f"offset must be >= 0 and limit within 0..{MAX_PAGE}, got {offset} and {limit}")
    test = compile_filter(where) if where and where.strip() else None
    path = sort_path(sort or DEFAULT_SORT)
    rows = [(s, s.row()) for s in summaries]
    if test is not None:
        rows = [(s, row) for s, row in rows if test.matches(row)]
    rows.sort(key=lambda pair: pair[0].info.prefix)
    present: list[tuple[RunSummary, tuple[int, Any]]] = []
    absent: list[RunSummary] = []
    for s, row in rows:
        value = row.lookup(path)
        if _has(value):
            present.append((s, _sort_key(value)))
        else:
            absent.append(s)
    present.sort(key=lambda pair: pair[1], reverse=descending)
    ordered = [s for s, _ in present] + absent
    return ordered[offset:offset + limit], len(ordered)


def _has(value: Any) -> bool:
    return value is not MISSING and value is not None


def summary_to_json(summary: RunSummary, experiment_json: Mapping[str, Any]) -> dict[str, Any]:
    """The answer's form of one summary: the Experiment JSON plus params and metrics."""
    return {**experiment_json, "params": summary.params, "metrics": summary.metrics}
