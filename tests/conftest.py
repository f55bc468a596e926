"""Shared fixtures: every test gets its own real temporary dash root.

Shared helpers live in the ``support`` package (``tests/support``), importable because
pytest's ``pythonpath`` setting (pyproject.toml) puts ``tests`` on the path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment
from support.experiments import PREFIX


@pytest.fixture(autouse=True)
def _quiet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No console echo and no inherited ML-Dash settings unless a test sets them."""
    for key in list(os.environ):
        if key.startswith("ML_DASH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ML_DASH_ECHO", "0")


@pytest.fixture
def dash_root(tmp_path: Path) -> Iterator[Path]:
    """A fresh, empty ``.dash`` folder in a temporary directory."""
    root = tmp_path / ".dash"
    yield root


@pytest.fixture
def make_exp(dash_root: Path) -> Iterator[Callable[..., Experiment]]:
    """Experiments over ``dash_root`` (prefix ``PREFIX`` unless given); any still running is completed afterwards."""
    made: list[Experiment] = []

    def make(prefix: str | None = PREFIX, **kw: Any) -> Experiment:
        kw.setdefault("dash_root", dash_root)
        exp = Experiment(prefix=prefix, **kw) if prefix is not None else Experiment(**kw)
        made.append(exp)
        return exp

    yield make
    for exp in made:
        if exp.status == "RUNNING":
            exp.run.complete()


@pytest.fixture
def exp(make_exp: Callable[..., Experiment]) -> Experiment:
    """A started experiment whose background writer never flushes on its own during a test."""
    e = make_exp(flush_interval=3600)
    e.run.start()
    return e
