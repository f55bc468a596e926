"""Child processes of the test suite: ``ml-dash serve`` servers, CLI runs and child scripts.

Nothing here mocks ML-Dash. :class:`ServerProcess` starts ``python -m ml_dash serve``
with any arguments (a folder with ``root=``, or ``--mongo ... --s3 ...``, ``--auth``,
...) on a loopback port, waits until ``/health`` answers, and can SIGKILL it and start
it again on the same port; :class:`ServerPool` keeps fresh folder servers starting in
the background. :func:`start` runs a child script of the suite (``procs/...``);
:class:`LineWaiter` and :class:`Child` read what it prints, with a hang guard on
every wait. Every child gets :func:`child_env`: no inherited ML-Dash settings, no
echo, unbuffered output and ``src`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx

TESTS = Path(__file__).resolve().parent.parent
SRC = TESTS.parent / "src"
HANG_GUARD = 60.0  # seconds; a child or server that takes longer is stuck, not slow


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child: no inherited ML-Dash settings, no echo, ``src`` importable; then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env["ML_DASH_ECHO"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def stop_process(proc: subprocess.Popen[Any], grace: float = HANG_GUARD) -> int:
    """SIGTERM ``proc`` (a clean shutdown), SIGKILL it if it still runs after ``grace`` s; its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    return proc.returncode


def ml_dash(
    *args: str, check: bool = True, env: dict[str, str] | None = None, timeout: float = HANG_GUARD
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ml_dash ARGS`` to completion (hang guard ``timeout``) in :func:`child_env` plus ``env``."""
    done = subprocess.run(
        [sys.executable, "-m", "ml_dash", *args],
        capture_output=True,
        text=True,
        env=child_env(**(env or {})),
        timeout=timeout,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"ml-dash {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def _read_all(file: IO[bytes]) -> str:
    """Everything in ``file`` so far, read without moving the offset a child writes at."""
    return os.pread(file.fileno(), os.fstat(file.fileno()).st_size, 0).decode(errors="replace")


# -- ml-dash serve -------------------------------------------------------------------------


class ServerProcess:
    """``python -m ml_dash serve [--root ROOT] --host HOST --port PORT ARGS``, ready once ``/health`` answers.

    ``root`` serves a folder; without it ``args`` (or ``env``, e.g. ``ML_DASH_MONGO_URI``)
    choose the backend. :meth:`kill` and :meth:`start` again restart it on the same port
    and root. Its output goes to temporary files (a pipe nobody reads could fill and stall
    it); ``stdout`` and ``stderr`` hold what every start printed, also after :meth:`stop`.
    """

    def __init__(
        self,
        *args: str,
        root: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = list(args)
        self.root = root
        self.host = host
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._files: tuple[IO[bytes], IO[bytes]] | None = None
        self._kept = ("", "")  # what the child printed before stop() closed the files

    def launch(self) -> ServerProcess:
        """Start the child and return at once (see :meth:`wait_ready`)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the server is already running")
        if self._files is None:
            self._files = (tempfile.TemporaryFile(), tempfile.TemporaryFile())  # noqa: SIM115 (closed in stop)
        root = ["--root", str(self.root)] if self.root is not None else []
        address = ["--host", self.host, "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ml_dash", "serve", *root, *address, *self.args],
            stdin=subprocess.DEVNULL,
            stdout=self._files[0],
            stderr=self._files[1],
            env=child_env(**self.env),
        )
        self.starts += 1
        return self

    def wait_ready(self, hang_guard: float = HANG_GUARD) -> ServerProcess:
        """Poll ``/health`` until it answers (AssertionError if the child dies or never answers)."""
        assert self.proc is not None, "launch first"
        deadline = time.monotonic() + hang_guard
        with httpx.Client(timeout=5.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"ml-dash serve exited {self.proc.returncode}:\n{self.output()}")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"ml-dash serve did not answer within {hang_guard}s (hang guard):\n"
                                         f"{self.output()}")
                time.sleep(0.02)

    def start(self, hang_guard: float = HANG_GUARD) -> ServerProcess:
        """Start the child and wait until it answers."""
        return self.launch().wait_ready(hang_guard)

    def kill(self) -> None:
        """SIGKILL the server (no chance to flush or answer anything) and reap it; :meth:`start` brings it back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(HANG_GUARD)

    def stop(self) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL after the hang guard; closes the output files. Its exit code."""
        code = stop_process(self.proc) if self.proc is not None else None
        if self._files is not None:
            out, err = self._files
            self._kept = (self._kept[0] + _read_all(out), self._kept[1] + _read_all(err))
            out.close()
            err.close()
            self._files = None
        return code

    @property
    def stdout(self) -> str:
        """What the child printed on stdout so far (all of it once stopped)."""
        return self._kept[0] + (_read_all(self._files[0]) if self._files is not None else "")

    @property
    def stderr(self) -> str:
        return self._kept[1] + (_read_all(self._files[1]) if self._files is not None else "")

    def output(self) -> str:
        """Its stdout and its stderr, of all of its starts."""
        return self.stdout + self.stderr


@contextmanager
def running(*args: str, root: Path | None = None, host: str = "127.0.0.1") -> Iterator[ServerProcess]:
    """A ready ``ml-dash serve ARGS`` child (over ``root``), stopped on exit."""
    server = ServerProcess(*args, root=root, host=host)
    try:
        yield server.start()
    finally:
        server.stop()


class ServerPool:
    """Fresh folder servers, each over its own new root, started ``ahead`` at a time in the background.

    ``take()`` returns a ready server nobody used before; the caller stops it. What is
    still starting when the interpreter exits is killed then.
    """

    def __init__(self, base: Path, ahead: int = 2) -> None:
        self.base = base
        self.ahead = ahead
        self._spares: list[ServerProcess] = []
        self._lock = threading.Lock()
        self._count = 0
        atexit.register(self.close)

    def _launch(self) -> None:
        self._count += 1
        root = self.base / f"server-{self._count}" / "root"
        root.mkdir(parents=True)
        self._spares.append(ServerProcess(root=root).launch())

    def take(self) -> ServerProcess:
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` used so far (Linux /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


# -- child scripts ---------------------------------------------------------------------------


def start(
    script: str, *args: Any, stdin: Any = subprocess.DEVNULL, stderr: Any = subprocess.PIPE, **kwargs: Any
) -> subprocess.Popen[bytes]:
    """Start ``tests/<script>`` with this interpreter in :func:`child_env` (or ``env=``); stdout is a pipe."""
    return subprocess.Popen(
        [sys.executable, str(TESTS / script), *map(str, args)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=kwargs.pop("env", None) or child_env(),
        bufsize=0,
        **kwargs,
    )


def stderr_of(proc: subprocess.Popen[bytes]) -> str:
    """The rest of a child's stderr pipe (it waits up to 10 s for the child to exit)."""
    try:
        _out, err = proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError):
        return "<no stderr>"
    return (err or b"").decode(errors="replace")


class LineWaiter:
    """Reads a child's stdout line by line with a hang guard (never blocks forever)."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: Callable[[], str] | None = None) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.buffer = b""
        self.lines: list[str] = []  # every line read so far
        self._stderr = stderr or (lambda: stderr_of(proc))
        self._sel = selectors.DefaultSelector()
        self._sel.register(proc.stdout, selectors.EVENT_READ)

    def next_line(self, timeout: float = HANG_GUARD) -> str:
        """The next line the child prints (AssertionError if it exits first or stays silent ``timeout`` s)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child printed no line within {timeout:.1f}s (hang guard); got {self.lines}:\n"
                                     f"{self._stderr()}")
            if self._sel.select(min(left, 0.5)):
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    self.proc.wait(HANG_GUARD)
                    raise AssertionError(f"child exited with {self.proc.returncode} after printing {self.lines}:\n"
                                         f"{self._stderr()}")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        self.lines.append(line.decode())
        return self.lines[-1]

    def wait_for(self, wanted: str, timeout: float = HANG_GUARD) -> None:
        """Read lines until the child has printed the line ``wanted`` (within ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while wanted not in self.lines:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child did not print {wanted!r} within {timeout}s (hang guard); got {self.lines}")
            self.next_line(left)

    def close(self) -> None:
        self._sel.close()


class Child:
    """``python tests/<script> ARGS``, talked to line by line over stdin/stdout in JSON lines.

    Its stderr goes to a temporary file (shown when it fails). Every wait has a hang guard.
    """

    def __init__(self, script: str, *args: object, cwd: Path | None = None, **env: str) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in kill)
        self.proc = start(script, *args, stdin=subprocess.PIPE, stderr=self._stderr, env=child_env(**env), cwd=cwd)
        self._lines = LineWaiter(self.proc, self.stderr)

    def stderr(self) -> str:
        return "" if self._stderr.closed else _read_all(self._stderr)[-20_000:]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def receive(self, hang_guard: float = HANG_GUARD) -> dict[str, Any]:
        """The next line the child prints, decoded as JSON."""
        answer: dict[str, Any] = json.loads(self._lines.next_line(hang_guard))
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
        self._lines.close()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()


def finish(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> tuple[str, str]:
    """Wait for a child to exit (hang guard ``timeout``); return (stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"child still running after {timeout}s (hang guard):\n{err.decode(errors='replace')}"
        ) from None
    return out.decode(errors="replace"), err.decode(errors="replace")


def kill_child(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child we started (if it still runs) and reap it."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=30)
    except (subprocess.TimeoutExpired, ValueError):
        pass


def send_line(proc: subprocess.Popen[bytes], line: bytes = b"go\n") -> None:
    """Write one line to a child's stdin and close it (communicate() may follow)."""
    assert proc.stdin is not None
    proc.stdin.write(line)
    proc.stdin.close()
    proc.stdin = None


def last_json(text: str) -> Any:
    """The JSON document on the last non-empty line of a child's stdout."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "child printed nothing"
    return json.loads(lines[-1])
