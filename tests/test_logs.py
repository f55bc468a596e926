"""Log lines: levels, metadata, reads with filters and pages, and the console echo, as COMPAT.md states them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment, InvalidValueError
from support.experiments import after, parse_utc
from support.files import jsonl

# -- logs ---------------------------------------------------------------------------------


def _log_lines(exp: Experiment) -> list[dict[str, Any]]:
    exp.flush()
    return jsonl(Path(exp.path) / "logs/logs.jsonl")


def test_log_level_defaults_to_info(exp: Experiment) -> None:
    exp.log("plain")
    (line,) = _log_lines(exp)
    assert (line["level"], line["message"], line["metadata"]) == ("info", "plain", {})


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("DEBUG", "debug"),
        ("Info", "info"),
        ("WARN", "warn"),
        ("warning", "warn"),
        ("WARNING", "warn"),
        ("Error", "error"),
        ("FATAL", "fatal"),
    ],
)
def test_log_levels_are_case_insensitive_and_warning_means_warn(exp: Experiment, given: str, stored: str) -> None:
    exp.log("m", level=given)
    (line,) = _log_lines(exp)
    assert line["level"] == stored


@pytest.mark.parametrize("bad", ["verbose", "", "trace", None, 3])
def test_invalid_log_level_is_a_clear_error_and_writes_nothing(exp: Experiment, bad: Any) -> None:
    with pytest.raises(InvalidValueError) as info:
        exp.log("m", level=bad)
    assert repr(bad) in str(info.value)
    assert exp.logs.read()["logs"] == []


def test_log_lines_have_sequence_number_utc_timestamp_level_message_metadata(exp: Experiment) -> None:
    before = time.time()
    exp.log("first", metadata={"epoch": 1, "nested": {"a": [1, 2]}})
    exp.log("second", level="error")
    lines = _log_lines(exp)
    assert [line["sequenceNumber"] for line in lines] == [0, 1]
    assert lines[0]["metadata"] == {"epoch": 1, "nested": {"a": [1, 2]}}
    assert lines[1]["metadata"] == {}
    for line in lines:
        stamp = parse_utc(line["timestamp"]).timestamp()
        assert before - 1e-3 <= stamp <= time.time() + 1e-3


@pytest.mark.parametrize("level", ["debug", "info", "warn", "error", "fatal"])
def test_logs_level_shortcuts_take_metadata_as_keywords(exp: Experiment, level: str) -> None:
    getattr(exp.logs, level)(f"via {level}", epoch=2, loss=0.25)
    getattr(exp.logs, level)("no metadata")
    first, second = _log_lines(exp)
    assert (first["level"], first["message"], first["metadata"]) == (level, f"via {level}", {"epoch": 2, "loss": 0.25})
    assert (second["level"], second["metadata"]) == (level, {})


def test_log_metadata_must_be_a_dict(exp: Experiment) -> None:
    with pytest.raises(InvalidValueError):
        exp.log("m", metadata=["not", "a", "dict"])  # type: ignore[arg-type]


def test_logs_read_sees_unflushed_lines_in_order(exp: Experiment) -> None:
    for i in range(5):
        exp.log(f"line {i}")
    page = exp.logs.read()
    assert [r["message"] for r in page["logs"]] == [f"line {i}" for i in range(5)]
    assert [r["sequenceNumber"] for r in page["logs"]] == list(range(5))
    assert (page["total"], page["hasMore"]) == (5, False)


def test_logs_read_filters_by_level(exp: Experiment) -> None:
    for level in ["debug", "info", "warn", "error", "info", "fatal", "warn"]:
        exp.log(f"a {level}", level=level)
    assert [r["message"] for r in exp.logs.read(level="warn")["logs"]] == ["a warn", "a warn"]
    assert [r["level"] for r in exp.logs.read(level="WARNING")["logs"]] == ["warn", "warn"]
    both = exp.logs.read(level=["error", "fatal"])
    assert [r["level"] for r in both["logs"]] == ["error", "fatal"]
    assert both["total"] == 2
    with pytest.raises(InvalidValueError):
        exp.logs.read(level="loud")


def test_logs_read_filters_by_time_range_inclusive(exp: Experiment) -> None:
    exp.log("early")
    t_early = exp.logs.read()["logs"][0]["ts"]
    start = after(t_early)
    exp.log("middle 1")
    exp.log("middle 2")
    t_mid_last = exp.logs.read()["logs"][-1]["ts"]
    end = after(t_mid_last)
    after(end)
    exp.log("late")
    inside = exp.logs.read(start_time=start, end_time=end)
    assert [r["message"] for r in inside["logs"]] == ["middle 1", "middle 2"]
    assert inside["total"] == 2
    assert [r["message"] for r in exp.logs.read(start_time=start)["logs"]] == ["middle 1", "middle 2", "late"]
    assert [r["message"] for r in exp.logs.read(end_time=end)["logs"]] == ["early", "middle 1", "middle 2"]
    # Inclusive bounds: a record's own time selects it.
    assert [r["message"] for r in exp.logs.read(start_time=t_early, end_time=t_early)["logs"]] == ["early"]


def test_logs_read_searches_message_text_case_insensitively(exp: Experiment) -> None:
    exp.log("Loss is NaN at step 3")
    exp.log("all good")
    exp.log("nan again", level="error")
    page = exp.logs.read(search="nan")
    assert [r["message"] for r in page["logs"]] == ["Loss is NaN at step 3", "nan again"]
    assert [r["message"] for r in exp.logs.read(search="NAN", level="error")["logs"]] == ["nan again"]


def test_logs_read_pages_with_offset_and_limit(exp: Experiment) -> None:
    for i in range(12):
        exp.log(f"m{i}", level="error" if i % 2 else "info")
    page = exp.logs.read(offset=5, limit=4)
    assert [r["message"] for r in page["logs"]] == ["m5", "m6", "m7", "m8"]
    assert (page["total"], page["offset"], page["limit"], page["hasMore"]) == (12, 5, 4, True)
    tail = exp.logs.read(offset=10, limit=4)
    assert [r["message"] for r in tail["logs"]] == ["m10", "m11"]
    assert tail["hasMore"] is False
    errors = exp.logs.read(level="error", offset=1, limit=2)
    assert [r["message"] for r in errors["logs"]] == ["m3", "m5"]
    assert (errors["total"], errors["hasMore"]) == (6, True)


def test_logs_read_descending_gives_newest_first(exp: Experiment) -> None:
    for i in range(6):
        exp.log(f"m{i}")
    page = exp.logs.read(descending=True, limit=3)
    assert [r["message"] for r in page["logs"]] == ["m5", "m4", "m3"]
    assert (page["total"], page["hasMore"]) == (6, True)
    assert [r["message"] for r in exp.logs.read(descending=True, offset=3, limit=3)["logs"]] == ["m2", "m1", "m0"]


def test_logs_are_echoed_by_default_as_level_message(
    make_exp: Callable[..., Experiment], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ML_DASH_ECHO")
    exp = make_exp()
    with exp.run:
        exp.log("echo me please", level="warning")
    captured = capsys.readouterr()
    assert "[WARN] echo me please" in captured.out  # debug, info and warn: stdout
    assert "echo me please" not in captured.err


def test_echo_false_keeps_the_console_quiet(
    make_exp: Callable[..., Experiment], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ML_DASH_ECHO")
    exp = make_exp(echo=False)
    with exp.run:
        exp.log("do not echo me")
        exp.logs.info("nor me")
    captured = capsys.readouterr()
    assert "echo me" not in captured.err and "nor me" not in captured.err
    assert "echo me" not in captured.out and "nor me" not in captured.out


def test_ml_dash_echo_0_env_keeps_the_console_quiet(
    make_exp: Callable[..., Experiment], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ML_DASH_ECHO", "0")
    exp = make_exp()
    with exp.run:
        exp.log("silent line")
    captured = capsys.readouterr()
    assert "silent line" not in captured.err + captured.out
    # ...and the line is still stored.
    assert [line["message"] for line in jsonl(Path(exp.path) / "logs/logs.jsonl")] == ["silent line"]


def test_echo_true_overrides_ml_dash_echo_0_env(
    make_exp: Callable[..., Experiment], capsys: pytest.CaptureFixture[str]
) -> None:
    exp = make_exp(echo=True)
    with exp.run:
        exp.log("loud line")
    assert "[INFO] loud line" in capsys.readouterr().out
