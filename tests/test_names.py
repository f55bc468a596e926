"""Names that become folders: prefixes, metric names and track topics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml_dash import Experiment, InvalidNameError
from ml_dash.names import parse_prefix, validate_name

GOOD_NAMES = [
    "train",
    "train/loss",
    "a/b/c/d",
    "ünïcödé",
    "训练/损失",
    "эксперимент 1",
    "with spaces inside",
    "loss (smoothed)",
    "lr=0.1,bs=32",
    "emoji-🚀",
    "x" * 100,
]

BAD_NAMES = [
    "",
    ".",
    "..",
    "a/../b",
    "a/./b",
    "../escape",
    "a/..",
    "/abs",
    "/",
    "a//b",
    "a/",
    "a\x00b",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\\b",
    "x" * 10_000,
    "a/" + "y" * 1_000,
]


def _mentions(message: str, name: str) -> bool:
    """Does an error message name ``name`` (as is, as repr, or by a long name's start)?"""
    return (
        name in message
        or repr(name) in message
        or repr(name)[1:-1] in message
        or (len(name) > 40 and (name[:40] in message or repr(name[:40])[1:-1] in message))
    )


def test_mentions_helper_can_tell_names_apart() -> None:
    assert _mentions("metric 'a\\x00b' is bad", "a\x00b")
    assert not _mentions("metric 'ab' is bad", "a\x00b")
    assert not _mentions("bad name", "..")


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_validate_name_accepts_good_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_validate_name_rejects_bad_names_naming_them(name: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_name(name, "metric name")
    assert _mentions(str(info.value), name), str(info.value)


@pytest.mark.parametrize("value", [None, 3, b"bytes", ["a"]], ids=repr)
def test_validate_name_rejects_non_strings(value: object) -> None:
    with pytest.raises(InvalidNameError):
        validate_name(value)


@pytest.mark.parametrize(
    ("prefix", "owner", "project", "folders", "name"),
    [
        ("alice/vision/run-1", "alice", "vision", (), "run-1"),
        ("alice/vision/resnet/run-1", "alice", "vision", ("resnet",), "run-1"),
        ("alice/vision/a/b/run 2", "alice", "vision", ("a", "b"), "run 2"),
        ("josé/visión/éxp 1", "josé", "visión", (), "éxp 1"),
        ("ユーザー/プロジェクト/実験", "ユーザー", "プロジェクト", (), "実験"),
    ],
)
def test_parse_prefix_accepts_good_prefixes(
    prefix: str, owner: str, project: str, folders: tuple[str, ...], name: str
) -> None:
    parsed = parse_prefix(prefix)
    assert (parsed.owner, parsed.project, parsed.folders, parsed.name) == (owner, project, folders, name)
    assert parsed.path == prefix


def test_parse_prefix_two_parts_uses_the_ml_dash_owner_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_OWNER", "erin")
    parsed = parse_prefix("vision/run-1")
    assert (parsed.owner, parsed.project, parsed.name) == ("erin", "vision", "run-1")
    assert parsed.path == "erin/vision/run-1"


def test_parse_prefix_with_project_and_short_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_OWNER", "erin")
    assert parse_prefix("run-1", project="vision").path == "erin/vision/run-1"


def test_parse_prefix_one_part_without_project_is_rejected() -> None:
    with pytest.raises(InvalidNameError, match="run-1"):
        parse_prefix("run-1")


@pytest.mark.parametrize("prefix", [*BAD_NAMES, "alice/../etc/passwd"], ids=repr)
def test_parse_prefix_rejects_bad_prefixes_naming_them(prefix: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        parse_prefix(prefix)
    assert _mentions(str(info.value), prefix), str(info.value)


def test_parse_prefix_rejects_a_bad_owner_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_OWNER", "..")
    with pytest.raises(InvalidNameError):
        parse_prefix("vision/run-1")


@pytest.mark.parametrize("prefix", ["a/../b/c", "/abs/x/y", "a//b/c", "a\\b/c/d", "a/b/c\x00"], ids=repr)
def test_experiment_with_a_bad_prefix_raises_and_writes_nothing(prefix: str, dash_root: Path) -> None:
    with pytest.raises(InvalidNameError):
        Experiment(prefix=prefix, dash_root=dash_root)
    assert not dash_root.exists()


@pytest.fixture
def exp(dash_root: Path) -> Experiment:
    e = Experiment(prefix="alice/names/run-1", dash_root=dash_root, flush_interval=3600)
    e.run.start()
    yield e
    if e.status == "RUNNING":
        e.run.complete()


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_metric_and_topic_names_are_rejected_naming_them(exp: Experiment, name: str, dash_root: Path) -> None:
    with pytest.raises(InvalidNameError) as info:
        exp.metrics(name)
    assert _mentions(str(info.value), name)
    with pytest.raises(InvalidNameError) as info:
        exp.tracks(name)
    assert _mentions(str(info.value), name)
    exp.flush()
    assert not (Path(exp.path) / "metrics").exists()
    assert not (Path(exp.path) / "tracks").exists()
    assert not (dash_root.parent / "escape").exists()


def test_invalid_metric_and_topic_names_are_rejected_before_touching_disk(exp: Experiment, dash_root: Path) -> None:
    with pytest.raises(InvalidNameError, match=r"\.\./escape"):
        exp.metrics("../escape")
    with pytest.raises(InvalidNameError):
        exp.tracks("/abs")
    assert not (dash_root.parent / "escape").exists()
    assert not any(p.name == "escape" for p in dash_root.rglob("*"))


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_metric_names_store_and_read_back(exp: Experiment, name: str) -> None:
    exp.metrics(name).log(v=1)
    exp.metrics.flush()
    assert exp.metrics(name).read()["data"][0]["data"]["v"] == 1
    assert (Path(exp.path) / "metrics" / Path(*name.split("/")) / "data.jsonl").is_file()
    assert [s["name"] for s in exp.metrics.list()] == [name]


def test_metric_names_a_slash_b_and_a_underscore_b_do_not_collide(exp: Experiment) -> None:
    exp.metrics("a/b").log(which="slash")
    exp.metrics("a_b").log(which="underscore")
    exp.metrics("a/b").log(which="slash")
    assert [p["data"]["which"] for p in exp.metrics("a/b").read()["data"]] == ["slash", "slash"]
    assert [p["data"]["which"] for p in exp.metrics("a_b").read()["data"]] == ["underscore"]
    exp.run.complete()
    folder = Path(exp.path) / "metrics"
    slash = [json.loads(line) for line in (folder / "a" / "b" / "data.jsonl").read_text().splitlines()]
    under = [json.loads(line) for line in (folder / "a_b" / "data.jsonl").read_text().splitlines()]
    assert [line["data"]["which"] for line in slash] == ["slash", "slash"]
    assert [line["data"]["which"] for line in under] == ["underscore"]


def test_metric_a_and_a_slash_b_are_separate_streams(exp: Experiment) -> None:
    exp.metrics("a").log(v=1)
    exp.metrics("a/b").log(v=2)
    exp.metrics("a/b").log(v=3)
    counts = {s["name"]: s["totalDataPoints"] for s in exp.metrics.list()}
    assert counts == {"a": 1, "a/b": 2}
    assert [p["data"]["v"] for p in exp.metrics("a").read()["data"]] == [1]


def test_track_topics_a_slash_b_and_a_underscore_b_do_not_collide(exp: Experiment) -> None:
    exp.tracks("a/b").append(x=1, _ts=1.0)
    exp.tracks("a_b").append(x=2, _ts=1.0)
    assert exp.tracks("a/b").read() == [{"timestamp": 1.0, "x": 1}]
    assert exp.tracks("a_b").read() == [{"timestamp": 1.0, "x": 2}]
