"""The series index on disk, and the checks that it still describes the data file.

``metrics/<name>/.series/`` holds ``manifest.json`` (the commit point, replaced by
rename), ``<gen>.offsets`` and one file per field and level, ``<gen>.<h>.<level>``
(``<h>``: a hash of the field name). Files are only appended to past their committed
length; the manifest holds each file's committed record count and CRC-32. An index that
fails any check is not trusted: ``load`` returns None and the caller rebuilds.
docs/series.md has the format.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import uuid
import zlib
from typing import Any

import msgspec
import numpy as np

from ..errors import StorageError
from . import series_lines
from . import series_records as pyramid
from .jsonl import LineReader, lock_file
from .series_build import State, edge_crcs
from .series_lines import line_at, pread
from .series_records import BASE_DTYPE, OFFSETS_DTYPE, Arr, Grow, record_dtype

FORMAT = "ml-dash-series"
FORMAT_VERSION = 1
INDEX_DIR = ".series"
DATA_FILE = "data.jsonl"
MANIFEST = "manifest.json"
_LOCK = "lock"
_SPOT_CHECKS = 8


def field_file(generation: str, name: str, level: int) -> str:
    """The file name of one field's records at one level."""
    # Field names may hold any character: files are named by a hash of the name.
    return f"{generation}.{hashlib.sha1(name.encode()).hexdigest()[:16]}.{level}"


def state_files(state: State) -> dict[str, Arr]:
    """File name -> the records it holds."""
    out = {f"{state.generation}.offsets": state.offsets.view}
    for name, levels in state.fields.items():
        for level, grow in enumerate(levels):
            out[field_file(state.generation, name, level)] = grow.view
    return out


def _manifest(state: State) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "base": pyramid.BASE,
        "fanout": pyramid.FANOUT,
        "generation": state.generation,
        "data": {
            "dev": state.dev,
            "ino": state.ino,
            "bytes": state.covered,
            "nodes": state.nodes,
            "head": state.head,
            "tail": state.tail,
        },
        "regular": state.regular,
        "overflow": state.overflow,
        "fields": sorted(state.fields),
        "files": {name: {"records": count, "crc": crc} for name, (count, crc) in sorted(state.committed.items())},
    }


def _read_manifest(folder: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(folder, MANIFEST), "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(doc, dict)
        and doc.get("format") == FORMAT
        and doc.get("version") == FORMAT_VERSION
        and doc.get("base") == pyramid.BASE
        and doc.get("fanout") == pyramid.FANOUT
    )
    return doc if ok else None


def _read_records(path: str, dtype: np.dtype[Any], count: int, crc: int) -> Arr:
    with open(path, "rb") as f:
        data = f.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize or zlib.crc32(data) != crc:
        raise ValueError(f"{path}: short or failing its CRC")
    out: Arr = np.frombuffer(data, dtype=dtype).copy()
    return out


def load(folder: str) -> State | None:
    """The index committed in ``folder``, or None if there is none or it is damaged."""
    for _ in range(3):  # a concurrent rebuild may delete the files a manifest names
        doc = _read_manifest(folder)
        if doc is None:
            return None
        try:
            return _state_from(folder, doc)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
    return None


def _state_from(folder: str, doc: dict[str, Any]) -> State:
    data, files, gen = doc["data"], doc["files"], str(doc["generation"])

    def records(name: str, dtype: np.dtype[Any]) -> Arr:
        entry = files[name]
        return _read_records(os.path.join(folder, name), dtype, int(entry["records"]), int(entry["crc"]))

    offsets = records(f"{gen}.offsets", OFFSETS_DTYPE)
    state = State(gen, int(data["dev"]), int(data["ino"]), Grow(OFFSETS_DTYPE, offsets))
    if state.nodes != int(data["nodes"]) or state.covered != int(data["bytes"]) or offsets[0] != 0:
        raise ValueError("offsets disagree with the manifest")
    if np.any(np.diff(offsets) <= 0):
        raise ValueError("offsets do not increase")
    state.regular, state.overflow = bool(doc["regular"]), bool(doc["overflow"])
    state.head, state.tail = int(data["head"]), int(data["tail"])
    counts = state.level_counts()
    for name in doc["fields"]:
        levels = [
            Grow(record_dtype(lv), records(field_file(gen, str(name), lv), record_dtype(lv)))
            for lv in range(len(counts))
        ]
        if [len(g) for g in levels] != counts:
            raise ValueError(f"field {name!r}: level sizes disagree with the nodes")
        state.fields[str(name)] = levels or [Grow(BASE_DTYPE)]
    state.committed = {name: (int(e["records"]), int(e["crc"])) for name, e in files.items()}
    state.end = -1  # the tail is counted at the first refresh
    return state


def persist(state: State, folder: str) -> None:
    """Write what the files lack and commit it, under the folder's lock (skipped when
    another process holds it: the index stays in memory until the next refresh).
    Raises OSError or StorageError when the disk refuses."""
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, _LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            lock_file(fd, folder, timeout=0.5)
        except StorageError:
            return
        doc = _read_manifest(folder)
        same = doc is not None and doc.get("generation") == state.generation
        on_disk = {}
        if same and doc is not None:
            on_disk = {name: (int(e["records"]), int(e["crc"])) for name, e in doc["files"].items()}
        committed: dict[str, tuple[int, int]] = {}
        for name, records in state_files(state).items():
            count, crc = on_disk.get(name, (0, 0))
            if count > len(records):
                return  # another process indexed further: its files are as good as ours
            new = records[count:].tobytes()
            with open(os.path.join(folder, name), "r+b" if count else "wb") as f:
                f.seek(count * records.dtype.itemsize)
                f.write(new)
                f.truncate()
            committed[name] = (len(records), zlib.crc32(new, crc))
        state.committed = committed
        tmp = os.path.join(folder, f"{MANIFEST}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "w") as f:
            json.dump(_manifest(state), f)
        os.replace(tmp, os.path.join(folder, MANIFEST))
        if not same:
            for name in os.listdir(folder):
                if name not in (MANIFEST, _LOCK) and not name.startswith(state.generation + "."):
                    try:
                        os.unlink(os.path.join(folder, name))
                    except FileNotFoundError:
                        pass
    finally:
        os.close(fd)  # lets the lock go


def matches(state: State, reader: LineReader, st: os.stat_result) -> bool:
    """Whether the indexed part of the data file is still what the index was built from."""
    covered = state.covered
    if (st.st_dev, st.st_ino) != (state.dev, state.ino) or reader.end < covered:
        return False
    if edge_crcs(reader, covered) != (state.head, state.tail):
        return False
    if reader.end < state.end:  # a torn or truncated tail after the nodes: count it again
        state.end = -1
    return True


def spot_check(state: State, reader: LineReader) -> bool:
    """A few random nodes start where the index says, with the index it says."""
    if state.nodes < 2:
        return True
    for node in random.sample(range(1, state.nodes), min(_SPOT_CHECKS, state.nodes - 1)):
        start = int(state.offsets.buf[node])
        if pread(reader, start - 1, start) != b"\n":
            return False
        if state.regular:
            try:
                doc = series_lines.decode_line(line_at(reader, start))
            except msgspec.DecodeError:
                return False
            if not isinstance(doc, dict) or doc.get("index") != node * pyramid.BASE:
                return False
    return True
