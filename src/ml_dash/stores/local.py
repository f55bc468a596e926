"""LocalStore: experiments as plain folders of JSON and JSON-lines files.

Layout (see docs/storage-format.md)::

    <root>/<owner>/<project>/<folders...>/<name>/
        experiment.json          info and status (atomic rewrite)
        parameters.json          {"version", "data", "createdAt", "updatedAt"} (atomic rewrite)
        resumes.jsonl                  one line per resume (local_claims)
        .claims.json, .owner.lock      who runs it now (local_claims)
        metrics/<name>/data.jsonl      one point per line, "index" 0..n-1
        metrics/<name>/metadata.json   description (describe_stream) and counters
        logs/logs.jsonl                one record per line, "sequenceNumber" 0..n-1
        tracks/<topic>/data.jsonl      one entry per line
        tracks/<topic>/metadata.json   columns, count, first/last timestamps

Every append goes through a :class:`LockedAppender` (``jsonl``: locked appends,
torn-tail and damaged-tail repair, bisection; ``codec``: the lines), so several threads
and processes may write one experiment at once. At most ``fdpool``'s bound of data files
is open at a time, and batch ids are remembered in bounded windows (``batch_window``).
``local_docs`` reads and replaces the whole-file JSON documents. The counters in
``metadata.json`` are a cache derived from ``data.jsonl``: the store remembers which
streams it appended to and rewrites their files at ``sync`` and ``close``.

Errors are translated here, at the store's edge: a name whose path runs into a file
or folder already in the store is an ``InvalidNameError`` naming it, any other
failure of the disk a ``StorageError``; no ``OSError`` leaves a public method.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import msgspec

from ..errors import InvalidNameError, InvalidValueError, MLDashError, NotFoundError, StorageError
from ..names import parse_prefix
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
from ..series import Series
from ..summaries import FieldStats, RunSummary
from . import claims, codec, line_index, local_reads, log_index, sdk_folders, track_pages
from . import local_claims as owners
from . import local_docs as docs
from .fdpool import FilePool, shared_pool
from .jsonl import Edge, LockedAppender, decode_block, lock_file, open_lines
from .lines import count_lines, warn_damaged
from .run_summary_files import RunSummaryFiles

F = TypeVar("F", bound=Callable[..., Any])
_DATA = "data.jsonl"
_BATCH_LINE = re.compile(rb'\{"index":(\d+),"batchId":')
_BATCH_MARK = b',"batchId":"'
# A path that runs into a file where a folder must be (or the reverse), or a name the
# file system cannot hold: the name is the trouble, and retrying will not change it.
_NAME_ERRNOS = frozenset({errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENAMETOOLONG})
_VALID_PREFIXES_KEPT = 100_000
_Stream = tuple[str, str, str]  # (prefix, "metrics" / "tracks" / "logs", name; "" for logs)


def _guarded(method: F) -> F:
    """The edge of LocalStore: no OSError leaves it, only the package's errors.

    The calls translate what they can name precisely themselves; this catches the rest
    (InvalidNameError when a path ran into a file, StorageError otherwise).
    """

    @functools.wraps(method)
    def wrapper(self: LocalStore, *args: Any, **kwargs: Any) -> Any:
        # A read-only store (ml_dash.open) keeps no derived index on disk.
        token = line_index.KEEP_INDEXES.set(False) if self.read_only else None
        try:
            return method(self, *args, **kwargs)
        except MLDashError:
            raise
        except OSError as exc:
            raise self._failure(exc) from exc
        finally:
            if token is not None:
                line_index.KEEP_INDEXES.reset(token)

    return cast(F, wrapper)


class LocalStore:
    """The Store protocol over a folder (``dash_root``).

    Every public call raises only the package's errors (``InvalidNameError`` when a name
    runs into a file or folder already in the store, ``StorageError`` when the disk
    fails, ...), chained to the ``OSError`` behind them.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = ".dash",
        scan_batch_ids: bool = True,
        process_claims: bool = False,
        max_open_files: int | None = None,
    ) -> None:
        """A store over the folder ``root``. With ``scan_batch_ids`` (the server's
        setting) a resent batch is recognised even when another process wrote it; the
        SDK turns it off: its writer only ever resends its own batches. Either way only
        a bounded window of recent batch ids is kept (``batch_window``).

        At most ``max_open_files`` data files stay open (the least recently used are
        closed and reopened when needed); by default the process's pool, a quarter of
        its descriptor limit (``fdpool``).

        With ``process_claims`` (the SDK's own claims in local mode) a claim made through
        this store lives exactly as long as this process (or until released or closed),
        whatever its lease says; otherwise (the server's store) claims live by their lease."""
        self.root = os.path.abspath(os.fspath(root))
        self.scan_batch_ids = scan_batch_ids
        self._claims = owners.FolderClaims(process_claims)
        self._pool = FilePool(max_open_files) if max_open_files is not None else shared_pool()
        self._appenders: dict[_Stream, LockedAppender] = {}  # logs: (prefix, "logs", "")
        self._lock = threading.Lock()
        # Streams appended to since their metadata.json was last refreshed.
        self._stale: dict[_Stream, None] = {}
        self._valid_prefixes: set[str] = set()  # checked by parse_prefix once (listing 1,000 costs ~10 ms)

    # -- paths, locks and errors -----------------------------------------------------

    def experiment_dir(self, prefix: str) -> str:
        """The folder of the experiment ``prefix`` (whether it exists or not)."""
        return os.path.join(self.root, *prefix.split("/"))

    def _stream_folder(self, prefix: str, kind: str, name: str, write: bool = False) -> str:
        if kind == "tracks":  # ours nested, or the ML-Dash SDK's flat folder (sdk_folders)
            return sdk_folders.track_folder(os.path.join(self.experiment_dir(prefix), kind), name, write)
        return os.path.join(self.experiment_dir(prefix), kind, *name.split("/"))

    def _stream_file(self, prefix: str, kind: str, name: str, write: bool = False) -> str:
        return os.path.join(self._stream_folder(prefix, kind, name, write), _DATA)

    def _logs_file(self, prefix: str) -> str:
        return os.path.join(self.experiment_dir(prefix), "logs", "logs.jsonl")

    def _failure(self, exc: OSError, what: str | None = None) -> MLDashError:
        """``exc`` as the package's error; ``what`` says which name it concerns.

        Messages of InvalidNameError (a refusal the client sees) name paths relative
        to the root only.
        """
        if exc.errno not in _NAME_ERRNOS:
            return StorageError(f"{what or 'the store at ' + self.root}: {exc}")
        if what is None:
            filename = exc.filename if isinstance(exc.filename, str) else ""
            inside = filename.startswith(self.root + os.sep)
            what = repr(os.path.relpath(filename, self.root).replace(os.sep, "/")) if inside else "a name"
        if exc.errno == errno.ENAMETOOLONG:
            return InvalidNameError(f"{what}: too long for the file system ({exc.strerror})")
        return InvalidNameError(f"{what}: runs into a file or folder already in the store ({exc.strerror})")

    def _make_folder(self, folder: str, what: str) -> None:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise self._failure(exc, what) from exc

    def _appender(self, stream: _Stream, counter_key: str | None, what: str) -> LockedAppender:
        """The appender of a stream's data file (cached by stream: no path work per batch)."""
        appender = self._appenders.get(stream)
        if appender is None:
            prefix, kind, name = stream
            path = self._logs_file(prefix) if kind == "logs" else self._stream_file(prefix, kind, name, True)
            # The folder is made here, not by the appender, so that a name running into
            # a file is refused as that name.
            self._make_folder(os.path.dirname(path), what)
            if kind == "tracks":  # so that the ML-Dash SDK finds a topic with a "/"
                sdk_folders.make_alias(os.path.join(self.experiment_dir(prefix), kind), name, os.path.dirname(path))
            with self._lock:
                appender = self._appenders.get(stream)
                if appender is None:
                    time_key = "timestamp" if kind == "tracks" else None
                    appender = LockedAppender(path, counter_key, self.scan_batch_ids, self._pool, time_key)
                    self._appenders[stream] = appender
        return appender

    @contextmanager
    def _folder_lock(self, prefix: str) -> Iterator[None]:
        """Hold the experiment's ``.lock`` (threads and processes) for a read-modify-write."""
        folder = self.experiment_dir(prefix)
        self._make_folder(folder, f"experiment {prefix!r}")
        lock_path = os.path.join(folder, ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot lock {folder}: {exc}") from exc
        try:
            lock_file(fd, lock_path)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def _reader_lock(self, prefix: str) -> Iterator[None]:
        """Hold the experiment's ``.lock`` if it can be opened and taken within 0.5 s; a
        reader that may not (a read-only folder, a stuck process holding it) reads
        without: what it reads then may be a moment old, never a failure."""
        lock_path = os.path.join(self.experiment_dir(prefix), ".lock")
        try:
            fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            yield
            return
        try:
            try:
                lock_file(fd, lock_path, timeout=0.5)
            except StorageError:
                pass
            yield
        finally:
            os.close(fd)

    def _reading(self, info: ExperimentInfo, locked: bool = False) -> ExperimentInfo:
        """``info`` as readers see it: resume history, last heartbeat, STALE (see ``claims``)."""
        folder = self.experiment_dir(info.prefix)
        if locked or not os.path.exists(os.path.join(folder, owners.CLAIMS_FILE)):
            return owners.reading(folder, info)
        with self._reader_lock(info.prefix):
            return owners.reading(folder, info)

    # -- experiments -------------------------------------------------------------------

    @_guarded
    def open_experiment(self, info: ExperimentInfo) -> ExperimentInfo:
        path = os.path.join(self.experiment_dir(info.prefix), "experiment.json")
        with self._folder_lock(info.prefix):
            existing = docs.read_json(path)
            if isinstance(existing, dict):
                info = info.resuming(docs.info_from_json(info.prefix, existing, path))
            docs.atomic_write_json(path, docs.info_to_json(info))
            return self._reading(info, locked=True)

    @_guarded
    def update_experiment(self, prefix: str, **changes: Any) -> ExperimentInfo:
        path = os.path.join(self.experiment_dir(prefix), "experiment.json")
        if not os.path.isfile(path):  # do not create folders for an experiment that does not exist
            raise NotFoundError(f"no experiment {prefix!r} under {self.root}")
        with self._folder_lock(prefix):
            existing = docs.read_json(path)
            if not isinstance(existing, dict):
                raise NotFoundError(f"no experiment {prefix!r} under {self.root}")
            info = docs.info_from_json(prefix, existing, path).with_changes(**changes)
            existing.pop(codec.NONFINITE_KEY, None)
            docs.atomic_write_json(path, {**existing, **docs.info_to_json(info)})
            return self._reading(info, locked=True)

    @_guarded
    def get_experiment(self, prefix: str) -> ExperimentInfo | None:
        """The stored info, None when there is none; StorageError when
        ``experiment.json`` cannot be read or is damaged."""
        path = os.path.join(self.experiment_dir(prefix), "experiment.json")
        doc = docs.read_json(path)
        if doc is None:
            return None
        if not isinstance(doc, dict):
            raise StorageError(f"{path} is damaged: not a JSON object")
        return self._reading(docs.info_from_json(prefix, doc, path))

    @_guarded
    def claim_experiment(
        self,
        prefix: str,
        holder: Holder,
        lease_seconds: float,
        join: bool = False,
        new: bool = False,
        replaces: Sequence[str] = (),
    ) -> Claim:
        """Record ``holder`` as running ``prefix`` (or renew its claim) in ``.claims.json``,
        under the folder's ``.lock``; a resume is appended to ``resumes.jsonl``. With
        ``process_claims`` the claim also holds ``.owner.lock`` until released or closed."""
        lease = claims.check_lease(lease_seconds)
        claims.check_holder(holder)
        dead = claims.check_holder_ids(replaces)
        folder = self.experiment_dir(prefix)
        path = os.path.join(folder, "experiment.json")
        with self._folder_lock(prefix):
            status = None
            try:
                doc = docs.read_json(path)
                existed = doc is not None
                if isinstance(doc, dict) and isinstance(doc.get("status"), str):
                    status = doc["status"]
            except StorageError:
                existed = True  # there, but damaged: its status is unknown
            return self._claims.claim(folder, prefix, status, existed, holder, lease, join, new, dead)

    @_guarded
    def release_experiment(self, prefix: str, holder_id: str) -> None:
        """Drop ``holder_id``'s claim (and its ``.owner.lock``); nothing happens for a holder without one."""
        folder = self.experiment_dir(prefix)
        if not os.path.exists(os.path.join(folder, owners.CLAIMS_FILE)):
            self._claims.release(folder, holder_id)  # only lets go of a lock it may hold
            return
        with self._folder_lock(prefix):
            self._claims.release(folder, holder_id)

    @_guarded
    def list_experiments(self, owner: str | None = None, project: str | None = None) -> list[ExperimentInfo]:
        """Every experiment under the root (or one owner, one project), by prefix.

        A folder whose ``experiment.json`` cannot be read or is damaged, or whose path is
        not a valid prefix, is left out with a RuntimeWarning naming it.
        """
        found = []
        for prefix in self._experiment_prefixes(owner, project):
            try:
                info = self.get_experiment(prefix)
            except StorageError as exc:
                warnings.warn(f"ml-dash: leaving out {prefix!r} from the list: {exc}", RuntimeWarning, stacklevel=2)
                continue
            if info is not None:
                found.append(info)
        return found

    def _experiment_prefixes(self, owner: str | None, project: str | None) -> list[str]:
        """The prefixes of the folders holding an ``experiment.json`` under the root (or
        one owner, one project), sorted; a path that is not a valid prefix is left out
        with a RuntimeWarning."""
        base = self.root
        if owner:
            base = os.path.join(base, owner)
            if project:
                base = os.path.join(base, project)
        found = []
        skip = len(self.root) + 1
        valid = self._valid_prefixes
        for folder, dirs, files in os.walk(base, onerror=_warn_unlistable):
            if "experiment.json" in files:
                dirs[:] = []
                prefix = folder[skip:].replace(os.sep, "/")
                if prefix not in valid:
                    try:
                        parse_prefix(prefix)
                    except InvalidNameError as exc:
                        warnings.warn(f"ml-dash: leaving out {prefix!r} from the list: {exc}", RuntimeWarning,
                                      stacklevel=3)
                        continue
                    if len(valid) < _VALID_PREFIXES_KEPT:
                        valid.add(prefix)
                found.append(prefix)
            else:
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        return sorted(found)

    # -- params ------------------------------------------------------------------------

    @_guarded
    def set_params(self, prefix: str, flat: dict[str, Any]) -> ParamsDoc:
        path = os.path.join(self.experiment_dir(prefix), "parameters.json")
        with self._folder_lock(prefix):
            doc = docs.params_merged(docs.read_json(path), flat, time.time(), path)
            docs.atomic_write_json(path, doc)
        return docs.params_from_json(doc, path)

    @_guarded
    def get_params(self, prefix: str) -> ParamsDoc:
        path = os.path.join(self.experiment_dir(prefix), "parameters.json")
        doc = docs.read_json(path)
        return docs.params_from_json(doc, path) if isinstance(doc, dict) else ParamsDoc(data={})

    # -- metrics -----------------------------------------------------------------------

    @_guarded
    def append_metrics(
        self, prefix: str, name: str, points: list[dict[str, Any]], batch_id: str | None = None
    ) -> AppendResult:
        if not points:
            return AppendResult(None, 0)
        stream = (prefix, "metrics", name)
        appender = self._appenders.get(stream) or self._appender(
            stream, "index", f"metric {name!r} of experiment {prefix!r}"
        )
        result = appender.append(
            lambda first: codec.encode_metric_lines(points, first, batch_id), len(points), batch_id
        )
        if not result.duplicate and stream not in self._stale:
            self._mark_stale(stream)
        return result

    @_guarded
    def describe_stream(self, prefix: str, name: str, description: StreamDescription) -> None:
        """Write ``description``, ``tags`` and ``metadata`` into ``metrics/<name>/metadata.json``
        (creating it, with the stream's counters, if there is none yet)."""
        self._make_folder(self._stream_folder(prefix, "metrics", name), f"metric {name!r} of experiment {prefix!r}")
        self._write_stream_metadata(prefix, "metrics", name, description)

    def _decode_metric_block(self, block: bytes, path: str) -> list[dict[str, Any]]:
        """The points of a block of lines (batch ids dropped, non-finite floats restored);
        damaged lines are left out with a warning."""
        lines = decode_block(block, path)
        if not lines:
            return lines
        first, last = lines[0].get("index"), lines[-1].get("index")
        if type(first) is not int or type(last) is not int or last - first != len(lines) - 1:
            return _checked_points(lines, path)  # not one gapless run: look at each line
        if b'"nonFinite"' in block:
            try:
                for line in lines:
                    codec.restore_metric(line)
            except (AttributeError, TypeError, ValueError):
                return _checked_points(lines, path)
        else:
            # Batch ids sit on one line per batch: find those few lines (a byte search,
            # not a per-line regex) and pop the id where it is.
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

    @_guarded
    def read_metrics(self, prefix: str, name: str, start_index: int = 0, limit: int = 1000) -> MetricPage:
        if start_index < 0 or limit < 0:
            raise InvalidValueError(f"start_index and limit must be >= 0, got {start_index} and {limit}")
        path = self._stream_file(prefix, "metrics", name)
        reader = open_lines(path)
        if reader is None:
            return MetricPage(data=[], startIndex=start_index, endIndex=start_index - 1, total=0, hasMore=False)
        with reader:
            total = reader.next_counter("index")
            offset = reader.bisect("index", start_index) if start_index > 0 else 0
            to_end = start_index + limit >= total
            block = reader.read_rest(offset) if to_end else reader.read_block(offset, limit)
            data = self._decode_metric_block(block, path)
            while len(data) < limit and not to_end and block:  # damaged lines took room: read on
                offset += len(block)
                block = reader.read_block(offset, limit - len(data))
                data.extend(self._decode_metric_block(block, path))
        end = data[-1]["index"] if data else start_index - 1
        return MetricPage(data=data, startIndex=start_index, endIndex=end, total=total, hasMore=end + 1 < total)

    @_guarded
    def metric_stats(self, prefix: str, name: str) -> MetricStats:
        """Count and time span from the first and last valid lines only (and only their
        counter and time are decoded: a huge point costs no memory). ``damaged`` counts
        the lines set aside in ``data.jsonl.damaged`` and those at either end of
        ``data.jsonl`` (which warn)."""
        path = self._stream_file(prefix, "metrics", name)
        set_aside = count_lines(path + ".damaged")
        reader = open_lines(path)
        if reader is None:
            return _metric_stats(name, Edge(None, -1, 0), Edge(None, -1, 0), set_aside)
        with reader:
            last = reader.last_valid("index")
            first = reader.first_valid("index") if last.line is not None else Edge(None, -1, 0)
        if first.skipped + last.skipped:
            warn_damaged(path, first.skipped + last.skipped)
        return _metric_stats(name, first, last, set_aside)

    def _stream_names(self, prefix: str, kind: str) -> list[str]:
        base = os.path.join(self.experiment_dir(prefix), kind)
        names = []
        for folder, dirs, files in os.walk(base, onerror=_warn_unlistable):
            dirs.sort()
            if _DATA in files:
                names.append(os.path.relpath(folder, base).replace(os.sep, "/"))
        return sorted(names)

    @_guarded
    def list_metrics(self, prefix: str) -> list[MetricStats]:
        return [self.metric_stats(prefix, name) for name in self._stream_names(prefix, "metrics")]

    # -- logs --------------------------------------------------------------------------

    @_guarded
    def append_logs(self, prefix: str, records: list[LogRecord], batch_id: str | None = None) -> AppendResult:
        if not records:
            return AppendResult(None, 0)
        stream = (prefix, "logs", "")
        appender = self._appenders.get(stream) or self._appender(
            stream, "sequenceNumber", f"the logs of experiment {prefix!r}"
        )
        result = appender.append(
            lambda first: codec.encode_log_lines(records, first, batch_id), len(records), batch_id
        )
        if not result.duplicate and stream not in self._stale:
            self._mark_stale(stream)  # logs/.log_sequence is rewritten at the next sync
        return result

    @_guarded
    def query_logs(self, prefix: str, query: LogQuery) -> LogPage:
        """Log lines matching the filters, paged. Unfiltered pages are a bisection of
        ``logs.jsonl``; filtered ones go through the index in ``logs/.ml-dash/`` (built
        and extended here, see ``log_index``): either way only the page's lines are read,
        except for a text ``search``, which reads the messages the other filters leave."""
        offset = int(query.get("offset", 0))
        limit = int(query.get("limit", 100))
        if offset < 0 or limit < 0:
            raise InvalidValueError(f"offset and limit must be >= 0, got {offset} and {limit}")
        path = self._logs_file(prefix)
        reader = open_lines(path)
        if reader is None:
            return LogPage(logs=[], total=0, offset=offset, limit=limit, hasMore=False)
        with reader:
            return log_index.query(reader, path, query, offset, limit)

    @staticmethod
    def _log_out(line: dict[str, Any]) -> dict[str, Any]:
        return log_index.log_out(line)

    # -- tracks ------------------------------------------------------------------------

    @_guarded
    def append_tracks(
        self, prefix: str, topic: str, entries: list[dict[str, Any]], batch_id: str | None = None
    ) -> AppendResult:
        if not entries:
            return AppendResult(None, 0)
        stream = (prefix, "tracks", topic)
        appender = self._appenders.get(stream) or self._appender(
            stream, None, f"track {topic!r} of experiment {prefix!r}"
        )
        result = appender.append(lambda _first: codec.encode_track_lines(entries, batch_id), len(entries), batch_id)
        if not result.duplicate and stream not in self._stale:
            self._mark_stale(stream)
        return result

    def _track_lines(self, prefix: str, topic: str) -> list[dict[str, Any]]:
        """Every line of the topic in time order, lines of one time in append order
        (non-finite floats restored, batch ids dropped): the whole file, read without
        the index."""
        path = self._stream_file(prefix, "tracks", topic)
        reader = open_lines(path)
        if reader is None:
            return []
        with reader:
            return track_pages.all_lines(reader, path)

    @_guarded
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
        """Merged entries in time order through the topic's index in
        ``tracks/<topic>/.ml-dash/`` (see ``track_pages``): only the page's lines are read."""
        if limit is not None and limit < 0:
            raise InvalidValueError(f"limit must be >= 0, got {limit}")
        path = self._stream_file(prefix, "tracks", topic)
        return track_pages.read(path, start_timestamp, end_timestamp, columns, limit, after)

    def _track_summary(self, prefix: str, topic: str, with_columns: bool = False) -> dict[str, Any]:
        """Entry count and time span of a topic (and, asked for, every field name in it),
        from the summary its index keeps (no read of the data beyond new lines)."""
        path = self._stream_file(prefix, "tracks", topic)
        return {"topic": topic, **track_pages.summary(path, with_columns)}

    @_guarded
    def list_tracks(self, prefix: str) -> list[dict[str, Any]]:
        tracks = os.path.join(self.experiment_dir(prefix), "tracks")
        topics = sdk_folders.listed_topics(tracks, self._stream_names(prefix, "tracks"))
        return [self._track_summary(prefix, topic) for topic in topics]

    # -- stream metadata ---------------------------------------------------------------

    def _mark_stale(self, stream: _Stream) -> None:
        # Callers skip this when the stream is already marked: a refresh that unmarks it
        # meanwhile reads the data after their append, so it counts it.
        with self._lock:
            self._stale[stream] = None

    def _write_stream_metadata(
        self, prefix: str, kind: str, name: str, description: StreamDescription | None = None
    ) -> None:
        """Rewrite ``<kind>/<name>/metadata.json``: counters (and track columns) derived
        from the data file, with ``description`` when given, else the one stored. For the
        logs, ``logs/.log_sequence`` (the next sequence number: the ML-Dash SDK's
        appender starts from it)."""
        if kind == "logs":
            sdk_folders.write_log_sequence(self._logs_file(prefix))
            return
        path = os.path.join(self._stream_folder(prefix, kind, name), "metadata.json")
        if kind == "metrics":
            stats = self.metric_stats(prefix, name)
            derived: dict[str, Any] = {
                "totalDataPoints": stats["totalDataPoints"],
                "nextIndex": stats["totalDataPoints"],
                "firstDataAt": stats["firstDataAt"],
                "lastDataAt": stats["lastDataAt"],
            }
        else:
            derived = self._track_summary(prefix, name, with_columns=True)
            del derived["topic"]
        # The counters may be a moment old when written (another writer appends while
        # they are counted): the file is a cache that every refresh rebuilds. The lock
        # keeps what is not derived (the description) from being lost to a race.
        with self._folder_lock(prefix):
            old = docs.stored_stream_metadata(path)
            docs.atomic_write_json(path, docs.stream_metadata(old, kind, name, derived, description, time.time()))

    def _refresh_stream_metadata(self, prefix: str | None) -> None:
        """Rewrite the metadata of streams appended to since the last refresh (of one
        experiment, or all). A failure warns: the file is a cache, and the stream is
        tried again at the next sync or close."""
        with self._lock:
            streams = [s for s in self._stale if prefix is None or s[0] == prefix]
            for stream in streams:
                del self._stale[stream]
        for stream in streams:
            try:
                self._write_stream_metadata(*stream)
            except Exception as exc:  # a cache: whatever goes wrong must not reach a flush
                self._mark_stale(stream)
                kind, name = stream[1], stream[2]
                warnings.warn(
                    f"ml-dash: cannot refresh {kind}/{name}/metadata.json of {stream[0]!r}: {exc} "
                    "(tried again at the next flush or close)",
                    RuntimeWarning,
                    stacklevel=3,
                )

    # -- durability --------------------------------------------------------------------

    def check_access(self, prefix: str, timeout: float) -> None:
        """Nothing to ask: a folder this process cannot write is retried and reported
        by the writer (disk trouble may pass)."""

    @_guarded
    def sync(self, prefix: str, *, refresh: bool = True) -> None:
        """fsync every data file of ``prefix`` this store appended to (StorageError if
        one fails), then, with ``refresh``, rewrite the ``metadata.json`` of the streams
        appended to since the last refresh (a failure there warns)."""
        with self._lock:
            appenders = [a for stream, a in self._appenders.items() if stream[0] == prefix]
        failures: list[StorageError] = []
        for appender in appenders:
            try:
                appender.fsync()
            except StorageError as exc:
                failures.append(exc)
        if refresh:
            self._refresh_stream_metadata(prefix)
        if failures:
            raise failures[0]

    @_guarded
    def close(self) -> None:
        """Refresh the ``metadata.json`` of streams appended to since the last refresh
        (a failure warns), let go of the owner locks of process claims, then close every
        data file. StorageError if closing one reports an error (all are closed
        regardless). The store can be used again."""
        self._refresh_stream_metadata(None)
        self._claims.close()
        with self._lock:
            appenders = list(self._appenders.values())
            self._appenders.clear()
        failures: list[StorageError] = []
        for appender in appenders:
            try:
                appender.close()
            except StorageError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    # -- chart and table reads (``local_reads``) -------------------------------------------

    read_only = False  # ml_dash.open sets it: derived indexes then stay in memory

    def _series_indexes(self) -> local_reads.SeriesIndexes:
        indexes: local_reads.SeriesIndexes | None = self.__dict__.get("_indexes")
        if indexes is None:
            with self._lock:
                indexes = self.__dict__.setdefault("_indexes", local_reads.SeriesIndexes(not self.read_only))
        assert indexes is not None
        return indexes

    def _run_summary_files(self) -> RunSummaryFiles:
        cache: RunSummaryFiles | None = self.__dict__.get("_summaries")
        if cache is None:
            with self._lock:
                cache = self.__dict__.setdefault("_summaries", RunSummaryFiles(not self.read_only))
        assert cache is not None
        return cache

    @_guarded
    def metric_series(self, prefix: str, name: str, y: str, x: str = "index", x0: float | None = None,
                      x1: float | None = None, width: int = 1000) -> Series:
        """The M4 series of field ``y`` of one stream against ``x`` (see ``ml_dash.series``)."""
        return local_reads.metric_series(self, self._series_indexes(), prefix, name, y, x, x0, x1, width)

    @_guarded
    def metric_fields(self, prefix: str, name: str) -> dict[str, FieldStats]:
        """Count, first, last, min and max of every numeric field of one stream."""
        return local_reads.field_stats(self, self._series_indexes(), prefix, name)

    @_guarded
    def run_summaries(self, owner: str | None = None, project: str | None = None) -> list[RunSummary]:
        """One summary (info, params, metric field stats) per experiment under
        ``owner``/``project``, from the ``.ml-dash/summary.json`` kept in each experiment
        (``run_summary_files``; what changed since it was made is read again)."""
        return local_reads.run_summaries(self, self._series_indexes(), self._run_summary_files(), owner, project)


def _warn_unlistable(exc: OSError) -> None:
    """``os.walk``'s error hook: a folder that does not exist is empty; others warn."""
    if not isinstance(exc, FileNotFoundError | NotADirectoryError):
        warnings.warn(f"ml-dash: cannot list {exc.filename}: {exc.strerror}", RuntimeWarning, stacklevel=2)


class _PointTimes(msgspec.Struct):
    ts: Any = msgspec.field(default=None, name="_ts")


class _PointHead(msgspec.Struct, rename="camel"):
    data: _PointTimes | None = None
    created_at: Any = None


_decode_head = msgspec.json.Decoder(_PointHead).decode


def _point_time(line: bytes | None) -> float | None:
    """``data._ts`` (else ``createdAt``) of a metric line, decoding nothing else of it."""
    if line is None:
        return None
    try:
        head = _decode_head(line)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    ts = head.data.ts if head.data is not None else None
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        return float(ts)
    return codec.parse_iso(head.created_at)


def _metric_stats(name: str, first: Edge, last: Edge, set_aside: int) -> MetricStats:
    stats = MetricStats(
        name=name,
        totalDataPoints=last.counter + 1,
        firstDataAt=_point_time(first.line),
        lastDataAt=_point_time(last.line),
    )
    damaged = set_aside + first.skipped + last.skipped
    if damaged:
        stats["damaged"] = damaged
    return stats


def _checked_points(lines: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """The lines that are points (a non-negative integer ``index``; ``data`` and
    ``nonFinite`` objects when present), restored; the others are damaged: a warning."""
    points = []
    for line in lines:
        index = line.get("index")
        if type(index) is not int or index < 0:
            continue
        if not isinstance(line.get("data", {}), dict) or not isinstance(line.get(codec.NONFINITE_KEY, {}), dict):
            continue
        points.append(codec.restore_metric(line))
    if len(points) < len(lines):
        warn_damaged(path, len(lines) - len(points))
    return points
