"""Shared fixtures: every test gets its own real temporary dash root."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


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
