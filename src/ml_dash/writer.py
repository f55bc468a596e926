"""The background Writer: batching, retries, backpressure and a bounded close.

Callers append records to a channel's deque (thread-safe, no lock on the hot path) and
return. One thread per experiment drains the deques in batches of ``batch_size`` and
hands each batch to the store. It wakes every ``flush_interval / 2`` seconds, or early
when a channel holds a full batch, so nothing waits in memory much longer than
``flush_interval``.

When the store fails (disk full, folder read-only, server down) the batch is kept in
the channel's ``pending`` list and retried with backoff; later batches queue behind it
so order is kept. Memory stays bounded: past ``max_pending`` records the newest are
dropped and counted. ``close`` waits at most ``close_timeout`` seconds and reports what
was not written. Nothing here ever raises into the training loop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat, starmap
from typing import Any

from .errors import InvalidValueError, MLDashError

log = logging.getLogger("ml_dash")

BATCH_SIZE = 4096
WAKE_MASK = BATCH_SIZE - 1  # callers poke the writer when len(queue) & WAKE_MASK == 0
MAX_QUEUE = 16 * BATCH_SIZE  # beyond this the caller briefly yields to the writer
HARD_QUEUE = 1_000_000  # beyond this (writer stuck) new records are dropped and counted


class Batch(list[Any]):
    """Records sent together, with an id the store uses to never store them twice."""

    __slots__ = ("id",)

    def __init__(self, items: Any = (), batch_id: str | None = None) -> None:
        super().__init__(items)
        self.id = batch_id or new_batch_id()


_session = os.urandom(6).hex()
_counter = iter(range(1 << 62))


def new_batch_id() -> str:
    """Unique per process run and batch: ``<random session>-<counter>``."""
    return f"{_session}{os.getpid():x}-{next(_counter):x}"


@dataclass
class Channel:
    """One stream of records into the store: a metric, the logs, a track topic, control."""

    kind: str
    name: str
    send: Callable[[Batch], Any]
    queue: deque[Any] = field(default_factory=deque)
    pending: deque[Batch] = field(default_factory=deque)
    pending_count: int = 0
    dropped: int = 0
    rejected: int = 0
    written: int = 0
    dirty: bool = False
    columns: set[str] = field(default_factory=set)
    # Failure state is per channel: one full or read-only file must not hold up the others.
    failing: bool = False
    inflight: int = 0
    retry_at: float = 0.0
    backoff: float = 0.0

    @property
    def label(self) -> str:
        return self.kind if not self.name else f"{self.kind} {self.name!r}"


@dataclass
class CloseReport:
    """What ``close`` could not deliver, per channel label."""

    unwritten: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    spooled: int = 0
    spool_dir: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.unwritten or self.dropped or self.rejected or self.spooled)

    def __str__(self) -> str:
        if self.ok:
            return "everything was written"
        parts = []
        for title, counts in (("not written", self.unwritten), ("dropped", self.dropped), ("rejected", self.rejected)):
            if counts:
                parts.append(f"{title}: " + ", ".join(f"{n} {label}" for label, n in counts.items()))
        if self.spooled:
            parts.append(f"{self.spooled} requests still spooled in {self.spool_dir} (send them with `ml-dash sync`)")
        if self.last_error:
            parts.append(f"last error: {self.last_error}")
        return "; ".join(parts)


_live_writers: weakref.WeakSet[Writer] = weakref.WeakSet()


class Writer:
    """Drains channels into a store on a background thread."""

    def __init__(
        self,
        name: str,
        flush_interval: float = 0.5,
        batch_size: int = BATCH_SIZE,
        max_pending: int = 500_000,  # about 100 MB of small points while the store fails
        on_flush: Callable[[Channel], None] | None = None,
    ) -> None:
        if flush_interval <= 0:
            raise InvalidValueError(f"flush_interval must be > 0 seconds, got {flush_interval!r}")
        self.name = name
        self.flush_interval = float(flush_interval)
        self.batch_size = batch_size
        self.max_pending = max_pending
        self._on_flush = on_flush
        self._channels: dict[tuple[str, str], Channel] = {}
        self._order: list[Channel] = []
        self._event = threading.Event()
        self._lock = threading.RLock()
        self._stopping = False
        self._pending_total = 0
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._start_thread()
        _live_writers.add(self)

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"ml-dash-writer:{self.name}", daemon=True)
        self._thread.start()

    # -- channels ------------------------------------------------------------------------

    def channel(self, kind: str, name: str, send: Callable[[Batch], Any]) -> Channel:
        """The channel for (kind, name), created on first use. Control comes first."""
        key = (kind, name)
        ch = self._channels.get(key)
        if ch is None:
            with self._lock:
                ch = self._channels.get(key)
                if ch is None:
                    ch = Channel(kind, name, send)
                    self._channels[key] = ch
                    self._order = sorted(self._channels.values(), key=lambda c: c.kind != "control")
        return ch

    def poke(self, queue: deque[Any]) -> None:
        """Called by the hot path every BATCH_SIZE records: wake the writer, apply backpressure."""
        self._event.set()
        size = len(queue)
        if size >= MAX_QUEUE and threading.current_thread() is not self._thread:
            # Let the writer catch up, for a few milliseconds at most per call.
            deadline = time.monotonic() + 0.005
            while len(queue) >= MAX_QUEUE // 2 and time.monotonic() < deadline:
                time.sleep(0.0002)
            if len(queue) >= HARD_QUEUE:
                for ch in self._order:
                    if ch.queue is queue:
                        while len(queue) > HARD_QUEUE - BATCH_SIZE:
                            queue.pop()
                            ch.dropped += 1
                        break

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        tick = self.flush_interval / 2
        while True:
            self._event.wait(tick)
            self._event.clear()
            try:
                self.drain()
            except Exception as exc:
                log.exception("ml-dash writer: unexpected error: %s", exc)
            if self._stopping:
                return

    def drain(self, only: Channel | None = None) -> None:
        """Write everything queued now (all channels, or one and the control channel)."""
        with self._lock:
            for ch in self._order:
                if only is not None and ch is not only and ch.kind != "control":
                    continue
                self._drain_channel(ch)

    def _drain_channel(self, ch: Channel) -> None:
        queue = ch.queue
        while queue:
            n = min(len(queue), self.batch_size)
            batch = Batch(starmap(queue.popleft, repeat((), n)))
            if ch.pending or (ch.failing and time.monotonic() < ch.retry_at):
                self._keep(ch, batch)
            else:
                self._deliver(ch, batch)
        if ch.pending and time.monotonic() >= ch.retry_at:
            self._retry(ch)

    def _deliver(self, ch: Channel, batch: Batch) -> bool:
        ch.inflight = len(batch)
        try:
            ch.send(batch)
        except InvalidValueError as exc:
            if len(batch) > 1:
                # One bad record must not cost the others: send them one by one.
                for i, item in enumerate(batch):
                    if not self._deliver(ch, Batch([item], f"{batch.id}-{i}")):
                        if i + 1 < len(batch):
                            self._keep(ch, Batch(batch[i + 1 :], f"{batch.id}-r{i}"))
                        return False
                return True
            ch.rejected += len(batch)
            self.last_error = str(exc)
            warnings.warn(f"ml-dash: a record of {ch.label} was set aside: {exc}", RuntimeWarning, stacklevel=2)
            return True
        except (OSError, MLDashError) as exc:
            self._note_failure(ch, exc)
            self._keep(ch, batch)
            return False
        except Exception as exc:  # a bug must neither loop nor kill the writer
            ch.rejected += len(batch)
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("ml-dash: %d records of %s set aside after an unexpected error", len(batch), ch.label)
            return True
        finally:
            ch.inflight = 0
        ch.written += len(batch)
        ch.dirty = True
        if ch.failing:
            ch.failing = False
            ch.backoff = 0.0
            warnings.warn(f"ml-dash: writing works again ({ch.label}); catching up", RuntimeWarning, stacklevel=2)
        return True

    def _retry(self, ch: Channel) -> None:
        while ch.pending:
            batch = ch.pending.popleft()
            ch.pending_count -= len(batch)
            self._pending_total -= len(batch)
            before = len(ch.pending)
            if not self._deliver(ch, batch):
                # _deliver put what it could not write at the end; move it back to the front.
                ch.pending.rotate(len(ch.pending) - before)
                return

    def _keep(self, ch: Channel, batch: Batch) -> None:
        room = self.max_pending - self._pending_total
        if room < len(batch):
            ch.dropped += len(batch) - max(room, 0)
            batch = Batch(batch[: max(room, 0)], batch.id)
        if batch:
            ch.pending.append(batch)
            ch.pending_count += len(batch)
            self._pending_total += len(batch)

    def _note_failure(self, ch: Channel, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        ch.backoff = min(max(ch.backoff * 2, self.flush_interval), 10.0)
        ch.retry_at = time.monotonic() + ch.backoff
        if not ch.failing:
            ch.failing = True
            warnings.warn(
                f"ml-dash: cannot write {ch.label} ({exc}); keeping the data in memory and retrying",
                RuntimeWarning,
                stacklevel=2,
            )

    # -- flush and close -----------------------------------------------------------------

    def flush(self, only: Channel | None = None) -> None:
        """Write what is queued now from the calling thread (read-your-writes)."""
        for ch in self._order:
            ch.retry_at = 0.0  # an explicit flush retries at once
        self.drain(only)

    def finish_streams(self) -> None:
        """Let the store refresh per-stream metadata of channels written since last time."""
        if self._on_flush is None:
            return
        with self._lock:
            for ch in self._order:
                if ch.dirty and ch.kind != "control":
                    try:
                        self._on_flush(ch)
                        ch.dirty = False
                    except (OSError, MLDashError) as exc:
                        self.last_error = f"{type(exc).__name__}: {exc}"

    def close(self, timeout: float = 30.0) -> CloseReport:
        """Drain, stop the thread, and report what could not be written. Waits <= timeout."""
        deadline = time.monotonic() + max(timeout, 0.0)
        self._stopping = True
        self._event.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(deadline - time.monotonic(), 0.0))
        # Final attempts from this thread while time remains.
        while time.monotonic() < deadline:
            for ch in self._order:
                ch.retry_at = 0.0
            if not self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.001)):
                break
            try:
                self.drain()
            finally:
                self._lock.release()
            if self._pending_total == 0 and not any(ch.queue for ch in self._order):
                break
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.0)))
        if self._pending_total == 0 and self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.01)):
            try:
                self.finish_streams()
            finally:
                self._lock.release()
        failing = any(ch.failing for ch in self._order)
        report = CloseReport(last_error=self.last_error if failing else None)
        for ch in self._order:
            left = ch.pending_count + len(ch.queue) + ch.inflight
            if left:
                report.unwritten[ch.label] = left
            if ch.dropped:
                report.dropped[ch.label] = ch.dropped
            if ch.rejected:
                report.rejected[ch.label] = ch.rejected
        _live_writers.discard(self)
        return report

    def _after_fork_in_child(self) -> None:
        # The parent owns what was queued before the fork; the child starts empty.
        self._lock = threading.RLock()
        self._event = threading.Event()
        for ch in self._order:
            ch.queue.clear()
            ch.pending.clear()
            ch.pending_count = 0
        self._pending_total = 0
        if not self._stopping:
            self._start_thread()


def _reinit_after_fork() -> None:
    global _session
    _session = os.urandom(6).hex()
    for writer in list(_live_writers):
        writer._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
