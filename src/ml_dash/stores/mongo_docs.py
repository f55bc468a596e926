"""Records <-> MongoDB documents: the edge of MongoStore.

User-chosen keys (params, metadata, track fields) never become MongoDB field names:
they travel inside *blobs*, JSON text with a ``nonFinite`` pointer map beside the value
when it holds NaN or infinities. Measured against the emulated MongoDB (nx-27017),
documents holding NaN/inf are rejected ("Invalid JSON document"), and BSON itself
cannot hold ints beyond 64 bits (pymongo raises OverflowError); JSON text keeps both
exactly, and ``$``/``.`` keys are then only characters in a string. Fields MongoDB
must filter or sort on (prefix, owner, level, timestamps, sequence numbers) are
stored beside the blob as plain values.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from ..errors import InvalidValueError
from ..names import parse_prefix
from ..records import ExperimentInfo, LogRecord, Resume, StreamDescription
from ..values import find_nonfinite, restore_nonfinite
from . import codec
from .claims import HolderState

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def to_blob(value: Any, what: str) -> str:
    """``value`` as JSON text (``{"v": ...[, "nonFinite": {...}]}``); InvalidValueError if it cannot be."""
    body: dict[str, Any] = {"v": value}
    try:
        text = _encode(body)
        if b"null" in text:
            found = find_nonfinite(body)
            if found:
                text = _encode({"v": value, "nonFinite": found})
    except (TypeError, OverflowError, UnicodeEncodeError, msgspec.EncodeError) as exc:
        raise InvalidValueError(f"{what}: a value cannot be encoded as JSON: {exc}") from exc
    return text.decode()


def from_blob(text: str | None, default: Any = None) -> Any:
    """The value ``to_blob`` wrote (non-finite floats restored)."""
    if not text:
        return default
    body = _decode(text)
    found = body.pop("nonFinite", None)
    if found:
        restore_nonfinite(body, found)
    return body.get("v", default)


# -- experiments --------------------------------------------------------------------------


def experiment_doc(info: ExperimentInfo, rev: int) -> dict[str, Any]:
    """The ``experiments`` document of ``info`` (``_id`` is the prefix)."""
    return {
        "_id": info.prefix,
        "owner": info.owner,
        "project": info.project,
        "name": info.name,
        "folders": list(info.folders),
        "description": info.description,
        "tags": list(info.tags),
        "metadata": to_blob(info.metadata, "experiment metadata"),
        "status": info.status,
        "createdAt": info.created_at,
        "startedAt": info.started_at,
        "endedAt": info.ended_at,
        "formatVersion": info.format_version,
        "rev": rev,
    }


def experiment_from_doc(doc: dict[str, Any]) -> ExperimentInfo:
    prefix = str(doc["_id"])
    parsed = parse_prefix(prefix)
    metadata = from_blob(doc.get("metadata"), {})
    return ExperimentInfo(
        prefix=prefix,
        owner=parsed.owner,
        project=parsed.project,
        name=parsed.name,
        folders=parsed.folders,
        description=doc.get("description"),
        tags=tuple(doc.get("tags") or ()),
        metadata=metadata if isinstance(metadata, dict) else {},
        status=doc.get("status") or "RUNNING",
        created_at=float(doc.get("createdAt") or 0.0),
        started_at=_float(doc.get("startedAt")),
        ended_at=_float(doc.get("endedAt")),
        format_version=int(doc.get("formatVersion") or 0),
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# -- claims -------------------------------------------------------------------------------


def holder_doc(h: HolderState) -> dict[str, Any]:
    """A holder inside a ``claims`` document (fixed field names; times in seconds)."""
    return {"id": h.id, "host": h.host, "pid": h.pid, "join": h.join, "claimedAt": h.claimed_at,
            "renewedAt": h.renewed_at, "leaseSeconds": h.lease_seconds, "process": h.process}


def holders_from_doc(doc: dict[str, Any] | None) -> list[HolderState]:
    out = []
    for h in (doc or {}).get("holders") or ():
        out.append(HolderState(str(h["id"]), str(h.get("host", "")), int(h.get("pid", 0)), bool(h.get("join")),
                               float(h.get("claimedAt", 0.0)), float(h.get("renewedAt", 0.0)),
                               float(h.get("leaseSeconds", 0.0)), bool(h.get("process"))))
    return out


def resume_doc(r: Resume) -> dict[str, Any]:
    return {"at": r.at, "host": r.host, "pid": r.pid, "interrupted": r.interrupted, "previousStatus": r.previous_status}


def resumes_from_doc(doc: dict[str, Any] | None) -> tuple[Resume, ...]:
    return tuple(
        Resume(float(r["at"]), str(r.get("host", "")), int(r.get("pid", 0)), bool(r.get("interrupted")),
               str(r.get("previousStatus") or "RUNNING"))
        for r in (doc or {}).get("resumes") or ()
    )


# -- metric streams -----------------------------------------------------------------------


def description_doc(sid: str, prefix: str, name: str, description: StreamDescription) -> dict[str, Any]:
    """The ``stream_descriptions`` document of a metric stream (``_id`` is its stream id)."""
    return {
        "_id": sid,
        "exp": prefix,
        "name": name,
        "description": description.description,
        "tags": list(description.tags),
        "metadata": to_blob(description.metadata, "stream metadata"),
        "updatedAt": time.time(),
    }


def description_from_doc(doc: dict[str, Any]) -> StreamDescription:
    metadata = from_blob(doc.get("metadata"), {})
    return StreamDescription(doc.get("description"), tuple(doc.get("tags") or ()),
                             metadata if isinstance(metadata, dict) else {})


# -- logs ---------------------------------------------------------------------------------


def log_docs(prefix: str, log_id: str, records: list[LogRecord], first: int) -> list[dict[str, Any]]:
    """One ``logs`` document per record, ``_id`` derived from the sequence number."""
    docs = []
    for seq, rec in enumerate(records, first):
        doc: dict[str, Any] = {
            "_id": f"{log_id}:{seq:012d}",
            "exp": prefix,
            "seq": seq,
            "ts": rec.ts,
            "level": rec.level,
            "message": rec.message,
        }
        if rec.metadata:
            doc["metadata"] = to_blob(rec.metadata, "log metadata")
        docs.append(doc)
    return docs


def log_from_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The log line as LocalStore returns it (``sequenceNumber``, ``timestamp``, ...)."""
    return {
        "sequenceNumber": int(doc["seq"]),
        "timestamp": codec.iso_utc(doc["ts"]),
        "level": doc["level"],
        "message": doc["message"],
        "metadata": from_blob(doc.get("metadata"), {}),
        "ts": doc["ts"],
    }


# -- tracks -------------------------------------------------------------------------------


def track_docs(
    prefix: str, topic_id: str, topic: str, entries: list[dict[str, Any]], order: int, batch_id: str | None
) -> list[dict[str, Any]]:
    """One ``tracks`` document per entry; with a batch id, ``_id`` makes a resend a no-op."""
    docs = []
    for number, entry in enumerate(entries):
        doc: dict[str, Any] = {
            "exp": prefix,
            "topic": topic,
            "timestamp": entry.get("timestamp", 0.0),
            "o": order + number,
            "entry": to_blob(entry, "track entry"),
        }
        if batch_id is not None:
            doc["_id"] = f"{topic_id}:{batch_id}:{number}"
        docs.append(doc)
    return docs


def track_from_doc(doc: dict[str, Any]) -> dict[str, Any]:
    entry = from_blob(doc.get("entry"), {})
    return entry if isinstance(entry, dict) else {}
