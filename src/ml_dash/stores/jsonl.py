"""JSON-lines files shared by many writers: locked appends and tail repair (reading: ``line_reader``).

Every data file of the local store is a sequence of complete lines, each ending in
``\\n``. Writers (threads or processes) append under an exclusive ``flock`` with one
``write`` per batch, so a line is torn only when a process dies mid-write. The next
writer to take the lock moves such a torn tail to ``<file>.torn`` and truncates it
away, then does the same with complete but *damaged* lines at the end (``lines``: not
a JSON object with an integer counter), which go to ``<file>.damaged``; readers never
look past the last newline and skip damaged lines anywhere.

Counters (metric ``index``, log ``sequenceNumber``) are assigned under the same lock
from the last complete line of the file, so several processes appending to one file
get unique, gapless counters, and the file itself is the only source of truth.

Open files are bounded: an appender's descriptor belongs to a ``fdpool.FilePool``,
which closes the least recently used ones; an appender reopens its file when used
again. Batch ids are remembered in a bounded ``batch_window.BatchWindow`` per file.

Every failure of the file system leaves this module as ``StorageError`` naming the
file (``raise ... from`` the ``OSError``); nothing here knows the names the files
belong to: the store that uses it says which name a failure concerns.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from ..errors import MLDashError, StorageError
from ..records import AppendResult
from .batch_window import BatchWindow
from .fdpool import FilePool, shared_pool
from .line_reader import Edge, LineReader, open_lines
from .lines import (
    counter_of,
    decode_block,
    is_valid,
    last_newline_end,
    lenient_decode,
    line_before,
    lines_backward,
    open_file,
    pread_all,
    warn_damaged,
)

__all__ = [
    "LOCK_TIMEOUT",
    "Edge",
    "LineReader",
    "LockedAppender",
    "WouldWaitError",
    "counter_of",
    "decode_block",
    "decode_line",
    "last_newline_end",
    "line_before",
    "lock_file",
    "open_lines",
    "without_waiting",
]

_decode = msgspec.json.decode

LOCK_TIMEOUT = 2.0


class WouldWaitError(StorageError):
    """An append under :func:`without_waiting` found a lock taken; nothing was written."""


_waiting = threading.local()


@contextmanager
def without_waiting() -> Iterator[None]:
    """Appends made by this thread inside the block never wait for a lock: when another
    thread or process holds it they raise :class:`WouldWaitError` at once.

    The logging thread hands records over inline this way (``Writer.poke``): it must never
    sit out another process's ``flock`` (up to ``LOCK_TIMEOUT``) or an ``fsync``.
    """
    _waiting.no = True
    try:
        yield
    finally:
        _waiting.no = False


def lock_file(fd: int, path: str, timeout: float = LOCK_TIMEOUT) -> None:
    """Take an exclusive ``flock`` on ``fd``, or raise StorageError after ``timeout``.

    Another process may hold the lock for ever (stopped, hung on NFS): waiting without
    a bound would stall the writer and, through it, close.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if timeout <= 0.0:
                raise WouldWaitError(f"{path} is locked by another process") from None
            if time.monotonic() >= deadline:
                raise StorageError(f"{path} is locked by another process (waited {timeout:.1f} s)") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        except OSError as exc:  # ENOLCK on some network file systems
            raise StorageError(f"cannot lock {path}: {exc}") from exc


def decode_line(line: bytes, path: str) -> dict[str, Any]:
    """One JSON-object line of ``path``; StorageError if it is not one."""
    try:
        value = _decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        value = lenient_decode(line)  # the ML-Dash SDK's NaN tokens
        if value is None:
            raise StorageError(f"{path}: a line is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise StorageError(f"{path}: a line is not a JSON object")
    return value


class LockedAppender:
    """Appends batches to one JSON-lines file, safely across threads and processes."""

    __slots__ = (
        "__weakref__",
        "_appends",
        "_close_error",
        "_fd",
        "_known_size",
        "_lock",
        "_next",
        "_synced",
        "_window",
        "counter_key",
        "path",
        "pool",
        "scan_batch_ids",
        "time_key",
    )

    def __init__(
        self,
        path: str,
        counter_key: str | None,
        scan_batch_ids: bool = True,
        pool: FilePool | None = None,
        time_key: str | None = None,
    ) -> None:
        """``scan_batch_ids=False`` remembers only the batch ids this object wrote (enough
        for a writer that resends its own batches); True also learns the ids in the file
        (batches resent from elsewhere, a client after a server restart), reading back
        only the window's part of it (see ``batch_window``). ``pool`` (default: the
        process's) bounds how many appenders keep their file open. A line without a
        non-negative integer ``counter_key`` (or, in a file without counters, a number
        ``time_key``) is damaged."""
        self.path = path
        self.counter_key = counter_key
        self.time_key = time_key
        self.scan_batch_ids = scan_batch_ids
        self.pool = pool if pool is not None else shared_pool()
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._known_size = -1
        self._next = 0
        self._window: BatchWindow | None = None  # made at the first append, dropped with the file
        self._appends = 0  # appends made through this object
        self._synced = 0  # how many of them an fsync made durable
        self._close_error: StorageError | None = None  # from a close by the pool, reported at fsync/close

    def _open(self) -> int:
        if self._fd is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.pool.make_room(self)
            self._fd = open_file(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC)
            self.pool.opened(self)
        else:
            self.pool.used(self)
        return self._fd

    def evict(self) -> int | None:
        """Close the file and forget the batch-id window (the pool needs room), unless an
        append holds this appender: the number of ids dropped, or None when busy.

        What was appended stays owed an fsync: :meth:`fsync` reopens the file for it. An
        error the close reports is raised by the next :meth:`fsync` or :meth:`close`.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            held = len(self._window) if self._window is not None else 0
            self._window = None
            fd, self._fd = self._fd, None
            if fd is not None:
                try:
                    os.close(fd)
                except OSError as exc:
                    self._close_error = StorageError(f"closing {self.path} reported an error: {exc}")
            return held
        finally:
            self._lock.release()

    def fsync(self) -> None:
        """Make everything appended so far durable; StorageError if the disk says no (or
        said so when the pool closed the file). Nothing to do when nothing was appended
        since the last fsync.

        The fsync runs on a duplicate of the descriptor, outside the append lock: it can
        take a long time (seconds on a busy disk) and appends must not wait for it. A file
        the pool closed meanwhile is reopened for it: an fsync flushes the file's data
        whichever descriptor asks, and Linux reports a write-back error not yet reported
        to the next fsync of the file, through any descriptor.
        """
        with self._lock:
            error, self._close_error = self._close_error, None
            appends = self._appends
            if appends == self._synced and error is None:
                return
            fd = None
            if self._fd is not None:
                try:
                    fd = os.dup(self._fd)
                except OSError as exc:
                    raise StorageError(f"cannot fsync {self.path}: {exc}") from exc
        try:
            if fd is None:
                fd = open_file(self.path, os.O_RDONLY | os.O_CLOEXEC)
            os.fsync(fd)
        except OSError as exc:
            raise StorageError(f"cannot fsync {self.path}: {exc}") from exc
        finally:
            if fd is not None:
                os.close(fd)
        with self._lock:
            self._synced = max(self._synced, appends)
        if error is not None:
            raise error

    def close(self) -> None:
        """Close the file; gives up (leaving it open) if an append is stuck holding it.

        Raises StorageError when closing reports an error (some network file systems
        report failed writes only then); the file is closed all the same.
        """
        if not self._lock.acquire(timeout=0.5):
            return
        try:
            error, self._close_error = self._close_error, None
            self._window = None
            fd, self._fd = self._fd, None
            if fd is not None:
                try:
                    os.close(fd)
                except OSError as exc:
                    error = StorageError(f"cannot close {self.path}: {exc}")
                    error.__cause__ = exc
        finally:
            self._lock.release()
        self.pool.closed(self)
        if error is not None:
            raise error

    def append(self, encode: Callable[[int], bytes], count: int, batch_id: str | None = None) -> AppendResult:
        """Append the ``count`` records that ``encode(first_counter)`` returns as bytes.

        ``encode`` gets the next free counter and runs under the file lock. The result's
        ``first`` is that counter (None for a file without counters). With a
        ``batch_id`` (which ``encode`` must write into the batch's first line), a batch
        still in the window (``batch_window``) is not written again: the result is
        ``duplicate`` and carries the first counter the batch got then. Raises
        StorageError for any failure of the file (nothing of the batch is left in it),
        and whatever ``encode`` raises.
        """
        no_wait = getattr(_waiting, "no", False)
        if not self._lock.acquire(blocking=not no_wait):
            raise WouldWaitError(f"{self.path} is being appended to by another thread")
        try:
            try:
                fd = self._open()
            except OSError as exc:
                raise StorageError(f"cannot open {self.path} for appending: {exc}") from exc
            lock_file(fd, self.path, 0.0 if no_wait else LOCK_TIMEOUT)
            try:
                return self._append_locked(fd, encode, count, batch_id)
            except MLDashError:
                raise
            except OSError as exc:  # reading the tail or the batch ids back
                self._known_size = -1
                raise StorageError(f"cannot append to {self.path}: {exc}") from exc
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def _append_locked(
        self, fd: int, encode: Callable[[int], bytes], count: int, batch_id: str | None
    ) -> AppendResult:
        size = os.fstat(fd).st_size
        if size != self._known_size:
            size = self._set_aside_damaged(fd, self._repair_tail(fd, size))
            self._next = self._counter_after(fd, size)
            self._known_size = size
        has_counter = self.counter_key is not None
        window = self._window
        if window is None:
            window = self._window = BatchWindow()
        held = len(window)
        try:
            if batch_id is not None:
                if window.end != size:
                    if self.scan_batch_ids:
                        window.catch_up(fd, size)
                    else:
                        window.skip_to(size)
                done = window.find(batch_id)
                if done is not None:
                    return AppendResult(done if has_counter else None, count, True)
            first = self._next
            data = encode(first)
            self._write_all(fd, data, size)
            end = size + len(data)
            self._known_size = end
            self._appends += 1
            if has_counter:
                self._next = first + count
            if batch_id is not None:
                window.add(size, batch_id, first, end)
            elif window.end == size:
                window.end = end
            return AppendResult(first if has_counter else None, count, False)
        finally:
            if len(window) != held:
                self.pool.holds(self, len(window))

    def _write_all(self, fd: int, data: bytes, size: int) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            # Leave no partial line behind: the batch is retried whole later.
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            self._known_size = -1
            raise StorageError(f"cannot write {self.path}: {exc}") from exc

    def _repair_tail(self, fd: int, size: int) -> int:
        """Move a torn last line to ``<file>.torn``; the size of the file without it.

        The bytes are cut off only once they are safe in the side file: if that file
        cannot be written, nothing changes and StorageError says so (the append waits
        until it can be done, rather than destroy what the crash left).
        """
        good = last_newline_end(fd, size)
        if good == size:
            return size
        torn = pread_all(fd, size - good, good)
        side = self.path + ".torn"
        try:
            with open(side, "ab") as out:
                out.write(torn + b"\n")
        except OSError as exc:
            raise StorageError(
                f"{self.path} ends in an incomplete line ({len(torn)} bytes, from a crash) that cannot be "
                f"set aside in {side}: {exc}; the file is left as it is"
            ) from exc
        try:
            os.ftruncate(fd, good)
        except OSError as exc:
            raise StorageError(
                f"{self.path} ends in an incomplete line ({len(torn)} bytes, from a crash): copied it to {side} "
                f"but cannot cut it off: {exc}"
            ) from exc
        warnings.warn(
            f"ml-dash: {self.path} ended in an incomplete line ({len(torn)} bytes, from a crash); "
            f"moved it to {side}",
            RuntimeWarning,
            stacklevel=2,
        )
        return good

    def _set_aside_damaged(self, fd: int, size: int) -> int:
        """Move the damaged complete lines at the end of the file to ``<file>.damaged``
        (so that counters continue after the last valid one); the size without them.

        Like a torn tail: cut off only once copied; StorageError if that cannot be done.
        """
        start, count = size, 0
        for line_start, line in lines_backward(fd, size):
            if is_valid(line, self.counter_key, self.time_key):
                break
            start, count = line_start, count + 1
        if not count:
            return size
        side = self.path + ".damaged"
        try:
            with open(side, "ab") as out:
                pos = start
                while pos < size:
                    chunk = pread_all(fd, min(1 << 22, size - pos), pos)
                    if not chunk:
                        break
                    out.write(chunk)
                    pos += len(chunk)
        except OSError as exc:
            raise StorageError(
                f"{self.path} ends in {count} damaged line(s) that cannot be set aside in {side}: {exc}; "
                "the file is left as it is"
            ) from exc
        try:
            os.ftruncate(fd, start)
        except OSError as exc:
            raise StorageError(
                f"{self.path} ends in {count} damaged line(s): copied them to {side} but cannot cut them off: {exc}"
            ) from exc
        warn_damaged(self.path, count, f"moved to {side}:")
        return start

    def _counter_after(self, fd: int, size: int) -> int:
        if self.counter_key is None or size == 0:
            return 0
        line = line_before(fd, size)
        return 0 if line is None else counter_of(line, self.counter_key, self.path) + 1
