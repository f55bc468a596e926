"""Helpers of the public-API tests (``tests/test_experiment.py``, ``test_params.py``, ...).

The fixtures that go with them (``make_exp``, ``exp``) are in ``tests/conftest.py``.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from ml_dash import Experiment

from .files import strict_json

PREFIX = "alice/vision/resnet/run-1"


def exp_json(exp: Experiment) -> dict[str, Any]:
    return strict_json((Path(exp.path) / "experiment.json").read_text(encoding="utf-8"))


def params_json(exp: Experiment) -> dict[str, Any]:
    return strict_json((Path(exp.path) / "parameters.json").read_text(encoding="utf-8"))


def fields(point: dict[str, Any]) -> dict[str, Any]:
    """A read-back point's user fields (without ``_ts``)."""
    return {k: v for k, v in point["data"].items() if k != "_ts"}


def parse_utc(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.utcoffset() == dt.timedelta(0), f"{text!r} is not UTC"
    return parsed


def after(t: float) -> float:
    """Wait (busy, microseconds) until the wall clock has moved past ``t``; return now."""
    now = time.time()
    while now <= t:
        now = time.time()
    return now
