"""PyTorch Lightning under its older package name ``pytorch_lightning`` (2.x):
the same ``MLDashLogger`` as :mod:`ml_dash.integrations.lightning`."""

from __future__ import annotations

import importlib
from typing import Any

from .lightning_base import LoggerBody

_Logger: Any = importlib.import_module("pytorch_lightning.loggers").Logger


class MLDashLogger(LoggerBody, _Logger):  # type: ignore[misc]  # a base class from an untyped boundary
    __doc__ = LoggerBody.__doc__


__all__ = ["MLDashLogger"]
