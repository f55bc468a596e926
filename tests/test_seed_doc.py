"""Every ```python snippet of the seed document runs verbatim inside a started experiment.

The snippets are read from ``shared/seed/tracking-data.md`` at test time (never copied
here). Whatever a snippet needs that it does not define itself (a ``config.json``, a
command line, a ``risky_operation``, earlier data to read back) is provided by the
environment around it, not by editing the snippet. After each one runs, the effects it
describes are checked on disk and in the values it leaves behind.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment
from support.files import jsonl, strict_json

SHARED_SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "tracking-data.md"
# A copy kept in the repository, so a checkout without shared/ next to it still runs
# every snippet; test_repository_copy_matches_the_shared_seed catches drift.
REPO_SEED = Path(__file__).resolve().parent / "data" / "tracking-data.md"
SEED = SHARED_SEED if SHARED_SEED.is_file() else REPO_SEED
PREFIX = "seed/tracking/docs/run-1"


@dataclass(frozen=True)
class Snippet:
    section: str  # "## ..." heading
    title: str  # "### ..." heading
    code: str
    line: int  # 1-based line of the first code line in the document

    @property
    def id(self) -> str:
        return f"{self.section} / {self.title}"


def test_repository_copy_matches_the_shared_seed() -> None:
    if not SHARED_SEED.is_file():
        pytest.skip(f"no shared seed at {SHARED_SEED} to compare the repository copy with")
    assert REPO_SEED.read_text(encoding="utf-8") == SHARED_SEED.read_text(encoding="utf-8")


def _read_seed() -> str:
    if not SEED.is_file():
        pytest.skip(f"seed document not found at {SEED} (expected next to the repository in shared/seed/)")
    return SEED.read_text(encoding="utf-8")


def _parse_snippets(text: str) -> list[Snippet]:
    snippets: list[Snippet] = []
    section = title = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section, title = line[3:].strip(), ""
        elif line.startswith("### "):
            title = line[4:].strip()
        elif line.strip() == "```python":
            start = i + 1
            end = start
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            snippets.append(Snippet(section, title, "\n".join(lines[start:end]) + "\n", start + 1))
            i = end
        i += 1
    return snippets


def _local_mode_paths(text: str) -> list[str]:
    """The backticked paths listed under ``### Local Mode`` in the Storage Format section."""
    paths: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("#"):
            inside = line.strip() == "### Local Mode"
            continue
        if inside:
            paths.extend(re.findall(r"`([^`]+)`", line))
    return paths


def _all_snippets() -> list[Snippet]:
    if not SEED.is_file():
        return []
    return _parse_snippets(SEED.read_text(encoding="utf-8"))


# -- helpers ------------------------------------------------------------------------------


def _fields(line: dict[str, Any]) -> dict[str, Any]:
    """The user fields of a stored metric line (``_ts`` checked and removed)."""
    data = dict(line["data"])
    ts = data.pop("_ts")
    assert isinstance(ts, float | int) and not isinstance(ts, bool) and ts > 0
    return data


def _params_file(folder: Path) -> dict[str, Any]:
    return strict_json((folder / "parameters.json").read_text(encoding="utf-8"))


class Harness:
    """A started experiment plus the environment the snippets run in."""

    def __init__(self, dash_root: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.workdir = workdir
        self.monkeypatch = monkeypatch
        # A long flush interval: reads in the snippets must see unflushed points.
        self.exp = Experiment(prefix=PREFIX, dash_root=dash_root, flush_interval=3600)
        self.exp.run.start()
        self.folder = Path(self.exp.path)
        self.globals: dict[str, Any] = {"__name__": "__seed__", "experiment": self.exp}

    def run(self, snippet: Snippet) -> None:
        code = compile(snippet.code, f"{SEED}:{snippet.line}", "exec")
        exec(code, self.globals)

    def finish(self) -> None:
        if self.exp.status == "RUNNING":
            self.exp.run.complete()


@pytest.fixture
def harness(dash_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    h = Harness(dash_root, workdir, monkeypatch)
    yield h
    h.finish()


# -- what each snippet needs and what it must do ------------------------------------------

CONFIG = {"model": {"name": "vit", "layers": 12}, "lr": 0.0003, "augment": ["flip", "crop"], "seed": 7}
RISKY_MESSAGE = "disk quota exceeded"


class RiskyError(RuntimeError):
    pass


def _risky_operation() -> Any:
    raise RiskyError(RISKY_MESSAGE)


def _prepare(snippet_id: str, h: Harness) -> None:
    if snippet_id.endswith("/ From Config Files"):
        (h.workdir / "config.json").write_text(json.dumps(CONFIG), encoding="utf-8")
    elif snippet_id.endswith("/ Error Tracking"):
        h.globals["risky_operation"] = _risky_operation
    elif snippet_id.endswith("/ Reading Metrics"):
        for i in range(3):
            h.exp.metrics("loss").log(value=1.0 / (i + 1), step=i)
    elif snippet_id.endswith("/ Get Stats"):
        for i in range(4):
            h.exp.metrics("train").log(loss=0.1 * i, epoch=i)


def _expect_raises(snippet_id: str) -> type[BaseException] | None:
    return RiskyError if snippet_id.endswith("/ Error Tracking") else None


def check_params_basic(h: Harness, out: str) -> None:
    expected = {"learning_rate": 0.001, "batch_size": 32, "optimizer": "adam", "epochs": 100}
    got = h.exp.params.get()
    assert {k: got.get(k) for k in expected} == expected
    h.finish()
    doc = _params_file(h.folder)
    assert doc["data"] == expected
    assert doc["version"] == 1


def check_params_nested(h: Harness, out: str) -> None:
    expected = {
        "model.architecture": "resnet50",
        "model.pretrained": True,
        "optimizer.type": "adam",
        "optimizer.lr": 0.001,
    }
    assert h.exp.params.get() == expected
    assert h.exp.params.get(flatten=False) == {
        "model": {"architecture": "resnet50", "pretrained": True},
        "optimizer": {"type": "adam", "lr": 0.001},
    }
    h.finish()
    data = _params_file(h.folder)["data"]
    assert data == expected
    assert "model" not in data and "optimizer" not in data


def check_params_config(h: Harness, out: str) -> None:
    expected = {"model.name": "vit", "model.layers": 12, "lr": 0.0003, "augment": ["flip", "crop"], "seed": 7}
    h.finish()
    assert _params_file(h.folder)["data"] == expected


def check_params_argparse(h: Harness, out: str) -> None:
    h.finish()
    assert _params_file(h.folder)["data"] == {"lr": 0.001}


def check_metrics_basic(h: Harness, out: str) -> None:
    h.finish()
    train = jsonl(h.folder / "metrics" / "train" / "data.jsonl")
    evals = jsonl(h.folder / "metrics" / "eval" / "data.jsonl")
    assert [line["index"] for line in train] == [0]
    assert _fields(train[0]) == {"loss": 0.5, "epoch": 1}
    assert [line["index"] for line in evals] == [0]
    assert _fields(evals[0]) == {"accuracy": 0.85, "step": 100, "epoch": 1}


def check_metrics_multiple_fields(h: Harness, out: str) -> None:
    h.finish()
    lines = jsonl(h.folder / "metrics" / "metrics" / "data.jsonl")
    assert len(lines) == 1
    assert _fields(lines[0]) == {"loss": 0.5, "accuracy": 0.85, "learning_rate": 0.001, "epoch": 1}


def check_metrics_multiple_streams(h: Harness, out: str) -> None:
    h.finish()
    train = jsonl(h.folder / "metrics" / "train" / "data.jsonl")
    evals = jsonl(h.folder / "metrics" / "eval" / "data.jsonl")
    assert [line["index"] for line in train] == list(range(5))
    assert [line["index"] for line in evals] == list(range(5))
    assert [_fields(line) for line in train] == [{"loss": 0.5 - e * 0.1, "epoch": e} for e in range(5)]
    assert [_fields(line) for line in evals] == [{"loss": 0.6 - e * 0.1, "epoch": e} for e in range(5)]


def check_metrics_flexible(h: Harness, out: str) -> None:
    h.finish()
    lines = jsonl(h.folder / "metrics" / "flexible" / "data.jsonl")
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert [_fields(line) for line in lines] == [
        {"field_a": 1, "field_b": 2},
        {"field_a": 3, "field_c": 4},
        {"field_a": 5, "field_b": 6, "field_c": 7},
    ]


def check_metrics_reading(h: Harness, out: str) -> None:
    result = h.globals["result"]
    assert isinstance(result, dict)
    points = result["data"]
    assert [p["index"] for p in points] == [0, 1, 2]
    assert [{k: v for k, v in p["data"].items() if k != "_ts"} for p in points] == [
        {"value": 1.0 / (i + 1), "step": i} for i in range(3)
    ]
    printed = [line for line in out.splitlines() if line.startswith("Index ")]
    assert [line.split(":", 1)[0] for line in printed] == ["Index 0", "Index 1", "Index 2"]
    assert "'step': 2" in printed[2]


def check_metrics_stats(h: Harness, out: str) -> None:
    stats = h.globals["stats"]
    assert type(stats["totalDataPoints"]) is int
    assert stats["totalDataPoints"] == 4
    assert "Total points: 4" in out.splitlines()


def check_logging_basic(h: Harness, out: str) -> None:
    h.finish()
    lines = jsonl(h.folder / "logs" / "logs.jsonl")
    assert [(line["level"], line["message"]) for line in lines] == [
        ("info", "Training started"),
        ("info", "Model: ResNet-50"),
        ("warn", "GPU memory low"),
        ("error", "Failed to load"),
    ]
    assert [line["sequenceNumber"] for line in lines] == [0, 1, 2, 3]


def check_logging_metadata(h: Harness, out: str) -> None:
    h.finish()
    lines = jsonl(h.folder / "logs" / "logs.jsonl")
    assert len(lines) == 1
    assert lines[0]["level"] == "info"
    assert lines[0]["message"] == "Epoch completed"
    assert lines[0]["metadata"] == {"epoch": 5, "train_loss": 0.234, "val_loss": 0.456}


def check_logging_error_tracking(h: Harness, out: str) -> None:
    h.finish()
    lines = jsonl(h.folder / "logs" / "logs.jsonl")
    assert len(lines) == 1
    assert lines[0]["level"] == "error"
    assert lines[0]["message"] == f"Operation failed: {RISKY_MESSAGE}"
    assert lines[0]["metadata"] == {"error_type": "RiskyError"}


CHECKS: dict[str, Callable[[Harness, str], None]] = {
    "Parameters (Hyperparameters) / Basic Usage": check_params_basic,
    "Parameters (Hyperparameters) / Nested Parameters (Auto-flattened)": check_params_nested,
    "Parameters (Hyperparameters) / From Config Files": check_params_config,
    "Parameters (Hyperparameters) / From argparse": check_params_argparse,
    "Metrics (Time Series) / Basic Usage": check_metrics_basic,
    "Metrics (Time Series) / Multiple Fields Per Point": check_metrics_multiple_fields,
    "Metrics (Time Series) / Multiple Metric Streams": check_metrics_multiple_streams,
    "Metrics (Time Series) / Flexible Schema": check_metrics_flexible,
    "Metrics (Time Series) / Reading Metrics": check_metrics_reading,
    "Metrics (Time Series) / Get Stats": check_metrics_stats,
    "Logging / Basic Usage": check_logging_basic,
    "Logging / Structured Metadata": check_logging_metadata,
    "Logging / Error Tracking": check_logging_error_tracking,
}


# -- tests --------------------------------------------------------------------------------


def test_seed_document_has_python_snippets_for_every_checked_section() -> None:
    snippets = _parse_snippets(_read_seed())
    ids = [s.id for s in snippets]
    assert len(snippets) >= len(CHECKS)
    missing = sorted(set(CHECKS) - set(ids))
    assert not missing, f"seed sections without a ```python snippet any more: {missing}"


@pytest.mark.parametrize("snippet", _all_snippets() or [None], ids=lambda s: s.id if s else "no-seed")
def test_seed_snippet_runs_verbatim_and_has_its_documented_effect(
    snippet: Snippet | None, harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    _read_seed()  # skips with a reason when the document is absent
    assert snippet is not None
    _prepare(snippet.id, harness)
    expected_error = _expect_raises(snippet.id)
    if expected_error is None:
        harness.run(snippet)
    else:
        with pytest.raises(expected_error, match=RISKY_MESSAGE):
            harness.run(snippet)
    out = capsys.readouterr().out
    check = CHECKS.get(snippet.id)
    if check is not None:
        check(harness, out)
    harness.finish()
    assert harness.exp.status == "COMPLETED"
    assert harness.exp.close_report is not None and harness.exp.close_report.ok, str(harness.exp.close_report)


def test_argparse_snippet_stores_the_value_given_on_the_command_line(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    (snippet,) = [s for s in _parse_snippets(_read_seed()) if s.title == "From argparse"]
    monkeypatch.setattr(sys, "argv", ["train.py", "--lr", "0.05"])
    harness.run(snippet)
    assert harness.exp.params.get() == {"lr": 0.05}


def test_reading_snippet_on_an_empty_stream_prints_nothing_and_returns_an_empty_page(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    (snippet,) = [s for s in _parse_snippets(_read_seed()) if s.title == "Reading Metrics"]
    harness.run(snippet)
    assert harness.globals["result"]["data"] == []
    assert "Index" not in capsys.readouterr().out


def test_all_seed_snippets_in_one_experiment_fill_the_documented_local_storage_paths(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _read_seed()
    snippets = _parse_snippets(text)
    for snippet in snippets:
        _prepare(snippet.id, harness)
        expected_error = _expect_raises(snippet.id)
        if expected_error is None:
            harness.run(snippet)
        else:
            with pytest.raises(expected_error):
                harness.run(snippet)
    # The seed has no tracks snippet; the storage section lists tracks, so add one entry.
    harness.exp.tracks("robot/position").append(x=1.0, y=2.0)
    harness.finish()
    capsys.readouterr()

    paths = _local_mode_paths(text)
    assert len(paths) == 4, f"expected four local storage paths in the seed, found {paths}"
    names = {"{name}": ["train", "eval", "metrics", "flexible", "loss"], "{topic}": ["robot/position"]}
    checked = 0
    for pattern in paths:
        concrete = [pattern]
        for placeholder, values in names.items():
            if placeholder in pattern:
                concrete = [pattern.replace(placeholder, v) for v in values]
        for rel in concrete:
            path = harness.folder / rel
            assert path.is_file(), f"{rel} (from seed {pattern!r}) is missing under {harness.folder}"
            raw = path.read_text(encoding="utf-8")
            if rel.endswith(".jsonl"):
                assert raw.strip(), f"{rel} is empty"
                for line in raw.split("\n")[:-1]:
                    strict_json(line)
            else:
                strict_json(raw)
            checked += 1
    assert checked == 1 + 5 + 1 + 1

    # The parameters of all four parameter snippets merged into one flat document.
    data = _params_file(harness.folder)["data"]
    assert data["model.architecture"] == "resnet50"
    assert data["optimizer.type"] == "adam"
    assert data["model.name"] == "vit"
    assert data["lr"] == 0.001  # argparse ran after the config file and overwrote its lr
    assert data["epochs"] == 100
    assert _params_file(harness.folder)["version"] == 4
    # The train stream: 1 (basic) + 5 (streams) + 4 (stats environment) points, gapless.
    train = jsonl(harness.folder / "metrics" / "train" / "data.jsonl")
    assert [line["index"] for line in train] == list(range(10))
    levels = [line["level"] for line in jsonl(harness.folder / "logs" / "logs.jsonl")]
    assert levels == ["info", "info", "warn", "error", "info", "error"]
