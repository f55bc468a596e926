"""Console capture: what the training process prints, kept as log lines.

While a run goes with ``capture_console=True``, ``sys.stdout`` and ``sys.stderr`` are
replaced by :class:`TeeStream`: every write still goes to the stream it replaced (the
terminal sees the same output), and every complete line becomes a log line, ``info``
for stdout and ``error`` for stderr. A carriage return (progress bars) starts the line
over, so a bar is kept once, as last drawn. Blank lines are not kept.

What is not captured: output written by child processes or C code straight to the file
descriptors (only Python's ``sys.stdout``/``sys.stderr`` are wrapped).

Never twice: ML-Dash's own echo of ``exp.log`` (``[LEVEL] message``, from
:func:`ml_dash.logs.echo_line`) is the log line already, so the tee passes it through
without keeping it; and while the tee logs a line, anything written meanwhile (a
warning, say) passes through too, so capture cannot recurse.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Protocol, TextIO

from .logs import echo_line

_ECHO_CODE = echo_line.__code__
_MAX_LINE = 100_000  # characters of one unterminated line kept before it is logged as is


class LineSink(Protocol):
    """Where captured lines go (an experiment's logs, without echo)."""

    def write(self, message: Any, level: Any = "info", metadata: dict[str, Any] | None = None) -> None: ...


_inside = threading.local()


class TeeStream:
    """A text stream that writes through to ``original`` and logs complete lines."""

    def __init__(self, original: TextIO, sink: LineSink, level: str) -> None:
        self.original = original
        self.sink = sink
        self.level = level
        self.active = True
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        written = self.original.write(text)
        if self.active and text and not getattr(_inside, "logging", False) and not _from_echo():
            self._take(text)
        return written

    def _take(self, text: str) -> None:
        with self._lock:
            pending = self._partial + text
            lines = pending.split("\n")
            self._partial = lines.pop()
            if len(self._partial) > _MAX_LINE:
                lines.append(self._partial)
                self._partial = ""
        for line in lines:
            self._log(line)

    def _log(self, line: str) -> None:
        line = line.rsplit("\r", 1)[-1].rstrip()
        if not line:
            return
        _inside.logging = True
        try:
            self.sink.write(line, self.level)
        except Exception:
            pass  # the run closed meanwhile: printing must never fail because of us
        finally:
            _inside.logging = False

    def close_capture(self) -> None:
        """Log what is left of an unterminated line; keep no more lines."""
        with self._lock:
            rest, self._partial = self._partial, ""
        if self.active:
            self._log(rest)
        self.active = False

    def flush(self) -> None:
        self.original.flush()

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


def _from_echo() -> bool:
    """True when the write comes from ``print`` inside :func:`ml_dash.logs.echo_line`
    (frame 2: ``print`` is a builtin and has no frame of its own)."""
    try:
        return sys._getframe(2).f_code is _ECHO_CODE
    except ValueError:
        return False


class ConsoleCapture:
    """Installs the two tees (:meth:`start`) and takes them out again (:meth:`stop`)."""

    def __init__(self, sink: LineSink) -> None:
        self.sink = sink
        self.stdout: TeeStream | None = None
        self.stderr: TeeStream | None = None

    def start(self) -> ConsoleCapture:
        self.stdout = TeeStream(sys.stdout, self.sink, "info")
        self.stderr = TeeStream(sys.stderr, self.sink, "error")
        sys.stdout = self.stdout
        sys.stderr = self.stderr
        return self

    def stop(self) -> None:
        """Log unterminated lines and put the original streams back (a stream someone
        replaced after us is left alone; our tee under it only passes writes through)."""
        for tee, name in ((self.stdout, "stdout"), (self.stderr, "stderr")):
            if tee is None:
                continue
            tee.close_capture()
            if getattr(sys, name) is tee:
                setattr(sys, name, tee.original)
        self.stdout = self.stderr = None
