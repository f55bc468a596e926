"""The buffering switch of the public ML-Dash SDK (COMPAT-SURFACE.md, "Buffering switch"):
``BufferConfig`` and ``from_env()``, mapped onto our writer; with the buffer disabled,
every write is in the files when the call returns (checked on disk, and in a real
process killed with SIGKILL right after its last call)."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import ml_dash
from ml_dash import Experiment, InvalidValueError
from ml_dash.buffer import BufferConfig
from support.files import jsonl
from support.processes import child_env

ENV = {
    "ML_DASH_FLUSH_INTERVAL": ("flush_interval", "2.5", 2.5),
    "ML_DASH_LOG_BATCH_SIZE": ("log_batch_size", "7", 7),
    "ML_DASH_METRIC_BATCH_SIZE": ("metric_batch_size", "70", 70),
    "ML_DASH_TRACK_BATCH_SIZE": ("track_batch_size", "9", 9),
    "ML_DASH_FILE_UPLOAD_WORKERS": ("file_upload_workers", "2", 2),
    "ML_DASH_BUFFER_ENABLED": ("buffer_enabled", "false", False),
    "ML_DASH_MAX_RETRIES": ("max_retries", "0", 0),
    "ML_DASH_RETRY_BASE_DELAY": ("retry_base_delay", "0.25", 0.25),
    "ML_DASH_RETRY_MAX_DELAY": ("retry_max_delay", "4", 4.0),
}


def test_buffer_config_defaults_are_the_sdks() -> None:
    config = BufferConfig()
    assert dataclasses.asdict(config) | {"given": None} == {
        "flush_interval": 5.0, "log_batch_size": 100, "metric_batch_size": 1000, "track_batch_size": 100,
        "file_upload_workers": 4, "buffer_enabled": True, "max_retries": 3, "retry_base_delay": 1.0,
        "retry_max_delay": 30.0, "given": None,
    }
    assert ml_dash.BufferConfig is BufferConfig


def test_from_env_without_variables_gives_the_defaults_and_nothing_given() -> None:
    config = BufferConfig.from_env()
    assert config == BufferConfig()
    assert config.given == frozenset()
    assert config.setting("flush_interval") is None


@pytest.mark.parametrize("var", list(ENV))
def test_from_env_reads_each_variable(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    name, raw, value = ENV[var]
    monkeypatch.setenv(var, raw)
    config = BufferConfig.from_env()
    assert getattr(config, name) == value
    assert config.given == {name} and config.setting(name) == value


@pytest.mark.parametrize(("raw", "enabled"), [("true", True), ("1", True), ("YES", True), ("0", False),
                                              ("no", False), ("False", False)])
def test_buffer_enabled_spellings(monkeypatch: pytest.MonkeyPatch, raw: str, enabled: bool) -> None:
    monkeypatch.setenv("ML_DASH_BUFFER_ENABLED", raw)
    assert BufferConfig.from_env().buffer_enabled is enabled


@pytest.mark.parametrize(("var", "raw"), [("ML_DASH_FLUSH_INTERVAL", "soon"), ("ML_DASH_METRIC_BATCH_SIZE", "1.5"),
                                          ("ML_DASH_BUFFER_ENABLED", "maybe"), ("ML_DASH_RETRY_MAX_DELAY", "-1"),
                                          ("ML_DASH_LOG_BATCH_SIZE", "0")])
def test_a_bad_variable_is_a_clear_error_naming_it(monkeypatch: pytest.MonkeyPatch, var: str, raw: str) -> None:
    monkeypatch.setenv(var, raw)
    with pytest.raises(InvalidValueError, match=var.removeprefix("ML_DASH_").lower() if raw in ("-1", "0") else var):
        BufferConfig.from_env()


def test_a_config_made_by_hand_counts_in_full() -> None:
    config = BufferConfig(flush_interval=5.0)
    assert config.setting("flush_interval") == 5.0 and config.setting("retry_max_delay") == 30.0


# -- mapped onto the writer --------------------------------------------------------------


def test_our_flush_interval_and_retry_policy_stay_when_nothing_is_given(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run:
        exp.metrics("train").log(loss=1.0)
        backoff = exp._session.writer("test").channel("metrics", "train").backoff
        assert exp.flush_interval == 0.5
        assert (backoff.base, backoff.cap) == (0.5, 10.0)


def test_environment_settings_reach_the_writer(make_exp: Callable[..., Experiment],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_FLUSH_INTERVAL", "2.5")
    monkeypatch.setenv("ML_DASH_RETRY_BASE_DELAY", "0.25")
    monkeypatch.setenv("ML_DASH_RETRY_MAX_DELAY", "4")
    exp = make_exp()
    with exp.run:
        exp.metrics("train").log(loss=1.0)
        writer = exp._session.writer("test")
        backoff = writer.channel("metrics", "train").backoff
        assert (exp.flush_interval, writer.flush_interval) == (2.5, 2.5)
        assert (backoff.base, backoff.cap) == (0.25, 4.0)
    probe = dataclasses.replace(backoff, failing=False, delay=0.0)  # the same policy, on a copy
    delays = []
    for _ in range(6):
        probe.fail(OSError("disk full"))
        delays.append(probe.delay)
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]  # doubling from the base, capped


def test_a_config_passed_by_hand_wins_and_flush_interval_keyword_wins_over_it(
    make_exp: Callable[..., Experiment], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_DASH_FLUSH_INTERVAL", "9")
    assert make_exp(buffer_config=BufferConfig(flush_interval=1.5)).flush_interval == 1.5
    assert make_exp(buffer_config=BufferConfig(flush_interval=1.5), flush_interval=0.2).flush_interval == 0.2


# -- the buffer disabled --------------------------------------------------------------------


def test_with_the_buffer_disabled_every_write_is_in_the_files_when_the_call_returns(
    make_exp: Callable[..., Experiment]
) -> None:
    exp = make_exp(buffer_config=BufferConfig(buffer_enabled=False), flush_interval=3600)
    folder = Path(exp.path)
    with exp.run:
        train = exp.metrics("train")
        for i in range(3):
            train.log(loss=float(i), step=i)
            assert [line["data"]["step"] for line in jsonl(folder / "metrics/train/data.jsonl")] == list(range(i + 1))
        exp.metrics.log(epoch=1, eval={"acc": 0.5})
        assert len(jsonl(folder / "metrics/None/data.jsonl")) == 1
        assert len(jsonl(folder / "metrics/eval/data.jsonl")) == 1
        exp.tracks("robot/pose").append(x=1.0, _ts=1.0)
        assert jsonl(folder / "tracks/robot/pose/data.jsonl")[0]["x"] == 1.0
        exp.log("hello", level="warn", k=1)
        (line,) = jsonl(folder / "logs/logs.jsonl")
        assert (line["message"], line["metadata"]) == ("hello", {"k": 1})
        exp.metrics("train").summary_cache.store(loss=2.0)
        exp.metrics("train").summary_cache.summarize()
        assert "loss.mean" in jsonl(folder / "metrics/train/data.jsonl")[-1]["data"]


def test_with_the_buffer_disabled_a_process_killed_right_after_logging_lost_nothing(tmp_path: Path) -> None:
    root = tmp_path / ".dash"
    script = textwrap.dedent(f"""
        import os, signal
        from ml_dash import Experiment
        exp = Experiment(prefix="a/b/run", dash_root={str(root)!r}, flush_interval=3600)
        exp.run.start()
        for i in range(5):
            exp.metrics("train").log(step=i)
            exp.tracks("pose").append(x=i, _ts=float(i + 1))
            exp.log(f"line {{i}}")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], env=child_env(ML_DASH_BUFFER_ENABLED="false"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    folder = root / "a/b/run"
    assert [p["data"]["step"] for p in jsonl(folder / "metrics/train/data.jsonl")] == [0, 1, 2, 3, 4]
    assert [e["x"] for e in jsonl(folder / "tracks/pose/data.jsonl")] == [0, 1, 2, 3, 4]
    assert [line["message"] for line in jsonl(folder / "logs/logs.jsonl")] == [f"line {i}" for i in range(5)]
