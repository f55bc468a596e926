"""Params: set, merge, flatten, version and what they accept, as COMPAT.md states them."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from ml_dash import Experiment, InvalidValueError
from support.experiments import params_json, parse_utc

# -- params -------------------------------------------------------------------------------


def test_params_set_merges_into_stored_params(exp: Experiment) -> None:
    exp.params.set(lr=0.1, batch_size=32)
    exp.params.set(batch_size=64, epochs=10)
    assert exp.params.get() == {"lr": 0.1, "batch_size": 64, "epochs": 10}
    assert params_json(exp)["data"] == {"lr": 0.1, "batch_size": 64, "epochs": 10}


def test_params_nested_dicts_are_flattened_with_dots_and_lists_stay_values(exp: Experiment) -> None:
    exp.params.set(model={"encoder": {"layers": 12, "heads": [4, 8]}, "dropout": 0.1}, tags=["a", "b"])
    expected = {"model.encoder.layers": 12, "model.encoder.heads": [4, 8], "model.dropout": 0.1, "tags": ["a", "b"]}
    assert exp.params.get() == expected
    assert params_json(exp)["data"] == expected


def test_params_nested_set_merges_with_earlier_flat_keys(exp: Experiment) -> None:
    exp.params.set(model={"depth": 18, "width": 64})
    exp.params.set(model={"depth": 50})
    assert exp.params.get() == {"model.depth": 50, "model.width": 64}


def test_params_get_flatten_false_returns_the_nested_form(exp: Experiment) -> None:
    exp.params.set(**{"model": {"encoder": {"layers": 12}, "dropout": 0.1}, "lr": 0.001})
    assert exp.params.get(flatten=False) == {"model": {"encoder": {"layers": 12}, "dropout": 0.1}, "lr": 0.001}


def test_params_version_counts_set_calls(exp: Experiment) -> None:
    for i in range(3):
        exp.params.set(step=i)
    doc = params_json(exp)
    assert doc["version"] == 3
    assert doc["data"] == {"step": 2}
    assert parse_utc(doc["updatedAt"]) >= parse_utc(doc["createdAt"])


def test_params_accept_argparse_namespace(exp: Experiment) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--name", default="run")
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args(["--lr", "0.5", "--fast"])
    exp.params.set(**vars(args))
    assert exp.params.get() == {"lr": 0.5, "layers": [1, 2], "name": "run", "fast": True}


def test_params_accept_dataclasses_asdict(exp: Experiment) -> None:
    @dataclasses.dataclass
    class Optim:
        name: str = "adam"
        betas: tuple[float, float] = (0.9, 0.999)

    @dataclasses.dataclass
    class Config:
        lr: float = 0.01
        optim: Optim = dataclasses.field(default_factory=Optim)

    exp.params.set(**dataclasses.asdict(Config()))
    assert exp.params.get() == {"lr": 0.01, "optim.name": "adam", "optim.betas": [0.9, 0.999]}


def test_params_with_unstorable_value_raise_naming_the_param_and_store_nothing_of_the_call(exp: Experiment) -> None:
    exp.params.set(lr=0.1)
    with pytest.raises(InvalidValueError, match=r"model\.weird"):
        exp.params.set(ok=1, model={"weird": object()})
    assert exp.params.get() == {"lr": 0.1}
    assert params_json(exp)["version"] == 1
