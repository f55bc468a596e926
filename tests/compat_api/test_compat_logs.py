"""Log lines as code written for the public ML-Dash SDK sees them (COMPAT-SURFACE.md, "Logs"):
the ``[LEVEL] message [k=v]`` echo on stdout/stderr, still switchable off, and extra
keywords merged into the metadata. Real temporary folders; the log file read from disk."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from ml_dash import Experiment
from support.files import jsonl
from support.processes import child_env


def log_lines(exp: Experiment) -> list[dict[str, object]]:
    exp.flush()
    return jsonl(Path(exp.path) / "logs" / "logs.jsonl")


def test_echo_reads_level_message_and_metadata_pairs(
    make_exp: Callable[..., Experiment], capsys: pytest.CaptureFixture[str]
) -> None:
    exp = make_exp(echo=True)
    with exp.run:
        exp.log("epoch done", level="info", metadata={"epoch": 3}, loss=0.25)
        exp.log("plain")
    assert capsys.readouterr().out.splitlines() == ["[INFO] epoch done [epoch=3, loss=0.25]", "[INFO] plain"]


@pytest.mark.parametrize(("level", "shown", "to_stderr"), [
    ("debug", "DEBUG", False), ("info", "INFO", False), ("warning", "WARN", False), ("WARN", "WARN", False),
    ("error", "ERROR", True), ("fatal", "FATAL", True),
])
def test_debug_info_warn_echo_to_stdout_and_error_fatal_to_stderr(
    make_exp: Callable[..., Experiment], capsys: pytest.CaptureFixture[str], level: str, shown: str, to_stderr: bool
) -> None:
    exp = make_exp(echo=True)
    with exp.run:
        exp.log("m", level=level)
    captured = capsys.readouterr()
    expected = f"[{shown}] m\n"
    assert (captured.err, captured.out) == ((expected, "") if to_stderr else ("", expected))


def test_level_shortcuts_echo_their_keywords(
    make_exp: Callable[..., Experiment], capsys: pytest.CaptureFixture[str]
) -> None:
    exp = make_exp(echo=True)
    with exp.run:
        exp.logs.warn("GPU memory low", free="1GB")
        exp.logs.error("failed", code=500)
    captured = capsys.readouterr()
    assert captured.out == "[WARN] GPU memory low [free=1GB]\n"
    assert captured.err == "[ERROR] failed [code=500]\n"


def test_echo_goes_to_the_stream_sys_holds_at_the_time_of_the_call(
    make_exp: Callable[..., Experiment], monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = make_exp(echo=True)
    with exp.run:
        swapped_out, swapped_err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "stdout", swapped_out)
        monkeypatch.setattr(sys, "stderr", swapped_err)
        exp.log("to the swapped stdout")
        exp.log("to the swapped stderr", level="error")
        monkeypatch.undo()
    assert swapped_out.getvalue() == "[INFO] to the swapped stdout\n"
    assert swapped_err.getvalue() == "[ERROR] to the swapped stderr\n"


def test_echo_off_prints_nothing_and_still_stores_the_line(
    make_exp: Callable[..., Experiment], capsys: pytest.CaptureFixture[str]
) -> None:
    exp = make_exp(echo=False)
    with exp.run:
        exp.log("quiet", level="error", k=1)
        exp.logs.info("quiet too")
        assert [line["message"] for line in log_lines(exp)] == ["quiet", "quiet too"]
    assert capsys.readouterr() == ("", "")


def test_ml_dash_echo_0_keeps_a_real_process_quiet_and_echo_on_prints_the_sdk_format(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        from ml_dash import Experiment
        with Experiment(prefix="a/b/c", dash_root={str(tmp_path / ".dash")!r}).run as exp:
            exp.log("hello", level="info", n=1)
            exp.log("boom", level="fatal")
    """)
    quiet = subprocess.run([sys.executable, "-c", script], env=child_env(ML_DASH_ECHO="0"), capture_output=True,
                           text=True, timeout=60, check=True)
    assert (quiet.stdout, quiet.stderr) == ("", "")
    loud = subprocess.run([sys.executable, "-c", script], env=child_env(ML_DASH_ECHO="1"), capture_output=True,
                          text=True, timeout=60, check=True)
    assert loud.stdout == "[INFO] hello [n=1]\n"
    assert loud.stderr == "[FATAL] boom\n"


def test_extra_keywords_merge_into_the_metadata_and_win_over_it(exp: Experiment) -> None:
    exp.log("step", metadata={"a": 1, "b": 2}, b=3, c="x")
    exp.log("only extra", level="warn", epoch=4)
    exp.log("none")
    lines = log_lines(exp)
    assert lines[0]["metadata"] == {"a": 1, "b": 3, "c": "x"}
    assert (lines[1]["level"], lines[1]["metadata"]) == ("warn", {"epoch": 4})
    assert not lines[2].get("metadata")


def test_extra_keywords_do_not_change_the_callers_metadata_dict(exp: Experiment) -> None:
    meta = {"a": 1}
    exp.log("m", metadata=meta, b=2)
    assert meta == {"a": 1}


def test_an_unstorable_extra_value_raises_and_writes_nothing(exp: Experiment) -> None:
    with pytest.raises(ValueError, match="metadata"):
        exp.log("m", bad=object())
    assert exp.logs.read()["logs"] == []
