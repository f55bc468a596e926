"""``exp.tracks``: timestamped entries per topic, merged by timestamp, read by time."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .clock import now, resolve_ts, thread_state
from .errors import InvalidValueError, NotStartedError
from .names import validate_name
from .params import flatten
from .writer import HANDOFF_MASK

if TYPE_CHECKING:
    from .session import Session
    from .writer import Channel

RESERVED_FIELDS = frozenset({"timestamp", "_nonFinite", "_batchId"})


class TrackSlice:
    """Entries between two times, in time order; ``findByTime(t)`` looks one up."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self._times = [e["timestamp"] for e in entries]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.entries[i]

    def findByTime(self, t: float) -> dict[str, Any] | None:  # noqa: N802 - SDK spelling
        """The last entry at or before ``t``, or None if ``t`` is before the first."""
        i = bisect.bisect_right(self._times, t)
        return self.entries[i - 1] if i else None

    find_by_time = findByTime


class TrackStream:
    """One topic: ``exp.tracks("robot/position")``."""

    def __init__(self, session: Session, topic: str, channel: Channel) -> None:
        self.topic = topic
        self._session = session
        self._channel = channel
        self._queue: Any = channel.queue
        self._last = -math.inf
        self._clock = threading.Lock()  # threads sharing a topic still get distinct times

    def append(self, _ts: Any = None, **fields: Any) -> TrackStream:
        """Append one entry. Nested dicts are flattened with ``.``.

        Without ``_ts`` the time is now, strictly increasing within the topic;
        ``_ts=-1`` reuses this thread's last time. Entries with equal times merge.
        """
        queue = self._queue
        if queue is None:
            raise NotStartedError(f"track {self.topic!r}: the experiment is not running (use `with exp.run:`)")
        if not fields:
            raise InvalidValueError(f"track {self.topic!r}: append() needs at least one field")
        bad = RESERVED_FIELDS.intersection(fields)
        if bad:
            raise InvalidValueError(f"track {self.topic!r}: field name {sorted(bad)[0]!r} is reserved")
        with self._clock:
            if _ts is None:
                ts = now()
                if ts <= self._last:
                    ts = math.nextafter(self._last, math.inf)
            else:
                ts = resolve_ts(_ts, f"track {self.topic!r}")
            self._last = max(self._last, ts)
        thread_state.ts = ts
        entry = {"timestamp": ts}
        entry.update(flatten(fields))
        queue.append(entry)
        if not len(queue) & HANDOFF_MASK:
            self._session.poke(queue)
        return self

    def read(
        self,
        start_timestamp: float | None = None,
        end_timestamp: float | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
        after: float | None = None,
    ) -> list[dict[str, Any]]:
        """Entries in time order (equal times merged), optionally within [start, end].

        Paged: ``limit`` entries at most, those with a timestamp ``after`` the given one
        (pass the last timestamp of a page to get the next; a short page is the last).
        :meth:`pages` walks them for you.
        """
        session = self._session
        session.flush(self._channel)
        return session.reader.read_tracks(
            session.prefix, self.topic, start_timestamp, end_timestamp, columns, limit=limit, after=after
        )

    def pages(
        self,
        start_timestamp: float | None = None,
        end_timestamp: float | None = None,
        columns: list[str] | None = None,
        limit: int = 1000,
    ) -> Iterator[list[dict[str, Any]]]:
        """The entries within [start, end] as pages of at most ``limit`` (>= 1), in time
        order; each page is read when the loop gets to it."""
        if limit < 1:
            raise InvalidValueError(f"track {self.topic!r}: pages need a limit >= 1, got {limit}")
        after = None
        while True:
            page = self.read(start_timestamp, end_timestamp, columns, limit=limit, after=after)
            if page:
                yield page
            if len(page) < limit:
                return
            after = page[-1]["timestamp"]

    def slice(self, start_timestamp: float | None = None, end_timestamp: float | None = None) -> TrackSlice:
        """A :class:`TrackSlice` of the entries within [start, end]."""
        return TrackSlice(self.read(start_timestamp, end_timestamp))

    def flush(self) -> TrackStream:
        """Write this topic's queued entries now."""
        self._session.flush(self._channel)
        return self


class Tracks:
    """``exp.tracks``: call it with a topic to get a stream."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._topics: dict[str, TrackStream] = {}

    def __call__(self, topic: str) -> TrackStream:
        stream = self._topics.get(topic)
        if stream is None:
            self._session.require_running("tracks")
            validate_name(topic, "track topic")
            stream = self._topics[topic] = TrackStream(self._session, topic, self._session.channel("tracks", topic))
        return stream

    def list(self) -> list[dict[str, Any]]:
        """Every topic with its entry count and first/last timestamps."""
        session = self._session
        session.require_running("tracks")
        session.flush()
        return session.reader.list_tracks(session.prefix)

    def flush(self) -> Tracks:
        """Write all queued track entries now."""
        self._session.flush()
        return self

    def _detach(self) -> None:
        """The run ended: its topics stop taking entries; a new run makes new ones."""
        for stream in self._topics.values():
            stream._queue = None
        self._topics.clear()
