"""The JSON bodies of the HTTP API, shared by the server and RemoteStore.

See docs/http-api.md. Conversion between records and bodies happens only here.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from .errors import InvalidValueError, TooLargeError
from .records import STATUSES, ExperimentInfo, ParamsDoc
from .values import find_nonfinite, restore_nonfinite

BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_ITEMS = 100_000
NONFINITE = "nonFinite"


class ExperimentBody(msgspec.Struct, omit_defaults=False, rename="camel"):
    prefix: str
    owner: str | None = None
    project: str | None = None
    name: str | None = None
    folders: list[str] = []
    description: str | None = None
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    status: str = "RUNNING"
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    format_version: int = 1
    non_finite: dict[str, str] | None = None  # NaN/inf inside ``metadata``


class ExperimentChanges(msgspec.Struct, omit_defaults=True, rename="camel", forbid_unknown_fields=True):
    status: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    description: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    non_finite: dict[str, str] | None = None  # NaN/inf inside ``metadata``

    def as_changes(self) -> dict[str, Any]:
        """Only the fields that were given, as ExperimentInfo attribute names."""
        if self.status is not None and self.status not in STATUSES:
            raise InvalidValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")
        out: dict[str, Any] = {}
        if self.metadata is not None and self.non_finite:
            restore_nonfinite(self.metadata, self.non_finite)
        for field in self.__struct_fields__:
            value = getattr(self, field)
            if value is not None and field != "non_finite":
                out[field] = tuple(value) if field == "tags" else value
        return out


class ParamsBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    params: dict[str, Any]
    non_finite: dict[str, str] | None = None


class MetricsAppendBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    batch_id: str
    points: list[dict[str, Any]]
    non_finite: dict[str, str] | None = None


class LogRecordBody(msgspec.Struct, forbid_unknown_fields=True):
    ts: float
    level: str
    message: str
    metadata: dict[str, Any] | None = None


class LogsAppendBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    batch_id: str
    records: list[LogRecordBody]
    non_finite: dict[str, str] | None = None


class TracksAppendBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    batch_id: str
    entries: list[dict[str, Any]]
    non_finite: dict[str, str] | None = None


def info_to_body(info: ExperimentInfo) -> dict[str, Any]:
    body = {
        "prefix": info.prefix,
        "owner": info.owner,
        "project": info.project,
        "name": info.name,
        "folders": list(info.folders),
        "description": info.description,
        "tags": list(info.tags),
        "metadata": info.metadata,
        "status": info.status,
        "createdAt": info.created_at,
        "startedAt": info.started_at,
        "endedAt": info.ended_at,
        "formatVersion": info.format_version,
    }
    return attach_nonfinite(body, "metadata")


def info_from_body(body: ExperimentBody, parsed_owner: str, parsed_project: str, parsed_name: str,
                   parsed_folders: tuple[str, ...]) -> ExperimentInfo:
    if body.status not in STATUSES:
        raise InvalidValueError(f"status {body.status!r} is not one of {', '.join(STATUSES)}")
    if body.non_finite:
        restore_nonfinite(body.metadata, body.non_finite)
    info = ExperimentInfo(
        prefix=body.prefix,
        owner=parsed_owner,
        project=parsed_project,
        name=parsed_name,
        folders=parsed_folders,
        description=body.description,
        tags=tuple(body.tags),
        metadata=body.metadata,
        status=body.status,
        started_at=body.started_at,
        ended_at=body.ended_at,
    )
    if body.created_at is not None:
        info = info.with_changes(created_at=body.created_at)
    return info


def params_to_body(doc: ParamsDoc) -> dict[str, Any]:
    return attach_nonfinite(
        {"version": doc.version, "data": doc.data, "createdAt": doc.created_at, "updatedAt": doc.updated_at}, "data"
    )


def attach_nonfinite(body: dict[str, Any], member: str) -> dict[str, Any]:
    """Add the ``nonFinite`` map for ``body[member]`` when it holds NaN or infinities."""
    found = find_nonfinite(body[member])
    if found:
        body[NONFINITE] = found
    return body


def restore_body(body: dict[str, Any], member: str) -> dict[str, Any]:
    """Put the floats listed in ``body["nonFinite"]`` back into ``body[member]``."""
    found = body.pop(NONFINITE, None)
    if found:
        restore_nonfinite(body[member], found)
    return body


def check_batch_id(batch_id: str) -> str:
    if not BATCH_ID.match(batch_id):
        raise InvalidValueError(f"batchId {batch_id[:80]!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return batch_id


def check_items(kind: str, items: list[Any]) -> None:
    if len(items) > MAX_ITEMS:
        raise TooLargeError(f"{kind}: {len(items)} items in one append, the limit is {MAX_ITEMS}")
