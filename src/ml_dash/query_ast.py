"""The filter language's syntax tree, its canonical text, and glob patterns as regexes.

The nodes are frozen dataclasses; ``query_parse`` builds them, ``query`` evaluates them
in Python and ``query_mongo`` turns them into a MongoDB query. ``to_text`` writes a tree
back as text that parses to an equal tree. The language is described in docs/filters.md.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, field
from typing import Literal

# A literal: what a filter may compare with.
Scalar = str | int | float | bool | None

CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]
COMPARE_OPS: tuple[CompareOp, ...] = ("==", "!=", "<", "<=", ">", ">=")
ORDER_OPS: tuple[CompareOp, ...] = ("<", "<=", ">", ">=")

_FIRST_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_LATER_SEGMENT = re.compile(r"[A-Za-z0-9_]+\Z")


@dataclass(frozen=True)
class Name:
    """A dotted path such as ``params.model.depth``: its segments, and where it starts
    in the filter text (1-based column; 0 when built by hand, never compared)."""

    path: tuple[str, ...]
    column: int = field(default=0, compare=False)

    def __str__(self) -> str:
        out = []
        for number, segment in enumerate(self.path):
            plain = (_FIRST_SEGMENT if number == 0 else _LATER_SEGMENT).match(segment)
            if plain:
                out.append(segment if number == 0 else "." + segment)
            else:
                out.append(f"[{quote(segment)}]")
        return "".join(out)


@dataclass(frozen=True)
class Compare:
    """``name OP value`` with OP one of ``==, !=, <, <=, >, >=``."""

    name: Name
    op: CompareOp
    value: Scalar


@dataclass(frozen=True)
class Glob:
    """``name ~ "pattern"``: the whole string value matches the glob pattern."""

    name: Name
    pattern: str


@dataclass(frozen=True)
class In:
    """``name in [v, ...]`` (or ``not in`` when ``negated``)."""

    name: Name
    values: tuple[Scalar, ...]
    negated: bool = False


@dataclass(frozen=True)
class Contains:
    """``name contains value``: a list holding the value, or a string holding it as a substring."""

    name: Name
    value: Scalar


@dataclass(frozen=True)
class Exists:
    """``name exists``: the row has this name, whatever its value (null included)."""

    name: Name


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Expr, ...]


Atom = Compare | Glob | In | Contains | Exists
Expr = Compare | Glob | In | Contains | Exists | Not | And | Or


def walk(expr: Expr) -> list[Atom]:
    """The conditions of ``expr``, left to right."""
    if isinstance(expr, Not):
        return walk(expr.operand)
    if isinstance(expr, (And, Or)):
        return [atom for operand in expr.operands for atom in walk(operand)]
    return [expr]


# -- text ---------------------------------------------------------------------------------

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(text: str) -> str:
    """``text`` as a double-quoted string literal of the language."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def literal_text(value: Scalar) -> str:
    """A literal as the language writes it (``true``, ``null``, ``1e-05``, ``"a"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} has no literal in the filter language")
    return repr(value)


_PRECEDENCE = {Or: 1, And: 2, Not: 3}


def to_text(expr: Expr) -> str:
    """The canonical text of ``expr``: parentheses only where precedence needs them."""
    if isinstance(expr, (And, Or)):
        word = " and " if isinstance(expr, And) else " or "
        return word.join(_child_text(operand, _PRECEDENCE[type(expr)] + 1) for operand in expr.operands)
    if isinstance(expr, Not):
        return "not " + _child_text(expr.operand, _PRECEDENCE[Not])
    if isinstance(expr, Compare):
        return f"{expr.name} {expr.op} {literal_text(expr.value)}"
    if isinstance(expr, Glob):
        return f"{expr.name} ~ {quote(expr.pattern)}"
    if isinstance(expr, In):
        values = ", ".join(literal_text(v) for v in expr.values)
        return f"{expr.name} {'not in' if expr.negated else 'in'} [{values}]"
    if isinstance(expr, Contains):
        return f"{expr.name} contains {literal_text(expr.value)}"
    return f"{expr.name} exists"


def _child_text(expr: Expr, needed: int) -> str:
    text = to_text(expr)
    return f"({text})" if _PRECEDENCE.get(type(expr), 4) < needed else text


# -- glob patterns ------------------------------------------------------------------------

# The regexes below must mean the same to Python's ``re`` and to MongoDB's PCRE, so they
# use only what both read alike: ``\A``, ``[\s\S]`` for any character (no flags), a
# backslash before ASCII punctuation for a literal, and ``(?![\s\S])`` for the end,
# because ``$`` and PCRE's ``\Z`` also match before a final newline and Python has no ``\z``.
ANY_CHAR = r"[\s\S]"
END = r"(?![\s\S])"
_PUNCTUATION = frozenset(string.punctuation)


class GlobError(ValueError):
    """A malformed glob pattern; ``offset`` is the 0-based position in the pattern."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def escape_regex(text: str) -> str:
    """``text`` as a regex matching it literally (in Python and in MongoDB alike)."""
    return "".join("\\" + ch if ch in _PUNCTUATION else ch for ch in text)


def glob_regex(pattern: str) -> str:
    """The anchored regex of a glob pattern: ``*`` any run of characters, ``?`` one
    character, ``[abc]``, ``[a-z]`` a class, ``[!a-z]`` its complement; everything else
    (a backslash too) stands for itself. Raises GlobError for an unclosed ``[`` or a
    reversed range."""
    out = [r"\A"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(ANY_CHAR + "*")
        elif ch == "?":
            out.append(ANY_CHAR)
        elif ch == "[":
            regex, i = _glob_class(pattern, i)
            out.append(regex)
            continue
        else:
            out.append(escape_regex(ch))
        i += 1
    out.append(END)
    return "".join(out)


def _glob_class(pattern: str, start: int) -> tuple[str, int]:
    """The class opening at ``pattern[start] == "["``: (its regex, the index after ``]``)."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] == "!"
    if negate:
        i += 1
    items: list[str] = []
    first = True
    while i < len(pattern) and (first or pattern[i] != "]"):
        first = False
        low = pattern[i]
        if i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            high = pattern[i + 2]
            if high < low:
                raise GlobError(f"reversed range {low}-{high} in the pattern", i)
            items.append(escape_regex(low) + "-" + escape_regex(high))
            i += 3
        else:
            items.append(escape_regex(low))
            i += 1
    if i >= len(pattern):
        raise GlobError("'[' is not closed by ']' in the pattern (write [[] for a literal '[')", start)
    return "[" + ("^" if negate else "") + "".join(items) + "]", i + 1
