"""Derived indexes of JSON-lines data files: where each line starts, its time, and which
list it belongs to (a log level); kept beside the data, extended on read.

Layout, in the folder ``.ml-dash/`` beside the data file (a name no metric, topic or
folder segment may take: ``names.RESERVED``)::

    index.json          the state: which bytes of the data file are indexed (and a
                        fingerprint of them), per list its record count, lag and last record
    index.lock          flock target: one thread or process extends the index at a time
    <list>.<gen>.idx    one 24-byte record per line of that list, in file order: the line's
                        offset (u64), its time (f64) and the running maximum of the times (f64)

The data file is the only source of truth. Appends never touch the index: the first read
after them indexes the new complete lines (from ``indexed`` to the last newline) and
commits the state by rename, after the records. A state that does not match the data
(another file under the name, a file cut shorter or changed at the indexed end, lists
shorter than counted or ending in another record) makes the next read rebuild the index
under a new generation (new file names: readers that mapped the old files keep them), and
every line a read returns is checked against its record (``StaleIndexError``), so a crash at any
point, or a half-written index, costs a rebuild, never a wrong answer.

Why records of (offset, time, running max): in file order, a list's offsets increase, so
pages by position are a bisection; when its times never decrease (``lag`` 0, the usual
case: one process logging) a time window is a bisection too. When they do decrease, no
record whose running max is below the window's start, or above its end plus ``lag`` (the
largest drop ever seen), can be in the window: the window is still a bisection of the
running max, then an exact filter of that range. A 1M-line log costs 24 MB of index.
"""

from __future__ import annotations

import array
import contextvars
import math
import mmap
import os
import re
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from heapq import merge
from itertools import accumulate, islice
from operator import sub
from typing import Any, NamedTuple, Protocol

import msgspec

from ..errors import StorageError
from ..fileio import atomic_write_bytes
from .jsonl import last_newline_end, lock_file

VERSION = 1
RECORD = 24  # offset u64, time f64, running max f64
# False in a read-only reader (ml_dash.open): indexes are neither made nor extended, reads
# scan the data instead (slower, just as right).
KEEP_INDEXES: contextvars.ContextVar[bool] = contextvars.ContextVar("ml_dash_keep_indexes", default=True)
FOLDER = ".ml-dash"
LOCK_WAIT = 30.0  # a first build of a 1M-line file holds the lock for about 1-3 s
_BLOCK = 1 << 20  # 1 MiB of lines at a time: a build holds about 10 MB of decoded lines at most
_TAIL = 32
# read_lines reads lines less than _GAP apart in one pread (the bytes between them are
# cheaper than another system call), guessing _LINE_GUESS bytes for the last one.
_GAP = 8192
_LINE_GUESS = 2048
_NEWLINE = re.compile(b"\n")


class StaleIndexError(Exception):
    """A line read through the index is not what its record says: the index is stale."""


@dataclass
class ReadCounters:
    """Bytes of data files read and lines decoded by index-backed reads, and lines indexed
    (process-wide, for tests and benchmarks: what a read cost, without a clock)."""

    data_bytes: int = 0
    lines_decoded: int = 0
    lines_indexed: int = 0

    def reset(self) -> None:
        self.data_bytes = self.lines_decoded = self.lines_indexed = 0


counters = ReadCounters()


class IndexKind(Protocol):
    """What one kind of data file puts into its index."""

    @property
    def lists(self) -> tuple[str, ...]:
        """The names of the lists, in the numbering ``scan`` uses."""
        ...

    def empty_summary(self) -> dict[str, Any]:
        """The summary of a file without lines."""
        ...

    def scan(self, block: bytes, starts: list[int], summary: dict[str, Any]) -> list[Found]:
        """Per list (in the order of ``lists``): the starts in ``block`` and the times of
        its lines among the complete lines of ``block`` (starting at ``starts``), in file
        order; damaged lines are left out. Updates ``summary`` with them."""
        ...

    def finish(self, summary: dict[str, Any], lists: dict[str, ListView]) -> None:
        """Complete ``summary`` from the mapped lists (under the index lock, after an extension)."""
        ...


@dataclass
class ListView:
    """The records of one list, mapped read-only: ``pos``, ``ts`` and ``top`` (running max)
    are sequences of ``count`` numbers (bisectable at C speed)."""

    count: int
    lag: float
    pos: Sequence[int]
    ts: Sequence[float]
    top: Sequence[float]
    _mapped: mmap.mmap | None = None
    _views: list[memoryview[Any]] = field(default_factory=list)

    def release(self) -> None:
        for view in self._views:
            view.release()
        if self._mapped is not None:
            try:
                self._mapped.close()
            except BufferError:  # a slice is still referenced somewhere: the collector closes it
                pass


@dataclass
class Snapshot:
    """The index as of one read: its lists and summary, covering the data up to ``end``."""

    end: int
    lists: dict[str, ListView]
    summary: dict[str, Any]

    def close(self) -> None:
        for view in self.lists.values():
            view.release()


def _empty_view() -> ListView:
    return ListView(0, 0.0, array.array("Q"), array.array("d"), array.array("d"))


def _map_list(path: str, count: int, lag: float) -> ListView:
    if count == 0:
        return _empty_view()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        mapped = mmap.mmap(fd, count * RECORD, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    whole = memoryview(mapped)
    words, floats = whole.cast("Q"), whole.cast("d")
    pos, ts, top = words[0::3], floats[1::3], floats[2::3]
    return ListView(count, lag, pos, ts, top, mapped, [pos, ts, top, words, floats, whole])


class Found(NamedTuple):
    """Lines of one list found in a block: where they start in it, and their times."""

    starts: list[int]
    times: list[float]


class _Pending:
    """Records of one list not yet written, and its running max and lag."""

    def __init__(self, top: float, lag: float) -> None:
        self.pos = array.array("Q")
        self.ts = array.array("d")
        self.top = array.array("d")
        self.last_top = top
        self.lag = lag

    def extend(self, offset: int, found: Found) -> None:
        """Add the lines ``found`` in the block at ``offset`` (running max and drop in C loops)."""
        if not found.times:
            return
        tops = list(accumulate(found.times, max, initial=self.last_top))[1:]
        drop = max(map(sub, tops, found.times))
        if drop > self.lag:
            self.lag = math.nextafter(drop, math.inf)  # never below the true drop
        self.last_top = tops[-1]
        self.pos.extend(map(offset.__add__, found.starts))
        self.ts.extend(found.times)
        self.top.extend(tops)

    def take(self) -> bytearray:
        """The pending records as bytes (then none are pending)."""
        out = bytearray(RECORD * len(self.pos))
        whole = memoryview(out)
        with whole.cast("Q") as words, whole.cast("d") as floats:
            words[0::3] = memoryview(self.pos)
            floats[1::3] = memoryview(self.ts)
            floats[2::3] = memoryview(self.top)
        whole.release()
        self.pos, self.ts, self.top = array.array("Q"), array.array("d"), array.array("d")
        return out


def _pwrite_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class LineIndex:
    """The index of the data file ``data_path`` for one ``kind``, kept in
    ``<folder of data_path>/.ml-dash/``."""

    def __init__(self, data_path: str, kind: IndexKind) -> None:
        self.data_path = data_path
        self.kind = kind
        self.folder = os.path.join(os.path.dirname(data_path), FOLDER)
        self.state_path = os.path.join(self.folder, "index.json")

    def _list_path(self, name: str, generation: int) -> str:
        return os.path.join(self.folder, f"{name}.{generation}.idx")

    @contextmanager
    def _locked(self) -> Iterator[bool]:
        """Hold ``index.lock``; yields False (holding nothing) when the folder cannot be
        written here (a read-only copy): callers then read without the index."""
        if not KEEP_INDEXES.get():
            yield False
            return
        try:
            os.makedirs(self.folder, exist_ok=True)
            fd = os.open(os.path.join(self.folder, "index.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            yield False
            return
        try:
            lock_file(fd, self.folder, timeout=LOCK_WAIT)
            yield True
        finally:
            os.close(fd)

    def snapshot(self, data_fd: int, end: int, rebuild: bool = False) -> Snapshot | None:
        """Bring the index up to date with the complete lines of the open data file
        ``data_fd`` (up to ``end`` at least, the offset after its last newline when the
        caller looked; built anew with ``rebuild``: it did not match the data) and map it.

        None when the index cannot be kept or used now (a folder this process may not
        write, a full disk, another process holding the lock for ``LOCK_WAIT`` seconds):
        the caller then reads the data without it, slower but just as right."""
        try:
            with self._locked() as usable:
                if not usable:
                    return None
                state = self._current_state(data_fd, end, rebuild)
                generation = state["generation"]
                return Snapshot(
                    state["indexed"],
                    {
                        name: _map_list(self._list_path(name, generation), info["count"], info["lag"])
                        for name, info in state["lists"].items()
                    },
                    state["summary"],
                )
        except (OSError, StorageError):
            return None

    # -- under the lock ------------------------------------------------------------------

    def _current_state(self, data_fd: int, end: int, rebuild: bool) -> dict[str, Any]:
        stat = os.fstat(data_fd)
        state = self._load_state()
        if state is not None and isinstance(state.get("indexed"), int) and state["indexed"] > end:
            end = last_newline_end(data_fd, stat.st_size)  # another reader indexed lines appended since
        if rebuild or state is None or not self._matches(state, data_fd, stat, end):
            state = self._fresh_state(stat)
        if state["indexed"] < end:
            self._extend(state, data_fd, end)
        elif state["summary"].get("pending"):
            self._commit(state)
        return state

    def _load_state(self) -> dict[str, Any] | None:
        try:
            with open(self.state_path, "rb") as fh:
                state = msgspec.json.decode(fh.read())
        except FileNotFoundError:
            return None
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
        return state if isinstance(state, dict) else None

    def _fresh_state(self, stat: os.stat_result) -> dict[str, Any]:
        """An empty state under a generation no file in the folder has used (so that no
        reader's mapped file is ever cut short), with empty list files."""
        used = [0]
        for name in os.listdir(self.folder):
            parts = name.split(".")
            if len(parts) == 3 and parts[2] == "idx" and parts[1].isdigit():
                used.append(int(parts[1]))
        generation = max(used) + 1
        for name in self.kind.lists:
            with open(self._list_path(name, generation), "wb"):
                pass
        return {
            "version": VERSION,
            "byteorder": sys.byteorder,
            "generation": generation,
            "dev": stat.st_dev,
            "ino": stat.st_ino,
            "indexed": 0,
            "tail": "",
            "lines": 0,
            "skipped": 0,
            "lists": {name: {"count": 0, "lag": 0.0, "last": ""} for name in self.kind.lists},
            "summary": self.kind.empty_summary(),
        }

    def _matches(self, state: dict[str, Any], data_fd: int, stat: os.stat_result, end: int) -> bool:
        """The state describes this data file (same file, same bytes at the indexed end)
        and its list files hold what it counts."""
        try:
            if (state["version"], state["byteorder"], state["dev"], state["ino"]) != (
                VERSION, sys.byteorder, stat.st_dev, stat.st_ino,
            ):
                return False
            indexed = state["indexed"]
            if not isinstance(indexed, int) or not 0 <= indexed <= end:
                return False
            size = min(_TAIL, indexed)
            if os.pread(data_fd, size, indexed - size).hex() != state["tail"]:
                return False
            if set(state["lists"]) != set(self.kind.lists) or not isinstance(state["summary"], dict):
                return False
            if not set(self.kind.empty_summary()) <= set(state["summary"]):
                return False
            for name, info in state["lists"].items():
                count = info["count"]
                if not isinstance(count, int) or not self._holds(state["generation"], name, count, info["last"]):
                    return False
        except (KeyError, TypeError, ValueError, OSError):
            return False
        return True

    def _holds(self, generation: int, name: str, count: int, last: str) -> bool:
        """The list file holds ``count`` records at least, the last of them ``last``."""
        fd = os.open(self._list_path(name, generation), os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size < count * RECORD:
                return False
            return not count or os.pread(fd, RECORD, (count - 1) * RECORD).hex() == last
        finally:
            os.close(fd)

    def _extend(self, state: dict[str, Any], data_fd: int, end: int) -> None:
        """Index the lines from ``state["indexed"]`` to ``end``, block by block (the
        records of each block are written before the next is read: memory stays bounded),
        then commit the state."""
        names = self.kind.lists
        lists = state["lists"]
        pending = [_Pending(lists[name].get("top", -math.inf), lists[name]["lag"]) for name in names]
        fds = [
            os.open(self._list_path(name, state["generation"]), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            for name in names
        ]
        try:
            for offset, block in iter_blocks(data_fd, end, state["indexed"]):
                starts = line_starts(block)
                used = 0
                for records, found in zip(pending, self.kind.scan(block, starts, state["summary"]), strict=True):
                    records.extend(offset, found)
                    used += len(found.times)
                state["lines"] += len(starts)
                state["skipped"] += len(starts) - used
                counters.lines_indexed += len(starts)
                for fd, name, records in zip(fds, names, pending, strict=True):
                    if records.pos:
                        info = lists[name]
                        added = len(records.pos)
                        data = records.take()
                        _pwrite_all(fd, data, info["count"] * RECORD)
                        info.update(count=info["count"] + added, lag=records.lag, top=records.last_top,
                                    last=data[-RECORD:].hex())
        finally:
            for fd in fds:
                os.close(fd)
        size = min(_TAIL, end)
        state.update(indexed=end, tail=os.pread(data_fd, size, end - size).hex())
        self._commit(state)

    def _commit(self, state: dict[str, Any]) -> None:
        """Let the kind complete the summary, then write the state (after the records)."""
        if state["summary"].get("pending"):
            views = {
                name: _map_list(self._list_path(name, state["generation"]), info["count"], info["lag"])
                for name, info in state["lists"].items()
            }
            try:
                self.kind.finish(state["summary"], views)
            finally:
                for view in views.values():
                    view.release()
        atomic_write_bytes(self.state_path, msgspec.json.encode(state), durable=False)
        self._drop_old_generations(state["generation"])

    def _drop_old_generations(self, generation: int) -> None:
        suffix = f".{generation}.idx"
        for name in os.listdir(self.folder):
            if name.endswith(".idx") and not name.endswith(suffix):
                try:
                    os.unlink(os.path.join(self.folder, name))
                except OSError:
                    pass


def _read_block(fd: int, offset: int, end: int) -> bytes:
    """Complete lines from ``offset`` (at most about ``_BLOCK`` bytes, at least one line)."""
    size = min(_BLOCK, end - offset)
    while True:
        chunk = os.pread(fd, size, offset)
        cut = chunk.rfind(b"\n") + 1
        if cut:
            return chunk[:cut]
        if len(chunk) < size or offset + size >= end:
            raise StorageError(f"data file changed while it was indexed (no line end after offset {offset})")
        size = min(size * 2, end - offset)


def read_lines(fd: int, positions: Sequence[int], end: int) -> list[bytes]:
    """The lines (without their ``\\n``) that start at ``positions`` (ascending offsets of
    line starts before ``end``), read in as few ``pread`` calls as nearby lines allow.
    Raises StaleIndexError when an offset is not the start of a complete line."""
    out: list[bytes] = []
    i, n = 0, len(positions)
    while i < n:
        first = positions[i]
        j = i + 1
        while j < n and positions[j] - positions[j - 1] < _GAP and j - i < 4096:
            j += 1
        lo = first - 1 if first > 0 else 0
        hi = min(end, positions[j - 1] + _LINE_GUESS)
        buf = os.pread(fd, hi - lo, lo)
        while buf.find(b"\n", positions[j - 1] - lo) < 0 and lo + len(buf) < end:
            more = os.pread(fd, min(end - lo - len(buf), max(_LINE_GUESS, len(buf))), lo + len(buf))
            if not more:
                break
            buf += more
        counters.data_bytes += len(buf)
        if first > 0 and buf[:1] != b"\n":
            raise StaleIndexError(f"offset {first} is not the start of a line")
        for k in range(i, j):
            at = positions[k] - lo
            stop = buf.find(b"\n", at)
            if stop < 0 or (at > 0 and buf[at - 1] != 10):
                raise StaleIndexError(f"offset {positions[k]} is not the start of a complete line")
            out.append(buf[at:stop])
        i = j
    return out


def nth_of_union(parts: Sequence[Sequence[int]], rank: int) -> int:
    """The ``rank``-th smallest (from 0) of the union of disjoint ascending sequences."""
    live = [p for p in parts if len(p)]
    if len(live) == 1:
        return live[0][rank]
    lo, hi = min(p[0] for p in live), max(p[-1] for p in live)
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(bisect_right(p, mid) for p in live) > rank:
            hi = mid
        else:
            lo = mid + 1
    return lo


def slice_of_union(parts: Sequence[Sequence[int]], first: int, count: int) -> list[int]:
    """Elements ``first`` .. ``first + count - 1`` (by rank) of the union of disjoint
    ascending sequences, ascending; costs O(log) bisections plus ``count`` steps."""
    total = sum(len(p) for p in parts)
    count = min(count, total - first)
    if count <= 0:
        return []
    start = nth_of_union(parts, first)

    def tail(part: Sequence[int]) -> Iterator[int]:
        for k in range(bisect_left(part, start), len(part)):
            yield part[k]

    return list(islice(merge(*(tail(p) for p in parts if len(p))), count))


def line_starts(block: bytes) -> list[int]:
    """Offsets in ``block`` (complete lines) where its lines start."""
    return [0, *(m.end() for m in _NEWLINE.finditer(block, 0, len(block) - 1))]


def iter_blocks(fd: int, end: int, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, block of complete lines) from ``offset`` to ``end``, about 1 MiB at a time."""
    while offset < end:
        block = _read_block(fd, offset, end)
        counters.data_bytes += len(block)
        yield offset, block
        offset += len(block)


def iter_union(parts: Sequence[Sequence[int]]) -> Iterator[int]:
    """Every element of the union of disjoint ascending sequences, ascending."""
    live = [p for p in parts if len(p)]
    if len(live) == 1:
        return iter(live[0])
    return merge(*live)


def time_window(view: ListView, start: float | None, end: float | None) -> Sequence[int]:
    """The offsets of ``view``'s lines whose time is within [start, end] (None: open), ascending.

    A bisection when the list's times never decrease; else a bisection of the running max
    and an exact filter of what it leaves (see the module's docstring)."""
    n = view.count
    if n == 0 or (start is None and end is None):
        return view.pos
    if view.lag == 0.0:
        a = bisect_left(view.ts, start) if start is not None else 0
        b = bisect_right(view.ts, end) if end is not None else n
        return view.pos[a:b] if a < b else array.array("Q")
    a = bisect_left(view.top, start) if start is not None else 0
    b = bisect_right(view.top, math.nextafter(end + view.lag, math.inf)) if end is not None else n
    lo = -math.inf if start is None else start
    hi = math.inf if end is None else end
    ts, pos = view.ts, view.pos
    return array.array("Q", (pos[i] for i in range(a, b) if lo <= ts[i] <= hi))
