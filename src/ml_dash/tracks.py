"""``exp.tracks``: timestamped entries per topic, merged by timestamp, read by time."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, overload

from . import frames
from .clock import now, resolve_ts, thread_state
from .errors import InvalidValueError, NotFoundError, NotStartedError
from .names import validate_name
from .params import flatten
from .track_formats import check_format, export
from .values import check_text, normalize
from .writer import HANDOFF_MASK

if TYPE_CHECKING:
    from .session import Session
    from .writer import Channel

RESERVED_FIELDS = frozenset({"timestamp", "_nonFinite", "_batchId"})


class TrackSlice:
    """Entries between two times, in time order; ``findByTime(t)`` looks one up."""

    def __init__(self, entries: list[dict[str, Any]], topic: str = "", start: float | None = None,
                 end: float | None = None) -> None:
        self.entries = entries
        self.topic, self.start, self.end = topic, start, end
        self._times = [e["timestamp"] for e in entries]

    def __repr__(self) -> str:
        return f"TrackSlice(topic={self.topic!r}, start={self.start!r}, end={self.end!r})"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.entries[i]

    @overload
    def findByTime(self, t: float) -> dict[str, Any]: ...

    @overload
    def findByTime(self, t: list[float]) -> list[dict[str, Any]]: ...

    def findByTime(self, t: float | list[float]) -> dict[str, Any] | list[dict[str, Any]]:  # noqa: N802 - SDK spelling
        """The last entry at or before ``t`` (a list of times: a list of entries).

        NotFoundError (a LookupError) when the slice is empty ("No entries in track
        slice") or ``t`` is before its first entry ("No entry found with timestamp").
        """
        if isinstance(t, list):
            return [self._find(one) for one in t]
        return self._find(t)

    def _find(self, t: float) -> dict[str, Any]:
        if not self._times:
            raise NotFoundError(f"No entries in track slice {self!r}")
        i = bisect.bisect_right(self._times, t)
        if not i:
            raise NotFoundError(f"No entry found with timestamp <= {t!r} in topic {self.topic!r} "
                                f"(the first is at {self._times[0]!r})")
        return self.entries[i - 1]

    find_by_time = findByTime


class TrackClock:
    """The times ``append`` gives without ``_ts``: now, strictly increasing within a
    topic and distinct across the experiment's topics (one lock for all of them)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_auto = -math.inf


class TrackStream:
    """One topic: ``exp.tracks("robot/position")``."""

    def __init__(self, session: Session, topic: str, channel: Channel, clock: TrackClock | None = None) -> None:
        self.topic = topic
        self._session = session
        self._channel = channel
        self._queue: Any = channel.queue
        self._last = -math.inf
        self._shared = clock or TrackClock()
        self._clock = self._shared.lock  # threads sharing a topic still get distinct times
        self.description: str | None = None
        self.tags: list[str] = []
        self.metadata: dict[str, Any] = {}

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
                shared = self._shared
                floor = self._last if self._last > shared.last_auto else shared.last_auto
                if ts <= floor:
                    ts = math.nextafter(floor, math.inf)
                shared.last_auto = ts
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
        format: str | None = None,
    ) -> Any:
        """Entries in time order (equal times merged), optionally within [start, end];
        ``columns`` keeps ``timestamp`` and the columns named that an entry has.

        Paged: ``limit`` entries at most, those with a timestamp ``after`` the given one
        (pass the last timestamp of a page to get the next; a short page is the last).
        :meth:`pages` walks them for you.

        Without ``format``: the list of entries (a ``TrackEntries``, which also answers
        ``["entries"]`` and ``["count"]`` as the public SDK's default does). ``"json"``:
        ``{"entries": [...], "count": n}``; ``"jsonl"``: bytes, one JSON object per line;
        ``"parquet"``: bytes (needs ``ml-dash[parquet]``); ``"mocap"``: a dict with
        ``version``, ``metadata`` (topic, description, tags, fps, duration, frameCount,
        startTime, endTime), ``channels`` and ``frames``. Another format raises
        InvalidValueError ("Unsupported format").
        """
        if format is not None:
            check_format(format)
        session = self._session
        session.flush(self._channel)
        entries = session.reader.read_tracks(
            session.prefix, self.topic, start_timestamp, end_timestamp, columns, limit=limit, after=after
        )
        return export(entries, format, lambda: (self.topic, self.description, self.tags, self.metadata))

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
            page = list(self.read(start_timestamp, end_timestamp, columns, limit=limit, after=after))
            if page:
                yield page
            if len(page) < limit:
                return
            after = page[-1]["timestamp"]

    def slice(self, start_timestamp: float | None = None, end_timestamp: float | None = None) -> TrackSlice:
        """A :class:`TrackSlice` of the entries within [start, end]."""
        return TrackSlice(list(self.read(start_timestamp, end_timestamp)), self.topic, start_timestamp, end_timestamp)

    def to_pandas(self) -> Any:
        """Every entry so far as a DataFrame: ``time`` and one column per (flattened)
        field. Needs ``ml-dash[pandas]``."""
        session = self._session
        session.flush(self._channel)
        return frames.to_pandas(frames.track_columns(session.reader, session.prefix, self.topic))

    def to_arrow(self) -> Any:
        """Every entry so far as a ``pyarrow.Table``. Needs ``ml-dash[arrow]``."""
        session = self._session
        session.flush(self._channel)
        return frames.to_arrow(frames.track_columns(session.reader, session.prefix, self.topic))

    def flush(self) -> TrackStream:
        """Write this topic's queued entries now."""
        self._session.flush(self._channel)
        return self

    def _attach(self, channel: Channel) -> None:
        """A new run started: entries go to its writer from now on."""
        self._channel = channel
        self._queue = channel.queue


class SyncTrackStream(TrackStream):
    """A topic of an experiment whose buffer is disabled (``BufferConfig``): each entry
    is in the store's file (the outbox, remote-only) when ``append`` returns."""

    def append(self, _ts: Any = None, **fields: Any) -> TrackStream:
        TrackStream.append(self, _ts, **fields)
        self._session.hand_over(self._channel)
        return self


class Tracks:
    """``exp.tracks``: call it with a topic to get a stream."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._topics: dict[str, TrackStream] = {}
        self._clock = TrackClock()

    def __call__(self, topic: str, description: str | None = None, tags: list[str] | None = None,
                 metadata: dict[str, Any] | None = None) -> TrackStream:
        """The topic ``topic`` (the same object for the experiment's life: it appends
        again once a new run starts). ``description``, ``tags`` and ``metadata`` (e.g.
        ``{"fps": 60}``) are kept with the handle, for ``read(format="mocap")``."""
        stream = self._topics.get(topic)
        if stream is None:
            self._session.require_running("tracks")
            validate_name(topic, "track topic")
            kind = SyncTrackStream if self._session.synchronous else TrackStream
            stream = self._topics[topic] = kind(self._session, topic, self._session.channel("tracks", topic),
                                                self._clock)
        if description is not None:
            stream.description = check_text(str(description), "description")
        if tags is not None:
            stream.tags = [check_text(str(tag), "tags") for tag in tags]
        if metadata is not None:
            stream.metadata = normalize(dict(metadata), "metadata")
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

    def _attach(self) -> None:
        """A new run started: the topics kept from the last one append into it."""
        for topic, stream in self._topics.items():
            stream._attach(self._session.channel("tracks", topic))

    def _detach(self) -> None:
        """The run ended: its topics stop taking entries (until a new run starts), and
        stay readable."""
        for stream in self._topics.values():
            stream._queue = None
