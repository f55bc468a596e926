"""Params as code written for the public ML-Dash SDK uses them (COMPAT-SURFACE.md, "Params"):
``ParametersBuilder`` with pure ``flatten_dict`` / ``unflatten_dict``, and classes as values."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import pytest

import ml_dash
from ml_dash import Experiment
from ml_dash.params import ParametersBuilder
from support.files import strict_json


def test_exp_params_is_a_parameters_builder_with_set_log_get(exp: Experiment) -> None:
    assert isinstance(exp.params, ParametersBuilder)
    assert ml_dash.ParametersBuilder is ParametersBuilder
    assert exp.params.set(a=1) is exp.params
    exp.params.log(b=2)
    assert exp.params.get() == {"a": 1, "b": 2}


def test_flatten_dict_recurses_into_dicts_keeps_other_values_and_drops_empty_dicts() -> None:
    given = {"model": {"lr": 0.1, "layers": {"hidden": 128, "act": None}}, "tags": ["a", "b"], "ok": True,
             "empty": {}, "n": 0}
    original = copy.deepcopy(given)
    assert ParametersBuilder.flatten_dict(given) == {
        "model.lr": 0.1, "model.layers.hidden": 128, "model.layers.act": None, "tags": ["a", "b"], "ok": True, "n": 0,
    }
    assert given == original  # pure


def test_flatten_dict_takes_a_parent_key_and_a_separator() -> None:
    assert ParametersBuilder.flatten_dict({"a": {"b": 1}, "c": 2}, parent_key="root", sep="/") == {
        "root/a/b": 1, "root/c": 2}
    assert ParametersBuilder.flatten_dict({}) == {}


def test_unflatten_dict_nests_keys_again_and_is_pure() -> None:
    flat = {"model.lr": 0.1, "model.layers.hidden": 128, "x": [1]}
    original = dict(flat)
    assert ParametersBuilder.unflatten_dict(flat) == {"model": {"lr": 0.1, "layers": {"hidden": 128}}, "x": [1]}
    assert flat == original
    assert ParametersBuilder.unflatten_dict({"a/b": 1}, sep="/") == {"a": {"b": 1}}


def test_flatten_then_unflatten_round_trips_nested_params() -> None:
    nested = {"a": {"b": {"c": 1, "d": [1, 2]}, "e": None}, "f": "g"}
    assert ParametersBuilder.unflatten_dict(ParametersBuilder.flatten_dict(nested)) == nested


class Args:
    lr = 0.001
    batch_size = 32
    layers: ClassVar[list[int]] = [64, 64]
    _private = "hidden"

    class Inner:
        depth = 3

    def method(self) -> int:
        return 1

    @staticmethod
    def helper() -> int:
        return 2

    @classmethod
    def build(cls) -> Any:
        return cls()

    @property
    def computed(self) -> int:
        return 3


def test_a_class_value_is_stored_as_its_public_plain_attributes(exp: Experiment) -> None:
    exp.params.set(Args=Args, seed=1)
    assert exp.params.get() == {"Args.lr": 0.001, "Args.batch_size": 32, "Args.layers": [64, 64], "seed": 1}
    exp.flush()
    stored = strict_json((Path(exp.path) / "parameters.json").read_text(encoding="utf-8"))["data"]
    assert stored["Args.lr"] == 0.001 and "Args._private" not in stored


def test_a_class_inside_a_dict_is_expanded_too(exp: Experiment) -> None:
    exp.params.set(config={"train": Args, "name": "x"})
    got = exp.params.get(flatten=False)
    assert got["config"]["train"] == {"lr": 0.001, "batch_size": 32, "layers": [64, 64]}
    assert got["config"]["name"] == "x"


def test_an_instance_is_still_refused_naming_the_param(exp: Experiment) -> None:
    with pytest.raises(ValueError, match="obj"):
        exp.params.set(obj=Args())
