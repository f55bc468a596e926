"""Reading ``data.jsonl`` for the series index: byte ranges, single lines, and blocks of
complete lines decoded into numpy columns.

:func:`decode_block` is the one place where metric lines are decoded; the other
``series_*`` modules call it as ``series_lines.decode_block`` (an attribute of this
module, looked up at call time), so one wrapper set here sees every decode: the tests
count them to prove which calls read no data lines.
"""

from __future__ import annotations

import gc
import math
import os
import re
import warnings
import zlib
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

from ..values import NONFINITE_NAMES
from . import series_records as pyramid
from .jsonl import LineReader
from .lines import lenient_decode
from .series_records import F64, I64, Mask


class StaleError(Exception):
    """The data file no longer matches the index (it changed under a query)."""


_decode_any = msgspec.json.Decoder().decode
_decode_any_lines = msgspec.json.Decoder().decode_lines
_Number = float | int | None
_NotNumber = str | bool | list[Any] | dict[str, Any] | None
_typed: dict[tuple[tuple[str, ...], tuple[str, ...] | None, bool], Any] = {}
_UNNAMEABLE = re.compile(r'["\\\x00-\x1f]')  # what msgspec refuses in a renamed field's name


class UntypedNameError(msgspec.DecodeError):
    """A field name no typed decoder can hold (a quote, backslash or control character):
    the caller decodes into dicts instead, as for any line the typed decoder refuses."""


def typed_decoder(names: tuple[str, ...], others: tuple[str, ...] | None, new_numbers: bool = True) -> Any:
    """A decoder of metric lines that keeps only the numbers ``data.<name>`` (about 3x
    faster than decoding every field into dicts). With ``others`` (the build), those
    are the only other keys allowed, so a line with a key never seen raises; so does a
    number under one of them unless ``new_numbers`` is False (a stream that cannot
    index more fields): a key first seen without numbers becomes a field in the block
    where it gets one. A value of ``names`` that is not a number (or null) raises too.
    The caller falls back to dicts."""
    key = (names, others, new_numbers)
    decoder = _typed.get(key)
    if decoder is None:
        if any(_UNNAMEABLE.search(name) for name in (*names, *(others or ()))):
            raise UntypedNameError("a field name a typed decoder cannot hold")
        keys = {f"f{i}": name for i, name in enumerate(names)}
        ignored = {f"o{i}": name for i, name in enumerate(others or ())}
        other_type = _NotNumber if new_numbers else Any
        data = msgspec.defstruct(
            "Data",
            [*((k, _Number, None) for k in keys), *((k, other_type, None) for k in ignored)],
            rename={**keys, **ignored},
            forbid_unknown_fields=others is not None,
        )
        fields = [
            ("index", int | None, None),
            ("data", data, msgspec.field(default_factory=data)),
            ("nonFinite", Any, None),
        ]
        if len(_typed) > 256:
            _typed.clear()
        decoder = _typed[key] = msgspec.json.Decoder(msgspec.defstruct("Line", fields))
    return decoder


def to_float(values: list[Any]) -> tuple[F64, Mask]:
    """JSON values -> (float64 array, which are numbers). Not numbers: None, booleans,
    text, lists, objects; an int too big for a float becomes ±inf."""
    kinds = set(map(type, values))
    if kinds <= {float, int, type(None)}:
        try:
            out = np.array(values, dtype=np.float64)  # None -> NaN (JSON holds no NaN)
            return out, ~np.isnan(out)
        except OverflowError:
            pass
    out = np.full(len(values), math.nan)
    present = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        if type(value) is float or type(value) is int:
            try:
                out[i] = value
            except OverflowError:
                out[i] = math.inf if value > 0 else -math.inf
            present[i] = True
    return out, present


@dataclass
class Block:
    """Decoded lines: how many, their ``index`` values, per field (values, present),
    and (when the lines were decoded as dicts) every key their data held."""

    lines: int
    index: list[Any]
    fields: dict[str, tuple[F64, Mask]]
    keys: set[str] | None = None


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _restore(block: bytes, lines: list[Any], nonfinite: list[Any], fields: dict[str, tuple[F64, Mask]]) -> None:
    """Put the non-finite values (written as null + ``nonFinite``) back."""
    if b'"nonFinite"' not in block:
        return
    for i, found in enumerate(nonfinite):
        if not isinstance(found, dict):
            continue
        for pointer, name in found.items():
            if not isinstance(pointer, str) or pointer.count("/") != 1 or not pointer.startswith("/"):
                continue
            column = fields.get(_unescape(pointer[1:]))
            value = NONFINITE_NAMES.get(name) if isinstance(name, str) else None
            if column is not None and value is not None and not column[1][i]:
                column[0][i] = value
                column[1][i] = True


def decode_block(
    block: bytes, names: tuple[str, ...] | None, others: tuple[str, ...] | None = None, new_numbers: bool = True
) -> Block:
    """The lines of ``block`` (complete lines) with the numbers ``data.<name>``, or
    (``names`` None) every top-level field. ``others``, ``new_numbers``: the build's
    other known keys (see ``typed_decoder``). An unreadable line counts as a line
    without fields (a warning says so)."""
    enabled = gc.isenabled()
    gc.disable()  # tens of thousands of short-lived objects: collections would double the cost
    try:
        return _decode_block(block, names, others, new_numbers)
    finally:
        if enabled:
            gc.enable()


def _decode_block(block: bytes, names: tuple[str, ...] | None, others: tuple[str, ...] | None, new: bool) -> Block:
    if names is not None:
        try:
            lines = typed_decoder(names, others, new).decode_lines(block)
        except msgspec.DecodeError:  # ValidationError too: a text value, a new key, ...
            pass
        else:
            fields = {}
            for i, name in enumerate(names):
                column = list(map(attrgetter(f"data.f{i}"), lines))
                try:
                    values = np.array(column, dtype=np.float64)  # None -> NaN: JSON holds no NaN
                    fields[name] = (values, ~np.isnan(values))
                except OverflowError:  # an int beyond any float
                    fields[name] = to_float(column)
            if b'"nonFinite"' in block:
                _restore(block, lines, list(map(attrgetter("nonFinite"), lines)), fields)
            return Block(len(lines), list(map(attrgetter("index"), lines)), fields)
    try:
        docs: list[Any] = _decode_any_lines(block)
    except msgspec.DecodeError:
        docs = []
        for line in block.split(b"\n")[:-1]:
            try:
                docs.append(_decode_any(line))
            except msgspec.DecodeError:
                docs.append(lenient_decode(line))  # the ML-Dash SDK's NaN tokens, else None
                if docs[-1] is not None:
                    continue
                warnings.warn("ml-dash: series index: skipping an unreadable metric line", RuntimeWarning, stacklevel=2)
    if set(map(type, docs)) != {dict}:
        docs = [d if type(d) is dict else {} for d in docs]
    datas: list[Any] = [d.get("data") for d in docs]
    if set(map(type, datas)) != {dict}:
        datas = [d if type(d) is dict else {} for d in datas]
    keys = set(chain.from_iterable(datas))
    wanted = sorted(keys) if names is None or others is not None else list(names)
    fields = {k: to_float(list(map(dict.get, datas, repeat(k)))) for k in wanted}
    if b'"nonFinite"' in block:
        _restore(block, docs, list(map(dict.get, docs, repeat("nonFinite"))), fields)
    return Block(len(docs), list(map(dict.get, docs, repeat("index"))), fields, keys)


def decode_line(line: bytes) -> Any:
    """One line as plain JSON values (bare NaN / Infinity tokens read as floats);
    raises msgspec.DecodeError."""
    try:
        return _decode_any(line)
    except msgspec.DecodeError:
        value = lenient_decode(line)
        if value is None:
            raise
        return value


def regular(index: list[Any], first: int) -> bool:
    """Whether the lines' ``index`` values are ``first, first + 1, ...``."""
    try:
        values = np.array(index, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        return False
    return bool(np.array_equal(values, np.arange(first, first + len(index))))


def regular_at(index: list[Any], pos: I64) -> bool:
    """Whether the lines' ``index`` values are ``pos``."""
    try:
        values = np.array(index, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        return False
    return bool(np.array_equal(values, pos))


def pread(reader: LineReader, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of the data file; StaleError if it is shorter."""
    parts = []
    while start < end:
        chunk = os.pread(reader.fd, end - start, start)
        if not chunk:
            raise StaleError(f"{reader.path} is shorter than expected")
        parts.append(chunk)
        start += len(chunk)
    return b"".join(parts)


def crc(reader: LineReader, start: int, end: int) -> int:
    """CRC-32 of bytes ``[start, end)`` (0 for none)."""
    return zlib.crc32(pread(reader, start, end)) if end > start else 0


def line_at(reader: LineReader, start: int) -> bytes:
    """The line that starts at byte ``start`` (without its newline)."""
    size = 1024
    while True:
        chunk = pread(reader, start, min(reader.end, start + size))
        cut = chunk.find(b"\n")
        if cut >= 0:
            return chunk[:cut]
        if start + size >= reader.end:
            return chunk
        size *= 4


def lines_at(reader: LineReader, offsets: I64, wanted: list[int], numbered: bool) -> list[bytes]:
    """The lines (without newlines) at stream positions ``wanted`` (ascending), given
    the level-0 nodes' byte ``offsets`` (the end of the last one after them; positions
    past it are in the tail, up to the reader's end): one read per node. ``numbered``:
    every line starts with its position as ``{"index":<n>,``. StaleError when a line
    is missing."""
    base = pyramid.BASE
    nodes, data_end = len(offsets) - 1, reader.end
    lines: list[bytes] = []
    i = 0
    while i < len(wanted):
        node = wanted[i] // base
        j = i + 1
        while j < len(wanted) and wanted[j] // base == node:
            j += 1
        begin = int(offsets[node]) if node <= nodes else data_end
        end = int(offsets[node + 1]) if node < nodes else data_end
        data = pread(reader, begin, end)
        for target in wanted[i:j]:
            # Our lines start with their index: find the line by it, not by splitting.
            at = data.find(b'{"index":%d,' % target) if numbered else -1
            if at < 0 or (at and data[at - 1] != 10):
                parts = data.split(b"\n", target - node * base + 1)
                if len(parts) <= target - node * base:
                    raise StaleError("a line is missing")
                lines.append(parts[target - node * base])
            else:
                lines.append(data[at : data.index(b"\n", at)])
        i = j
    return lines
