"""MongoTokenStore: the server's tokens in MongoDB, for servers that share one database.

One document per token in the ``tokens`` collection: ``{_id: <token id>, owner, sha256,
createdAt, revokedAt}``. As with :class:`~ml_dash.server.auth.FileTokenStore`, only the
SHA-256 of the whole token is stored; the token itself is shown once, by ``create``.

The server calls ``verify`` on every request, on its event loop, so ``verify`` reads a
copy of the (small) collection held in memory, and a background thread reloads that
copy every ``refresh`` seconds. So a revoke reaches every server within about
``refresh`` seconds; a token id missing from the copy (a token just created by another
process) is looked up in MongoDB at once. While MongoDB cannot be reached, known tokens
keep working from the copy and an unknown token raises StorageError (the server answers
503, and a client retries) rather than 401 (which a client would take as final).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from typing import Any, NamedTuple

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from ..errors import NotFoundError, StorageError
from .auth import _DUMMY_HASH, _MAX_TOKEN, _TOKEN, TokenRecord, _digest, check_owner

COLLECTION = "tokens"
_PROJECTION = {"owner": 1, "sha256": 1, "revokedAt": 1}


class _Known(NamedTuple):
    owner: str
    sha256: str
    revoked: bool


def _known(doc: dict[str, Any]) -> _Known:
    return _Known(str(doc.get("owner", "")), str(doc.get("sha256", "")), doc.get("revokedAt") is not None)


class MongoTokenStore:
    """Tokens in the ``tokens`` collection of ``db``, as SHA-256 hashes only."""

    def __init__(self, db: Database[dict[str, Any]], refresh: float = 1.0) -> None:
        self.collection = db[COLLECTION]
        self.where = f"MongoDB database {db.name!r}, collection {COLLECTION!r}"
        self.refresh = refresh
        self._client: MongoClient[dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self._copy: dict[str, _Known] | None = None
        self._reachable = True
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def connect(cls, mongo_uri: str, database: str, timeout: float = 5.0) -> MongoTokenStore:
        """A token store with its own connection (``close`` closes it); nothing connects yet."""
        millis = max(1, int(timeout * 1000))
        try:
            client: MongoClient[dict[str, Any]] = MongoClient(
                mongo_uri, serverSelectionTimeoutMS=millis, connectTimeoutMS=millis, appname="ml-dash-tokens"
            )
        except PyMongoError as exc:
            raise StorageError(f"cannot use MongoDB URI: {exc}") from exc
        store = cls(client[database])
        store._client = client
        return store

    def _failed(self, exc: PyMongoError) -> StorageError:
        self._reachable = False
        return StorageError(f"tokens in {self.where}: {type(exc).__name__}: {exc}")

    # -- the in-memory copy ------------------------------------------------------------

    def _reload(self) -> dict[str, _Known]:
        try:
            copy = {str(doc["_id"]): _known(doc) for doc in self.collection.find({}, _PROJECTION)}
        except PyMongoError as exc:
            raise self._failed(exc) from exc
        with self._lock:
            self._copy = copy
            self._reachable = True
        return copy

    def _keep_reloading(self) -> None:
        while not self._stopped.wait(self.refresh):
            try:
                self._reload()
            except StorageError:
                pass  # verify answers from the last copy, or raises for unknown ids

    def _current(self) -> dict[str, _Known]:
        """The in-memory copy; loaded now the first time (StorageError if MongoDB cannot be read)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._keep_reloading, name="ml-dash-tokens", daemon=True)
                    self._thread.start()
        copy = self._copy
        if copy is not None:
            return copy
        if not self._reachable:
            raise StorageError(f"tokens in {self.where}: MongoDB cannot be reached now")
        return self._reload()

    def _look_up(self, token_id: str) -> _Known | None:
        """One token not in the copy, read from MongoDB (unless MongoDB was just found unreachable)."""
        if not self._reachable:
            raise StorageError(f"tokens in {self.where}: MongoDB cannot be reached now")
        try:
            doc = self.collection.find_one({"_id": token_id}, _PROJECTION)
        except PyMongoError as exc:
            raise self._failed(exc) from exc
        if doc is None:
            return None
        known = _known(doc)
        with self._lock:
            if self._copy is not None:
                self._copy = {**self._copy, token_id: known}
        return known

    # -- the TokenStore protocol -------------------------------------------------------

    def create(self, owner: str) -> str:
        """Insert a token document for ``owner``; returns ``mld_<id>_<secret>``."""
        check_owner(owner)
        for _ in range(100):
            token_id = secrets.token_hex(5)
            token = f"mld_{token_id}_{secrets.token_urlsafe(32)}"
            doc = {"_id": token_id, "owner": owner, "sha256": _digest(token), "createdAt": time.time(),
                   "revokedAt": None}
            try:
                self.collection.insert_one(doc)
            except DuplicateKeyError:
                continue  # that id is taken: draw another
            except PyMongoError as exc:
                raise self._failed(exc) from exc
            return token
        raise StorageError(f"tokens in {self.where}: no free token id found")

    def verify(self, token: str) -> str | None:
        """The owner of a known, unrevoked token; None otherwise (compared in constant time).

        Raises StorageError when the token's id is not known here and MongoDB cannot be read.
        """
        if len(token) > _MAX_TOKEN:
            return None
        match = _TOKEN.match(token)
        if match is None:
            return None
        token_id = match.group(1)
        entry = self._current().get(token_id)
        if entry is None:
            entry = self._look_up(token_id)
        stored = entry.sha256 if entry is not None else _DUMMY_HASH
        if not hmac.compare_digest(_digest(token), stored) or entry is None or entry.revoked:
            return None
        return entry.owner

    def list(self) -> list[TokenRecord]:
        """All tokens, oldest first, without their hashes."""
        try:
            docs = list(self.collection.find({}, {"owner": 1, "createdAt": 1, "revokedAt": 1}))
        except PyMongoError as exc:
            raise self._failed(exc) from exc
        records = [
            TokenRecord(id=str(d["_id"]), owner=str(d.get("owner", "")), created_at=float(d.get("createdAt") or 0.0),
                        revoked_at=d.get("revokedAt"))
            for d in docs
        ]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def revoke(self, token_id: str) -> None:
        """Stamp ``revokedAt`` on the token (kept for the record); NotFoundError for an unknown id."""
        try:
            stamp = {"$set": {"revokedAt": time.time()}}
            done = self.collection.update_one({"_id": token_id, "revokedAt": None}, stamp)
            if not done.matched_count and self.collection.find_one({"_id": token_id}, {"_id": 1}) is None:
                raise NotFoundError(f"no token with id {token_id!r} in {self.where}")
        except PyMongoError as exc:
            raise self._failed(exc) from exc
        with self._lock:
            if self._copy is not None and token_id in self._copy:
                self._copy = {**self._copy, token_id: self._copy[token_id]._replace(revoked=True)}

    def close(self) -> None:
        """Stop the reloading thread; close the connection ``connect`` opened."""
        self._stopped.set()
        if self._client is not None:
            self._client.close()
