"""Validation of the names that become folders: prefixes, metric names, track topics.

A name is one or more ``/``-separated segments. Each segment becomes a folder, so it
must be safe on every file system we run on and must never escape its parent folder.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

from .errors import InvalidNameError

MAX_SEGMENT = 255  # characters, as the ML-Dash SDK allows; the byte limit below still holds
MAX_SEGMENT_BYTES = 255  # what ext4, xfs, btrfs and APFS allow for one file name
MAX_NAME = 512
# Names the stores give their own files and folders, beside the user's folders (an
# experiment, a stream or the dash root; what each is for); a segment with one of them
# would collide with the store's own.
RESERVED_USES: dict[str, str] = {
    "data.jsonl": "the data file of a stream",
    "metadata.json": "the description of a stream",
    "parameters.json": "the params of an experiment",
    "experiment.json": "the record of an experiment",
    "logs.jsonl": "the log file of an experiment",
    "resumes.jsonl": "the resume history of an experiment",
    ".lock": "the lock of an experiment",
    ".owner.lock": "the claim lock of an experiment",
    ".claims.json": "the claims on an experiment",
    ".claims": "the claim tickets of remote runs",
    ".spool": "the outbox of remote runs",
    ".ml-dash": "the indexes and summaries kept beside the data, and the server's tokens",
    ".series": "the series index of a metric stream",
    ".log_sequence": "the log sequence counter the ML-Dash SDK reads",
}
RESERVED = frozenset(RESERVED_USES)
# Files set beside a data file: ``data.jsonl.torn`` (a torn last line), ``data.jsonl.damaged``
# (complete lines that are not records); and the stores' temporary files (``.tmp-...``).
RESERVED_SUFFIXES = {".torn": "a torn line set aside", ".damaged": "damaged lines set aside"}
RESERVED_PREFIX = ".tmp"
_FORBIDDEN_CHARS = frozenset('\\:*?"<>|')
# JSON Schema (ECMA 262) patterns for the OpenAPI description: every name
# ``validate_name`` accepts matches them (they do not spell out reserved segment
# names, spaces at the ends of segments or byte lengths, which are refused besides).
SEGMENT_PATTERN = r'[^/\\:*?"<>|\u0000-\u001f\u007f]+'
NAME_PATTERN = f"^{SEGMENT_PATTERN}(/{SEGMENT_PATTERN})*$"
PREFIX_PATTERN = f"^{SEGMENT_PATTERN}(/{SEGMENT_PATTERN}){{2,}}$"
SINGLE_NAME_PATTERN = f"^{SEGMENT_PATTERN}$"


def reserved_use(segment: str) -> str | None:
    """What the stores use ``segment`` for (None: it is free for a user's name)."""
    use = RESERVED_USES.get(segment)
    if use is not None:
        return use
    if segment.startswith(RESERVED_PREFIX):
        return "a temporary file"
    return next((what for suffix, what in RESERVED_SUFFIXES.items() if segment.endswith(suffix)), None)


def _check_segment(segment: str, what: str, name: str) -> None:
    if segment == "":
        raise InvalidNameError(f"{what} {name!r}: empty segment (leading, trailing or double '/')")
    if segment in (".", ".."):
        raise InvalidNameError(f"{what} {name!r}: segment {segment!r} is not allowed")
    if segment != segment.strip():
        raise InvalidNameError(f"{what} {name!r}: segment {segment!r} has leading or trailing spaces")
    if len(segment) > MAX_SEGMENT:
        raise InvalidNameError(
            f"{what} {name[:40]!r}...: segment is {len(segment)} characters, over the limit of {MAX_SEGMENT}"
        )
    if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
        raise InvalidNameError(
            f"{what} {name[:40]!r}...: segment is {len(segment.encode('utf-8', 'surrogatepass'))} bytes in UTF-8, "
            f"over the file-name limit of {MAX_SEGMENT_BYTES}"
        )
    use = reserved_use(segment)
    if use is not None:
        raise InvalidNameError(
            f"{what} {name!r}: segment {segment!r} is a name the store uses itself ({use}); choose another"
        )
    for ch in segment:
        if ord(ch) < 32 or ord(ch) == 127 or ch in _FORBIDDEN_CHARS:
            raise InvalidNameError(f"{what} {name!r}: character {ch!r} is not allowed")


def validate_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is a usable stream/topic name, else raise InvalidNameError.

    ``/`` separates nested folders (``"robot/position"``); every segment is checked.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} must be a string, got {type(name).__name__}: {name!r}")
    if len(name) > MAX_NAME:
        raise InvalidNameError(f"{what} {name[:40]!r}... is {len(name)} characters, over the limit of {MAX_NAME}")
    if name.startswith("/"):
        raise InvalidNameError(f"{what} {name!r}: absolute names are not allowed")
    for segment in name.split("/"):
        _check_segment(segment, what, name)
    return name


@dataclass(frozen=True)
class Prefix:
    """A parsed experiment prefix ``owner/project/[folders/...]/name``."""

    owner: str
    project: str
    folders: tuple[str, ...]
    name: str

    @property
    def path(self) -> str:
        return "/".join((self.owner, self.project, *self.folders, self.name))

    def __str__(self) -> str:
        return self.path


def default_owner() -> str:
    """The owner used for two-part prefixes: ``ML_DASH_OWNER``, else the user name."""
    owner = os.environ.get("ML_DASH_OWNER")
    if not owner:
        try:
            owner = getpass.getuser()
        except (KeyError, OSError):
            owner = "local"
    return owner


def parse_prefix(prefix: object, project: str | None = None) -> Prefix:
    """Parse and validate an experiment prefix.

    ``owner/project/[folders...]/name`` is taken as is. Two parts are ``project/name``
    with the owner from the environment; one part needs ``project=``.
    """
    if not isinstance(prefix, str) or not prefix:
        raise InvalidNameError(f"prefix must be a non-empty string like 'alice/project/run-1', got {prefix!r}")
    validate_name(prefix, "prefix")
    parts = prefix.split("/")
    if project is not None:
        validate_name(project, "project")
        if "/" in project:
            raise InvalidNameError(f"project {project!r} must be a single folder name")
        if len(parts) >= 3 and parts[1] == project:
            pass  # already owner/project/...
        elif len(parts) >= 2 and parts[0] == project:
            parts = [default_owner(), *parts]
        else:
            parts = [default_owner(), project, *parts]
    if len(parts) == 1:
        raise InvalidNameError(f"prefix {prefix!r} needs at least 'project/name' (or pass project=...)")
    if len(parts) == 2:
        parts = [default_owner(), *parts]
    validate_name(parts[0], "owner")
    return Prefix(owner=parts[0], project=parts[1], folders=tuple(parts[2:-1]), name=parts[-1])
