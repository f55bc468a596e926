"""The body of the Lightning logger, shared by ``lightning`` and ``pytorch_lightning``
(each module adds its own package's ``Logger`` base class)."""

from __future__ import annotations

import importlib
import sys
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from ..experiment import Experiment
from ._common import RunHandle, status_of

# Lightning's finalize() statuses -> the run's: "finished" (a SLURM requeue signal)
# only flushes, since the job comes back and resumes the run.
_FINALIZE = {"success": "COMPLETED", "failed": "FAILED"}


def split_key(key: str, default_stream: str) -> tuple[str, str]:
    """``"train/loss"`` -> ``("train", "loss")``; ``"a/b/c"`` -> ``("a/b", "c")``; a
    key without ``/`` goes to ``default_stream``."""
    stream, sep, field = key.rpartition("/")
    return (stream, field) if sep and stream and field else (default_stream, key)


class LoggerBody:
    """``MLDashLogger(prefix, *, experiment=None, stream="metrics", **experiment_kwargs)``.

    - ``log_hyperparams``: the hyperparameters as params (nested dicts flattened with ``.``).
    - ``log_metrics(metrics, step)``: one point per stream, with ``step`` and ``epoch``;
      ``"val/loss"`` is field ``loss`` of stream ``val``, a name without ``/`` a field of
      ``stream``.
    - ``finalize``: a run the logger started is closed COMPLETED after success, FAILED
      (CANCELLED on Ctrl-C) after an exception; a run you started stays open.

    Only the global-zero rank logs; the experiment is made and started on first use.
    """

    def __init__(self, prefix: str | None = None, *, experiment: Experiment | None = None,
                 stream: str = "metrics", **experiment_kwargs: Any) -> None:
        super().__init__()
        self._run = RunHandle(experiment, prefix, experiment_kwargs)
        self._stream = stream

    @property
    def experiment(self) -> Experiment:
        """The ML-Dash experiment, started on first use; after ``finalize`` closed it, as
        it was left (logging metrics or hyperparameters again resumes it)."""
        return self._run.experiment(reopen=False)

    @property
    def name(self) -> str | None:
        return self._run.prefix

    @property
    def version(self) -> str | None:
        return None

    def log_hyperparams(self, params: Mapping[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        if _rank() != 0:
            return
        self._run.set_params(vars(params) if isinstance(params, Namespace) else params)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if _rank() != 0:
            return
        fields = dict(metrics)
        epoch = fields.pop("epoch", None)
        points: dict[str, dict[str, Any]] = {}
        for key, value in fields.items():
            stream, field = split_key(key, self._stream)
            points.setdefault(stream, {})[field] = value
        self._run.log_metrics(points, step=step, epoch=epoch)

    def save(self) -> None:
        if _rank() == 0:
            self._run.flush()

    def finalize(self, status: str) -> None:
        if _rank() != 0:
            return
        mapped = _FINALIZE.get(status)
        if mapped is None:
            self._run.flush()
            return
        reason = None
        if mapped == "FAILED":  # Lightning calls finalize("failed") while handling the exception
            mapped, reason = status_of(sys.exc_info()[1] or RuntimeError("training failed"))
        self._run.close(mapped, reason)


def _rank() -> int:
    """This process's global rank, as Lightning set it (0 outside distributed runs)."""
    rank_zero_only = importlib.import_module("lightning_utilities.core.rank_zero").rank_zero_only
    return int(getattr(rank_zero_only, "rank", 0))
