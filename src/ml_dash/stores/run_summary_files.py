"""The folder store's run summaries, kept per experiment in ``.ml-dash/summary.json``.

A table of runs needs, per experiment, its info, its params and the field statistics
of every metric stream. Read from their sources that is a walk of ``metrics/``, two
JSON files and a series index per stream: seconds for 1,000 experiments. So beside the
data each experiment keeps one file holding all of it, with what it was made from:

- ``experiment.json`` and ``parameters.json`` as stored, each with the identity (inode,
  size, modification time in ns) of the file it was read from;
- the modification time of every folder of the ``metrics/`` tree (a new stream adds an
  entry to one of them) and, per stream, the identity of its ``data.jsonl`` and the
  statistics of its fields (``SeriesIndex.field_stats``).

A request stats those files and folders (about ten ``stat`` calls per experiment) and
takes from the summary what still matches; a part that does not is read again from its
source (a stream's statistics from its series index, which reads only the lines
appended since it was last extended) and the file is rewritten. So the summary is
derived data: a missing, stale, truncated or garbled file is rebuilt, never trusted,
and nothing is written while logging (the writer never touches it).

Two rules keep a match from lying:

- a source is stat'ed *before* it is read (an experiment file through the descriptor
  it is read from), so the recorded identity is never newer than what was read;
- file systems stamp times with a coarse clock (a few ms): a change right after a
  summary was built may leave the time and size as they were. A source whose recorded
  time is within ``SETTLE`` seconds of the summary's build time is *unsettled* and is
  read again at every request until a rebuild finds it older.

A store opened read-only (``ml_dash.open``) keeps summaries in memory only.
docs/storage-format.md ("Run summaries") describes the file.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar, cast

import msgspec

from ..errors import MLDashError, StorageError
from ..fileio import atomic_write_bytes
from ..summaries import FieldStats

FORMAT = "ml-dash-run-summary"
VERSION = 1
FOLDER = ".ml-dash"
FILE = "summary.json"
SETTLE = 1.0  # seconds: a source changed this close to a build is read again
MAX_KEPT = 20_000  # summaries kept in memory per store (about 4 KB each for 50 params, 10 fields)
_DATA = "data.jsonl"
_SKIPPED_DIRS = (".series", ".ml-dash")  # derived files beside a stream, never streams
_READ = 1 << 16
T = TypeVar("T")


class Source(msgspec.Struct, array_like=True, frozen=True):
    """What identifies one version of a file or folder: inode, size, mtime in ns."""

    ino: int
    size: int
    mtime: int

    @classmethod
    def of(cls, st: os.stat_result) -> Source:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)

    def settled(self, built: float) -> bool:
        """Whether a change after ``built`` would certainly have changed this identity."""
        return self.mtime < (built - SETTLE) * 1e9


class StreamEntry(msgspec.Struct, frozen=True):
    data: Source
    fields: dict[str, FieldStats]


class SummaryFile(msgspec.Struct, frozen=True):
    """The content of ``.ml-dash/summary.json``."""

    format: str
    version: int
    built: float  # time.time() before any source was looked at
    experiment: Source
    info: dict[str, Any]  # experiment.json as stored
    params_file: Source | None  # None: there is no parameters.json
    params: dict[str, Any]  # parameters.json as stored ({} when there is none)
    folders: dict[str, Source]  # the metrics/ tree: "" is metrics/ itself, "a" is metrics/a ...
    streams: dict[str, StreamEntry]


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(SummaryFile).decode


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_document(path: str) -> tuple[Source, dict[str, Any]] | None:
    """The JSON object in ``path`` and the identity of the file it came from (fstat of
    the descriptor read: never newer than the bytes), or None when there is none.
    StorageError when it cannot be read or is not a JSON object."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    try:
        with os.fdopen(fd, "rb") as fh:
            source = Source.of(os.fstat(fh.fileno()))
            raw = fh.read()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise StorageError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise StorageError(f"{path} is damaged: not a JSON object")
    return source, doc


def walk_streams(metrics: str) -> tuple[dict[str, Source], list[str]] | None:
    """The folders of the ``metrics`` tree (each stat'ed before it is listed) and the
    names of the streams in it (folders holding ``data.jsonl``), or None when there is
    no ``metrics`` folder."""
    folders: dict[str, Source] = {}
    names: list[str] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        path = os.path.join(metrics, *rel.split("/")) if rel else metrics
        st = _stat(path)
        if st is None:
            if not rel:
                return None
            continue  # removed while we walked: its parent's time changed, so the summary is not trusted
        folders[rel] = Source.of(st)
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name == _DATA and rel:
                names.append(rel)
            elif entry.name not in _SKIPPED_DIRS and not entry.name.startswith(".tmp") and entry.is_dir():
                pending.append(f"{rel}/{entry.name}" if rel else entry.name)
    return folders, sorted(names)


def _folders_match(folders: dict[str, Source], metrics: str, built: float) -> bool:
    for rel, recorded in folders.items():
        if not recorded.settled(built):
            return False
        st = _stat(os.path.join(metrics, *rel.split("/")) if rel else metrics)
        if st is None or Source.of(st) != recorded:
            return False
    return True


class Refreshed(msgspec.Struct, frozen=True):
    """One experiment's summary as a request uses it."""

    summary: SummaryFile
    changed: bool  # rebuilt in part or whole by this request


StatsOf = Callable[[str], dict[str, FieldStats]]  # stream folder -> its field stats


def _same(path: str, source: Source, settled_before: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_mtime_ns == source.mtime and source.mtime < settled_before and st.st_size == source.size
            and st.st_ino == source.ino)


def still_true(folder: str, old: SummaryFile) -> bool:
    """Whether every source of ``old`` is as it was (and settled): the common case,
    checked with one ``stat`` per source and nothing else."""
    settled_before = int((old.built - SETTLE) * 1e9)
    sep = os.sep
    if not _same(folder + sep + "experiment.json", old.experiment, settled_before):
        return False
    params = folder + sep + "parameters.json"
    if old.params_file is None:
        if os.path.lexists(params):
            return False
    elif not _same(params, old.params_file, settled_before):
        return False
    metrics = folder + sep + "metrics"
    if not old.folders:
        return not os.path.lexists(metrics)
    for rel, source in old.folders.items():
        if not _same(metrics + sep + rel.replace("/", sep) if rel else metrics, source, settled_before):
            return False
    for name, entry in old.streams.items():
        if not _same(metrics + sep + name.replace("/", sep) + sep + _DATA, entry.data, settled_before):
            return False
    return True


def refresh(folder: str, old: SummaryFile | None, stats_of: StatsOf) -> Refreshed | None:
    """The summary of the experiment in ``folder``, reusing what of ``old`` still
    matches its sources; None when the experiment has no ``experiment.json``.
    StorageError when ``experiment.json`` cannot be read or is damaged."""
    if old is not None and still_true(folder, old):
        return Refreshed(old, False)
    built = time.time()
    exp_path = os.path.join(folder, "experiment.json")
    st = _stat(exp_path)
    if st is None:
        return None
    reread = old is None  # anything read from its source: the summary is rewritten (with a new build time)
    if old is not None and Source.of(st) == old.experiment and old.experiment.settled(old.built):
        experiment, info = old.experiment, old.info
    else:
        found = read_document(exp_path)
        if found is None:
            return None
        experiment, info = found
        reread = True

    params_path = os.path.join(folder, "parameters.json")
    st = _stat(params_path)
    params_file: Source | None
    if old is not None and (
        (st is None and old.params_file is None)
        or (st is not None and Source.of(st) == old.params_file and old.params_file.settled(old.built))
    ):
        params_file, params = old.params_file, old.params
    else:
        try:
            read = read_document(params_path)
        except StorageError as exc:
            # As get_params would: a damaged parameters.json shows no params (and is read again next time).
            warnings.warn(f"ml-dash: {exc}; showing no params", RuntimeWarning, stacklevel=2)
            read = None
        params_file, params = read if read is not None else (None, {})
        reread = True

    metrics = os.path.join(folder, "metrics")
    if old is not None and old.folders and _folders_match(old.folders, metrics, old.built):
        folders, names = old.folders, list(old.streams)
    elif old is not None and not old.folders and _stat(metrics) is None:
        folders, names = {}, []
    else:
        walked = walk_streams(metrics)
        folders, names = walked if walked is not None else ({}, [])
        reread = True

    streams: dict[str, StreamEntry] = {}
    for name in names:
        stream_folder = os.path.join(metrics, *name.split("/"))
        st = _stat(os.path.join(stream_folder, _DATA))
        if st is None:
            reread = True  # gone since the tree was listed
            continue
        source = Source.of(st)
        kept = old.streams.get(name) if old is not None else None
        if kept is not None and old is not None and kept.data == source and source.settled(old.built):
            streams[name] = kept
        else:
            streams[name] = StreamEntry(source, stats_of(stream_folder))
            reread = True
    if not reread and old is not None:
        return Refreshed(old, False)
    return Refreshed(SummaryFile(FORMAT, VERSION, built, experiment, info, params_file, params, folders, streams),
                     True)


def load(folder: str) -> SummaryFile | None:
    """The stored summary of the experiment in ``folder``, or None when there is none or
    it cannot be trusted (unreadable, truncated, garbled, another format)."""
    try:
        fd = os.open(os.path.join(folder, FOLDER, FILE), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        # os.read, not open(): a buffered file object costs as much again as the read.
        parts = [os.read(fd, _READ)]
        while len(parts[-1]) == _READ:
            parts.append(os.read(fd, _READ))
        summary = _decode(b"".join(parts))
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    finally:
        os.close(fd)
    if summary.format != FORMAT or summary.version != VERSION:
        return None
    return summary


def store(folder: str, summary: SummaryFile) -> None:
    """Replace ``.ml-dash/summary.json`` atomically (no fsync: a file lost or garbled by
    a crash is rebuilt). StorageError when it cannot be written."""
    target = os.path.join(folder, FOLDER)
    try:
        os.makedirs(target, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc}") from exc
    atomic_write_bytes(os.path.join(target, FILE), _encode(summary), durable=False)


class RunSummaryFiles:
    """The summaries of one store: kept in memory (least recently used first out) and,
    when ``writable``, in each experiment's ``.ml-dash/summary.json``."""

    def __init__(self, writable: bool = True, size: int = MAX_KEPT) -> None:
        self.writable = writable
        self.size = size
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, SummaryFile] = OrderedDict()
        self._made: dict[str, tuple[SummaryFile, Any]] = {}
        self._warned = False

    def made_from(self, folder: str, summary: SummaryFile, make: Callable[[SummaryFile], T]) -> T:
        """``make(summary)``, remembered while ``summary`` is the one kept for ``folder``
        (what a request builds from an unchanged summary is built once)."""
        with self._lock:
            found = self._made.get(folder)
        if found is not None and found[0] is summary:
            return cast(T, found[1])
        made = make(summary)
        with self._lock:
            if folder in self._kept:
                self._made[folder] = (summary, made)
        return made

    def get(self, folder: str, stats_of: StatsOf) -> SummaryFile | None:
        """The up-to-date summary of the experiment in ``folder`` (None when it has no
        ``experiment.json``); StorageError when that file cannot be read or is damaged."""
        with self._lock:
            old = self._kept.get(folder)
        if old is None:
            old = load(folder)
        done = refresh(folder, old, stats_of)
        if done is None:
            with self._lock:
                self._kept.pop(folder, None)
                self._made.pop(folder, None)
            return None
        if done.changed and self.writable:
            try:
                store(folder, done.summary)
            except (OSError, MLDashError) as exc:
                self._unwritable(folder, exc)
        with self._lock:
            self._kept[folder] = done.summary
            self._kept.move_to_end(folder)
            while len(self._kept) > self.size:
                gone, _ = self._kept.popitem(last=False)
                self._made.pop(gone, None)
        return done.summary

    def _unwritable(self, folder: str, exc: Exception) -> None:
        # A folder this process may not write (a read-only copy): keep the summaries in
        # memory, and say so once.
        if not self._warned:
            self._warned = True
            warnings.warn(f"ml-dash: cannot write the run summary in {folder}: {exc} (kept in memory)",
                          RuntimeWarning, stacklevel=4)
