"""LocalStore: experiments as plain folders of JSON and JSON-lines files.

Layout (see docs/storage-format.md)::

    <root>/<owner>/<project>/<folders...>/<name>/
        experiment.json          info and status (atomic rewrite)
        parameters.json          {"version", "data", "createdAt", "updatedAt"} (atomic rewrite)
        metrics/<name>/data.jsonl      one point per line, "index" 0..n-1
        metrics/<name>/metadata.json   counters, rebuilt from data.jsonl at will
        logs/logs.jsonl                one record per line, "sequenceNumber" 0..n-1
        tracks/<topic>/data.jsonl      one entry per line
        tracks/<topic>/metadata.json   columns, count, first/last timestamps

Every append goes through a :class:`LockedAppender`, so several threads and
processes may write one experiment at once.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from ..errors import InvalidValueError, NotFoundError, StorageError
from ..fileio import atomic_write_bytes
from ..names import parse_prefix
from ..records import (
    ExperimentInfo,
    FirstIndex,
    LogPage,
    LogQuery,
    LogRecord,
    MetricPage,
    MetricStats,
    ParamsDoc,
    merge_track_entries,
)
from ..values import find_nonfinite, restore_nonfinite
from . import codec
from .jsonl import LineReader, LockedAppender, counter_of, decode_block, lock_file

_DATA = "data.jsonl"
_BATCH_LINE = re.compile(rb'\{"index":(\d+),"batchId":')
_BATCH_MARK = b',"batchId":"'


def atomic_write_json(path: str, value: Any) -> None:
    """Replace ``path`` with ``value`` as JSON: temp file, fsync, rename."""
    try:
        data = msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"
    except (TypeError, UnicodeEncodeError, msgspec.EncodeError) as exc:
        raise InvalidValueError(f"cannot store {os.path.basename(path)}: {exc}") from exc
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc}") from exc
    atomic_write_bytes(path, data)


def read_json(path: str) -> Any:
    """The JSON value in ``path``, or None when the file does not exist."""
    try:
        with open(path, "rb") as fh:
            return msgspec.json.decode(fh.read())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except msgspec.DecodeError as exc:
        raise StorageError(f"{path} is not valid JSON: {exc}") from exc


def _info_to_json(info: ExperimentInfo) -> dict[str, Any]:
    doc = {
        "name": info.name,
        "project": info.project,
        "owner": info.owner,
        "folder": "/".join(info.folders) or None,
        "prefix": info.prefix,
        "description": info.description,
        "tags": list(info.tags),
        "metadata": info.metadata,
        "status": info.status,
        "createdAt": codec.iso_utc(info.created_at),
        "startedAt": codec.iso_utc(info.started_at) if info.started_at else None,
        "endedAt": codec.iso_utc(info.ended_at) if info.ended_at else None,
        "formatVersion": info.format_version,
    }
    found = find_nonfinite(info.metadata)
    if found:
        doc[codec.NONFINITE_KEY] = found
    return doc


def _info_from_json(prefix: str, doc: dict[str, Any]) -> ExperimentInfo:
    parsed = parse_prefix(prefix)
    metadata = doc.get("metadata") or {}
    if doc.get(codec.NONFINITE_KEY) and isinstance(metadata, dict):
        restore_nonfinite(metadata, doc[codec.NONFINITE_KEY])
    return ExperimentInfo(
        prefix=prefix,
        owner=parsed.owner,
        project=parsed.project,
        name=parsed.name,
        folders=parsed.folders,
        description=doc.get("description"),
        tags=tuple(doc.get("tags") or ()),
        metadata=metadata,
        status=doc.get("status") or "RUNNING",
        created_at=codec.parse_iso(doc.get("createdAt")) or 0.0,
        started_at=codec.parse_iso(doc.get("startedAt")),
        ended_at=codec.parse_iso(doc.get("endedAt")),
        format_version=int(doc.get("formatVersion") or 0),
    )


class LocalStore:
    """The Store protocol over a folder (``dash_root``)."""

    def __init__(self, root: str | os.PathLike[str] = ".dash", scan_batch_ids: bool = True) -> None:
        """A store over the folder ``root``. With ``scan_batch_ids`` (the server's
        setting) a resent batch is recognised even when another process wrote it; the
        SDK turns it off: its writer only ever resends its own batches."""
        self.root = os.path.abspath(os.fspath(root))
        self.scan_batch_ids = scan_batch_ids
        self._appenders: dict[str, LockedAppender] = {}
        self._lock = threading.Lock()

    # -- paths and locks -------------------------------------------------------------

    def experiment_dir(self, prefix: str) -> str:
        return os.path.join(self.root, *prefix.split("/"))

    def _stream_file(self, prefix: str, kind: str, name: str) -> str:
        return os.path.join(self.experiment_dir(prefix), kind, *name.split("/"), _DATA)

    def _logs_file(self, prefix: str) -> str:
        return os.path.join(self.experiment_dir(prefix), "logs", "logs.jsonl")

    def _appender(self, path: str, counter_key: str | None) -> LockedAppender:
        appender = self._appenders.get(path)
        if appender is None:
            with self._lock:
                appender = self._appenders.get(path)
                if appender is None:
                    appender = self._appenders[path] = LockedAppender(path, counter_key, self.scan_batch_ids)
        return appender

    @contextmanager
    def _folder_lock(self, prefix: str) -> Iterator[None]:
        folder = self.experiment_dir(prefix)
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot lock {folder}: {exc}") from exc
        try:
            lock_file(fd, os.path.join(folder, ".lock"))
            yield
        finally:
            os.close(fd)

    # -- experiments -------------------------------------------------------------------

    def open_experiment(self, info: ExperimentInfo) -> ExperimentInfo:
        path = os.path.join(self.experiment_dir(info.prefix), "experiment.json")
        with self._folder_lock(info.prefix):
            existing = read_json(path)
            if isinstance(existing, dict):
                old = _info_from_json(info.prefix, existing)
                info = info.with_changes(
                    created_at=old.created_at or info.created_at,
                    description=info.description if info.description is not None else old.description,
                    tags=info.tags or old.tags,
                    metadata={**old.metadata, **info.metadata},
                )
            atomic_write_json(path, _info_to_json(info))
        return info

    def update_experiment(self, prefix: str, **changes: Any) -> ExperimentInfo:
        path = os.path.join(self.experiment_dir(prefix), "experiment.json")
        if not os.path.isfile(path):  # do not create folders for an experiment that does not exist
            raise NotFoundError(f"no experiment {prefix!r} under {self.root}")
        with self._folder_lock(prefix):
            existing = read_json(path)
            if not isinstance(existing, dict):
                raise NotFoundError(f"no experiment {prefix!r} under {self.root}")
            info = _info_from_json(prefix, existing).with_changes(**changes)
            existing.pop(codec.NONFINITE_KEY, None)
            atomic_write_json(path, {**existing, **_info_to_json(info)})
        return info

    def get_experiment(self, prefix: str) -> ExperimentInfo | None:
        doc = read_json(os.path.join(self.experiment_dir(prefix), "experiment.json"))
        return _info_from_json(prefix, doc) if isinstance(doc, dict) else None

    def list_experiments(self, owner: str | None = None, project: str | None = None) -> list[ExperimentInfo]:
        base = self.root
        if owner:
            base = os.path.join(base, owner)
            if project:
                base = os.path.join(base, project)
        found = []
        for folder, dirs, files in os.walk(base):
            if "experiment.json" in files:
                dirs[:] = []
                prefix = os.path.relpath(folder, self.root).replace(os.sep, "/")
                try:
                    info = self.get_experiment(prefix)
                except Exception:
                    continue
                if info is not None:
                    found.append(info)
            else:
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        return sorted(found, key=lambda i: i.prefix)

    # -- params ------------------------------------------------------------------------

    def set_params(self, prefix: str, flat: dict[str, Any]) -> ParamsDoc:
        path = os.path.join(self.experiment_dir(prefix), "parameters.json")
        now = time.time()
        with self._folder_lock(prefix):
            doc = read_json(path)
            if not isinstance(doc, dict):
                doc = {"version": 0, "data": {}, "createdAt": codec.iso_utc(now)}
            data = {**(doc.get("data") or {}), **flat}
            stored = {
                "version": int(doc.get("version") or 0) + 1,
                "data": data,
                "createdAt": doc.get("createdAt") or codec.iso_utc(now),
                "updatedAt": codec.iso_utc(now),
            }
            found = find_nonfinite(data)
            if found:
                stored[codec.NONFINITE_KEY] = found
            atomic_write_json(path, stored)
        return self._params_from_doc(stored)

    @staticmethod
    def _params_from_doc(doc: dict[str, Any]) -> ParamsDoc:
        data = dict(doc.get("data") or {})
        found = doc.get(codec.NONFINITE_KEY)
        if found:
            restore_nonfinite(data, found)
        return ParamsDoc(
            data=data,
            version=int(doc.get("version") or 0),
            created_at=codec.parse_iso(doc.get("createdAt")),
            updated_at=codec.parse_iso(doc.get("updatedAt")),
        )

    def get_params(self, prefix: str) -> ParamsDoc:
        doc = read_json(os.path.join(self.experiment_dir(prefix), "parameters.json"))
        return self._params_from_doc(doc) if isinstance(doc, dict) else ParamsDoc(data={})

    # -- metrics -----------------------------------------------------------------------

    def append_metrics(self, prefix: str, name: str, points: list[dict[str, Any]], batch_id: str | None = None) -> int:
        if not points:
            return -1
        appender = self._appender(self._stream_file(prefix, "metrics", name), "index")
        first, used = appender.append(
            lambda first: (codec.encode_metric_lines(points, first, batch_id), len(points)), batch_id
        )
        return FirstIndex(first, duplicate=used == 0)

    def _decode_metric_block(self, block: bytes, path: str) -> list[dict[str, Any]]:
        lines = decode_block(block, path)
        if b'"nonFinite"' in block:
            for line in lines:
                codec.restore_metric(line)
        elif lines:
            # Batch ids sit on one line per batch: find those few lines (a byte search,
            # not a per-line regex) and pop the id where it is.
            first = lines[0]["index"]
            at = block.find(_BATCH_MARK)
            while at >= 0:
                start = block.rfind(b"\n", 0, at) + 1
                match = _BATCH_LINE.match(block, start)
                if match:
                    pos = int(match.group(1)) - first
                    if 0 <= pos < len(lines):
                        lines[pos].pop(codec.BATCH_KEY, None)
                at = block.find(_BATCH_MARK, at + 1)
        return lines

    def read_metrics(self, prefix: str, name: str, start_index: int = 0, limit: int = 1000) -> MetricPage:
        if start_index < 0 or limit < 0:
            raise InvalidValueError(f"start_index and limit must be >= 0, got {start_index} and {limit}")
        path = self._stream_file(prefix, "metrics", name)
        try:
            reader = LineReader(path)
        except FileNotFoundError:
            return MetricPage(data=[], startIndex=start_index, endIndex=start_index - 1, total=0, hasMore=False)
        with reader:
            last = reader.last_line()
            total = counter_of(last, "index") + 1 if last else 0
            offset = reader.bisect("index", start_index) if start_index > 0 else 0
            to_end = start_index + limit >= total
            block = reader.read_rest(offset) if to_end else reader.read_block(offset, limit)
        data = self._decode_metric_block(block, path)
        end = data[-1]["index"] if data else start_index - 1
        return MetricPage(data=data, startIndex=start_index, endIndex=end, total=total, hasMore=end + 1 < total)

    def metric_stats(self, prefix: str, name: str) -> MetricStats:
        path = self._stream_file(prefix, "metrics", name)
        try:
            reader = LineReader(path)
        except FileNotFoundError:
            return MetricStats(name=name, totalDataPoints=0, firstDataAt=None, lastDataAt=None)
        with reader:
            first, last = reader.first_line(), reader.last_line()
        if not first or not last:
            return MetricStats(name=name, totalDataPoints=0, firstDataAt=None, lastDataAt=None)
        first_doc, last_doc = msgspec.json.decode(first), msgspec.json.decode(last)
        return MetricStats(
            name=name,
            totalDataPoints=int(last_doc["index"]) + 1,
            firstDataAt=_point_time(first_doc),
            lastDataAt=_point_time(last_doc),
        )

    def _stream_names(self, prefix: str, kind: str) -> list[str]:
        base = os.path.join(self.experiment_dir(prefix), kind)
        names = []
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            if _DATA in files:
                names.append(os.path.relpath(folder, base).replace(os.sep, "/"))
        return sorted(names)

    def list_metrics(self, prefix: str) -> list[MetricStats]:
        return [self.metric_stats(prefix, name) for name in self._stream_names(prefix, "metrics")]

    def write_stream_metadata(self, prefix: str, kind: str, name: str, extra: dict[str, Any] | None = None) -> None:
        """Rewrite ``<kind>/<name>/metadata.json`` from the data file (counters are derived)."""
        folder = os.path.join(self.experiment_dir(prefix), kind, *name.split("/"))
        path = os.path.join(folder, "metadata.json")
        old = read_json(path)
        doc: dict[str, Any] = (
            dict(old) if isinstance(old, dict) else {"name": name, "createdAt": codec.iso_utc(time.time())}
        )
        if kind == "metrics":
            stats = self.metric_stats(prefix, name)
            doc.update(
                metricId=doc.get("metricId") or f"local-metric-{name}",
                name=name,
                totalDataPoints=stats["totalDataPoints"],
                nextIndex=stats["totalDataPoints"],
                firstDataAt=stats["firstDataAt"],
                lastDataAt=stats["lastDataAt"],
            )
        else:
            columns = set(doc.get("columns") or ())
            columns.update((extra or {}).get("columns", ()))
            info = self.track_info(prefix, name)
            doc.update(name=name, columns=sorted(columns), totalEntries=info["totalEntries"],
                       firstTimestamp=info["firstTimestamp"], lastTimestamp=info["lastTimestamp"])
        for key, value in (extra or {}).items():
            if key != "columns":
                doc[key] = value
        doc["updatedAt"] = codec.iso_utc(time.time())
        atomic_write_json(path, doc)

    # -- logs --------------------------------------------------------------------------

    def append_logs(self, prefix: str, records: list[LogRecord], batch_id: str | None = None) -> int:
        if not records:
            return -1
        appender = self._appender(self._logs_file(prefix), "sequenceNumber")
        first, used = appender.append(
            lambda first: (codec.encode_log_lines(records, first, batch_id), len(records)), batch_id
        )
        return FirstIndex(first, duplicate=used == 0)

    def query_logs(self, prefix: str, query: LogQuery) -> LogPage:
        offset = int(query.get("offset", 0))
        limit = int(query.get("limit", 100))
        if offset < 0 or limit < 0:
            raise InvalidValueError(f"offset and limit must be >= 0, got {offset} and {limit}")
        levels = {lv for lv in query.get("levels") or ()}
        start, end = query.get("start_time"), query.get("end_time")
        search = (query.get("search") or "").lower()
        descending = bool(query.get("descending", False))
        path = self._logs_file(prefix)
        try:
            reader = LineReader(path)
        except FileNotFoundError:
            return LogPage(logs=[], total=0, offset=offset, limit=limit, hasMore=False)
        filtered = bool(levels or start is not None or end is not None or search)
        with reader:
            if not filtered and not descending:
                last = reader.last_line()
                total = counter_of(last, "sequenceNumber") + 1 if last else 0
                block = reader.read_block(reader.bisect("sequenceNumber", offset) if offset else 0, limit)
                logs = [self._log_out(line) for line in decode_block(block, path)]
                return LogPage(logs=logs, total=total, offset=offset, limit=limit, hasMore=offset + len(logs) < total)
            matches = []
            for block in reader.iter_blocks():
                for line in decode_block(block, path):
                    ts = line.get("ts")
                    if ts is None:
                        ts = codec.parse_iso(line.get("timestamp")) or 0.0
                    if levels and line.get("level") not in levels:
                        continue
                    if start is not None and ts < start:
                        continue
                    if end is not None and ts > end:
                        continue
                    if search and search not in str(line.get("message", "")).lower():
                        continue
                    matches.append(line)
        if descending:
            matches.reverse()
        page = [self._log_out(line) for line in matches[offset : offset + limit]]
        total = len(matches)
        return LogPage(logs=page, total=total, offset=offset, limit=limit, hasMore=offset + len(page) < total)

    @staticmethod
    def _log_out(line: dict[str, Any]) -> dict[str, Any]:
        codec.restore_log(line)
        if "ts" not in line:
            line["ts"] = codec.parse_iso(line.get("timestamp"))
        return line

    # -- tracks ------------------------------------------------------------------------

    def append_tracks(
        self, prefix: str, topic: str, entries: list[dict[str, Any]], batch_id: str | None = None
    ) -> int:
        if not entries:
            return 0
        appender = self._appender(self._stream_file(prefix, "tracks", topic), None)
        _, written = appender.append(
            lambda _first: (codec.encode_track_lines(entries, batch_id), len(entries)), batch_id
        )
        return written

    def _track_lines(self, prefix: str, topic: str) -> list[dict[str, Any]]:
        path = self._stream_file(prefix, "tracks", topic)
        try:
            reader = LineReader(path)
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        with reader:
            for block in reader.iter_blocks():
                lines = decode_block(block, path)
                if b'"_nonFinite"' in block or b'"_batchId"' in block:
                    lines = [codec.restore_track(line) for line in lines]
                out.extend(lines)
        return out

    def read_tracks(
        self,
        prefix: str,
        topic: str,
        start_timestamp: float | None = None,
        end_timestamp: float | None = None,
        columns: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        lines = self._track_lines(prefix, topic)
        lines.sort(key=lambda e: e.get("timestamp", 0.0))  # stable: appends keep their order
        lo = -math.inf if start_timestamp is None else start_timestamp
        hi = math.inf if end_timestamp is None else end_timestamp
        return merge_track_entries((e for e in lines if lo <= e.get("timestamp", 0.0) <= hi), columns)

    def track_info(self, prefix: str, topic: str) -> dict[str, Any]:
        entries = self.read_tracks(prefix, topic)
        return {
            "topic": topic,
            "totalEntries": len(entries),
            "firstTimestamp": entries[0]["timestamp"] if entries else None,
            "lastTimestamp": entries[-1]["timestamp"] if entries else None,
        }

    def list_tracks(self, prefix: str) -> list[dict[str, Any]]:
        return [self.track_info(prefix, topic) for topic in self._stream_names(prefix, "tracks")]

    # -- durability --------------------------------------------------------------------

    def sync(self, prefix: str) -> None:
        folder = self.experiment_dir(prefix) + os.sep
        with self._lock:
            appenders = [a for path, a in self._appenders.items() if path.startswith(folder)]
        for appender in appenders:
            appender.fsync()

    def close(self) -> None:
        with self._lock:
            appenders = list(self._appenders.values())
            self._appenders.clear()
        for appender in appenders:
            appender.close()


def _point_time(doc: dict[str, Any]) -> float | None:
    data = doc.get("data")
    if isinstance(data, dict) and isinstance(data.get("_ts"), int | float):
        return float(data["_ts"])
    return codec.parse_iso(doc.get("createdAt"))
