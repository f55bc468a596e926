"""The filter language: parsing, errors with columns, Python evaluation, MongoDB query building.

The MongoDB queries are run against a real MongoDB-protocol server in
tests/mongo/test_query_mongo.py; here they are checked as data.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_dash.errors import ERRORS_BY_CODE, HTTP_STATUS, BadRequestError, FilterSyntaxError, InvalidValueError
from ml_dash.query import (
    EXPERIMENTS_FIELD_MAP,
    MAX_DEPTH,
    MAX_LENGTH,
    MISSING,
    And,
    Compare,
    Contains,
    DictRow,
    Entries,
    Exists,
    Expr,
    Field,
    Glob,
    In,
    Name,
    Not,
    Or,
    compile_filter,
    glob_regex,
    parse_expr,
    parse_time,
    row_from_info,
    to_mongo,
    to_text,
)
from ml_dash.records import ExperimentInfo


def parse(text: str) -> Expr:
    return parse_expr(text, schema=False)


def name(*path: str) -> Name:
    return Name(path)


def eq(path: str, value: Any) -> Compare:
    return Compare(name(*path.split(".")), "==", value)


ROW: dict[str, Any] = {
    "status": "COMPLETED",
    "name": "resnet-50",
    "tags": ["baseline", "v2"],
    "created": 1_700_000_000.0,
    "description": None,
    "params": {"lr": 0.001, "optimizer": "adam", "model": {"depth": 50, "act": "relu"}, "flag": True,
               "layers": [64, 128], "seed": 1},
    "metrics": {"eval": {"accuracy": {"last": 0.91, "min": 0.1, "max": 0.93, "count": 40}},
                "train": {"loss": {"last": 0.2, "min": 0.19, "max": 2.3, "count": 1000}}},
}


def matches(text: str, row: dict[str, Any] = ROW, schema: bool = True) -> bool:
    return compile_filter(text, schema=schema).matches(row)


# -- the examples of the issue ------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ('params.lr < 0.01 and status == "COMPLETED"', True),
    ("metrics.eval.accuracy.max > 0.9", True),
    ("metrics.train.loss.last < 0.1", False),
    ('tags contains "baseline"', True),
    ('name ~ "resnet-*"', True),
    ('params.optimizer in ["adam", "sgd"]', True),
    ('not (params.lr < 0.01 and status == "COMPLETED") or params.model.depth >= 50', True),
    ('not (params.lr < 0.01 and status == "COMPLETED") or params.model.depth > 50', False),
])
def test_examples_from_the_issue_evaluate_as_written(text: str, expected: bool) -> None:
    assert matches(text) is expected


# -- parsing ------------------------------------------------------------------------------


def test_not_binds_tighter_than_and_which_binds_tighter_than_or() -> None:
    a, b, c = eq("a", 1), eq("b", 2), eq("c", 3)
    assert parse("not a == 1 or b == 2 and c == 3") == Or((Not(a), And((b, c))))
    assert parse("a == 1 or b == 2 and c == 3") == Or((a, And((b, c))))
    assert parse("(a == 1 or b == 2) and c == 3") == And((Or((a, b)), c))
    assert parse("not (a == 1 or b == 2)") == Not(Or((a, b)))
    assert parse("not not a == 1") == Not(Not(a))


def test_chains_of_and_or_are_one_flat_node() -> None:
    a, b, c = eq("a", 1), eq("b", 2), eq("c", 3)
    assert parse("a == 1 and (b == 2 and c == 3)") == And((a, b, c))
    assert parse("a == 1 or b == 2 or c == 3") == Or((a, b, c))


def test_keywords_are_case_insensitive_and_single_equals_means_equals() -> None:
    assert parse("A = 1 AND NOT b In [TRUE, Null]") == And((eq("A", 1), Not(In(name("b"), (True, None)))))


@pytest.mark.parametrize(("text", "value"), [
    ("0", 0), ("42", 42), ("-7", -7), ("3.25", 3.25), ("-0.5", -0.5), ("1e-3", 0.001), ("2E+2", 200.0),
    ("-1.5e2", -150.0), ("12345678901234567890123", 12345678901234567890123),
    ('"a b"', "a b"), ("'it''s'", None), ("'say \"hi\"'", 'say "hi"'),
    ('"\\"q\\" \\\\ \\n\\t\\r\\0\\/"', '"q" \\ \n\t\r\0/'),
    ('"\\u00e9"', "é"), ('"\\ud83d\\ude00"', "\U0001f600"), ('"\\u2603x"', "☃x"), ("'é☃'", "é☃"),
    ("true", True), ("false", False), ("null", None), ("TRUE", True),
])
def test_literals(text: str, value: Any) -> None:
    if value is None and text != "null":  # 'it''s' is two strings, not SQL's escape
        with pytest.raises(FilterSyntaxError):
            parse(f"x == {text}")
        return
    expr = parse(f"x == {text}")
    assert isinstance(expr, Compare)
    assert expr.value == value and type(expr.value) is type(value)


def test_ints_and_floats_keep_their_type() -> None:
    one = parse("x == 1")
    assert isinstance(one, Compare) and type(one.value) is int
    assert isinstance((two := parse("x == 1.0")), Compare) and type(two.value) is float


@pytest.mark.parametrize(("text", "path"), [
    ("params.lr", ("params", "lr")),
    ("params.model.depth", ("params", "model", "depth")),
    ("params.layers.0", ("params", "layers", "0")),
    ('params["a-b"]', ("params", "a-b")),
    ("params['a.b'].c", ("params", "a.b", "c")),
    ('metrics["val/top-1"].acc.max', ("metrics", "val/top-1", "acc", "max")),
    ('params["$where"]', ("params", "$where")),
    ('params["not"]', ("params", "not")),
    ("params.in.and", ("params", "in", "and")),
])
def test_names_are_dotted_paths_with_bracketed_quoted_segments(text: str, path: tuple[str, ...]) -> None:
    expr = parse(f"{text} exists")
    assert expr == Exists(Name(path))


@pytest.mark.parametrize("text", [
    'params.lr < 0.01 and status == "COMPLETED"',
    "not a == 1 or b == 2 and c == 3",
    "(a == 1 or b == 2) and not (c != 3 and d >= -1.5)",
    'x in [1, -2.5, "a", true, null] or y not in []',
    'a.b["c-d"].e ~ "r*[!a-z]?"',
    'tags contains "x" and params["$where"] exists',
    'name == "line\\nbreak \\"quoted\\" \\u0001"',
    "not not x <= 1e-05",
])
def test_canonical_text_parses_back_to_the_same_tree(text: str) -> None:
    expr = parse(text)
    assert parse(to_text(expr)) == expr
    assert to_text(parse(to_text(expr))) == to_text(expr)


# Random trees for the round trip: names, literals and nesting of every kind.
_segment = st.one_of(st.sampled_from(["lr", "a", "x_1", "0", "in", "and"]),
                     st.text(alphabet='ab-./"\\ $é\n', min_size=1, max_size=4))
_names = st.builds(lambda first, rest: Name((first, *rest)), st.sampled_from(["params", "a", "x_y", "m2"]),
                   st.lists(_segment, max_size=3))
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6))
_atoms = st.one_of(
    st.builds(Compare, _names, st.sampled_from(["==", "!="]), _scalars),
    st.builds(Compare, _names, st.sampled_from(["<", "<=", ">", ">="]),
              st.one_of(st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4))),
    st.builds(Glob, _names, st.text(alphabet="ab*?-!", max_size=5)),
    st.builds(In, _names, st.lists(_scalars, max_size=3).map(tuple), st.booleans()),
    st.builds(Contains, _names, _scalars),
    st.builds(Exists, _names),
)
_exprs = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(And, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(Or, st.lists(inner, min_size=2, max_size=3).map(tuple)),
    ),
    max_leaves=8,
)


def _flattened(expr: Expr) -> Expr:
    """What the parser makes of a tree: nested and-in-and / or-in-or become one node."""
    if isinstance(expr, Not):
        return Not(_flattened(expr.operand))
    if isinstance(expr, (And, Or)):
        out: list[Expr] = []
        for operand in map(_flattened, expr.operands):
            out.extend(operand.operands if isinstance(operand, type(expr)) else (operand,))
        return type(expr)(tuple(out))
    return expr


@settings(max_examples=300, deadline=None)
@given(_exprs)
def test_any_tree_survives_text_and_back(expr: Expr) -> None:
    text = to_text(expr)
    again = parse(text)
    assert again == _flattened(expr)
    assert to_text(again) == to_text(_flattened(expr))  # also tells true from 1, 1 from 1.0


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "column", "reason"), [
    ("params.lr < and x == 1", 13, "expected a value after '<', found 'and'"),
    ("", 1, "empty filter"),
    ("   ", 1, "empty filter"),
    ("a ==", 5, "expected a value after '==', found the end"),
    ("a == 1 and", 11, "expected a condition after 'and'"),
    ("a == 1 or or b == 2", 11, "expected a condition after 'or'"),
    ("(a == 1", 8, "expected ')' to close the '(' at column 1"),
    ("a == 1)", 7, "unexpected ')'"),
    ("()", 2, "empty parentheses"),
    ("a == 1 b == 2", 8, "expected 'and', 'or' or the end, found 'b'"),
    ("a", 2, "expected an operator after a"),
    ("a b", 3, "expected an operator after a"),
    ("== 1", 1, "expected a name"),
    ("and == 1", 1, "expected a name"),
    ("1 == a", 1, "expected a name"),
    ("a ~ 3", 5, "expected a quoted glob pattern after '~'"),
    ('a ~ "[b"', 5, "'[' is not closed"),
    ('a ~ "[z-a]"', 5, "reversed range z-a"),
    ('a == "abc', 6, "string is not closed"),
    ("a == 'abc\"", 6, "string is not closed"),
    ('a == "x\\q"', 8, "unknown escape '\\q'"),
    ('a == "\\u12"', 7, "\\u needs four hex digits"),
    ('a == "\\ud800"', 7, "lone surrogate"),
    ("a == 1.2.3", 6, "malformed number '1.2.3'"),
    ("a == 12abc", 6, "malformed number '12abc'"),
    ("a == 1e999", 6, "out of range"),
    ("a == -", 6, "unexpected character '-'"),
    ("a && b", 3, "unexpected character '&'"),
    ("a == 1 # note", 8, "unexpected character '#'"),
    ("!a", 1, "did you mean '!=' or 'not'"),
    ("a[1] == 2", 3, "expected a quoted name after '['"),
    ('a["b" == 2', 7, "expected ']'"),
    ('a[""] == 2', 3, "a name cannot be empty"),
    ("a. == 1", 4, "expected a name after '.'"),
    ('a."b" == 1', 3, "expected a name after '.'"),
    ("a in 1", 6, "expected '[' after 'in'"),
    ("a not in (1)", 10, "expected '[' after 'in'"),
    ("a in [1 2]", 9, "expected ',' or ']'"),
    ("a in [1,", 9, "expected a value in the list"),
    ("a == b", 6, 'quote strings: "b"'),
    ("a < true", 5, "'<' compares numbers or strings, not true"),
    ("a >= null", 6, "'>=' compares numbers or strings, not null"),
    ("a contains", 11, "expected a value after 'contains'"),
    ("not", 4, "expected a condition after 'not'"),
])
def test_each_error_names_what_is_wrong_and_its_column(text: str, column: int, reason: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse(text)
    err = caught.value
    assert err.column == column
    assert reason in err.reason
    first, shown, caret = str(err).split("\n")
    assert first == f"{err.reason} at column {column}" + (" (the end)" if column > len(text) else "")
    assert caret.index("^") == column - 1 + 2  # under the column, past the two-space indent
    assert shown.startswith("  ")


def test_the_error_of_the_issue_reads_as_promised() -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        compile_filter("params.lr < and status == 'COMPLETED'")
    assert str(caught.value) == (
        "expected a value after '<', found 'and' at column 13\n"
        "  params.lr < and status == 'COMPLETED'\n"
        "              ^"
    )


def test_a_long_filter_shows_the_text_around_the_column() -> None:
    text = " and ".join(f"params.p{i} == {i}" for i in range(40)) + " and params.x <"
    with pytest.raises(FilterSyntaxError) as caught:
        parse(text)
    _, shown, caret = str(caught.value).split("\n")
    assert len(shown) < 100 and shown.startswith("  ...") and shown.endswith("params.x <")
    assert caret.index("^") == len(shown)  # the end: one past the '<'
    assert caught.value.column == len(text) + 1


def test_tabs_and_newlines_keep_the_caret_under_the_column() -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse("a == 1 and\n\tb <")
    _, shown, caret = str(caught.value).split("\n")
    assert shown == "  a == 1 and  b <"
    assert caret.index("^") == len(shown)


def test_length_is_bounded() -> None:
    at_limit = 'a == "' + "x" * (MAX_LENGTH - 8) + '"'
    assert len(at_limit) == MAX_LENGTH - 1
    parse(at_limit)
    with pytest.raises(FilterSyntaxError, match=f"over the limit of {MAX_LENGTH}") as caught:
        parse('a == "' + "x" * MAX_LENGTH + '"')
    assert caught.value.column == MAX_LENGTH + 1


def test_nesting_is_bounded_for_parentheses_and_not() -> None:
    parse("(" * MAX_DEPTH + "a == 1" + ")" * MAX_DEPTH)
    parse("not " * MAX_DEPTH + "a == 1")
    with pytest.raises(FilterSyntaxError, match="nested deeper than") as caught:
        parse("(" * (MAX_DEPTH + 1) + "a == 1" + ")" * (MAX_DEPTH + 1))
    assert caught.value.column == MAX_DEPTH + 1
    with pytest.raises(FilterSyntaxError, match="nested deeper than") as caught:
        parse("not " * (MAX_DEPTH + 1) + "a == 1")
    assert caught.value.column == 4 * MAX_DEPTH + 1
    # Long flat chains are not nesting: 700 conditions parse.
    parse(" or ".join(f"a == {i}" for i in range(700)))


def test_a_lone_surrogate_in_the_text_is_refused() -> None:
    with pytest.raises(FilterSyntaxError, match="lone surrogate") as caught:
        parse('a == "x\ud800"')
    assert caught.value.column == 8


def test_a_filter_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(FilterSyntaxError, match="must be a string"):
        compile_filter(b"a == 1")  # type: ignore[arg-type]


def test_the_error_is_a_bad_request_with_its_own_code_that_survives_a_round_trip() -> None:
    assert issubclass(FilterSyntaxError, BadRequestError) and issubclass(FilterSyntaxError, ValueError)
    assert FilterSyntaxError.code == "invalid_filter"
    assert HTTP_STATUS["invalid_filter"] == 400
    again = ERRORS_BY_CODE["invalid_filter"]("message from the server")
    assert isinstance(again, FilterSyntaxError) and again.column is None and again.reason == "message from the server"


# -- names and values an experiment has -----------------------------------------------------


@pytest.mark.parametrize(("text", "column", "reason"), [
    ("lr < 0.01", 1, "unknown name 'lr' (did you mean params.lr?"),
    ('stauts == "RUNNING"', 1, "did you mean status?"),
    ("param.lr < 1", 1, "did you mean params?"),
    ("status.x == 1", 1, "'status' has no fields"),
    ("params == 1", 1, "'params' needs a name after it"),
    ("metadata exists", 1, "'metadata' needs a name after it"),
    ("metrics.eval.acc > 1", 1, "metrics are named metrics.<stream>.<field>.<statistic>"),
    ("metrics.eval.acc.avg > 1", 1, "unknown statistic 'avg'"),
    ('status == "completed"', 11, "unknown status 'completed' (did you mean 'COMPLETED'?"),
    ('status in ["RUNNING", "DONE"]', 23, "unknown status 'DONE'"),
    ("name == 3", 9, "name is text"),
    ('tags == "baseline"', 1, "tags is a list: use contains"),
    ("tags < 1", 1, "tags is a list"),
    ('folders ~ "a*"', 1, "folders is a list"),
    ('created > "yesterday"', 11, "created is a time"),
    ("ended == true", 10, "ended is a time"),
    ('started ~ "2024*"', 1, "started is a time"),
    ('metrics.eval.acc.max == "high"', 25, "metric statistics are numbers"),
    ('metrics.eval.acc.max contains 1', 1, "metric statistics are numbers"),
])
def test_names_and_values_an_experiment_cannot_have_are_refused(text: str, column: int, reason: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        compile_filter(text)
    assert caught.value.column == column
    assert reason in caught.value.reason


def test_the_schema_can_be_switched_off() -> None:
    assert compile_filter("lr < 0.01", schema=False).matches({"lr": 0.001})


def test_status_accepts_every_status_a_reader_shows() -> None:
    for status in ("RUNNING", "COMPLETED", "FAILED", "CANCELLED", "STALE"):
        assert compile_filter(f'status == "{status}"').matches({"status": status})
    assert compile_filter('status ~ "C*"').matches({"status": "COMPLETED"})  # patterns are not checked


@pytest.mark.parametrize(("text", "seconds"), [
    ("2024-05-01", 1714521600.0),
    ("2024-05-01T12:00:00Z", 1714564800.0),
    ("2024-05-01 12:00:00+02:00", 1714557600.0),
    ("2024-05-01T12:00", 1714564800.0),
])
def test_dates_become_seconds_since_the_epoch_in_utc(text: str, seconds: float) -> None:
    assert parse_time(text) == seconds
    expr = compile_filter(f'created >= "{text}"').expr
    assert expr == Compare(name("created"), ">=", seconds)


# -- meaning ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    # a missing name: every condition false but the negations, and == null
    ("params.missing == 1", False),
    ("params.missing != 1", True),
    ("params.missing < 1", False),
    ("params.missing >= 1", False),
    ('params.missing ~ "*"', False),
    ("params.missing in [1, 2]", False),
    ("params.missing not in [1, 2]", True),
    ("params.missing in [1, null]", True),
    ("params.missing contains 1", False),
    ("params.missing == null", True),
    ("params.missing != null", False),
    ("params.missing exists", False),
    ("not params.missing exists", True),
    # a null value exists and equals null
    ("description == null", True),
    ("description exists", True),
    ('description != "x"', True),
    ('description < "x"', False),
    # numbers: int and float alike; never equal to a string or a boolean
    ("params.model.depth == 50.0", True),
    ("params.lr == 1e-3", True),
    ('params.lr == "0.001"', False),
    ('params.lr < "1"', False),
    ('params.lr != "0.001"', True),
    ("params.seed == true", False),
    ("params.flag == 1", False),
    ("params.flag == true", True),
    ("params.flag != false", True),
    ("params.flag in [1, 2]", False),
    # strings order by code point
    ('params.optimizer < "adamw"', True),
    ('params.optimizer >= "Adam"', True),
    ('params.model.act > "relu"', False),
    # lists: only contains (or null) matches them
    ("params.layers contains 64", True),
    ("params.layers contains 64.0", True),
    ('params.layers contains "64"', False),
    ("params.layers == 64", False),
    ("params.layers < 1000", False),
    ('tags contains "base"', False),
    # strings: contains is a substring
    ('name contains "net-5"', True),
    ('name contains ""', True),
    ('params.optimizer contains "x"', False),
    ("params.seed contains 1", False),
    # a flat and a nested param are the same param
    ('params["model.depth"] == 50', True),
    ("params.model == null", True),
])
def test_meaning(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_nan_compares_false_and_differs_from_everything() -> None:
    row = {"params": {"x": math.nan}}
    for op in ("==", "<", "<=", ">", ">="):
        assert not matches(f"params.x {op} 1", row)
    assert matches("params.x != 1", row)
    assert matches("params.x exists", row)
    assert not matches("params.x in [1, 2]", row)


def test_flat_and_nested_params_give_the_same_answers() -> None:
    nested = {"params": {"model": {"depth": 50, "name": "r"}}}
    flat = {"params": {"model.depth": 50, "model.name": "r"}}
    for text in ("params.model.depth == 50", 'params["model.depth"] == 50', 'params.model.name ~ "?"',
                 "params.model exists"):
        assert matches(text, nested) == matches(text, flat)


@pytest.mark.parametrize(("pattern", "yes", "no"), [
    ("resnet-*", ["resnet-", "resnet-50", "resnet-a\nb"], ["resnet", "xresnet-50", "Resnet-50"]),
    ("run-?", ["run-1", "run-é", "run-\n"], ["run-", "run-12"]),
    ("[abc]x", ["ax", "cx"], ["dx", "x", "abx"]),
    ("[a-c]*", ["a", "b1", "c"], ["d", ""]),
    ("[!a-c]*", ["d", "z9"], ["a", ""]),
    ("[]]", ["]"], ["[", "]]"]),
    ("[[]", ["["], ["]"]),
    ("[!]]", ["a"], ["]"]),
    ("a.b", ["a.b"], ["axb"]),
    ("1+1=(2)", ["1+1=(2)"], ["11=2"]),
    ("^$|\\{}", ["^$|\\{}"], ["", "^$|{}"]),
    ("a\\*", ["a\\", "a\\xyz"], ["a*", "a"]),
    ("abc", ["abc"], ["abc\n", "abcd", "ab"]),
    ("*", ["", "anything\n"], []),
    ("[-a]", ["-", "a"], ["b"]),
    ("[a-]", ["-", "a"], ["b"]),
    ("é[☃-☕]", ["é☃", "é☕"], ["é☂"]),
])
def test_globs_match_whole_strings(pattern: str, yes: list[str], no: list[str]) -> None:
    flt = compile_filter(f"name ~ {to_text(Glob(name('x'), pattern)).split(' ~ ', 1)[1]}")
    for value in yes:
        assert flt.matches({"name": value}), (pattern, value)
    for value in no:
        assert not flt.matches({"name": value}), (pattern, value)
    assert not flt.matches({"name": 5}) and not flt.matches({"name": ["resnet-50"]})


def test_a_glob_becomes_a_regex_of_escaped_literals_anchored_at_both_ends() -> None:
    assert glob_regex("a.b*c?[!x-z]") == r"\Aa\.b[\s\S]*c[\s\S][^x-z](?![\s\S])"
    assert glob_regex("$(where)") == r"\A\$\(where\)(?![\s\S])"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab*?.[]!-\\\n^$", max_size=8), st.text(alphabet="ab.[]!-\\\n^$*?", max_size=8))
def test_globs_mean_what_fnmatchcase_means(pattern: str, value: str) -> None:
    import fnmatch

    try:
        regex = glob_regex(pattern)
    except ValueError:
        return  # an unclosed '[' or a reversed range: refused, where fnmatch guesses
    assert (re.match(regex, value) is not None) == fnmatch.fnmatchcase(value, pattern)


def test_row_from_info_exposes_the_experiment_under_filter_names() -> None:
    info = ExperimentInfo(prefix="alice/vision/abl/run-1", owner="alice", project="vision", name="run-1",
                          folders=("abl",), tags=("baseline",), status="COMPLETED", created_at=1714564800.0,
                          metadata={"git": {"sha": "abc"}})
    row = row_from_info(info, params={"lr": 0.1}, metrics={"eval": {"acc": {"max": 0.5}}})
    for text in ('prefix == "alice/vision/abl/run-1"', 'owner == "alice"', 'project ~ "vis*"',
                 'folders contains "abl"', 'tags contains "baseline"', 'created == "2024-05-01T12:00:00Z"',
                 "started == null", "ended == null", 'metadata.git.sha == "abc"', "params.lr == 0.1",
                 "metrics.eval.acc.max == 0.5", 'status == "COMPLETED"'):
        assert compile_filter(text).matches(row), text
    assert compile_filter('status == "STALE"').matches(row_from_info(info, status="STALE"))


def test_any_object_with_lookup_is_a_row() -> None:
    class Upper:
        def lookup(self, path: tuple[str, ...]) -> Any:
            return path[-1].upper() if path[0] == "params" else MISSING

    flt = compile_filter('params.abc == "ABC" and not name exists')
    assert flt.matches(Upper())
    assert DictRow({"params": {"a": {"b": 1}}}).lookup(("params", "a", "b")) == 1
    assert DictRow({}).lookup(("metrics", "x", "y", "last")) is MISSING


def test_filter_text_select_and_paths() -> None:
    flt = compile_filter("params.lr<1e-2 AND (status='COMPLETED' OR tags contains 'x')")
    assert str(flt) == 'params.lr < 0.01 and (status == "COMPLETED" or tags contains "x")'
    assert flt.paths() == {("params", "lr"), ("status",), ("tags",)}
    rows: list[dict[str, Any]] = [{"params": {"lr": 0.001}, "status": "FAILED", "tags": ["x"]},
                                  {"params": {"lr": 0.1}}]
    assert flt.select(rows) == rows[:1]


# -- MongoDB queries as data --------------------------------------------------------------

MAP = {
    **EXPERIMENTS_FIELD_MAP,
    "status": Field("status"),
    "params": Entries("params"),
    "metrics": Entries("metrics", keys=("s", "f"), stats=("last", "min", "max", "count")),
}
_OPERATORS = {"$and", "$or", "$nor", "$eq", "$lt", "$lte", "$gt", "$gte", "$ne", "$in", "$regex", "$type",
              "$exists", "$elemMatch"}
_DOC_FIELDS = {"_id", "owner", "project", "name", "description", "folders", "tags", "createdAt", "startedAt",
               "endedAt", "status", "params", "metrics", "k", "v", "s", "f", "last", "min", "max", "count"}


def _keys(query: Any) -> set[str]:
    if isinstance(query, dict):
        return set(query) | {k for v in query.values() for k in _keys(v)}
    if isinstance(query, list):
        return {k for v in query for k in _keys(v)}
    return set()


@pytest.mark.parametrize("text", [
    'params["$where"] == 1',
    'params["$where"] != "function() { return true }"',
    'params["a.$gt"] > 1',
    'params["a\\u0000b"] == 1',
    'params["__proto__"] exists',
    'metrics["$where"]["$gt"].max > 1',
    'metadata["$where"] == 1',
    'name == "$where"',
    'name in ["$gt", "$ne"]',
    'name ~ "$where*"',
    'description contains "{\\"$gt\\": 1}"',
])
def test_names_and_values_from_a_filter_never_become_operators_or_fields(text: str) -> None:
    query, residual = to_mongo(compile_filter(text), MAP)
    assert _keys(query) <= _OPERATORS | _DOC_FIELDS, query
    if residual is not None:  # metadata is not in the map: evaluated in Python, where keys are data
        assert residual.matches({"metadata": {"$where": 1}}) is (text == 'metadata["$where"] == 1')


def test_an_injected_key_is_compared_as_a_value() -> None:
    query, residual = to_mongo(compile_filter('params["$where"] == 1'), MAP)
    assert residual is None
    assert query == {"params": {"$elemMatch": {"k": "$where", "v": {"$eq": 1, "$type": "number"}}}}


def test_a_field_map_must_name_plain_document_paths() -> None:
    flt = compile_filter('name == "x"')
    for bad in ("$where", "a.$gt", "", "a..b", "a\0b"):
        with pytest.raises(InvalidValueError, match="not a plain document path"):
            to_mongo(flt, {"name": Field(bad)})
    with pytest.raises(InvalidValueError):
        to_mongo(flt, {"params": Entries("params", keys=("$k",))})


def test_top_level_and_is_split_into_query_and_residual() -> None:
    flt = compile_filter('name ~ "resnet-*" and params.lr < 0.01 and not tags contains "old"')
    query, residual = to_mongo(flt, EXPERIMENTS_FIELD_MAP)
    assert query == {"$and": [
        {"name": {"$regex": r"\Aresnet\-[\s\S]*(?![\s\S])", "$type": "string"}},
        {"$nor": [{"tags": {"$elemMatch": {"$eq": "old"}}}]},
    ]}
    assert residual is not None and str(residual) == "params.lr < 0.01"


def test_an_or_with_any_unmapped_part_stays_whole_in_the_residual() -> None:
    flt = compile_filter('name == "a" or params.lr < 0.01')
    query, residual = to_mongo(flt, EXPERIMENTS_FIELD_MAP)
    assert query == {} and residual == flt


def test_a_fully_mapped_filter_has_no_residual() -> None:
    query, residual = to_mongo(compile_filter('metrics.eval.accuracy.max > 0.9 or status == "FAILED"'), MAP)
    assert residual is None
    assert query == {"$or": [
        {"metrics": {"$elemMatch": {"s": "eval", "f": "accuracy", "max": {"$gt": 0.9, "$type": "number"}}}},
        {"status": {"$eq": "FAILED"}},
    ]}


def test_status_is_not_in_the_experiments_map_because_stale_is_derived() -> None:
    assert to_mongo(compile_filter('status == "STALE"'), EXPERIMENTS_FIELD_MAP).query == {}


@pytest.mark.parametrize(("text", "residual"), [
    ("params.x == 99999999999999999999", True),   # beyond 64 bits
    ('name ~ "a\\u0000*"', True),                   # BSON regexes cannot hold NUL
    ('name contains "\\u0000"', True),
    ('name == "a\\u0000"', True),
    ('name in ["a", "b\\u0000"]', True),
    ('params["a\\u0000"] == 1', True),
    ("params.x == null", True),                     # entries: a left-out value and a missing one look alike
    ("params.x exists", True),
    ("params.x contains 1", True),
    ("params.x in [1, null]", True),
    ("metrics.a.b.max == null", True),
])
def test_what_mongodb_cannot_answer_exactly_is_left_to_python(text: str, residual: bool) -> None:
    assert (to_mongo(compile_filter(text), MAP).residual is not None) is residual


def test_conditions_that_can_never_hold_become_constant_queries() -> None:
    never = {"_id": {"$exists": False}}
    assert to_mongo(compile_filter("tags == null"), MAP).query == {"tags": {"$eq": None}}
    assert to_mongo(compile_filter("name contains 1", schema=False), MAP).query == never
    assert to_mongo(compile_filter("tags in [null]"), MAP).query == {"tags": {"$eq": None}}
    assert to_mongo(compile_filter("name in []"), MAP).query == never
    assert to_mongo(compile_filter("name not in []"), MAP).query == {}
    assert to_mongo(compile_filter('not (name == "a" or tags == null) and tags != null', schema=False),
                    MAP).query == {"$and": [{"$nor": [{"$or": [{"name": {"$eq": "a"}}, {"tags": {"$eq": None}}]}]},
                                            {"$nor": [{"tags": {"$eq": None}}]}]}


def test_to_mongo_takes_a_tree_too() -> None:
    assert to_mongo(eq("name", "x"), MAP).query == {"name": {"$eq": "x"}}


# -- docs/filters.md ----------------------------------------------------------------------

DOC = (Path(__file__).parents[1] / "docs" / "filters.md").read_text(encoding="utf-8")


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC, flags=re.S)


def test_the_examples_in_the_docs_compile() -> None:
    examples = _blocks("text")[0].strip().splitlines()
    assert len(examples) >= 6
    for text in examples:
        compile_filter(text)
    times = re.findall(r"`((?:created|started|ended) [<>=]+ \"[^`]*\")`", DOC)
    assert len(times) >= 3
    for text in times:
        compile_filter(text)


def test_the_error_shown_in_the_docs_is_the_real_one() -> None:
    shown = next(block for block in _blocks("text") if "at column" in block).rstrip("\n")
    text = shown.split("\n")[1].strip()
    with pytest.raises(FilterSyntaxError) as caught:
        compile_filter(text)
    assert str(caught.value) == shown
