"""A bounded pool of open data files: the least recently used one is closed when room is needed.

A store that kept every stream's file open would run out of descriptors after about a
thousand streams (the usual ``ulimit -n``) and then fail every request that needs one
more: a socket, a lock file, a read. The pool keeps at most ``capacity`` data files
open per process, by default a quarter of the soft ``RLIMIT_NOFILE`` (the rest is left
for sockets, reads and lock files), at least 16 and at most 1,024;
``$ML_DASH_MAX_OPEN_FILES`` or ``LocalStore(max_open_files=...)`` sets it.

It also bounds the memory of the batch-id windows (``batch_window``) its members keep:
at most ``id_budget`` ids in all (≈ 200 bytes each). A member is evicted as a whole —
file closed, window dropped — and reopens its file and reads its window back from the
file's tail the next time it is used, so eviction costs time, never correctness.

A member is evicted only when its own lock is free (it is never closed under an append
in progress); what a member must do to be closed is its business (``Member.evict``).
"""

from __future__ import annotations

import os
import resource
import threading
import warnings
import weakref
from collections import OrderedDict
from typing import Protocol

MIN_CAPACITY = 16
MAX_CAPACITY = 1024
LIMIT_FRACTION = 4  # a quarter of the soft limit for data files, the rest for everything else
ID_BUDGET = 262_144  # batch ids kept in memory in all (≈ 50 MB)
ENV = "ML_DASH_MAX_OPEN_FILES"


class Member(Protocol):
    """Something that holds one open file (and some batch ids) and can let go of both."""

    def evict(self) -> int | None:
        """Close the file and drop the ids now, if the member's lock is free: the number
        of ids dropped, or None (busy: nothing changed)."""


def default_capacity() -> int:
    """How many data files a pool keeps open: ``$ML_DASH_MAX_OPEN_FILES``, else a quarter
    of the soft ``RLIMIT_NOFILE`` within [16, 1024]."""
    text = os.environ.get(ENV, "").strip()
    if text:
        try:
            return max(1, int(text))
        except ValueError:
            warnings.warn(f"ml-dash: ignoring ${ENV}={text!r} (not an integer)", RuntimeWarning, stacklevel=2)
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CAPACITY
    return max(MIN_CAPACITY, min(MAX_CAPACITY, soft // LIMIT_FRACTION))


_pools: weakref.WeakSet[FilePool] = weakref.WeakSet()


class FilePool:
    """At most ``capacity`` members with an open file, at most ``id_budget`` batch ids among them."""

    def __init__(self, capacity: int | None = None, id_budget: int = ID_BUDGET) -> None:
        self.capacity = max(1, capacity if capacity is not None else default_capacity())
        self.id_budget = max(0, id_budget)
        self._open: OrderedDict[Member, int] = OrderedDict()  # member -> ids it holds; oldest use first
        self._ids = 0
        self._lock = threading.Lock()
        _pools.add(self)

    def __len__(self) -> int:
        """How many members hold an open file now."""
        return len(self._open)

    @property
    def ids(self) -> int:
        """How many batch ids the members hold now."""
        return self._ids

    def opened(self, member: Member) -> None:
        """``member`` opened its file (or used it again): it becomes the most recently used,
        and the least recently used others are evicted while there are too many."""
        with self._lock:
            if member in self._open:
                self._open.move_to_end(member)
                return
            self._open[member] = 0
            if len(self._open) > self.capacity:
                self._evict_locked(member, files=len(self._open) - self.capacity)

    def make_room(self, member: Member) -> None:
        """``member`` is about to open its file: evict the least recently used others first,
        so that the open itself does not take the pool over ``capacity`` (only appends in
        flight, which cannot be evicted, and concurrent openers can, for their duration)."""
        with self._lock:
            if member in self._open:
                return
            over = len(self._open) + 1 - self.capacity
            if over > 0:
                self._evict_locked(member, files=over)

    def used(self, member: Member) -> None:
        """``member`` was used: the most recently used now (cheap; once per append)."""
        with self._lock:
            if member in self._open:
                self._open.move_to_end(member)

    def holds(self, member: Member, ids: int) -> None:
        """``member`` holds ``ids`` batch ids now; others are evicted while over the budget."""
        with self._lock:
            if member not in self._open:
                return
            self._ids += ids - self._open[member]
            self._open[member] = ids
            if self._ids > self.id_budget:
                self._evict_locked(member, ids=self._ids - self.id_budget)

    def closed(self, member: Member) -> None:
        """``member`` closed its file and dropped its ids by itself."""
        with self._lock:
            self._ids -= self._open.pop(member, 0)

    def shed(self, fraction: float = 0.25) -> int:
        """Evict the least recently used ``fraction`` of the members (the process ran out of
        descriptors: make room for the call that needs one); how many were evicted."""
        with self._lock:
            return self._evict_locked(None, files=max(1, int(len(self._open) * fraction)))

    def _evict_locked(self, keep: Member | None, files: int = 0, ids: int = 0) -> int:
        """Evict least recently used members (never ``keep``, never a busy one) until
        ``files`` were closed and ``ids`` ids dropped, or none is left to try."""
        evicted = 0
        for member in list(self._open):
            if files <= 0 and ids <= 0:
                break
            if member is keep or (files <= 0 and self._open[member] == 0):
                continue
            if member.evict() is None:
                continue  # busy: an append holds it; the next one over the limit tries again
            held = self._open.pop(member)
            self._ids -= held
            files -= 1
            ids -= held
            evicted += 1
        return evicted


_shared: FilePool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> FilePool:
    """The process's pool (created at first use, sized by :func:`default_capacity`): the
    descriptor limit is per process, so every store of a process shares it by default."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FilePool()
        return _shared


def relieve() -> int:
    """The process ran out of descriptors: every pool closes a quarter of its files."""
    return sum(pool.shed() for pool in list(_pools))
