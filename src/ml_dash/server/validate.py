"""What the server checks before it hands data to the store.

The SDK validates on the caller's side; the server cannot trust callers, so it checks
the same rules again: names (``ml_dash.names``), times, log levels, value nesting and
item counts (``ml_dash.limits``, the server's own limits; ``ml_dash.wire`` has already
put NaN and infinities back). Every check raises an ``MLDashError`` naming the
offending field, and runs before the store is touched, so a refused request writes
nothing.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any

from ..errors import ForbiddenError, InvalidNameError, InvalidValueError, TooLargeError
from ..limits import DEFAULT, Limits
from ..logs import normalize_level
from ..names import Prefix, parse_prefix, validate_name
from ..params import flatten
from ..records import LogRecord, StreamDescription
from ..tracks import RESERVED_FIELDS
from ..values import PLAIN, check_text, normalize, normalize_fields
from ..wire import BATCH_ID_PATTERN
from .auth import check_owner

# The latest time ``datetime`` can show (9999-12-31T23:59:59Z): stores write
# experiment and log times as ISO text.
MAX_TIME = 253_402_300_799.0
_TRACK_RESERVED = RESERVED_FIELDS  # timestamp, _nonFinite, _batchId: the store's own keys
BATCH_ID = re.compile(BATCH_ID_PATTERN)
MAX_ITEMS = DEFAULT.max_items  # the default; a server's own is ``Limits.max_items``


class Access:
    """Who is calling: ``owner`` None means the server runs without auth."""

    __slots__ = ("owner",)

    def __init__(self, owner: str | None) -> None:
        self.owner = owner

    def check(self, owner: str) -> None:
        """Raise ForbiddenError unless this caller may use ``owner``'s experiments."""
        if self.owner is not None and owner != self.owner:
            raise ForbiddenError(f"this token belongs to {self.owner!r} and cannot use experiments of {owner!r}")


def server_prefix(prefix: str, access: Access) -> Prefix:
    """Parse an ``owner/project/[folders/]name`` prefix the caller may use.

    The server never guesses an owner: fewer than three segments is InvalidNameError.
    """
    parsed = parse_prefix(prefix)
    if len(prefix.split("/")) < 3:
        raise InvalidNameError(f"prefix {prefix!r} must be 'owner/project/[folders/]name' (the owner is explicit)")
    check_owner(parsed.owner)
    access.check(parsed.owner)
    return parsed


def single_name(name: str | None, what: str) -> str | None:
    """An owner or project filter: one folder name, or None."""
    if name is None:
        return None
    validate_name(name, what)
    if "/" in name:
        raise InvalidNameError(f"{what} {name!r} must be a single name without '/'")
    return name


def check_time(value: Any, what: str, *, upper: float = MAX_TIME) -> float:
    """``value`` as float seconds if it is a finite number in ``0 .. upper``, else InvalidValueError."""
    if type(value) is bool or not isinstance(value, int | float):
        raise InvalidValueError(f"{what} must be a number of seconds, got {value!r:.80}")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not (0.0 <= seconds <= upper) or seconds == math.inf:
        raise InvalidValueError(f"{what} must be a finite number of seconds in 0 .. {upper:.0f}, got {value!r:.80}")
    return seconds


def check_batch_id(batch_id: str) -> str:
    """``batch_id`` if it is 1-64 characters of A-Z a-z 0-9 _ -, else InvalidValueError."""
    if not BATCH_ID.match(batch_id):
        raise InvalidValueError(f"batchId {batch_id[:80]!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return batch_id


def check_items(kind: str, items: Sequence[object], limits: Limits = DEFAULT) -> None:
    """TooLargeError for more than ``limits.max_items`` items in one append."""
    if len(items) > limits.max_items:
        raise TooLargeError(f"{kind}: {len(items)} items in one append, the limit is {limits.max_items}")


def metric_points(name: str, points: Any, limits: Limits = DEFAULT) -> list[dict[str, Any]]:
    """Points ready for ``append_metrics``: objects, ``_ts`` a finite time (stamped when absent)."""
    if not isinstance(points, list):
        raise InvalidValueError(f"metric {name!r}: points must be a list")
    check_items("points", points, limits)
    stamp = time.time()
    max_fields = limits.max_items
    for i, point in enumerate(points):
        if type(point) is not dict:
            raise InvalidValueError(f"metric {name!r}: points[{i}] must be an object, got {point!r:.80}")
        if len(point) > max_fields:
            raise InvalidValueError(f"metric {name!r}: points[{i}] has {len(point)} fields, over the limit of "
                                    f"{max_fields}")
        ts = point.get("_ts")
        if ts is None:
            point["_ts"] = stamp
        elif type(ts) is not float or not (0.0 <= ts < math.inf):
            point["_ts"] = check_time(ts, f"metric {name!r}: points[{i}]._ts", upper=math.inf)
        for value in point.values():
            if type(value) not in PLAIN:  # the label is built only for the rare point that needs it
                normalize_fields(point, f"points[{i}]", limits)
                break
    return points


def log_records(records: list[LogRecord], limits: Limits = DEFAULT) -> list[LogRecord]:
    """Log records ready for ``append_logs``: times, levels, text and metadata checked."""
    check_items("records", records, limits)
    out = []
    for i, rec in enumerate(records):
        ts = check_time(rec.ts, f"records[{i}].ts")
        message = check_text(rec.message, f"records[{i}].message")
        metadata = rec.metadata
        if metadata is not None:
            metadata = normalize(metadata, f"records[{i}].metadata", 0, limits)
        out.append(LogRecord(ts, normalize_level(rec.level), message, metadata))
    return out


def check_tags(tags: Sequence[str], limits: Limits = DEFAULT) -> None:
    """InvalidValueError for tags that are not UTF-8 text, or more of them than ``limits.max_items``."""
    if len(tags) > limits.max_items:
        raise InvalidValueError(f"tags: {len(tags)} items, over the limit of {limits.max_items}")
    for i, tag in enumerate(tags):
        check_text(tag, f"tags[{i}]")


def stream_description(given: StreamDescription, limits: Limits = DEFAULT) -> StreamDescription:
    """A metric stream's description ready for ``describe_stream``: text and metadata checked."""
    if given.description is not None:
        check_text(given.description, "description")
    check_tags(given.tags, limits)
    return StreamDescription(given.description, given.tags, normalize(given.metadata, "metadata", 0, limits))


def track_entries(topic: str, entries: Any, limits: Limits = DEFAULT) -> list[dict[str, Any]]:
    """Entries ready for ``append_tracks``: a finite ``timestamp`` and flat fields (nested
    ones flattened with ``.``; two names that flatten to one are InvalidValueError)."""
    if not isinstance(entries, list):
        raise InvalidValueError(f"track {topic!r}: entries must be a list")
    check_items("entries", entries, limits)
    out = []
    for i, entry in enumerate(entries):
        if type(entry) is not dict:
            raise InvalidValueError(f"track {topic!r}: entries[{i}] must be an object, got {entry!r:.80}")
        if "timestamp" not in entry:
            raise InvalidValueError(f"track {topic!r}: entries[{i}] needs a numeric 'timestamp'")
        fields = dict(entry)
        ts = check_time(fields.pop("timestamp"), f"track {topic!r}: entries[{i}].timestamp", upper=math.inf)
        bad = _TRACK_RESERVED.intersection(fields)
        if bad:
            raise InvalidValueError(f"track {topic!r}: entries[{i}]: field name {sorted(bad)[0]!r} is reserved")
        try:
            flat = flatten(fields, limits)
        except InvalidValueError as exc:
            raise InvalidValueError(f"track {topic!r}: entries[{i}]: {exc.message}") from None
        out.append({"timestamp": ts, **flat})
    return out


def flat_params(params: Any, limits: Limits = DEFAULT) -> dict[str, Any]:
    """Params ready for ``set_params``: flat names (nested objects flattened with ``.``;
    two names that flatten to one are InvalidValueError)."""
    if not isinstance(params, dict):
        raise InvalidValueError("params must be an object")
    return flatten(params, limits)

