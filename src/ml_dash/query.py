"""The filter language: one small, safe expression language to find experiments.

``compile_filter("params.lr < 0.01 and status == \\"COMPLETED\\"")`` parses a filter
(never ``eval``: a hand-written tokenizer and parser, bounded in length and depth) into a
:class:`Filter`; ``Filter.matches(row)`` evaluates it in Python over a :class:`Row`
(or plain data, see :class:`DictRow`); :func:`to_mongo` turns it into a MongoDB query
built from values only, plus the residual a collection cannot answer. A bad filter
raises :class:`~ml_dash.errors.FilterSyntaxError` naming the column. The language and
its rules are described in docs/filters.md.

The pieces live in ``query_ast`` (tree, text, globs), ``query_parse`` (tokenizer and
parser), ``query_schema`` (the names of an experiment), ``query_eval`` (rows and
evaluation) and ``query_mongo``; this module is the public face.
"""

from __future__ import annotations

from .errors import FilterSyntaxError
from .query_ast import (
    And,
    Compare,
    Contains,
    Exists,
    Expr,
    Glob,
    In,
    Name,
    Not,
    Or,
    Scalar,
    glob_regex,
    to_text,
)
from .query_eval import MISSING, DictRow, Filter, Row, compile_filter, flatten_params, parse_expr, row_from_info
from .query_mongo import EXPERIMENTS_FIELD_MAP, Entries, Field, MongoQuery, Target, to_mongo
from .query_parse import MAX_DEPTH, MAX_LENGTH
from .query_schema import LIST_FIELDS, METRIC_STATS, STRING_FIELDS, TIME_FIELDS, parse_time

__all__ = [
    "EXPERIMENTS_FIELD_MAP",
    "LIST_FIELDS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "METRIC_STATS",
    "MISSING",
    "STRING_FIELDS",
    "TIME_FIELDS",
    "And",
    "Compare",
    "Contains",
    "DictRow",
    "Entries",
    "Exists",
    "Expr",
    "Field",
    "Filter",
    "FilterSyntaxError",
    "Glob",
    "In",
    "MongoQuery",
    "Name",
    "Not",
    "Or",
    "Row",
    "Scalar",
    "Target",
    "compile_filter",
    "flatten_params",
    "glob_regex",
    "parse_expr",
    "parse_time",
    "row_from_info",
    "to_mongo",
    "to_text",
]
