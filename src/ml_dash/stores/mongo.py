"""MongoStore: the Store protocol over MongoDB (everything hot) and S3 (cold metric chunks).

Every piece of state lives in the database and the bucket, so several server processes
can share them. Collections (one database):

==================  ==========================================================================
experiments         one document per prefix (``_id`` = prefix); changed by compare-and-swap on ``rev``
claims              one per claimed experiment: live holders, last heartbeat, resume history (CAS on ``rev``)
params              one document per experiment; the flat params as a blob, ``version`` as the CAS field
logs                one per record; indexes (exp, seq) unique, (exp, ts), (exp, level, ts), (exp, level, seq)
tracks              one document per entry; index (exp, topic, timestamp, o), ``o`` = append order
counters            log sequence and track order counters (``find_one_and_update`` + ``$inc``)
batches             applied batch ids (``_id`` unique): a resent batch is not stored twice
metrics             one per metric stream: its index counter and cold watermark
stream_descriptions one per described metric stream: description, tags, metadata (blob)
metric_buckets      the hot tail, up to ``bucket_size`` points per document
metric_chunks       the manifest of the cold tier (one document per S3 object)
==================  ==========================================================================

See ``mongo_docs`` (what a document holds and why user keys stay data),
``mongo_batches`` (unique gapless indexes across processes, batch ids),
``mongo_metrics`` (buckets, moves, merged reads) and ``chunk_codec`` (the S3 objects).

Only operations seen working on both MongoDB and the nx-27017 emulator are used
(see docs/backends.md, "Tests"); where the emulator differs, the code says so where it matters.
Any failure to reach MongoDB or S3 raises :class:`~ml_dash.errors.StorageError`; an
unreachable MongoDB is reported after ``timeout`` seconds (2 s by default).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from pymongo import MongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from ..errors import InvalidValueError, NotFoundError, StorageError
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
    merge_track_entries,
)
from ..series import Series
from ..summaries import FieldStats, RunSummary
from . import claims, generic_reads, mongo_summaries
from . import mongo_docs as docs
from .mongo_batches import BatchLedger
from .mongo_metrics import MetricTier, stream_id
from .s3_chunks import S3_ERRORS, ChunkObjects, make_s3_client

F = TypeVar("F", bound=Callable[..., Any])
_CAS_TRIES = 100


def _guarded(method: F) -> F:
    """Create the indexes on first use; turn driver errors into StorageError."""

    @functools.wraps(method)
    def wrapper(self: MongoStore, *args: Any, **kwargs: Any) -> Any:
        try:
            if not self._indexed:
                self._create_indexes()
            return method(self, *args, **kwargs)
        except PyMongoError as exc:
            raise StorageError(f"MongoDB {self.database_name!r}: {type(exc).__name__}: {exc}") from exc
        except S3_ERRORS as exc:
            raise StorageError(f"S3 bucket {self.s3_bucket!r}: {type(exc).__name__}: {exc}") from exc

    return cast(F, wrapper)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _span(start: float | None, end: float | None) -> dict[str, float]:
    """A MongoDB range condition, both ends inclusive (empty when both are None)."""
    span = {}
    if start is not None:
        span["$gte"] = start
    if end is not None:
        span["$lte"] = end
    return span


class MongoStore:
    """The Store protocol over a MongoDB database and (optionally) an S3 bucket.

    Without ``s3_bucket`` every metric point stays in MongoDB. ``chunk_size`` points
    (10,000 by default) make one S3 object; the hot buckets hold ``bucket_size`` points
    each (at most ``chunk_size``; ``chunk_size`` must be a multiple of it). All processes
    sharing a database must use the same ``chunk_size`` and ``bucket_size``. Raises
    StorageError for a URI pymongo cannot use; nothing is connected before the first call.
    """

    def __init__(
        self,
        mongo_uri: str,
        database: str,
        s3_bucket: str | None = None,
        s3_prefix: str = "",
        s3_endpoint: str | None = None,
        chunk_size: int = 10_000,
        *,
        bucket_size: int = 1000,
        s3_region: str | None = None,
        s3_access_key: str | None = None,
        s3_secret_key: str | None = None,
        timeout: float = 2.0,
        retry_after: float = 30.0,
        claim_wait: float = 5.0,
    ) -> None:
        if chunk_size < 1 or bucket_size < 1:
            raise InvalidValueError(f"chunk_size and bucket_size must be >= 1, got {chunk_size} and {bucket_size}")
        bucket_size = min(bucket_size, chunk_size)
        if chunk_size % bucket_size:
            raise InvalidValueError(f"chunk_size {chunk_size} must be a multiple of bucket_size {bucket_size}")
        millis = max(1, int(timeout * 1000))
        try:
            self.client: MongoClient[dict[str, Any]] = MongoClient(
                mongo_uri,
                serverSelectionTimeoutMS=millis,
                connectTimeoutMS=millis,
                socketTimeoutMS=max(millis, 30_000),
                appname="ml-dash",
            )
        except PyMongoError as exc:  # a malformed URI, unknown options
            raise StorageError(f"cannot use MongoDB URI: {exc}") from exc
        self.database_name = database
        self.s3_bucket = s3_bucket
        db = self.client[database]
        self.db = db
        self.experiments = db["experiments"]
        self.claims = db["claims"]
        self.params = db["params"]
        self.logs = db["logs"]
        self.tracks = db["tracks"]
        self.counters = db["counters"]
        self.descriptions = db["stream_descriptions"]
        self.ledger = BatchLedger(self.counters, db["batches"], claim_wait)
        self._s3_client: Any = None
        chunks = None
        if s3_bucket:
            self._s3_client = make_s3_client(s3_endpoint, s3_region, s3_access_key, s3_secret_key, timeout=timeout)
            chunks = ChunkObjects(self._s3_client, s3_bucket, s3_prefix, frame_size=bucket_size)
        self.metric_tier = MetricTier(db, chunks, chunk_size, bucket_size, retry_after, claim_wait)
        self._indexed = False

    def _create_indexes(self) -> None:
        self.experiments.create_index([("owner", 1), ("project", 1)])
        self.logs.create_index([("exp", 1), ("seq", 1)], unique=True)
        self.logs.create_index([("exp", 1), ("ts", 1)])
        self.logs.create_index([("exp", 1), ("level", 1), ("ts", 1)])
        # A level filter paged by sequence (either way): an index scan per level, merged in order.
        self.logs.create_index([("exp", 1), ("level", 1), ("seq", 1)])
        self.tracks.create_index([("exp", 1), ("topic", 1), ("timestamp", 1), ("o", 1)])
        self.counters.create_index([("kind", 1), ("exp", 1)])
        self.metric_tier.create_indexes()
        self._indexed = True

    # -- experiments -------------------------------------------------------------------

    @_guarded
    def open_experiment(self, info: ExperimentInfo) -> ExperimentInfo:
        docs.to_blob(info.metadata, "experiment metadata")
        for _ in range(_CAS_TRIES):
            doc = self.experiments.find_one({"_id": info.prefix})
            if doc is None:
                try:
                    self.experiments.insert_one(docs.experiment_doc(info, 1))
                    return info
                except DuplicateKeyError:
                    continue
            merged = info.resuming(docs.experiment_from_doc(doc))
            if self._replace_experiment(doc, merged):
                return self._reading(merged)
        raise StorageError(f"experiment {info.prefix!r}: too many concurrent changes, try again")

    def _replace_experiment(self, doc: dict[str, Any], info: ExperimentInfo) -> bool:
        rev = int(doc.get("rev") or 0)
        new = docs.experiment_doc(info, rev + 1)
        del new["_id"]
        return bool(self.experiments.replace_one({"_id": info.prefix, "rev": doc.get("rev")}, new).matched_count)

    @_guarded
    def update_experiment(self, prefix: str, **changes: Any) -> ExperimentInfo:
        for _ in range(_CAS_TRIES):
            doc = self.experiments.find_one({"_id": prefix})
            if doc is None:
                raise NotFoundError(f"no experiment {prefix!r} in database {self.database_name!r}")
            info = docs.experiment_from_doc(doc).with_changes(**changes)
            if self._replace_experiment(doc, info):
                return self._reading(info)
        raise StorageError(f"experiment {prefix!r}: too many concurrent changes, try again")

    @_guarded
    def get_experiment(self, prefix: str) -> ExperimentInfo | None:
        doc = self.experiments.find_one({"_id": prefix})
        return self._reading(docs.experiment_from_doc(doc)) if doc is not None else None

    @_guarded
    def list_experiments(self, owner: str | None = None, project: str | None = None) -> list[ExperimentInfo]:
        query: dict[str, Any] = {}
        if owner:
            query["owner"] = owner
            if project:
                query["project"] = project
        infos = [docs.experiment_from_doc(doc) for doc in self.experiments.find(query).sort("_id", 1)]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(infos), 1000):
            wanted = [info.prefix for info in infos[start : start + 1000]]
            found.update((str(doc["_id"]), doc) for doc in self.claims.find({"_id": {"$in": wanted}}))
        now = time.time()
        return [self._reading_with(info, found.get(info.prefix), now) for info in infos]

    def _reading(self, info: ExperimentInfo) -> ExperimentInfo:
        """``info`` with its resume history, last heartbeat and STALE (``claims.reading``)."""
        return self._reading_with(info, self.claims.find_one({"_id": info.prefix}))

    @staticmethod
    def _reading_with(info: ExperimentInfo, doc: dict[str, Any] | None, now: float | None = None) -> ExperimentInfo:
        holders = docs.holders_from_doc(doc) if doc is not None else None
        heartbeat = _optional_float(doc.get("heartbeatAt")) if doc is not None else None
        return claims.reading(info, holders, heartbeat, docs.resumes_from_doc(doc), now=now)

    # -- claims ------------------------------------------------------------------------

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
        """Decide on the ``claims`` document and write it by compare-and-swap on ``rev``:
        of two servers granting at once, one write fails and that server decides again."""
        lease = claims.check_lease(lease_seconds)
        claims.check_holder(holder)
        dead = claims.check_holder_ids(replaces)
        for _ in range(_CAS_TRIES):
            doc = self.claims.find_one({"_id": prefix})
            stored = self.experiments.find_one({"_id": prefix}, {"status": 1})
            now = time.time()
            decision = claims.decide(
                prefix, docs.holders_from_doc(doc), holder, lease, join=join, new=new, existed=stored is not None,
                status=stored.get("status") if stored is not None else None, known=doc is not None,
                replaces=dead, now=now,
            )
            resumes = list((doc or {}).get("resumes") or [])
            if decision.resume is not None:
                resumes.append(docs.resume_doc(decision.resume))
            body = {"holders": [docs.holder_doc(h) for h in decision.holders], "heartbeatAt": now,
                    "resumes": resumes}
            if self._swap_claims(prefix, doc, body):
                return decision.claim
        raise StorageError(f"claim of {prefix!r}: too many concurrent changes, try again")

    def _swap_claims(self, prefix: str, doc: dict[str, Any] | None, body: dict[str, Any]) -> bool:
        """Write ``body`` as the claims document of ``prefix`` if it is still ``doc``."""
        if doc is None:
            try:
                self.claims.insert_one({"_id": prefix, **body, "rev": 1})
                return True
            except DuplicateKeyError:
                return False
        new = {**body, "rev": int(doc.get("rev") or 0) + 1}
        return bool(self.claims.replace_one({"_id": prefix, "rev": doc.get("rev")}, new).matched_count)

    @_guarded
    def release_experiment(self, prefix: str, holder_id: str) -> None:
        for _ in range(_CAS_TRIES):
            doc = self.claims.find_one({"_id": prefix})
            holders = docs.holders_from_doc(doc)
            if doc is None or not any(h.id == holder_id for h in holders):
                return
            body = {"holders": [docs.holder_doc(h) for h in holders if h.id != holder_id],
                    "heartbeatAt": doc.get("heartbeatAt"), "resumes": doc.get("resumes") or []}
            if self._swap_claims(prefix, doc, body):
                return
        raise StorageError(f"release of {prefix!r}: too many concurrent changes, try again")

    # -- params ------------------------------------------------------------------------

    @_guarded
    def set_params(self, prefix: str, flat: dict[str, Any]) -> ParamsDoc:
        docs.to_blob(flat, "params")
        for _ in range(_CAS_TRIES):
            doc = self.params.find_one({"_id": prefix})
            now = time.time()
            if doc is None:
                new = {"version": 1, "data": docs.to_blob(flat, "params"), "createdAt": now, "updatedAt": now}
                try:
                    self.params.insert_one({"_id": prefix, **new})
                except DuplicateKeyError:
                    continue
                return self._params_from_doc(new)
            data = {**docs.from_blob(doc.get("data"), {}), **flat}
            new = {
                "version": int(doc["version"]) + 1,
                "data": docs.to_blob(data, "params"),
                "createdAt": doc.get("createdAt") or now,
                "updatedAt": now,
            }
            if self.params.replace_one({"_id": prefix, "version": doc["version"]}, new).matched_count:
                return self._params_from_doc(new)
        raise StorageError(f"params of {prefix!r}: too many concurrent changes, try again")

    @staticmethod
    def _params_from_doc(doc: dict[str, Any]) -> ParamsDoc:
        return ParamsDoc(
            data=docs.from_blob(doc.get("data"), {}),
            version=int(doc.get("version") or 0),
            created_at=doc.get("createdAt"),
            updated_at=doc.get("updatedAt"),
        )

    @_guarded
    def get_params(self, prefix: str) -> ParamsDoc:
        doc = self.params.find_one({"_id": prefix})
        return self._params_from_doc(doc) if doc is not None else ParamsDoc(data={})

    # -- metrics -----------------------------------------------------------------------

    @_guarded
    def append_metrics(
        self, prefix: str, name: str, points: list[dict[str, Any]], batch_id: str | None = None
    ) -> AppendResult:
        return self.metric_tier.append(prefix, name, points, batch_id)

    @_guarded
    def describe_stream(self, prefix: str, name: str, description: StreamDescription) -> None:
        """Replace the stream's document in ``stream_descriptions`` (the stream need not have points)."""
        sid = stream_id(prefix, name)
        # `_id` repeated in the replacement: the emulator's upserting replace_one does not take it from the filter.
        self.descriptions.replace_one({"_id": sid}, docs.description_doc(sid, prefix, name, description), upsert=True)

    @_guarded
    def read_metrics(self, prefix: str, name: str, start_index: int = 0, limit: int = 1000) -> MetricPage:
        return self.metric_tier.read(prefix, name, start_index, limit)

    @_guarded
    def metric_stats(self, prefix: str, name: str) -> MetricStats:
        """Counts and times; also ``hotDataPoints``, ``coldDataPoints`` and ``coldChunks``."""
        return self.metric_tier.stats(prefix, name)

    @_guarded
    def list_metrics(self, prefix: str) -> list[MetricStats]:
        return [self.metric_tier.stats(prefix, name) for name in self.metric_tier.names(prefix)]

    @_guarded
    def move_full_chunks(self, prefix: str, name: str) -> int:
        """Move the stream's full hot chunks to S3 now (ignoring any retry delay); returns how many."""
        return self.metric_tier.move_full_chunks(prefix, name)

    # -- logs --------------------------------------------------------------------------

    def _insert_new(self, collection: Any, documents: list[dict[str, Any]]) -> int:
        """Insert ``documents``; those whose ``_id`` is already stored are left as they are.

        Returns how many were inserted.
        """
        try:
            return len(collection.insert_many(documents, ordered=False).inserted_ids)
        except BulkWriteError as exc:
            if any(error.get("code") != 11000 for error in exc.details.get("writeErrors", ())):
                raise
            return int(exc.details.get("nInserted", 0))

    @_guarded
    def append_logs(self, prefix: str, records: list[LogRecord], batch_id: str | None = None) -> AppendResult:
        if not records:
            return AppendResult(None, 0)
        log_id = "logs:" + stream_id(prefix, "")
        docs.log_docs(prefix, log_id, records, 0)  # raises InvalidValueError before a number is taken
        reserved = self.ledger.reserve(log_id, len(records), batch_id, {"kind": "logs", "exp": prefix})
        self._insert_new(self.logs, docs.log_docs(prefix, log_id, records, reserved.first))
        return AppendResult(reserved.first, len(records), duplicate=reserved.counter is None)

    @_guarded
    def query_logs(self, prefix: str, query: LogQuery) -> LogPage:
        offset = int(query.get("offset", 0))
        limit = int(query.get("limit", 100))
        if offset < 0 or limit < 0:
            raise InvalidValueError(f"offset and limit must be >= 0, got {offset} and {limit}")
        where: dict[str, Any] = {"exp": prefix}
        levels = sorted(set(query.get("levels") or ()))
        if levels:
            where["level"] = {"$in": levels}
        span = _span(query.get("start_time"), query.get("end_time"))
        if span:
            where["ts"] = span
        if query.get("search"):
            where["message"] = {"$regex": re.escape(str(query["search"])), "$options": "i"}
        total = self.logs.count_documents(where)
        logs: list[dict[str, Any]] = []
        if limit and offset < total:  # limit(0) would mean "no limit" to MongoDB
            order = -1 if query.get("descending") else 1
            cursor = self.logs.find(where).sort("seq", order).skip(offset).limit(limit)
            logs = [docs.log_from_doc(doc) for doc in cursor]
        return LogPage(logs=logs, total=total, offset=offset, limit=limit, hasMore=offset + len(logs) < total)

    # -- tracks ------------------------------------------------------------------------

    @_guarded
    def append_tracks(
        self, prefix: str, topic: str, entries: list[dict[str, Any]], batch_id: str | None = None
    ) -> AppendResult:
        """A batch is a duplicate when it has an id and every one of its entries was stored before."""
        if not entries:
            return AppendResult(None, 0)
        topic_id = "tracks:" + stream_id(prefix, topic)
        documents = docs.track_docs(prefix, topic_id, topic, entries, 0, batch_id)
        # Order numbers are taken afresh on a resend; documents already stored keep theirs.
        order = self.ledger.reserve(topic_id, len(entries), None, {"kind": "tracks", "exp": prefix, "topic": topic})
        for document in documents:
            document["o"] += order.first
        inserted = self._insert_new(self.tracks, documents)
        return AppendResult(None, len(entries), duplicate=batch_id is not None and inserted == 0)

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
        """Merged entries in time order, read along the (exp, topic, timestamp, o) index;
        with a ``limit`` the cursor is closed once the page is complete."""
        if limit is not None and limit < 0:
            raise InvalidValueError(f"limit must be >= 0, got {limit}")
        if limit == 0:
            return []
        where: dict[str, Any] = {"exp": prefix, "topic": topic}
        span: dict[str, float] = _span(start_timestamp, end_timestamp)
        if after is not None:
            span["$gt"] = after
        if span:
            where["timestamp"] = span
        found = self.tracks.find(where, {"entry": 1, "timestamp": 1}).sort([("timestamp", 1), ("o", 1)])
        if limit is None:
            return merge_track_entries((docs.track_from_doc(doc) for doc in found), columns)
        found.batch_size(min(limit + 1, 10_000))
        entries: list[dict[str, Any]] = []
        times = 0
        last: Any = None
        try:
            for doc in found:
                if not times or doc["timestamp"] != last:
                    times += 1
                    if times > limit:
                        break
                    last = doc["timestamp"]
                entries.append(docs.track_from_doc(doc))
        finally:
            found.close()
        return merge_track_entries(entries, columns)

    def _track_info(self, prefix: str, topic: str) -> dict[str, Any]:
        """Distinct timestamps counted by the server along the topic's index (spilling to
        disk for a huge topic rather than failing), first and last from its two ends."""
        where = {"exp": prefix, "topic": topic}
        counted = list(self.tracks.aggregate(
            [{"$match": where}, {"$sort": {"timestamp": 1}}, {"$group": {"_id": "$timestamp"}}, {"$count": "n"}],
            allowDiskUse=True,
        ))
        edges = [
            next(iter(self.tracks.find(where, {"timestamp": 1}).sort("timestamp", order).limit(1)), None)
            for order in (1, -1)
        ]
        return {
            "topic": topic,
            "totalEntries": int(counted[0]["n"]) if counted else 0,
            "firstTimestamp": edges[0]["timestamp"] if edges[0] else None,
            "lastTimestamp": edges[1]["timestamp"] if edges[1] else None,
        }

    @_guarded
    def list_tracks(self, prefix: str) -> list[dict[str, Any]]:
        topics = sorted({str(doc["topic"]) for doc in self.counters.find({"kind": "tracks", "exp": prefix})})
        infos = [self._track_info(prefix, topic) for topic in topics]
        return [info for info in infos if info["totalEntries"]]

    # -- chart and table reads (series by reading the points: ``generic_reads``; field
    # statistics kept beside the points: ``mongo_summaries``) ----------------------------

    @_guarded
    def metric_series(self, prefix: str, name: str, y: str, x: str = "index", x0: float | None = None,
                      x1: float | None = None, width: int = 1000) -> Series:
        return generic_reads.series_by_reading(self, prefix, name, y, x, x0, x1, width)

    @_guarded
    def metric_fields(self, prefix: str, name: str) -> dict[str, FieldStats]:
        """From the statistics kept in the stream's counter document (``mongo_summaries``)."""
        return mongo_summaries.field_stats(self.metric_tier.fields(prefix, name))

    @_guarded
    def run_summaries(self, owner: str | None = None, project: str | None = None) -> list[RunSummary]:
        """From a few queries per 1,000 experiments (experiments, claims, params, the
        streams' counter documents with their statistics); points are never read,
        except to fold statistics of blocks written before they were kept."""
        infos = self.list_experiments(owner, project)
        prefixes = [info.prefix for info in infos]
        params: dict[str, dict[str, Any]] = {}
        for start in range(0, len(prefixes), 1000):
            for doc in self.params.find({"_id": {"$in": prefixes[start : start + 1000]}}, {"data": 1}):
                params[str(doc["_id"])] = docs.from_blob(doc.get("data"), {})
        stats = self.metric_tier.experiment_stats(prefixes)
        found = []
        for info in infos:
            metrics = {}
            for name, kept in sorted(stats.get(info.prefix, {}).items()):
                fields = mongo_summaries.field_stats(kept)
                fields.pop("_ts", None)  # wall time: the table shows the run's own times
                metrics[name] = fields
            found.append(RunSummary(info, dict(params.get(info.prefix, {})), metrics))
        return found

    # -- durability --------------------------------------------------------------------

    def check_access(self, prefix: str, timeout: float) -> None:
        """Nothing to ask: MongoStore runs inside the server, behind its token checks."""

    def sync(self, prefix: str, *, refresh: bool = True) -> None:
        """Nothing to do: every write above was acknowledged by MongoDB before returning.

        (Durability against a MongoDB crash is the URI's write concern, e.g.
        ``?w=majority&journal=true``.)
        """

    def close(self) -> None:
        """Close the MongoDB connections and the S3 client."""
        self.client.close()
        if self._s3_client is not None and hasattr(self._s3_client, "close"):
            self._s3_client.close()
