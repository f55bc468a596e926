"""The HTTP API's bodies: one msgspec struct per request and per answer.

The server's routes decode requests and encode answers with these structs; RemoteStore
encodes requests and decodes answers with the same ones, and the outbox stores a
delayed store call as the request body a route would get (:func:`encode_call`,
:func:`decode_call`). So client, server and outbox cannot drift apart, and records
(``ml_dash.records``) become JSON only here. docs/http-api.md describes the shapes.

Every struct converts to and from the record it carries: ``Struct.of(...)`` takes the
record (or, for a request, the Store method's arguments after ``prefix``/``name``),
``.record()`` / ``.args()`` gives it back.

Non-finite floats travel as ``null`` plus a ``nonFinite`` map of JSON Pointers
(relative to the struct's main member, ``Carrier.MEMBER``) beside it: :func:`encode`
adds the map, :func:`decode` puts the floats back, so a struct from :func:`decode`
always holds the real values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Annotated, Any, ClassVar, TypedDict, TypeVar, cast

import msgspec
from msgspec import UNSET, Meta, UnsetType

from .errors import BadRequestError, InvalidValueError
from .names import PREFIX_PATTERN, parse_prefix
from .records import (
    FORMAT_VERSION,
    LOG_LEVELS,
    READ_STATUSES,
    STATUSES,
    AppendResult,
    Claim,
    ExperimentInfo,
    Holder,
    LogPage,
    LogRecord,
    MetricPage,
    MetricPoint,
    MetricStats,
    ParamsDoc,
    Resume,
    StreamDescription,
)
from .values import NONFINITE_NAMES, find_nonfinite, put_at_null

T = TypeVar("T")
C = TypeVar("C", bound="Carrier")
E = TypeVar("E", bound="ExperimentBody")


def _described(**schema: Any) -> Meta:
    """JSON Schema for the OpenAPI description only: the routes check these rules
    themselves (and answer 422, where a msgspec constraint would answer 400)."""
    return Meta(extra_json_schema=schema)


BATCH_ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
# What ``logs.normalize_level`` accepts: a level or alias in any case, spaces around it.
_SPACE = r"[\t-\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*"
_LEVEL_WORDS = (*LOG_LEVELS, "warning", "err", "critical")  # and the aliases of logs.normalize_level
LEVEL_PATTERN = (
    f"^{_SPACE}("
    + "|".join("".join(f"[{c.upper()}{c}]" for c in word) for word in _LEVEL_WORDS)
    + f"){_SPACE}$"
)
NonFiniteName = Annotated[str, _described(enum=list(NONFINITE_NAMES))]
NonFiniteMap = (
    Annotated[dict[str, NonFiniteName], _described(propertyNames={"pattern": "^/"})] | UnsetType | None
)
BatchId = Annotated[str, _described(pattern=BATCH_ID_PATTERN)]
PrefixText = Annotated[str, _described(pattern=PREFIX_PATTERN, maxLength=512)]
Status = Annotated[str, _described(enum=list(STATUSES))]
ReadStatus = Annotated[str, _described(enum=list(READ_STATUSES))]
Level = Annotated[str, _described(pattern=LEVEL_PATTERN)]

_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


class Body(msgspec.Struct, rename="camel"):
    """A JSON body with camelCase member names."""


class Carrier(Body, kw_only=True):
    """A body whose main member (``MEMBER``) may hold NaN or infinities.

    ``non_finite`` is the ``nonFinite`` map; it is left out of the JSON when unset.
    """

    MEMBER: ClassVar[str] = ""
    non_finite: NonFiniteMap = UNSET

    def nonfinite_map(self) -> dict[str, str]:
        """JSON Pointer -> "NaN" | "Infinity" | "-Infinity" for every non-finite float in the member."""
        return find_nonfinite(getattr(self, self.MEMBER))

    def put_back(self, found: Mapping[str, str]) -> None:
        """Put the floats of a (checked) ``nonFinite`` map back into the member, each
        where a ``null`` is (InvalidValueError for a pointer to anything else)."""
        member = getattr(self, self.MEMBER)
        for pointer, name in found.items():
            if not put_at_null(member, pointer, NONFINITE_NAMES[name]):
                raise InvalidValueError(
                    f"nonFinite key {pointer[:80]!r} does not point at a null inside {self.MEMBER!r}"
                )

    def with_nonfinite(self: C) -> C:
        """This body with its ``nonFinite`` map set now (for bodies nested in another)."""
        found = self.nonfinite_map()
        if found:
            self.non_finite = found
        return self

    def restore_nonfinite(self) -> None:
        """Apply and drop the ``nonFinite`` map; InvalidValueError for a malformed one."""
        found = self.non_finite
        self.non_finite = UNSET
        if not found:
            return
        for pointer, name in found.items():
            if name not in NONFINITE_NAMES:
                raise InvalidValueError(f"nonFinite[{pointer[:80]!r}] is {name[:40]!r}, not NaN, Infinity or -Infinity")
            if not pointer.startswith("/"):
                raise InvalidValueError(f"nonFinite key {pointer[:80]!r} is not a JSON Pointer into {self.MEMBER!r}")
        self.put_back(found)


def encode(body: msgspec.Struct | Mapping[str, Any]) -> bytes:
    """``body`` as JSON, with the ``nonFinite`` map of a Carrier's member when it holds NaN or inf.

    msgspec writes NaN and infinities as ``null``, so JSON without ``null`` in it has none
    and skips the walk over every value.
    """
    out = _encoder.encode(body)
    if isinstance(body, Carrier) and body.non_finite is UNSET and b"null" in out:
        found = body.nonfinite_map()
        if found:
            out = _encoder.encode(msgspec.structs.replace(body, non_finite=found))
    return out


def decode(raw: bytes | bytearray, kind: type[T]) -> T:
    """``raw`` decoded into ``kind`` with non-finite floats put back.

    BadRequestError when it is not JSON of that shape; InvalidValueError for a
    malformed ``nonFinite`` map.
    """
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        body: T = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise BadRequestError(f"body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidValueError("the body nests lists and objects too deeply to be decoded") from exc
    if isinstance(body, Carrier):
        body.restore_nonfinite()
    return body


def _exactly_dict(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as a plain dict (``values.find_nonfinite`` descends into plain dicts only)."""
    return value if type(value) is dict else dict(value)


def _check_status(status: str, allowed: tuple[str, ...] = STATUSES) -> str:
    if status not in allowed:
        raise InvalidValueError(f"status {status!r} is not one of {', '.join(allowed)}")
    return status


# -- experiments ------------------------------------------------------------------------


class ResumeBody(Body):
    """One resume of an experiment (``Experiment.resumes``)."""

    at: float
    host: str
    pid: int
    interrupted: bool = False
    previous_status: str = "COMPLETED"

    @classmethod
    def of(cls, resume: Resume) -> ResumeBody:
        return cls(resume.at, resume.host, resume.pid, resume.interrupted, resume.previous_status)

    def record(self) -> Resume:
        return Resume(self.at, self.host, self.pid, self.interrupted, self.previous_status)


class ExperimentBody(Carrier):
    """``Experiment``: what the server answers about an experiment (and ``open`` reads).

    Owner, project, name and folders are those of ``prefix``; in a request, only
    ``prefix`` is required. ``status`` may read ``STALE`` (never stored); ``resumes``
    and ``heartbeatAt`` are the store's (a client's are ignored by ``open``).
    """

    MEMBER = "metadata"
    prefix: PrefixText
    owner: str | None = None
    project: str | None = None
    name: str | None = None
    folders: list[str] = []
    description: str | None = None
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    status: ReadStatus = "RUNNING"
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    format_version: int = FORMAT_VERSION
    resumes: list[ResumeBody] = []
    heartbeat_at: float | None = None

    @classmethod
    def of(cls: type[E], info: ExperimentInfo) -> E:
        return cls(
            prefix=info.prefix, owner=info.owner, project=info.project, name=info.name, folders=list(info.folders),
            description=info.description, tags=list(info.tags), metadata=_exactly_dict(info.metadata),
            status=info.status, created_at=info.created_at, started_at=info.started_at, ended_at=info.ended_at,
            format_version=info.format_version, resumes=[ResumeBody.of(r) for r in info.resumes],
            heartbeat_at=info.heartbeat_at,
        )

    def record(self) -> ExperimentInfo:
        """The ExperimentInfo (names from the prefix; created now when ``createdAt`` is absent)."""
        parsed = parse_prefix(self.prefix)
        info = ExperimentInfo(
            prefix=self.prefix, owner=parsed.owner, project=parsed.project, name=parsed.name, folders=parsed.folders,
            description=self.description, tags=tuple(self.tags), metadata=self.metadata,
            status=_check_status(self.status, READ_STATUSES), started_at=self.started_at, ended_at=self.ended_at,
            format_version=self.format_version, resumes=tuple(r.record() for r in self.resumes),
            heartbeat_at=self.heartbeat_at,
        )
        return info if self.created_at is None else info.with_changes(created_at=self.created_at)

    def args(self) -> tuple[ExperimentInfo]:
        return (self.record(),)


class ExperimentOpen(ExperimentBody, forbid_unknown_fields=True):
    """``ExperimentBody`` as ``open`` accepts it: unknown members are refused like in every other body."""

    status: Status = "RUNNING"

    def record(self) -> ExperimentInfo:
        """The info to open: RUNNING or a final status (not STALE); no resume history or heartbeat (the store's)."""
        _check_status(self.status)
        return replace(super().record(), resumes=(), heartbeat_at=None)


class HolderBody(Body, forbid_unknown_fields=True):
    """Who claims an experiment: ``id`` unique per claim, ``host`` and ``pid`` where it runs."""

    id: str
    host: str
    pid: int


class ClaimBody(Body, forbid_unknown_fields=True):
    """``claim_experiment``: claim (or, as the same holder again, renew) an experiment for ``leaseSeconds``;
    ``replaces``: ids of holders the client knows are dead."""

    holder: HolderBody
    lease_seconds: float
    join: bool = False
    new: bool = False
    replaces: list[str] = []

    @classmethod
    def of(
        cls, holder: Holder, lease_seconds: float, join: bool = False, new: bool = False, replaces: Sequence[str] = ()
    ) -> ClaimBody:
        return cls(HolderBody(holder.id, holder.host, holder.pid), float(lease_seconds), bool(join), bool(new),
                   list(replaces))

    def args(self) -> tuple[Holder, float, bool, bool, tuple[str, ...]]:
        holder = Holder(self.holder.id, self.holder.host, self.holder.pid)
        return holder, self.lease_seconds, self.join, self.new, tuple(self.replaces)


class ClaimOut(Body):
    """What a claim granted (``ml_dash.records.Claim``)."""

    prefix: str
    holder_id: str
    holders: int
    renewed: bool
    existed: bool
    interrupted: bool

    @classmethod
    def of(cls, claim: Claim) -> ClaimOut:
        return cls(claim.prefix, claim.holder_id, claim.holders, claim.renewed, claim.existed, claim.interrupted)

    def record(self) -> Claim:
        return Claim(self.prefix, self.holder_id, self.holders, self.renewed, self.existed, self.interrupted)


class ReleaseBody(Body, forbid_unknown_fields=True):
    """``release_experiment``: end one holder's claim (the answer repeats it)."""

    holder_id: str


class ExperimentChanges(Carrier, forbid_unknown_fields=True):
    """The fields ``update`` changes; members left out stay as they are (null clears a time or the description)."""

    MEMBER = "metadata"
    status: Status | UnsetType = UNSET
    started_at: float | UnsetType | None = UNSET
    ended_at: float | UnsetType | None = UNSET
    description: str | UnsetType | None = UNSET
    tags: list[str] | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET

    @classmethod
    def of(cls, changes: Mapping[str, Any]) -> ExperimentChanges:
        """From ``update_experiment``'s keyword arguments; InvalidValueError for one the API cannot change."""
        allowed = set(cls.__struct_fields__) - {"non_finite"}
        for key in changes:
            if key not in allowed:
                raise InvalidValueError(
                    f"update_experiment: {key!r} cannot be changed (only {', '.join(sorted(allowed))})"
                )
        given: dict[str, Any] = {key: list(value) if key == "tags" else value for key, value in changes.items()}
        if "metadata" in given:
            given["metadata"] = _exactly_dict(given["metadata"])
        return cls(**given)

    def changes(self) -> dict[str, Any]:
        """The given fields as ExperimentInfo attribute names and types."""
        out: dict[str, Any] = {}
        for key in self.__struct_fields__:
            value = getattr(self, key)
            if value is not UNSET and key != "non_finite":
                out[key] = tuple(value) if key == "tags" else value
        if "status" in out:
            _check_status(out["status"])
        return out

    def args(self) -> tuple[dict[str, Any]]:
        return (self.changes(),)


class ExperimentList(Body):
    experiments: list[ExperimentBody]

    @classmethod
    def of(cls, infos: Sequence[ExperimentInfo]) -> ExperimentList:
        return cls([ExperimentBody.of(info).with_nonfinite() for info in infos])

    def record(self) -> list[ExperimentInfo]:
        for body in self.experiments:
            body.restore_nonfinite()
        return [body.record() for body in self.experiments]


# -- params -----------------------------------------------------------------------------


class ParamsBody(Carrier, forbid_unknown_fields=True):
    """``set_params``: params to merge (nested objects are flattened with ``.``)."""

    MEMBER = "params"
    params: dict[str, Any]

    @classmethod
    def of(cls, flat: dict[str, Any]) -> ParamsBody:
        return cls(params=_exactly_dict(flat))

    def args(self) -> tuple[dict[str, Any]]:
        return (self.params,)


class ParamsOut(Carrier):
    """``Params``: the stored params of an experiment."""

    MEMBER = "data"
    version: int
    data: dict[str, Any]
    created_at: float | None
    updated_at: float | None

    @classmethod
    def of(cls, doc: ParamsDoc) -> ParamsOut:
        return cls(version=doc.version, data=doc.data, created_at=doc.created_at, updated_at=doc.updated_at)

    def record(self) -> ParamsDoc:
        return ParamsDoc(data=self.data, version=self.version, created_at=self.created_at, updated_at=self.updated_at)


# -- appends ----------------------------------------------------------------------------


def _exactly_list(items: list[Any]) -> list[Any]:
    """``items`` as a plain list (the writer's batches are list subclasses; see ``_exactly_dict``)."""
    return items if type(items) is list else list(items)


def _batch_id(batch_id: str | None) -> str:
    """The batch id a request carries: a fresh one for a call made without, so that
    every resend of the body is the same batch."""
    if batch_id is not None:
        return batch_id
    from .writer import new_batch_id  # the writer names the batches it makes the same way

    return new_batch_id()


class MetricsAppendBody(Carrier, forbid_unknown_fields=True):
    """``append_metrics``: points (field dicts with ``_ts``) under a client-chosen batch id."""

    MEMBER = "points"
    batch_id: BatchId
    points: list[dict[str, Any]]

    @classmethod
    def of(cls, points: list[dict[str, Any]], batch_id: str | None = None) -> MetricsAppendBody:
        return cls(batch_id=_batch_id(batch_id), points=_exactly_list(points))

    def args(self) -> tuple[list[dict[str, Any]], str]:
        return self.points, self.batch_id


class MetricsAppended(Body):
    """What ``append_metrics`` did (``firstIndex`` null for an empty batch)."""

    first_index: int | None
    count: int
    duplicate: bool

    @classmethod
    def of(cls, result: AppendResult) -> MetricsAppended:
        return cls(result.first, result.count, result.duplicate)

    def record(self) -> AppendResult:
        return AppendResult(self.first_index, self.count, self.duplicate)


class LogRecordBody(msgspec.Struct, forbid_unknown_fields=True):
    """One log line as ``append_logs`` sends it."""

    ts: float
    level: Level
    message: str
    metadata: dict[str, Any] | None = None


class LogsAppendBody(Carrier, forbid_unknown_fields=True):
    """``append_logs``: log records under a client-chosen batch id.

    Only what is inside a record's ``metadata`` can be a non-finite float (``ts`` must
    be a finite number), so the ``nonFinite`` map may point at nothing else.
    """

    MEMBER = "records"
    batch_id: BatchId
    records: list[LogRecordBody]

    @classmethod
    def of(cls, records: Sequence[LogRecord], batch_id: str | None = None) -> LogsAppendBody:
        """InvalidValueError for a record whose time is not finite (JSON cannot carry it as a number)."""
        bodies = []
        for i, rec in enumerate(records):
            if not math.isfinite(rec.ts):
                raise InvalidValueError(f"records[{i}].ts must be a finite number of seconds, got {rec.ts!r}")
            bodies.append(LogRecordBody(rec.ts, rec.level, rec.message, rec.metadata))
        return cls(batch_id=_batch_id(batch_id), records=bodies)

    def args(self) -> tuple[list[LogRecord], str]:
        return [LogRecord(r.ts, r.level, r.message, r.metadata) for r in self.records], self.batch_id

    def nonfinite_map(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for i, rec in enumerate(self.records):
            if rec.metadata:
                found.update(find_nonfinite(rec.metadata, f"/{i}/metadata"))
        return found

    def put_back(self, found: Mapping[str, str]) -> None:
        for pointer, name in found.items():
            parts = pointer.split("/", 3)  # "", record index, "metadata", pointer inside metadata
            index = int(parts[1]) if parts[1].isascii() and parts[1].isdigit() else -1
            rec = self.records[index] if 0 <= index < len(self.records) else None
            if rec is None or len(parts) < 4 or parts[2] != "metadata" or rec.metadata is None:
                raise InvalidValueError(f"nonFinite key {pointer[:80]!r} does not point into a record's metadata")
            if not put_at_null(rec.metadata, "/" + parts[3], NONFINITE_NAMES[name]):
                raise InvalidValueError(f"nonFinite key {pointer[:80]!r} does not point at a null inside "
                                        f"records[{index}].metadata")


class LogsAppended(Body):
    """What ``append_logs`` did (``firstSequence`` null for an empty batch)."""

    first_sequence: int | None
    count: int
    duplicate: bool

    @classmethod
    def of(cls, result: AppendResult) -> LogsAppended:
        return cls(result.first, result.count, result.duplicate)

    def record(self) -> AppendResult:
        return AppendResult(self.first_sequence, self.count, self.duplicate)


class TracksAppendBody(Carrier, forbid_unknown_fields=True):
    """``append_tracks``: entries (flat dicts with ``timestamp``) under a client-chosen batch id."""

    MEMBER = "entries"
    batch_id: BatchId
    entries: list[dict[str, Any]]

    @classmethod
    def of(cls, entries: list[dict[str, Any]], batch_id: str | None = None) -> TracksAppendBody:
        return cls(batch_id=_batch_id(batch_id), entries=_exactly_list(entries))

    def args(self) -> tuple[list[dict[str, Any]], str]:
        return self.entries, self.batch_id


class TracksAppended(Body):
    """What ``append_tracks`` did (track entries have no counter)."""

    count: int
    duplicate: bool

    @classmethod
    def of(cls, result: AppendResult) -> TracksAppended:
        return cls(result.count, result.duplicate)

    def record(self) -> AppendResult:
        return AppendResult(None, self.count, self.duplicate)


class StreamDescriptionBody(Carrier, forbid_unknown_fields=True):
    """``describe_stream``: what the user said about a metric stream (replaces what was said before)."""

    MEMBER = "metadata"
    description: str | None = None
    tags: list[str] = []
    metadata: dict[str, Any] = {}

    @classmethod
    def of(cls, description: StreamDescription) -> StreamDescriptionBody:
        return cls(description=description.description, tags=list(description.tags),
                   metadata=_exactly_dict(description.metadata))

    def record(self) -> StreamDescription:
        return StreamDescription(self.description, tuple(self.tags), self.metadata)

    def args(self) -> tuple[StreamDescription]:
        return (self.record(),)


# -- reads ------------------------------------------------------------------------------


class MetricPageOut(Carrier):
    """``MetricPage``: points in index order."""

    MEMBER = "data"
    data: list[MetricPoint]
    start_index: int
    end_index: int
    total: int
    has_more: bool

    @classmethod
    def of(cls, page: MetricPage) -> MetricPageOut:
        points = cast(list[MetricPoint], page["data"])
        return cls(points, page["startIndex"], page["endIndex"], page["total"], page["hasMore"])

    def record(self) -> MetricPage:
        points = cast(list[dict[str, Any]], self.data)
        return MetricPage(data=points, startIndex=self.start_index, endIndex=self.end_index, total=self.total,
                          hasMore=self.has_more)


class MetricList(Body):
    metrics: list[MetricStats]

    @classmethod
    def of(cls, stats: list[MetricStats]) -> MetricList:
        return cls(stats)

    def record(self) -> list[MetricStats]:
        return self.metrics


class LogPageOut(Carrier):
    """``LogPage``: log lines as the stores return them (``sequenceNumber``, ``timestamp``, ``ts``, ...)."""

    MEMBER = "logs"
    logs: list[dict[str, Any]]
    total: int
    offset: int
    limit: int
    has_more: bool

    @classmethod
    def of(cls, page: LogPage) -> LogPageOut:
        return cls(page["logs"], page["total"], page["offset"], page["limit"], page["hasMore"])

    def record(self) -> LogPage:
        return LogPage(logs=self.logs, total=self.total, offset=self.offset, limit=self.limit, hasMore=self.has_more)


class TrackEntries(Carrier):
    """Track entries in time order."""

    MEMBER = "entries"
    entries: list[dict[str, Any]]

    @classmethod
    def of(cls, entries: list[dict[str, Any]]) -> TrackEntries:
        return cls(entries)

    def record(self) -> list[dict[str, Any]]:
        return self.entries


class TrackInfo(TypedDict):
    topic: str
    totalEntries: int
    firstTimestamp: float | None
    lastTimestamp: float | None


class TrackList(Body):
    tracks: list[TrackInfo]

    @classmethod
    def of(cls, tracks: list[dict[str, Any]]) -> TrackList:
        return cls(cast(list[TrackInfo], tracks))

    def record(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.tracks)


class ErrorBody(Body):
    """Every refusal: a stable ``code`` (see docs/http-api.md) and a readable ``message``."""

    code: str
    message: str


class Health(Body):
    status: str
    version: str
    backend: str


# -- store calls as request bodies (the outbox) ----------------------------------------

Request = (
    ExperimentOpen | ExperimentChanges | ParamsBody | MetricsAppendBody | LogsAppendBody | TracksAppendBody
    | StreamDescriptionBody
)

_CALLS: dict[str, tuple[type[Request], Callable[..., Request]]] = {
    "open_experiment": (ExperimentOpen, ExperimentOpen.of),
    "update_experiment": (ExperimentChanges, ExperimentChanges.of),
    "set_params": (ParamsBody, ParamsBody.of),
    "append_metrics": (MetricsAppendBody, MetricsAppendBody.of),
    "append_logs": (LogsAppendBody, LogsAppendBody.of),
    "append_tracks": (TracksAppendBody, TracksAppendBody.of),
    "describe_stream": (StreamDescriptionBody, StreamDescriptionBody.of),
}
WRITE_OPS = frozenset(_CALLS)


def _call_kind(op: str) -> tuple[type[Request], Callable[..., Request]]:
    try:
        return _CALLS[op]
    except KeyError:
        raise InvalidValueError(f"{op!r} is not a store write ({', '.join(sorted(_CALLS))})") from None


def encode_call(op: str, args: tuple[Any, ...]) -> bytes:
    """The request body of the Store write ``op`` called with ``args``.

    ``args`` are the method's arguments after ``prefix`` (and after ``name``/``topic``):
    ``(info,)``, ``(changes,)``, ``(flat,)``, ``(points, batch_id)``, ``(records,
    batch_id)``, ``(entries, batch_id)``, ``(description,)``. A batch id of None is
    replaced by a fresh one, so every replay of the body is the same batch.
    InvalidValueError for an unknown ``op`` or a change the API cannot carry.
    """
    _, build = _call_kind(op)
    return encode(build(*args))


def decode_call(op: str, body: bytes) -> tuple[Any, ...]:
    """The arguments :func:`encode_call` was given, from its body (equal values: NaN,
    infinities, big ints and nested dicts included; tags as tuples).

    BadRequestError / InvalidValueError when ``body`` is not a body of ``op``.
    """
    kind, _ = _call_kind(op)
    return decode(body, kind).args()
