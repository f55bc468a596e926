"""Track reads of the folder store whose cost follows the page asked for.

``tracks/<topic>/data.jsonl`` is in append order; readers see its entries sorted by
``timestamp`` (lines of one time in append order) and merged per timestamp. A
:class:`~ml_dash.stores.line_index.LineIndex` with one list (every line: offset, time,
running max) turns a time window into a bisection while the topic's times never
decreased (the SDK's own appends), and into a bisection plus a filter of what it leaves
when they did. A page (``limit`` entries after the timestamp ``after``) reads only its
own lines. The index's summary (entry count after merging, first and last time, every
field name) answers ``list_tracks`` and the topic's ``metadata.json`` without reading the
data: it is kept up to date with the lines indexed, counting distinct times as they come
(a recount only after an append that went back in time).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from typing import Any

import msgspec

from ..records import merge_track_entries
from . import codec
from .jsonl import LineReader, decode_block, open_lines
from .line_index import Found, LineIndex, ListView, Snapshot, StaleIndexError, counters, read_lines
from .lines import lenient_decode, warn_damaged

_HIDDEN = frozenset({codec.TRACK_BATCH_KEY, codec.TRACK_NONFINITE_KEY})
_decode_lines = msgspec.json.Decoder().decode_lines
_decode = msgspec.json.decode
_CHUNK = 1 << 16
_RECOUNT_AFTER = 256  # records to look through for one out-of-order time before counting all again


def entry_time(line: Any) -> float | None:
    """The time of a stored track line, None when the line is damaged (not an object, or
    without a ``timestamp`` that is a finite number)."""
    if not isinstance(line, dict):
        return None
    ts = line.get("timestamp")
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return None
    try:
        ts = float(ts)
    except OverflowError:
        return None
    return ts if math.isfinite(ts) else None


class TrackKind:
    """One list of every line; the summary holds the topic's columns, distinct times and
    span. Damaged lines are left out, with a warning when they are indexed."""

    lists = ("entries",)

    def __init__(self, path: str) -> None:
        self.path = path

    def empty_summary(self) -> dict[str, Any]:
        return {"columns": [], "distinct": 0, "counted": 0, "first": None, "last": None}

    def scan(self, block: bytes, starts: list[int], summary: dict[str, Any]) -> list[Found]:
        try:
            lines: list[Any] = _decode_lines(block)
        except msgspec.DecodeError:
            lines = []
        if len(lines) != len(starts):  # a damaged or blank line: look at each
            lines = [_decode_one(block, start) for start in starts]
        columns = set(summary["columns"])
        keys = None
        found = Found([], [])
        isfinite = math.isfinite
        for start, line in zip(starts, lines, strict=True):
            ts = line.get("timestamp") if type(line) is dict else None
            if type(ts) is not float or not isfinite(ts):
                ts = entry_time(line)
                if ts is None:
                    continue
            if line.keys() != keys:
                keys = line.keys()
                columns.update(keys)
            found.starts.append(start)
            found.times.append(ts)
        damaged = len(starts) - len(found.starts)
        if damaged:
            warn_damaged(self.path, damaged)
        if found.times:
            first, last = min(found.times), max(found.times)
            if summary["first"] is not None:
                first, last = min(first, summary["first"]), max(last, summary["last"])
            summary.update(columns=sorted(columns - _HIDDEN), first=first, last=last, pending=True)
        return [found]

    def finish(self, summary: dict[str, Any], lists: dict[str, ListView]) -> None:
        """Count the distinct times of the records added since the last count: a record
        above every earlier time is new; one below is looked for among the earlier records
        that can hold its time (running max within [time, time + lag]); when that range is
        wide (times all over the place), all times are counted again."""
        view = lists["entries"]
        ts, top, lag = view.ts, view.top, view.lag
        distinct = summary["distinct"]
        for k in range(summary["counted"], view.count):
            t = ts[k]
            if k == 0 or t > top[k - 1]:
                distinct += 1
            elif t < top[k - 1]:
                lo = bisect_left(top, t, 0, k)
                hi = bisect_right(top, math.nextafter(t + lag, math.inf), lo, k)
                if hi - lo > _RECOUNT_AFTER:
                    distinct = _distinct(view)
                    break
                distinct += all(ts[j] != t for j in range(lo, hi))
        summary.update(distinct=distinct, counted=view.count)
        summary.pop("pending", None)


def _distinct(view: ListView) -> int:
    """How many distinct times the list holds (sorting a copy of them: numpy, 16 bytes a record)."""
    import numpy  # only here: after appends that went far back in time

    return int(numpy.unique(numpy.asarray(view.ts)).size) if view.count else 0


def _decode_one(block: bytes, start: int) -> Any:
    line = block[start : block.find(b"\n", start)]
    try:
        return _decode(line)
    except msgspec.DecodeError:
        return lenient_decode(line)  # the ML-Dash SDK's NaN tokens, else None


def _restored(line: dict[str, Any]) -> dict[str, Any]:
    if codec.TRACK_BATCH_KEY in line or codec.TRACK_NONFINITE_KEY in line:
        codec.restore_track(line)
    return line


def summary_of(snapshot: Snapshot, with_columns: bool = False) -> dict[str, Any]:
    """``totalEntries`` (after merging), ``firstTimestamp``, ``lastTimestamp`` (and ``columns``)."""
    summary = snapshot.summary
    out: dict[str, Any] = {}
    if with_columns:
        out["columns"] = list(summary["columns"])
    out.update(totalEntries=summary["distinct"], firstTimestamp=summary["first"], lastTimestamp=summary["last"])
    return out


def index_of(path: str) -> LineIndex:
    return LineIndex(path, TrackKind(path))


# -- a page through the index ----------------------------------------------------------------


def read_page(
    reader: LineReader,
    snapshot: Snapshot,
    start: float | None,
    end: float | None,
    columns: list[str] | None,
    limit: int | None,
    after: float | None,
) -> list[dict[str, Any]]:
    """Merged entries with ``start <= timestamp <= end`` and ``timestamp > after``, the first
    ``limit`` of them (all without a limit). Raises StaleIndexError if the index is stale."""
    view = snapshot.lists["entries"]
    if view.count == 0 or limit == 0:
        return []
    if view.lag == 0.0:
        chosen = _sorted_range(view, start, end, limit, after)
    else:
        chosen = _unsorted_range(view, start, end, limit, after)
    if not chosen:
        return []
    order = sorted(range(len(chosen)), key=lambda k: view.pos[chosen[k]])
    positions = [view.pos[chosen[k]] for k in order]
    raw = read_lines(reader.fd, positions, snapshot.end)
    decoded = decode_block(b"".join(line + b"\n" for line in raw))
    counters.lines_decoded += len(decoded)
    if len(decoded) != len(chosen):
        raise StaleIndexError("a track line read through the index cannot be decoded")
    lines: list[dict[str, Any]] = [{}] * len(chosen)
    for k, line in zip(order, decoded, strict=True):
        if entry_time(line) != view.ts[chosen[k]]:
            raise StaleIndexError("a track line read through the index has another time than its record")
        lines[k] = _restored(line)
    return merge_track_entries(lines, columns)


def _sorted_range(
    view: ListView, start: float | None, end: float | None, limit: int | None, after: float | None
) -> list[int]:
    """Record numbers of the page when times never decrease: one contiguous range."""
    ts = view.ts
    a = bisect_left(ts, start) if start is not None else 0
    if after is not None:
        a = max(a, bisect_right(ts, after))
    b = bisect_right(ts, end) if end is not None else view.count
    if limit is not None:
        distinct, previous = 0, math.nan
        for i in range(a, b):
            if ts[i] != previous:
                distinct += 1
                if distinct > limit:
                    b = i
                    break
                previous = ts[i]
    return list(range(a, b))


def _unsorted_range(
    view: ListView, start: float | None, end: float | None, limit: int | None, after: float | None
) -> list[int]:
    """Record numbers of the page, in (time, append) order, when times went back: the
    running max bounds the records to look at; a limit stops the look once no later
    record can come before the page's last time."""
    ts, top, lag = view.ts, view.top, view.lag
    a = bisect_left(top, start) if start is not None else 0
    if after is not None:
        a = max(a, bisect_right(top, after))
    b = bisect_right(top, math.nextafter(end + lag, math.inf)) if end is not None else view.count
    lo = -math.inf if start is None else start
    hi = math.inf if end is None else end
    floor = -math.inf if after is None else after
    found: list[tuple[float, int]] = []
    times: set[float] = set()
    last = math.inf  # with a limit: the page's last time, as far as seen
    i = a
    while i < b:
        j = min(b, i + _CHUNK)
        for k in range(i, j):
            t = ts[k]
            if lo <= t <= hi and t > floor and t <= last:
                found.append((t, k))
                times.add(t)
        i = j
        if limit is not None and len(times) >= limit:
            last = heapq.nsmallest(limit, times)[-1]
            times = {t for t in times if t <= last}
            found = [item for item in found if item[0] <= last]
            if top[j - 1] - lag > last:  # every later record has a time above ``last``
                break
    found.sort()
    return [k for _t, k in found]


# -- without the index -----------------------------------------------------------------------------


def all_lines(reader: LineReader, path: str) -> list[dict[str, Any]]:
    """Every usable line of the topic in time order, lines of one time in append order
    (non-finite floats restored, batch ids dropped): the whole file, for a store that
    cannot keep an index here."""
    out: list[dict[str, Any]] = []
    for block in reader.iter_blocks():
        lines = decode_block(block, path)
        counters.data_bytes += len(block)
        counters.lines_decoded += len(lines)
        out.extend(_restored(line) for line in lines if entry_time(line) is not None)
    out.sort(key=lambda e: e["timestamp"])  # stable: appends keep their order
    return out


def page_of_lines(
    lines: list[dict[str, Any]],
    start: float | None,
    end: float | None,
    columns: list[str] | None,
    limit: int | None,
    after: float | None,
) -> list[dict[str, Any]]:
    """``read_page`` over lines already in time order."""
    lo = -math.inf if start is None else start
    hi = math.inf if end is None else end
    floor = -math.inf if after is None else after
    merged = merge_track_entries((e for e in lines if lo <= e["timestamp"] <= hi and e["timestamp"] > floor), columns)
    return merged if limit is None else merged[:limit]


def summary_of_lines(lines: list[dict[str, Any]], with_columns: bool = False) -> dict[str, Any]:
    """``summary_of`` computed from every line (no index)."""
    out: dict[str, Any] = {}
    if with_columns:
        out["columns"] = sorted({key for line in lines for key in line})
    entries = merge_track_entries(lines)
    out.update(
        totalEntries=len(entries),
        firstTimestamp=entries[0]["timestamp"] if entries else None,
        lastTimestamp=entries[-1]["timestamp"] if entries else None,
    )
    return out


# -- what LocalStore calls ---------------------------------------------------------------------------


def read(
    path: str,
    start: float | None,
    end: float | None,
    columns: list[str] | None,
    limit: int | None,
    after: float | None,
) -> list[dict[str, Any]]:
    """The page of the topic whose data file is ``path`` (see :func:`read_page`)."""
    reader = open_lines(path)
    if reader is None:
        return []
    with reader:
        index = index_of(path)
        for attempt in range(2):
            snapshot = index.snapshot(reader.fd, reader.end, rebuild=attempt > 0)
            if snapshot is None:
                break
            try:
                return read_page(reader, snapshot, start, end, columns, limit, after)
            except StaleIndexError:
                continue  # the index did not describe the data: build it anew, once
            finally:
                snapshot.close()
        return page_of_lines(all_lines(reader, path), start, end, columns, limit, after)


def summary(path: str, with_columns: bool = False) -> dict[str, Any]:
    """Entry count (after merging), first and last time (and every field name) of the
    topic whose data file is ``path``, from its index (the data only when none can be kept)."""
    reader = open_lines(path)
    if reader is None:
        return summary_of_lines([], with_columns)
    with reader:
        snapshot = index_of(path).snapshot(reader.fd, reader.end)
        if snapshot is None:
            return summary_of_lines(all_lines(reader, path), with_columns)
        try:
            return summary_of(snapshot, with_columns)
        finally:
            snapshot.close()
