"""Reading what ML-Dash wrote, independently of its own (msgspec-based) reader.

Everything is parsed with the standard ``json`` module as strict RFC 8259 JSON: bare
``NaN`` or ``Infinity`` tokens are an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def strict_json(text: str | bytes) -> Any:
    """Parse RFC 8259 JSON: NaN / Infinity tokens are an error (stdlib accepts them)."""

    def reject(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name!r}")

    return json.loads(text, parse_constant=reject)


def jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a complete JSON-lines file, strictly parsed (it must end with a newline, no blank lines)."""
    assert path.is_file(), f"missing {path}"
    raw = path.read_text(encoding="utf-8")
    assert raw.endswith("\n"), f"{path} does not end with a newline"
    assert "\n\n" not in raw, f"{path} has a blank line"
    # Split on "\n" only: JSON strings may hold U+2028, U+0085 ... which splitlines() splits on.
    return [strict_json(line) for line in raw.split("\n")[:-1]]


def read_jsonl(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], bytes]:
    """(every complete line parsed as JSON, the torn tail after the last newline) of a file being written.

    Fails the test if a complete line is not valid (strict) JSON. A missing file is empty.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return [], b""
    *lines, tail = raw.split(b"\n")
    parsed = []
    for number, line in enumerate(lines):
        try:
            parsed.append(strict_json(line))
        except ValueError as exc:
            raise AssertionError(f"{path}: line {number} is not valid JSON ({exc}): {line[:200]!r}") from exc
    return parsed, tail


def exp_dir(root: str | os.PathLike[str], prefix: str) -> Path:
    return Path(root, *prefix.split("/"))


def metric_file(root: str | os.PathLike[str], prefix: str, name: str) -> Path:
    return exp_dir(root, prefix).joinpath("metrics", *name.split("/"), "data.jsonl")


def track_file(root: str | os.PathLike[str], prefix: str, topic: str) -> Path:
    return exp_dir(root, prefix).joinpath("tracks", *topic.split("/"), "data.jsonl")


def logs_file(root: str | os.PathLike[str], prefix: str) -> Path:
    return exp_dir(root, prefix) / "logs" / "logs.jsonl"


def spooled_left(folder: Path) -> list[Path]:
    """Request files (pending or rejected) a remote-mode client left in its spool under ``folder``."""
    return sorted(p for p in folder.rglob("*.req")) if folder.exists() else []
