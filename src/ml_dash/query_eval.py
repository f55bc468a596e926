"""Filters evaluated in Python: rows, the comparison rules, ``Filter`` and ``compile_filter``.

The rules (docs/filters.md, "Meaning"): a missing name makes ``==``, ``<``, ``~``,
``in``, ``contains`` false, and ``!=`` / ``not in`` are exactly ``not (==)`` /
``not (in)``, so they are true for a missing name; ``== null`` is true for a missing
name or a null value. Booleans equal only booleans; numbers compare as numbers (``1 ==
1.0``), strings as strings (by code point); a number against a string, and anything
against NaN, is false, never an error.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from .query_ast import (
    And,
    Compare,
    Contains,
    Exists,
    Expr,
    Glob,
    In,
    Not,
    Or,
    Scalar,
    glob_regex,
    to_text,
    walk,
)
from .query_parse import parse
from .query_schema import check_run_condition
from .records import ExperimentInfo


class _Missing:
    """The type of ``MISSING``."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()
"""What ``Row.lookup`` returns for a name the row does not have."""


class Row(Protocol):
    """One experiment as a filter sees it."""

    def lookup(self, path: tuple[str, ...]) -> Any:
        """The value at ``path`` (``("params", "lr")``), or ``MISSING``."""
        ...


def flatten_params(params: Mapping[str, Any], parent: str = "") -> dict[str, Any]:
    """Nested params -> flat ``"a.b"`` keys, as stores keep them (lists and empty dicts are values)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        full = f"{parent}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, full + "."))
        else:
            flat[full] = value
    return flat


class DictRow:
    """A row over plain data::

        {"status": "COMPLETED", "name": "run-1", "tags": ["baseline"], "created": 1.7e9,
         "params": {"lr": 0.01, "model": {"depth": 50}},          # nested or flat "model.depth"
         "metadata": {...},                                        # nested
         "metrics": {"eval": {"accuracy": {"last": 0.9, "min": 0.1, "max": 0.93, "count": 40}}}}

    ``params.a.b`` and ``params["a.b"]`` are the same param (stores flatten them with
    ``.``); every other path walks nested mappings.
    """

    __slots__ = ("data", "params")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        params = data.get("params")
        self.params = flatten_params(params) if isinstance(params, Mapping) else {}

    def lookup(self, path: tuple[str, ...]) -> Any:
        if path[0] == "params" and len(path) > 1:
            return self.params.get(".".join(path[1:]), MISSING)
        node: Any = self.data
        for segment in path:
            if not isinstance(node, Mapping) or segment not in node:
                return MISSING
            node = node[segment]
        return node

    def __repr__(self) -> str:
        return f"DictRow({self.data!r})"


def row_from_info(
    info: ExperimentInfo,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    status: str | None = None,
) -> DictRow:
    """The row of one experiment: its info under the filter names (``created`` is
    ``created_at`` ...), its params (flat or nested) and metric summaries
    (``{stream: {field: {"last": ..., "min": ..., "max": ..., "count": ...}}}``).
    ``status`` overrides ``info.status`` (a reader shows ``STALE`` for a dead run)."""
    return DictRow({
        "prefix": info.prefix,
        "owner": info.owner,
        "project": info.project,
        "name": info.name,
        "folders": list(info.folders),
        "description": info.description,
        "tags": list(info.tags),
        "status": status or info.status,
        "created": info.created_at,
        "started": info.started_at,
        "ended": info.ended_at,
        "metadata": info.metadata,
        "params": params or {},
        "metrics": metrics or {},
    })


# -- the comparison rules -----------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def equal(value: Any, literal: Scalar) -> bool:
    """``value == literal`` under the filter rules (a missing value is handled by the caller)."""
    if literal is None:
        return value is None
    if isinstance(literal, bool):
        return isinstance(value, bool) and value == literal
    if isinstance(literal, str):
        return isinstance(value, str) and value == literal
    return _is_number(value) and bool(value == literal)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                 ">=": operator.ge}


def ordered(value: Any, op: str, literal: Scalar) -> bool:
    """``value OP literal`` for ``<, <=, >, >=``: numbers with numbers, strings with strings."""
    if isinstance(literal, str):
        return isinstance(value, str) and _ORDER[op](value, literal)
    if _is_number(literal):
        return _is_number(value) and _ORDER[op](value, literal)
    return False


def contains(value: Any, literal: Scalar) -> bool:
    """A list holding an element equal to ``literal``, or a string holding it as a substring."""
    if isinstance(value, (list, tuple)):
        return any(equal(item, literal) for item in value)
    return isinstance(value, str) and isinstance(literal, str) and literal in value


# -- compiled filters ---------------------------------------------------------------------

Predicate = Callable[[Row], bool]
RowT = TypeVar("RowT", bound="Row | Mapping[str, Any]")


def _compile(expr: Expr) -> Predicate:
    if isinstance(expr, And):
        parts = [_compile(e) for e in expr.operands]
        return lambda row: all(part(row) for part in parts)
    if isinstance(expr, Or):
        parts = [_compile(e) for e in expr.operands]
        return lambda row: any(part(row) for part in parts)
    if isinstance(expr, Not):
        inner = _compile(expr.operand)
        return lambda row: not inner(row)
    path = expr.name.path
    if isinstance(expr, Compare):
        literal, op = expr.value, expr.op
        if op in ("==", "!="):
            want = op == "=="
            if literal is None:
                return lambda row: _is_null(row.lookup(path)) == want
            return lambda row: equal(row.lookup(path), literal) == want
        return lambda row: ordered(row.lookup(path), op, literal)
    if isinstance(expr, Glob):
        pattern = re.compile(glob_regex(expr.pattern))
        return lambda row: _glob_match(pattern, row.lookup(path))
    if isinstance(expr, In):
        values, negated = expr.values, expr.negated
        with_null = None in values

        def test_in(row: Row) -> bool:
            value = row.lookup(path)
            found = (with_null and _is_null(value)) or any(equal(value, v) for v in values)
            return found != negated

        return test_in
    if isinstance(expr, Contains):
        literal = expr.value
        return lambda row: contains(row.lookup(path), literal)
    assert isinstance(expr, Exists)
    return lambda row: row.lookup(path) is not MISSING


def _is_null(value: Any) -> bool:
    return value is None or value is MISSING


def _glob_match(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.match(value) is not None


@dataclass(frozen=True)
class Filter:
    """A parsed filter: ``expr`` is its tree, ``str(filter)`` its canonical text."""

    expr: Expr
    _test: Predicate = field(repr=False, compare=False)

    @classmethod
    def from_expr(cls, expr: Expr) -> Filter:
        """A filter over a tree built or taken apart elsewhere (``to_mongo``'s residual)."""
        return cls(expr, _compile(expr))

    def matches(self, row: Row | Mapping[str, Any]) -> bool:
        """Whether ``row`` (a ``Row``, or plain data as ``DictRow`` takes it) passes the filter."""
        return self._test(DictRow(row) if isinstance(row, Mapping) else row)

    def select(self, rows: Iterable[RowT]) -> list[RowT]:
        """The rows that pass, in their order."""
        return [row for row in rows if self.matches(row)]

    def paths(self) -> frozenset[tuple[str, ...]]:
        """Every name the filter reads (so a caller loads metrics only when a filter needs them)."""
        return frozenset(atom.name.path for atom in walk(self.expr))

    def __str__(self) -> str:
        return to_text(self.expr)


def compile_filter(text: str, *, schema: bool = True) -> Filter:
    """Parse ``text`` into a Filter. With ``schema`` (the default) names and values are
    checked against what an experiment has (``query_schema``); without it any dotted
    name is accepted. Raises FilterSyntaxError naming the column of the first problem."""
    return Filter.from_expr(parse(text, check_run_condition if schema else None))


def parse_expr(text: str, *, schema: bool = True) -> Expr:
    """The syntax tree of ``text`` (the same checks as ``compile_filter``)."""
    return parse(text, check_run_condition if schema else None)

