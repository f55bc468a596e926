"""Bearer tokens: who may read and write which owner's experiments.

A token is ``mld_<id>_<secret>``: ``id`` (10 hex characters) names the token in lists
and in ``revoke``; ``secret`` (``secrets.token_urlsafe(32)``, 256 random bits) is
shown once, at creation. Only the SHA-256 of the whole token is stored, so a copy of
the token file cannot be used to call the server. A fast hash is enough here: the
secret is random, not a password, so there is nothing to guess from its hash.

:class:`FileTokenStore` keeps the records in ``<root>/.ml-dash/tokens.json`` (mode
0600, replaced atomically). The server re-reads the file when it changes, so a token
created or revoked with ``ml-dash token ...`` takes effect without a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from ..errors import InvalidNameError, NotFoundError, StorageError
from ..fileio import atomic_write_bytes
from ..names import validate_name

TOKEN_DIR = ".ml-dash"
TOKEN_FILE = "tokens.json"
_TOKEN = re.compile(r"^mld_([0-9a-f]{8,12})_([A-Za-z0-9_-]{16,128})$")
_MAX_TOKEN = 200
# Compared against when the id is unknown, so unknown and wrong tokens cost the same.
_DUMMY_HASH = hashlib.sha256(b"ml-dash: no such token").hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    """One token as listed: never its secret."""

    id: str
    owner: str
    created_at: float
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class TokenStore(Protocol):
    """Where the server looks tokens up."""

    def create(self, owner: str) -> str:
        """Store a new token for ``owner`` and return it in full (the only time it is shown)."""
        ...

    def verify(self, token: str) -> str | None:
        """The owner of ``token``, or None when it is malformed, unknown or revoked."""
        ...

    def list(self) -> list[TokenRecord]:
        """Every token ever created (revoked ones too), oldest first, without secrets."""
        ...

    def revoke(self, token_id: str) -> None:
        """Mark the token with this id revoked; raises NotFoundError for an unknown id."""
        ...


def check_owner(owner: object) -> str:
    """``owner`` if it is a usable owner name (one folder, not hidden), else InvalidNameError."""
    name = validate_name(owner, "owner")
    if "/" in name:
        raise InvalidNameError(f"owner {name!r} must be a single name without '/'")
    if name.startswith("."):
        raise InvalidNameError(f"owner {name!r}: names starting with '.' are reserved for the server's own files")
    return name


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class _Entry(msgspec.Struct, rename="camel"):
    id: str
    owner: str
    sha256: str
    created_at: float
    revoked_at: float | None = None


class _TokenFile(msgspec.Struct):
    version: int = 1
    tokens: list[_Entry] = []


class FileTokenStore:
    """Tokens in ``<root>/.ml-dash/tokens.json``, as SHA-256 hashes only."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.folder = os.path.join(os.path.abspath(os.fspath(root)), TOKEN_DIR)
        self.path = os.path.join(self.folder, TOKEN_FILE)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._by_id: dict[str, _Entry] = {}

    # -- the file ----------------------------------------------------------------------

    def _read(self) -> _TokenFile:
        try:
            with open(self.path, "rb") as fh:
                return msgspec.json.decode(fh.read(), type=_TokenFile)
        except FileNotFoundError:
            return _TokenFile()
        except (OSError, msgspec.DecodeError) as exc:
            raise StorageError(f"cannot read tokens from {self.path}: {exc}") from exc

    def _write(self, doc: _TokenFile) -> None:
        data = msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"
        atomic_write_bytes(self.path, data, mode=0o600)

    @contextmanager
    def _changing(self) -> Iterator[_TokenFile]:
        """Read-modify-write under an exclusive lock, so concurrent CLI calls lose nothing."""
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.folder, "tokens.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot lock {self.folder}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            doc = self._read()
            yield doc
            self._write(doc)
        finally:
            os.close(fd)

    def _current(self) -> dict[str, _Entry]:
        """Tokens by id, re-read only when the file changed (a rename changes its inode)."""
        try:
            st = os.stat(self.path)
            key: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            key = None
        except OSError as exc:
            raise StorageError(f"cannot read tokens from {self.path}: {exc}") from exc
        with self._lock:
            if key != self._seen or key is None:
                self._by_id = {entry.id: entry for entry in self._read().tokens} if key else {}
                self._seen = key
            return self._by_id

    # -- the protocol ------------------------------------------------------------------

    def create(self, owner: str) -> str:
        """Append a token for ``owner`` to the file; returns ``mld_<id>_<secret>``."""
        check_owner(owner)
        with self._changing() as doc:
            taken = {entry.id for entry in doc.tokens}
            token_id = secrets.token_hex(5)
            while token_id in taken:
                token_id = secrets.token_hex(5)
            token = f"mld_{token_id}_{secrets.token_urlsafe(32)}"
            doc.tokens.append(_Entry(id=token_id, owner=owner, sha256=_digest(token), created_at=time.time()))
        return token

    def verify(self, token: str) -> str | None:
        """The owner of a known, unrevoked token; None otherwise (compared in constant time)."""
        if len(token) > _MAX_TOKEN:
            return None
        match = _TOKEN.match(token)
        if match is None:
            return None
        entry = self._current().get(match.group(1))
        stored = entry.sha256 if entry is not None else _DUMMY_HASH
        if not hmac.compare_digest(_digest(token), stored) or entry is None or entry.revoked_at is not None:
            return None
        return entry.owner

    def list(self) -> list[TokenRecord]:
        """All tokens in the file, oldest first, without their hashes."""
        entries = sorted(self._read().tokens, key=lambda e: e.created_at)
        return [TokenRecord(id=e.id, owner=e.owner, created_at=e.created_at, revoked_at=e.revoked_at) for e in entries]

    def revoke(self, token_id: str) -> None:
        """Stamp ``revokedAt`` on the token (kept in the file for the record)."""
        with self._changing() as doc:
            for entry in doc.tokens:
                if entry.id == token_id:
                    if entry.revoked_at is None:
                        entry.revoked_at = time.time()
                    return
        raise NotFoundError(f"no token with id {token_id!r} in {self.path}")


def describe(record: TokenRecord) -> dict[str, Any]:
    """A token record as plain JSON data (for ``ml-dash token list --json``)."""
    return {"id": record.id, "owner": record.owner, "createdAt": record.created_at, "revokedAt": record.revoked_at}
