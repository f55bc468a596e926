"""What the integrations share: the run they log into, and turning framework values
into values ML-Dash stores."""

from __future__ import annotations

import enum
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from ..errors import MLDashError
from ..experiment import Experiment

_MAX_DEPTH = 8


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-like data ML-Dash takes: containers kept (keys as text), enums
    by value, one-element tensors and arrays as their number, anything else as its
    ``str()`` (a framework's config holds classes, paths, devices...)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value, depth)
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            return {str(key): plain(item, depth + 1) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [plain(item, depth + 1) for item in value]
    item = getattr(value, "item", None)
    if callable(item) and (getattr(value, "size", None) == 1 or _numel(value) == 1):
        try:
            return plain(item(), _MAX_DEPTH)
        except Exception:
            pass
    return str(value)


def _numel(value: Any) -> int | None:
    numel = getattr(value, "numel", None)
    if not callable(numel):
        return None
    try:
        return int(numel())
    except Exception:
        return None


class RunHandle:
    """The experiment an integration logs into.

    Given an ``experiment``, it logs there; else it makes ``Experiment(prefix,
    **experiment_kwargs)`` on first use. It starts the run when it is not running, and
    closes only a run it started itself (a run you started is yours to close). Trouble
    storing (an ML-Dash error) warns and never raises into the training loop.
    """

    def __init__(self, experiment: Experiment | None, prefix: str | None, experiment_kwargs: dict[str, Any]) -> None:
        if experiment is not None and (prefix is not None or experiment_kwargs):
            raise TypeError("give either an experiment or a prefix and Experiment keywords, not both")
        self._experiment = experiment
        self._prefix = prefix
        self._kwargs = experiment_kwargs
        self.started_here = False
        self.closed_here = False

    @property
    def prefix(self) -> str | None:
        """The experiment's prefix (as given, before the experiment is made)."""
        return self._experiment.prefix if self._experiment is not None else self._prefix

    def experiment(self, reopen: bool = True) -> Experiment:
        """The experiment, made if needed and running: started here if it was not, unless
        ``reopen`` is False and this handle closed it already (then as it was left)."""
        if self._experiment is None:
            self._experiment = Experiment(self._prefix, **self._kwargs)
        exp = self._experiment
        if exp.status != "RUNNING" and (reopen or not self.closed_here):
            exp.run.start()
            self.started_here = True
            _open_handles.add(self)
        return exp

    @property
    def running(self) -> bool:
        return self._experiment is not None and self._experiment.status == "RUNNING"

    def set_params(self, params: Mapping[str, Any]) -> None:
        """Merge ``params`` (made plain) into the experiment's parameters."""
        exp = self.experiment()
        values = plain(dict(params))
        if values:
            self._guarded("params", lambda: exp.params.set(**values))

    def log_metrics(self, points: Mapping[str, Mapping[str, Any]], **coordinates: Any) -> None:
        """Log one point per stream of ``points`` (stream -> fields), each with the
        ``coordinates`` (``step=``, ``epoch=``) that are not None."""
        exp = self.experiment()
        coords = {key: plain(value) for key, value in coordinates.items() if value is not None}
        for stream, fields in points.items():
            if fields:
                point = {**{key: plain(value) for key, value in fields.items()}, **coords}
                self._guarded(f"metric {stream!r}", _logger(exp, stream, point))

    def close(self, status: str, reason: str | None = None) -> None:
        """Close the run with ``status`` (COMPLETED, FAILED, CANCELLED) if it was started here."""
        _open_handles.discard(self)
        if not self.started_here or not self.running:
            return
        self.started_here = False
        self.closed_here = True
        assert self._experiment is not None  # running implies made
        run = self._experiment.run
        if status == "COMPLETED":
            run.complete()
        elif status == "CANCELLED":
            run.cancel()
        else:
            run.fail(reason)

    def flush(self) -> None:
        """Write and fsync what the run holds (nothing when it is not running)."""
        if self._experiment is not None and self.running:
            self._experiment.flush()

    def _guarded(self, what: str, call: Callable[[], Any]) -> None:
        try:
            call()
        except MLDashError as exc:
            warnings.warn(f"ml-dash: {self.prefix}: {what} not logged: {exc}", RuntimeWarning, stacklevel=3)


def _logger(exp: Experiment, stream: str, point: dict[str, Any]) -> Callable[[], Any]:
    return lambda: exp.metrics(stream).log(**point)


def status_of(exc: BaseException | None) -> tuple[str, str | None]:
    """The status a run ends with when ``exc`` ended it, and the reason to record."""
    if exc is None:
        return "COMPLETED", None
    if isinstance(exc, KeyboardInterrupt):
        return "CANCELLED", None
    return "FAILED", f"{type(exc).__name__}: {exc}"


# Runs the callbacks started and have not closed. Transformers and Keras tell a callback
# when training ends, not when it raises: an exception that ends the process closes
# them (FAILED, or CANCELLED on Ctrl-C) from sys.excepthook, which runs before atexit.
_open_handles: weakref.WeakSet[RunHandle] = weakref.WeakSet()
_hook_lock = threading.Lock()
_hook_installed = False


def close_on_uncaught_exception() -> None:
    """Chain a ``sys.excepthook`` (once per process) that closes the open runs."""
    global _hook_installed
    with _hook_lock:
        if _hook_installed:
            return
        previous = sys.excepthook

        def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
            status, reason = status_of(exc)
            for handle in list(_open_handles):
                try:
                    handle.close(status, reason)
                except Exception:
                    pass
            previous(kind, exc, tb)

        sys.excepthook = hook
        _hook_installed = True
