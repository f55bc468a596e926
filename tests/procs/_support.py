"""Helpers shared by the reliability tests (imported as ``procs._support``).

Nothing here mocks ML-Dash: it starts real child processes and reads the real files
they leave behind, with the standard ``json`` module (independent of the store's own
msgspec-based reader).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROCS = Path(__file__).resolve().parent
SRC = PROCS.parent.parent / "src"


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child: no inherited ML-Dash settings, no echo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env["ML_DASH_ECHO"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def start(script: str, *args: Any, stdin: Any = subprocess.DEVNULL, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``tests/procs/<script>`` with this interpreter; stdout/stderr are pipes."""
    return subprocess.Popen(
        [sys.executable, str(PROCS / script), *map(str, args)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=kwargs.pop("env", None) or child_env(),
        bufsize=0,
        **kwargs,
    )


class LineWaiter:
    """Reads a child's stdout line by line with a hang guard (never blocks forever)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.buffer = b""
        self.lines: list[str] = []
        self._sel = selectors.DefaultSelector()
        self._sel.register(proc.stdout, selectors.EVENT_READ)

    def wait_for(self, wanted: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while wanted not in self.lines:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child did not print {wanted!r} within {timeout}s (hang guard); got {self.lines}")
            if not self._sel.select(min(left, 0.5)):
                if self.proc.poll() is not None and not self._drain():
                    raise AssertionError(
                        f"child exited with {self.proc.returncode} before printing {wanted!r}:\n{stderr_of(self.proc)}"
                    )
                continue
            if not self._drain():
                if self.proc.poll() is None:
                    self.proc.wait(5)
                raise AssertionError(
                    f"child exited with {self.proc.returncode} before printing {wanted!r}:\n{stderr_of(self.proc)}"
                )

    def _drain(self) -> bool:
        assert self.proc.stdout is not None
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            return False
        self.buffer += chunk
        *done, self.buffer = self.buffer.split(b"\n")
        self.lines.extend(line.decode() for line in done)
        return True


def stderr_of(proc: subprocess.Popen[bytes]) -> str:
    try:
        _out, err = proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError):
        return "<no stderr>"
    return (err or b"").decode(errors="replace")


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


def _strict(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def read_jsonl(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], bytes]:
    """(every complete line parsed as JSON, the torn tail after the last newline).

    Fails the test if a complete line is not valid (strict) JSON: bare ``NaN`` or
    ``Infinity`` tokens are refused.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return [], b""
    *lines, tail = raw.split(b"\n")
    parsed = []
    for number, line in enumerate(lines):
        try:
            parsed.append(json.loads(line, parse_constant=_strict))
        except ValueError as exc:
            raise AssertionError(f"{path}: line {number} is not valid JSON ({exc}): {line[:200]!r}") from exc
    return parsed, tail


def exp_dir(root: str | os.PathLike[str], prefix: str) -> Path:
    return Path(root, *prefix.split("/"))


def metric_file(root: str | os.PathLike[str], prefix: str, name: str) -> Path:
    return exp_dir(root, prefix).joinpath("metrics", *name.split("/"), "data.jsonl")


def track_file(root: str | os.PathLike[str], prefix: str, topic: str) -> Path:
    return exp_dir(root, prefix).joinpath("tracks", *topic.split("/"), "data.jsonl")


def logs_file(root: str | os.PathLike[str], prefix: str) -> Path:
    return exp_dir(root, prefix) / "logs" / "logs.jsonl"


def last_json(text: str) -> Any:
    """The JSON document on the last non-empty line of a child's stdout."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "child printed nothing"
    return json.loads(lines[-1])


def send_line(proc: subprocess.Popen[bytes], line: bytes = b"go\n") -> None:
    """Write one line to a child's stdin and close it (communicate() may follow)."""
    assert proc.stdin is not None
    proc.stdin.write(line)
    proc.stdin.close()
    proc.stdin = None
