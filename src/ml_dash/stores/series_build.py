"""The series index in memory, and how it grows: the complete lines appended to
``data.jsonl`` since the last call are decoded once and become level-0 nodes, which
complete upper-level nodes. The lines after the last complete level-0 node (fewer than
``BASE``) are the *tail*: never indexed, read raw by every query.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

from . import series_lines
from . import series_records as pyramid
from .jsonl import LineReader
from .series_lines import Block, crc, pread, regular
from .series_records import (
    BASE_DTYPE,
    OFFSETS_DTYPE,
    UPPER_DTYPE,
    Grow,
    combine,
    empty_records,
    record_dtype,
    summarize,
)

MAX_FIELDS = 256  # numeric fields indexed per stream; queries on the others scan raw
CHECK_BYTES = 4096  # the windows of the data file whose CRCs say it is still the one indexed
CHUNK_BYTES = 1 << 22  # bytes read and decoded at a time by a build


@dataclass
class State:
    """One stream's index in memory (what the files hold, plus the raw tail's size)."""

    generation: str
    dev: int
    ino: int
    offsets: Grow  # byte offset of each level-0 node, then the end of the last one
    fields: dict[str, list[Grow]] = field(default_factory=dict)  # name -> levels
    regular: bool = True  # every line's index is its position
    overflow: bool = False  # numeric fields beyond MAX_FIELDS were left out
    head: int = 0  # CRC of the data file's first bytes (up to CHECK_BYTES, within the indexed part)
    tail: int = 0  # CRC of the CHECK_BYTES before the end of the indexed part
    end: int = 0  # the data file's end of complete lines when last extended
    tail_lines: int = 0  # complete lines after the last node
    committed: dict[str, tuple[int, int]] = field(default_factory=dict)  # file -> (records, CRC) on disk
    keys: set[str] = field(default_factory=set)  # every data key seen (in memory only)

    @classmethod
    def empty(cls, dev: int, ino: int) -> State:
        """An index of no line, under a new generation."""
        return cls(uuid.uuid4().hex[:12], dev, ino, Grow(OFFSETS_DTYPE, np.zeros(1, dtype=np.int64)))

    @property
    def nodes(self) -> int:
        return len(self.offsets) - 1

    @property
    def covered(self) -> int:
        """The byte offset up to which the nodes cover the data file."""
        return int(self.offsets.buf[self.nodes])

    @property
    def lines(self) -> int:
        """Complete lines of the data file when last extended (nodes and tail)."""
        return self.nodes * pyramid.BASE + self.tail_lines

    def level_counts(self) -> list[int]:
        return pyramid.level_counts(self.nodes)


def edge_crcs(reader: LineReader, covered: int) -> tuple[int, int]:
    """CRC-32s of the data file's first CHECK_BYTES and of the CHECK_BYTES before
    ``covered`` (within ``[0, covered)``)."""
    return crc(reader, 0, min(covered, CHECK_BYTES)), crc(reader, max(0, covered - CHECK_BYTES), covered)


def _add_nodes(state: State, block: Block, count: int) -> None:
    """Append ``count`` level-0 nodes (``block`` holds their lines) to every field."""
    first = state.nodes * pyramid.BASE
    if state.regular and not regular(block.index, first):
        state.regular = False
    for name in sorted(block.fields):
        if name in state.fields:
            continue
        if not block.fields[name][1].any():
            continue  # a field with no number yet (text, say): not indexed
        if len(state.fields) >= MAX_FIELDS:
            state.overflow = True
            continue
        counts = state.level_counts()
        state.fields[name] = [Grow(record_dtype(lv), empty_records(lv, n)) for lv, n in enumerate(counts)] or [
            Grow(BASE_DTYPE)
        ]
    for name, levels in state.fields.items():
        column = block.fields.get(name)
        levels[0].extend(summarize(*column) if column is not None else empty_records(0, count))


def _grow_levels(state: State) -> None:
    """Add the upper-level nodes that the new level-0 nodes complete."""
    counts = state.level_counts()
    for levels in state.fields.values():
        for level in range(1, len(counts)):
            if level == len(levels):
                levels.append(Grow(UPPER_DTYPE))
            have = len(levels[level])
            children = levels[level - 1].view[have * pyramid.FANOUT : counts[level] * pyramid.FANOUT]
            if len(children):
                levels[level].extend(combine(children, pyramid.node_size(level - 1)))


def extend(state: State, reader: LineReader) -> bool:
    """Index the complete lines of ``reader`` after the indexed part; True if nodes were added."""
    base = pyramid.BASE
    pos, end = state.covered, reader.end
    if end == state.end:
        return False
    added = False
    size = CHUNK_BYTES
    tail = 0
    while pos < end:
        buf = pread(reader, pos, min(end, pos + size))
        ends = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10)
        nodes = len(ends) // base
        if nodes == 0:
            if pos + len(buf) >= end:
                tail = len(ends)
                break
            size *= 2  # long lines: fewer than BASE of them in a chunk
            continue
        cut = int(ends[nodes * base - 1]) + 1
        starts = pos + np.r_[0, ends[: nodes * base - 1] + 1][::base]
        numbers = tuple(sorted(state.fields))
        others = tuple(sorted(state.keys.difference(numbers)))
        if state.keys:
            block = series_lines.decode_block(buf[:cut], numbers, others, not state.overflow)
        else:
            block = series_lines.decode_block(buf[:cut], None)
        if block.keys is not None:
            state.keys |= block.keys
        _add_nodes(state, block, nodes)
        state.offsets.extend(np.r_[starts[1:], pos + cut].astype(np.int64))
        _grow_levels(state)
        pos += cut
        added = True
    if added:
        state.head, state.tail = edge_crcs(reader, state.covered)
    state.end, state.tail_lines = end, tail
    return added
