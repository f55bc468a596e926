"""Reading a JSON-lines file of the local store: whole lines only, damaged ones skipped.

A :class:`LineReader` sees the file up to its last newline when it was opened (never a
torn tail), finds lines by offset and by counter (bisection, O(log n) reads), and finds
the first and last *valid* lines (``lines``: damaged ones are stepped over and counted).
Every failure of the disk leaves it as ``StorageError`` naming the file.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar, cast

from ..errors import MLDashError, StorageError
from .lines import (
    TAIL_CHUNK,
    counter_of,
    is_valid,
    last_newline_end,
    line_counter,
    lines_backward,
    lines_forward,
    open_file,
    pread_all,
    probe_counter,
)

F = TypeVar("F", bound=Callable[..., Any])
_COUNTERS = ("index", "sequenceNumber")


def _reading(method: F) -> F:
    """Turn an OSError of a read into StorageError naming the file."""

    @functools.wraps(method)
    def wrapper(self: LineReader, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except MLDashError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from exc

    return cast(F, wrapper)


def open_lines(path: str) -> LineReader | None:
    """A reader of ``path``, or None when there is no such file (or a file sits where
    one of its folders would be: then it cannot exist either). StorageError for any
    other failure. Use it as a context manager: that closes it."""
    try:
        fd = open_file(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    try:
        return LineReader(path, fd)
    except BaseException:
        os.close(fd)
        raise


class Edge(NamedTuple):
    """The first or last valid line of a file (None: there is none), its counter, and
    how many damaged lines lie between it and that end of the file."""

    line: bytes | None
    counter: int
    skipped: int


class LineReader:
    """Reads complete lines of a JSON-lines file (never a torn tail).

    Every read raises StorageError naming the file when the disk fails; open one with
    :func:`open_lines` and use it as a context manager (which closes it).
    """

    @_reading
    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        size = os.fstat(self.fd).st_size
        self.end = last_newline_end(self.fd, size)

    def __enter__(self) -> LineReader:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # a read-only descriptor: closing it reports nothing

    def counter(self, line: bytes, key: str) -> int:
        """The integer ``key`` of ``line``; StorageError if the line is damaged."""
        return counter_of(line, key, self.path)

    @_reading
    def first_line(self) -> bytes | None:
        for _start, line in lines_forward(self.fd, 0, self.end):
            return line
        return None

    @_reading
    def last_line(self) -> bytes | None:
        """The last line that is a record of some kind (a JSON object with a counter or a
        ``timestamp``), damaged lines after it skipped; :meth:`last_valid` checks one key."""
        for _start, line in lines_backward(self.fd, self.end):
            if any(is_valid(line, key) for key in _COUNTERS) or is_valid(line, None, "timestamp"):
                return line
        return None

    @_reading
    def first_valid(self, key: str) -> Edge:
        """The first line with a valid counter ``key`` (damaged lines before it skipped)."""
        skipped = 0
        for _start, line in lines_forward(self.fd, 0, self.end):
            value = line_counter(line, key)
            if value is not None:
                return Edge(line, value, skipped)
            skipped += 1
        return Edge(None, -1, skipped)

    @_reading
    def last_valid(self, key: str) -> Edge:
        """The last line with a valid counter ``key`` (damaged lines after it skipped)."""
        skipped = 0
        for _start, line in lines_backward(self.fd, self.end):
            value = line_counter(line, key)
            if value is not None:
                return Edge(line, value, skipped)
            skipped += 1
        return Edge(None, -1, skipped)

    def next_counter(self, key: str) -> int:
        """The counter after the last valid line's (0 for a file without one): the count
        of records in a gapless file, damaged lines or not."""
        return self.last_valid(key).counter + 1

    def _line_at_or_after(self, offset: int) -> tuple[int, bytes] | None:
        """The first line that starts at or after ``offset``: (start, line)."""
        if offset > 0:
            probe = offset - 1
            while True:
                chunk = os.pread(self.fd, 4096, probe)
                if not chunk:
                    return None
                pos = chunk.find(b"\n")
                if pos >= 0:
                    offset = probe + pos + 1
                    break
                probe += len(chunk)
        if offset >= self.end:
            return None
        for found in lines_forward(self.fd, offset, self.end):
            return found
        return None

    def _counted_at_or_after(self, offset: int, key: str, stop: int) -> tuple[int, int, int] | None:
        """(start, end, counter) of the first line with a counter that starts in [offset, stop)."""
        while True:
            found = self._line_at_or_after(offset)
            if found is None or found[0] >= stop:
                return None
            start, line = found
            value = probe_counter(line, key)
            if value is not None:
                return start, start + len(line) + 1, value
            offset = start + len(line) + 1

    @_reading
    def bisect(self, key: str, target: int) -> int:
        """Offset of the first line whose integer ``key`` is >= ``target``.

        Assumes the key increases along the file (true for counters assigned under
        the append lock); damaged lines are stepped over. Costs O(log n) reads,
        independent of ``target``.
        """
        lo, hi = 0, self.end
        while hi - lo > 8192:
            mid = (lo + hi) // 2
            found = self._counted_at_or_after(mid, key, hi)
            if found is None:
                hi = mid
                continue
            start, after, value = found
            if value < target:
                lo = after
            else:
                hi = start
        # Linear scan of the last small window.
        found = self._counted_at_or_after(lo, key, self.end)
        while found is not None:
            start, after, value = found
            if value >= target:
                return start
            found = self._counted_at_or_after(after, key, self.end)
        return self.end

    @_reading
    def read_block(self, offset: int, max_lines: int) -> bytes:
        """Up to ``max_lines`` complete lines from ``offset``, as one bytes block."""
        if max_lines <= 0 or offset >= self.end:
            return b""
        parts: list[bytes] = []
        lines = 0
        chunk_size = TAIL_CHUNK
        pos = offset
        while pos < self.end and lines < max_lines:
            chunk = os.pread(self.fd, min(chunk_size, self.end - pos), pos)
            if not chunk:
                break
            parts.append(chunk)
            lines += chunk.count(b"\n")
            pos += len(chunk)
            chunk_size = min(chunk_size * 2, 1 << 24)
        block = b"".join(parts)
        if not block.endswith(b"\n"):
            block = block[: block.rfind(b"\n") + 1]
            lines = block.count(b"\n")
        extra = lines - max_lines
        if extra > 0:
            cut = len(block)
            for _ in range(extra):
                cut = block.rfind(b"\n", 0, cut - 1) + 1
            block = block[:cut]
        return block

    @_reading
    def read_rest(self, offset: int) -> bytes:
        """Every complete line from ``offset`` to the end, in one read."""
        return pread_all(self.fd, self.end - offset, offset) if offset < self.end else b""

    def iter_blocks(self, block_size: int = 1 << 22) -> Iterator[bytes]:
        """The whole file in blocks of complete lines."""
        try:
            yield from self._blocks(block_size)
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from exc

    def _blocks(self, block_size: int) -> Iterator[bytes]:
        pos = 0
        carry = b""
        while pos < self.end:
            chunk = os.pread(self.fd, min(block_size, self.end - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if cut:
                yield data[:cut]
