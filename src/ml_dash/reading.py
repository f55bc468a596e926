"""Reading an experiment without running it: ``ml_dash.open(prefix, root=…)``.

The handle reads params, metrics, logs and tracks of any experiment, running or
finished, from the folder (``root``) or the server (``url``), and changes nothing: it
never starts a run, takes no claim, changes no status and writes no file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from . import frames
from .errors import InvalidValueError, NotFoundError
from .logs import log_query
from .names import parse_prefix, validate_name
from .params import unflatten
from .records import ExperimentInfo, LogPage, MetricPage, MetricStats
from .series import Series
from .stores.base import Store
from .stores.local import LocalStore
from .stores.remote import RemoteStore
from .summaries import FieldStats, RunSummary, select_runs


def open_store(root: str | os.PathLike[str] | None = None, url: str | None = None,
               api_key: str | None = None, timeout: float = 30.0) -> Store:
    """The store to read from: the server at ``url`` (``ML_DASH_URL``) when given, else
    the folder ``root`` (``ML_DASH_ROOT`` or ``.dash``)."""
    if url is not None and root is not None:
        raise InvalidValueError("give root= (a folder) or url= (a server), not both")
    if root is None:
        url = url or os.environ.get("ML_DASH_URL") or None
    if url:
        return RemoteStore(url, api_key or os.environ.get("ML_DASH_API_KEY"), timeout=timeout)
    folder = root if root is not None else (os.environ.get("ML_DASH_ROOT") or ".dash")
    store = LocalStore(folder, scan_batch_ids=False)
    store.read_only = True  # derived indexes stay in memory: reading writes nothing
    return store


class MetricReader:
    """One metric stream of an experiment, read-only."""

    def __init__(self, store: Store, prefix: str, name: str) -> None:
        self._store, self.prefix, self.name = store, prefix, name

    def read(self, start_index: int = 0, limit: int = 1000) -> MetricPage:
        """Points ``start_index`` onward (at most ``limit``), as ``exp.metrics(name).read``."""
        return self._store.read_metrics(self.prefix, self.name, int(start_index), int(limit))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every point in index order, read a page at a time."""
        start = 0
        while True:
            page = self.read(start, 10_000)
            yield from page["data"]
            if not page["hasMore"] or not page["data"]:
                return
            start = page["data"][-1]["index"] + 1

    def stats(self) -> MetricStats:
        """``{"name", "totalDataPoints", "firstDataAt", "lastDataAt"}``."""
        return self._store.metric_stats(self.prefix, self.name)

    def series(self, y: str, x: str = "index", x0: float | None = None, x1: float | None = None,
               width: int = 1000) -> Series:
        """The chart series of field ``y``, as ``exp.metrics(name).series``."""
        return self._store.metric_series(self.prefix, self.name, y, x, x0, x1, width)

    def fields(self) -> dict[str, FieldStats]:
        """Count, first, last, min and max of every numeric field."""
        return self._store.metric_fields(self.prefix, self.name)

    def to_pandas(self) -> Any:
        """Every point as a DataFrame: ``index``, ``time`` (seconds) and one column per
        field (a field named ``index`` or ``time`` becomes ``data.index``/``data.time``).
        Needs ``ml-dash[pandas]`` (MissingExtraError otherwise)."""
        return frames.to_pandas(frames.metric_columns(self._store, self.prefix, self.name))

    def to_arrow(self) -> Any:
        """Every point as a ``pyarrow.Table``, the columns of :meth:`to_pandas` (a missing
        value is null, NaN stays NaN). Needs ``ml-dash[arrow]``."""
        return frames.to_arrow(frames.metric_columns(self._store, self.prefix, self.name))

    def __repr__(self) -> str:
        return f"MetricReader({self.prefix!r}, {self.name!r})"


class MetricsReader:
    """``handle.metrics``: call it with a stream name; ``list()`` gives every stream."""

    def __init__(self, store: Store, prefix: str) -> None:
        self._store, self._prefix = store, prefix

    def __call__(self, name: str) -> MetricReader:
        validate_name(name, "metric name")
        return MetricReader(self._store, self._prefix, name)

    def list(self) -> list[MetricStats]:
        return self._store.list_metrics(self._prefix)


class LogsReader:
    """``handle.logs``: the experiment's log lines, read-only."""

    def __init__(self, store: Store, prefix: str) -> None:
        self._store, self._prefix = store, prefix

    def read(
        self,
        level: str | list[str] | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
        descending: bool = False,
    ) -> LogPage:
        """Log lines matching every filter given (as ``exp.logs.read``)."""
        query = log_query(level, start_time, end_time, search, limit, offset, descending)
        return self._store.query_logs(self._prefix, query)

    query = read

    def to_pandas(self) -> Any:
        """Every log line as a DataFrame: ``index`` (sequence number), ``time`` (seconds),
        ``level``, ``message``, ``metadata`` (a dict, or None). Needs ``ml-dash[pandas]``."""
        return frames.to_pandas(frames.log_columns(self._store, self._prefix))

    def to_arrow(self) -> Any:
        """The log lines as a ``pyarrow.Table`` (``metadata`` as JSON text). Needs ``ml-dash[arrow]``."""
        return frames.to_arrow(frames.log_columns(self._store, self._prefix))


class TrackReader:
    """One track topic, read-only."""

    def __init__(self, store: Store, prefix: str, topic: str) -> None:
        self._store, self.prefix, self.topic = store, prefix, topic

    def read(self, *args: Any, **kwargs: Any) -> Any:
        """Entries in time order, as ``exp.tracks(topic).read`` (same arguments)."""
        return self._store.read_tracks(self.prefix, self.topic, *args, **kwargs)

    def to_pandas(self) -> Any:
        """Every entry as a DataFrame: ``time`` (the entry's timestamp, seconds) and one
        column per (flattened) field. Needs ``ml-dash[pandas]``."""
        return frames.to_pandas(frames.track_columns(self._store, self.prefix, self.topic))

    def to_arrow(self) -> Any:
        """The entries as a ``pyarrow.Table``. Needs ``ml-dash[arrow]``."""
        return frames.to_arrow(frames.track_columns(self._store, self.prefix, self.topic))


class TracksReader:
    """``handle.tracks``: call it with a topic; ``list()`` gives every topic."""

    def __init__(self, store: Store, prefix: str) -> None:
        self._store, self._prefix = store, prefix

    def __call__(self, topic: str) -> TrackReader:
        validate_name(topic, "track topic")
        return TrackReader(self._store, self._prefix, topic)

    def list(self) -> list[dict[str, Any]]:
        return self._store.list_tracks(self._prefix)


class ParamsReader:
    """``handle.params``: the stored params, read-only."""

    def __init__(self, store: Store, prefix: str) -> None:
        self._store, self._prefix = store, prefix

    def get(self, flatten: bool = True) -> dict[str, Any]:
        """The params, flat (``{"model.depth": 50}``) or nested, as ``exp.params.get``."""
        data = dict(self._store.get_params(self._prefix).data)
        return data if flatten else unflatten(data)


class ExperimentReader:
    """A read-only handle on one experiment (``ml_dash.open``). Use it as a context
    manager, or call ``close()``, to let go of its files or connection."""

    def __init__(self, store: Store, prefix: str, *, owns_store: bool = True) -> None:
        self.prefix = prefix
        self.store = store
        self._owns_store = owns_store
        self.params = ParamsReader(store, prefix)
        self.metrics = MetricsReader(store, prefix)
        self.logs = LogsReader(store, prefix)
        self.tracks = TracksReader(store, prefix)

    @property
    def info(self) -> ExperimentInfo:
        """The experiment as stored now (status, times, tags ...)."""
        info = self.store.get_experiment(self.prefix)
        if info is None:
            raise NotFoundError(f"no experiment {self.prefix!r}")
        return info


    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> ExperimentReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ExperimentReader({self.prefix!r})"


def open(
    prefix: str,
    *,
    root: str | os.PathLike[str] | None = None,
    url: str | None = None,
    api_key: str | None = None,
    timeout: float = 30.0,
) -> ExperimentReader:
    """A read-only handle on the experiment ``prefix`` in the folder ``root`` or on the
    server ``url``. NotFoundError if there is no such experiment; nothing is written."""
    parsed = parse_prefix(prefix)
    store = open_store(root, url, api_key, timeout)
    try:
        handle = ExperimentReader(store, str(parsed))
        handle.info  # noqa: B018 - raises NotFoundError for an experiment that does not exist
    except BaseException:
        store.close()
        raise
    return handle


def find(
    where: str | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    url: str | None = None,
    api_key: str | None = None,
    owner: str | None = None,
    project: str | None = None,
    sort: str | None = None,
    descending: bool = False,
    limit: int = 10_000,
) -> list[RunSummary]:
    """The experiments that pass the filter ``where`` (docs/filters.md), e.g.
    ``find("params.lr < 0.01 and status == 'COMPLETED'", root=".dash")``: their
    summaries (``.info``, ``.params`` flat, ``.metrics`` field statistics), sorted by
    ``sort`` (default: creation time). ``ml_dash.open(summary.info.prefix, ...)`` reads one."""
    store = open_store(root, url, api_key)
    try:
        page, _ = select_runs(store.run_summaries(owner, project), where, sort, descending, 0, limit)
        return page
    finally:
        store.close()
