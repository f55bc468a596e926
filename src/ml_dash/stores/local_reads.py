"""The folder store's chart and table reads: series of a metric field (from each
stream's pyramid index, ``series_index``) and run summaries (from ``experiment.json``,
``params.json`` and the same indexes).

Both are derived from the data files and kept beside them (``metrics/<name>/.series/``);
nothing here rescans a data file that has not grown. A store opened read-only
(``ml_dash.open``) keeps the indexes in memory and writes nothing.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from ..series import Series
from ..summaries import FieldStats, RunSummary
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


def run_summaries(store: LocalStore, indexes: SeriesIndexes, owner: str | None = None,
                  project: str | None = None) -> list[RunSummary]:
    """One summary per experiment under ``owner`` (and ``project``)."""
    summaries = []
    for info in store.list_experiments(owner, project):
        params = dict(store.get_params(info.prefix).data)
        metrics = {}
        for stats in store.list_metrics(info.prefix):
            fields = field_stats(store, indexes, info.prefix, stats["name"])
            fields.pop("_ts", None)  # wall time: the table shows the run's own times
            metrics[stats["name"]] = fields
        summaries.append(RunSummary(info, params, metrics))
    return summaries
