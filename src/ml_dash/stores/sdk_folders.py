"""What the local store writes and reads so that the ML-Dash SDK (PyPI ``ml-dash``) and
this package can each read, and resume, the other's folders.

- Track topics. The SDK keeps topic ``robot/position`` in ``tracks/robot_position/``
  (every ``/`` replaced by ``_``) and names the topic in its ``metadata.json``; we keep it
  in ``tracks/robot/position/``. A topic with a ``/`` that we write also gets an *alias*,
  ``tracks/robot_position`` as a relative symbolic link to its folder, so the SDK's reader,
  appender and lister find it. A topic written by the SDK is read, and appended to, in
  its flat folder. The rule for topics that map to one flat name (``a/b`` and ``a_b``):
  a real folder always wins over an alias. The alias is made only when the name is free;
  a topic ``a_b`` written later removes the alias of ``a/b`` and takes the name (``a/b``
  keeps its data, only the SDK no longer sees it); a flat folder the SDK wrote for
  ``a/b`` is refused to ``a_b`` (InvalidNameError): the SDK itself would mix the two.
- Logs. The SDK's appender takes the next sequence number from ``logs/.log_sequence``;
  the store rewrites it at every sync and close after logging.

See docs/storage-format.md, "Folders of the public SDK".
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import msgspec

from ..errors import InvalidNameError
from ..fileio import atomic_write_bytes
from .line_reader import open_lines
from .lines import lenient_decode

LOG_SEQUENCE = ".log_sequence"
_METADATA = "metadata.json"
# No topic can name this folder (``.ml-dash`` is reserved): a path under it holds nothing.
_NOWHERE = os.path.join(".ml-dash", "alias-of-another-topic")


def flat_name(topic: str) -> str:
    """The SDK's folder name for ``topic``: every ``/`` replaced by ``_``."""
    return topic.replace("/", "_")


def stored_topic(folder: str) -> str | None:
    """The ``topic`` named in ``folder/metadata.json`` (None without one)."""
    try:
        with open(os.path.join(folder, _METADATA), "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        doc = lenient_decode(raw)
    topic = doc.get("topic") if isinstance(doc, dict) else None
    return topic if isinstance(topic, str) else None


def track_folder(tracks: str, topic: str, write: bool = False) -> str:
    """The folder of ``topic`` under the experiment's ``tracks`` folder: our nested one
    when it exists, else a flat one the SDK wrote for it, else (a new topic) the nested
    one. ``write``: the folder is about to be appended to, so an alias of another topic
    in the way is removed; a flat folder the SDK wrote for another topic raises
    InvalidNameError."""
    nested = os.path.join(tracks, *topic.split("/"))
    if "/" not in topic:
        if os.path.islink(nested):  # the alias of another topic
            if not write:
                return _nowhere(tracks)  # this topic has no data yet
            try:
                os.unlink(nested)  # a real topic takes the name over from an alias
            except FileNotFoundError:
                pass
            return nested
        holder = stored_topic(nested) if "_" in topic else None
        if holder is not None and holder != topic and flat_name(holder) == topic:
            if write:
                raise InvalidNameError(
                    f"track {topic!r}: its folder tracks/{topic} holds topic {holder!r} "
                    "(written by the ML-Dash SDK, which keeps both in one folder)"
                )
            return _nowhere(tracks)
        return nested
    if os.path.isdir(nested):
        return nested
    flat = os.path.join(tracks, flat_name(topic))
    if not os.path.islink(flat) and stored_topic(flat) == topic:
        return flat  # written by the SDK
    return nested


def _nowhere(tracks: str) -> str:
    return os.path.join(tracks, _NOWHERE)


def make_alias(tracks: str, topic: str, folder: str) -> None:
    """Link ``tracks/<flat name>`` to ``folder`` (the nested folder of ``topic``) when the
    name is free, so that the SDK finds the topic. Best effort: a file system without
    links, or a name taken meanwhile, leaves the topic readable here only."""
    if "/" not in topic:
        return
    flat = os.path.join(tracks, flat_name(topic))
    if os.path.lexists(flat):
        return
    try:
        os.symlink(os.path.relpath(folder, tracks), flat, target_is_directory=True)
    except OSError:
        pass


def listed_topics(tracks: str, names: Iterable[str]) -> list[str]:
    """The topics of the folders ``names`` (relative to ``tracks``, each holding a
    ``data.jsonl``): a flat folder the SDK wrote counts as the topic its metadata.json
    names; each topic once, sorted."""
    topics = set()
    for name in names:
        if "/" not in name and "_" in name:
            holder = stored_topic(os.path.join(tracks, name))
            if holder is not None and "/" in holder and flat_name(holder) == name:
                name = holder
        topics.add(name)
    return sorted(topics)


def write_log_sequence(logs_file: str) -> None:
    """Replace ``logs/.log_sequence`` with the next sequence number of ``logs_file``
    (the last valid line's + 1), as text, as the SDK writes it."""
    reader = open_lines(logs_file)
    if reader is None:
        return
    with reader:
        following = reader.next_counter("sequenceNumber")
    atomic_write_bytes(os.path.join(os.path.dirname(logs_file), LOG_SEQUENCE), str(following).encode())
