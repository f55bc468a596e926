"""The whole-file JSON documents of the local store, and records <-> those documents.

``experiment.json``, ``parameters.json`` and ``metadata.json`` are read whole and
replaced whole (temporary file, fsync, rename), so a reader sees the old version or
the new one. See docs/storage-format.md for their keys. Reading one that cannot be
read or interpreted raises ``StorageError`` (the file is damaged); LocalStore decides
what a damaged file means for each call.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from ..errors import InvalidValueError, MLDashError, StorageError
from ..fileio import atomic_write_bytes
from ..names import parse_prefix
from ..records import ExperimentInfo, ParamsDoc, StreamDescription
from ..values import find_nonfinite, restore_nonfinite
from . import codec
from .lines import lenient_decode


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


def read_bytes(path: str) -> bytes | None:
    """The bytes of ``path``, or None when it does not exist; StorageError if unreadable."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc


def read_json(path: str) -> Any:
    """The JSON value in ``path``, or None when the file does not exist.

    StorageError when it cannot be read or is not valid JSON (a damaged file).
    """
    raw = read_bytes(path)
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        value = lenient_decode(raw)  # the ML-Dash SDK writes NaN params as bare tokens
        if value is None:
            raise StorageError(f"{path} is not valid JSON: {exc}") from exc
        return value


@contextmanager
def interpreting(path: str) -> Iterator[None]:
    """A stored document whose values have the wrong types is damaged: StorageError."""
    try:
        yield
    except MLDashError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:
        raise StorageError(f"{path} is damaged: {type(exc).__name__}: {exc}") from exc


# -- experiment.json ----------------------------------------------------------------------


def info_to_json(info: ExperimentInfo) -> dict[str, Any]:
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


# What the ML-Dash SDK's experiment.json lacks: it records no status (shown COMPLETED, see
# docs/storage-format.md, "Folders of the public SDK") and spells the creation time
# ``created_at``.
SDK_STATUS = "COMPLETED"


def info_from_json(prefix: str, doc: dict[str, Any], path: str) -> ExperimentInfo:
    """The info in ``doc`` (read from ``path``); StorageError when its values are damaged.
    A document of the ML-Dash SDK (no ``status``, ``created_at``) reads as COMPLETED."""
    parsed = parse_prefix(prefix)
    with interpreting(path):
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
            status=doc.get("status") or ("RUNNING" if "formatVersion" in doc else SDK_STATUS),
            created_at=codec.parse_iso(doc.get("createdAt") or doc.get("created_at")) or 0.0,
            started_at=codec.parse_iso(doc.get("startedAt")),
            ended_at=codec.parse_iso(doc.get("endedAt")),
            format_version=int(doc.get("formatVersion") or 0),
        )


# -- parameters.json ----------------------------------------------------------------------


def params_merged(old: Any, flat: dict[str, Any], now: float, path: str) -> dict[str, Any]:
    """The ``parameters.json`` document after ``set(flat)`` over ``old`` (None: none yet)."""
    if not isinstance(old, dict):
        old = {"version": 0, "data": {}, "createdAt": codec.iso_utc(now)}
    with interpreting(path):
        data = {**(old.get("data") or {}), **flat}
        version = int(old.get("version") or 0) + 1
    doc = {
        "version": version,
        "data": data,
        "createdAt": old.get("createdAt") or codec.iso_utc(now),
        "updatedAt": codec.iso_utc(now),
    }
    found = find_nonfinite(data)
    if found:
        doc[codec.NONFINITE_KEY] = found
    return doc


def params_from_json(doc: dict[str, Any], path: str) -> ParamsDoc:
    """The params in ``doc`` (read from ``path``); StorageError when its values are damaged."""
    with interpreting(path):
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


# -- metadata.json of a stream ----------------------------------------------------------------


def stored_stream_metadata(path: str) -> dict[str, Any]:
    """The stored ``metadata.json`` ({} when there is none; a damaged one is written
    anew, with a warning: all but the description in it is derived from the data)."""
    raw = read_bytes(path)
    if raw is None:
        return {}
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        doc = lenient_decode(raw)
        if isinstance(doc, dict):
            return doc
        warnings.warn(f"ml-dash: {path} is damaged ({exc}); writing it anew", RuntimeWarning, stacklevel=3)
        return {}
    return doc if isinstance(doc, dict) else {}


def stream_metadata(
    old: dict[str, Any],
    kind: str,
    name: str,
    derived: dict[str, Any],
    description: StreamDescription | None,
    now: float,
) -> dict[str, Any]:
    """The new ``metadata.json`` of stream ``name``: ``old`` with the ``derived`` counters,
    and (metrics) ``description`` when given, else the stored one."""
    doc: dict[str, Any] = dict(old) if old else {"name": name, "createdAt": codec.iso_utc(now)}
    if kind == "metrics":
        doc.update(metricId=doc.get("metricId") or f"local-metric-{name}", name=name, **derived)
        if description is not None:
            doc.update(
                description=description.description,
                tags=list(description.tags),
                metadata=dict(description.metadata),
            )
        else:
            doc.setdefault("description", None)
            doc.setdefault("tags", [])
            doc.setdefault("metadata", {})
    else:
        # trackId and topic: the ML-Dash SDK's lister needs both (sdk_folders)
        track_id = doc.get("trackId") or f"local-track-{name.replace('/', '_')}"
        doc.update(name=name, topic=name, trackId=track_id, **derived)
    doc["updatedAt"] = codec.iso_utc(now)
    return doc
