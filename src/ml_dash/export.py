"""``ml-dash export``: streams of the experiments a prefix glob matches, to CSV, Parquet or JSON lines.

One table per export, the wide shape: ``experiment`` first, then the stream's columns
(metrics: ``index``, ``time``, fields; logs: ``index``, ``time``, ``level``, ``message``,
``metadata``; tracks: ``time``, fields). Each experiment's stream is read a page at a
time into columns; the file is written once they are all read.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import IO, Any

import msgspec

from . import frames
from .errors import InvalidValueError, NotFoundError, StorageError
from .stores.base import Store
from .values import find_nonfinite

FORMATS = ("csv", "parquet", "jsonl")
NONFINITE_KEY = "nonFinite"  # as in the store's own lines (docs/storage-format.md)
_json = msgspec.json.Encoder()


def matching(store: Store, pattern: str) -> list[str]:
    """The prefixes of the stored experiments that match the shell-style ``pattern``
    (``*`` also crosses ``/``), sorted; NotFoundError when none does."""
    prefixes = sorted(i.prefix for i in store.list_experiments() if fnmatchcase(i.prefix, pattern))
    if not prefixes:
        raise NotFoundError(f"no experiment matches {pattern!r}")
    return prefixes


def gather(store: Store, prefixes: list[str], *, metric: str | None = None, logs: bool = False,
           track: str | None = None) -> frames.Columns:
    """The one stream chosen (``metric``, ``logs`` or ``track``) of every experiment
    that has it, as wide columns; NotFoundError when none of them has it."""
    if sum((metric is not None, logs, track is not None)) != 1:
        raise InvalidValueError("choose one stream: --metric NAME, --logs or --tracks TOPIC")
    parts: list[tuple[str, frames.Columns]] = []
    for prefix in prefixes:
        if metric is not None:
            if metric in {m["name"] for m in store.list_metrics(prefix)}:
                parts.append((prefix, frames.metric_columns(store, prefix, metric)))
        elif track is not None:
            if track in {t.get("topic") for t in store.list_tracks(prefix)}:
                parts.append((prefix, frames.track_columns(store, prefix, track)))
        else:
            parts.append((prefix, frames.log_columns(store, prefix)))
    if not parts:
        what = f"metric stream {metric!r}" if metric is not None else f"track topic {track!r}"
        count = f"{len(prefixes)} experiment" + ("" if len(prefixes) == 1 else "s")
        raise NotFoundError(f"no {what} in the {count} matched")
    return frames.wide_columns(parts)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return _json.encode(value).decode()
    return value  # floats are written with repr: nan, inf and -inf read back as floats


def write_csv(columns: frames.Columns, out: IO[str]) -> None:
    """A header line, then one line per row; a missing value is an empty cell, NaN and
    ±inf are ``nan``/``inf``/``-inf``, nested values JSON text."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in zip(*columns.values(), strict=True):
        writer.writerow(map(_cell, row))


def jsonl_lines(columns: frames.Columns) -> Iterator[bytes]:
    """Blocks of JSON lines, one object per row without its missing values; a NaN or
    ±inf is written ``null`` and named in ``"nonFinite": {"/field": "NaN"}``, as the
    store's own lines do."""
    batch: list[dict[str, Any]] = []
    for row in frames.records(columns):
        batch.append(row)
        if len(batch) == 10_000:
            yield _encode_rows(batch)
            batch = []
    if batch:
        yield _encode_rows(batch)


def _encode_rows(rows: list[dict[str, Any]]) -> bytes:
    data = _json.encode_lines(rows)
    if b"null" not in data:
        return data
    fixed = []
    for row in rows:
        found = find_nonfinite(row)
        fixed.append({**row, NONFINITE_KEY: found} if found else row)
    return _json.encode_lines(fixed)


def write_parquet(columns: frames.Columns, out: str | IO[bytes]) -> None:
    """The columns as one Parquet file (the Arrow types of ``to_arrow``)."""
    frames.arrow()
    import pyarrow.parquet as pq  # type: ignore[import-not-found,import-untyped,unused-ignore]

    pq.write_table(frames.to_arrow(columns), out)


def write(columns: frames.Columns, fmt: str, path: str | None) -> None:
    """Write ``columns`` in ``fmt`` to the file ``path`` (stdout when None)."""
    if fmt not in FORMATS:
        raise InvalidValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        frames.arrow()  # MissingExtraError before any file is created
    try:
        if path is not None and fmt == "parquet":
            write_parquet(columns, path)  # by path: Arrow's own file, not a Python file object
        elif path is None:
            _write_to(columns, fmt, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with open(path, "wb") as fh:
                _write_to(columns, fmt, fh)
    except OSError as exc:
        raise StorageError(f"cannot write {path or 'stdout'}: {exc.strerror or exc}") from exc


def _write_to(columns: frames.Columns, fmt: str, fh: IO[bytes]) -> None:
    if fmt == "parquet":
        write_parquet(columns, fh)
    elif fmt == "jsonl":
        for block in jsonl_lines(columns):
            fh.write(block)
    else:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="", write_through=True)
        try:
            write_csv(columns, text)
            text.flush()
        finally:
            text.detach()


def row_count(columns: frames.Columns) -> int:
    return len(next(iter(columns.values()), []))
