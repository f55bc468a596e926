"""ML-Dash: fast, crash-safe experiment tracking (params, metrics, logs, tracks)."""

from .buffer import BufferConfig
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
from .many import ExperimentSet, open_many
from .params import ParametersBuilder
from .reading import ExperimentReader, find, open
from .run import RUN, find_project_root
from .stores import LocalStore, Store

__version__ = "0.1.0"

__all__ = [
    "RUN",
    "BufferConfig",
    "Experiment",
    "ExperimentBusyError",
    "ExperimentExistsError",
    "ExperimentReader",
    "ExperimentSet",
    "InvalidNameError",
    "InvalidValueError",
    "LocalStore",
    "MLDashError",
    "NotFoundError",
    "NotStartedError",
    "ParametersBuilder",
    "Run",
    "StorageError",
    "Store",
    "__version__",
    "find",
    "find_project_root",
    "open",
    "open_many",
]
