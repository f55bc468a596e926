"""The export shapes of ``exp.tracks(topic).read(format=...)``: json, jsonl, parquet, mocap.

They are the shapes the public ML-Dash SDK returns, built here from the entries the
store gives (time order, equal times merged, nested fields flattened with ``.``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any, SupportsIndex, overload

from .errors import InvalidValueError, MLDashError

FORMATS = ("json", "jsonl", "parquet", "mocap")
DEFAULT_FPS = 30
PARQUET_EXTRA = "ml-dash[parquet]"


class MissingExtraError(MLDashError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    code = "missing_extra"


class TrackEntries(list[dict[str, Any]]):
    """``read()``'s answer: the list of entries, in time order, which also answers the
    public SDK's default shape: ``["entries"]`` (this list) and ``["count"]``
    (its length), and ``.get`` of both. ``read(format="json")`` gives the plain dict."""

    @overload
    def __getitem__(self, key: SupportsIndex) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, key: slice) -> list[dict[str, Any]]: ...

    @overload
    def __getitem__(self, key: str) -> Any: ...

    def __getitem__(self, key: SupportsIndex | slice | str) -> Any:
        if isinstance(key, str):
            if key == "entries":
                return list(self)
            if key == "count":
                return len(self)
            raise KeyError(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``"entries"`` or ``"count"`` as the SDK's dict has them; ``default`` otherwise."""
        return self[key] if key in ("entries", "count") else default


def check_format(fmt: str) -> str:
    """``fmt`` if it is a format ``read`` knows; else InvalidValueError ("Unsupported format")."""
    if fmt not in FORMATS:
        raise InvalidValueError(f"Unsupported format: {fmt!r}; choose from {', '.join(FORMATS)}")
    return fmt


def as_json(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"entries": [...], "count": n}``."""
    return {"entries": entries, "count": len(entries)}


def as_jsonl(entries: list[dict[str, Any]]) -> bytes:
    """One JSON object per entry, joined by ``\\n`` (NaN and ±inf as the bare tokens
    Python's ``json`` reads back, as the SDK writes them)."""
    return "\n".join(json.dumps(entry) for entry in entries).encode("utf-8")


def as_parquet(entries: list[dict[str, Any]]) -> bytes:
    """A Parquet file (zstd) of the entries, one column per field of any entry
    (``timestamp`` first; null where an entry lacks the field). Needs pyarrow
    (``pip install 'ml-dash[parquet]'``): MissingExtraError otherwise."""
    try:
        import pyarrow as pa  # type: ignore[import-not-found,import-untyped,unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as exc:
        raise MissingExtraError(
            f"read(format='parquet') needs pyarrow, which is not installed: pip install '{PARQUET_EXTRA}'"
        ) from exc
    names: dict[str, None] = {"timestamp": None}  # every field of every entry, in order of appearance
    for entry in entries:
        names.update(dict.fromkeys(entry))
    columns = {}
    for name in names:
        values = [entry.get(name) for entry in entries]
        try:
            columns[name] = pa.array(values, pa.float64()) if name == "timestamp" else pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidValueError(f"read(format='parquet'): column {name!r} holds values of different types, "
                                    f"and a parquet column has one ({exc})") from exc
    table = pa.table(columns)
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def as_mocap(entries: list[dict[str, Any]], topic: str, description: str | None, tags: list[str],
             metadata: dict[str, Any]) -> dict[str, Any]:
    """``{"version", "metadata": {topic, description, tags, fps, duration, frameCount,
    startTime, endTime}, "channels": sorted field names, "frames": [{"time", fields...}]}``."""
    start = entries[0]["timestamp"] if entries else 0
    end = entries[-1]["timestamp"] if entries else 0
    channels: set[str] = set()
    for entry in entries:
        channels.update(key for key in entry if key != "timestamp")
    return {
        "version": "1.0",
        "metadata": {
            "topic": topic,
            "description": description,
            "tags": list(tags),
            "fps": metadata.get("fps", DEFAULT_FPS),
            "duration": end - start,
            "frameCount": len(entries),
            "startTime": start,
            "endTime": end,
        },
        "channels": sorted(channels),
        "frames": [{"time": e["timestamp"], **{k: v for k, v in e.items() if k != "timestamp"}} for e in entries],
    }


def export(entries: list[dict[str, Any]], fmt: str | None, mocap_info: Callable[[], tuple[str, str | None,
           list[str], dict[str, Any]]]) -> Any:
    """``entries`` in format ``fmt`` (None: :class:`TrackEntries`)."""
    if fmt is None:
        return TrackEntries(entries)
    if fmt == "json":
        return as_json(entries)
    if fmt == "jsonl":
        return as_jsonl(entries)
    if fmt == "parquet":
        return as_parquet(entries)
    return as_mocap(entries, *mocap_info())
