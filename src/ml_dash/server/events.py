"""Live events over server-sent events (``GET /api/v1/events``).

One connection watches many experiments (a browser allows six connections per host):
the experiments named by ``prefix`` (repeatable) or every experiment of an owner (and
project). The server polls the store — any store, so a training script that writes
straight into the folder, or another server on the same database, is noticed — and
sends what changed:

- ``points`` ``{"prefix", "name", "count", "last"}``: a metric stream grew (``count`` is
  its number of points, ``last`` the fields of its last point);
- ``logs`` ``{"prefix", "count"}``: new log lines (``count`` is the total);
- ``status`` ``{"prefix", "status"}``: the status changed;
- ``experiment`` ``{"prefix", "status"}``: an experiment appeared under the watched owner;
- ``ready`` ``{"experiments"}``: sent once, after the state at connection time (how many
  experiments are watched); what follows is news.

Events are cumulative (level-triggered): each carries totals, not deltas, so a client
that missed some (a dropped connection) loses nothing: on every (re)connection the
server first sends the current state of everything watched, and the client reads what
it has not seen (points from its last ``count``). ``id`` lines count up within a
connection and name the connection (``<connection>-<n>``); a ``Last-Event-ID`` is
accepted and answered the same way. A comment line every ``heartbeat`` seconds keeps
proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool

from ..errors import MLDashError
from ..records import LogQuery
from ..stores.base import Store

POLL_INTERVAL = 0.25  # seconds between two looks at the store (the 1 s promise needs < 0.5)
LIST_INTERVAL = 1.0  # seconds between two listings of a watched owner's experiments
HEARTBEAT = 15.0
MAX_PREFIXES = 200  # experiments one connection may name


@dataclass
class _Known:
    status: str | None = None
    metrics: dict[str, int] = field(default_factory=dict)
    logs: int = 0


@dataclass
class Watch:
    """What one connection watches: named experiments, or an owner's (and project's)."""

    prefixes: list[str]
    owner: str | None = None
    project: str | None = None


def _frame(event: str, data: dict[str, Any], ident: str) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (ident.encode(), event.encode(), msgspec.json.encode(data))


class _Poller:
    """The state of the watched experiments, and what changed since the last look."""

    def __init__(self, store: Store, watch: Watch) -> None:
        self.store = store
        self.watch = watch
        self.known: dict[str, _Known] = {}
        self.listed_at = 0.0
        self.first = True

    def _prefixes(self) -> list[str]:
        if self.watch.owner is None:
            return self.watch.prefixes
        now = time.monotonic()
        if self.first or now - self.listed_at >= LIST_INTERVAL:
            self.listed_at = now
            found = [info.prefix for info in self.store.list_experiments(self.watch.owner, self.watch.project)]
            return found
        return list(self.known)

    def look(self) -> list[tuple[str, dict[str, Any]]]:
        """One look at the store: the events to send (blocking: runs in a worker thread)."""
        events: list[tuple[str, dict[str, Any]]] = []
        for prefix in self._prefixes():
            try:
                self._look_at(prefix, events)
            except MLDashError:
                continue  # gone, or a moment of trouble: looked at again next time
        self.first = False
        return events

    def _look_at(self, prefix: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        info = self.store.get_experiment(prefix)
        if info is None:
            return
        known = self.known.get(prefix)
        if known is None:
            known = self.known[prefix] = _Known()
            if not self.first and self.watch.owner is not None:
                events.append(("experiment", {"prefix": prefix, "status": info.status}))
        if info.status != known.status:
            known.status = info.status
            events.append(("status", {"prefix": prefix, "status": info.status}))
        for stats in self.store.list_metrics(prefix):
            name, count = stats["name"], stats["totalDataPoints"]
            if count != known.metrics.get(name, 0) or (self.first and count):
                known.metrics[name] = count
                last: dict[str, Any] = {}
                if count:
                    page = self.store.read_metrics(prefix, name, count - 1, 1)
                    if page["data"]:
                        last = dict(page["data"][-1].get("data", {}))
                events.append(("points", {"prefix": prefix, "name": name, "count": count, "last": last}))
        total = self.store.query_logs(prefix, LogQuery(offset=0, limit=1, descending=True))["total"]
        if total != known.logs or (self.first and total):
            known.logs = total
            events.append(("logs", {"prefix": prefix, "count": total}))


async def event_stream(
    store: Store,
    watch: Watch,
    is_disconnected: Callable[[], Any],
    *,
    interval: float = POLL_INTERVAL,
    heartbeat: float = HEARTBEAT,
) -> AsyncIterator[bytes]:
    """The bytes of one connection's event stream, until the client goes away."""
    poller = _Poller(store, watch)
    connection = os.urandom(4).hex()
    sent = 0
    yield b"retry: 1000\n: ml-dash events\n\n"
    quiet_since = time.monotonic()
    first = True
    while True:
        events = await run_in_threadpool(poller.look)
        if first:
            events.append(("ready", {"experiments": len(poller.known)}))
            first = False
        for event, data in events:
            sent += 1
            yield _frame(event, data, f"{connection}-{sent}")
        now = time.monotonic()
        if events:
            quiet_since = now
        elif now - quiet_since >= heartbeat:
            quiet_since = now
            yield b": heartbeat\n\n"
        if await is_disconnected():
            return
        await asyncio.sleep(interval)
