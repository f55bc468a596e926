"""The names a filter over experiments may use and the values each takes.

``check_run_condition`` is the parser's schema hook (``query_parse.Parser``): it refuses
an unknown name, a sub-field of a plain field, a malformed metric name, a value that
can never match (``tags < 3``, ``status == "DONE"``), and turns a date given to a time
field into seconds since the epoch, so the tree holds only what stores compare.
"""

from __future__ import annotations

import difflib
from datetime import datetime, timezone

from .query_ast import ORDER_OPS, Name
from .query_parse import Parser, Token
from .records import READ_STATUSES

STRING_FIELDS = ("prefix", "owner", "project", "name", "description", "status")
LIST_FIELDS = ("tags", "folders")
TIME_FIELDS = ("created", "started", "ended")
PLAIN_FIELDS = STRING_FIELDS + LIST_FIELDS + TIME_FIELDS
MAP_FIELDS = ("params", "metadata")
METRIC_STATS = ("count", "first", "last", "min", "max")
ROOTS = (*PLAIN_FIELDS, *MAP_FIELDS, "metrics")

_METRIC_FORM = ("metrics are named metrics.<stream>.<field>.<statistic>, e.g. metrics.train.loss.last "
                '(quote other names: metrics["val/top-1"].acc.max)')


def check_run_condition(parser: Parser, name: Name, op: str, values: list[Token]) -> list[Token]:
    """Refuse (FilterSyntaxError at the column) what cannot be a condition on an experiment;
    return the value tokens, dates turned into seconds for time fields."""
    _check_name(parser, name)
    root = name.path[0]
    if root in LIST_FIELDS:
        if op in (*ORDER_OPS, "~") or (op != "contains" and any(v.value is not None for v in values)):
            parser.fail(name.column, f"{root} is a list: use contains, e.g. {root} contains \"baseline\"")
        return values
    if root in TIME_FIELDS:
        if op in ("~", "contains"):
            parser.fail(name.column, f"{root} is a time: compare it with <, <=, >, >=, == or !=")
        return [_time_token(parser, root, v) for v in values]
    if root in STRING_FIELDS:
        for v in values:
            if v.value is not None and not isinstance(v.value, str):
                parser.fail(v.column, f"{root} is text: compare it with a quoted string, not {v.text}")
            if root == "status" and op in ("==", "!=", "in", "not in") and isinstance(v.value, str):
                _check_status(parser, v)
        return values
    if root == "metrics":
        if op in ("~", "contains"):
            parser.fail(name.column, f"metric statistics are numbers: {op!r} never matches them")
        for v in values:
            if isinstance(v.value, (str, bool)):
                parser.fail(v.column, f"metric statistics are numbers, not {v.text}")
    return values


def _check_name(parser: Parser, name: Name) -> None:
    root, rest = name.path[0], name.path[1:]
    if root in PLAIN_FIELDS:
        if rest:
            parser.fail(name.column, f"{root!r} has no fields; {name} is not a name")
    elif root in MAP_FIELDS:
        if not rest:
            parser.fail(name.column, f"{root!r} needs a name after it, e.g. {root}.lr")
    elif root == "metrics":
        if len(rest) != 3:
            parser.fail(name.column, _METRIC_FORM)
        if rest[2] not in METRIC_STATS:
            parser.fail(name.column, f"unknown statistic {rest[2]!r} in {name}: one of {', '.join(METRIC_STATS)}")
    else:
        close = difflib.get_close_matches(root, ROOTS, n=1)
        hint = f"did you mean {close[0]}?" if close else f"did you mean params.{name}?"
        parser.fail(name.column, f"unknown name {root!r} ({hint} Names: {', '.join(PLAIN_FIELDS)}, "
                                 "params.<name>, metadata.<key>, metrics.<stream>.<field>.<statistic>)")


def _check_status(parser: Parser, token: Token) -> None:
    assert isinstance(token.value, str)
    if token.value not in READ_STATUSES:
        upper = token.value.upper()
        hint = f"did you mean {upper!r}? " if upper in READ_STATUSES else ""
        parser.fail(token.column, f"unknown status {token.value!r} ({hint}statuses: {', '.join(READ_STATUSES)})")


def _time_token(parser: Parser, root: str, token: Token) -> Token:
    value = token.value
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return token
    if isinstance(value, str):
        seconds = parse_time(value)
        if seconds is not None:
            return Token("number", token.text, seconds, token.column)
    parser.fail(token.column, f"{root} is a time: give seconds since 1970 or a date such as \"2024-05-01\" or "
                              f"\"2024-05-01T12:00:00Z\" (UTC unless it says otherwise), not {token.text}")


def parse_time(text: str) -> float | None:
    """An ISO 8601 date or date-time as seconds since the epoch (UTC unless the text gives
    an offset), or None when it is not one."""
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
