"""A MongoDB-protocol server and an S3-protocol server on loopback, for MongoStore tests.

By default this starts ``nx-27017 --db memory`` and ``moto_server`` (both installed by
the ``dev`` extra) as child processes on free ports, once per test process, and stops
them when the process exits. With ``ML_DASH_TEST_MONGO_URI`` and/or
``ML_DASH_TEST_S3_ENDPOINT`` set (plus the usual ``AWS_*`` variables for a real S3),
the tests use those services instead and start nothing.

Every test gets a fresh database name and a fresh bucket (:func:`fresh_names`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from ml_dash.stores.mongo import MongoStore
from ml_dash.stores.s3_chunks import make_s3_client
from support.processes import free_port, stop_process

# Read at import, before the test suite's autouse fixture clears ML_DASH_* variables.
REAL_MONGO_URI = os.environ.get("ML_DASH_TEST_MONGO_URI")
REAL_S3_ENDPOINT = os.environ.get("ML_DASH_TEST_S3_ENDPOINT")
START_WAIT = 60.0


def _tool(name: str) -> str | None:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class LocalServer:
    """One child process serving on ``port``; ``stop`` ends exactly that process."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it until stopped
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + START_WAIT
        while not _port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not listen on port {self.port} within {START_WAIT:.0f} s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10)
        self.proc = None


def start_mongo(workdir: Path, port: int | None = None, db: str = "memory") -> LocalServer:
    """Start ``nx-27017 --db DB`` on ``port`` (a free one by default); a file as DB outlives a restart."""
    tool = _tool("nx-27017")
    if tool is None:
        raise RuntimeError("nx-27017 is not installed (pip install -e '.[dev]')")
    port = port or free_port()
    argv = [tool, "--db", db, "-p", str(port), "--host", "127.0.0.1",
            "--log-file", str(workdir / f"nx-{port}.log"), "--pid-file", str(workdir / f"nx-{port}.pid")]
    return LocalServer("nx-27017", argv, port, workdir / f"nx-{port}.out").start()


def start_s3(workdir: Path, port: int | None = None) -> LocalServer:
    """Start ``moto_server`` (S3 in memory) on ``port`` (a free one by default)."""
    tool = _tool("moto_server")
    if tool is None:
        raise RuntimeError("moto_server is not installed (pip install -e '.[dev]')")
    port = port or free_port()
    return LocalServer("moto_server", [tool, "-H", "127.0.0.1", "-p", str(port)], port,
                       workdir / f"moto-{port}.out").start()


def s3_credentials() -> dict[str, str]:
    """Keys for the S3 client: the environment's for a real S3, any for moto."""
    if REAL_S3_ENDPOINT and os.environ.get("AWS_ACCESS_KEY_ID"):
        return {}
    return {"s3_access_key": "testing", "s3_secret_key": "testing"}


def s3_env() -> dict[str, str]:
    """Environment for a child that talks to S3: moto's test keys, unless a real S3 and its keys are given."""
    if REAL_S3_ENDPOINT and os.environ.get("AWS_ACCESS_KEY_ID"):
        return {}
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class Services:
    mongo_uri: str
    s3_endpoint: str
    workdir: Path
    started: list[LocalServer] = field(default_factory=list)

    def s3_client(self) -> Any:
        keys = s3_credentials()
        return make_s3_client(self.s3_endpoint, None, keys.get("s3_access_key"), keys.get("s3_secret_key"))

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()
        self.started.clear()


_lock = threading.Lock()
_services: Services | None = None


def services() -> Services:
    """The services of this test process, started on first use (skips when they cannot start)."""
    global _services
    with _lock:
        if _services is None:
            workdir = Path(tempfile.mkdtemp(prefix="ml-dash-services-"))
            started: list[LocalServer] = []
            try:
                if REAL_MONGO_URI:
                    mongo_uri = REAL_MONGO_URI
                else:
                    started.append(start_mongo(workdir))
                    mongo_uri = f"mongodb://127.0.0.1:{started[-1].port}"
                if REAL_S3_ENDPOINT:
                    s3_endpoint = REAL_S3_ENDPOINT
                else:
                    started.append(start_s3(workdir))
                    s3_endpoint = f"http://127.0.0.1:{started[-1].port}"
            except RuntimeError as exc:
                for server in started:
                    server.stop()
                pytest.skip(f"MongoDB/S3 test services unavailable: {exc}")
            _services = Services(mongo_uri, s3_endpoint, workdir, started)
            atexit.register(_services.stop)
        return _services


def fresh_names() -> tuple[str, str]:
    """A new database name and a new (valid, lowercase) bucket name."""
    token = uuid.uuid4().hex[:16]
    return f"mldash_test_{token}", f"mldash-test-{token}"


def create_bucket(svc: Services, bucket: str) -> None:
    client = svc.s3_client()
    client.create_bucket(Bucket=bucket)
    client.close()


def drop(svc: Services, database: str, bucket: str) -> None:
    """Remove a test's database and bucket (best effort)."""
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(svc.mongo_uri, serverSelectionTimeoutMS=2000)
        client.drop_database(database)
        client.close()
    except Exception:
        pass
    try:
        s3 = svc.s3_client()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", ()):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
        s3.close()
    except Exception:
        pass


class Place:
    """A fresh database and bucket, and a way to open MongoStores on them."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.database, self.bucket = fresh_names()
        create_bucket(svc, self.bucket)
        self.opened: list[MongoStore] = []

    def store(self, **kw: Any) -> MongoStore:
        """A MongoStore on this test's database and bucket; ``kw`` overrides the settings."""
        settings: dict[str, Any] = {
            "s3_bucket": self.bucket,
            "s3_endpoint": self.svc.s3_endpoint,
            **s3_credentials(),
            **kw,
        }
        store = MongoStore(settings.pop("mongo_uri", self.svc.mongo_uri), self.database, **settings)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()
        drop(self.svc, self.database, self.bucket)
