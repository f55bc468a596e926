"""The send spool of remote mode: every request is on disk before it is sent.

A spool is a folder of request files, one per batch, named so that their order is the
order they were made in. A file is deleted only after the server acknowledged it; a
request the server refused for good is moved to ``rejected/`` beside a note of why.
What a run leaves behind is sent later by ``ml-dash sync``.

File layout: one JSON header line ``{"method", "path", "params", "url"}`` followed by
the exact request body bytes.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec

from .errors import StorageError
from .fileio import atomic_write_bytes


@dataclass(frozen=True)
class SpooledRequest:
    """One request as stored in the spool."""

    name: str
    method: str
    path: str
    params: dict[str, Any]
    body: bytes
    url: str | None = None


class Spool:
    """An ordered folder of pending requests (one per batch)."""

    def __init__(self, folder: str, url: str | None = None) -> None:
        self.folder = folder
        self.url = url
        self._names: deque[str] = deque()
        self._lock = threading.Lock()
        self._seq = 0
        self._made = False

    def _ensure(self) -> None:
        if not self._made:
            try:
                os.makedirs(self.folder, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the spool folder {self.folder}: {exc}") from exc
            self._made = True

    def put(self, method: str, path: str, params: dict[str, Any], body: bytes) -> str:
        """Write one request to disk (temp file + rename); returns its name."""
        self._ensure()
        with self._lock:
            self._seq += 1
            name = f"{time.time_ns():020d}-{self._seq:08d}.req"
        header = msgspec.json.encode({"method": method, "path": path, "params": params, "url": self.url})
        # Not fsynced: a killed process leaves it in the page cache; a power cut may not.
        atomic_write_bytes(os.path.join(self.folder, name), header + b"\n" + body, durable=False)
        with self._lock:
            self._names.append(name)
        return name

    def adopt_existing(self) -> int:
        """Queue the request files already in the folder (left by a past run)."""
        try:
            names = sorted(n for n in os.listdir(self.folder) if n.endswith(".req"))
        except FileNotFoundError:
            return 0
        with self._lock:
            known = set(self._names)
            fresh = [n for n in names if n not in known]
            self._names.extendleft(reversed(fresh))
        return len(fresh)

    def __len__(self) -> int:
        return len(self._names)

    def peek(self) -> SpooledRequest | None:
        """The oldest pending request, or None."""
        with self._lock:
            if not self._names:
                return None
            name = self._names[0]
        with open(os.path.join(self.folder, name), "rb") as fh:
            raw = fh.read()
        head, _, body = raw.partition(b"\n")
        header = msgspec.json.decode(head)
        return SpooledRequest(name, header["method"], header["path"], header.get("params") or {}, body,
                              header.get("url"))

    def done(self, name: str) -> None:
        """The server acknowledged ``name``: forget it."""
        with self._lock:
            if self._names and self._names[0] == name:
                self._names.popleft()
            else:
                try:
                    self._names.remove(name)
                except ValueError:
                    pass
        try:
            os.unlink(os.path.join(self.folder, name))
        except FileNotFoundError:
            pass

    def reject(self, name: str, reason: str) -> str:
        """Set ``name`` aside in ``rejected/`` with ``reason``; returns the new path."""
        target_dir = os.path.join(self.folder, "rejected")
        os.makedirs(target_dir, exist_ok=True)
        target = os.path.join(target_dir, name)
        os.replace(os.path.join(self.folder, name), target)
        with open(target + ".reason.txt", "w", encoding="utf-8") as fh:
            fh.write(reason + "\n")
        with self._lock:
            try:
                self._names.remove(name)
            except ValueError:
                pass
        return target

    def remove_if_empty(self) -> None:
        """Delete the folder when nothing is left in it."""
        try:
            os.rmdir(self.folder)
        except OSError:
            pass
