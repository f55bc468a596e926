"""The folder store's chart and table reads: series of a metric field (from each
stream's pyramid index, ``series_index``) and run summaries (one file per experiment,
``run_summary_files``, made from ``experiment.json``, ``parameters.json`` and the same
indexes).

Both are derived from the data files and kept beside them (``metrics/<name>/.series/``,
``.ml-dash/summary.json``); nothing here rescans a data file that has not grown. A
store opened read-only (``ml_dash.open``) keeps them in memory and writes nothing.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ..errors import StorageError
from ..records import ExperimentInfo
from ..series import Series
from ..summaries import FieldStats, RunSummary
from . import local_docs as docs
from .run_summary_files import RunSummaryFiles, StreamEntry, SummaryFile
from .series_index import SeriesIndex

if TYPE_CHECKING:
    from .local import LocalStore

MAX_OPEN_INDEXES = 256  # SeriesIndex objects kept (each holds its stream's pyramid in memory)


class SeriesIndexes:
    """A bounded, least-recently-used set of SeriesIndex objects, one per stream folder."""

    def __init__(self, writable: bool = True, size: int = MAX_OPEN_INDEXES) -> None:
        self.writable = writable
        self.size = size
        self._lock = threading.Lock()
        self._indexes: OrderedDict[str, SeriesIndex] = OrderedDict()

    def get(self, folder: str) -> SeriesIndex:
        with self._lock:
            index = self._indexes.get(folder)
            if index is None:
                index = self._indexes[folder] = SeriesIndex(folder, writable=self.writable)
                while len(self._indexes) > self.size:
                    self._indexes.popitem(last=False)
            else:
                self._indexes.move_to_end(folder)
            return index


def metric_series(store: LocalStore, indexes: SeriesIndexes, prefix: str, name: str, y: str,
                  x: str = "index", x0: float | None = None, x1: float | None = None,
                  width: int = 1000) -> Series:
    """The M4 series of field ``y`` against ``x`` over ``[x0, x1]`` at ``width``
    columns (an empty series for a stream that does not exist)."""
    folder = store._stream_folder(prefix, "metrics", name)
    return indexes.get(folder).series(y, x, x0, x1, width)


def field_stats(store: LocalStore, indexes: SeriesIndexes, prefix: str, name: str) -> dict[str, FieldStats]:
    """Count, first, last, min and max of every numeric field of one stream."""
    folder = store._stream_folder(prefix, "metrics", name)
    if not os.path.exists(os.path.join(folder, "data.jsonl")):
        return {}
    return indexes.get(folder).field_stats()


def run_summaries(store: LocalStore, indexes: SeriesIndexes, cache: RunSummaryFiles, owner: str | None = None,
                  project: str | None = None) -> list[RunSummary]:
    """One summary per experiment under ``owner`` (and ``project``), by prefix, from
    each experiment's ``.ml-dash/summary.json`` (``run_summary_files``): what changed since
    it was made is read again, nothing else. An experiment whose ``experiment.json``
    cannot be read or is damaged is left out with a RuntimeWarning, as in
    ``list_experiments``."""
    summaries = []

    def stats_of(folder: str) -> dict[str, FieldStats]:
        return indexes.get(folder).field_stats()

    for prefix in store._experiment_prefixes(owner, project):
        folder = store.experiment_dir(prefix)
        try:
            kept = cache.get(folder, stats_of)
            if kept is None:
                continue
            info, params, metrics = cache.made_from(folder, kept, functools.partial(_parts, prefix, folder))
            info = store._reading(info)  # liveness (STALE) and resumes: never cached
        except StorageError as exc:
            warnings.warn(f"ml-dash: leaving out {prefix!r} from the list: {exc}", RuntimeWarning, stacklevel=3)
            continue
        summaries.append(RunSummary(info, params, metrics))
    return summaries


def _parts(prefix: str, folder: str, kept: SummaryFile
           ) -> tuple[ExperimentInfo, dict[str, Any], dict[str, dict[str, FieldStats]]]:
    """Info, params and metrics of one summary; StorageError when its
    ``experiment.json`` part is damaged."""
    info = docs.info_from_json(prefix, kept.info, os.path.join(folder, "experiment.json"))
    return info, _params(kept.params, folder), _metrics(kept.streams)


def _params(doc: dict[str, Any], folder: str) -> dict[str, Any]:
    if not doc:
        return {}
    path = os.path.join(folder, "parameters.json")
    try:
        return dict(docs.params_from_json(doc, path).data)
    except StorageError as exc:
        warnings.warn(f"ml-dash: {exc}; showing no params", RuntimeWarning, stacklevel=4)
        return {}


def _metrics(streams: dict[str, StreamEntry]) -> dict[str, dict[str, FieldStats]]:
    # Wall time (_ts) is left out: the table shows the run's own times.
    return {name: {field: stats for field, stats in entry.fields.items() if field != "_ts"}
            for name, entry in streams.items()}
