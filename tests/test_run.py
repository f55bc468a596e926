"""The run life cycle (start, complete, fail, cancel, resume) and use outside a run, as COMPAT.md states them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment, MLDashError, NotStartedError
from support.experiments import exp_json, params_json, parse_utc
from support.files import jsonl

# -- run life cycle -----------------------------------------------------------------------


def test_run_context_manager_marks_completed(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run as inside:
        assert inside is exp
        assert exp_json(exp)["status"] == "RUNNING"
    assert exp.status == "COMPLETED"
    info = exp_json(exp)
    assert info["status"] == "COMPLETED"
    assert parse_utc(info["endedAt"]) >= parse_utc(info["startedAt"])


def test_exception_in_run_marks_failed_with_the_error_and_propagates(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with pytest.raises(ZeroDivisionError), exp.run:
        exp.metrics("train").log(loss=1.0)
        _ = 1 / 0
    info = exp_json(exp)
    assert info["status"] == "FAILED"
    assert "ZeroDivisionError" in info["metadata"]["error"]
    # What was logged before the failure is kept.
    assert len(jsonl(Path(exp.path) / "metrics/train/data.jsonl")) == 1


def test_keyboard_interrupt_in_run_marks_cancelled(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with pytest.raises(KeyboardInterrupt), exp.run:
        raise KeyboardInterrupt
    assert exp.status == "CANCELLED"
    assert exp_json(exp)["status"] == "CANCELLED"


def test_experiment_itself_works_as_the_run_context_manager(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp as inside:
        inside.log("x")
    assert exp_json(exp)["status"] == "COMPLETED"


@pytest.mark.parametrize(
    ("finish", "status"),
    [
        (lambda run: run.complete(), "COMPLETED"),
        (lambda run: run.fail("diverged"), "FAILED"),
        (lambda run: run.cancel(), "CANCELLED"),
    ],
    ids=["complete", "fail", "cancel"],
)
def test_run_by_hand_records_the_final_status(
    make_exp: Callable[..., Experiment], finish: Callable[[Any], Any], status: str
) -> None:
    exp = make_exp()
    assert exp.run.start() is exp
    assert exp_json(exp)["status"] == "RUNNING"
    exp.metrics("train").log(loss=0.1)
    finish(exp.run)
    assert exp.status == status
    info = exp_json(exp)
    assert info["status"] == status
    if status == "FAILED":
        assert "diverged" in info["metadata"]["error"]
    assert len(jsonl(Path(exp.path) / "metrics/train/data.jsonl")) == 1


def test_reopening_a_prefix_resumes_and_continues_metric_indexes(make_exp: Callable[..., Experiment]) -> None:
    first = make_exp()
    with first.run:
        for i in range(3):
            first.metrics("train").log(step=i)
    created = exp_json(first)["createdAt"]

    second = make_exp()
    with second.run:
        for i in range(3, 5):
            second.metrics("train").log(step=i)
        page = second.metrics("train").read()
    assert [p["index"] for p in page["data"]] == [0, 1, 2, 3, 4]
    assert [p["data"]["step"] for p in page["data"]] == [0, 1, 2, 3, 4]
    lines = jsonl(Path(second.path) / "metrics/train/data.jsonl")
    assert [line["index"] for line in lines] == [0, 1, 2, 3, 4]
    assert exp_json(second)["createdAt"] == created
    assert exp_json(second)["status"] == "COMPLETED"


def test_resume_keeps_params_and_continues_log_sequence_numbers(make_exp: Callable[..., Experiment]) -> None:
    first = make_exp()
    with first.run:
        first.params.set(lr=0.1, model={"depth": 18})
        first.log("one")
        first.log("two")
    second = make_exp()
    with second.run:
        second.params.set(lr=0.2)
        second.log("three")
        assert second.params.get() == {"lr": 0.2, "model.depth": 18}
    assert params_json(second)["version"] == 2
    lines = jsonl(Path(second.path) / "logs/logs.jsonl")
    assert [(line["sequenceNumber"], line["message"]) for line in lines] == [(0, "one"), (1, "two"), (2, "three")]


def test_resumed_failed_experiment_is_running_again_then_completed(make_exp: Callable[..., Experiment]) -> None:
    first = make_exp()
    with pytest.raises(RuntimeError), first.run:
        raise RuntimeError("boom")
    second = make_exp()
    second.run.start()
    assert exp_json(second)["status"] == "RUNNING"
    second.run.complete()
    assert exp_json(second)["status"] == "COMPLETED"


# -- use before start / after completion --------------------------------------------------

USES: dict[str, Callable[[Experiment], Any]] = {
    "params": lambda e: e.params,
    "params.set": lambda e: e.params.set(lr=1),
    "metrics.log": lambda e: e.metrics("train").log(loss=1.0),
    "tracks.append": lambda e: e.tracks("pose").append(x=1.0),
    "metrics": lambda e: e.metrics,
    "log": lambda e: e.log("hello"),
    "logs": lambda e: e.logs,
    "tracks": lambda e: e.tracks,
}


@pytest.mark.parametrize("use", list(USES.values()), ids=list(USES))
def test_use_before_start_raises_not_started_error(
    make_exp: Callable[..., Experiment], use: Callable[[Experiment], Any]
) -> None:
    exp = make_exp()
    with pytest.raises(NotStartedError) as info:
        use(exp)
    assert exp.prefix in str(info.value)
    assert "start" in str(info.value)


@pytest.mark.parametrize("use", list(USES.values()), ids=list(USES))
def test_use_after_completion_raises_not_started_error(
    make_exp: Callable[..., Experiment], use: Callable[[Experiment], Any], dash_root: Path
) -> None:
    exp = make_exp()
    with exp.run:
        pass
    before = sorted(p.relative_to(dash_root) for p in dash_root.rglob("*"))
    with pytest.raises(NotStartedError) as info:
        use(exp)
    assert exp.prefix in str(info.value)
    assert sorted(p.relative_to(dash_root) for p in dash_root.rglob("*")) == before


def test_stream_handles_kept_after_completion_refuse_new_data(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run:
        train = exp.metrics("train")
        topic = exp.tracks("robot/position")
        train.log(loss=1.0)
        topic.append(x=1.0, _ts=1.0)
    with pytest.raises(NotStartedError):
        train.log(loss=2.0)
    with pytest.raises(NotStartedError):
        topic.append(x=2.0, _ts=2.0)
    assert len(jsonl(Path(exp.path) / "metrics/train/data.jsonl")) == 1
    assert len(jsonl(Path(exp.path) / "tracks/robot/position/data.jsonl")) == 1


def test_not_started_error_is_an_ml_dash_error() -> None:
    assert issubclass(NotStartedError, MLDashError)
