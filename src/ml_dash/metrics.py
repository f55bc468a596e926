"""``exp.metrics``: named streams of points with any fields, plus summary helpers."""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import TYPE_CHECKING, Any

from . import frames
from .clock import now, resolve_ts, thread_state
from .errors import InvalidValueError, NotStartedError
from .metric_cache import SummaryCache
from .names import validate_name
from .records import MetricPage, MetricStats, StreamDescription
from .series import Series
from .values import PLAIN, check_text, normalize, normalize_fields
from .writer import HANDOFF_MASK

if TYPE_CHECKING:
    from .session import Session
    from .writer import Channel


class MetricStream:
    """One named metric stream: ``exp.metrics("train")``."""

    __slots__ = ("_channel", "_metrics", "_poke", "_queue", "_session", "_summary_cache", "description", "metadata",
                 "name", "tags")

    def __init__(self, metrics: Metrics, name: str, channel: Channel) -> None:
        self.name = name
        self._metrics = metrics
        self._session = metrics._session
        self._channel = channel
        self._queue: deque[Any] | None = channel.queue
        self._poke = self._session.poke
        self.description: str | None = None
        self.tags: list[str] = []
        self.metadata: dict[str, Any] = {}
        self._summary_cache: SummaryCache | None = None

    def log(self, **fields: Any) -> MetricStream:
        """Append one point with these fields; returns the stream (for chaining).

        ``_ts=`` sets its time in seconds (``-1``: the last time this thread used).
        The point is written by the background writer; its ``index`` is its position
        in the stream. Raises InvalidValueError naming a field that cannot be stored.
        """
        queue = self._queue
        if queue is None:
            raise NotStartedError(f"metric {self.name!r}: the experiment is not running (use `with exp.run:`)")
        if not fields:
            raise InvalidValueError(f"metric {self.name!r}: log() needs at least one field")
        ts = fields.get("_ts")
        if ts is None:
            fields["_ts"] = ts = now()
        elif type(ts) is not float or not 0.0 <= ts < _INF:
            fields["_ts"] = ts = resolve_ts(ts, f"metric {self.name!r}")
        thread_state.ts = ts
        for value in fields.values():
            if type(value) not in PLAIN:
                normalize_fields(fields)
                break
        queue.append(fields)
        if not len(queue) & HANDOFF_MASK:
            self._poke(queue)
        return self

    def read(self, start_index: int = 0, limit: int = 1000) -> MetricPage:
        """Points ``start_index`` onward (at most ``limit``), including ones still in memory.

        Returns ``{"data": [{"index", "data", ...}], "startIndex", "endIndex", "total",
        "hasMore"}``. Costs O(limit), not O(start_index).
        """
        session = self._session
        session.flush(self._channel)
        return session.reader.read_metrics(session.prefix, self.name, int(start_index), int(limit))

    def series(self, y: str, x: str = "index", x0: float | None = None, x1: float | None = None,
               width: int = 1000) -> Series:
        """The chart series of field ``y`` against ``x`` (``"index"``, ``"_ts"`` or a numeric
        field such as ``"step"``) over ``[x0, x1]`` for ``width`` pixel columns: every point
        when the range holds at most 4 × width, else per column its first, last, minimum and
        maximum point (M4: no spike is ever left out). Columnar (``.x``, ``.y``, ``.index``);
        NaN/±inf values come apart in ``.nonfinite_x``/``.nonfinite_y``."""
        session = self._session
        session.flush(self._channel)
        return session.reader.metric_series(session.prefix, self.name, y, x, x0, x1, width)

    def stats(self) -> MetricStats:
        """``{"name", "totalDataPoints" (int), "firstDataAt", "lastDataAt"}`` for this stream."""
        session = self._session
        session.flush(self._channel)
        return session.reader.metric_stats(session.prefix, self.name)

    def to_pandas(self) -> Any:
        """Every point so far (queued ones included) as a DataFrame: ``index``, ``time``
        and one column per field (docs/reading.md). Needs ``ml-dash[pandas]``."""
        session = self._session
        session.flush(self._channel)
        return frames.to_pandas(frames.metric_columns(session.reader, session.prefix, self.name))

    def to_arrow(self) -> Any:
        """Every point so far as a ``pyarrow.Table`` (the columns of :meth:`to_pandas`).
        Needs ``ml-dash[arrow]``."""
        session = self._session
        session.flush(self._channel)
        return frames.to_arrow(frames.metric_columns(session.reader, session.prefix, self.name))

    def flush(self) -> MetricStream:
        """Write this stream's queued points now."""
        self._session.flush(self._channel)
        return self

    def buffer(self, **values: Any) -> MetricStream:
        """Collect values for ``exp.metrics.buffer.log_summary()`` instead of logging them."""
        self._metrics.buffer.add(self.name, values)
        return self

    @property
    def summary_cache(self) -> SummaryCache:
        """This stream's :class:`~ml_dash.metric_cache.SummaryCache` (store, set, summarize, peek)."""
        cache = self._summary_cache
        if cache is None:
            cache = self._summary_cache = SummaryCache(self)
        return cache

    def list_all(self) -> list[MetricStats]:
        """Every stream of this experiment with ``totalDataPoints``, in name order (also
        through a stream kept after the run ended)."""
        session = self._session
        session.flush()
        return session.reader.list_metrics(session.prefix)

    def _attach(self, channel: Channel) -> None:
        """A new run started: points go to its writer from now on."""
        self._channel = channel
        self._queue = channel.queue


class SyncMetricStream(MetricStream):
    """A stream of an experiment whose buffer is disabled (``BufferConfig``): each point
    is in the store's file (the outbox, remote-only) when ``log`` returns."""

    __slots__ = ()

    def log(self, **fields: Any) -> MetricStream:
        MetricStream.log(self, **fields)
        self._session.hand_over(self._channel)
        return self


_INF = math.inf
UNNAMED = "None"  # the unnamed stream's folder and name, as the public SDK stores it
_AGGREGATIONS = ("mean", "std", "min", "max", "count", "median", "sum", "p50", "p90", "p95", "p99", "first", "last")


def _percentile(ordered: list[float], p: float) -> float:
    k = (len(ordered) - 1) * p / 100
    low = math.floor(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (k - low) * (ordered[high] - ordered[low])


def aggregate(values: list[float], how: str) -> float | int:
    """One aggregation of the non-NaN ``values`` (see ``_AGGREGATIONS``)."""
    if how == "count":
        return len(values)
    if how == "first":
        return values[0]
    if how == "last":
        return values[-1]
    if how == "mean":
        return statistics.fmean(values)
    if how == "std":
        return statistics.stdev(values) if len(values) > 1 else 0.0
    if how == "min":
        return min(values)
    if how == "max":
        return max(values)
    if how == "sum":
        return math.fsum(values)
    ordered = sorted(values)
    return _percentile(ordered, 50 if how == "median" else float(how[1:]))


class SummaryBuffer:
    """Values collected with ``metrics(name).buffer(...)``, summarised on demand."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._values: dict[str, dict[str, list[float]]] = {}

    def add(self, stream: str, values: dict[str, Any]) -> None:
        target = self._values.setdefault(stream, {})
        for key, value in values.items():
            try:
                number = float("nan") if value is None else float(value)
            except (TypeError, ValueError):
                raise InvalidValueError(
                    f"metric {stream!r}: buffer field {key!r} must be a number, got {value!r:.60}"
                ) from None
            target.setdefault(key, []).append(number)

    def peek(self, stream: str | None = None) -> dict[str, dict[str, list[float]]]:
        """The collected values (a copy), of one stream or all."""
        chosen = {stream: self._values.get(stream, {})} if stream else self._values
        return {s: {k: list(v) for k, v in fields.items()} for s, fields in chosen.items()}

    def log_summary(self, *aggs: str, **extra: Any) -> dict[str, dict[str, Any]]:
        """Log ``<field>.<agg>`` (default ``mean``) per buffered stream, then clear.

        ``extra`` fields (e.g. ``epoch=3``) are added to every summary point. Returns
        what was logged, by stream. NaN values are left out of the aggregates.
        """
        aggs = aggs or ("mean",)
        for how in aggs:
            if how not in _AGGREGATIONS:
                raise InvalidValueError(f"Unsupported aggregation: {how!r}; choose from {', '.join(_AGGREGATIONS)}")
        logged: dict[str, dict[str, Any]] = {}
        for stream, fields in self._values.items():
            point: dict[str, Any] = dict(extra)
            for key, values in fields.items():
                clean = [v for v in values if v == v]
                if not clean:
                    continue
                for how in aggs:
                    point[f"{key}.{how}"] = aggregate(clean, how)
            if len(point) > len(extra):
                self._metrics(stream).log(**point)
                logged[stream] = point
        self._values.clear()
        return logged


class Metrics:
    """``exp.metrics``: call it with a name to get a stream."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._streams: dict[str, MetricStream] = {}
        self.buffer = SummaryBuffer(self)

    def __call__(
        self,
        name: str | None = None,
        description: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> MetricStream:
        """The stream ``name`` (the same object on every call, for the experiment's life:
        it logs again once a new run starts). ``None`` is the unnamed stream, stored as
        ``"None"`` (as the public SDK does).

        ``description``, ``tags`` and ``metadata``, when given, are stored with the
        stream (``metrics/<name>/metadata.json`` locally). Raises InvalidNameError.
        """
        if name is None:
            name = UNNAMED
        stream = self._streams.get(name)
        if stream is None:
            self._session.require_running("metrics")
            validate_name(name, "metric name")
            kind = SyncMetricStream if self._session.synchronous else MetricStream
            stream = self._streams[name] = kind(self, name, self._session.channel("metrics", name))
        if description is not None or tags is not None or metadata is not None:
            if description is not None:
                stream.description = check_text(str(description), "description")
            if tags is not None:
                stream.tags = [check_text(str(tag), "tags") for tag in tags]
            if metadata is not None:
                stream.metadata = normalize(dict(metadata), "metadata")
            described = StreamDescription(stream.description, tuple(stream.tags), stream.metadata)
            self._session.control("describe_stream", name, described)
        return stream

    def list(self) -> list[MetricStats]:
        """Every stream of this experiment with ``totalDataPoints``, in name order."""
        session = self._session
        session.require_running("metrics")
        session.flush()
        return session.reader.list_metrics(session.prefix)

    list_all = list

    def log(self, _flush: bool = False, **fields: Any) -> Metrics:
        """One point of the unnamed stream (``exp.metrics(None)``) made of the plain
        fields; and for each field whose value is a dict, ``k={...}``, one point of
        stream ``k`` made of the plain fields and the dict's fields (the dict's win).
        ``_ts`` (resolved once) is the time of all of them; ``_flush=True`` writes them
        now. Returns ``exp.metrics`` (calls chain). InvalidValueError without fields."""
        ts = fields.pop("_ts", None)
        ts = now() if ts is None else resolve_ts(ts, "metrics.log")
        plain: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in fields.items():
            if isinstance(value, dict):
                nested[key] = value
            else:
                plain[key] = value
        if not plain and not nested:
            raise InvalidValueError("metrics.log() needs at least one field")
        for name, values in nested.items():  # names checked before anything is logged
            validate_name(name, "metric name")
            if not values and not plain:
                raise InvalidValueError(f"metrics.log(): {name}={{}} gives stream {name!r} no field")
        if plain:
            self(None).log(**plain, _ts=ts)
        for name, values in nested.items():
            self(name).log(**{**plain, **values, "_ts": ts})
        if _flush:
            self.flush()
        return self

    def flush(self) -> Metrics:
        """Write all queued metric points now."""
        self._session.flush()
        return self

    def _attach(self) -> None:
        """A new run started: the streams kept from the last one log into it."""
        for name, stream in self._streams.items():
            stream._attach(self._session.channel("metrics", name))

    def _detach(self) -> None:
        """The run ended: its streams stop taking points (until a new run starts), and
        stay readable."""
        for stream in self._streams.values():
            stream._queue = None
