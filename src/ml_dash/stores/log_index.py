"""Log queries of the folder store whose cost follows the page asked for.

``logs/logs.jsonl`` is in sequence order. Unfiltered pages, oldest or newest first, are
a bisection by ``sequenceNumber`` (as metric pages are by ``index``). Filtered pages go
through a :class:`~ml_dash.stores.line_index.LineIndex` with one list per level (and
``other`` for lines whose level is none of them): a level filter picks lists, a time
filter bisects each, and the page is the ranks ``offset`` .. ``offset + limit - 1`` of
their union, found by bisection too. Only the lines of the page are read and decoded;
``total`` is counted from the index. A text ``search`` must read the message of every
line the other filters leave (only those lines, only their message decoded).

Lines that are not JSON objects are skipped (as everywhere in the store). Without a
usable index (a folder this process may not write) and for levels outside the five,
queries scan the file as before: correct, not cheap.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from itertools import islice
from typing import Any

import msgspec

from ..records import LOG_LEVELS, LogPage, LogQuery
from . import codec
from .jsonl import LineReader, decode_block
from .line_index import (
    Found,
    LineIndex,
    ListView,
    Snapshot,
    StaleIndexError,
    counters,
    iter_blocks,
    iter_union,
    line_starts,
    read_lines,
    slice_of_union,
    time_window,
)
from .lines import decode_with_tokens, warn_damaged

LISTS = (*LOG_LEVELS, "other")
_LIST_OF = {level: number for number, level in enumerate(LOG_LEVELS)}
_OTHER = len(LOG_LEVELS)
_SEARCH_BATCH = 4096


class _LogKey(msgspec.Struct, rename={"sequence": "sequenceNumber"}):
    """What the index needs of a line, whatever its types (for a block with a damaged line)."""

    sequence: Any = None
    level: Any = None
    ts: Any = None
    timestamp: Any = None


class _WrittenKey(msgspec.Struct, rename={"sequence": "sequenceNumber"}):
    """The same of a line as ML-Dash writes it (checked by msgspec, in C)."""

    sequence: int
    level: str = ""
    ts: float | None = None
    timestamp: str | None = None


class _LogMessage(msgspec.Struct):
    message: Any = ""


_keys = msgspec.json.Decoder(_LogKey)
_written_keys = msgspec.json.Decoder(_WrittenKey)
_messages = msgspec.json.Decoder(_LogMessage)


def line_time(ts: Any, timestamp: Any) -> float:
    """A log line's time: ``ts``, else its ISO ``timestamp``, else 0 (as queries always read it)."""
    if isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts):
        return float(ts)
    parsed = codec.parse_iso(timestamp)
    return parsed if parsed is not None and math.isfinite(parsed) else 0.0


def _is_sequence(value: Any) -> bool:
    return type(value) is int and value >= 0




class LogKind:
    """Index lists by level; no summary. Lines without a sequence number are damaged:
    left out, with a warning when they are indexed (readers skip them everywhere)."""

    lists = LISTS

    def __init__(self, path: str) -> None:
        self.path = path

    def empty_summary(self) -> dict[str, Any]:
        return {}

    def scan(self, block: bytes, starts: list[int], summary: dict[str, Any]) -> list[Found]:
        found = [Found([], []) for _ in LISTS]
        try:
            keys: list[Any] = _written_keys.decode_lines(block)
        except msgspec.DecodeError:
            keys = []
        if len(keys) == len(starts):  # every line as ML-Dash writes it: the fast way
            isfinite, other = math.isfinite, found[_OTHER]
            for start, key in zip(starts, keys, strict=True):
                ts = key.ts
                if ts is None or not isfinite(ts):
                    ts = line_time(None, key.timestamp)
                place = found[_LIST_OF[key.level]] if key.level in _LIST_OF else other
                place.starts.append(start)
                place.times.append(ts)
            damaged = sum(1 for key in keys if key.sequence < 0)
            if damaged:  # rare: do the block the slow way
                keys = []
        if len(keys) != len(starts):  # a damaged or blank line: look at each
            found = [Found([], []) for _ in LISTS]
            damaged = 0
            for start in starts:
                key = _decode_one(block, start)
                if key is None or not _is_sequence(key.sequence):
                    damaged += 1
                    continue
                level = key.level
                place = found[_LIST_OF.get(level, _OTHER) if isinstance(level, str) else _OTHER]
                place.starts.append(start)
                place.times.append(line_time(key.ts, key.timestamp))
            if damaged:
                warn_damaged(self.path, damaged)
        return found

    def finish(self, summary: dict[str, Any], lists: dict[str, ListView]) -> None:
        summary.pop("pending", None)


def _decode_one(block: bytes, start: int) -> _LogKey | None:
    stop = block.find(b"\n", start)
    try:
        return decode_with_tokens(_keys, block[start:stop])  # type: ignore[no-any-return]
    except msgspec.DecodeError:
        return None


def log_out(line: dict[str, Any]) -> dict[str, Any]:
    """A stored log line as readers get it: batch id dropped, non-finite floats back, ``ts`` set."""
    codec.restore_log(line)
    if "metadata" not in line:  # the ML-Dash SDK leaves out an empty one
        line["metadata"] = {}
    if "ts" not in line:
        line["ts"] = codec.parse_iso(line.get("timestamp"))
    return line


def _page(logs: list[dict[str, Any]], total: int, offset: int, limit: int) -> LogPage:
    return LogPage(logs=logs, total=total, offset=offset, limit=limit, hasMore=offset + len(logs) < total)


# -- unfiltered: by sequence number ------------------------------------------------------------


def by_sequence(reader: LineReader, path: str, offset: int, limit: int, descending: bool) -> LogPage:
    """Every line, paged: a bisection by ``sequenceNumber`` (gapless from 0 in the file;
    damaged lines are skipped and do not take a place in the page)."""
    total = reader.next_counter("sequenceNumber")
    if descending:
        stop = total - offset
        first = max(0, stop - limit)
    else:
        first, stop = offset, min(total, offset + limit)
    if stop <= first:
        return _page([], total, offset, limit)
    start = reader.bisect("sequenceNumber", first) if first else 0
    logs: list[dict[str, Any]] = []
    while len(logs) < stop - first:
        block = reader.read_block(start, stop - first - len(logs))
        if not block:
            break
        start += len(block)
        counters.data_bytes += len(block)
        lines = decode_block(block, path)
        counters.lines_decoded += len(lines)
        logs.extend(log_out(line) for line in lines
                    if isinstance(line, dict) and _is_sequence(line.get("sequenceNumber"))
                    and first <= line["sequenceNumber"] < stop)
    if descending:
        logs.reverse()
    return _page(logs, total, offset, limit)


# -- filtered: through the index -----------------------------------------------------------------


class _Filter:
    """A query's filters, checked again on every line read (the index could be stale)."""

    def __init__(self, query: LogQuery) -> None:
        levels = query.get("levels")
        self.levels = set(levels) if levels else None
        self.start: float | None = query.get("start_time")
        self.end: float | None = query.get("end_time")
        self.search = (query.get("search") or "").lower()

    @property
    def indexable(self) -> bool:
        return self.levels is None or self.levels <= set(LOG_LEVELS)

    def lists(self) -> list[str]:
        return list(LISTS) if self.levels is None else [level for level in LOG_LEVELS if level in self.levels]

    def matches(self, line: Any) -> bool:
        if not isinstance(line, dict) or not _is_sequence(line.get("sequenceNumber")):
            return False
        if self.levels is not None and line.get("level") not in self.levels:
            return False
        ts = line_time(line.get("ts"), line.get("timestamp"))
        if (self.start is not None and ts < self.start) or (self.end is not None and ts > self.end):
            return False
        return not self.search or self.search in str(line.get("message", "")).lower()


def query(reader: LineReader, path: str, query: LogQuery, offset: int, limit: int) -> LogPage:
    """The page of ``query`` (validated ``offset`` and ``limit``) from the log file open in ``reader``."""
    descending = bool(query.get("descending", False))
    where = _Filter(query)
    if where.levels is None and where.start is None and where.end is None and not where.search:
        return by_sequence(reader, path, offset, limit, descending)
    if not where.indexable:
        return scan(reader, path, where, offset, limit, descending)
    index = LineIndex(path, LogKind(path))
    for attempt in range(2):
        snapshot = index.snapshot(reader.fd, reader.end, rebuild=attempt > 0)
        if snapshot is None:
            return scan(reader, path, where, offset, limit, descending)
        try:
            return _indexed(reader, path, snapshot, where, offset, limit, descending)
        except StaleIndexError:
            continue  # the index did not describe the data: build it anew, once
        finally:
            snapshot.close()
    return scan(reader, path, where, offset, limit, descending)


def _indexed(
    reader: LineReader, path: str, snapshot: Snapshot, where: _Filter, offset: int, limit: int, descending: bool
) -> LogPage:
    parts: list[Sequence[int]] = [
        time_window(snapshot.lists[name], where.start, where.end) for name in where.lists()
    ]
    if where.search and where.levels is None and where.start is None and where.end is None:
        parts = [_searched_file(reader.fd, snapshot.end, where.search)]
    elif where.search:
        parts = [_searched(reader.fd, snapshot.end, parts, where.search)]
    total = sum(len(part) for part in parts)
    first = max(0, total - offset - limit) if descending else offset
    count = total - offset - first if descending else limit
    positions = slice_of_union(parts, first, count)
    lines = decode_block(b"".join(line + b"\n" for line in read_lines(reader.fd, positions, snapshot.end)), path)
    counters.lines_decoded += len(lines)
    if len(lines) != len(positions) or not all(where.matches(line) for line in lines):
        raise StaleIndexError("a line read through the log index does not match the query")
    logs = [log_out(line) for line in lines]
    if descending:
        logs.reverse()
    return _page(logs, total, offset, limit)


def _searched(fd: int, end: int, parts: list[Sequence[int]], needle: str) -> array[int]:
    """The offsets (ascending) of the lines among ``parts`` whose message holds ``needle``
    (lower case), reading those lines in batches and decoding only their message."""
    found: array[int] = array("Q")
    union = iter_union(parts)
    while True:
        batch = list(islice(union, _SEARCH_BATCH))
        if not batch:
            return found
        lines = read_lines(fd, batch, end)
        counters.lines_decoded += len(lines)
        for position, line in zip(batch, lines, strict=True):
            try:
                message = decode_with_tokens(_messages, line).message
            except msgspec.DecodeError:
                continue
            if needle in str(message).lower():
                found.append(position)


def _searched_file(fd: int, end: int, needle: str) -> array[int]:
    """``_searched`` over every line: the file read in order, block by block."""
    found: array[int] = array("Q")
    for offset, block in iter_blocks(fd, end):
        starts = line_starts(block)
        try:
            messages: list[_LogMessage | None] = list(_messages.decode_lines(block))
        except msgspec.DecodeError:
            messages = []
        if len(messages) != len(starts):  # a damaged or blank line: look at each
            messages = [_message_of(block, start) for start in starts]
        counters.lines_decoded += len(starts)
        for start, message in zip(starts, messages, strict=True):
            if message is not None and needle in str(message.message).lower():
                found.append(offset + start)
    return found


def _message_of(block: bytes, start: int) -> _LogMessage | None:
    try:
        return decode_with_tokens(_messages, block[start : block.find(b"\n", start)])  # type: ignore[no-any-return]
    except msgspec.DecodeError:
        return None


# -- without the index ---------------------------------------------------------------------------


def scan(reader: LineReader, path: str, where: _Filter, offset: int, limit: int, descending: bool) -> LogPage:
    """The page by reading the whole file (no usable index, or levels outside the five).
    Keeps only the sequence numbers of matches, then reads the page's lines again."""
    matches: list[dict[str, Any]] = []
    total = 0
    window = (offset, offset + limit)
    tail: list[dict[str, Any]] = []
    for block in reader.iter_blocks():
        lines = decode_block(block, path)
        counters.data_bytes += len(block)
        counters.lines_decoded += len(lines)
        for line in lines:
            if not where.matches(line):
                continue
            if descending:
                tail.append(line)
                if len(tail) > 2 * (offset + limit) + 1024:
                    del tail[: len(tail) - (offset + limit)]
            elif window[0] <= total < window[1]:
                matches.append(line)
            total += 1
    if descending:
        tail = tail[max(0, len(tail) - offset - limit) : max(0, len(tail) - offset)]
        matches = tail[::-1]
    return _page([log_out(line) for line in matches], total, offset, limit)
