"""Real ``ml-dash serve --mongo ... --s3 ...`` processes on loopback, and a contract factory over them.

:class:`MongoServer` starts ``python -m ml_dash serve`` on the MongoDB and S3 test
services (see ``services.py``) in a child process. :func:`remote_mongo` is the contract
suite's factory for ``RemoteStore(url, wait_for_ack=True) -> ml-dash serve -> MongoStore``:
the store and its ``reopen`` talk to two server processes on one database and bucket,
so the persistence tests read back through a second server.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx
from pymongo import MongoClient

from ml_dash.stores.remote import RemoteStore

from .services import REAL_S3_ENDPOINT, Place, free_port, services

if TYPE_CHECKING:
    from contract.test_store_contract import StoreKit

SRC = Path(__file__).resolve().parent.parent.parent / "src"
HANG_GUARD = 60.0


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for a child: no inherited ML_DASH_*; test keys for moto's S3."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env.update(ML_DASH_ECHO="0", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    if not (REAL_S3_ENDPOINT and os.environ.get("AWS_ACCESS_KEY_ID")):
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    env.update(extra or {})
    return env


def backend_args(place: Place, mongo_uri: str | None = None, chunk_size: int | None = None) -> list[str]:
    """``--mongo ... --mongo-db ... --s3 ... --s3-endpoint ...`` for ``place``."""
    args = ["--mongo", mongo_uri or place.svc.mongo_uri, "--mongo-db", place.database,
            "--s3", f"s3://{place.bucket}/chunks", "--s3-endpoint", place.svc.s3_endpoint]
    return args + (["--chunk-size", str(chunk_size)] if chunk_size is not None else [])


def ml_dash(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ml_dash ARGS`` to completion (hang guard: 60 s)."""
    done = subprocess.run([sys.executable, "-m", "ml_dash", *args], capture_output=True, text=True,
                          env=child_env(env), timeout=HANG_GUARD)
    if check and done.returncode != 0:
        raise AssertionError(f"ml-dash {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


class MongoServer:
    """``python -m ml_dash serve ARGS`` on a free loopback port; output kept in temporary files."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.args = list(args)
        self.env = env or {}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115

    def start(self, hang_guard: float = HANG_GUARD) -> MongoServer:
        """Start the child and wait until ``/health`` answers (AssertionError if it dies or never does)."""
        self.start_child()
        self.wait_ready(hang_guard)
        return self

    def start_child(self) -> None:
        """Start the child process (without waiting for it)."""
        argv = [sys.executable, "-m", "ml_dash", "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                     env=child_env(self.env))

    def wait_ready(self, hang_guard: float = HANG_GUARD) -> None:
        """Poll ``/health`` until it answers; AssertionError if the child exits or never answers."""
        assert self.proc is not None, "start_child first"
        deadline = time.monotonic() + hang_guard
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"ml-dash serve exited {self.proc.returncode}:\n{self.stdout}\n{self.stderr}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"ml-dash serve did not answer within {hang_guard} s:\n{self.stderr}")
            time.sleep(0.05)

    def _text(self, file: IO[bytes]) -> str:
        if file.closed:
            return ""
        file.seek(0)
        return file.read().decode(errors="replace")

    @property
    def stdout(self) -> str:
        return self._text(self._out)

    @property
    def stderr(self) -> str:
        return self._text(self._err)

    def stop(self) -> int | None:
        """SIGTERM the child (SIGKILL after a hang guard); its exit code."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        return self.proc.returncode if self.proc is not None else None

    def close(self) -> None:
        self.stop()
        self._out.close()
        self._err.close()


class SharedServers:
    """Two ``ml-dash serve`` processes on one database and bucket, started once per test process.

    Starting a server costs about a second and a half (imports), so the contract
    factory shares these two and wipes the database and bucket between tests instead
    (``clear``): the servers keep nothing between requests but MongoStore's
    knowledge that the indexes exist, and emptying collections keeps their indexes.
    """

    def __init__(self) -> None:
        self.place = Place(services())
        self.servers = [MongoServer(*backend_args(self.place, chunk_size=1000)) for _ in range(2)]
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
            server.close()
        self.place.close()


_shared: SharedServers | None = None


def shared_servers() -> SharedServers:
    """The two shared servers of this test process (started on first use; skips without services)."""
    global _shared
    if _shared is None:
        _shared = SharedServers()
    return _shared


def remote_mongo(tmp_path: Path) -> Iterator[StoreKit]:
    """RemoteStore(url, wait_for_ack=True) -> a real ``ml-dash serve --mongo --s3`` -> MongoStore.

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

    def connect(server: MongoServer) -> Any:
        store = RemoteStore(server.url, spool_root=tmp_path / "spool", timeout=30.0, wait_for_ack=True)
        stores.append(store)
        return store

    try:
        yield StoreKit(connect(shared.servers[0]), lambda: connect(shared.servers[1]))
    finally:
        for store in stores:
            store.close(timeout=5.0)
        shared.clear()
