"""The records every store reads and writes, defined once.

Conversion to a file line, a database document or a request body happens only at the
edge of each store; inside ML-Dash these are the shapes that travel.

Metric points travel as plain dicts of fields with a float ``_ts`` (seconds since the
epoch): the caller's keyword dict is reused as is, which keeps the logging hot path at
one append per point.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, TypedDict

FORMAT_VERSION = 1

STATUSES = ("RUNNING", "COMPLETED", "FAILED", "CANCELLED")
# What readers may see besides: a RUNNING experiment whose every claim has lapsed (its
# processes died or stopped renewing) is shown STALE. It is never stored.
STALE = "STALE"
READ_STATUSES = (*STATUSES, STALE)
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What a batch append did, the same from every store.

    ``first`` is the index (metrics) or sequence number (logs) the first record got,
    or None when the batch was empty or the kind has no counter (track entries).
    ``duplicate`` is True when the store had this batch id already and stored nothing
    new; ``first`` is then what the batch got the first time.
    """

    first: int | None
    count: int
    duplicate: bool = False


@dataclass(frozen=True)
class StreamDescription:
    """What a user said about a metric stream: ``exp.metrics("train", description=...)``."""

    description: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Holder:
    """A process that claims an experiment: ``id`` is unique per claim (one run of one
    ``Experiment`` in one process); ``host`` and ``pid`` say where it runs."""

    id: str
    host: str
    pid: int


@dataclass(frozen=True)
class Claim:
    """What ``claim_experiment`` granted.

    ``holders``: live holders now, this one included (more than 1 after a join).
    ``renewed``: this holder held the claim already (a heartbeat); nothing else changed.
    ``existed``: the experiment was stored before this claim. ``interrupted``: it was
    left RUNNING by processes that are gone (a resume of an interrupted run).
    """

    prefix: str
    holder_id: str
    holders: int = 1
    renewed: bool = False
    existed: bool = False
    interrupted: bool = False


@dataclass(frozen=True)
class Resume:
    """One start of an experiment that existed already (a claim by a new holder while
    no other holder was alive): when (``at``, seconds), from where, whether the run
    before had been interrupted, and the status it had been left in."""

    at: float
    host: str
    pid: int
    interrupted: bool = False
    previous_status: str = "COMPLETED"


@dataclass(frozen=True)
class ExperimentInfo:
    """What is known about one experiment (``experiment.json`` locally)."""

    prefix: str
    owner: str
    project: str
    name: str
    folders: tuple[str, ...] = ()
    description: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = "RUNNING"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    format_version: int = FORMAT_VERSION
    # Kept by the store, never taken from a writer's info: every resume so far, oldest
    # first, and the last heartbeat (claim renewal) of the processes running it.
    resumes: tuple[Resume, ...] = ()
    heartbeat_at: float | None = None

    def with_changes(self, **changes: Any) -> ExperimentInfo:
        return replace(self, **changes)

    def resuming(self, stored: ExperimentInfo) -> ExperimentInfo:
        """This info opened over ``stored`` (a resume): the stored creation and first
        start times and resume history stay, description and tags given now win over
        the stored ones, metadata merges."""
        return replace(
            self,
            created_at=stored.created_at or self.created_at,
            started_at=stored.started_at or self.started_at,
            resumes=stored.resumes,
            description=self.description if self.description is not None else stored.description,
            tags=self.tags or stored.tags,
            metadata={**stored.metadata, **self.metadata},
        )


@dataclass(frozen=True)
class ParamsDoc:
    """The parameters of one experiment: flat ``data`` plus a version per ``set``."""

    data: dict[str, Any]
    version: int = 0
    created_at: float | None = None
    updated_at: float | None = None


class LogRecord(NamedTuple):
    """One log line as logged: time (seconds), level, message and metadata."""

    ts: float
    level: str
    message: str
    metadata: dict[str, Any] | None


class MetricPoint(TypedDict):
    """One stored metric point as returned by reads."""

    index: int
    data: dict[str, Any]


class MetricPage(TypedDict):
    """The answer of ``read(start_index, limit)``."""

    data: list[dict[str, Any]]
    startIndex: int
    endIndex: int
    total: int
    hasMore: bool


class _MetricCounts(TypedDict):
    name: str
    totalDataPoints: int
    firstDataAt: float | None
    lastDataAt: float | None


class MetricStats(_MetricCounts, total=False):
    """Counts and time span of one metric stream.

    ``damaged`` (present only when not 0): lines of the stream's file that were not
    valid points and were skipped (the folder store: those set aside in
    ``data.jsonl.damaged`` and those at either end of ``data.jsonl``; see
    docs/storage-format.md). ``totalDataPoints`` counts points, never damaged lines.
    """

    damaged: int


def merge_track_entries(
    entries: Iterable[dict[str, Any]], columns: list[str] | None = None
) -> list[dict[str, Any]]:
    """Track entries in time order -> one entry per timestamp (later fields win).

    With ``columns``, each entry keeps only ``timestamp`` and those fields.
    """
    merged: list[dict[str, Any]] = []
    for entry in entries:
        if merged and merged[-1].get("timestamp") == entry.get("timestamp"):
            merged[-1].update(entry)
        else:
            merged.append(dict(entry))
    if columns is not None:
        wanted = ["timestamp", *columns]
        merged = [{k: e[k] for k in wanted if k in e} for e in merged]
    return merged


class LogQuery(TypedDict, total=False):
    """Filters and paging for reading logs back."""

    levels: list[str]
    start_time: float
    end_time: float
    search: str
    offset: int
    limit: int
    descending: bool


class LogPage(TypedDict):
    """The answer of a log query."""

    logs: list[dict[str, Any]]
    total: int
    offset: int
    limit: int
    hasMore: bool
