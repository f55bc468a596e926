"""``Experiment`` and its ``run``: the entry point of the SDK."""

from __future__ import annotations

import atexit
import os
import time
import warnings
import weakref
from collections.abc import Iterable
from typing import Any

from . import context as run_context
from . import system_metrics as system_metrics_mod
from .buffer import BufferConfig
from .console import ConsoleCapture
from .errors import InvalidValueError, MLDashError, StorageError
from .logs import Logs, echo_default
from .metrics import Metrics
from .names import parse_prefix
from .outbox import Call
from .ownership import Ownership, check_resume, lease_from
from .params import ParametersBuilder
from .records import ExperimentInfo
from .run import RUN, expand_exp_templates, init_run, new_run_id
from .session import Session
from .stores.base import Store
from .stores.factory import CLAIM_TIMEOUT, open_backend
from .stores.local import LocalStore
from .stores.remote import RemoteStore
from .tracks import Tracks
from .values import check_text, normalize
from .writer import CloseReport

_running: weakref.WeakSet[Experiment] = weakref.WeakSet()
_UNSET: Any = object()


# RUN attributes an experiment's run takes from the class defaults (the prefix, owner,
# project and name are the experiment's own).
_RUN_DEFAULTS = ("user", "job_name", "job_counter", "now", "id", "entry", "path_stem", "project_root", "readme")


class Run(RUN):
    """``exp.run``: a context manager, or ``start()``/``complete()``/``fail()``/``cancel()``.

    It also carries the run's attributes, as :class:`~ml_dash.run.RUN` does: ``prefix``
    (as given), ``owner``, ``project``, ``name`` (the experiment's), ``id``, ``now``,
    ``date``, ``datetime_str``, ``user``, ``entry``, ``path_stem``, ``job_counter``,
    ``job_name``, and any keyword the experiment did not know. Assigning ``prefix``
    before the start re-targets the experiment (``{EXP.attr}`` expanded).
    """

    _exp: Experiment
    _prefix: str

    def __init__(self, exp: Experiment, prefix: str, **overrides: Any) -> None:
        self._exp = exp
        self._prefix = prefix
        init_run(self, RUN, _RUN_DEFAULTS, overrides)

    @property
    def prefix(self) -> str:
        """The prefix as given (``exp.prefix`` is the experiment's full one)."""
        return str(self._prefix)

    @prefix.setter
    def prefix(self, value: str) -> None:
        exp = self._exp
        if exp._session.running:
            raise RuntimeError(
                f"Cannot change the prefix of experiment {exp.prefix!r} while its run goes: set run.prefix "
                "before run.start() (or before entering `with exp.run:`)"
            )
        expanded = expand_exp_templates(str(value), self)
        exp._retarget(expanded)
        self._prefix = expanded

    @property
    def owner(self) -> str:  # type: ignore[override]  # the experiment's, read-only
        return self._exp.owner

    @property
    def project(self) -> str:  # type: ignore[override]
        return self._exp.project

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._exp.name

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

    One process runs an experiment at a time (``ml_dash.ownership``): the start raises
    ExperimentBusyError while another process runs it, unless every such process passes
    ``join=True``. ``resume`` says what a start does with an experiment that exists:
    ``"allow"`` continues it (recorded in ``info.resumes``), ``"never"`` raises
    ExperimentExistsError, ``"new"`` takes the next free name (``exp.prefix`` says which).
    ``lease_seconds`` (default ``$ML_DASH_LEASE_SECONDS`` or 60) is how long after its
    last heartbeat a run that stopped renewing its claim reads as STALE.

    At the start, the run context (git, command, Python, host, packages, GPUs, selected
    environment variables) is stored in ``info.metadata["context"]``: ``context=``
    True/False or the parts to capture (``$ML_DASH_CONTEXT``), ``context_env=`` the
    environment variables allowed (``$ML_DASH_CONTEXT_ENV``). ``system_metrics=True``
    (``$ML_DASH_SYSTEM_METRICS=1``) logs the ``system`` stream every
    ``system_metrics_interval`` seconds (10); ``capture_console=True``
    (``$ML_DASH_CAPTURE_CONSOLE=1``) keeps what the process prints as log lines. See
    docs/run-context.md.
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
        bindrs: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        echo: bool | None = None,
        flush_interval: float | None = None,
        close_timeout: float | None = None,
        check_timeout: float | None = None,
        resume: str = "allow",
        join: bool = False,
        lease_seconds: float | None = None,
        buffer_config: BufferConfig | None = None,
        context: bool | str | Iterable[str] | None = None,
        context_env: Iterable[str] | None = None,
        system_metrics: bool | None = None,
        system_metrics_interval: float | None = None,
        capture_console: bool | None = None,
        **run_params: Any,
    ) -> None:
        prefix = prefix or name or os.environ.get("ML_DASH_PREFIX")
        parsed = parse_prefix(prefix, project)
        given_prefix = str(prefix)
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
        self.buffer_config = buffer = buffer_config if buffer_config is not None else BufferConfig.from_env()
        if flush_interval is None:
            flush_interval = buffer.setting("flush_interval") or 0.5
        self.flush_interval = flush_interval
        self.close_timeout = close_timeout if close_timeout is not None else (30.0 if dash_url else 10.0)
        if check_timeout is None:
            check_timeout = float(os.environ.get("ML_DASH_CHECK_TIMEOUT", "5"))
        self.check_timeout = check_timeout
        self.resume = check_resume(resume)
        if not isinstance(join, bool):
            raise InvalidValueError(f"join must be True or False, got {join!r}")
        self.join = join
        self.lease_seconds = lease_from(lease_seconds)
        self.dash_url = dash_url
        backend = open_backend(root, dash_url, self.api_key, keep_local=explicit_root, timeout=self.close_timeout)
        self.dash_root: str | None = backend.local_root
        self.description = description if description is not None else readme
        self.readme = readme if readme is not None else description
        self.bindrs = [check_text(str(b), "bindrs") for b in (bindrs or ())]
        self.info = ExperimentInfo(
            prefix=self.prefix,
            owner=self.owner,
            project=self.project,
            name=self.name,
            folders=self.folders,
            description=self.description,
            tags=tuple(check_text(str(tag), "tags") for tag in (tags or ())),
            metadata=normalize(dict(metadata or {}), "metadata"),
        )
        # Run context, system metrics and console capture (docs/run-context.md).
        self.context_parts = run_context.parts_from(context)
        self.context_env = run_context.env_allow_from(context_env)
        self._user_context = "context" in self.info.metadata
        self.system_metrics = system_metrics_mod.enabled_from(system_metrics)
        self.system_metrics_interval = system_metrics_mod.interval_from(system_metrics_interval)
        self.capture_console = _flag("capture_console", capture_console, "ML_DASH_CAPTURE_CONSOLE")
        self._sampler: system_metrics_mod.SystemSampler | None = None
        self._console: ConsoleCapture | None = None
        self.status: str | None = None
        self.close_report: CloseReport | None = None
        self._session = Session(
            self.prefix, backend, flush_interval, self._on_result, synchronous=not buffer.buffer_enabled,
            retry_base_delay=buffer.setting("retry_base_delay"), retry_max_delay=buffer.setting("retry_max_delay"),
        )
        self._params = ParametersBuilder(self._session)
        self._metrics = Metrics(self._session)
        self._logs = Logs(self._session, self.echo)
        self._tracks = Tracks(self._session)
        self.run = Run(self, given_prefix, **run_params)

    # -- public ------------------------------------------------------------------------

    @property
    def path(self) -> str | None:
        """The experiment's folder (local and hybrid modes; None in remote-only mode)."""
        return os.path.join(self.dash_root, *self.prefix.split("/")) if self.dash_root else None

    @property
    def params(self) -> ParametersBuilder:
        self._session.require_running("params")
        return self._params

    @property
    def metrics(self) -> Metrics:
        self._session.require_running("metrics")
        return self._metrics

    @property
    def logs(self) -> Logs:
        self._session.require_running("logs")
        return self._logs

    @property
    def tracks(self) -> Tracks:
        self._session.require_running("tracks")
        return self._tracks

    def log(self, message: Any, level: str = "info", metadata: dict[str, Any] | None = None,
            **extra: Any) -> None:
        """Record one log line (``logs/logs.jsonl``); ``level`` is debug/info (the
        default)/warn/error/fatal; ``extra`` keywords merge into ``metadata``."""
        self._logs.write(message, level, metadata, **extra)

    def flush(self) -> None:
        """Write everything queued and fsync it: durable when this returns (or warns)."""
        try:
            self._session.sync()
        except StorageError as exc:
            warnings.warn(f"ml-dash: fsync failed: {exc}", RuntimeWarning, stacklevel=2)

    def __enter__(self) -> Experiment:
        return self.run.__enter__()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.run.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"Experiment(prefix={self.prefix!r}, status={self.status!r}, dash_root={self.dash_root!r})"

    # -- life cycle --------------------------------------------------------------------

    def _start(self) -> None:
        if self._session.running:
            return
        capture = self._begin_context()  # git runs meanwhile, while the claim is made
        try:
            self._check_server()
            self._claim()
            self._session.start()
        except BaseException:
            if capture is not None:
                capture.abandon()
            raise
        self._metrics._attach()
        self._tracks._attach()
        if self.run.id is None:
            self.run.id = new_run_id()
        self.status = "RUNNING"
        self.info = self.info.with_changes(status="RUNNING", started_at=time.time(), ended_at=None)
        if capture is not None:
            self._finish_context(capture)
        self._session.control("open_experiment", None, self.info)
        _running.add(self)
        self._start_watchers()

    def _begin_context(self) -> run_context.ContextCapture | None:
        """Start capturing the run context (None: switched off, or the user's metadata
        has a ``context`` of its own, which wins)."""
        if not self.context_parts or self._user_context:
            return None
        entry = self.run.entry if isinstance(self.run.entry, str) else None
        try:
            return run_context.ContextCapture(self.context_parts, self.context_env, entry).begin()
        except Exception as exc:
            warnings.warn(f"ml-dash: {self.prefix}: run context not captured: {exc}", RuntimeWarning, stacklevel=4)
            return None

    def _finish_context(self, capture: run_context.ContextCapture) -> None:
        try:
            found = normalize(capture.finish(), "context")
        except Exception as exc:
            warnings.warn(f"ml-dash: {self.prefix}: run context not captured: {exc}", RuntimeWarning, stacklevel=4)
            return
        self.info = self.info.with_changes(metadata={**self.info.metadata, "context": found})

    def _start_watchers(self) -> None:
        """The system-metrics sampler and the console capture, when switched on; trouble
        starting either warns and the run goes on without it."""
        if self.system_metrics:
            try:
                sink = self._metrics(system_metrics_mod.STREAM)
                self._sampler = system_metrics_mod.SystemSampler(
                    sink, self.system_metrics_interval, prefix=self.prefix).start()
            except Exception as exc:
                warnings.warn(f"ml-dash: {self.prefix}: no system metrics: {exc}", RuntimeWarning, stacklevel=4)
        if self.capture_console:
            self._console = ConsoleCapture(Logs(self._session, echo=False)).start()

    def _stop_watchers(self) -> None:
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.stop()
        console, self._console = self._console, None
        if console is not None:
            console.stop()

    def _finish(self, status: str, reason: str | None = None) -> CloseReport | None:
        if not self._session.running:
            return None
        changes: dict[str, Any] = {"status": status, "ended_at": time.time()}
        if reason:
            changes["metadata"] = {**self.info.metadata, "error": reason}
        self._session.queue_control("update_experiment", None, changes)
        report = self._shutdown(self.close_timeout)
        self.status = status
        self.close_report = report
        if not report.ok:
            self._record_loss(report)
            warnings.warn(f"ml-dash: closing {self.prefix}: {report}", RuntimeWarning, stacklevel=3)
        return report

    def _record_loss(self, report: CloseReport) -> None:
        """Write what the run lost into its metadata as ``lost``: ``{"unwritten": {label:
        count}, "dropped": ..., "rejected": ..., "lastError": str}`` (the kinds that are
        not in any store, nor waiting on disk), so that a COMPLETED experiment does not
        read as complete. Into the local folder, and into the server when nothing is
        left in the outbox (the status update itself could be waiting there, and would
        be applied after this one). A store that cannot take it only adds a warning."""
        lost: dict[str, Any] = {kind: dict(counts) for kind, counts in
                                (("unwritten", report.unwritten), ("dropped", report.dropped),
                                 ("rejected", report.rejected)) if counts}
        if not lost:
            return
        lost["lastError"] = report.last_error
        stores: list[Store] = []
        if self.dash_root is not None:
            stores.append(LocalStore(self.dash_root, scan_batch_ids=False))
        if self.dash_url is not None and not report.spooled:
            stores.append(RemoteStore(self.dash_url, self.api_key, timeout=min(self.close_timeout, 5.0)))
        for store in stores:
            try:
                stored = store.get_experiment(self.prefix)
                if stored is not None:
                    self.info = store.update_experiment(self.prefix, metadata={**stored.metadata, "lost": lost})
            except MLDashError as exc:
                warnings.warn(f"ml-dash: {self.prefix}: could not record what was lost: {exc}", RuntimeWarning,
                              stacklevel=4)
            finally:
                store.close()

    def _claim(self) -> None:
        """Claim the experiment for this process (``ml_dash.ownership``): raises
        ExperimentBusyError / ExperimentExistsError before anything is written; with
        ``resume="new"`` the experiment takes the name that was free. The session
        releases the claim when it stops (or fails to start)."""
        backend = self._session.backend
        timeout = self.check_timeout if self.check_timeout > 0 else CLAIM_TIMEOUT
        ownership = Ownership(backend.claim_targets(timeout), self.lease_seconds, self.join)
        prefix = ownership.start(self.prefix, self.resume)
        if prefix != self.prefix:
            parsed = parse_prefix(prefix)
            self.prefix = self._session.prefix = prefix
            self.name = parsed.name
            self.info = self.info.with_changes(prefix=prefix, name=parsed.name)
        self._session.ownership = ownership

    def _retarget(self, prefix: str) -> None:
        """Before the start: make ``prefix`` this experiment's (InvalidNameError if it is
        not a valid prefix). Nothing was written yet, so only names change."""
        parsed = parse_prefix(prefix)
        self.prefix = self._session.prefix = parsed.path
        self.owner, self.project, self.name = parsed.owner, parsed.project, parsed.name
        self.folders = parsed.folders
        self.info = self.info.with_changes(prefix=parsed.path, owner=parsed.owner, project=parsed.project,
                                           name=parsed.name, folders=parsed.folders)

    def _check_server(self) -> None:
        """Remote and hybrid modes: ask the server, within ``check_timeout`` seconds,
        whether it will take this run. A refusal raises here, before the training loop;
        a server that cannot be reached only warns (the outbox keeps everything)."""
        replica = self._session.backend.replica
        if replica is None or self.check_timeout <= 0:
            return
        try:
            replica.check_access(self.prefix, self.check_timeout)
        except StorageError as exc:
            warnings.warn(f"ml-dash: {exc}; logging goes on and everything is kept in the outbox until the server "
                          "answers", RuntimeWarning, stacklevel=4)
        except MLDashError as exc:
            raise type(exc)(f"{self.dash_url} refuses {self.prefix!r}: {exc}") from exc

    def _shutdown(self, timeout: float) -> CloseReport:
        """Stop logging, drain the writer, close the stores; all within ``timeout`` seconds."""
        self._stop_watchers()
        self._metrics._detach()
        self._tracks._detach()
        _running.discard(self)
        return self._session.stop(timeout)

    def _on_result(self, call: Call, answer: Any) -> None:
        """The store's answer to an open or update is the experiment's info from now on."""
        if call.op in ("open_experiment", "update_experiment") and isinstance(answer, ExperimentInfo):
            self.info = answer


def _flag(keyword: str, value: bool | None, variable: str) -> bool:
    """A switch given as ``keyword`` (True/False), else by ``$variable`` (1/true/yes/on)."""
    if value is None:
        return os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on")
    if not isinstance(value, bool):
        raise InvalidValueError(f"{keyword} must be True or False, got {value!r}")
    return value


@atexit.register
def _flush_running_experiments() -> None:
    """At interpreter exit, write what running experiments still hold (status unchanged)."""
    for exp in list(_running):
        if exp._session.running:
            try:
                report = exp._shutdown(min(exp.close_timeout, 10.0))
                if not report.ok:
                    warnings.warn(f"ml-dash: at exit, {exp.prefix}: {report}", RuntimeWarning, stacklevel=1)
            except Exception:
                pass
