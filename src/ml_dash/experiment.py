"""``Experiment`` and its ``run``: the entry point of the SDK."""

from __future__ import annotations

import atexit
import os
import time
import warnings
import weakref
from typing import Any

from .errors import NotStartedError
from .logs import Logs, echo_default
from .metrics import MetricsManager
from .names import parse_prefix
from .params import Params
from .records import ExperimentInfo, merge_track_entries
from .stores.hybrid import HybridStore
from .stores.local import LocalStore
from .stores.remote import RemoteStore
from .tracks import TracksManager
from .values import check_text, normalize
from .writer import Batch, Channel, CloseReport, Writer

_running: weakref.WeakSet[Experiment] = weakref.WeakSet()
_UNSET: Any = object()


class Run:
    """``exp.run``: a context manager, or ``start()``/``complete()``/``fail()``/``cancel()``."""

    def __init__(self, exp: Experiment) -> None:
        self._exp = exp

    def __enter__(self) -> Experiment:
        self.start()
        return self._exp

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.complete()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.cancel()
        else:
            self.fail(f"{exc_type.__name__}: {exc}")

    def start(self) -> Experiment:
        """Start (or resume) the run: status RUNNING; logging works from now on."""
        self._exp._start()
        return self._exp

    def complete(self) -> CloseReport | None:
        """Write everything, mark COMPLETED, close. Returns what could not be written."""
        return self._exp._finish("COMPLETED")

    def fail(self, reason: str | None = None) -> CloseReport | None:
        """Write everything, mark FAILED (with ``reason`` in the metadata), close."""
        return self._exp._finish("FAILED", reason)

    def cancel(self) -> CloseReport | None:
        """Write everything, mark CANCELLED, close."""
        return self._exp._finish("CANCELLED")


class Experiment:
    """One experiment, named by ``prefix="owner/project/[folders/...]/name"``.

    Local mode writes under ``dash_root`` (default ``.dash``, or ``ML_DASH_ROOT``).
    Nothing is written before ``exp.run`` starts.
    """

    def __init__(
        self,
        prefix: str | None = None,
        *,
        project: str | None = None,
        name: str | None = None,
        dash_root: str | os.PathLike[str] | None = _UNSET,
        dash_url: str | None = None,
        api_key: str | None = None,
        tags: list[str] | None = None,
        readme: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        echo: bool | None = None,
        flush_interval: float | None = None,
        close_timeout: float | None = None,
    ) -> None:
        prefix = prefix or name or os.environ.get("ML_DASH_PREFIX")
        parsed = parse_prefix(prefix, project)
        dash_url = dash_url or os.environ.get("ML_DASH_URL") or None
        explicit_root = dash_root is not _UNSET and dash_root is not None
        root = os.environ.get("ML_DASH_ROOT") or ".dash"
        if dash_root is not _UNSET and dash_root is not None:
            root = os.fspath(dash_root)
        self.prefix = parsed.path
        self.owner, self.project, self.name = parsed.owner, parsed.project, parsed.name
        self.folders = parsed.folders
        self.api_key = api_key or os.environ.get("ML_DASH_API_KEY")
        self.echo = echo_default() if echo is None else bool(echo)
        if flush_interval is None:
            flush_interval = float(os.environ.get("ML_DASH_FLUSH_INTERVAL", "0.5"))
        self.flush_interval = flush_interval
        self.close_timeout = close_timeout if close_timeout is not None else (30.0 if dash_url else 10.0)
        self.dash_url = dash_url
        self._store: Any
        if dash_url:
            remote = RemoteStore(dash_url, self.api_key, os.path.join(root, ".spool"), timeout=self.close_timeout)
            self._store = HybridStore(LocalStore(root, scan_batch_ids=False), remote) if explicit_root else remote
        else:
            self._store = LocalStore(root, scan_batch_ids=False)
        self.dash_root: str | None = os.path.abspath(root) if (explicit_root or not dash_url) else None
        self.info = ExperimentInfo(
            prefix=self.prefix,
            owner=self.owner,
            project=self.project,
            name=self.name,
            folders=self.folders,
            description=description if description is not None else readme,
            tags=tuple(check_text(str(tag), "tags") for tag in (tags or ())),
            metadata=normalize(dict(metadata or {}), "metadata"),
        )
        self.status: str | None = None
        self.close_report: CloseReport | None = None
        self._writer: Writer | None = None
        self._params = Params(self)
        self._metrics = MetricsManager(self)
        self._logs = Logs(self)
        self._tracks = TracksManager(self)
        self.run = Run(self)

    # -- public ------------------------------------------------------------------------

    @property
    def path(self) -> str | None:
        """The experiment's folder (local and hybrid modes; None in remote-only mode)."""
        experiment_dir = getattr(self._store, "experiment_dir", None)
        return experiment_dir(self.prefix) if experiment_dir else None

    @property
    def params(self) -> Params:
        self._require_running("params")
        return self._params

    @property
    def metrics(self) -> MetricsManager:
        self._require_running("metrics")
        return self._metrics

    @property
    def logs(self) -> Logs:
        self._require_running("logs")
        return self._logs

    @property
    def tracks(self) -> TracksManager:
        self._require_running("tracks")
        return self._tracks

    def log(self, message: Any, level: str = "info", metadata: dict[str, Any] | None = None) -> None:
        """Record one log line (``logs/logs.jsonl``); ``level`` is debug/info/warn/error/fatal."""
        self._logs.write(message, level, metadata)

    def flush(self) -> None:
        """Write everything queued and fsync it: durable when this returns (or warns)."""
        self._require_running("flush")
        assert self._writer is not None
        self._writer.flush()
        self._writer.finish_streams()
        try:
            self._store.sync(self.prefix)
        except OSError as exc:
            warnings.warn(f"ml-dash: fsync failed: {exc}", RuntimeWarning, stacklevel=2)

    def __enter__(self) -> Experiment:
        return self.run.__enter__()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.run.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"Experiment(prefix={self.prefix!r}, status={self.status!r}, dash_root={self.dash_root!r})"

    # -- life cycle --------------------------------------------------------------------

    def _start(self) -> None:
        if self._writer is not None:
            return
        self._writer = Writer(self.prefix, flush_interval=self.flush_interval, on_flush=self._on_stream_flush)
        self._control_channel = self._writer.channel("control", "", self._send_control)
        self._logs_channel = self._writer.channel(
            "logs", "", lambda batch: self._store.append_logs(self.prefix, batch, batch.id)
        )
        self._metrics = MetricsManager(self)
        self._tracks = TracksManager(self)
        self.status = "RUNNING"
        self.info = self.info.with_changes(status="RUNNING", started_at=time.time(), ended_at=None)
        self._control("open_experiment", self.info)
        _running.add(self)

    def _finish(self, status: str, reason: str | None = None) -> CloseReport | None:
        if self._writer is None:
            return None
        changes: dict[str, Any] = {"status": status, "ended_at": time.time()}
        if reason:
            changes["metadata"] = {**self.info.metadata, "error": reason}
        self._control_channel.queue.append(("update_experiment", changes))
        report = self._shutdown(self.close_timeout)
        self.status = status
        self.close_report = report
        if not report.ok:
            warnings.warn(f"ml-dash: closing {self.prefix}: {report}", RuntimeWarning, stacklevel=3)
        return report

    def _shutdown(self, timeout: float) -> CloseReport:
        """Stop logging, drain the writer, close the store; all within ``timeout`` seconds."""
        writer = self._writer
        assert writer is not None
        self._metrics._detach()
        self._tracks._detach()
        self._writer = None
        _running.discard(self)
        started = time.monotonic()
        report = writer.close(timeout)
        if self.dash_url:
            left = self._store.close(max(timeout - (time.monotonic() - started), 0.0))
            if left:
                report.spooled = left
                report.spool_dir = self._store.spool.folder
        else:
            self._store.close()
        return report

    # -- plumbing used by the managers -------------------------------------------------

    def _require_running(self, what: str) -> None:
        if self._writer is None:
            state = "has finished" if self.status else "has not started"
            raise NotStartedError(
                f"{what}: experiment {self.prefix!r} {state}; use `with Experiment(...).run as exp:` "
                "or call exp.run.start() first"
            )

    def _writer_poke(self, queue: Any) -> None:
        if self._writer is not None:
            self._writer.poke(queue)

    def _channel(self, kind: str, name: str) -> Channel:
        assert self._writer is not None
        if kind == "metrics":
            send = lambda batch: self._store.append_metrics(self.prefix, name, batch, batch.id)  # noqa: E731
        else:
            send = lambda batch: self._store.append_tracks(  # noqa: E731
                self.prefix, name, merge_track_entries(batch), batch.id
            )
        return self._writer.channel(kind, name, send)

    def _send_control(self, ops: Batch) -> None:
        # Ops leave the batch as they succeed, so a retry never repeats one.
        while ops:
            op, *args = ops[0]
            if op == "open_experiment":
                self.info = self._store.open_experiment(*args)
            elif op == "update_experiment":
                self.info = self._store.update_experiment(self.prefix, **args[0])
            else:
                getattr(self._store, op)(self.prefix, *args)
            ops.pop(0)

    def _control(self, op: str, *args: Any) -> None:
        self._control_channel.queue.append((op, *args))
        self._flush_control()

    def _flush_control(self) -> None:
        if self._writer is not None:
            self._writer.flush(self._control_channel)

    def _flush_channel(self, channel: Channel) -> None:
        if self._writer is not None:
            self._writer.flush(channel)

    def _flush_all(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def _on_stream_flush(self, channel: Channel) -> None:
        write = getattr(self._store, "write_stream_metadata", None)
        if write is None or channel.kind not in ("metrics", "tracks"):
            return
        extra: dict[str, Any] = {}
        if channel.kind == "tracks":
            extra["columns"] = sorted(channel.columns)
        else:
            stream = self._metrics._streams.get(channel.name)
            if stream is not None:
                extra.update(description=stream.description, tags=stream.tags, metadata=stream.metadata)
        write(self.prefix, channel.kind, channel.name, extra)


@atexit.register
def _flush_running_experiments() -> None:
    """At interpreter exit, write what running experiments still hold (status unchanged)."""
    for exp in list(_running):
        if exp._writer is not None:
            try:
                report = exp._shutdown(min(exp.close_timeout, 10.0))
                if not report.ok:
                    warnings.warn(f"ml-dash: at exit, {exp.prefix}: {report}", RuntimeWarning, stacklevel=1)
            except Exception:
                pass
