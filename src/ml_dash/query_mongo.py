"""Filters as MongoDB queries, built from values only.

``to_mongo(filter, field_map)`` returns the query for what the documents of one
collection hold, and the rest of the filter as a residual ``Filter`` that the caller
evaluates in Python on the documents the query returned. Only the caller's
``field_map`` names document fields; a name or key from the filter text is only ever a
value in the query (``params["$where"] == 1`` compares an entry key with the string
``"$where"``), so a filter cannot inject an operator.

Each condition becomes a query that MongoDB answers exactly as ``Filter.matches`` would,
or is left to the residual. The queries use only operators seen right on both MongoDB
and the nx-27017 emulator (``tests/mongo/test_query_mongo.py``): ``$eq`` with a ``$type``
guard (the emulator lets ``true`` equal ``1``), ``$regex`` anchored with ``\\A`` and
``(?![\\s\\S])``, ``$elemMatch``, ``$exists`` (under ``$nor``), ``$and``/``$or``/``$nor``;
not ``$not`` (missing there), not ``$in`` inside ``$elemMatch`` (wrong there), not a bare
null (``{"f": null}`` misbehaves under ``$nor`` there). docs/filters.md lists the findings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from .errors import InvalidValueError
from .query_ast import And, Atom, Compare, Contains, Expr, Glob, In, Not, Or, Scalar, escape_regex, glob_regex
from .query_eval import Filter

_INT64 = (-(2**63), 2**63 - 1)
NEVER: dict[str, Any] = {"_id": {"$exists": False}}  # matches no document: every document has an _id
ALWAYS: dict[str, Any] = {}


@dataclass(frozen=True)
class Field:
    """A document field: ``kind="scalar"`` holds a string, number, boolean or null (never
    an array); ``kind="list"`` holds an array of strings, numbers or booleans (no nulls)."""

    path: str
    kind: Literal["scalar", "list"] = "scalar"


@dataclass(frozen=True)
class Entries:
    """An array of ``{key: name, value: v}`` documents (the attribute pattern), so user
    names stay values: ``params.model.lr`` -> ``{array: {"$elemMatch": {"k": "model.lr",
    "v": <condition>}}}``.

    With one key the rest of the name, joined with ``.``, is the key (params are flat);
    with several, one segment goes to each. With ``stats`` the last segment names the
    entry field holding the value (``metrics.eval.acc.max`` -> ``{"s": "eval", "f":
    "acc", "max": <condition>}`` for ``keys=("s", "f")``).

    Values must be strings, numbers or booleans (null allowed): a writer leaves list and
    dict values out of the array. ``== null``, ``exists`` and ``contains`` on entries go
    to the residual, since a left-out value and a missing one look alike here.
    """

    array: str
    keys: tuple[str, ...] = ("k",)
    value: str = "v"
    stats: tuple[str, ...] = ()


Target = Field | Entries


class MongoQuery(NamedTuple):
    """``query`` for ``collection.find``; ``residual`` (or None) for the rows it returns."""

    query: dict[str, Any]
    residual: Filter | None


# The ``experiments`` collection of MongoStore (``stores/mongo_docs.experiment_doc``).
# ``status`` is left out on purpose: readers show STALE for a RUNNING experiment whose
# claims lapsed, which the stored field cannot tell; params and metadata are JSON blobs.
EXPERIMENTS_FIELD_MAP: Mapping[str, Target] = {
    "prefix": Field("_id"),
    "owner": Field("owner"),
    "project": Field("project"),
    "name": Field("name"),
    "description": Field("description"),
    "folders": Field("folders", "list"),
    "tags": Field("tags", "list"),
    "created": Field("createdAt"),
    "started": Field("startedAt"),
    "ended": Field("endedAt"),
}


def to_mongo(flt: Filter | Expr, field_map: Mapping[str, Target]) -> MongoQuery:
    """Split ``flt`` into a MongoDB query over the fields ``field_map`` maps (filter name
    such as ``"status"`` or ``"params"`` -> where the documents hold it) and a residual.

    The documents that match the query and then ``residual`` (when not None) are exactly
    those ``flt`` matches. Conditions are pushed down one top-level ``and`` operand at a
    time; an operand with any condition the map cannot answer stays whole in the residual.
    Raises InvalidValueError for a field map entry that is not a plain document path.
    """
    expr = flt.expr if isinstance(flt, Filter) else flt
    targets = _targets(field_map)
    pushed: list[dict[str, Any]] = []
    left: list[Expr] = []
    for operand in expr.operands if isinstance(expr, And) else (expr,):
        query = _translate(operand, targets)
        if query is None:
            left.append(operand)
        else:
            pushed.append(query)
    residual = None if not left else Filter.from_expr(left[0] if len(left) == 1 else And(tuple(left)))
    return MongoQuery(_and(pushed), residual)


def _targets(field_map: Mapping[str, Target]) -> dict[tuple[str, ...], Target]:
    out: dict[tuple[str, ...], Target] = {}
    for name, target in field_map.items():
        paths = [target.path] if isinstance(target, Field) else [target.array, *target.keys, target.value,
                                                                 *target.stats]
        for path in paths:
            segments = path.split(".")
            if any(s == "" or s.startswith("$") or "\0" in s for s in segments):
                raise InvalidValueError(f"field map {name!r}: {path!r} is not a plain document path")
        out[tuple(name.split("."))] = target
    return out


def _translate(expr: Expr, targets: dict[tuple[str, ...], Target]) -> dict[str, Any] | None:
    if isinstance(expr, (And, Or)):
        parts = [_translate(operand, targets) for operand in expr.operands]
        if any(part is None for part in parts):
            return None
        done = [part for part in parts if part is not None]
        return _and(done) if isinstance(expr, And) else _or(done)
    if isinstance(expr, Not):
        inner = _translate(expr.operand, targets)
        return None if inner is None else _not(inner)
    return _atom(expr, targets)


def _and(parts: list[dict[str, Any]]) -> dict[str, Any]:
    parts = [p for p in parts if p != ALWAYS]
    if NEVER in parts:
        return NEVER
    return ALWAYS if not parts else parts[0] if len(parts) == 1 else {"$and": parts}


def _or(parts: list[dict[str, Any]]) -> dict[str, Any]:
    parts = [p for p in parts if p != NEVER]
    if ALWAYS in parts:
        return ALWAYS
    return NEVER if not parts else parts[0] if len(parts) == 1 else {"$or": parts}


def _not(part: dict[str, Any]) -> dict[str, Any]:
    return NEVER if part == ALWAYS else ALWAYS if part == NEVER else {"$nor": [part]}


def _condition(op: str, literal: Scalar) -> dict[str, Any] | None:
    """The operator document for ``value OP literal`` on one field (``op`` is ``==``,
    ``~`` for a regex, or an order), true exactly when ``query_eval`` says so; None when
    MongoDB cannot hold the literal (an int beyond 64 bits, a string with a NUL)."""
    if isinstance(literal, str) and "\0" in literal:
        return None  # BSON regexes cannot hold a NUL, and nx-27017 compares strings only up to one
    if op == "~":
        assert isinstance(literal, str)
        return {"$regex": literal, "$type": "string"}
    if isinstance(literal, int) and not isinstance(literal, bool) and not _INT64[0] <= literal <= _INT64[1]:
        return None
    mongo_op = {"==": "$eq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}[op]
    if literal is None:
        return {"$eq": None}
    if isinstance(literal, bool):
        return {"$eq": literal, "$type": "bool"}
    if isinstance(literal, str):
        return {mongo_op: literal} if op == "==" else {mongo_op: literal, "$type": "string"}
    cond: dict[str, Any] = {mongo_op: literal, "$type": "number"}
    if op in ("<", "<="):
        cond["$ne"] = float("nan")  # MongoDB orders NaN below every number; the filter says false
    return cond


def _atom(atom: Atom, targets: dict[tuple[str, ...], Target]) -> dict[str, Any] | None:
    path = atom.name.path
    target = targets.get(path)
    if isinstance(target, Field):
        return _on_list(atom, target.path) if target.kind == "list" else _on_scalar(atom, target.path)
    for cut in range(len(path) - 1, 0, -1):
        found = targets.get(path[:cut])
        if isinstance(found, Entries):
            return _on_entries(atom, found, path[cut:])
    return None


def _field(path: str, cond: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if cond is None else {path: cond}


def _exists(path: str) -> dict[str, Any]:
    # The same as {path: {"$exists": True}} on MongoDB; nx-27017 answers that one alone
    # as false for a null value, and this form rightly.
    return {"$nor": [{path: {"$exists": False}}]}


def _on_scalar(atom: Atom, path: str) -> dict[str, Any] | None:
    query: dict[str, Any] | None
    if isinstance(atom, Compare):
        query = _field(path, _condition("==" if atom.op == "!=" else atom.op, atom.value))
        return _not(query) if query is not None and atom.op == "!=" else query
    if isinstance(atom, Glob):
        return _field(path, _condition("~", glob_regex(atom.pattern)))
    if isinstance(atom, In):
        if atom.values and all(isinstance(v, str) and "\0" not in v for v in atom.values):
            query = {path: {"$in": list(atom.values)}}
        else:
            parts = [_field(path, _condition("==", v)) for v in atom.values]
            query = None if None in parts else _or([p for p in parts if p is not None])
        return _not(query) if query is not None and atom.negated else query
    if isinstance(atom, Contains):
        if not isinstance(atom.value, str):
            return NEVER  # a scalar field holds no list, and only strings hold substrings
        return _field(path, _condition("~", escape_regex(atom.value)))
    return _exists(path)


def _on_list(atom: Atom, path: str) -> dict[str, Any] | None:
    # An array equals no literal but null (which matches only a missing field here).
    if isinstance(atom, Compare):
        query = {path: {"$eq": None}} if atom.value is None and atom.op in ("==", "!=") else NEVER
        return _not(query) if atom.op == "!=" else query
    if isinstance(atom, Glob):
        return NEVER
    if isinstance(atom, In):
        query = {path: {"$eq": None}} if None in atom.values else NEVER
        return _not(query) if atom.negated else query
    if isinstance(atom, Contains):
        if atom.value is None:
            return NEVER
        return _field(path, None if (cond := _condition("==", atom.value)) is None else {"$elemMatch": cond})
    return _exists(path)


def _on_entries(atom: Atom, target: Entries, rest: tuple[str, ...]) -> dict[str, Any] | None:
    value_field = target.value
    if target.stats:
        if len(rest) < 2 or rest[-1] not in target.stats:
            return None
        value_field, rest = rest[-1], rest[:-1]
    if len(target.keys) == 1:
        rest = (".".join(rest),)
    elif len(rest) != len(target.keys):
        return None
    if any("\0" in key for key in rest):
        return None  # as for values: nx-27017 compares strings only up to a NUL
    match = dict(zip(target.keys, rest, strict=True))

    def entry(cond: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if cond is None else {target.array: {"$elemMatch": {**match, value_field: cond}}}

    if isinstance(atom, Compare):
        if atom.value is None:
            return None
        query = entry(_condition("==" if atom.op == "!=" else atom.op, atom.value))
        return _not(query) if query is not None and atom.op == "!=" else query
    if isinstance(atom, Glob):
        return entry(_condition("~", glob_regex(atom.pattern)))
    if isinstance(atom, In) and None not in atom.values:
        parts = [entry(_condition("==", v)) for v in atom.values]
        if None in parts:
            return None
        query = _or([p for p in parts if p is not None])
        return _not(query) if atom.negated else query
    return None  # contains, exists, in with null: left to the residual

