"""System metrics (the ``system`` stream) and console capture (docs/run-context.md),
with real psutil probes, a real writer and, for the console, a real child process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment, InvalidValueError
from ml_dash.stores.local import LocalStore
from ml_dash.system_metrics import DEFAULT_INTERVAL, SystemSampler, enabled_from, interval_from
from support.processes import HANG_GUARD, child_env

PREFIX = "alice/sys/run-1"


def _points(root: Path, prefix: str = PREFIX) -> list[dict[str, Any]]:
    return [p["data"] for p in LocalStore(root).read_metrics(prefix, "system", 0, 100_000)["data"]]


def test_points_land_in_the_system_stream_with_cpu_memory_and_io_fields(dash_root: Path) -> None:
    with Experiment(PREFIX, dash_root=dash_root, system_metrics=True, system_metrics_interval=0.05).run as exp:
        deadline = time.monotonic() + HANG_GUARD
        while exp.metrics("system").stats()["totalDataPoints"] < 3 and time.monotonic() < deadline:
            busy = time.perf_counter() + 0.05
            while time.perf_counter() < busy:  # some CPU for proc_cpu to see
                pass
    points = _points(dash_root)
    assert len(points) >= 3
    for point in points:
        assert {"cpu", "proc_cpu", "memory", "proc_rss_mb"} <= point.keys()
        assert 0.0 <= point["cpu"] <= 100.0 and 0.0 < point["memory"] <= 100.0
        assert point["proc_rss_mb"] > 1.0
        assert all(point[k] >= 0.0 for k in point if k.endswith("_mb_s"))
    assert "net_recv_mb_s" in points[-1]
    assert max(p["proc_cpu"] for p in points) > 0.0


def test_the_sampler_stops_when_the_run_closes(dash_root: Path) -> None:
    exp = Experiment(PREFIX, dash_root=dash_root, system_metrics=True, system_metrics_interval=0.02)
    exp.run.start()
    sampler = exp._sampler
    assert sampler is not None and sampler.running
    time.sleep(0.1)
    exp.run.complete()
    assert not sampler.running and exp._sampler is None
    count = len(_points(dash_root))
    time.sleep(0.1)
    assert len(_points(dash_root)) == count > 0


def test_system_metrics_are_off_by_default_and_on_by_environment(dash_root: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with Experiment(PREFIX, dash_root=dash_root).run as exp:
        assert exp._sampler is None
    monkeypatch.setenv("ML_DASH_SYSTEM_METRICS", "1")
    monkeypatch.setenv("ML_DASH_SYSTEM_METRICS_INTERVAL", "2.5")
    with Experiment(PREFIX, dash_root=dash_root).run as exp:
        assert exp._sampler is not None and exp._sampler.interval == 2.5
    assert enabled_from(False) is False
    monkeypatch.delenv("ML_DASH_SYSTEM_METRICS_INTERVAL")
    assert interval_from(None) == DEFAULT_INTERVAL
    for bad in (0, -1.0, "soon", float("inf")):
        with pytest.raises(InvalidValueError, match="system_metrics_interval"):
            interval_from(bad)  # type: ignore[arg-type]


class _Points:
    """A sink that keeps the points it is given (what a metric stream does, in memory)."""

    def __init__(self, fail: bool = False) -> None:
        self.points: list[dict[str, Any]] = []
        self.fail = fail

    def log(self, **fields: Any) -> None:
        if self.fail:
            raise OSError("disk on fire")
        self.points.append(fields)


def _broken() -> dict[str, float]:
    raise RuntimeError("sensor unplugged")


def test_a_failing_probe_warns_once_and_the_others_still_report() -> None:
    sink = _Points()
    sampler = SystemSampler(sink, 0.01, probes={"fine": lambda: {"x": 1.0}, "broken": _broken})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sampler.sample() == {"x": 1.0}
        assert sampler.sample() == {"x": 1.0}
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "probe 'broken' failed (RuntimeError: sensor unplugged)" in messages[0]


def test_a_sink_that_raises_never_stops_the_sampler_thread() -> None:
    sink = _Points(fail=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = SystemSampler(sink, 0.01, probes={"fine": lambda: {"x": 1.0}}).start()
        deadline = time.monotonic() + HANG_GUARD
        while sampler.samples < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sampler.running and sampler.samples >= 5
        sampler.stop()
    assert not sampler.running


def test_a_real_sample_costs_far_less_than_one_percent_of_a_core_at_the_default_interval() -> None:
    sampler = SystemSampler(_Points(), 0.01).start()
    deadline = time.monotonic() + HANG_GUARD
    while sampler.samples < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    per_sample = sampler.cpu_seconds / sampler.samples
    assert per_sample / DEFAULT_INTERVAL < 0.01, per_sample


CHILD = """
import sys
from ml_dash import Experiment
with Experiment("alice/sys/console", dash_root=sys.argv[1], capture_console=True, echo=True).run as exp:
    print("hello from print")
    print("oops on stderr", file=sys.stderr)
    exp.log("from exp.log")
    exp.log("bad thing", level="error")
    sys.stdout.write("progress 1%\\rprogress 50%\\rprogress 100%\\n")
    sys.stdout.write("no newline at the end")
print("after the run")
"""


def test_console_capture_keeps_lines_by_stream_and_echo_once(tmp_path: Path) -> None:
    root = tmp_path / ".dash"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    done = subprocess.run([sys.executable, str(script), str(root)], capture_output=True, text=True,
                          env=child_env(ML_DASH_ECHO="1"), timeout=HANG_GUARD, check=True)
    assert "hello from print\n" in done.stdout and "[INFO] from exp.log\n" in done.stdout
    assert "oops on stderr\n" in done.stderr and "[ERROR] bad thing\n" in done.stderr
    assert "after the run" in done.stdout
    logs = LocalStore(root).query_logs("alice/sys/console", {"limit": 100})["logs"]
    assert [(line["level"], line["message"]) for line in logs] == [
        ("info", "hello from print"),
        ("error", "oops on stderr"),
        ("info", "from exp.log"),
        ("error", "bad thing"),
        ("info", "progress 100%"),
        ("info", "no newline at the end"),
    ]


def test_console_capture_puts_the_original_streams_back(dash_root: Path) -> None:
    before = sys.stdout, sys.stderr
    with Experiment(PREFIX, dash_root=dash_root, capture_console=True).run:
        assert sys.stdout is not before[0]
    assert (sys.stdout, sys.stderr) == before
