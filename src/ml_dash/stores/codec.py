"""Line encodings of the local store: records <-> JSON lines (the on-disk edge).

See docs/storage-format.md for every line shape. Batches are encoded in one
``encode_lines`` call; only a batch that holds a ``null`` (which is how JSON encoders
spell NaN and infinities) takes a second, per-record look for non-finite floats.
"""

from __future__ import annotations

import datetime as _dt
import re
from itertools import repeat
from typing import Any

import msgspec

from ..errors import InvalidValueError
from ..records import LogRecord
from ..values import find_nonfinite, restore_nonfinite

_encoder = msgspec.json.Encoder()
_has_null = re.compile(rb"null").search  # measured faster than `b"null" in out`
NONFINITE_KEY = "nonFinite"
TRACK_NONFINITE_KEY = "_nonFinite"
TRACK_BATCH_KEY = "_batchId"
BATCH_KEY = "batchId"
_UTC = _dt.timezone.utc


def iso_utc(ts: float) -> str:
    """Seconds since the epoch -> ``2026-11-26T21:54:55.123456Z``."""
    return _dt.datetime.fromtimestamp(ts, _UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: Any) -> float | None:
    """ISO-8601 text (as written by us or the ML-Dash SDK) -> seconds, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_UTC)
    return parsed.timestamp()


class _MetricLine(msgspec.Struct, gc=False, omit_defaults=True, rename="camel"):
    index: int
    batch_id: str | None = None
    data: dict[str, Any] = {}
    non_finite: dict[str, str] | None = None


class _LogLine(msgspec.Struct, gc=False, omit_defaults=True, rename="camel", kw_only=True):
    sequence_number: int
    batch_id: str | None = None
    timestamp: str
    level: str
    message: str
    metadata: dict[str, Any]
    ts: float
    non_finite: dict[str, str] | None = None


_ENCODE_ERRORS = (TypeError, OverflowError, UnicodeEncodeError, msgspec.EncodeError)


def _bad_field(item: Any) -> str | None:
    """The name of the first field of ``item`` that cannot be encoded, if one can be found."""
    if isinstance(item, msgspec.Struct):
        fields = {name: getattr(item, name) for name in item.__struct_fields__}
        for outer in ("data", "metadata"):
            if isinstance(fields.get(outer), dict):
                fields.update(fields.pop(outer))
    elif isinstance(item, dict):
        fields = item
    else:
        return None
    for key, value in fields.items():
        try:
            _encoder.encode(key)
            _encoder.encode(value)
        except _ENCODE_ERRORS:
            return str(key).encode("utf-8", "backslashreplace").decode()
    return None


def _encode(items: list[Any], what: str) -> bytes:
    try:
        return _encoder.encode_lines(items)
    except _ENCODE_ERRORS as exc:
        field = _bad_field(items[0]) if len(items) == 1 else None
        where = f" (field {field!r})" if field else ""
        raise InvalidValueError(f"{what}{where}: a value cannot be encoded as JSON: {exc}") from exc


def encode_metric_lines(points: list[dict[str, Any]], first: int, batch_id: str | None = None) -> bytes:
    """Metric points -> ``{"index", "data"[, "nonFinite"]}`` lines.

    The ML-Dash SDK also writes a per-point ``createdAt`` text; we leave it out: it
    repeats ``data._ts`` and was a third of every line (see docs/storage-format.md).
    """
    lines = list(map(_MetricLine, range(first, first + len(points)), repeat(None), points))
    if batch_id is not None and lines:
        lines[0].batch_id = batch_id
    out = _encode(lines, "metric point")
    if _has_null(out):
        changed = False
        for line in lines:
            found = find_nonfinite(line.data)
            if found:
                line.non_finite = found
                changed = True
        if changed:
            out = _encode(lines, "metric point")
    return out


def encode_log_lines(records: list[LogRecord], first: int, batch_id: str | None = None) -> bytes:
    """Log records -> ``{"sequenceNumber", "timestamp", "level", ...}`` lines."""
    lines = []
    for seq, rec in enumerate(records, first):
        metadata = rec.metadata or {}
        lines.append(
            _LogLine(
                sequence_number=seq,
                batch_id=batch_id if seq == first else None,
                timestamp=iso_utc(rec.ts),
                level=rec.level,
                message=rec.message,
                metadata=metadata,
                ts=rec.ts,
            )
        )
    out = _encode(lines, "log record")
    if _has_null(out):
        changed = False
        for line in lines:
            found = find_nonfinite(line.metadata)
            if found:
                line.non_finite = found
                changed = True
        if changed:
            out = _encode(lines, "log record")
    return out


def encode_track_lines(entries: list[dict[str, Any]], batch_id: str | None = None) -> bytes:
    """Track entries (flat dicts starting with ``timestamp``) -> one line each."""
    if batch_id is not None and entries:
        entries = [{TRACK_BATCH_KEY: batch_id, **entries[0]}, *entries[1:]]
    out = _encode(entries, "track entry")
    if _has_null(out):
        fixed = []
        for entry in entries:
            found = find_nonfinite(entry)
            fixed.append({**entry, TRACK_NONFINITE_KEY: found} if found else entry)
        out = _encode(fixed, "track entry")
    return out


def restore_metric(line: dict[str, Any]) -> dict[str, Any]:
    line.pop(BATCH_KEY, None)
    found = line.pop(NONFINITE_KEY, None)
    if found and isinstance(line.get("data"), dict):
        restore_nonfinite(line["data"], found)
    return line


def restore_log(line: dict[str, Any]) -> dict[str, Any]:
    line.pop(BATCH_KEY, None)
    found = line.pop(NONFINITE_KEY, None)
    if found and isinstance(line.get("metadata"), dict):
        restore_nonfinite(line["metadata"], found)
    return line


def restore_track(line: dict[str, Any]) -> dict[str, Any]:
    line.pop(TRACK_BATCH_KEY, None)
    found = line.pop(TRACK_NONFINITE_KEY, None)
    if found:
        restore_nonfinite(line, found)
    return line
