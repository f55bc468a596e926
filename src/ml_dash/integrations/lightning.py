"""PyTorch Lightning (the ``lightning`` package, 2.x): ``MLDashLogger``.

    from ml_dash.integrations.lightning import MLDashLogger
    trainer = lightning.Trainer(logger=MLDashLogger("alice/mnist/run-1", dash_root=".dash"))

What it logs and how it closes the run: :class:`~ml_dash.integrations.lightning_base.LoggerBody`
and docs/integrations.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from .lightning_base import LoggerBody

# Imported by name so that the type checker does not analyse Lightning (the boundary is Any).
_Logger: Any = importlib.import_module("lightning.pytorch.loggers").Logger


class MLDashLogger(LoggerBody, _Logger):  # type: ignore[misc]  # a base class from an untyped boundary
    __doc__ = LoggerBody.__doc__


__all__ = ["MLDashLogger"]
