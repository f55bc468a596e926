"""The Store protocol: the one interface every backend implements.

Batch appends are the only write path. An experiment is named by its prefix path
(``owner/project/[folders/...]/name``), already validated by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..records import (
    AppendResult,
    Claim,
    ExperimentInfo,
    Holder,
    LogPage,
    LogQuery,
    LogRecord,
    MetricPage,
    MetricStats,
    ParamsDoc,
    StreamDescription,
)

if TYPE_CHECKING:
    from ..series import Series
    from ..summaries import FieldStats, RunSummary


class Store(Protocol):
    """Storage primitives shared by LocalStore, RemoteStore and MongoStore.

    Every call is synchronous: it has happened when it returns, or it raises an
    ``MLDashError`` (``StorageError`` for trouble that may pass: disk, network, 5xx;
    any other class for a refusal that retrying will not change). Stores translate
    their backend's own exceptions (``OSError``, driver and HTTP errors) at their edge.
    """

    def open_experiment(self, info: ExperimentInfo) -> ExperimentInfo:
        """Create the experiment, or return the stored one (resume) updated with ``info``."""
        ...

    def update_experiment(self, prefix: str, **changes: Any) -> ExperimentInfo:
        """Change stored fields (status, times, tags, ...) and return the new info."""
        ...

    def get_experiment(self, prefix: str) -> ExperimentInfo | None:
        """The stored info, or None when there is no such experiment.

        Infos a store returns carry the resume history and the last heartbeat, and the
        status ``STALE`` for a RUNNING experiment that no live process claims."""
        ...

    def list_experiments(self, owner: str | None = None, project: str | None = None) -> list[ExperimentInfo]:
        """All experiments, optionally under one owner and project."""
        ...

    def claim_experiment(
        self,
        prefix: str,
        holder: Holder,
        lease_seconds: float,
        join: bool = False,
        new: bool = False,
        replaces: Sequence[str] = (),
    ) -> Claim:
        """Record that ``holder`` runs ``prefix`` for the next ``lease_seconds`` (atomically).

        Claiming again as the same holder renews the claim (the heartbeat). A new holder
        gets ExperimentBusyError while another holder's claim is alive, unless it
        ``join``s; with ``new`` it gets ExperimentExistsError when the experiment exists.
        A new holder that finds no live holder on a stored experiment records a
        :class:`~ml_dash.records.Resume`. ``replaces`` names holders the caller knows
        are dead (their leases are then ignored). The experiment need not exist (claims come
        before ``open_experiment``). Rules: ``ml_dash.stores.claims``.
        """
        ...

    def release_experiment(self, prefix: str, holder_id: str) -> None:
        """End ``holder_id``'s claim on ``prefix`` (nothing happens when it has none)."""
        ...

    def set_params(self, prefix: str, flat: dict[str, Any]) -> ParamsDoc:
        """Merge flat params into the stored ones; returns the new document."""
        ...

    def get_params(self, prefix: str) -> ParamsDoc:
        """The stored params (empty data when none were set)."""
        ...

    def append_metrics(
        self, prefix: str, name: str, points: list[dict[str, Any]], batch_id: str | None = None
    ) -> AppendResult:
        """Append points (field dicts with ``_ts``); ``first`` is the index of the first.

        A ``batch_id`` seen before is not stored again (``duplicate``, and the first
        index it got then).
        """
        ...

    def describe_stream(self, prefix: str, name: str, description: StreamDescription) -> None:
        """Record what the user said about the metric stream ``name`` (replaces the last)."""
        ...

    def read_metrics(self, prefix: str, name: str, start_index: int = 0, limit: int = 1000) -> MetricPage:
        """Points ``start_index`` .. ``start_index + limit - 1`` in index order."""
        ...

    def metric_stats(self, prefix: str, name: str) -> MetricStats:
        """Point count and first/last times of one stream."""
        ...

    def list_metrics(self, prefix: str) -> list[MetricStats]:
        """Stats of every metric stream of the experiment."""
        ...

    def append_logs(self, prefix: str, records: list[LogRecord], batch_id: str | None = None) -> AppendResult:
        """Append log records; ``first`` is the sequence number of the first."""
        ...

    def query_logs(self, prefix: str, query: LogQuery) -> LogPage:
        """Log lines matching the filters, paged (oldest first, newest with ``descending``).

        The cost follows the page (an index by level and time), except for a text
        ``search``, which reads the messages of the lines the other filters leave."""
        ...

    def append_tracks(
        self, prefix: str, topic: str, entries: list[dict[str, Any]], batch_id: str | None = None
    ) -> AppendResult:
        """Append entries (flat dicts with ``timestamp``); ``first`` is None (no counter)."""
        ...

    def read_tracks(
        self,
        prefix: str,
        topic: str,
        start_timestamp: float | None = None,
        end_timestamp: float | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
        after: float | None = None,
    ) -> list[dict[str, Any]]:
        """Entries in time order, same-timestamp entries merged, with ``start_timestamp <=
        timestamp <= end_timestamp`` (None: open).

        Paging: ``after`` keeps only entries with ``timestamp > after``, and ``limit``
        (>= 0; None: no limit) only the first ``limit`` merged entries. The next page
        starts ``after`` the last timestamp returned; a page shorter than ``limit`` is the
        last. The cost follows the page, not the topic.
        """
        ...

    def list_tracks(self, prefix: str) -> list[dict[str, Any]]:
        """Topic name, entry count (after merging) and time span of every track topic
        (from a summary kept beside the data, never a read of whole topics)."""
        ...

    def metric_series(self, prefix: str, name: str, y: str, x: str = "index", x0: float | None = None,
                      x1: float | None = None, width: int = 1000) -> Series:
        """The series of field ``y`` of one stream against ``x`` (``index``, ``_ts`` or a
        numeric field) over ``[x0, x1]`` for ``width`` pixel columns: raw points when the
        range holds at most 4 × width, else per column the first, last, min and max point
        (M4, ``ml_dash.series``); non-finite values reported apart. Empty for a stream
        that does not exist."""
        ...

    def metric_fields(self, prefix: str, name: str) -> dict[str, FieldStats]:
        """Count, first, last, min and max (with their indexes) of every numeric field of
        one stream."""
        ...

    def run_summaries(self, owner: str | None = None, project: str | None = None) -> list[RunSummary]:
        """One summary per experiment under ``owner`` (and ``project``): info, flat
        params and the field statistics of every metric stream (``ml_dash.summaries``)."""
        ...

    def check_access(self, prefix: str, timeout: float) -> None:
        """Raise now, within about ``timeout`` seconds, if writes to ``prefix`` would be
        refused for good (a bad token, another owner's prefix, not an ML-Dash server);
        StorageError when the store cannot be reached to tell."""
        ...

    def sync(self, prefix: str, *, refresh: bool = True) -> None:
        """Make everything appended so far durable (fsync locally). ``refresh=False``
        (the Writer's periodic fsync) skips rebuilding derived files such as LocalStore's
        ``metadata.json``, which costs a read of the stream."""
        ...

    def close(self) -> None:
        """Release files and connections. Nothing is queued inside a store: what could
        not be delivered is the Writer's (and its outbox's) to report."""
        ...
