"""The batch ids of the last part of one data file: bounded dedupe memory.

A client resends a batch when it got no answer for it (a timeout, a dropped
connection, a server killed and restarted); the store must then answer "duplicate"
instead of storing it again. Remembering every id ever written costs ≈ 150 MB per
million batches, and reading them all back after a restart means reading the whole
file. A resent batch is in practice always a recent one: an ML-Dash client delivers its
calls in order and resends the one it has no answer for before it sends anything else,
so only other clients appending to the same stream meanwhile can put batches after it.

So a window keeps the ids of the last :data:`WINDOW_BATCHES` batches within the last
:data:`WINDOW_BYTES` of the file, each with the first counter it got. The guarantee:
**a batch resent while fewer than 4,096 batches and fewer than 16 MiB of lines have
been appended to its stream after it is recognised, and not stored again**, whether
the store stayed up or was restarted (``kill -9`` included): a window that is not in
memory (a new process, or one dropped to stay within the memory budget) is read back
from the file's tail, never the whole file. A batch resent later than that is stored
again; no ML-Dash client resends that late.

Ids are found in the file by a byte search: the batch id sits right after the counter
on a batch's first line (first in a track line), and inside JSON strings quotes are
escaped, so user data cannot look like it.
"""

from __future__ import annotations

import os
import re
from collections import deque

WINDOW_BATCHES = 4096
WINDOW_BYTES = 16 << 20
_FIRST_CHUNK = 1 << 16  # most windows are small: read the tail in growing pieces
_MAX_CHUNK = 1 << 20
_MARK = b'batchId":"'
BATCH_ID = re.compile(rb'\{(?:"(?:index|sequenceNumber)":(\d+),)?"_?batchId":"([^"\\]*)"')


class BatchWindow:
    """Batch id -> first counter, for every batch whose first line starts in the window.

    ``end`` is the file offset the window has been brought up to: every batch-id line
    that starts before it and within the window's bounds is in it.
    """

    __slots__ = ("_first", "_order", "end", "max_batches", "max_bytes")

    def __init__(self, max_batches: int = WINDOW_BATCHES, max_bytes: int = WINDOW_BYTES) -> None:
        self.max_batches = max_batches
        self.max_bytes = max_bytes
        self._first: dict[str, int] = {}
        self._order: deque[tuple[int, str]] = deque()  # (offset of the batch's first line, id), oldest first
        self.end = 0

    def __len__(self) -> int:
        return len(self._first)

    def find(self, batch_id: str) -> int | None:
        """The first counter the batch got (0 for files without counters), None if unknown."""
        return self._first.get(batch_id)

    def add(self, offset: int, batch_id: str, first: int, end: int) -> None:
        """A batch whose first line starts at ``offset`` was appended; the file ends at ``end``."""
        if batch_id not in self._first:
            self._first[batch_id] = first
            self._order.append((offset, batch_id))
        self.end = end
        self._trim()

    def clear(self) -> None:
        """Forget everything (read back from the file at the next :meth:`catch_up`)."""
        self._first.clear()
        self._order.clear()
        self.end = 0

    def skip_to(self, size: int) -> None:
        """Take the file as known up to ``size`` without reading it (a window of our own ids only)."""
        self._cut(size)
        self.end = size

    def catch_up(self, fd: int, size: int) -> None:
        """Bring the window up to ``size`` (a complete-line boundary) from the file: read the
        ids written since ``end`` (by other writers, or all of them after a restart),
        backwards from ``size``, reading at most the window's bytes and batches."""
        if size <= self.end:
            self.skip_to(size)  # the file was cut (a torn or damaged tail set aside)
            return
        lower = max(self.end, size - self.max_bytes)
        found, reached = ids_before(fd, lower, size, self.max_batches)
        if not reached or lower > self.end:
            # What we had lies beyond the window now: everything before ``lower`` (or
            # before the oldest id found) is at least a full window old.
            self._first.clear()
            self._order.clear()
        for offset, batch_id, first in reversed(found):
            if batch_id not in self._first:
                self._first[batch_id] = first
                self._order.append((offset, batch_id))
        self.end = size
        self._trim()

    def _cut(self, size: int) -> None:
        while self._order and self._order[-1][0] >= size:
            _offset, batch_id = self._order.pop()
            del self._first[batch_id]

    def _trim(self) -> None:
        oldest = self.end - self.max_bytes
        while self._order and (len(self._order) > self.max_batches or self._order[0][0] < oldest):
            _offset, batch_id = self._order.popleft()
            del self._first[batch_id]


def ids_before(fd: int, lower: int, upper: int, limit: int) -> tuple[list[tuple[int, str, int]], bool]:
    """The batch-id lines that start in ``[lower, upper)`` (``upper`` a line start), newest
    first, at most ``limit`` of them: ``(offset, id, first counter)``; and whether the
    search got down to ``lower`` (False: it stopped at ``limit``)."""
    found: list[tuple[int, str, int]] = []
    pos = upper
    chunk = _FIRST_CHUNK
    while pos > lower:
        start = max(lower, pos - chunk)
        # One byte more in front, to see whether ``start`` itself begins a line.
        before = start - 1 if start > 0 else 0
        buf = os.pread(fd, pos - before, before)
        if len(buf) < pos - before:
            break  # the file shrank under us (another writer set a tail aside): stop here
        if start == 0:
            first_line = 0
        else:
            nl = buf.find(b"\n")
            first_line = before + nl + 1 if nl >= 0 else pos
        if first_line >= pos:
            if start == lower:
                break  # one line reaching below ``lower``: nothing of the window starts here
            chunk *= 2  # a line longer than the chunk: read more at once
            continue
        view = buf[first_line - before :]
        at = view.rfind(_MARK)
        while at >= 0:
            line_start = view.rfind(b"\n", 0, at) + 1
            match = BATCH_ID.match(view, line_start)
            if match is not None:
                found.append((first_line + line_start, match.group(2).decode(), int(match.group(1) or 0)))
                if len(found) >= limit:
                    return found, False
            at = view.rfind(_MARK, 0, line_start) if line_start > 0 else -1
        pos = first_line
        chunk = min(max(chunk, _FIRST_CHUNK) * 2, _MAX_CHUNK)
    return found, True
