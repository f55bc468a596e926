"""The outbox: store calls kept on disk until a store that can be unreachable has them.

Remote mode (and the remote half of hybrid mode) never waits for the network on the
logging path: the Writer turns each batch into a :class:`Call`, puts it here, and
delivers the calls in order with the same retry policy it uses for every store. A
call is one file, written before the first attempt and deleted once the store has
acknowledged it; a call the store refused for good moves to ``rejected/`` beside a
note of why. What a run leaves behind is delivered later by ``ml-dash sync``
(:func:`deliver_left_behind`), through the same :func:`apply`.

Folder: ``<dash_root>/.spool/<host>/<session>/``. File: one JSON header line
``{"op", "prefix", "name", "label", "url"}``, then the call's arguments as the HTTP
API's request body (``wire.encode_call``), so NaN, infinities and big ints survive.

Appends (metric points, log lines, track entries) are handed over every few
milliseconds in small pieces, so that a killed process loses almost nothing; one
request per piece would flood the folder and the server. They go into an *open call*
per stream instead: a ``.part`` file whose header also holds ``"batchId"`` and
``"lines": true``, followed by one line per piece, each line a complete request body
of its own (``wire.encode_call``, its own ``nonFinite`` map included). Each piece is
one ``write`` (no fsync), so a killed process leaves whole lines and at most one torn
last line. An open call is *sealed* (renamed to ``.req``, then sent like any other
call, as one batch) once it holds ``batch_size`` records or is older than the flush
interval. The live process holds an ``flock`` on its ``.part`` files; one that nobody
holds was left by a dead process, and :meth:`Outbox.adopt_existing` (``ml-dash sync``)
seals it, dropping a torn last line.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from . import wire
from .errors import MLDashError, StorageError
from .fileio import atomic_write_bytes
from .stores.base import Store

SUFFIX = ".req"
PART = ".part"  # an open call, still being written
REJECTED = "rejected"
APPEND_OPS = frozenset({"append_metrics", "append_logs", "append_tracks"})

# ``name`` is the metric name or track topic for these ops, None for the others.
NAMED_OPS = frozenset({"append_metrics", "append_tracks", "describe_stream"})
OPS = NAMED_OPS | {"open_experiment", "update_experiment", "set_params", "append_logs"}


@dataclass(frozen=True)
class Call:
    """One Store write, kept until delivered: ``op(prefix, [name,] *args)``."""

    op: str
    prefix: str
    name: str | None
    args: tuple[Any, ...]
    label: str  # the Writer channel it came from ("metrics 'train'"), for reports

    def __len__(self) -> int:
        """How many records it carries (1 for a control call)."""
        if self.op.startswith("append_"):
            return len(self.args[0])
        return 1


def apply(call: Call, store: Store) -> Any:
    """Make ``call`` on ``store`` and return the store's answer (raises what it raises)."""
    op, prefix, name, args = call.op, call.prefix, call.name or "", call.args
    if op == "append_metrics":
        return store.append_metrics(prefix, name, *args)
    if op == "append_logs":
        return store.append_logs(prefix, *args)
    if op == "append_tracks":
        return store.append_tracks(prefix, name, *args)
    if op == "set_params":
        return store.set_params(prefix, *args)
    if op == "open_experiment":
        return store.open_experiment(*args)
    if op == "update_experiment":
        return store.update_experiment(prefix, **args[0])
    if op == "describe_stream":
        return store.describe_stream(prefix, name, *args)
    raise ValueError(f"unknown store call {op!r}")


def is_lasting(exc: BaseException) -> bool:
    """True when retrying cannot help: the store refused the call itself."""
    return isinstance(exc, MLDashError) and not isinstance(exc, StorageError)


def encode_entry(call: Call, url: str | None) -> bytes:
    head = msgspec.json.encode(
        {"op": call.op, "prefix": call.prefix, "name": call.name, "label": call.label, "url": url}
    )
    return head + b"\n" + wire.encode_call(call.op, call.args)


def _header(call: Call, url: str | None, batch_id: str) -> bytes:
    head = {"op": call.op, "prefix": call.prefix, "name": call.name, "label": call.label, "url": url,
            "batchId": batch_id, "lines": True}
    return msgspec.json.encode(head) + b"\n"


def decode_entry(raw: bytes) -> tuple[Call, str | None]:
    """The call in an entry file and the address it was meant for. An open call's
    pieces (one request body per line) become one call; a torn last line is ignored."""
    head, _, body = raw.partition(b"\n")
    header = msgspec.json.decode(head)
    op = header["op"]
    if op not in OPS:
        raise StorageError(f"outbox entry for an unknown store call {op!r}")
    if header.get("lines"):
        if op not in APPEND_OPS:
            raise StorageError(f"outbox entry for {op!r} in pieces")
        records: list[Any] = []
        for line in body.split(b"\n")[:-1]:  # the part after the last newline is torn
            records.extend(wire.decode_call(op, line)[0])
        args: tuple[Any, ...] = (records, header["batchId"])
    else:
        args = wire.decode_call(op, body)
    call = Call(op, header["prefix"], header.get("name"), args, header.get("label") or op)
    return call, header.get("url")


@dataclass
class _OpenCall:
    """An append call still taking records: its ``.part`` file (held open, with an
    ``flock``) and, in memory, the records written to it."""

    call: Call  # its first piece: op, prefix, name, label
    base: str  # file name without suffix
    fd: int
    batch_id: str
    opened: float  # time.monotonic()
    records: list[Any] = field(default_factory=list)
    size: int = 0  # bytes written


class _Entry:
    """A call waiting in the outbox: its file name (None if it could not be written)
    and, while memory allows, the call itself."""

    __slots__ = ("call", "label", "name", "size")

    def __init__(self, name: str | None, call: Call | None, label: str, size: int) -> None:
        self.name = name
        self.call = call
        self.label = label
        self.size = size


class Outbox:
    """An ordered, on-disk queue of store calls for one target (one server)."""

    def __init__(self, folder: str, url: str | None = None, max_in_memory: int = 500_000) -> None:
        """``max_in_memory`` records are kept decoded; beyond that, calls that are safely
        on disk are read back from their file when their turn comes."""
        self.folder = folder
        self.url = url
        self.max_in_memory = max_in_memory
        self._entries: deque[_Entry] = deque()
        self._lock = threading.Lock()
        self._seq = 0
        self._made = False
        self._in_memory = 0
        self._unsynced: list[str] = []
        self._open: dict[tuple[str, str, str | None], _OpenCall] = {}
        self.batch_size = 4096  # records per sealed append call
        self.write_error: str | None = None

    # -- putting ---------------------------------------------------------------------

    def _next_base(self) -> str:
        with self._lock:
            self._seq += 1
            return f"{time.time_ns():020d}-{self._seq:08d}"

    def put(self, call: Call) -> None:
        """Queue ``call`` after the others: on disk first (not fsynced: a killed process
        leaves it in the page cache). If the disk refuses, it is kept in memory only,
        with a warning, so nothing is lost while the process lives.

        An append goes into its stream's open call (one ``write``), which is sealed and
        queued once it holds ``batch_size`` records; :meth:`seal` seals older ones."""
        if call.op in APPEND_OPS:
            self._append(call)
            return
        file_name = self._next_base() + SUFFIX
        name: str | None = None
        try:
            self._ensure_folder()
            atomic_write_bytes(os.path.join(self.folder, file_name), encode_entry(call, self.url), durable=False)
        except (StorageError, msgspec.EncodeError, ValueError, TypeError) as exc:
            self._warn_write(exc)
        else:
            name = file_name
            self._unsynced.append(name)
        self._queue(_Entry(name, call, call.label, len(call)))

    def _warn_write(self, exc: BaseException) -> None:
        if self.write_error is None:
            warnings.warn(f"ml-dash: cannot write the outbox in {self.folder} ({exc}); keeping the data in "
                          "memory", RuntimeWarning, stacklevel=4)
        self.write_error = str(exc)

    def _queue(self, entry: _Entry) -> None:
        with self._lock:
            self._entries.append(entry)
            self._in_memory += entry.size
            if self._in_memory > self.max_in_memory:
                self._release_memory()

    def _append(self, call: Call) -> None:
        """Write the records of ``call`` into its stream's open call (opened if needed)."""
        records, batch_id = call.args
        if not records:
            return
        current = self._open.get((call.op, call.prefix, call.name))
        try:
            piece = wire.encode_call(call.op, (records, current.batch_id if current else batch_id)) + b"\n"
        except (MLDashError, msgspec.EncodeError, ValueError, TypeError) as exc:
            # The wire cannot carry it: keep it in memory, in order; delivery reports it.
            self._warn_write(exc)
            if current is not None:
                self._seal(current)
            self._queue(_Entry(None, call, call.label, len(call)))
            return
        try:
            if current is None:
                current = self._create(call, batch_id)
                piece = _header(call, self.url, batch_id) + piece
            _write_all(current.fd, piece, current.size)
        except (OSError, StorageError) as exc:
            self._warn_write(exc)
            if current is not None:
                self._seal(current)
            self._queue(_Entry(None, call, call.label, len(call)))
            return
        current.size += len(piece)
        current.records.extend(records)
        if len(current.records) >= self.batch_size:
            self._seal(current)

    def _create(self, call: Call, batch_id: str) -> _OpenCall:
        self._ensure_folder()
        base = self._next_base()
        path = os.path.join(self.folder, base + PART)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "still being written", for ml-dash sync
        except OSError:
            pass  # no flock here (some network file systems): sync may seal it early, batch ids dedupe
        current = _OpenCall(call, base, fd, batch_id, time.monotonic())
        with self._lock:
            self._open[(call.op, call.prefix, call.name)] = current
        return current

    def _seal(self, current: _OpenCall) -> None:
        """Rename the open call's file to ``.req`` and queue it as one call."""
        first = current.call
        with self._lock:
            self._open.pop((first.op, first.prefix, first.name), None)
        part = os.path.join(self.folder, current.base + PART)
        name: str | None = current.base + SUFFIX
        try:
            if current.size:
                os.replace(part, os.path.join(self.folder, current.base + SUFFIX))
            else:
                name = None
                os.unlink(part)
        except OSError as exc:
            self._warn_write(exc)
            name = current.base + PART if current.size else None
        finally:
            with self._lock:  # sync() duplicates open descriptors under this lock
                os.close(current.fd)  # after the rename: the flock kept ml-dash sync away until then
        if not current.records:
            return
        if name is not None:
            self._unsynced.append(name)
        call = Call(first.op, first.prefix, first.name, (current.records, current.batch_id), first.label)
        self._queue(_Entry(name, call, call.label, len(call)))

    def seal(self, older_than: float = 0.0) -> int:
        """Seal the open calls opened at least ``older_than`` seconds ago (all: 0);
        returns how many were sealed. Not concurrently with :meth:`put` (the Writer
        calls both under its lock)."""
        now = time.monotonic()
        with self._lock:
            due = [c for c in self._open.values() if now - c.opened >= older_than]
        for current in due:
            self._seal(current)
        return len(due)

    def _ensure_folder(self) -> None:
        if not self._made:
            try:
                os.makedirs(self.folder, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the outbox folder {self.folder}: {exc}") from exc
            self._made = True

    def _release_memory(self) -> None:
        # Newest first: the oldest calls are the next to be sent.
        for entry in reversed(self._entries):
            if self._in_memory <= self.max_in_memory // 2:
                return
            if entry.call is not None and entry.name is not None:
                entry.call = None
                self._in_memory -= entry.size

    def requeue_rejected(self) -> int:
        """Move the calls set aside in ``rejected/`` back into the queue, in the order
        they were made (``ml-dash sync --retry-rejected``, once the cause is fixed);
        returns how many. Batch ids keep a resend from being stored twice."""
        aside = os.path.join(self.folder, REJECTED)
        try:
            names = sorted(n for n in os.listdir(aside) if n.endswith(SUFFIX))
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StorageError(f"cannot read {aside}: {exc}") from exc
        for name in names:
            try:
                os.replace(os.path.join(aside, name), os.path.join(self.folder, name))
            except OSError as exc:
                raise StorageError(f"cannot move {name} out of {aside}: {exc}") from exc
            try:
                os.unlink(os.path.join(aside, name + ".reason.txt"))
            except FileNotFoundError:
                pass
            except OSError:
                pass  # a stale note beside nothing is harmless
        try:
            os.rmdir(aside)
        except OSError:
            pass
        return len(names)

    def adopt_existing(self) -> int:
        """Queue the call files a past run left in the folder; returns how many.

        Open calls (``.part``) that no live process holds are sealed first: a torn last
        line is cut off, one with no complete piece is deleted."""
        try:
            listed = os.listdir(self.folder)
        except FileNotFoundError:
            return 0
        for part in sorted(n for n in listed if n.endswith(PART)):
            _seal_left_behind(os.path.join(self.folder, part))
        try:
            names = sorted(n for n in os.listdir(self.folder) if n.endswith(SUFFIX))
        except FileNotFoundError:
            return 0
        with self._lock:
            known = {e.name for e in self._entries}
            fresh = [n for n in names if n not in known]
            self._entries.extendleft(_Entry(n, None, "", 0) for n in reversed(fresh))
        self._made = True
        return len(fresh)

    # -- taking ----------------------------------------------------------------------

    def __len__(self) -> int:
        """Calls waiting: sealed ones and open ones."""
        return len(self._entries) + len(self._open)

    @property
    def on_disk(self) -> int:
        """Calls waiting that are safely in files (``ml-dash sync`` can send them)."""
        return sum(1 for e in list(self._entries) if e.name is not None) + len(self._open)

    def waiting_by_label(self) -> dict[str, int]:
        """Records waiting, per channel label (calls adopted from disk count as 1)."""
        out: dict[str, int] = {}
        for entry in list(self._entries):
            out[entry.label or "outbox"] = out.get(entry.label or "outbox", 0) + max(entry.size, 1)
        for current in list(self._open.values()):
            label = current.call.label
            out[label] = out.get(label, 0) + len(current.records)
        return out

    def peek(self) -> tuple[Call, str | None] | None:
        """The oldest call and the address it was meant for, or None when empty."""
        with self._lock:
            if not self._entries:
                return None
            entry = self._entries[0]
        if entry.call is not None:
            return entry.call, self.url
        assert entry.name is not None
        try:
            with open(os.path.join(self.folder, entry.name), "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise StorageError(f"cannot read the outbox entry {entry.name}: {exc}") from exc
        try:
            return decode_entry(raw)
        except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"outbox entry {entry.name} is damaged: {exc}") from exc

    def done(self) -> None:
        """The oldest call was delivered: forget it and delete its file."""
        entry = self._pop()
        if entry is not None and entry.name is not None:
            try:
                os.unlink(os.path.join(self.folder, entry.name))
            except FileNotFoundError:
                pass
            except OSError as exc:  # delivered twice later is harmless: batch ids dedupe
                self.write_error = str(exc)

    def reject(self, reason: str) -> str | None:
        """Set the oldest call aside in ``rejected/`` with ``reason``; returns where."""
        entry = self._pop()
        if entry is None or entry.name is None:
            return None
        target_dir = os.path.join(self.folder, REJECTED)
        target = os.path.join(target_dir, entry.name)
        try:
            os.makedirs(target_dir, exist_ok=True)
            os.replace(os.path.join(self.folder, entry.name), target)
            with open(target + ".reason.txt", "w", encoding="utf-8") as fh:
                fh.write(reason + "\n")
        except OSError as exc:
            self.write_error = str(exc)
            return None
        return target

    def _pop(self) -> _Entry | None:
        with self._lock:
            if not self._entries:
                return None
            entry = self._entries.popleft()
            if entry.call is not None:
                self._in_memory -= entry.size
            if entry.name in self._unsynced:
                self._unsynced.remove(entry.name)
            return entry

    def forget_all(self) -> None:
        """Drop every queued call from memory (a forked child: its parent sends them
        and goes on writing its open calls; the child only closes its copies)."""
        with self._lock:
            self._entries.clear()
            self._in_memory = 0
            self._unsynced = []
            opened, self._open = list(self._open.values()), {}
        for current in opened:
            try:
                os.close(current.fd)  # no LOCK_UN: the parent's flock stays
            except OSError:
                pass

    # -- durability and the end ------------------------------------------------------

    def sync(self) -> None:
        """fsync the call files written since the last sync and the open calls
        (``exp.flush()`` and the Writer's periodic fsync)."""
        names, self._unsynced = self._unsynced, []
        with self._lock:  # a seal closes the descriptor under this lock: fsync a duplicate
            fds = [os.dup(c.fd) for c in self._open.values() if c.size]
        for fd in fds:
            try:
                os.fsync(fd)
            except OSError as exc:
                raise StorageError(f"cannot sync an open outbox call in {self.folder}: {exc}") from exc
            finally:
                os.close(fd)
        for name in names:
            try:
                fd = os.open(os.path.join(self.folder, name), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # delivered meanwhile
            except OSError as exc:
                raise StorageError(f"cannot sync the outbox entry {name}: {exc}") from exc
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if names or fds:
            try:
                fd = os.open(self.folder, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise StorageError(f"cannot sync the outbox folder {self.folder}: {exc}") from exc

    def remove_if_empty(self) -> None:
        """Delete the folder when nothing is left in it."""
        try:
            os.rmdir(self.folder)
        except OSError:
            return
        self._made = False


def _write_all(fd: int, data: bytes, size: int) -> None:
    """Append ``data`` at offset ``size``; on failure cut the file back to ``size``."""
    view = memoryview(data)
    offset = size
    try:
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
    except OSError:
        try:
            os.ftruncate(fd, size)
        except OSError:
            pass
        raise


def _seal_left_behind(path: str) -> None:
    """Seal the open call ``path`` of a dead process (one a live process holds is left)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot read the outbox entry {path}: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # its process is alive and still writing it
        except OSError:
            pass
        raw = os.pread(fd, os.fstat(fd).st_size, 0)
        good = raw.rfind(b"\n") + 1
        if raw.count(b"\n", 0, good) < 2:  # no complete piece after the header
            os.unlink(path)
            return
        if good < len(raw):
            os.ftruncate(fd, good)
        os.replace(path, path[: -len(PART)] + SUFFIX)
    except OSError as exc:
        raise StorageError(f"cannot seal the outbox entry {path}: {exc}") from exc
    finally:
        os.close(fd)


@dataclass
class SyncResult:
    """What :func:`deliver_left_behind` did."""

    sent: int = 0
    rejected: int = 0
    left: int = 0
    requeued: int = 0
    errors: list[str] | None = None


def deliver_left_behind(
    spool_root: str,
    make_store: Callable[[str], Store],
    url: str | None = None,
    timeout: float = 30.0,
    retry_rejected: bool = False,
) -> SyncResult:
    """Deliver the calls past runs left under ``spool_root`` (``ml-dash sync``).

    Each outbox goes to ``url``, or to the address its calls were made for;
    ``make_store(url)`` opens the store to deliver to. Delivery stops for an outbox
    when the store stays unreachable past ``timeout`` seconds. ``retry_rejected``
    first puts the calls a store refused back in line (a new token, a fixed owner).
    """
    result = SyncResult(errors=[])
    if not os.path.isdir(spool_root):
        return result
    for host in sorted(os.listdir(spool_root)):
        host_dir = os.path.join(spool_root, host)
        if not os.path.isdir(host_dir):
            continue
        for session in sorted(os.listdir(host_dir)):
            outbox = Outbox(os.path.join(host_dir, session))
            if retry_rejected:
                result.requeued += outbox.requeue_rejected()
            if not outbox.adopt_existing():
                continue
            result.left += _deliver_outbox(outbox, make_store, url, timeout, result)
    return result


def _deliver_outbox(
    outbox: Outbox, make_store: Callable[[str], Store], url: str | None, timeout: float, result: SyncResult
) -> int:
    stores: dict[str, Store] = {}
    deadline = time.monotonic() + timeout
    pause = 0.25
    try:
        while True:
            try:
                taken = outbox.peek()
            except StorageError as exc:
                assert result.errors is not None
                result.errors.append(str(exc))
                return len(outbox)
            if taken is None:
                outbox.remove_if_empty()
                return 0
            call, meant_for = taken
            target = url or meant_for
            if not target:
                return len(outbox)
            store = stores.get(target)
            if store is None:
                store = stores[target] = make_store(target)
            try:
                apply(call, store)
            except Exception as exc:
                if is_lasting(exc):
                    outbox.reject(str(exc))
                    result.rejected += 1
                    continue
                if time.monotonic() + pause >= deadline:
                    assert result.errors is not None
                    result.errors.append(str(exc))
                    return len(outbox)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            outbox.done()
            result.sent += 1
    finally:
        for store in stores.values():
            store.close()
