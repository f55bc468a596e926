"""HybridStore: write to a LocalStore and a RemoteStore, read from the local one.

Both sides get the same batch ids, so when one side fails and the writer resends the
batch, the side that already has it does not store it twice.
"""

from __future__ import annotations

from typing import Any

from ..records import ExperimentInfo, LogPage, LogQuery, LogRecord, MetricPage, MetricStats, ParamsDoc
from .local import LocalStore
from .remote import RemoteStore


class HybridStore:
    """Local files plus a server; reads are answered from the local files."""

    def __init__(self, local: LocalStore, remote: RemoteStore) -> None:
        self.local = local
        self.remote = remote
        self.root = local.root
        self.spool = remote.spool

    def experiment_dir(self, prefix: str) -> str:
        return self.local.experiment_dir(prefix)

    def open_experiment(self, info: ExperimentInfo) -> ExperimentInfo:
        info = self.local.open_experiment(info)
        self.remote.open_experiment(info)
        return info

    def update_experiment(self, prefix: str, **changes: Any) -> ExperimentInfo:
        info = self.local.update_experiment(prefix, **changes)
        self.remote.update_experiment(prefix, **changes)
        return info

    def get_experiment(self, prefix: str) -> ExperimentInfo | None:
        return self.local.get_experiment(prefix)

    def list_experiments(self, owner: str | None = None, project: str | None = None) -> list[ExperimentInfo]:
        return self.local.list_experiments(owner, project)

    def set_params(self, prefix: str, flat: dict[str, Any]) -> ParamsDoc:
        doc = self.local.set_params(prefix, flat)
        self.remote.set_params(prefix, flat)
        return doc

    def get_params(self, prefix: str) -> ParamsDoc:
        return self.local.get_params(prefix)

    def append_metrics(self, prefix: str, name: str, points: list[dict[str, Any]], batch_id: str | None = None) -> int:
        first = self.local.append_metrics(prefix, name, points, batch_id)
        self.remote.append_metrics(prefix, name, points, batch_id)
        return first

    def read_metrics(self, prefix: str, name: str, start_index: int = 0, limit: int = 1000) -> MetricPage:
        return self.local.read_metrics(prefix, name, start_index, limit)

    def metric_stats(self, prefix: str, name: str) -> MetricStats:
        return self.local.metric_stats(prefix, name)

    def list_metrics(self, prefix: str) -> list[MetricStats]:
        return self.local.list_metrics(prefix)

    def write_stream_metadata(self, prefix: str, kind: str, name: str, extra: dict[str, Any] | None = None) -> None:
        self.local.write_stream_metadata(prefix, kind, name, extra)

    def append_logs(self, prefix: str, records: list[LogRecord], batch_id: str | None = None) -> int:
        first = self.local.append_logs(prefix, records, batch_id)
        self.remote.append_logs(prefix, records, batch_id)
        return first

    def query_logs(self, prefix: str, query: LogQuery) -> LogPage:
        return self.local.query_logs(prefix, query)

    def append_tracks(
        self, prefix: str, topic: str, entries: list[dict[str, Any]], batch_id: str | None = None
    ) -> int:
        count = self.local.append_tracks(prefix, topic, entries, batch_id)
        self.remote.append_tracks(prefix, topic, entries, batch_id)
        return count

    def read_tracks(
        self,
        prefix: str,
        topic: str,
        start_timestamp: float | None = None,
        end_timestamp: float | None = None,
        columns: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        return self.local.read_tracks(prefix, topic, start_timestamp, end_timestamp, columns)

    def list_tracks(self, prefix: str) -> list[dict[str, Any]]:
        return self.local.list_tracks(prefix)

    def sync(self, prefix: str) -> None:
        self.local.sync(prefix)
        self.remote.sync(prefix)

    def close(self, timeout: float = 30.0) -> int:
        self.local.close()
        return self.remote.close(timeout)
