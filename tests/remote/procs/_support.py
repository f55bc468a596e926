"""Helpers shared by the remote-mode tests: real ``ml-dash serve`` processes and readers.

Nothing here mocks ML-Dash. :class:`Server` starts ``python -m ml_dash serve`` on a
loopback port, can SIGKILL it and start it again on the same port and root;
:class:`ServerPool` keeps a few fresh servers starting in the background so a test
that needs one of its own does not wait for interpreter start-up. :class:`Child`
runs one of the client scripts beside this file and talks to it in JSON lines.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import httpx

PROCS = Path(__file__).resolve().parent
SRC = PROCS.parent.parent.parent / "src"
HANG_GUARD = 60.0  # seconds; a child or server that takes longer is stuck, not slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child: no inherited ML-Dash settings, no echo, ``src`` importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env["ML_DASH_ECHO"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


class Server:
    """``python -m ml_dash serve --root ROOT --port PORT`` that can be killed and restarted.

    Output goes to ``<root>.server.log`` (appended across restarts), never to a pipe
    that nobody reads.
    """

    def __init__(self, root: Path, port: int | None = None, extra: Sequence[str] = ()) -> None:
        self.root = root
        self.port = port or free_port()
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root.parent / f"{root.name}.server.log"
        self._log: IO[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> Server:
        """Start the process (returns at once; see :meth:`wait_ready`)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the server is already running")
        self.root.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (lives as long as the server)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ml_dash",
                "serve",
                "--root",
                str(self.root),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *self.extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=child_env(),
        )
        self.starts += 1
        return self

    def wait_ready(self, hang_guard: float = HANG_GUARD) -> Server:
        """Poll ``/health`` until it answers; raise if the process dies or never answers."""
        assert self.proc is not None
        deadline = time.monotonic() + hang_guard
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"ml-dash serve exited with {self.proc.returncode}:\n{self.output()}")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"ml-dash serve did not answer within {hang_guard}s:\n{self.output()}")
                time.sleep(0.02)

    def start(self) -> Server:
        return self.launch().wait_ready()

    def kill(self) -> None:
        """SIGKILL the server (no chance to flush or answer anything) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(HANG_GUARD)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after the hang guard; closes the log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(HANG_GUARD)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def output(self) -> str:
        """What the server printed so far (all of its runs)."""
        try:
            return self.log_path.read_text(errors="replace")[-20_000:]
        except OSError:
            return "<no server log>"


class ServerPool:
    """Fresh servers, each over its own new root, started ``ahead`` at a time in the background.

    ``take()`` returns a ready server nobody used before; the caller stops it. What is
    still starting when the interpreter exits is killed then.
    """

    def __init__(self, base: Path, ahead: int = 2) -> None:
        self.base = base
        self.ahead = ahead
        self._spares: list[Server] = []
        self._lock = threading.Lock()
        self._count = 0
        atexit.register(self.close)

    def _launch(self) -> None:
        self._count += 1
        root = self.base / f"server-{self._count}" / "root"
        self._spares.append(Server(root).launch())

    def take(self) -> Server:
        with self._lock:
            if not self._spares:
                self._launch()
            server = self._spares.pop(0)
            while len(self._spares) < self.ahead:
                self._launch()
        return server.wait_ready()

    def close(self) -> None:
        with self._lock:
            spares, self._spares = self._spares, []
        for server in spares:
            server.kill()
            server.stop()


_pool: ServerPool | None = None


def server_pool() -> ServerPool:
    """The process-wide pool (its roots live in a temporary folder removed at exit)."""
    global _pool
    if _pool is None:
        base = tempfile.TemporaryDirectory(prefix="ml-dash-servers-")
        atexit.register(base.cleanup)
        _pool = ServerPool(Path(base.name))  # registered after cleanup, so it runs first
    return _pool


# -- children --------------------------------------------------------------------------


class Child:
    """``python tests/remote/procs/<script> ARGS``, talked to line by line over stdin/stdout.

    The child answers in JSON lines; its stderr goes to a temporary file (shown when it
    fails). Every wait has a hang guard.
    """

    def __init__(self, script: str, *args: object, cwd: Path | None = None, **env: str) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in kill)
        self.proc = subprocess.Popen(
            [sys.executable, str(PROCS / script), *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=child_env(**env),
            cwd=cwd,
            bufsize=0,
        )
        self._buffer = b""

    def stderr(self) -> str:
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return str(self._stderr.read().decode(errors="replace"))[-20_000:]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def receive(self, hang_guard: float = HANG_GUARD) -> dict[str, Any]:
        """The next line the child prints, decoded as JSON."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + hang_guard
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"child silent for {hang_guard}s (hang guard):\n{self.stderr()}")
                if sel.select(min(left, 0.5)):
                    chunk = os.read(self.proc.stdout.fileno(), 65536)
                    if not chunk:
                        self.proc.wait(HANG_GUARD)
                        raise AssertionError(f"child exited with {self.proc.returncode}:\n{self.stderr()}")
                    self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, line: str, hang_guard: float = HANG_GUARD) -> dict[str, Any]:
        self.send(line)
        return self.receive(hang_guard)

    def finish(self, hang_guard: float = HANG_GUARD) -> int:
        """Wait for the child to exit (killing it after the hang guard); its exit code."""
        try:
            return self.proc.wait(hang_guard)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"child still running after {hang_guard}s (hang guard)") from None

    def kill(self) -> None:
        """SIGKILL the child if it still runs, reap it, close its pipes and stderr file."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(HANG_GUARD)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` used so far (Linux /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


# -- small helpers ----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spooled_left(folder: Path) -> list[Path]:
    """Request files (pending or rejected) a client left in its spool under ``folder``."""
    return sorted(p for p in folder.rglob("*.req")) if folder.exists() else []
