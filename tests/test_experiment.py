"""Prefixes and what experiment.json records, as COMPAT.md states them, against real temporary folders."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path

import pytest

from ml_dash import Experiment, InvalidNameError
from support.experiments import exp_json, parse_utc

# -- prefix forms -------------------------------------------------------------------------


def test_four_part_prefix_makes_owner_project_folder_name_folders(
    make_exp: Callable[..., Experiment], dash_root: Path
) -> None:
    exp = make_exp("alice/vision/resnet/run-1")
    with exp.run:
        pass
    folder = dash_root / "alice" / "vision" / "resnet" / "run-1"
    assert Path(exp.path) == folder
    info = exp_json(exp)
    assert (info["name"], info["project"], info["prefix"]) == ("run-1", "vision", "alice/vision/resnet/run-1")
    assert (exp.owner, exp.project, exp.name) == ("alice", "vision", "run-1")


def test_deeper_prefix_keeps_every_folder(make_exp: Callable[..., Experiment], dash_root: Path) -> None:
    exp = make_exp("alice/vision/a/b/c/run-9")
    with exp.run:
        pass
    assert (dash_root / "alice/vision/a/b/c/run-9/experiment.json").is_file()
    assert exp_json(exp)["prefix"] == "alice/vision/a/b/c/run-9"


def test_two_part_prefix_takes_the_owner_from_ml_dash_owner_env(
    make_exp: Callable[..., Experiment], dash_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_DASH_OWNER", "bob")
    exp = make_exp("vision/run-2")
    with exp.run:
        pass
    assert exp.prefix == "bob/vision/run-2"
    assert (dash_root / "bob" / "vision" / "run-2" / "experiment.json").is_file()
    assert exp_json(exp)["project"] == "vision"


def test_two_part_prefix_without_owner_env_uses_the_user_name(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp("vision/run-3")
    assert exp.prefix == f"{getpass.getuser()}/vision/run-3"


def test_prefix_comes_from_ml_dash_prefix_env_when_none_is_given(
    make_exp: Callable[..., Experiment], dash_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_DASH_PREFIX", "carol/nlp/bert/run-7")
    exp = make_exp(None)
    with exp.run:
        exp.log("hello")
    assert exp.prefix == "carol/nlp/bert/run-7"
    assert (dash_root / "carol/nlp/bert/run-7/logs/logs.jsonl").is_file()


def test_explicit_prefix_wins_over_ml_dash_prefix_env(
    make_exp: Callable[..., Experiment], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_DASH_PREFIX", "carol/nlp/bert/run-7")
    assert make_exp("alice/vision/run-1").prefix == "alice/vision/run-1"


def test_project_keyword_with_a_short_prefix(
    make_exp: Callable[..., Experiment], dash_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_DASH_OWNER", "dave")
    exp = make_exp("run-5", project="vision")
    with exp.run:
        pass
    assert exp.prefix == "dave/vision/run-5"
    assert exp.project == "vision" and exp.name == "run-5"
    assert (dash_root / "dave/vision/run-5/experiment.json").is_file()


def test_missing_prefix_is_a_clear_error(make_exp: Callable[..., Experiment]) -> None:
    with pytest.raises(InvalidNameError, match="prefix"):
        make_exp(None)


def test_experiment_json_records_description_tags_and_metadata(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp(tags=["baseline", "gpu"], readme="first try", metadata={"seed": 3, "host": "n1"})
    with exp.run:
        pass
    info = exp_json(exp)
    assert info["description"] == "first try"
    assert info["tags"] == ["baseline", "gpu"]
    assert {k: v for k, v in info["metadata"].items() if k != "context"} == {"seed": 3, "host": "n1"}  # + run context
    assert parse_utc(info["createdAt"]).timestamp() > 0


def test_description_keyword_is_stored(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp(description="described")
    with exp.run:
        pass
    assert exp_json(exp)["description"] == "described"


def test_nothing_is_written_before_the_run_starts(make_exp: Callable[..., Experiment], dash_root: Path) -> None:
    make_exp()
    assert not dash_root.exists()
