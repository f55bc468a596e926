"""Filters run as MongoDB queries on a real MongoDB-protocol server give the same answers as
Python evaluation over the same rows (random filters over random documents), and nothing
in a filter reaches the server as an operator."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import MongoClient
from pymongo.collection import Collection

from ml_dash.query import (
    EXPERIMENTS_FIELD_MAP,
    MAX_DEPTH,
    And,
    Compare,
    Contains,
    Entries,
    Exists,
    Expr,
    Field,
    Filter,
    Glob,
    In,
    Name,
    Not,
    Or,
    Target,
    compile_filter,
    glob_regex,
    row_from_info,
    to_mongo,
    to_text,
)
from ml_dash.records import ExperimentInfo

from .services import Place, Services, fresh_names

MAP: dict[str, Target] = {
    "s": Field("s"),
    "n": Field("n"),
    "tags": Field("tags", "list"),
    "params": Entries("params"),
    "metrics": Entries("metrics", keys=("s", "f"), stats=("last", "min", "max", "count")),
}  # "other" is in the documents but not in the map: always left to the residual

# Characters that mean something to regexes, globs, MongoDB or JSON, and some that are not ASCII.
# Stored strings hold no NUL: nx-27017 compares strings only up to one (MongoDB does not);
# filters may hold it (such conditions are left to the residual).
ALPHABET = "ab.*?[]!-\\\n$^é{} "
LITERAL_ALPHABET = ALPHABET + "\x00"
PARAM_KEYS = ["lr", "opt", "$where", "a.b", "a", "x y", "$gt"]
STREAMS = ["train", "eval", "$x"]
FIELDS = ["loss", "acc"]
STATS = ["last", "min", "max", "count"]
NUMBERS = [0, 1, -1, 2, 3, 0.0, -0.0, 0.5, 1.0, -1.5, 2.0, 1e300, -1e-300, 2**53 + 1, -(2**62)]

texts = st.text(alphabet=ALPHABET, max_size=3)
numbers = st.sampled_from(NUMBERS)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
literal_texts = st.text(alphabet=LITERAL_ALPHABET, max_size=3)
literals = st.one_of(st.none(), st.booleans(), numbers, literal_texts)
_ABSENT = object()  # a field the document does not have
absent = st.just(_ABSENT)
maybe = st.one_of(absent, scalars)

documents = st.fixed_dictionaries({
    "s": maybe,
    "n": st.one_of(absent, numbers, scalars),
    "other": maybe,
    "tags": st.one_of(absent, st.lists(st.one_of(texts, numbers, st.booleans()), max_size=3)),
    "params": st.dictionaries(st.sampled_from(PARAM_KEYS), scalars, max_size=4),
    "metrics": st.dictionaries(
        st.sampled_from(STREAMS),
        st.dictionaries(st.sampled_from(FIELDS),
                        st.dictionaries(st.sampled_from(STATS), st.one_of(numbers, st.none()), max_size=4),
                        max_size=2),
        max_size=2),
})

NAMES = [Name(("s",)), Name(("n",)), Name(("tags",)), Name(("other",)), Name(("params", "lr")),
         Name(("params", "opt")), Name(("params", "$where")), Name(("params", "a.b")), Name(("params", "a", "b")),
         Name(("params", "a")), Name(("params", "zz")), Name(("params", "$gt")),
         *(Name(("metrics", s, f, stat)) for s in STREAMS for f in FIELDS for stat in STATS)]
names = st.sampled_from(NAMES)


def _valid_glob(pattern: str) -> bool:
    try:
        glob_regex(pattern)
    except ValueError:
        return False
    return True


atoms = st.one_of(
    st.builds(Compare, names, st.sampled_from(["==", "!="]), literals),
    st.builds(Compare, names, st.sampled_from(["<", "<=", ">", ">="]), st.one_of(numbers, literal_texts)),
    st.builds(Glob, names, st.text(alphabet=LITERAL_ALPHABET + "*?[]!-", max_size=4).filter(_valid_glob)),
    st.builds(In, names, st.lists(literals, max_size=3).map(tuple), st.booleans()),
    st.builds(Contains, names, literals),
    st.builds(Exists, names),
)
expressions = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(And, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(Or, st.lists(inner, min_size=2, max_size=3).map(tuple)),
    ),
    max_leaves=6,
)


def as_document(number: int, source: dict[str, Any]) -> dict[str, Any]:
    """How a writer following ``Field`` and ``Entries`` would store ``source``."""
    doc: dict[str, Any] = {"_id": number}
    for key in ("s", "n", "other", "tags"):
        if source[key] is not _ABSENT:
            doc[key] = source[key]
    doc["params"] = [{"k": k, "v": v} for k, v in source["params"].items()]
    doc["metrics"] = [{"s": s, "f": f, **stats} for s, fields in source["metrics"].items()
                      for f, stats in fields.items()]
    return doc


def as_row(source: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if v is not _ABSENT}


def answers(collection: Collection[dict[str, Any]], rows: dict[int, dict[str, Any]], expr: Expr) -> tuple[
        set[int], set[int], bool]:
    """(what Python says, what MongoDB + the residual say, whether a residual was needed)."""
    flt = Filter.from_expr(expr)
    expected = {number for number, row in rows.items() if flt.matches(row)}
    query, residual = to_mongo(flt, MAP)
    found = {int(doc["_id"]) for doc in collection.find(query, {"_id": 1})}
    if residual is not None:
        found = {number for number in found if residual.matches(rows[number])}
    return expected, found, residual is not None


@pytest.fixture(scope="module")
def database(svc: Services) -> Iterator[Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(svc.mongo_uri, serverSelectionTimeoutMS=5000)
    name, _ = fresh_names()
    yield client[name]
    client.drop_database(name)
    client.close()


def _fixed_sources(count: int, seed: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)

    def scalar() -> Any:
        kind = rnd.randrange(4)
        if kind == 0:
            return None if rnd.random() < 0.5 else rnd.random() < 0.5
        if kind == 1:
            return rnd.choice(NUMBERS)
        if rnd.random() < 0.5:
            return rnd.choice(["a", "b", "ab", "a.b", "a*", "$where", "é\n", ""])
        return "".join(rnd.choice(ALPHABET) for _ in range(rnd.randrange(4)))

    def maybe_scalar() -> Any:
        return _ABSENT if rnd.random() < 0.2 else scalar()

    out = []
    for _ in range(count):
        out.append({
            "s": maybe_scalar(),
            "n": rnd.choice(NUMBERS) if rnd.random() < 0.6 else maybe_scalar(),
            "other": maybe_scalar(),
            "tags": _ABSENT if rnd.random() < 0.2 else [rnd.choice(["a", "b", "$x", 1, True]) for _ in
                                                         range(rnd.randrange(3))],
            "params": {k: scalar() for k in rnd.sample(PARAM_KEYS, rnd.randrange(len(PARAM_KEYS)))},
            "metrics": {s: {f: {stat: rnd.choice(NUMBERS) for stat in rnd.sample(STATS, rnd.randrange(5))}
                            for f in rnd.sample(FIELDS, rnd.randrange(3))}
                        for s in rnd.sample(STREAMS, rnd.randrange(3))},
        })
    return out


@pytest.fixture(scope="module")
def fixed(database: Any) -> tuple[Collection[dict[str, Any]], dict[int, dict[str, Any]]]:
    """80 varied documents, stored once for the module, and their rows."""
    sources = _fixed_sources(80, seed=20240501)
    collection = database["fixed"]
    collection.insert_many([as_document(i, src) for i, src in enumerate(sources)])
    return collection, {i: as_row(src) for i, src in enumerate(sources)}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expr=expressions)
def test_random_filters_agree_with_python_on_a_fixed_set_of_documents(
    fixed: tuple[Collection[dict[str, Any]], dict[int, dict[str, Any]]], expr: Expr
) -> None:
    collection, rows = fixed
    expected, found, _ = answers(collection, rows, expr)
    assert found == expected, to_text(expr)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sources=st.lists(documents, min_size=1, max_size=6), exprs=st.lists(expressions, min_size=1, max_size=5))
def test_random_filters_agree_with_python_on_random_documents(
    database: Any, sources: list[dict[str, Any]], exprs: list[Expr]
) -> None:
    collection = database["random"]
    collection.delete_many({})
    collection.insert_many([as_document(i, src) for i, src in enumerate(sources)])
    rows = {i: as_row(src) for i, src in enumerate(sources)}
    for expr in exprs:
        expected, found, _ = answers(collection, rows, expr)
        assert found == expected, to_text(expr)


def test_most_conditions_are_answered_by_the_server(
    fixed: tuple[Collection[dict[str, Any]], dict[int, dict[str, Any]]],
) -> None:
    """The fixed set answers a filter of each kind on mapped names without any residual."""
    collection, rows = fixed
    for text in ('s == "a"', "s != 1", "n < 1", "n >= -1.5", 'n > "a"', 's ~ "a*"', 's ~ "[!a]?"',
                 's in ["a", 1, true, null]', "s not in [0.0]", 's contains "."', "s exists", "s == null",
                 'tags contains "a"', "tags contains 1", "tags == null", "params.lr < 2", 'params["$where"] != 1',
                 'params.a.b ~ "*"', 'params.opt in ["a", false]', "metrics.train.loss.last > 0",
                 'not (metrics.eval.acc.count >= 1 or s == "b") and n == 1'):
        expected, found, residual = answers(collection, rows, compile_filter(text, schema=False).expr)
        assert not residual, text
        assert found == expected, text
        assert 0 < len(expected) < len(rows) or text in ("s exists",), text


def test_an_operator_in_a_name_or_value_is_data_on_the_server(database: Any) -> None:
    collection = database["injection"]
    collection.insert_many([
        {"_id": 1, "s": "$where", "params": [{"k": "$where", "v": 1}]},
        {"_id": 2, "s": "x", "params": [{"k": "$where", "v": "function() { return true; }"}]},
        {"_id": 3, "s": {"$gt": ""}, "params": [{"k": "lr", "v": 1}]},
    ])
    for text, wanted in (('params["$where"] == 1', {1}), ('params["$where"] != 1', {2, 3}),
                         ('s == "$where"', {1}), ('s ~ "$*"', {1}), ('params["$where"] ~ "function*"', {2}),
                         ('s in ["$gt", "$ne"]', set()), ('params["lr"] == 1 or s == "{\\"$gt\\": \\"\\"}"', {3})):
        query, residual = to_mongo(compile_filter(text, schema=False), MAP)
        assert residual is None
        assert {doc["_id"] for doc in collection.find(query)} == wanted, text


@pytest.mark.parametrize("shape", ["parentheses", "not"])
def test_the_deepest_filter_runs_on_the_server(database: Any, shape: str) -> None:
    collection = database[f"deep_{shape}"]
    collection.insert_many([{"_id": 1, "s": "a", "params": [{"k": "lr", "v": 1}]}, {"_id": 2, "s": "b"}])
    text = "params.lr == 1"
    for level in range(MAX_DEPTH):
        if shape == "not":
            text = f"not {text}"
        else:
            text = f'({text} or s == "z{level}")' if level % 2 else f'({text} and s != "z{level}")'
    flt = compile_filter(text, schema=False)
    query, residual = to_mongo(flt, MAP)
    assert residual is None and _depth(query) < 100  # MongoDB refuses queries nested 100 deep
    rows: dict[int, dict[str, Any]] = {1: {"s": "a", "params": {"lr": 1}}, 2: {"s": "b"}}
    assert {doc["_id"] for doc in collection.find(query)} == {n for n, row in rows.items() if flt.matches(row)}


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def test_the_experiments_map_answers_over_mongostore_documents(place: Place) -> None:
    store = place.store()
    made = [
        ("alice/vision/resnet-50", dict(tags=("baseline",), description="first", created_at=1714521600.0)),
        ("alice/vision/abl/resnet-101", dict(tags=("baseline", "big"), created_at=1714608000.0)),
        ("alice/vision/abl/vit-b", dict(tags=(), description="a [vit] run", created_at=1714694400.0,
                                         started_at=1714694401.0)),
        ("alice/nlp/bert", dict(tags=("old",), created_at=1714780800.0, ended_at=1714780900.0)),
        ("bob/vision/resnet-50", dict(tags=("baseline",), description="bob's", created_at=1714867200.0)),
    ]
    for prefix, kw in made:
        owner, project, *folders, name = prefix.split("/")
        store.open_experiment(ExperimentInfo(prefix=prefix, owner=owner, project=project, name=name,
                                             folders=tuple(folders), **kw))  # type: ignore[arg-type]
        store.set_params(prefix, {"lr": 0.1 if "resnet" in name else 0.001, "model.depth": len(name)})
    store.update_experiment("alice/nlp/bert", status="COMPLETED")
    rows = {info.prefix: row_from_info(info, params=store.get_params(info.prefix).data)
            for info in store.list_experiments()}
    assert len(rows) == len(made)
    for text in ('name ~ "resnet-*"', 'tags contains "baseline" and owner == "alice"',
                 'folders contains "abl" or project == "nlp"', 'created >= "2024-05-03" and started == null',
                 'ended != null', 'description contains "[vit]"', 'description == null',
                 'prefix ~ "alice/*/resnet-*"', 'not tags contains "baseline" and status == "RUNNING"',
                 'params.lr < 0.01 and name != "bert"', 'params.model.depth >= 9 or tags contains "old"'):
        flt = compile_filter(text)
        query, residual = to_mongo(flt, EXPERIMENTS_FIELD_MAP)
        found = {str(doc["_id"]) for doc in store.experiments.find(query, {"_id": 1})}
        if residual is not None:
            found = {prefix for prefix in found if residual.matches(rows[prefix])}
        assert found == {prefix for prefix, row in rows.items() if flt.matches(row)}, text
