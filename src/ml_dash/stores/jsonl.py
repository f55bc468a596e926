"""JSON-lines files shared by many writers: locked appends, torn-tail repair, bisection.

Every data file of the local store is a sequence of complete lines, each ending in
``\\n``. Writers (threads or processes) append under an exclusive ``flock`` with one
``write`` per batch, so a line is torn only when a process dies mid-write. The next
writer to take the lock moves such a torn tail to ``<file>.torn`` and truncates it
away; readers never look past the last newline.

Counters (metric ``index``, log ``sequenceNumber``) are assigned under the same lock
from the last complete line of the file, so several processes appending to one file
get unique, gapless counters, and the file itself is the only source of truth.

Every failure of the file system leaves this module as ``StorageError`` naming the
file (``raise ... from`` the ``OSError``); nothing here knows the names the files
belong to: the store that uses it says which name a failure concerns.
"""

from __future__ import annotations

import fcntl
import functools
import gc
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import msgspec

from ..errors import MLDashError, StorageError
from ..records import AppendResult

F = TypeVar("F", bound=Callable[..., Any])
_TAIL_CHUNK = 1 << 16
_PROMOTE_AFTER = 100_000
_decode = msgspec.json.decode
_decode_lines = msgspec.json.Decoder().decode_lines
# A batch's id sits right after the counter on its first line (or first in a track
# line), so it can be found without parsing; inside JSON strings quotes are escaped,
# so user data cannot look like this.
_BATCH_ID = re.compile(rb'\{(?:"(?:index|sequenceNumber)":(\d+),)?"_?batchId":"([^"\\]*)"')


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


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def last_newline_end(fd: int, size: int) -> int:
    """Offset just past the last ``\\n`` at or before ``size`` (0 if there is none)."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        pos = chunk.rfind(b"\n")
        if pos >= 0:
            return start + pos + 1
        end = start
    return 0


def line_before(fd: int, end: int) -> bytes | None:
    """The complete line that ends at offset ``end`` (which follows a ``\\n``)."""
    if end <= 0:
        return None
    start = end - 1
    while start > 0:
        lo = max(0, start - _TAIL_CHUNK)
        chunk = os.pread(fd, start - lo, lo)
        pos = chunk.rfind(b"\n")
        if pos >= 0:
            start = lo + pos + 1
            break
        start = lo
    return _pread_all(fd, end - start, start)


def counter_of(line: bytes, key: str, path: str) -> int:
    """The integer ``key`` of one JSON line of ``path``; StorageError if it has none."""
    try:
        value = _decode(line)[key]
    except (msgspec.DecodeError, KeyError, TypeError) as exc:
        raise StorageError(f"{path}: a line has no valid {key!r} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(value, int) or isinstance(value, bool):
        raise StorageError(f"{path}: a line has {key!r} = {value!r}, not an integer")
    return value


def decode_line(line: bytes, path: str) -> dict[str, Any]:
    """One JSON-object line of ``path``; StorageError if it is not one."""
    try:
        value = _decode(line)
    except msgspec.DecodeError as exc:
        raise StorageError(f"{path}: a line is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise StorageError(f"{path}: a line is not a JSON object")
    return value


class LockedAppender:
    """Appends batches to one JSON-lines file, safely across threads and processes."""

    def __init__(self, path: str, counter_key: str | None, scan_batch_ids: bool = True) -> None:
        """``scan_batch_ids=False`` remembers only the batch ids this object wrote (enough
        for a writer that resends its own batches); True also learns the ids already in
        the file, so batches resent from elsewhere (a client after a server restart) are
        recognised."""
        self.path = path
        self.counter_key = counter_key
        self.scan_batch_ids = scan_batch_ids
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._known_size = -1
        self._next = 0
        self._batches: dict[str, int] = {}
        self._scanned = 0

    def _open(self) -> int:
        if self._fd is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._known_size = -1
        return self._fd

    def fsync(self) -> None:
        """Make everything appended so far durable; StorageError if the disk says no.

        The fsync runs on a duplicate of the descriptor, outside the append lock: it can
        take a long time (seconds on a busy disk) and appends must not wait for it.
        """
        with self._lock:
            if self._fd is None:
                return
            try:
                fd = os.dup(self._fd)
            except OSError as exc:
                raise StorageError(f"cannot fsync {self.path}: {exc}") from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StorageError(f"cannot fsync {self.path}: {exc}") from exc
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the file; gives up (leaving it open) if an append is stuck holding it.

        Raises StorageError when closing reports an error (some network file systems
        report failed writes only then); the file is closed all the same.
        """
        if not self._lock.acquire(timeout=0.5):
            return
        try:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)
        except OSError as exc:
            raise StorageError(f"cannot close {self.path}: {exc}") from exc
        finally:
            self._lock.release()

    def append(self, encode: Callable[[int], bytes], count: int, batch_id: str | None = None) -> AppendResult:
        """Append the ``count`` records that ``encode(first_counter)`` returns as bytes.

        ``encode`` gets the next free counter and runs under the file lock. The result's
        ``first`` is that counter (None for a file without counters). With a
        ``batch_id`` (which ``encode`` must write into the batch's first line), a batch
        already in the file is not written again: the result is ``duplicate`` and
        carries the first counter the batch got then. Raises StorageError for any
        failure of the file (nothing of the batch is left in it), and whatever
        ``encode`` raises.
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
            size = self._repair_tail(fd, size)
            self._next = self._counter_after(fd, size)
            self._scanned = min(self._scanned, size)
        has_counter = self.counter_key is not None
        if batch_id is not None:
            if self._scanned < size and self.scan_batch_ids:
                self._scan_batches(fd, size)
            done = self._batches.get(batch_id)
            if done is not None:
                return AppendResult(done if has_counter else None, count, True)
        first = self._next
        data = encode(first)
        self._write_all(fd, data, size)
        self._known_size = size + len(data)
        if has_counter:
            self._next = first + count
        if batch_id is not None:
            self._batches[batch_id] = first
            if self._scanned == size:
                self._scanned = self._known_size
        return AppendResult(first if has_counter else None, count, False)

    def _scan_batches(self, fd: int, size: int) -> None:
        """Learn the batch ids written since the last scan (by us or other processes)."""
        start = self._scanned
        if start > 0:
            start = last_newline_end(fd, start)
        pos = start
        carry = b""
        while pos < size:
            chunk = carry + os.pread(fd, min(1 << 22, size - pos), pos)
            pos += len(chunk) - len(carry)
            cut = chunk.rfind(b"\n") + 1
            # Find the few lines carrying a batch id with a byte search, then read each
            # one with the anchored pattern (a per-line regex would cost ~0.4 µs a line).
            at = chunk.find(b'batchId":"', 0, cut)
            while at >= 0:
                line_start = chunk.rfind(b"\n", 0, at) + 1
                match = _BATCH_ID.match(chunk, line_start, cut)
                if match:
                    self._batches[match.group(2).decode()] = int(match.group(1) or 0)
                next_line = chunk.find(b"\n", at, cut)
                at = chunk.find(b'batchId":"', next_line, cut) if next_line >= 0 else -1
            carry = chunk[cut:]
        self._scanned = size

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
        torn = _pread_all(fd, size - good, good)
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

    def _counter_after(self, fd: int, size: int) -> int:
        if self.counter_key is None or size == 0:
            return 0
        line = line_before(fd, size)
        if line is None:
            return 0
        return counter_of(line, self.counter_key, self.path) + 1


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
    other failure."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    try:
        return LineReader(path, fd)
    except BaseException:
        os.close(fd)
        raise


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
        """The integer ``key`` of ``line``; StorageError if the line has none."""
        return counter_of(line, key, self.path)

    @_reading
    def first_line(self) -> bytes | None:
        if self.end == 0:
            return None
        chunk = os.pread(self.fd, min(self.end, _TAIL_CHUNK), 0)
        pos = chunk.find(b"\n")
        while pos < 0:
            chunk = _pread_all(self.fd, min(self.end, len(chunk) * 2), 0)
            pos = chunk.find(b"\n")
        return chunk[:pos]

    @_reading
    def last_line(self) -> bytes | None:
        return line_before(self.fd, self.end)

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
        chunk = os.pread(self.fd, 4096, offset)
        pos = chunk.find(b"\n")
        while pos < 0:
            chunk = _pread_all(self.fd, len(chunk) * 2, offset)
            pos = chunk.find(b"\n")
        return offset, chunk[:pos]

    @_reading
    def bisect(self, key: str, target: int) -> int:
        """Offset of the first line whose integer ``key`` is >= ``target``.

        Assumes the key increases along the file (true for counters assigned under
        the append lock). Costs O(log n) reads, independent of ``target``.
        """
        lo, hi = 0, self.end
        while hi - lo > 8192:
            mid = (lo + hi) // 2
            found = self._line_at_or_after(mid)
            if found is None:
                hi = mid
                continue
            start, line = found
            if start >= hi:
                hi = mid
                continue
            if self.counter(line, key) < target:
                lo = start + len(line) + 1
            else:
                hi = start
        # Linear scan of the last small window.
        offset = lo
        while offset < self.end:
            found = self._line_at_or_after(offset)
            if found is None:
                return self.end
            start, line = found
            if self.counter(line, key) >= target:
                return start
            offset = start + len(line) + 1
        return self.end

    @_reading
    def read_block(self, offset: int, max_lines: int) -> bytes:
        """Up to ``max_lines`` complete lines from ``offset``, as one bytes block."""
        if max_lines <= 0 or offset >= self.end:
            return b""
        parts: list[bytes] = []
        lines = 0
        chunk_size = 1 << 16
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
        return _pread_all(self.fd, self.end - offset, offset) if offset < self.end else b""

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


def decode_block(block: bytes, path: str = "") -> list[Any]:
    """Decode a block of JSON lines into a list, in one call where possible."""
    if not block:
        return []
    enabled = gc.isenabled()
    gc.disable()  # millions of fresh containers would trigger needless collections
    out: list[Any] = []
    try:
        try:
            out = _decode_lines(block)
        except msgspec.DecodeError:
            for number, line in enumerate(block.split(b"\n")[:-1]):
                try:
                    out.append(_decode(line))
                except msgspec.DecodeError:
                    warnings.warn(
                        f"ml-dash: skipping unreadable line {number} of a block in {path}", RuntimeWarning, stacklevel=2
                    )
        return out
    finally:
        if enabled:
            if len(out) >= _PROMOTE_AFTER:
                # A big read result is long-lived: hand it to the oldest generation at
                # once (freeze + unfreeze splices lists, O(1)) instead of letting the next
                # young collection walk a million fresh dicts only to promote them.
                gc.freeze()
                gc.unfreeze()
            gc.enable()
