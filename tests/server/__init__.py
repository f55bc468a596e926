"""Helpers for the server tests: the real app in-process, real servers in subprocesses.

Nothing here mocks ML-Dash. ``AppClient`` drives the real ASGI app through httpx's
ASGI transport (synchronously, via an anyio portal); ``ServerProcess`` starts
``python -m ml_dash serve`` on a free loopback port and talks to it over TCP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx

from ml_dash.server import FileTokenStore, create_app
from ml_dash.stores.local import LocalStore

SRC = Path(__file__).resolve().parent.parent.parent / "src"
PREFIX = "alice/proj/run-1"


class AppClient:
    """A synchronous httpx client bound to an in-process ASGI app (no sockets)."""

    def __init__(self, app: Any, *, raise_app_exceptions: bool = True) -> None:
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] = (
            anyio.from_thread.start_blocking_portal()
        )
        self._portal = self._portal_cm.__enter__()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://testserver")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            return await self._client.request(method, url, **kwargs)

        return self._portal.call(call)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self._portal.call(self._client.aclose)
        self._portal_cm.__exit__(None, None, None)


def app_client(root: Path, *, auth: bool = False, **kwargs: Any) -> tuple[AppClient, LocalStore]:
    """A client of a fresh app over ``root`` (with a FileTokenStore in ``root`` when ``auth``)."""
    store = LocalStore(root)
    tokens = FileTokenStore(root) if auth else None
    return AppClient(create_app(store, tokens, **kwargs)), store


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), and every folder (-> b"<dir>")."""
    found: dict[str, bytes] = {}
    if not root.exists():
        return found
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root)] = b"<dir>"
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env["ML_DASH_ECHO"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    return env


def ml_dash(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ml_dash ARGS`` to completion (hang guard: 60 s) in a clean environment plus ``env``."""
    proc = subprocess.run(
        [sys.executable, "-m", "ml_dash", *args],
        capture_output=True,
        text=True,
        env={**child_env(), **(env or {})},
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ml-dash {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


class ServerProcess:
    """``python -m ml_dash serve`` in a child process, ready once ``/health`` answers.

    Its output goes to temporary files (a pipe nobody reads could fill and stall it).
    """

    def __init__(self, root: Path, *args: str, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the child)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self._final = ("", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ml_dash", "serve", "--root", str(root), "--host", host,
             "--port", str(self.port), *args],
            stdout=self._out,
            stderr=self._err,
            env=child_env(),
        )

    @property
    def stdout(self) -> str:
        """What the child printed on stdout so far (all of it once stopped)."""
        return self._text(self._out)

    @property
    def stderr(self) -> str:
        return self._text(self._err)

    def _text(self, file: Any) -> str:
        if file.closed:
            return str(self._final[file is self._err])
        file.seek(0)
        return str(file.read().decode(errors="replace"))

    def wait_ready(self, hang_guard: float = 60.0) -> None:
        """Poll ``/health`` until it answers (raises if the child dies or never answers)."""
        deadline = time.monotonic() + hang_guard
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.stdout}\n{self.stderr}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not answer within {hang_guard}s (hang guard):\n{self.stderr}")
            time.sleep(0.05)

    def stop(self) -> int:
        """Stop the child (SIGTERM, then SIGKILL after a hang guard); its exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        if not self._out.closed:
            self._final = (self.stdout, self.stderr)
            self._out.close()
            self._err.close()
        return self.proc.returncode


@contextmanager
def running(root: Path, *args: str, host: str = "127.0.0.1") -> Iterator[ServerProcess]:
    """A ready ``ml-dash serve`` child over ``root``, stopped on exit."""
    server = ServerProcess(root, *args, host=host)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
