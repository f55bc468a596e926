"""ML-Dash: fast, crash-safe experiment tracking (params, metrics, logs, tracks)."""

from .errors import (
    ExperimentBusyError,
    ExperimentExistsError,
    InvalidNameError,
    InvalidValueError,
    MLDashError,
    NotFoundError,
    NotStartedError,
    StorageError,
)
from .experiment import Experiment, Run
from .reading import ExperimentReader, find, open
from .stores import LocalStore, Store

__version__ = "0.1.0"

__all__ = [
    "Experiment",
    "ExperimentBusyError",
    "ExperimentExistsError",
    "ExperimentReader",
    "InvalidNameError",
    "InvalidValueError",
    "LocalStore",
    "MLDashError",
    "NotFoundError",
    "NotStartedError",
    "Run",
    "StorageError",
    "Store",
    "__version__",
    "find",
    "open",
]
