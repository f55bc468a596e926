"""System metrics: a background thread that logs how the machine behaves.

Every ``interval`` seconds (default 10) one point goes to the metric stream ``system``
(docs/run-context.md lists its fields): process and machine CPU %, memory, disk and
network I/O rates, and per NVIDIA GPU utilisation, memory, temperature and power when
``pynvml`` (package nvidia-ml-py) is importable. It needs ``psutil``.

Nothing here raises into the training loop: a probe that fails is left out of the point
and warns once; the sampler stops when the run closes. Its cost is measured in
benchmarks/bench_context.py (thread CPU time per sample, in :attr:`SystemSampler.cpu_seconds`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol

from .errors import InvalidValueError, MLDashError

DEFAULT_INTERVAL = 10.0
STREAM = "system"
_MB = 1024.0 * 1024.0
_ON = ("1", "true", "yes", "on")

Probe = Callable[[], dict[str, float]]


class PointSink(Protocol):
    """Where samples go: a metric stream (``exp.metrics("system")``)."""

    def log(self, **fields: Any) -> Any: ...


def enabled_from(setting: bool | None) -> bool:
    """The ``system_metrics=`` keyword, or ``$ML_DASH_SYSTEM_METRICS`` (1/true/on) when None."""
    if setting is None:
        return os.environ.get("ML_DASH_SYSTEM_METRICS", "").strip().lower() in _ON
    if not isinstance(setting, bool):
        raise InvalidValueError(f"system_metrics must be True or False, got {setting!r}")
    return setting


def interval_from(setting: float | None) -> float:
    """The ``system_metrics_interval=`` keyword in seconds, or
    ``$ML_DASH_SYSTEM_METRICS_INTERVAL``, or 10; InvalidValueError unless positive."""
    raw: Any = setting
    if raw is None:
        raw = os.environ.get("ML_DASH_SYSTEM_METRICS_INTERVAL") or DEFAULT_INTERVAL
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise InvalidValueError(f"system_metrics_interval must be a positive number of seconds, got {raw!r}")
    return value


def load_psutil() -> Any:
    """The ``psutil`` module; MLDashError saying what to install when it is missing."""
    try:
        return importlib.import_module("psutil")
    except ImportError as exc:
        raise MLDashError("system metrics need psutil: pip install psutil (a dependency of ml-dash)") from exc


class _Rates:
    """Per-second rates of growing counters between two calls."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._at = time.monotonic()

    def update(self, counters: dict[str, float]) -> dict[str, float]:
        at = time.monotonic()
        elapsed = at - self._at
        rates = {name: max(0.0, value - self._last[name]) / _MB / elapsed
                 for name, value in counters.items() if name in self._last and elapsed > 0}
        self._last, self._at = counters, at
        return rates


def psutil_probes(psutil: Any) -> dict[str, Probe]:
    """The CPU, memory, disk and network probes (each primed now, so that the first
    sample has rates and CPU % over the first interval)."""
    process = psutil.Process()
    process.cpu_percent(None)
    psutil.cpu_percent(None)
    disk, net = _Rates(), _Rates()

    def cpu() -> dict[str, float]:
        return {"cpu": float(psutil.cpu_percent(None)), "proc_cpu": float(process.cpu_percent(None))}

    def memory() -> dict[str, float]:
        return {"memory": float(psutil.virtual_memory().percent), "proc_rss_mb": process.memory_info().rss / _MB}

    def disk_io() -> dict[str, float]:
        counters = psutil.disk_io_counters()
        if counters is None:  # no disks visible (some containers)
            return {}
        return disk.update({"disk_read_mb_s": counters.read_bytes, "disk_write_mb_s": counters.write_bytes})

    def net_io() -> dict[str, float]:
        counters = psutil.net_io_counters()
        if counters is None:
            return {}
        return net.update({"net_recv_mb_s": counters.bytes_recv, "net_sent_mb_s": counters.bytes_sent})

    disk_io()
    net_io()
    return {"cpu": cpu, "memory": memory, "disk": disk_io, "network": net_io}


def gpu_probe() -> tuple[Probe, Callable[[], None]] | None:
    """Per GPU ``gpu{i}_util`` (%), ``gpu{i}_memory`` (%), ``gpu{i}_memory_mb``,
    ``gpu{i}_temp_c`` and ``gpu{i}_power_w`` through pynvml, with its shutdown; None
    when pynvml is not importable or finds no driver."""
    if importlib.util.find_spec("pynvml") is None:
        return None
    try:
        nvml: Any = importlib.import_module("pynvml")
        nvml.nvmlInit()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception:
        return None

    def probe() -> dict[str, float]:
        fields: dict[str, float] = {}
        for i, handle in enumerate(handles):
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            fields[f"gpu{i}_util"] = float(util.gpu)
            fields[f"gpu{i}_memory"] = 100.0 * memory.used / memory.total if memory.total else 0.0
            fields[f"gpu{i}_memory_mb"] = memory.used / _MB
            fields[f"gpu{i}_temp_c"] = float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
            fields[f"gpu{i}_power_w"] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
        return fields

    def shutdown() -> None:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass

    return probe, shutdown


class SystemSampler:
    """Logs one point of every probe's fields to ``sink`` every ``interval`` seconds,
    from a daemon thread, until :meth:`stop`."""

    def __init__(self, sink: PointSink, interval: float = DEFAULT_INTERVAL,
                 probes: dict[str, Probe] | None = None, prefix: str = "") -> None:
        self.sink = sink
        self.interval = interval
        self.prefix = prefix
        self._cleanup: list[Callable[[], None]] = []
        if probes is None:
            probes = psutil_probes(load_psutil())
            gpu = gpu_probe()
            if gpu is not None:
                probes["gpu"] = gpu[0]
                self._cleanup.append(gpu[1])
        self.probes = probes
        self.samples = 0
        self.cpu_seconds = 0.0  # CPU time the thread spent sampling and logging
        self._warned: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ml-dash-system-metrics", daemon=True)

    def start(self) -> SystemSampler:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling (waits up to ``timeout`` s for a sample under way); idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        for cleanup in self._cleanup:
            cleanup()
        self._cleanup = []

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def sample(self) -> dict[str, float]:
        """One point: every probe's fields (a failing probe is left out, warned once)."""
        fields: dict[str, float] = {}
        for name, probe in self.probes.items():
            try:
                fields.update(probe())
            except Exception as exc:
                self._warn_once(name, f"system metrics: probe {name!r} failed ({type(exc).__name__}: {exc}); "
                                "its fields are left out")
        return fields

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            started = time.thread_time()
            fields = self.sample()
            if fields:
                try:
                    self.sink.log(**fields)
                except Exception as exc:  # the run closed under us, or a value the store refuses
                    self._warn_once("log", f"system metrics: could not log a point ({type(exc).__name__}: {exc})")
            self.samples += 1
            self.cpu_seconds += time.thread_time() - started

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            where = f" ({self.prefix})" if self.prefix else ""
            warnings.warn(f"ml-dash{where}: {message}", RuntimeWarning, stacklevel=2)
