"""Real ``ml-dash serve --mongo ... --s3 ...`` processes on loopback, and a contract factory over them.

:func:`mongo_server` is a ``support.processes.ServerProcess`` on the MongoDB and S3 test
services (see ``services.py``). :func:`remote_mongo` is the contract
suite's factory for ``RemoteStore(url) -> ml-dash serve -> MongoStore``:
the store and its ``reopen`` talk to two server processes on one database and bucket,
so the persistence tests read back through a second server.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pymongo import MongoClient

from ml_dash.stores.remote import RemoteStore
from support.processes import ServerProcess

from .services import Place, s3_env, services

if TYPE_CHECKING:
    from contract.test_store_contract import StoreKit


def backend_args(place: Place, mongo_uri: str | None = None, chunk_size: int | None = None) -> list[str]:
    """``--mongo ... --mongo-db ... --s3 ... --s3-endpoint ...`` for ``place``."""
    args = ["--mongo", mongo_uri or place.svc.mongo_uri, "--mongo-db", place.database,
            "--s3", f"s3://{place.bucket}/chunks", "--s3-endpoint", place.svc.s3_endpoint]
    return args + (["--chunk-size", str(chunk_size)] if chunk_size is not None else [])


def mongo_server(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """``ml-dash serve ARGS`` without ``--root`` (the arguments or ``env`` name MongoDB and S3), with S3 keys."""
    return ServerProcess(*args, env={**s3_env(), **(env or {})})


class SharedServers:
    """Two ``ml-dash serve`` processes on one database and bucket, started once per test process.

    Starting a server costs about a second and a half (imports), so the contract
    factory shares these two and wipes the database and bucket between tests instead
    (``clear``): the servers keep nothing between requests but MongoStore's
    knowledge that the indexes exist, and emptying collections keeps their indexes.
    """

    def __init__(self) -> None:
        self.place = Place(services())
        self.servers = [mongo_server(*backend_args(self.place, chunk_size=1000)) for _ in range(2)]
        for server in self.servers:
            server.start()
        atexit.register(self.close)

    def clear(self) -> None:
        """Empty every collection of the database and every object of the bucket."""
        client: MongoClient[dict[str, Any]] = MongoClient(self.place.svc.mongo_uri, serverSelectionTimeoutMS=5000)
        try:
            db = client[self.place.database]
            for name in db.list_collection_names():
                db[name].delete_many({})
        finally:
            client.close()
        s3 = self.place.svc.s3_client()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.place.bucket):
            for item in page.get("Contents", ()):
                s3.delete_object(Bucket=self.place.bucket, Key=item["Key"])
        s3.close()

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self.place.close()


_shared: SharedServers | None = None


def shared_servers() -> SharedServers:
    """The two shared servers of this test process (started on first use; skips without services)."""
    global _shared
    if _shared is None:
        _shared = SharedServers()
    return _shared


def remote_mongo(tmp_path: Path) -> Iterator[StoreKit]:
    """RemoteStore(url) -> a real ``ml-dash serve --mongo --s3`` -> MongoStore.

    The store talks to one server process and ``reopen`` to another on the same
    database and bucket, so the persistence tests read back through a second server.
    Chunks of 1,000 points, so the longer streams of the suite cross into S3. The
    database and bucket are emptied before and after each test. Skips when the
    services cannot start.
    """
    from contract.test_store_contract import StoreKit

    shared = shared_servers()
    shared.clear()
    stores: list[RemoteStore] = []

    def connect(server: ServerProcess) -> Any:
        store = RemoteStore(server.url, timeout=30.0)
        stores.append(store)
        return store

    try:
        yield StoreKit(connect(shared.servers[0]), lambda: connect(shared.servers[1]))
    finally:
        for store in stores:
            store.close()
        shared.clear()
