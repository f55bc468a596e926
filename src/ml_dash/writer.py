"""The background Writer: batching, retries, backpressure, the outbox and a bounded close.

Callers append records to a channel's deque (thread-safe, no lock on the hot path) and
return. One thread per experiment drains the deques in batches of ``batch_size`` and
turns each batch into a store call (:class:`ml_dash.outbox.Call`).

Two horizons (see README, "Durability"):

- *Process death* (SIGKILL, the OOM killer): what was logged reaches the operating
  system (a ``write``, no fsync) within about 20 ms (``handoff_interval``, 10 ms, plus
  the wait for the GIL). With the
  GIL, a background thread gets to run only every switch interval (5 ms) while a
  pure-Python loop logs, so in such a tight loop the logging thread itself hands its
  channel over (:meth:`Writer.poke`) every ``HANDOFF_EVERY`` records at first, every
  1/2**WINDOW_SHIFT of the burst later on, without ever waiting for a file lock. The
  writer thread wakes every ``handoff_interval`` (every ``TIGHT_POLL`` while a loop is
  tight, and when a batch is full) and hands over the rest, among it the last window
  of a loop that has stopped (about 0.1 ms after it stops: a kill within that moment
  loses it).
- *Machine death* (power loss): the thread fsyncs what was written every
  ``flush_interval`` (and ``exp.flush()`` and close do).

A call goes first to the ``primary`` store (the local folder), when there is one, and
then, when there is a ``replica`` (the server), into the on-disk :class:`Outbox`, which
the same thread delivers in order. When a store fails (disk full, folder read-only,
server down) the call waits and is retried with one backoff policy
(:class:`Backoff`); later calls queue behind it so order is kept. A refusal for good
(anything but ``StorageError``) is set aside and counted. Memory stays bounded: past
``max_pending`` records the newest are dropped and counted (the outbox keeps its own
bound, with everything on disk). ``close`` waits at most ``close_timeout`` seconds and
reports what was not delivered. Nothing here ever raises into the training loop.
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
from .outbox import REJECTED, Call, Outbox, apply, is_lasting
from .records import merge_track_entries
from .stores.base import Store
from .stores.jsonl import WouldWaitError, without_waiting
from .stores.remote import ServerUnavailableError

log = logging.getLogger("ml_dash")

BATCH_SIZE = 4096
# The logging thread pokes the writer when len(queue) & HANDOFF_MASK == 0. 32: a loop
# killed right after its last point loses at most the points logged since the last
# hand-off, under 0.5 % of a 10,000-point loop whatever its length. In a long burst the
# window grows to 1/2**WINDOW_SHIFT of what the burst logged so far (at most a batch):
# each hand-off has fixed costs (a lock, two flocks, fstat, write: ≈ 15 µs), so past the
# first ~16,000 points fewer than 1 % of log() calls pay for one, and what the last
# window can lose stays under 0.2 % of the burst.
HANDOFF_EVERY = 32
HANDOFF_MASK = HANDOFF_EVERY - 1
WINDOW_SHIFT = 9
TIGHT_LOOP = 0.00025  # seconds between pokes (32 records): faster is a loop that holds the GIL
TIGHT_POLL = 0.002  # the writer's period while a stream logs in a tight loop (for its last window)
# The writer thread's period (seconds). With the wait for the GIL (at most the 5 ms
# switch interval) and its own work, records reach the OS within about 20 ms.
HANDOFF_INTERVAL = 0.01
INLINE_WAIT = 0.005  # seconds poke may wait for the writer thread to end its round...
STUCK_AFTER = 0.05  # ... unless nothing was handed over for this long (a lock, a slow disk)
BACKPRESSURE_MASK = BATCH_SIZE - 1  # backpressure is checked every BATCH_SIZE records
MAX_QUEUE = 16 * BATCH_SIZE  # beyond this the caller briefly yields to the writer
HARD_QUEUE = 1_000_000  # beyond this (writer stuck) new records are dropped and counted
MAX_BACKOFF = 10.0


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
class Backoff:
    """The one retry policy: wait ``base``, doubling to ``MAX_BACKOFF``, or what the
    store asked for (``Retry-After``); an explicit flush retries at once."""

    base: float
    cap: float = MAX_BACKOFF
    failing: bool = False
    delay: float = 0.0
    retry_at: float = 0.0

    def due(self) -> bool:
        return not self.failing or time.monotonic() >= self.retry_at

    def fail(self, exc: BaseException) -> bool:
        """Note a failure; True when this starts a failing spell (warn once)."""
        self.delay = min(max(self.delay * 2, self.base), self.cap)
        asked = exc.retry_after if isinstance(exc, ServerUnavailableError) else None
        wait = self.delay if asked is None else max(self.delay, asked)
        self.retry_at = time.monotonic() + min(wait, 60.0)
        started, self.failing = not self.failing, True
        return started

    def succeed(self) -> bool:
        """Note a success; True when this ends a failing spell."""
        ended, self.failing, self.delay = self.failing, False, 0.0
        return ended


@dataclass
class Channel:
    """One stream of records into the store: a metric, the logs, a track topic, control.

    The control channel carries :class:`Call` objects (open, update, params,
    describe); the others carry records that become one call per batch.
    """

    kind: str
    name: str
    make_call: Callable[[Batch], Call] | None
    queue: deque[Any] = field(default_factory=deque)
    pending: deque[Batch] = field(default_factory=deque)
    pending_count: int = 0
    dropped: int = 0
    rejected: int = 0
    written: int = 0
    inflight: int = 0
    burst: int = 0  # records logged since the stream was last quiet for a handoff_interval (≈)
    poked_at: float = 0.0
    # Failure state is per channel: one full or read-only file must not hold up the others.
    backoff: Backoff = field(default_factory=lambda: Backoff(0.5))

    @property
    def label(self) -> str:
        return self.kind if not self.name else f"{self.kind} {self.name!r}"

    def calls(self, batch: Batch) -> list[Call]:
        return list(batch) if self.make_call is None else [self.make_call(batch)]


@dataclass
class CloseReport:
    """What ``close`` could not deliver, per channel label (``metrics 'train'``, ``logs``).

    - ``unwritten``: only in memory, lost with the process;
    - ``rejected``: records set aside as unstorable (an invalid value);
    - ``refused``: refused for good by the server (a bad token, another owner's
      prefix), kept in ``refused_dir``: ``ml-dash sync --retry-rejected`` resends them;
    - ``queued``: waiting in the outbox on disk (``spool_dir``, ``spooled`` files),
      sent later by ``ml-dash sync``;
    - ``dropped``: over the memory bound while the store failed.

    ``ok`` only when all are empty: refused or queued data was not written.
    """

    unwritten: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    spooled: int = 0  # calls (files) waiting in the outbox
    spool_dir: str | None = None
    refused_dir: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.unwritten or self.dropped or self.rejected or self.refused or self.queued or self.spooled)

    def __str__(self) -> str:
        if self.ok:
            return "everything was written"
        parts = []
        for title, counts in (("not written", self.unwritten), ("dropped", self.dropped),
                              ("rejected as invalid", self.rejected)):
            if counts:
                parts.append(f"{title}: " + ", ".join(f"{n} {label}" for label, n in counts.items()))
        if self.refused:
            what = ", ".join(f"{n} {label}" for label, n in self.refused.items())
            parts.append(f"REFUSED by the server, not stored: {what} (kept in {self.refused_dir}; after fixing the "
                         "cause, resend with `ml-dash sync --retry-rejected`)")
        if self.spooled:
            what = ", ".join(f"{n} {label}" for label, n in self.queued.items())
            parts.append(f"{self.spooled} requests still spooled in {self.spool_dir} ({what}; send them with "
                         "`ml-dash sync`)")
        if self.last_error:
            parts.append(f"last error: {self.last_error}")
        return "; ".join(parts)


_live_writers: weakref.WeakSet[Writer] = weakref.WeakSet()
OnResult = Callable[[Call, Any], None]


class Writer:
    """Drains channels into the stores of one experiment on a background thread."""

    def __init__(
        self,
        prefix: str,
        primary: Store | None,
        *,
        replica: Store | None = None,
        outbox: Outbox | None = None,
        flush_interval: float = 0.5,
        batch_size: int = BATCH_SIZE,
        max_pending: int = 500_000,  # about 100 MB of small points while the store fails
        on_result: OnResult | None = None,
        handoff_interval: float = HANDOFF_INTERVAL,
        retry_base_delay: float | None = None,
        retry_max_delay: float | None = None,
    ) -> None:
        """``primary`` is written directly (None in remote-only mode); calls for the
        ``replica`` go through ``outbox``. ``on_result(call, answer)`` sees the answer
        of the store that is read from (the primary, else the replica).

        Records reach the stores (a ``write``) within about ``handoff_interval``
        seconds (at most ``flush_interval``); what was written is fsynced every
        ``flush_interval`` seconds. While a store fails, a channel retries after
        ``retry_base_delay`` seconds (default ``flush_interval``), doubling up to
        ``retry_max_delay`` (default ``MAX_BACKOFF``)."""
        if flush_interval <= 0:
            raise InvalidValueError(f"flush_interval must be > 0 seconds, got {flush_interval!r}")
        if (replica is None) != (outbox is None) or (primary is None and replica is None):
            raise ValueError("a Writer needs a primary store, or a replica with its outbox, or both")
        self.prefix = prefix
        self.primary = primary
        self.replica = replica
        self.outbox = outbox
        self.flush_interval = float(flush_interval)
        self.handoff_interval = min(float(handoff_interval), self.flush_interval)
        self.batch_size = batch_size
        if outbox is not None:
            outbox.batch_size = batch_size
        self.max_pending = max_pending
        self._retry_base = float(retry_base_delay) if retry_base_delay is not None else self.flush_interval
        self._retry_cap = float(retry_max_delay) if retry_max_delay is not None else MAX_BACKOFF
        self._on_result = on_result
        self._channels: dict[tuple[str, str], Channel] = {}
        self._order: list[Channel] = []
        self._by_queue: dict[int, Channel] = {}  # id(channel.queue) -> channel, for poke
        self._progress_at = time.monotonic()  # when a batch was last handed over
        self._tight_at = 0.0  # when a stream last poked in a tight loop
        self._unsynced = False  # written since the last fsync
        self._syncing = False  # a periodic fsync is running
        self._synced_at = time.monotonic()
        self._sync_backoff = Backoff(self.flush_interval)
        self._event = threading.Event()
        self._lock = threading.RLock()
        self._stopping = False
        self._pending_total = 0
        self._outbox_backoff = Backoff(min(self.flush_interval, 0.1))
        self._outbox_rejected: dict[str, int] = {}
        # Delivery to the replica has its own thread and lock, so a slow or hung server
        # never holds up writing to the primary store and the outbox.
        self._send_lock = threading.Lock()
        self._send_event = threading.Event()
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        self._start_threads()
        _live_writers.add(self)

    def _start_threads(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"ml-dash-writer:{self.prefix}", daemon=True)
        self._thread.start()
        if self.outbox is not None:
            self._sender = threading.Thread(target=self._send_loop, name=f"ml-dash-sender:{self.prefix}",
                                            daemon=True)
            self._sender.start()

    # -- channels ------------------------------------------------------------------------

    def channel(self, kind: str, name: str = "") -> Channel:
        """The channel for (kind, name), created on first use. Control comes first.

        ``kind`` is ``control`` (items are :class:`Call`), ``metrics`` (point dicts),
        ``logs`` (LogRecord) or ``tracks`` (entry dicts, merged by timestamp).
        """
        key = (kind, name)
        ch = self._channels.get(key)
        if ch is None:
            with self._lock:
                ch = self._channels.get(key)
                if ch is None:
                    ch = Channel(kind, name, self._call_maker(kind, name))
                    ch.backoff = Backoff(self._retry_base, max(self._retry_cap, self._retry_base))
                    self._channels[key] = ch
                    self._by_queue[id(ch.queue)] = ch
                    self._order = sorted(self._channels.values(), key=lambda c: c.kind != "control")
        return ch

    def _call_maker(self, kind: str, name: str) -> Callable[[Batch], Call] | None:
        prefix, label = self.prefix, kind if not name else f"{kind} {name!r}"
        if kind == "control":
            return None
        if kind == "metrics":
            return lambda batch: Call("append_metrics", prefix, name, (list(batch), batch.id), label)
        if kind == "logs":
            return lambda batch: Call("append_logs", prefix, None, (list(batch), batch.id), label)
        if kind == "tracks":
            return lambda batch: Call("append_tracks", prefix, name, (merge_track_entries(batch), batch.id), label)
        raise ValueError(f"unknown channel kind {kind!r}")

    def poke(self, queue: deque[Any]) -> None:
        """Called by the hot path every HANDOFF_EVERY records: hand the channel over now,
        from the calling thread; wake the writer; apply backpressure. Never raises and
        never waits for a file lock; waits at most INLINE_WAIT for the writer thread to
        end its round (not at all while the writer is stuck), then leaves the records
        to it."""
        now = time.monotonic()
        size = len(queue)
        ch = self._by_queue.get(id(queue))
        if ch is not None and ch.make_call is not None:
            gap, ch.poked_at = now - ch.poked_at, now
            if gap > self.handoff_interval:
                ch.burst = 0  # quiet for a while: a new burst starts with small windows
            ch.burst += HANDOFF_EVERY
            # Only a tight loop needs the inline hand-off: one that gives the GIL away
            # (numpy, a GPU, I/O) lets the writer thread run at once. The writer is not
            # woken after an inline hand-off (it polls every TIGHT_POLL while a loop is
            # tight): waking it would make it contend for the lock and the GIL with this
            # thread; it is woken when a batch is full.
            if gap < TIGHT_LOOP:
                self._tight_at = now
                if size >= min(ch.burst >> WINDOW_SHIFT, self.batch_size) and not ch.pending:
                    self._hand_off_inline(ch, now)
            elif size >= self.batch_size:
                self._event.set()
        else:
            self._event.set()
        if size >= MAX_QUEUE and not size & BACKPRESSURE_MASK and threading.current_thread() is not self._thread:
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

    def _hand_off_inline(self, ch: Channel, now: float) -> None:
        # The writer thread may hold the lock while it waits for the GIL this thread
        # holds: a short timed wait releases the GIL and lets it end its round. But when
        # it has handed nothing over for STUCK_AFTER (blocked on another process's
        # lock, a stalled disk), only try.
        wait = INLINE_WAIT if now - self._progress_at < STUCK_AFTER else 0.0
        if self._lock.acquire(True, wait):
            try:
                self._hand_off(ch)
            except Exception as exc:  # a bug must not reach the training loop
                log.exception("ml-dash: inline hand-off failed: %s", exc)
            finally:
                self._lock.release()

    def _hand_off(self, ch: Channel) -> None:
        """Write what ``ch`` holds now, on the caller's thread, without waiting for any
        lock (the caller holds ``_lock``). What cannot be written without waiting goes
        back to the front of the queue for the writer thread; other failures take the
        writer's usual path (kept, retried with backoff)."""
        queue = ch.queue
        with without_waiting():
            while queue and not ch.pending and ch.backoff.due():
                n = min(len(queue), self.batch_size)
                batch = Batch(starmap(queue.popleft, repeat((), n)))
                try:
                    self._deliver(ch, batch, inline=True)
                except WouldWaitError:
                    queue.extendleft(reversed(batch))  # only appends run meanwhile: order kept
                    return

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            # While a stream logs in a tight loop, come back soon: its last window (the
            # records after the last inline hand-off) is this thread's to write.
            tight = time.monotonic() - self._tight_at < TIGHT_POLL
            self._event.wait(TIGHT_POLL if tight else self.handoff_interval)
            self._event.clear()
            try:
                self.drain(deliver=False)
                if self.outbox is not None:
                    with self._lock:  # the logging thread may be appending to an open call
                        sealed = self.outbox.seal(self.flush_interval)
                    if sealed:
                        self._send_event.set()
                if (self._unsynced and not self._syncing and self._sync_backoff.due()
                        and time.monotonic() - self._synced_at >= self.flush_interval):
                    # On a thread of its own: an fsync can take tens of milliseconds on a
                    # busy disk, and hand-overs must not wait for it.
                    self._syncing = True
                    threading.Thread(target=self._periodic_sync, name=f"ml-dash-fsync:{self.prefix}",
                                     daemon=True).start()
            except Exception as exc:
                log.exception("ml-dash writer: unexpected error: %s", exc)
            if self._stopping:
                return

    def _periodic_sync(self) -> None:
        """fsync what was written (machine-death horizon), outside ``_lock``: hand-overs
        go on meanwhile. A failure warns once per failing spell."""
        self._unsynced = False
        self._synced_at = time.monotonic()
        try:
            if self.primary is not None:
                self.primary.sync(self.prefix, refresh=False)
            if self.outbox is not None:
                self.outbox.sync()
        except (OSError, MLDashError) as exc:
            self._unsynced = True
            self._note_failure(self._sync_backoff, "fsync the data", exc)
            return
        except Exception as exc:  # a bug must not kill the thread silently
            log.exception("ml-dash: periodic fsync failed: %s", exc)
            return
        finally:
            self._syncing = False
        if self._sync_backoff.succeed():
            warnings.warn("ml-dash: fsync works again", RuntimeWarning, stacklevel=2)

    def _send_loop(self) -> None:
        while not self._stopping:
            backoff = self._outbox_backoff
            wait = max(backoff.retry_at - time.monotonic(), 0.01) if backoff.failing else self.flush_interval
            self._send_event.wait(wait)
            self._send_event.clear()
            if self._stopping:
                return
            try:
                self.deliver()
            except Exception as exc:
                log.exception("ml-dash sender: unexpected error: %s", exc)

    def drain(self, only: Channel | None = None, deliver: bool = True) -> None:
        """Write everything queued now (all channels, or one and the control channel),
        then, with ``deliver``, send what waits in the outbox from this thread."""
        with self._lock:
            for ch in self._order:
                if only is not None and ch is not only and ch.kind != "control":
                    continue
                self._drain_channel(ch)
        if self.outbox is not None and len(self.outbox):
            if deliver:
                self.deliver()
            else:
                self._send_event.set()

    def deliver(self, timeout: float = -1) -> bool:
        """Send the outbox to the replica (waits ``timeout`` s for the sender's turn;
        -1: as long as it takes). False when the turn did not come."""
        if not self._send_lock.acquire(timeout=timeout):
            return False
        try:
            self._send_outbox()
        finally:
            self._send_lock.release()
        return True

    def _drain_channel(self, ch: Channel) -> None:
        queue = ch.queue
        while queue:
            n = min(len(queue), self.batch_size)
            batch = Batch(starmap(queue.popleft, repeat((), n)))
            if ch.pending or not ch.backoff.due():
                self._keep(ch, batch)
            else:
                self._deliver(ch, batch)
        if ch.pending and ch.backoff.due():
            self._retry(ch)

    def _deliver(self, ch: Channel, batch: Batch, inline: bool = False) -> bool:
        """Hand ``batch`` to the primary store (if any) and the outbox (if any).

        ``inline`` (the logging thread, under ``without_waiting``): WouldWaitError
        propagates, with nothing of the batch written."""
        ch.inflight = len(batch)
        try:
            if ch.make_call is None:
                while batch:  # control calls leave the batch as they succeed: a retry never repeats one
                    self._hand_over(batch[0])
                    batch.pop(0)
            else:
                self._hand_over(ch.make_call(batch))
        except WouldWaitError:
            if inline:
                raise
            self._keep(ch, batch)  # cannot happen off the inline path; keep it anyway
            return False
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
            self._note_failure(ch.backoff, f"write {ch.label}", exc)
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
        self._unsynced = True
        self._progress_at = time.monotonic()
        if ch.backoff.succeed():
            warnings.warn(f"ml-dash: writing works again ({ch.label}); catching up", RuntimeWarning, stacklevel=2)
        return True

    def _hand_over(self, call: Call) -> None:
        if self.primary is not None:
            answer = apply(call, self.primary)
            if self._on_result is not None:
                self._on_result(call, answer)
        if self.outbox is not None:
            self.outbox.put(call)

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

    def _note_failure(self, backoff: Backoff, what: str, exc: BaseException, kept: str = "the data") -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if backoff.fail(exc):
            warnings.warn(f"ml-dash: cannot {what} ({exc}); keeping {kept} and retrying", RuntimeWarning,
                          stacklevel=3)

    # -- the outbox ----------------------------------------------------------------------

    def _send_outbox(self) -> None:
        """Deliver outbox calls in order to the replica until one fails or none is left."""
        outbox, replica = self.outbox, self.replica
        if outbox is None or replica is None or not self._outbox_backoff.due():
            return
        while True:
            try:
                taken = outbox.peek()
            except MLDashError as exc:  # a damaged entry file: set it aside, go on
                self._set_aside(outbox, "outbox", 1, str(exc))
                continue
            if taken is None:
                return
            call = taken[0]
            try:
                answer = apply(call, replica)
            except Exception as exc:
                if is_lasting(exc) or not isinstance(exc, OSError | MLDashError):
                    self._set_aside(outbox, call.label, len(call), f"{type(exc).__name__}: {exc}")
                    continue
                self._note_failure(self._outbox_backoff, f"deliver to {outbox.url or 'the server'}", exc,
                                   f"{len(outbox)} calls in {outbox.folder}")
                return
            outbox.done()
            if self.primary is None and self._on_result is not None:
                self._on_result(call, answer)
            if self._outbox_backoff.succeed():
                warnings.warn(f"ml-dash: {outbox.url or 'the server'} answers again; sending what waited",
                              RuntimeWarning, stacklevel=2)

    def _set_aside(self, outbox: Outbox, label: str, count: int, reason: str) -> None:
        self.last_error = reason
        self._outbox_rejected[label] = self._outbox_rejected.get(label, 0) + count
        where = outbox.reject(reason)
        place = f"; set aside in {where}" if where else ""
        warnings.warn(f"ml-dash: the server refused {label} for good ({reason}){place}", RuntimeWarning,
                      stacklevel=3)

    # -- flush and close -----------------------------------------------------------------

    def flush(self, only: Channel | None = None) -> None:
        """Write what is queued now from the calling thread (read-your-writes): into the
        primary store, or, when there is none, through the outbox to the replica."""
        for ch in self._order:
            ch.backoff.retry_at = 0.0  # an explicit flush retries at once
        if self.primary is None:
            self._outbox_backoff.retry_at = 0.0
            with self._lock:
                self.drain(only, deliver=False)
                assert self.outbox is not None
                self.outbox.seal()  # a read must see the records still in open calls
        self.drain(only, deliver=self.primary is None)

    def hand_over(self, only: Channel) -> None:
        """Write ``only`` (and the control calls) into the primary store and the outbox
        now, from the calling thread; the network is left to the sender's thread, so
        this never waits for a server."""
        self.drain(only, deliver=False)

    def sync(self) -> None:
        """Make what was handed over durable: fsync the primary's files and the outbox."""
        self._unsynced = False
        self._synced_at = time.monotonic()
        if self.primary is not None:
            self.primary.sync(self.prefix)
        if self.outbox is not None:
            self.outbox.sync()

    def close(self, timeout: float = 30.0) -> CloseReport:
        """Drain, deliver, stop the thread, and report what could not be delivered.

        Waits at most ``timeout`` seconds. The stores stay open (their owner closes them).
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        self._stopping = True
        self._event.set()
        self._send_event.set()
        for thread in (self._thread, self._sender):
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(deadline - time.monotonic(), 0.0))
        # Final attempts from this thread while time remains.
        while time.monotonic() < deadline:
            for ch in self._order:
                ch.backoff.retry_at = 0.0
            self._outbox_backoff.retry_at = 0.0
            if not self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.001)):
                break
            try:
                self.drain(deliver=False)
                if self.outbox is not None:
                    self.outbox.seal()
            finally:
                self._lock.release()
            if self.outbox is not None and not self.deliver(max(deadline - time.monotonic(), 0.001)):
                break
            if self._settled():
                break
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.0)))
        _live_writers.discard(self)
        return self._report()

    def _settled(self) -> bool:
        return self._pending_total == 0 and not any(ch.queue for ch in self._order) and not self.outbox

    def _report(self) -> CloseReport:
        report = CloseReport(last_error=self.last_error)
        for ch in self._order:
            left = ch.pending_count + len(ch.queue) + ch.inflight
            if left:
                report.unwritten[ch.label] = left
            if ch.dropped:
                report.dropped[ch.label] = ch.dropped
            if ch.rejected:
                report.rejected[ch.label] = ch.rejected
        outbox = self.outbox
        if self._outbox_rejected and outbox is not None:
            report.refused = dict(self._outbox_rejected)
            report.refused_dir = os.path.join(outbox.folder, REJECTED)
        if outbox is not None and len(outbox):
            report.spooled = outbox.on_disk
            report.spool_dir = outbox.folder if report.spooled else None
            report.queued = outbox.waiting_by_label()
            if len(outbox) > report.spooled:  # kept in memory only: the disk refused them
                report.unwritten["outbox"] = len(outbox) - report.spooled
        if report.ok:
            report.last_error = None
        return report

    def _after_fork_in_child(self) -> None:
        # The parent owns what was queued before the fork; the child starts empty.
        self._lock = threading.RLock()
        self._event = threading.Event()
        self._by_queue = {id(ch.queue): ch for ch in self._order}
        self._syncing = False  # the parent's fsync thread is not here
        self._send_lock = threading.Lock()
        self._send_event = threading.Event()
        for ch in self._order:
            ch.queue.clear()
            ch.pending.clear()
            ch.pending_count = 0
        self._pending_total = 0
        if self.outbox is not None:
            self.outbox.forget_all()
        if not self._stopping:
            self._start_threads()


def _reinit_after_fork() -> None:
    global _session
    _session = os.urandom(6).hex()
    for writer in list(_live_writers):
        writer._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
