"""Metric streams in MongoDB (hot tail) and S3 (cold chunks), merged on read.

Documents (user text only ever appears as values):

- ``metrics``: one per stream, ``{_id: <stream id>, exp, name, n, cold}``. ``n`` is the
  index counter (see ``mongo_batches``); every index below ``cold`` is in S3.
- ``metric_buckets``: ``{_id: "<stream id>:<bucket number>", s: [...], p: [...], n}``
  holding points ``bucket * B .. bucket * B + B - 1`` (B = ``bucket_size``, 1,000 by
  default). Each append pushes one block of JSON lines per bucket it touches (``p``),
  with the block's first index (``s``), and adds its point count to ``n``. A block is
  pushed only when its first index is not in ``s`` yet, so a repeated write is a no-op.
  Blocks of concurrent writers may land out of order; reads order points by index.
- ``metric_chunks``: the manifest of the cold tier, one per chunk of ``chunk_size``
  points: ``{_id: "<stream id>:<first index>", first, last, count, key, offsets,
  frameSize, bytes, firstTs, lastTs, minTs, maxTs, fields: [{k, count, min, max}]}``.

Points are stored as the JSON lines of LocalStore (``codec.encode_metric_lines``):
the emulated MongoDB (nx-27017) rejects NaN/inf in documents ("Invalid JSON document")
and stores pushed sub-documents as strings, and BSON has no ints beyond 64 bits
(pymongo raises OverflowError), while JSON text with a ``nonFinite`` map keeps all of
them exactly and keeps user keys (``$set``, ``a.b``) out of MongoDB field names.

Moving a full chunk (all ``chunk_size`` points present) to S3: write the object (its key
is deterministic), then upsert the manifest, then raise ``cold`` and delete the hot
buckets. Re-running any prefix of these steps is harmless, and every append or read
that sees a full chunk still hot runs them again (after a failed S3 write, not before
``retry_after`` seconds, unless forced). Reads take the hot buckets first and the
manifests second, and a manifest wins over hot points, so a move finishing in between
never hides a point.

Limits: chunks move in index order, so indexes left unused by a process that died
mid-append (see ``mongo_batches``) keep their chunk, and the later ones, hot (still
read correctly). A bucket document holds at most 16 MB: points of over ~16 KB each
need a smaller ``bucket_size``.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from typing import Any, cast

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from ..errors import InvalidValueError, StorageError
from ..records import AppendResult, MetricPage, MetricStats
from . import chunk_codec, codec
from . import mongo_summaries as summaries
from .jsonl import decode_block
from .mongo_batches import BatchLedger
from .s3_chunks import S3_ERRORS, ChunkObjects


def stream_id(prefix: str, name: str) -> str:
    """A short fixed-length id for a stream (prefix and name are user text)."""
    return hashlib.blake2b(f"{prefix}\n{name}".encode(), digest_size=16).hexdigest()


def _end_of(sid: str) -> str:
    # ";" sorts right after ":", so [sid + ":", sid + ";") is every id of one stream.
    return sid + ";"


class MetricTier:
    """Appends, reads and stats of metric streams; moves full chunks to S3."""

    def __init__(
        self,
        db: Database[Any],
        chunks: ChunkObjects | None,
        chunk_size: int = 10_000,
        bucket_size: int = 1000,
        retry_after: float = 30.0,
        claim_wait: float = 5.0,
    ) -> None:
        if chunk_size < 1 or bucket_size < 1:
            raise ValueError("chunk_size and bucket_size must be positive")
        self.metrics = db["metrics"]
        self.buckets = db["metric_buckets"]
        self.manifests = db["metric_chunks"]
        self.ledger = BatchLedger(self.metrics, db["batches"], claim_wait)
        self.chunks = chunks
        self.chunk_size = chunk_size
        self.bucket_size = bucket_size
        self.retry_after = retry_after
        self._retry_at = 0.0

    def create_indexes(self) -> None:
        self.metrics.create_index([("exp", 1), ("name", 1)])

    def _bucket_id(self, sid: str, number: int) -> str:
        return f"{sid}:{number:012d}"

    # -- writing -----------------------------------------------------------------------

    def append(self, prefix: str, name: str, points: list[dict[str, Any]], batch_id: str | None) -> AppendResult:
        """Store ``points`` at the next free indexes (``first`` None for an empty batch)."""
        if not points:
            return AppendResult(None, 0)
        codec.encode_metric_lines(points, 0)  # raises InvalidValueError before an index is taken
        sid = stream_id(prefix, name)
        reserved = self.ledger.reserve(sid, len(points), batch_id, {"exp": prefix, "name": name})
        counter = reserved.counter or self.metrics.find_one({"_id": sid}) or {}
        lines = codec.encode_metric_lines(points, reserved.first)
        stats = self._write_blocks(sid, reserved.first, lines.split(b"\n")[:-1], int(counter.get("cold", 0)))
        self._advance_summary(sid, reserved.first, len(points), stats, counter)
        self._move_when_due(prefix, name, counter)
        return AppendResult(reserved.first, len(points), duplicate=reserved.counter is None)

    def _write_blocks(self, sid: str, first: int, lines: list[bytes], cold: int) -> summaries.Stats:
        """Push the lines of points ``first ..`` block by block, each with its
        statistics; returns the statistics of all of them."""
        size = self.bucket_size
        pos = 0
        parts = []
        while pos < len(lines):
            index = first + pos
            take = min(len(lines) - pos, size - index % size)
            block = (b"\n".join(lines[pos : pos + take]) + b"\n").decode()
            # The block's statistics come from its lines as a read decodes them.
            points = self._decode([block], index, index + take)
            parts.append(summaries.point_stats(points[i] for i in sorted(points)))
            if index >= cold:  # a resend of points already moved to S3 is not written again
                entry = summaries.block_entry(index, take, parts[-1])
                self._push_block(self._bucket_id(sid, index // size), index, block, take, entry)
            pos += take
        return summaries.merge(parts)

    def _advance_summary(self, sid: str, first: int, count: int, stats: summaries.Stats,
                         counter: dict[str, Any]) -> None:
        """Extend the stream's kept statistics by the points ``first .. first + count - 1``
        just written, when they cover exactly the points before ``first``: a
        compare-and-swap on ``sv``/``sc``, so that appends landing out of order (other
        processes) leave them behind, for the next read to fold."""
        if not _covers(counter, first):
            counter = self.metrics.find_one({"_id": sid}, {"sv": 1, "sc": 1, "st": 1}) or {}
            if not _covers(counter, first):
                return
        before = summaries.from_text(counter.get("st")) if first else {}
        if before is None:
            return
        merged = summaries.merge([before, stats])
        # `$in: [None]`: no statistics kept yet. (`$exists: False` would also match a null
        # on the emulator; `$in: [None]` means missing or null on both.)
        where = {"_id": sid, "sv": {"$in": [None]}} if first == 0 else {"_id": sid, "sv": first, "sc": first}
        end = first + count
        self.metrics.update_one(where, {"$set": {"sv": end, "sc": end, "st": summaries.to_text(merged)}})

    def _push_block(self, bucket_id: str, index: int, block: str, count: int, stats: str) -> None:
        """Add one block and its statistics to its bucket unless a block starting at
        ``index`` is there already (one update: the two never disagree)."""
        for _ in range(10):
            try:
                # `$nin` and not `$ne`: the emulator's `$ne` does not look inside arrays
                # in update filters; on MongoDB both mean "no element equals".
                self.buckets.update_one(
                    {"_id": bucket_id, "s": {"$nin": [index]}},
                    {"$push": {"s": index, "p": block, "t": stats}, "$inc": {"n": count}},
                    upsert=True,
                )
                return
            except DuplicateKeyError:
                # The bucket exists: either it holds this block already, or another writer
                # created it between our filter and our insert (MongoDB does not retry an
                # upsert whose filter is not a plain equality). Look, and push again if needed.
                if self.buckets.find_one({"_id": bucket_id, "s": index}, {"_id": 1}) is not None:
                    return
        raise StorageError(f"bucket {bucket_id}: could not add the block at index {index}")

    # -- the cold tier -----------------------------------------------------------------

    def _move_when_due(self, prefix: str, name: str, counter: dict[str, Any]) -> None:
        if self.chunks is None or time.monotonic() < self._retry_at:
            return
        if int(counter.get("n", 0)) - int(counter.get("cold", 0)) >= self.chunk_size:
            self.move_full_chunks(prefix, name)

    def move_full_chunks(self, prefix: str, name: str) -> int:
        """Move every full hot chunk of the stream to S3, in order; returns how many moved.

        Stops at the first chunk that is not complete yet or that S3 would not take
        (those points stay hot, and reads stay complete).
        """
        if self.chunks is None:
            return 0
        sid = stream_id(prefix, name)
        counter = self.metrics.find_one({"_id": sid}) or {}
        total, first = int(counter.get("n", 0)), int(counter.get("cold", 0))
        moved = 0
        while first + self.chunk_size <= total and self._move_chunk(prefix, name, sid, first):
            first += self.chunk_size
            moved += 1
        return moved

    def _move_chunk(self, prefix: str, name: str, sid: str, first: int) -> bool:
        if self.manifests.find_one({"_id": f"{sid}:{first:012d}"}, {"_id": 1}) is None:
            written = self.write_chunk_object(prefix, name, sid, first)
            if written is None:
                return False
            self.write_manifest(prefix, name, sid, first, *written)
        self.drop_moved_points(sid, first)
        return True

    def write_chunk_object(
        self, prefix: str, name: str, sid: str, first: int
    ) -> tuple[str, list[int], list[dict[str, Any]]] | None:
        """Move step 1: put the chunk starting at ``first`` into S3 from the hot buckets.

        Returns (key, frame offsets, point data), or None when the chunk is not complete
        yet or S3 did not take it (then moves wait ``retry_after`` seconds).
        """
        assert self.chunks is not None
        end = first + self.chunk_size
        points = self._hot_points(sid, first, end)
        if len(points) < self.chunk_size:
            return None  # still being written by someone
        rows = [points[i]["data"] for i in range(first, end)]
        key = self.chunks.key(prefix, name, first)
        try:
            offsets = self.chunks.put(key, rows)
        except S3_ERRORS as exc:
            self._retry_at = time.monotonic() + self.retry_after
            warnings.warn(
                f"ml-dash: cannot move points {first}..{end - 1} of {prefix} {name!r} to S3, "
                f"they stay in MongoDB and the move is retried: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        return key, offsets, rows

    def write_manifest(
        self, prefix: str, name: str, sid: str, first: int, key: str, offsets: list[int], rows: list[dict[str, Any]]
    ) -> None:
        """Move step 2: record the S3 object in the manifest (from now on reads use it)."""
        chunk_id = f"{sid}:{first:012d}"
        manifest = {"_id": chunk_id, **self._manifest(prefix, name, sid, first, key, offsets, rows)}
        # `_id` repeated in the replacement: the emulator's upserting replace_one does not
        # take it from the filter (it made a new ObjectId); MongoDB accepts the same `_id`.
        self.manifests.replace_one({"_id": chunk_id}, manifest, upsert=True)

    def drop_moved_points(self, sid: str, first: int) -> None:
        """Move step 3: raise the stream's cold mark and delete the chunk's hot buckets."""
        end = first + self.chunk_size
        self.metrics.update_one({"_id": sid}, {"$max": {"cold": end}})
        size = self.bucket_size
        self.buckets.delete_many(
            {"_id": {"$gte": self._bucket_id(sid, first // size), "$lt": self._bucket_id(sid, -(-end // size))}}
        )

    def _manifest(
        self, prefix: str, name: str, sid: str, first: int, key: str, offsets: list[int], rows: list[dict[str, Any]]
    ) -> dict[str, Any]:
        assert self.chunks is not None
        fields = chunk_codec.field_stats(rows)
        times = next((f for f in fields if f["k"] == "_ts"), {"min": None, "max": None})
        stats = summaries.point_stats({"index": first + i, "data": row} for i, row in enumerate(rows))
        return {
            "m": sid,
            "exp": prefix,
            "name": name,
            "first": first,
            "last": first + len(rows) - 1,
            "count": len(rows),
            "key": key,
            "encoding": chunk_codec.ENCODING,
            "frameSize": self.chunks.frame_size,
            "offsets": offsets,
            "bytes": offsets[-1],
            "firstTs": _ts(rows[0]),
            "lastTs": _ts(rows[-1]),
            "minTs": times["min"],
            "maxTs": times["max"],
            "fields": fields,
            "stats": summaries.to_text(stats),
            "movedAt": time.time(),
        }

    # -- reading -----------------------------------------------------------------------

    def _hot_points(self, sid: str, start: int, end: int) -> dict[int, dict[str, Any]]:
        size = self.bucket_size
        query = {"_id": {"$gte": self._bucket_id(sid, start // size), "$lte": self._bucket_id(sid, (end - 1) // size)}}
        blocks = [block for doc in self.buckets.find(query, {"p": 1}) for block in doc.get("p", ())]
        return self._decode(blocks, start, end)

    @staticmethod
    def _decode(blocks: list[str], start: int, end: int) -> dict[int, dict[str, Any]]:
        if not blocks:
            return {}
        data = "".join(blocks).encode()
        restore = b'"nonFinite"' in data
        out = {}
        for line in decode_block(data):
            index = line["index"]
            if start <= index < end:
                out[index] = codec.restore_metric(line) if restore else line
        return out

    def read(self, prefix: str, name: str, start: int, limit: int) -> MetricPage:
        """Points ``start .. start + limit - 1`` from hot buckets and cold chunks, in order."""
        if start < 0 or limit < 0:
            raise InvalidValueError(f"start_index and limit must be >= 0, got {start} and {limit}")
        sid = stream_id(prefix, name)
        counter = self.metrics.find_one({"_id": sid}, {"n": 1, "cold": 1}) or {}
        total = int(counter.get("n", 0))
        end = min(start + limit, total)
        points: dict[int, dict[str, Any]] = {}
        if start < end:
            points = self._hot_points(sid, start, end)
            lowest = max(0, start - self.chunk_size + 1)  # the first index of a chunk holding `start`
            query = {"_id": {"$gte": f"{sid}:{lowest:012d}", "$lt": f"{sid}:{end:012d}"}, "last": {"$gte": start}}
            for manifest in self.manifests.find(query).sort("_id", 1):
                assert self.chunks is not None, "cold chunks exist but no S3 bucket is configured"
                for point in self.chunks.read(manifest, start, end):
                    points[point["index"]] = point
        data = [points[i] for i in sorted(points)]
        last = data[-1]["index"] if data else start - 1
        if counter:
            self._move_when_due(prefix, name, counter)
        return MetricPage(data=data, startIndex=start, endIndex=last, total=total, hasMore=last + 1 < total)

    def stats(self, prefix: str, name: str) -> MetricStats:
        """Stored point count (hot + cold), first/last point times, hot/cold counts."""
        sid = stream_id(prefix, name)
        projection = {"first": 1, "count": 1, "firstTs": 1, "lastTs": 1}
        manifests = list(self.manifests.find({"_id": {"$gte": f"{sid}:", "$lt": _end_of(sid)}}, projection)
                         .sort("_id", 1))
        cold = sum(int(m["count"]) for m in manifests)
        cold_to = max((int(m["first"]) + int(m["count"]) for m in manifests), default=0)
        hot_query = {"_id": {"$gte": self._bucket_id(sid, cold_to // self.bucket_size), "$lt": _end_of(sid)}}
        hot = sum(int(doc.get("n", 0)) for doc in self.buckets.find(hot_query, {"n": 1}))
        first_at = manifests[0].get("firstTs") if manifests else self._edge_time(hot_query, 1, cold_to)
        last_at = manifests[-1].get("lastTs") if manifests else None
        if hot:
            last_at = self._edge_time(hot_query, -1, cold_to)
        stats = {
            "name": name,
            "totalDataPoints": hot + cold,
            "firstDataAt": first_at,
            "lastDataAt": last_at,
            "hotDataPoints": hot,
            "coldDataPoints": cold,
            "coldChunks": len(manifests),
        }
        return cast(MetricStats, stats)

    def _edge_time(self, query: dict[str, Any], direction: int, cold_to: int) -> float | None:
        """``_ts`` of the lowest (1) or highest (-1) index in the hot buckets."""
        for doc in self.buckets.find(query, {"p": 1}).sort("_id", direction).limit(1):
            points = self._decode(list(doc.get("p", ())), cold_to, 1 << 62)
            if points:
                return _ts(points[min(points) if direction == 1 else max(points)]["data"])
        return None

    # -- field statistics (``mongo_summaries``) -------------------------------------------

    def fields(self, prefix: str, name: str) -> summaries.Stats:
        """The statistics of every numeric field of one stream ({} when there is none)."""
        sid = stream_id(prefix, name)
        doc = self.metrics.find_one({"_id": sid}, _SUMMARY_FIELDS)
        return {} if doc is None else self.current_stats(doc)

    def experiment_stats(self, prefixes: list[str]) -> dict[str, dict[str, summaries.Stats]]:
        """prefix -> stream name -> statistics, for every stream of the experiments
        ``prefixes`` (one query per 1,000 of them, plus a fold per stream not current)."""
        out: dict[str, dict[str, summaries.Stats]] = {}
        for start in range(0, len(prefixes), 1000):
            wanted = prefixes[start : start + 1000]
            # No projection: counter documents are small, and the emulator answers ~30 %
            # slower with one (about 30 µs a document either way).
            for doc in self.metrics.find({"exp": {"$in": wanted}}):
                out.setdefault(str(doc["exp"]), {})[str(doc["name"])] = self.current_stats(doc)
        return out

    def current_stats(self, doc: dict[str, Any]) -> summaries.Stats:
        """The statistics kept in a stream's counter document ``doc`` when they cover
        every point it counts; else folded anew and kept there."""
        n = int(doc.get("n", 0))
        if doc.get("sv") == n and doc.get("sc") == n:
            kept = summaries.from_text(doc.get("st"))
            if kept is not None:
                return kept
        seen, count, stats = self._fold(str(doc["_id"]))
        # Unconditional: a fold that lost a race to a newer one leaves ``sv`` behind ``n``,
        # which only makes the next read fold again.
        self.metrics.update_one({"_id": doc["_id"]},
                                {"$set": {"sv": seen, "sc": count, "st": summaries.to_text(stats)}})
        return stats

    def _fold(self, sid: str) -> tuple[int, int, summaries.Stats]:
        """(``n`` before the fold, points folded, their statistics), from the blocks'
        and chunks' statistics. Hot buckets are read before manifests, as reads do, so
        a chunk moving meanwhile is seen at least once (a manifest wins over hot blocks)."""
        counter = self.metrics.find_one({"_id": sid}, {"n": 1}) or {}
        seen = int(counter.get("n", 0))
        ids = {"$gte": f"{sid}:", "$lt": _end_of(sid)}
        hot = list(self.buckets.find({"_id": ids}, {"s": 1, "t": 1}))
        manifests = list(self.manifests.find({"_id": ids}).sort("_id", 1))
        cold = [(int(m["first"]), int(m["last"])) for m in manifests]
        parts: list[tuple[int, int, summaries.Stats]] = []
        for m in manifests:
            stats = summaries.from_text(m.get("stats"))
            if stats is None:  # moved before chunks kept statistics: read the chunk
                assert self.chunks is not None, "cold chunks exist but no S3 bucket is configured"
                stats = summaries.point_stats(self.chunks.read(m, int(m["first"]), int(m["last"]) + 1))
            parts.append((int(m["first"]), int(m["count"]), stats))
        bare: list[tuple[str, list[tuple[int, int]]]] = []  # buckets with blocks written without statistics
        for doc in hot:
            entries = [e for e in map(summaries.read_block_entry, doc.get("t") or ()) if e is not None]
            known = {e.s: e for e in entries}
            for start in doc.get("s") or ():
                if any(lo <= start <= hi for lo, hi in cold):
                    continue
                entry = known.get(start)
                if entry is not None:
                    parts.append((start, entry.n, entry.f))
            if any(s not in known for s in doc.get("s") or ()):
                bare.append((str(doc["_id"]), [(e.s, e.s + e.n) for e in entries] + [(lo, hi + 1) for lo, hi in cold]))
        for bucket_id, covered in bare:
            doc = self.buckets.find_one({"_id": bucket_id}, {"p": 1}) or {}
            points = self._decode(list(doc.get("p") or ()), 0, 1 << 62)
            rest = [points[i] for i in sorted(points) if i < seen and not any(lo <= i < hi for lo, hi in covered)]
            runs: list[list[dict[str, Any]]] = []
            for point in rest:  # one part per gapless run, so parts stay disjoint and ordered
                if runs and runs[-1][-1]["index"] + 1 == point["index"]:
                    runs[-1].append(point)
                else:
                    runs.append([point])
            parts.extend((int(run[0]["index"]), len(run), summaries.point_stats(run)) for run in runs)
        parts.sort(key=lambda part: part[0])
        # Only what lies below ``seen``: the statistics say they cover [0, sv). A run of
        # points never straddles a value ``n`` took, except a chunk that moved after ``n``
        # was read: then the fold is incomplete (and done again at the next read).
        below = [part for part in parts if part[0] < seen]
        if any(start + count > seen for start, count, _ in below):
            return seen, -1, summaries.merge(part[2] for part in below)
        return seen, sum(part[1] for part in below), summaries.merge(part[2] for part in below)

    def names(self, prefix: str) -> list[str]:
        """Names of the experiment's streams, sorted."""
        return sorted(str(doc["name"]) for doc in self.metrics.find({"exp": prefix}, {"name": 1}))


_SUMMARY_FIELDS = {"exp": 1, "name": 1, "n": 1, "sv": 1, "sc": 1, "st": 1}


def _covers(counter: dict[str, Any], first: int) -> bool:
    """Whether a counter document's kept statistics cover exactly the points before ``first``."""
    if first == 0:
        return counter.get("sv") is None
    return counter.get("sv") == first and counter.get("sc") == first


def _ts(data: dict[str, Any]) -> float | None:
    value = data.get("_ts")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
