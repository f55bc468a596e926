"""The running side of an experiment, as the user-facing helpers see it.

``exp.params``, ``exp.metrics``, ``exp.logs`` and ``exp.tracks`` depend on this small
object, not on :class:`~ml_dash.experiment.Experiment`: the prefix, the store reads go
to, the writer's channels, flushing, and the "must be running" check.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .errors import NotStartedError
from .outbox import Call
from .ownership import Ownership
from .stores.base import Store
from .stores.factory import Backend
from .writer import Channel, CloseReport, OnResult, Writer


class Session:
    """One experiment's writer over its backend, between ``run.start()`` and the end."""

    def __init__(
        self,
        prefix: str,
        backend: Backend,
        flush_interval: float,
        on_result: OnResult,
        *,
        synchronous: bool = False,
        retry_base_delay: float | None = None,
        retry_max_delay: float | None = None,
    ) -> None:
        self.prefix = prefix
        self.backend = backend
        self.flush_interval = flush_interval
        # Every record in the store's files before the call that logged it returns
        # (BufferConfig(buffer_enabled=False)); the stream classes check it once, at creation.
        self.synchronous = synchronous
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self._on_result = on_result
        self._writer: Writer | None = None
        self._control: Channel | None = None
        self.finished = False
        # This process's claim on the experiment while the run goes (ml_dash.ownership).
        self.ownership: Ownership | None = None

    @property
    def reader(self) -> Store:
        """The store reads go to (the local folder, else the server)."""
        return self.backend.reader

    @property
    def running(self) -> bool:
        return self._writer is not None

    def start(self) -> None:
        """Start the background writer (idempotent). If it cannot start, the claim on
        the experiment (``ownership``, made just before) is released."""
        if self._writer is None:
            try:
                self._writer = Writer(
                    self.prefix,
                    self.backend.primary,
                    replica=self.backend.replica,
                    outbox=self.backend.outbox,
                    flush_interval=self.flush_interval,
                    on_result=self._on_result,
                    retry_base_delay=self.retry_base_delay,
                    retry_max_delay=self.retry_max_delay,
                )
            except BaseException:
                ownership, self.ownership = self.ownership, None
                if ownership is not None:
                    ownership.release()
                raise
            self._control = self._writer.channel("control")
            self.finished = False

    def stop(self, timeout: float) -> CloseReport:
        """Stop logging, deliver what is queued within ``timeout`` seconds, release the
        claim on the experiment, close the stores; returns what could not be delivered."""
        writer = self._writer
        assert writer is not None, "stop() of a session that is not running"
        self._writer = self._control = None
        self.finished = True
        try:
            report = writer.close(timeout)
        finally:
            ownership, self.ownership = self.ownership, None
            if ownership is not None:
                ownership.release()
        self.backend.close()
        return report

    def require_running(self, what: str) -> None:
        """Raise NotStartedError naming ``what`` unless the run is going."""
        if self._writer is None:
            state = "has finished" if self.finished else "has not started"
            raise NotStartedError(
                f"{what}: experiment {self.prefix!r} {state}; use `with Experiment(...).run as exp:` "
                "or call exp.run.start() first"
            )

    def writer(self, what: str) -> Writer:
        self.require_running(what)
        assert self._writer is not None
        return self._writer

    def channel(self, kind: str, name: str = "") -> Channel:
        """The writer's channel for a metric (``metrics``), ``logs`` or a track topic."""
        return self.writer(kind).channel(kind, name)

    def poke(self, queue: deque[Any]) -> None:
        """The hot path's call every BATCH_SIZE records (wake the writer, backpressure)."""
        writer = self._writer
        if writer is not None:
            writer.poke(queue)

    def flush(self, channel: Channel | None = None) -> None:
        """Write what is queued (of ``channel`` and the control calls, or everything)
        so that a read sees it."""
        writer = self._writer
        if writer is not None:
            writer.flush(channel)

    def hand_over(self, channel: Channel) -> None:
        """Write what ``channel`` (and the control channel) holds into the store's files
        (the outbox, remote-only) now, from the calling thread; never waits for a server."""
        writer = self._writer
        if writer is not None:
            writer.hand_over(channel)

    def control(self, op: str, name: str | None, *args: Any) -> None:
        """Queue the store call ``op`` (open, update, params, describe) and hand it to
        the stores now (the local folder at once; the server soon, in the background)."""
        writer = self.writer(op)
        assert self._control is not None
        self._control.queue.append(Call(op, self.prefix, name, args, "control"))
        writer.hand_over(self._control)

    def queue_control(self, op: str, name: str | None, *args: Any) -> None:
        """Queue ``op`` to go with the next write (the final status at close)."""
        self.writer(op)
        assert self._control is not None
        self._control.queue.append(Call(op, self.prefix, name, args, "control"))

    def sync(self) -> None:
        """Write and fsync everything queued (``exp.flush()``); raises StorageError."""
        writer = self.writer("flush")
        writer.flush()
        writer.sync()
