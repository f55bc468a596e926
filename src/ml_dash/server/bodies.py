"""Decoding request bodies within the server's limits (``ml_dash.limits``).

A route hands the raw body to :func:`decode` instead of ``wire.decode``. Before
anything is decoded, a few byte counts (``bytes.count``, at memory speed) estimate what
the body would cost as Python objects (``limits.decoded_cost``); a body over its budget
(4x its size, at least ``limits.DECODE_FLOOR``) is refused as 413 ``too_large``
unread, so the memory a request can take is bounded before it is spent. Ordinary
bodies pass on the first four counts; only a body over the budget is looked at again
(digits, text, and brackets or commas inside strings taken out), so a log line full of
commas costs one more pass, not a refusal. After decoding, a body bigger than the byte
limit of its points, records, entries or params is measured entry by entry
(:func:`check_entries`); nesting and item counts of values are checked by
``ml_dash.values`` in the routes' validation, which names the field.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from .. import wire
from ..errors import InvalidValueError, TooLargeError
from ..limits import DECODE_FLOOR, Limits, MiB, decode_budget, decoded_cost

T = TypeVar("T")

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
EXACT_SCAN_STRINGS = 100_000  # ~0.1 s of finditer; more strings are judged on the counts alone
# The most bytes of Python objects one byte of JSON was measured to become: ``{"":[]},``
# 31x, ``[[1]],`` 31x, ``[],`` 21x (CPython 3.11, msgspec), with room for the allocator.
WORST_RATIO = 64
# What each body's entries are, for the byte limits: (member, attribute of Limits, what one is).
_ENTRIES: dict[type[Any], tuple[str, str, str]] = {
    wire.MetricsAppendBody: ("points", "max_point_bytes", "metric point"),
    wire.LogsAppendBody: ("records", "max_log_bytes", "log record"),
    wire.TracksAppendBody: ("entries", "max_track_bytes", "track entry"),
    wire.ParamsBody: ("params", "max_params_bytes", "params document"),
}
_ASTRAL = (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")  # lead bytes of UTF-8 characters beyond U+FFFF
_DIGITS = b"0123456789"
_encode = msgspec.json.Encoder().encode


def _mb(size: float) -> str:
    return f"{size / MiB:,.1f} MiB" if size >= MiB / 10 else f"{size:,.0f} bytes"


def _text_factor(raw: bytes | bytearray) -> int:
    """Bytes per body byte that the text of its strings may take decoded: 1 for ASCII;
    4 when a character beyond U+FFFF (or a ``\\u`` escape) may make a string 4 bytes a
    character; else 2."""
    if raw.isascii():
        return 4 if b"\\u" in raw else 1
    return 4 if b"\\u" in raw or any(lead in raw for lead in _ASTRAL) else 2


def _digits(raw: bytes | bytearray) -> int:
    """How many of the bytes of ``raw`` are digits (a megabyte at a time: no copy of the body)."""
    count = 0
    for at in range(0, len(raw), MiB):
        chunk = raw[at : at + MiB]
        count += len(chunk) - len(chunk.translate(None, _DIGITS))
    return count


def check_cost(raw: bytes | bytearray, ratio: int = 4) -> None:
    """TooLargeError when ``raw`` would cost more memory once decoded than its budget.

    ``ratio`` is the server's ``Limits.max_decode_ratio``. A body under
    ``DECODE_FLOOR / WORST_RATIO`` (512 KiB) passes uncounted: no JSON
    costs more than ``WORST_RATIO`` times its size. A first estimate from five counts
    passes every ordinary body. Over the budget, a second one counts digits and what
    the text is, and leaves out the brackets, commas and colons inside strings: the
    strings are found with ``finditer`` (no copies), unless there are more than
    ``EXACT_SCAN_STRINGS`` of them (seconds of CPU): then the counts stand as they are.
    """
    size = len(raw)
    budget = decode_budget(size, ratio)
    if WORST_RATIO * size <= budget:
        return
    containers = raw.count(b"[") + raw.count(b"{")
    commas, colons, quotes = raw.count(b","), raw.count(b":"), raw.count(b'"')
    strings = quotes // 2
    if decoded_cost(size, containers, commas, colons, strings) <= budget:
        return
    text = _text_factor(raw)
    fewest = (quotes - raw.count(b'\\"')) // 2  # escaped quotes are inside strings
    exact = decoded_cost(size, 0, 0, 0, fewest, 0, text) <= budget and fewest <= EXACT_SCAN_STRINGS
    if exact:
        strings = 0
        for match in _STRING.finditer(raw):
            start, end = match.span()
            strings += 1
            containers -= raw.count(b"[", start, end) + raw.count(b"{", start, end)
            commas -= raw.count(b",", start, end)
            colons -= raw.count(b":", start, end)
    cost = decoded_cost(size, containers, commas, colons, strings, 0, text)
    if cost <= budget:  # numbers may still tip it over
        cost = decoded_cost(size, containers, commas, colons, strings, _digits(raw), text)
    if cost > budget:
        about = "about" if exact else "up to"
        raise TooLargeError(
            f"the body ({_mb(size)}) holds {about} {containers:,} lists and objects, {commas + colons:,} other "
            f"items and {strings:,} strings: decoded, it would take {about} {_mb(cost)} of memory, over this "
            f"server's limit of {_mb(budget)} ({ratio}x the body, at least {_mb(DECODE_FLOOR)}); send smaller "
            "batches, or values with fewer nested lists and objects"
        )


def check_entries(body: Any, limits: Limits, size: int) -> None:
    """TooLargeError naming the first point, record, entry or params document of a
    decoded ``body`` (``size`` bytes) that is over its byte limit as compact JSON.
    Costs one encoding, paid only by bodies bigger than the limit."""
    entry = _ENTRIES.get(type(body))
    if entry is None:
        return
    member, attribute, what = entry
    limit: int = getattr(limits, attribute)
    if size <= limit:
        return
    value = getattr(body, member)
    for i, part in enumerate([value] if member == "params" else value):
        length = len(_encode(part))
        if length > limit:
            where = member if member == "params" else f"{member}[{i}]"
            raise TooLargeError(f"{where}: {length:,} bytes of JSON, over this server's limit of {limit:,} bytes "
                                f"per {what}")


def decode(raw: bytes | bytearray, kind: type[T], limits: Limits) -> T:
    """``raw`` decoded into the ``wire`` struct ``kind`` (``wire.decode``) after
    :func:`check_cost`, then checked with :func:`check_entries`; a body nested too
    deeply for the decoder is InvalidValueError naming ``limits.max_depth``."""
    check_cost(raw, limits.max_decode_ratio)
    try:
        body = wire.decode(raw, kind)
    except InvalidValueError as exc:
        if isinstance(exc.__cause__, RecursionError):
            raise InvalidValueError(
                f"the body nests lists and objects hundreds of levels deep; values may nest at most "
                f"{limits.max_depth} levels"
            ) from exc
        raise
    check_entries(body, limits, len(raw))
    return body
