"""Series, field statistics and run summaries computed by reading a store's points:
what a store without its own summaries answers (MongoStore today). Correct for any
store; the cost is a read of the whole stream per call."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..series import Series, check_query, m4
from ..series import _empty_series as empty_series
from ..summaries import FieldStats, RunSummary, as_number
from .base import Store

PAGE = 100_000


def _points(store: Store, prefix: str, name: str) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    start = 0
    while True:
        page = store.read_metrics(prefix, name, start, PAGE)
        points.extend(page["data"])
        if not page["hasMore"] or not page["data"]:
            return points
        start = page["data"][-1]["index"] + 1


def series_by_reading(store: Store, prefix: str, name: str, y: str, x: str = "index", x0: float | None = None,
                      x1: float | None = None, width: int = 1000) -> Series:
    """``Store.metric_series`` over ``read_metrics``."""
    check_query(x0, x1, width)
    xs: list[float] = []
    ys: list[float] = []
    indexes: list[int] = []
    for point in _points(store, prefix, name):
        data = point.get("data", {})
        xv = float(point["index"]) if x == "index" else as_number(data.get(x))
        yv = as_number(data.get(y))
        if xv is None or yv is None or not math.isfinite(xv):
            continue
        xs.append(xv)
        ys.append(yv)
        indexes.append(int(point["index"]))
    if not xs:
        return empty_series(True, 0, 0, x0, x1, width)
    x_arr = np.asarray(xs, dtype=np.float64)
    lo = float(x_arr.min()) if x0 is None and len(xs) else x0
    hi = float(x_arr.max()) if x1 is None and len(xs) else x1
    return m4(x_arr, np.asarray(ys, dtype=np.float64), lo if lo is not None else 0.0,
              hi if hi is not None else 0.0, width, np.asarray(indexes, dtype=np.int64))


def fields_by_reading(store: Store, prefix: str, name: str) -> dict[str, FieldStats]:
    """``Store.metric_fields`` over ``read_metrics``."""
    stats: dict[str, FieldStats] = {}
    for point in _points(store, prefix, name):
        index = int(point["index"])
        for field, value in point.get("data", {}).items():
            number = as_number(value)
            if number is None:
                continue
            entry = stats.setdefault(field, FieldStats(count=0, first=None, last=None, min=None, max=None,
                                                       lastIndex=None, minIndex=None, maxIndex=None, nonFinite=0))
            if not math.isfinite(number):
                entry["nonFinite"] = entry.get("nonFinite", 0) + 1
                continue
            entry["count"] = entry.get("count", 0) + 1
            if entry.get("first") is None:
                entry["first"] = number
            entry["last"], entry["lastIndex"] = number, index
            low = entry.get("min")
            if low is None or number < low:
                entry["min"], entry["minIndex"] = number, index
            high = entry.get("max")
            if high is None or number > high:
                entry["max"], entry["maxIndex"] = number, index
    return stats


def summaries_by_reading(store: Store, owner: str | None = None, project: str | None = None) -> list[RunSummary]:
    """``Store.run_summaries`` over the other reads."""
    found = []
    for info in store.list_experiments(owner, project):
        params = dict(store.get_params(info.prefix).data)
        metrics = {}
        for stats in store.list_metrics(info.prefix):
            fields = store.metric_fields(info.prefix, stats["name"])
            fields.pop("_ts", None)
            metrics[stats["name"]] = fields
        found.append(RunSummary(info, params, metrics))
    return found
