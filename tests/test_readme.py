"""Every example in the README runs, and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from support.processes import ml_dash, running

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def _expected_prints(code: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s*print\(.*\)\s+# (.+)$", code, flags=re.M)]


README_URL = "http://127.0.0.1:8000"


def test_readme_python_examples_run_and_print_what_they_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = _blocks("python")
    assert blocks, "README has no python examples"
    with running(root=tmp_path / "server-root") as server:
        for code in blocks:
            _run_block(code.replace(README_URL, server.url))


def _run_block(code: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    printed = out.getvalue().strip().splitlines()
    assert printed == _expected_prints(code)


def test_readme_cli_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for code in _blocks("python"):
        if README_URL not in code:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    commands = [
        line.split("#")[0].strip()
        for block in _blocks("sh")
        for line in block.splitlines()
        if line.startswith("ml-dash ") and not line.startswith("ml-dash serve")
    ]
    assert len(commands) >= 4
    for command in commands:
        args = command.split()[1:]
        result = ml_dash(*args, check=False)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        assert result.stdout.strip(), f"{command} printed nothing"


def test_readme_names_the_commands_the_makefile_has() -> None:
    makefile = (README.parent / "Makefile").read_text()
    for target in re.findall(r"^make (\S+)", README.read_text(), flags=re.M):
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), target
