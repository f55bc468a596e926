"""Lines of a JSON-lines file: finding them by offset, telling damaged ones, decoding blocks.

A *damaged* line is a complete line (it ends in ``\\n``) that is not what the file
holds: not JSON, not a JSON object, or (in a file with counters) without a
non-negative integer counter — ``GARBAGE``, ``42``, ``{"foo":1}``, ``{"index":"5"}``.
ML-Dash never writes one; a person, another tool or a disk fault can. Readers skip
them with a warning; the appender sets those at the end of a file aside
(``jsonl.LockedAppender``). Telling a line damaged never decodes more of it than the
counter: the rest is skipped by the parser, so a huge line costs no memory.
"""

from __future__ import annotations

import errno
import functools
import gc
import json
import os
import re
import warnings
from collections.abc import Iterator
from typing import Any

import msgspec

from ..errors import StorageError
from .fdpool import relieve

TAIL_CHUNK = 1 << 16
_FIRST_READ = 4096  # most lines are short: read a page first, more only when needed
_PROMOTE_AFTER = 100_000
_decode = msgspec.json.decode
_decode_lines = msgspec.json.Decoder().decode_lines
_OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})


# The ML-Dash SDK writes non-finite floats as the bare tokens NaN, Infinity and -Infinity
# (Python's json module does), which is not JSON: msgspec refuses such a line. Only a line
# msgspec refused is looked at again, so lines as ML-Dash writes them cost nothing more.
_NONFINITE_TOKEN = re.compile(rb"NaN|Infinity").search


def lenient_decode(line: bytes) -> Any:
    """The value of a line msgspec refused, when it is JSON but for bare ``NaN`` /
    ``Infinity`` / ``-Infinity`` tokens (read as floats); None for any other line."""
    if not _NONFINITE_TOKEN(line):
        return None
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def decode_with_tokens(decoder: Any, line: bytes) -> Any:
    """``decoder.decode(line)`` (a msgspec Decoder, typed or not); a line that fails
    only for bare non-finite tokens is decoded leniently and converted to the decoder's
    type. Raises msgspec.DecodeError (or ValidationError) like the decoder."""
    try:
        return decoder.decode(line)
    except msgspec.DecodeError:
        value = lenient_decode(line)
        if value is None:
            raise
        target = decoder.type
        return value if target is Any else msgspec.convert(value, target, strict=False)


def open_file(path: str, flags: int, mode: int = 0o644) -> int:
    """``os.open``; when the process is out of descriptors, the open-file pools close some
    of theirs and it is tried once more (OSError if it fails again)."""
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno not in _OUT_OF_FILES or not relieve():
            raise
    return os.open(path, flags, mode)


def pread_all(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset`` (fewer only at the end of the file)."""
    chunks = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def last_newline_end(fd: int, size: int) -> int:
    """Offset just past the last ``\\n`` at or before ``size`` (0 if there is none)."""
    end = size
    while end > 0:
        start = max(0, end - TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        pos = chunk.rfind(b"\n")
        if pos >= 0:
            return start + pos + 1
        end = start
    return 0


def line_before(fd: int, end: int) -> bytes | None:
    """The complete line that ends at offset ``end`` (which follows a ``\\n``)."""
    for _start, line in lines_backward(fd, end):
        return line
    return None


def lines_backward(fd: int, end: int) -> Iterator[tuple[int, bytes]]:
    """``(start, line)`` of the complete lines before ``end`` (a line boundary), last first."""
    pos = end
    chunk = _FIRST_READ
    while pos > 0:
        start = max(0, pos - chunk)
        buf = pread_all(fd, pos - start, start)
        if len(buf) < pos - start:
            return  # the file was cut under us
        # The first line starting in ``buf`` follows its first newline (not the last byte,
        # which ends the region).
        cut = 0 if start == 0 else buf.find(b"\n", 0, len(buf) - 1) + 1
        chunk = min(chunk * 2, TAIL_CHUNK) if cut else chunk * 2  # a line longer than the chunk: more
        if start > 0 and cut == 0:
            continue
        lines = buf[cut:].split(b"\n")[:-1]
        offset = pos
        for line in reversed(lines):
            offset -= len(line) + 1
            yield offset, line
        pos = start + cut


def lines_forward(fd: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """``(start, line)`` of the complete lines from ``start`` (a line start) to ``end``, in order."""
    pos = start
    chunk = _FIRST_READ
    while pos < end:
        buf = pread_all(fd, min(chunk, end - pos), pos)
        cut = buf.rfind(b"\n") + 1
        chunk = min(chunk * 2, TAIL_CHUNK) if cut else chunk * 2  # a line longer than the chunk: more
        if cut == 0:
            if pos + len(buf) >= end or not buf:
                return  # no complete line left
            continue
        offset = pos
        for line in buf[:cut].split(b"\n")[:-1]:
            yield offset, line
            offset += len(line) + 1
        pos += cut


@functools.cache
def _head_decoder(key: str | None) -> msgspec.json.Decoder[Any]:
    """Decodes only ``key`` of a JSON object (the parser skips, and checks, everything else)."""
    return msgspec.json.Decoder(msgspec.defstruct("_LineHead", [(key, Any, None)] if key else []))


@functools.cache
def _leading_counter(key: str) -> re.Pattern[bytes]:
    return re.compile(rb'\{"' + re.escape(key.encode()) + rb'":(\d{1,18})[,}]')


def line_counter(line: bytes, key: str) -> int | None:
    """The counter ``key`` of one line, or None if the line is damaged (not a JSON object
    with a non-negative integer ``key``)."""
    try:
        value = getattr(decode_with_tokens(_head_decoder(key), line), key)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return value if type(value) is int and value >= 0 else None


def probe_counter(line: bytes, key: str) -> int | None:
    """Like :func:`line_counter`, but a line that starts the way ML-Dash writes it is read
    from its first bytes only (bisection probes: position, not validation)."""
    match = _leading_counter(key).match(line)
    return int(match.group(1)) if match else line_counter(line, key)


def counter_of(line: bytes, key: str, path: str) -> int:
    """The integer ``key`` of one JSON line of ``path``; StorageError if it is damaged."""
    value = line_counter(line, key)
    if value is None:
        raise StorageError(f"{path}: a line has no valid {key!r} (a damaged line)")
    return value


def is_object(line: bytes) -> bool:
    """True when ``line`` is a JSON object (what every line of a file without counters must be)."""
    try:
        decode_with_tokens(_head_decoder(None), line)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False
    return True


def line_time(line: bytes, key: str) -> float | None:
    """The number ``key`` of one line (a track entry's ``timestamp``), or None if the line
    is damaged (not a JSON object with a number there)."""
    try:
        value = getattr(decode_with_tokens(_head_decoder(key), line), key)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return float(value) if type(value) is int or type(value) is float else None


def is_valid(line: bytes, key: str | None, time_key: str | None = None) -> bool:
    """Not damaged: a JSON object, with a non-negative integer ``key`` (a counter) or a
    number ``time_key`` when one is given."""
    if key is not None:
        return line_counter(line, key) is not None
    if time_key is not None:
        return line_time(line, time_key) is not None
    return is_object(line)


def count_lines(path: str) -> int:
    """How many lines the file at ``path`` holds (0 if there is none): counts ``\\n`` in 1 MiB reads."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        count = 0
        while chunk := os.read(fd, 1 << 20):
            count += chunk.count(b"\n")
        return count
    except OSError:
        return 0
    finally:
        os.close(fd)


def warn_damaged(path: str, count: int, what: str = "skipped") -> None:
    warnings.warn(
        f"ml-dash: {path}: {what} {count} damaged line{'s' if count != 1 else ''} "
        "(not a JSON object with the fields ML-Dash writes)",
        RuntimeWarning,
        stacklevel=3,
    )


def decode_block(block: bytes, path: str = "") -> list[Any]:
    """Decode a block of JSON lines into a list of dicts, in one call where possible.

    Damaged lines (not JSON, or JSON but not an object) are left out with a RuntimeWarning
    naming the file; what a kind of file needs besides (a counter) its reader checks.
    """
    if not block:
        return []
    enabled = gc.isenabled()
    gc.disable()  # millions of fresh containers would trigger needless collections
    out: list[Any] = []
    try:
        skipped = 0
        try:
            out = _decode_lines(block)
        except (msgspec.DecodeError, UnicodeDecodeError):
            for line in block.split(b"\n")[:-1]:
                try:
                    out.append(_decode(line))
                except (msgspec.DecodeError, UnicodeDecodeError):
                    value = lenient_decode(line)  # the ML-Dash SDK's NaN tokens
                    if value is None:
                        skipped += 1
                    else:
                        out.append(value)
        if out and set(map(type, out)) != {dict}:
            kept = [line for line in out if type(line) is dict]
            skipped += len(out) - len(kept)
            out = kept
        if skipped:
            warn_damaged(path, skipped)
        return out
    finally:
        if enabled:
            if len(out) >= _PROMOTE_AFTER:
                # A big read result is long-lived: hand it to the oldest generation at
                # once (freeze + unfreeze splices lists, O(1)) instead of letting the next
                # young collection walk a million fresh dicts only to promote them.
                gc.freeze()
                gc.unfreeze()
            gc.enable()
