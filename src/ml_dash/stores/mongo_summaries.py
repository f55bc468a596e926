"""Field statistics of MongoStore's metric streams, kept so that a table of runs reads
one document per stream, never the points.

Three levels, each derived from the one below and checked against it:

- per block: every block of points pushed into a hot bucket carries its statistics,
  pushed in the same update as the points (``t``: JSON text, one entry per block, with
  its first index), so a bucket's statistics can never disagree with its points;
- per cold chunk: the chunk's manifest holds the statistics of its points (``stats``),
  written with it when the chunk moves to S3;
- per stream: the stream's counter document (``metrics``) holds the statistics folded
  from the two above (``st``), with the counter ``n`` seen before the fold (``sv``) and
  the number of points folded (``sc``).

A stream's statistics are current when ``sv == sc == n``: ``n`` grows before any point
of an append is written, so when no index was handed out since the fold read ``n`` and
the fold found ``n`` points, it saw them all. Otherwise (points appended since, or not
all written yet) a read folds again from the block and chunk statistics (a few
documents per 10,000 points, without the points). Blocks and manifests written before
these statistics existed are read and summarised from their points. Indexes handed out
to a writer that died before writing them keep a stream from ever being current: it is
folded at every read, still rightly.

Statistics as stored: ``{field: [count, nonFinite, first, firstIndex, last, lastIndex,
min, minIndex, max, maxIndex]}`` (JSON text, so user field names stay data), over the
finite numbers of each field (ties: the earliest); values and indexes are null for a
field with no finite number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import msgspec

from ..summaries import FieldStats, as_number

# One field over some points: [count, nonFinite, first, firstIndex, last, lastIndex, min, minIndex, max, maxIndex]
Partial = list[Any]
Stats = dict[str, Partial]

_encode = msgspec.json.encode
_decode_stats = msgspec.json.Decoder(dict[str, list[Any]]).decode


def point_stats(points: Iterable[dict[str, Any]]) -> Stats:
    """The statistics of points (``{"index", "data"}`` dicts) given in index order."""
    stats: Stats = {}
    for point in points:
        index = int(point["index"])
        for field, value in point.get("data", {}).items():
            number = as_number(value)
            if number is None:
                continue
            entry = stats.get(field)
            if entry is None:
                entry = stats[field] = [0, 0, None, None, None, None, None, None, None, None]
            if not math.isfinite(number):
                entry[1] += 1
                continue
            entry[0] += 1
            if entry[2] is None:
                entry[2], entry[3] = number, index
            entry[4], entry[5] = number, index
            if entry[6] is None or number < entry[6]:
                entry[6], entry[7] = number, index
            if entry[8] is None or number > entry[8]:
                entry[8], entry[9] = number, index
    return stats


def merge(parts: Iterable[Stats]) -> Stats:
    """The statistics of disjoint runs of points, given in index order."""
    out: Stats = {}
    for part in parts:
        for field, later in part.items():
            entry = out.get(field)
            if entry is None:
                out[field] = list(later)
                continue
            entry[0] += later[0]
            entry[1] += later[1]
            if not later[0]:
                continue
            if entry[2] is None:
                entry[2], entry[3] = later[2], later[3]
            entry[4], entry[5] = later[4], later[5]
            if entry[6] is None or later[6] < entry[6]:  # strictly: a tie goes to the earlier point
                entry[6], entry[7] = later[6], later[7]
            if entry[8] is None or later[8] > entry[8]:
                entry[8], entry[9] = later[8], later[9]
    return out


def to_text(stats: Stats) -> str:
    """``stats`` as stored (JSON text)."""
    return _encode(stats).decode()


def from_text(text: Any) -> Stats | None:
    """Stored statistics, or None when ``text`` is not what ``to_text`` writes."""
    if not isinstance(text, str):
        return None
    try:
        stats = _decode_stats(text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if any(len(entry) != 10 for entry in stats.values()):
        return None
    return stats


def field_stats(stats: Stats) -> dict[str, FieldStats]:
    """``Store.metric_fields``' answer (fields sorted by name)."""
    out: dict[str, FieldStats] = {}
    for field in sorted(stats):
        count, nonfinite, first, _, last, last_at, low, low_at, high, high_at = stats[field]
        if count:
            out[field] = {"count": count, "first": first, "last": last, "min": low, "max": high,
                          "lastIndex": last_at, "minIndex": low_at, "maxIndex": high_at, "nonFinite": nonfinite}
        else:
            out[field] = {"count": 0, "first": None, "last": None, "min": None, "max": None, "lastIndex": None,
                          "minIndex": None, "maxIndex": None, "nonFinite": nonfinite}
    return out


def block_entry(first: int, count: int, stats: Stats) -> str:
    """The ``t`` entry a bucket holds for the block of ``count`` points from ``first``."""
    return _encode({"s": first, "n": count, "f": stats}).decode()


class BlockEntry(msgspec.Struct):
    s: int
    n: int
    f: dict[str, list[Any]]


_decode_block = msgspec.json.Decoder(BlockEntry).decode


def read_block_entry(text: Any) -> BlockEntry | None:
    """A ``t`` entry, or None when it is not one ``block_entry`` writes."""
    if not isinstance(text, str):
        return None
    try:
        entry = _decode_block(text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return entry if all(len(v) == 10 for v in entry.f.values()) else None
