"""``stream.summary_cache``: values kept in memory and logged as one summary point on demand."""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any

from .errors import InvalidValueError

if TYPE_CHECKING:
    from .metrics import MetricStream


def to_number(value: Any, where: str, key: str) -> float:
    """``value`` as a float (None is NaN); InvalidValueError (a ValueError) naming ``key``."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidValueError(f"{where}: {key!r} must be a number, got {value!r:.60}") from None


class SummaryCache:
    """Values of one metric stream, summarised into one point by :meth:`summarize`.

    ``store(loss=...)`` keeps numbers; ``set(epoch=...)`` remembers fields to add to
    the summary point as they are; ``summarize()`` logs ``<key>.mean/min/max/count/std``
    for every key with a non-NaN value, plus the remembered fields.
    """

    def __init__(self, stream: MetricStream) -> None:
        self._stream = stream
        self._values: dict[str, list[float]] = {}
        self._fields: dict[str, Any] = {}

    def store(self, **values: Any) -> SummaryCache:
        """Keep these values (each turned into a float; None is NaN). A value that is
        not a number raises InvalidValueError (a ValueError), and nothing of the call
        is kept."""
        where = f"metric {self._stream.name!r} summary_cache"
        numbers = {key: to_number(value, where, key) for key, value in values.items()}
        for key, number in numbers.items():
            self._values.setdefault(key, []).append(number)
        return self

    def set(self, **fields: Any) -> SummaryCache:
        """Remember fields for the next summary point (later calls replace keys)."""
        self._fields.update(fields)
        return self

    def summarize(self, clear: bool = True) -> dict[str, Any] | None:
        """Log one point: the remembered fields, then for every key with at least one
        non-NaN value ``key.mean``, ``key.min``, ``key.max``, ``key.count`` and
        ``key.std`` (the sample standard deviation; 0.0 for one value). Nothing is
        logged when nothing was stored or set. ``clear`` (the default) then empties the
        values and the remembered fields; ``clear=False`` keeps accumulating. Returns
        the fields logged, or None."""
        if not self._values and not self._fields:
            return None
        point: dict[str, Any] = dict(self._fields)
        for key, values in self._values.items():
            clean = [v for v in values if not math.isnan(v)]
            if not clean:
                continue
            point[f"{key}.mean"] = statistics.fmean(clean)
            point[f"{key}.min"] = min(clean)
            point[f"{key}.max"] = max(clean)
            point[f"{key}.count"] = len(clean)
            point[f"{key}.std"] = statistics.stdev(clean) if len(clean) > 1 else 0.0
        if point:
            self._stream.log(**point)  # raises when the run is not going: nothing is cleared then
        if clear:
            self._values.clear()
            self._fields.clear()
        return point or None

    def peek(self, *keys: str, limit: int | None = 5) -> dict[str, list[float]]:
        """The last ``limit`` values kept per key (all keys, or those named; keys without
        values left out; ``limit=None`` or 0: all of them). Changes nothing."""
        chosen = keys or tuple(self._values)
        return {k: list(self._values[k][-limit:] if limit else self._values[k])
                for k in chosen if self._values.get(k)}
