"""Text -> syntax tree for the filter language: a hand-written tokenizer and a
recursive-descent parser. Nothing is ever evaluated as Python.

Grammar (keywords are case-insensitive; docs/filters.md has the full description)::

    filter     := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" or ")" | condition
    condition  := name ( ("=="|"="|"!="|"<"|"<="|">"|">=") value | "~" string
                       | ["not"] "in" "[" [value ("," value)* [","]] "]"
                       | "contains" value | "exists" )
    name       := IDENT ( "." SEGMENT | "[" string "]" )*
    value      := number | string | "true" | "false" | "null"

Every error is a :class:`~ml_dash.errors.FilterSyntaxError`: ``<what is wrong> at column
N`` (1-based), then the text and a caret under column N.
Input is bounded (``MAX_LENGTH`` characters, ``MAX_DEPTH`` levels of parentheses and
``not``), so a parse costs at most linear time and bounded recursion.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from .errors import FilterSyntaxError
from .query_ast import (
    COMPARE_OPS,
    ORDER_OPS,
    And,
    Compare,
    CompareOp,
    Contains,
    Exists,
    Expr,
    Glob,
    GlobError,
    In,
    Name,
    Not,
    Or,
    Scalar,
    glob_regex,
)

MAX_LENGTH = 10_000
# 32 levels keep the MongoDB query of any filter under the server's 100-level nesting
# limit (each level costs two: ``{"$or": [...]}``), with room for the innermost condition.
MAX_DEPTH = 32

KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "exists", "true", "false", "null"})
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_CHARS = _IDENT_START | frozenset("0123456789")
_DIGITS = frozenset("0123456789")
_SIMPLE_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t", "0": "\0", "/": "/"}
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "=", "~")
_PUNCT = {"(": "(", ")": ")", "[": "[", "]": "]", ",": ",", ".": "."}


@dataclass(frozen=True)
class Token:
    """One token: ``kind`` is ident, segment, string, number, op, a punctuation mark or end."""

    kind: str
    text: str
    value: Scalar
    column: int


def fail(text: str, column: int, reason: str) -> NoReturn:
    """Raise FilterSyntaxError for ``reason`` at ``column`` (see ``error_message``)."""
    raise FilterSyntaxError(error_message(text, column, reason), column, reason)


def error_message(text: str, column: int, reason: str) -> str:
    """``reason at column N``, then the text (80 characters around N at most) and a caret under N."""
    start = max(0, column - 1 - 50) if len(text) > 80 else 0
    end = min(len(text), start + 80)
    # One character per column, so the caret lines up: tabs and newlines become spaces.
    excerpt = "".join(" " if ch in "\t\n\r\f\v" else ch for ch in text[start:end])
    lead = "..." if start > 0 else ""
    tail = "..." if end < len(text) else ""
    where = f"column {column}" + (" (the end)" if column > len(text) else "")
    return f"{reason} at {where}\n  {lead}{excerpt}{tail}\n  {' ' * (len(lead) + column - 1 - start)}^"


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``end`` token; FilterSyntaxError on a bad character,
    string or number."""
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        col = i + 1
        if ch in " \t\r\n":
            i += 1
        elif tokens and tokens[-1].kind == "." and (ch in _IDENT_CHARS):
            j = i
            while j < n and text[j] in _IDENT_CHARS:
                j += 1
            tokens.append(Token("segment", text[i:j], text[i:j], col))
            i = j
        elif ch in _IDENT_START:
            j = i
            while j < n and text[j] in _IDENT_CHARS:
                j += 1
            tokens.append(Token("ident", text[i:j], text[i:j], col))
            i = j
        elif ch in _DIGITS or (ch == "-" and i + 1 < n and text[i + 1] in _DIGITS):
            token, i = _number(text, i)
            tokens.append(token)
        elif ch in "\"'":
            token, i = _string(text, i)
            tokens.append(token)
        elif ch in _PUNCT:
            tokens.append(Token(ch, ch, None, col))
            i += 1
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
            if op is None:
                hint = " (did you mean '!=' or 'not'?)" if ch == "!" else ""
                hint = hint or (" (write 'and' / 'or')" if ch in "&|" else "")
                fail(text, col, f"unexpected character {ch!r}{hint}")
            tokens.append(Token("op", op, None, col))
            i += len(op)
    tokens.append(Token("end", "", None, n + 1))
    return tokens


def _number(text: str, i: int) -> tuple[Token, int]:
    start = i
    if text[i] == "-":
        i += 1
    while i < len(text) and text[i] in _DIGITS:
        i += 1
    is_float = False
    if i + 1 < len(text) and text[i] == "." and text[i + 1] in _DIGITS:
        is_float = True
        i += 1
        while i < len(text) and text[i] in _DIGITS:
            i += 1
    if i < len(text) and text[i] in "eE":
        j = i + 1
        if j < len(text) and text[j] in "+-":
            j += 1
        if j < len(text) and text[j] in _DIGITS:
            is_float = True
            i = j
            while i < len(text) and text[i] in _DIGITS:
                i += 1
    raw = text[start:i]
    if i < len(text) and (text[i] in _IDENT_CHARS or text[i] == "."):
        while i < len(text) and (text[i] in _IDENT_CHARS or text[i] in ".+-"):
            i += 1
        fail(text, start + 1, f"malformed number {text[start:i]!r}")
    value: int | float
    try:
        value = float(raw) if is_float else int(raw)
    except ValueError:  # an int over Python's digit limit
        fail(text, start + 1, f"number {raw[:20]}... has too many digits")
    if isinstance(value, float) and not math.isfinite(value):
        fail(text, start + 1, f"number {raw} is out of range")
    return Token("number", raw, value, start + 1), i


def _string(text: str, i: int) -> tuple[Token, int]:
    quote_char = text[i]
    start = i
    i += 1
    out: list[str] = []
    while True:
        if i >= len(text):
            fail(text, start + 1, "string is not closed")
        ch = text[i]
        if ch == quote_char:
            break
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = text[i + 1] if i + 1 < len(text) else ""
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc == "u":
            code = _hex4(text, i)
            i += 6
            if 0xD800 <= code < 0xDC00 and text.startswith("\\u", i):
                low = _hex4(text, i)
                if 0xDC00 <= low < 0xE000:
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
            if 0xD800 <= code < 0xE000:
                fail(text, i - 5, "\\u escape of a lone surrogate")
            out.append(chr(code))
        else:
            fail(text, i + 1, f"unknown escape '\\{esc}' (known: \\\\ \\\" \\' \\/ \\n \\r \\t \\0 \\uXXXX)")
    return Token("string", text[start:i + 1], "".join(out), start + 1), i + 1


def _hex4(text: str, i: int) -> int:
    digits = text[i + 2:i + 6]
    if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        fail(text, i + 1, "\\u needs four hex digits")
    return int(digits, 16)


class Parser:
    """Recursive descent over the tokens of one filter. ``check`` (if given) is called
    with each condition's name, operator and value tokens; it raises (``parser.fail``)
    for names and values a schema does not allow and returns the value tokens to use
    (see ``query_schema``, which turns dates into times)."""

    def __init__(self, text: str, check: Check | None = None) -> None:
        self.text = text
        self.check = check
        if len(text) > MAX_LENGTH:
            fail(text, MAX_LENGTH + 1, f"filter is {len(text)} characters, over the limit of {MAX_LENGTH}")
        for number, ch in enumerate(text):
            if 0xD800 <= ord(ch) < 0xE000:
                fail(text, number + 1, "invalid character (a lone surrogate)")
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0

    def fail(self, column: int, reason: str) -> NoReturn:
        fail(self.text, column, reason)

    # -- token access ---------------------------------------------------------------------

    @property
    def token(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def keyword(self, word: str, token: Token | None = None) -> bool:
        token = token or self.token
        return token.kind == "ident" and token.text.lower() == word

    @staticmethod
    def describe(token: Token) -> str:
        return "the end" if token.kind == "end" else repr(token.text)

    # -- grammar --------------------------------------------------------------------------

    def parse(self) -> Expr:
        if self.token.kind == "end":
            self.fail(1, "empty filter: expected a condition such as params.lr < 0.01")
        expr = self.parse_or()
        if self.token.kind != "end":
            if self.token.kind == ")":
                self.fail(self.token.column, "unexpected ')' with no '(' open")
            self.fail(self.token.column, f"expected 'and', 'or' or the end, found {self.describe(self.token)}")
        return expr

    def parse_or(self) -> Expr:
        operands = [self.parse_and()]
        while self.keyword("or"):
            self.expect_condition_after(self.advance())
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(_flat(Or, operands))

    def parse_and(self) -> Expr:
        operands = [self.parse_not()]
        while self.keyword("and"):
            self.expect_condition_after(self.advance())
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else And(_flat(And, operands))

    def expect_condition_after(self, word: Token) -> None:
        if self.token.kind in ("end", ")") or any(self.keyword(w) for w in ("and", "or")):
            self.fail(self.token.column, f"expected a condition after {word.text!r}, found {self.describe(self.token)}")

    def parse_not(self) -> Expr:
        token = self.token
        if self.keyword("not") or token.kind == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                self.fail(token.column, f"nested deeper than {MAX_DEPTH} levels of parentheses and 'not'")
            self.advance()
            if token.kind == "(":
                if self.token.kind == ")":
                    self.fail(self.token.column, "empty parentheses: expected a condition")
                expr: Expr = self.parse_or()
                if self.token.kind != ")":
                    self.fail(self.token.column, f"expected ')' to close the '(' at column {token.column}, "
                                                 f"found {self.describe(self.token)}")
                self.advance()
            else:
                self.expect_condition_after(token)
                expr = Not(self.parse_not())
            self.depth -= 1
            return expr
        return self.parse_condition()

    def parse_condition(self) -> Expr:
        name = self.parse_name()
        op_token = self.token
        if op_token.kind == "op" and op_token.text != "~":
            self.advance()
            op: CompareOp = "==" if op_token.text == "=" else _compare_op(op_token.text)
            value = self.parse_value(f"after {op_token.text!r}")
            if op in ORDER_OPS and (value.value is None or isinstance(value.value, bool)):
                self.fail(value.column, f"{op!r} compares numbers or strings, not {value.text}")
            [value] = self._check(name, op, [value])
            return Compare(name, op, value.value)
        if op_token.kind == "op":
            self.advance()
            pattern = self.token
            if pattern.kind != "string":
                self.fail(pattern.column, f"expected a quoted glob pattern after '~', found {self.describe(pattern)}")
            self.advance()
            assert isinstance(pattern.value, str)
            try:
                glob_regex(pattern.value)
            except GlobError as exc:
                self.fail(pattern.column, str(exc))
            self._check(name, "~", [pattern])
            return Glob(name, pattern.value)
        if self.keyword("not") and self.keyword("in", self.tokens[self.pos + 1]):
            self.advance()
            return self.parse_in(name, negated=True)
        if self.keyword("in"):
            return self.parse_in(name, negated=False)
        if self.keyword("contains"):
            self.advance()
            value = self.parse_value("after 'contains'")
            [value] = self._check(name, "contains", [value])
            return Contains(name, value.value)
        if self.keyword("exists"):
            self.advance()
            self._check(name, "exists", [])
            return Exists(name)
        self.fail(op_token.column, f"expected an operator after {name} (==, !=, <, <=, >, >=, ~, in, not in, "
                                   f"contains, exists), found {self.describe(op_token)}")

    def parse_in(self, name: Name, negated: bool) -> In:
        word = self.advance()
        if self.token.kind != "[":
            self.fail(self.token.column, f"expected '[' after {word.text!r}, found {self.describe(self.token)}")
        self.advance()
        values: list[Token] = []
        while self.token.kind != "]":
            values.append(self.parse_value("in the list (or ']')"))
            if self.token.kind == ",":
                self.advance()
            elif self.token.kind != "]":
                self.fail(self.token.column, f"expected ',' or ']' in the list, found {self.describe(self.token)}")
        self.advance()
        values = self._check(name, "not in" if negated else "in", values)
        return In(name, tuple(v.value for v in values), negated)

    def parse_name(self) -> Name:
        first = self.token
        if first.kind != "ident" or first.text.lower() in KEYWORDS:
            self.fail(first.column, f"expected a name such as params.lr or status, found {self.describe(first)}")
        self.advance()
        path = [first.text]
        while self.token.kind in (".", "["):
            mark = self.advance()
            if mark.kind == ".":
                if self.token.kind != "segment":
                    self.fail(self.token.column, "expected a name after '.' (quote others: params[\"a-b\"])")
                path.append(self.advance().text)
            else:
                key = self.token
                if key.kind != "string":
                    self.fail(key.column, f"expected a quoted name after '[', found {self.describe(key)}")
                self.advance()
                if self.token.kind != "]":
                    self.fail(self.token.column, f"expected ']' after {key.text}, found {self.describe(self.token)}")
                self.advance()
                assert isinstance(key.value, str)
                if key.value == "":
                    self.fail(key.column, "a name cannot be empty")
                path.append(key.value)
        return Name(tuple(path), first.column)

    def parse_value(self, where: str) -> Token:
        token = self.token
        if token.kind in ("number", "string"):
            return self.advance()
        if token.kind == "ident" and token.text.lower() in ("true", "false", "null"):
            self.advance()
            value = {"true": True, "false": False, "null": None}[token.text.lower()]
            return Token("literal", token.text, value, token.column)
        if token.kind == "ident" and token.text.lower() not in KEYWORDS:
            self.fail(token.column, f"expected a value {where}, found {self.describe(token)} "
                                    f"(quote strings: \"{token.text}\")")
        self.fail(token.column, f"expected a value {where}, found {self.describe(token)}")

    def _check(self, name: Name, op: str, values: list[Token]) -> list[Token]:
        return values if self.check is None else self.check(self, name, op, values)


# The schema hook of ``Parser`` (see its docstring).
Check = Callable[[Parser, Name, str, list[Token]], list[Token]]


def _compare_op(text: str) -> CompareOp:
    for op in COMPARE_OPS:
        if op == text:
            return op
    raise AssertionError(text)  # the tokenizer only makes the operators above


def _flat(kind: type[And] | type[Or], operands: list[Expr]) -> tuple[Expr, ...]:
    """``a and (b and c)`` -> the operands a, b, c: the same meaning, one level."""
    out: list[Expr] = []
    for operand in operands:
        out.extend(operand.operands if isinstance(operand, kind) else (operand,))
    return tuple(out)


def parse(text: str, check: Check | None = None) -> Expr:
    """The syntax tree of ``text``; FilterSyntaxError (with the column) when it is not a filter."""
    if not isinstance(text, str):
        raise FilterSyntaxError(f"a filter must be a string, got {type(text).__name__}", None)
    return Parser(text, check).parse()


