"""Claims on the experiments of a LocalStore folder: who runs each one, and its history.

Three files in the experiment folder (see docs/storage-format.md):

- ``.claims.json``: the claim document: ``{"holders": [...], "heartbeatAt": ISO}``.
  Rewritten in place on every claim, heartbeat and release, always under the folder's
  ``.lock`` (readers take it too), so nobody sees half of it. It is liveness state,
  not data: it is not fsynced, and a damaged one reads as "no holder".
- ``.owner.lock``: every *process* holder (the SDK in local mode, a LocalStore with
  ``process_claims=True``) keeps a shared ``flock`` on it for as long as it runs. The
  lock dies with its process (``kill -9`` included), so whether such a holder is
  alive is known exactly: an exclusive non-blocking ``flock`` succeeds only when no
  process holds it. Taking, testing and converting this lock happen only under
  ``.lock``, so a test never races a claim. (Not to be confused with ``.lock``,
  which is held only for short read-modify-writes.)
- ``resumes.jsonl``: one line per resume, appended (not fsynced, like the data files).

Holders that are not process holders (claims that came through the server, whose
clients run elsewhere) live by their lease alone. The rules are ``claims.decide``.
Every function here expects its caller to hold the folder's ``.lock``.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import warnings
from typing import Any

import msgspec

from ..errors import StorageError
from ..records import Claim, ExperimentInfo, Holder, Resume
from . import claims, codec

CLAIMS_FILE = ".claims.json"
OWNER_LOCK = ".owner.lock"
RESUMES_FILE = "resumes.jsonl"


def _holder_to_json(h: claims.HolderState) -> dict[str, Any]:
    return {
        "id": h.id, "host": h.host, "pid": h.pid, "join": h.join, "process": h.process,
        "claimedAt": codec.iso_utc(h.claimed_at), "renewedAt": codec.iso_utc(h.renewed_at),
        "leaseSeconds": h.lease_seconds,
    }


def _holder_from_json(doc: Any) -> claims.HolderState | None:
    try:
        return claims.HolderState(
            id=str(doc["id"]), host=str(doc.get("host", "")), pid=int(doc.get("pid", 0)),
            join=bool(doc.get("join", False)), claimed_at=codec.parse_iso(doc.get("claimedAt")) or 0.0,
            renewed_at=codec.parse_iso(doc.get("renewedAt")) or 0.0,
            lease_seconds=float(doc.get("leaseSeconds", 0.0)), process=bool(doc.get("process", False)),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class ClaimDoc:
    """A folder's ``.claims.json`` as read (``exists`` False when there is none)."""

    def __init__(self, exists: bool, holders: list[claims.HolderState], heartbeat_at: float | None) -> None:
        self.exists = exists
        self.holders = holders
        self.heartbeat_at = heartbeat_at


def read_claims(folder: str) -> ClaimDoc:
    path = os.path.join(folder, CLAIMS_FILE)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return ClaimDoc(False, [], None)
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    try:
        doc = msgspec.json.decode(raw)
        entries = doc.get("holders") or []
        heartbeat = codec.parse_iso(doc.get("heartbeatAt"))
    except (msgspec.DecodeError, AttributeError):
        warnings.warn(f"ml-dash: {path} is damaged; taking it as holding no claim", RuntimeWarning, stacklevel=3)
        return ClaimDoc(True, [], None)
    holders = [h for h in map(_holder_from_json, entries if isinstance(entries, list) else []) if h is not None]
    return ClaimDoc(True, holders, heartbeat)


def _write_claims(folder: str, holders: list[claims.HolderState], heartbeat_at: float | None) -> None:
    doc = {"holders": [_holder_to_json(h) for h in holders],
           "heartbeatAt": codec.iso_utc(heartbeat_at) if heartbeat_at is not None else None}
    data = msgspec.json.encode(doc) + b"\n"
    path = os.path.join(folder, CLAIMS_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc}") from exc


def read_resumes(folder: str) -> tuple[Resume, ...]:
    """The resume history of ``resumes.jsonl`` (complete lines only; damaged lines skipped)."""
    path = os.path.join(folder, RESUMES_FILE)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return ()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    out = []
    for line in raw[: raw.rfind(b"\n") + 1].splitlines():
        try:
            doc = msgspec.json.decode(line)
            out.append(Resume(codec.parse_iso(doc["at"]) or 0.0, str(doc["host"]), int(doc["pid"]),
                              bool(doc.get("interrupted")), str(doc.get("previousStatus") or "RUNNING")))
        except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError):
            continue
    return tuple(out)


def _append_resume(folder: str, resume: Resume) -> None:
    line = msgspec.json.encode({
        "at": codec.iso_utc(resume.at), "host": resume.host, "pid": resume.pid,
        "interrupted": resume.interrupted, "previousStatus": resume.previous_status,
    }) + b"\n"
    path = os.path.join(folder, RESUMES_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc}") from exc


def _open_owner_lock(folder: str, create: bool) -> int | None:
    path = os.path.join(folder, OWNER_LOCK)
    flags = (os.O_RDWR | os.O_CREAT) if create else os.O_RDONLY
    try:
        return os.open(path, flags | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        if create:
            raise StorageError(f"cannot open {path}: the folder is gone") from None
        return None
    except OSError as exc:
        if create:
            raise StorageError(f"cannot open {path}: {exc}") from exc
        return None


def _probe(fd: int) -> bool:
    """Whether a process holds the owner lock; leaves ``fd`` holding it exclusively when none does."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError as exc:  # ENOLCK on some network file systems
        raise StorageError(f"cannot lock {OWNER_LOCK}: {exc}") from exc
    return False


def process_alive(folder: str, doc: ClaimDoc) -> bool | None:
    """Whether a process holder of ``doc`` is alive (None: none is listed, or the lock cannot be tested)."""
    if not any(h.process for h in doc.holders):
        return None
    fd = _open_owner_lock(folder, create=False)
    if fd is None:
        return None
    try:
        return _probe(fd)
    except StorageError:
        return None
    finally:
        os.close(fd)  # drops the probe's lock, if it got it


class FolderClaims:
    """The claims a LocalStore made, and the owner-lock descriptors its process holders keep."""

    def __init__(self, process_claims: bool) -> None:
        self.process_claims = process_claims
        self._held: dict[tuple[str, str], int] = {}  # (folder, holder id) -> fd holding .owner.lock shared
        self._lock = threading.Lock()

    def claim(
        self, folder: str, prefix: str, status: str | None, existed: bool, holder: Holder,
        lease_seconds: float, join: bool, new: bool, replaces: tuple[str, ...] = (),
    ) -> Claim:
        """Decide and record a claim (the caller holds ``.lock``; ``status`` is the stored one, if readable)."""
        doc = read_claims(folder)
        fd = _open_owner_lock(folder, create=True) if self.process_claims or any(h.process for h in doc.holders) \
            else None
        try:
            alive = _probe(fd) if fd is not None else None
            decision = claims.decide(
                prefix, doc.holders, holder, lease_seconds, join=join, new=new, existed=existed,
                status=status, known=doc.exists,
                process=self.process_claims, process_alive=alive, replaces=replaces,
            )
            if decision.resume is not None:
                _append_resume(folder, decision.resume)
            _write_claims(folder, decision.holders, time.time())
            key = (folder, holder.id)
            if self.process_claims and fd is not None:
                with self._lock:
                    if key not in self._held:
                        # The probe's exclusive lock becomes shared, or a shared one is taken beside
                        # the others': nobody else locks this file without holding .lock.
                        try:
                            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                        except OSError as exc:
                            raise StorageError(f"cannot lock {os.path.join(folder, OWNER_LOCK)}: {exc}") from exc
                        self._held[key], fd = fd, None
        finally:
            if fd is not None:
                os.close(fd)
        return decision.claim

    def release(self, folder: str, holder_id: str) -> None:
        """Drop ``holder_id`` from the claim document and let go of its owner lock (the caller holds ``.lock``)."""
        with self._lock:
            fd = self._held.pop((folder, holder_id), None)
        try:
            doc = read_claims(folder)
            if any(h.id == holder_id for h in doc.holders):
                _write_claims(folder, [h for h in doc.holders if h.id != holder_id], doc.heartbeat_at)
        finally:
            if fd is not None:
                os.close(fd)

    def close(self) -> None:
        """Let go of every owner lock (the process no longer runs those experiments)."""
        with self._lock:
            fds, self._held = list(self._held.values()), {}
        for fd in fds:
            os.close(fd)


def reading(folder: str, info: ExperimentInfo) -> ExperimentInfo:
    """``info`` with its resume history, last heartbeat and liveness (``claims.reading``);
    the caller holds ``.lock`` when it can. Files that cannot be read leave ``info`` as
    it is, with a warning: who runs an experiment must not make reading it fail."""
    try:
        doc = read_claims(folder)
        resumes = read_resumes(folder)
    except StorageError as exc:
        warnings.warn(f"ml-dash: {exc}; showing {info.prefix!r} without its claims", RuntimeWarning, stacklevel=3)
        return info
    alive = process_alive(folder, doc) if info.status == "RUNNING" else None
    return claims.reading(info, doc.holders if doc.exists else None, doc.heartbeat_at, resumes, alive)
