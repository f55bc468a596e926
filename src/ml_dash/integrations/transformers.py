"""Hugging Face Transformers: ``MLDashCallback``, a ``TrainerCallback``.

    trainer = Trainer(model, args, train_dataset=..., callbacks=[MLDashCallback("alice/nlp/bert-1")])

- At the start of training: ``TrainingArguments`` as params under ``args.`` (as
  ``args.to_dict()`` gives them, tokens redacted) and the model's config under ``model.``.
- Every ``on_log``: one point per stream with the trainer's ``global_step`` as ``step``
  and its ``epoch``; keys ``eval_x`` go to stream ``eval`` as ``x``, ``test_x`` to
  ``test``, the rest (``loss``, ``learning_rate``, ``grad_norm``, the final
  ``train_runtime``...) to ``train``.
- At the end of training a run the callback started is closed COMPLETED. Transformers
  tells no callback about an exception: one that ends the process closes the run FAILED
  (CANCELLED on Ctrl-C) from ``sys.excepthook``. Metrics logged outside training
  (``trainer.evaluate()`` after ``train()``) resume the run and close it again.

Only the main process (``state.is_world_process_zero``) logs.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..experiment import Experiment
from ._common import RunHandle, close_on_uncaught_exception

# Imported by name so that the type checker does not analyse Transformers (the boundary is Any).
_TrainerCallback: Any = importlib.import_module("transformers").TrainerCallback

_STREAM_PREFIXES = (("eval_", "eval"), ("test_", "test"))


def split_logs(logs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The points a Trainer's ``logs`` make, by stream (see the module's docstring)."""
    points: dict[str, dict[str, Any]] = {}
    for key, value in logs.items():
        stream, field = "train", key
        for prefix, name in _STREAM_PREFIXES:
            if key.startswith(prefix) and len(key) > len(prefix):
                stream, field = name, key[len(prefix):]
                break
        points.setdefault(stream, {})[field] = value
    return points


class MLDashCallback(_TrainerCallback):  # type: ignore[misc]  # a base class from an untyped boundary
    """``MLDashCallback(prefix, *, experiment=None, **experiment_kwargs)``: logs a
    ``Trainer``'s arguments, model config and logs into an ML-Dash experiment."""

    def __init__(self, prefix: str | None = None, *, experiment: Experiment | None = None,
                 **experiment_kwargs: Any) -> None:
        self._run = RunHandle(experiment, prefix, experiment_kwargs)
        self._training = False

    @property
    def experiment(self) -> Experiment:
        """The ML-Dash experiment (started on first use; not reopened once closed)."""
        return self._run.experiment(reopen=False)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._training = True
        close_on_uncaught_exception()
        params: dict[str, Any] = {"args": args.to_dict()}
        config = getattr(model, "config", None)
        if config is not None and callable(getattr(config, "to_dict", None)):
            params["model"] = config.to_dict()
        self._run.set_params(params)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        fields = dict(logs)
        epoch = fields.pop("epoch", None)
        self._run.log_metrics(split_logs(fields), step=state.global_step, epoch=epoch)
        if not self._training:  # evaluate()/predict() outside train(): one event, closed at once
            self._run.close("COMPLETED")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._training = False
        self._run.close("COMPLETED")


__all__ = ["MLDashCallback", "split_logs"]
