"""Behaviour of the public API as COMPAT.md states it, against real temporary folders."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import itertools
import json
import math
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml_dash import Experiment, InvalidNameError, InvalidValueError, MLDashError, NotStartedError

PREFIX = "alice/vision/resnet/run-1"


# -- helpers ------------------------------------------------------------------------------


def strict_json(text: str) -> Any:
    """Parse RFC 8259 JSON: NaN / Infinity tokens are an error (stdlib accepts them)."""

    def reject(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name!r}")

    return json.loads(text, parse_constant=reject)


def jsonl(path: Path) -> list[dict[str, Any]]:
    raw = path.read_text(encoding="utf-8")
    assert raw.endswith("\n"), f"{path} does not end with a newline"
    assert "\n\n" not in raw, f"{path} has a blank line"
    # Split on "\n" only: JSON strings may hold U+2028, U+0085 ... which splitlines() splits on.
    return [strict_json(line) for line in raw.split("\n")[:-1]]


def exp_json(exp: Experiment) -> dict[str, Any]:
    return strict_json((Path(exp.path) / "experiment.json").read_text(encoding="utf-8"))


def params_json(exp: Experiment) -> dict[str, Any]:
    return strict_json((Path(exp.path) / "parameters.json").read_text(encoding="utf-8"))


def fields(point: dict[str, Any]) -> dict[str, Any]:
    """A read-back point's user fields (without ``_ts``)."""
    return {k: v for k, v in point["data"].items() if k != "_ts"}


def parse_utc(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.utcoffset() == dt.timedelta(0), f"{text!r} is not UTC"
    return parsed


def after(t: float) -> float:
    """Wait (busy, microseconds) until the wall clock has moved past ``t``; return now."""
    now = time.time()
    while now <= t:
        now = time.time()
    return now


def same_float(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return type(a) is type(b) and a == b


@pytest.fixture
def make_exp(dash_root: Path) -> Iterator[Callable[..., Experiment]]:
    made: list[Experiment] = []

    def make(prefix: str | None = PREFIX, **kw: Any) -> Experiment:
        kw.setdefault("dash_root", dash_root)
        exp = Experiment(prefix=prefix, **kw) if prefix is not None else Experiment(**kw)
        made.append(exp)
        return exp

    yield make
    for exp in made:
        if exp.status == "RUNNING":
            exp.run.complete()


@pytest.fixture
def exp(make_exp: Callable[..., Experiment]) -> Experiment:
    """A started experiment whose background writer never flushes on its own during a test."""
    e = make_exp(flush_interval=3600)
    e.run.start()
    return e


# -- prefix forms -------------------------------------------------------------------------


def test_four_part_prefix_makes_owner_project_folder_name_folders(
    make_exp: Callable[..., Experiment], dash_root: Path
) -> None:
    exp = make_exp("alice/vision/resnet/run-1")
    with exp.run:
        pass
    folder = dash_root / "alice" / "vision" / "resnet" / "run-1"
    assert Path(exp.path) == folder
    info = exp_json(exp)
    assert (info["name"], info["project"], info["prefix"]) == ("run-1", "vision", "alice/vision/resnet/run-1")
    assert (exp.owner, exp.project, exp.name) == ("alice", "vision", "run-1")


def test_deeper_prefix_keeps_every_folder(make_exp: Callable[..., Experiment], dash_root: Path) -> None:
    exp = make_exp("alice/vision/a/b/c/run-9")
    with exp.run:
        pass
    assert (dash_root / "alice/vision/a/b/c/run-9/experiment.json").is_file()
    assert exp_json(exp)["prefix"] == "alice/vision/a/b/c/run-9"


def test_two_part_prefix_takes_the_owner_from_ml_dash_owner_env(
    make_exp: Callable[..., Experiment], dash_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_DASH_OWNER", "bob")
    exp = make_exp("vision/run-2")
    with exp.run:
        pass
    assert exp.prefix == "bob/vision/run-2"
    assert (dash_root / "bob" / "vision" / "run-2" / "experiment.json").is_file()
    assert exp_json(exp)["project"] == "vision"


def test_two_part_prefix_without_owner_env_uses_the_user_name(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp("vision/run-3")
    assert exp.prefix == f"{getpass.getuser()}/vision/run-3"


def test_prefix_comes_from_ml_dash_prefix_env_when_none_is_given(
    make_exp: Callable[..., Experiment], dash_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_DASH_PREFIX", "carol/nlp/bert/run-7")
    exp = make_exp(None)
    with exp.run:
        exp.log("hello")
    assert exp.prefix == "carol/nlp/bert/run-7"
    assert (dash_root / "carol/nlp/bert/run-7/logs/logs.jsonl").is_file()


def test_explicit_prefix_wins_over_ml_dash_prefix_env(
    make_exp: Callable[..., Experiment], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_DASH_PREFIX", "carol/nlp/bert/run-7")
    assert make_exp("alice/vision/run-1").prefix == "alice/vision/run-1"


def test_project_keyword_with_a_short_prefix(
    make_exp: Callable[..., Experiment], dash_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_DASH_OWNER", "dave")
    exp = make_exp("run-5", project="vision")
    with exp.run:
        pass
    assert exp.prefix == "dave/vision/run-5"
    assert exp.project == "vision" and exp.name == "run-5"
    assert (dash_root / "dave/vision/run-5/experiment.json").is_file()


def test_missing_prefix_is_a_clear_error(make_exp: Callable[..., Experiment]) -> None:
    with pytest.raises(InvalidNameError, match="prefix"):
        make_exp(None)


def test_experiment_json_records_description_tags_and_metadata(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp(tags=["baseline", "gpu"], readme="first try", metadata={"seed": 3, "host": "n1"})
    with exp.run:
        pass
    info = exp_json(exp)
    assert info["description"] == "first try"
    assert info["tags"] == ["baseline", "gpu"]
    assert info["metadata"] == {"seed": 3, "host": "n1"}
    assert parse_utc(info["createdAt"]).timestamp() > 0


def test_description_keyword_is_stored(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp(description="described")
    with exp.run:
        pass
    assert exp_json(exp)["description"] == "described"


def test_nothing_is_written_before_the_run_starts(make_exp: Callable[..., Experiment], dash_root: Path) -> None:
    make_exp()
    assert not dash_root.exists()


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


# -- params -------------------------------------------------------------------------------


def test_params_set_merges_into_stored_params(exp: Experiment) -> None:
    exp.params.set(lr=0.1, batch_size=32)
    exp.params.set(batch_size=64, epochs=10)
    assert exp.params.get() == {"lr": 0.1, "batch_size": 64, "epochs": 10}
    assert params_json(exp)["data"] == {"lr": 0.1, "batch_size": 64, "epochs": 10}


def test_params_nested_dicts_are_flattened_with_dots_and_lists_stay_values(exp: Experiment) -> None:
    exp.params.set(model={"encoder": {"layers": 12, "heads": [4, 8]}, "dropout": 0.1}, tags=["a", "b"])
    expected = {"model.encoder.layers": 12, "model.encoder.heads": [4, 8], "model.dropout": 0.1, "tags": ["a", "b"]}
    assert exp.params.get() == expected
    assert params_json(exp)["data"] == expected


def test_params_nested_set_merges_with_earlier_flat_keys(exp: Experiment) -> None:
    exp.params.set(model={"depth": 18, "width": 64})
    exp.params.set(model={"depth": 50})
    assert exp.params.get() == {"model.depth": 50, "model.width": 64}


def test_params_get_flatten_false_returns_the_nested_form(exp: Experiment) -> None:
    exp.params.set(**{"model": {"encoder": {"layers": 12}, "dropout": 0.1}, "lr": 0.001})
    assert exp.params.get(flatten=False) == {"model": {"encoder": {"layers": 12}, "dropout": 0.1}, "lr": 0.001}


def test_params_version_counts_set_calls(exp: Experiment) -> None:
    for i in range(3):
        exp.params.set(step=i)
    doc = params_json(exp)
    assert doc["version"] == 3
    assert doc["data"] == {"step": 2}
    assert parse_utc(doc["updatedAt"]) >= parse_utc(doc["createdAt"])


def test_params_accept_argparse_namespace(exp: Experiment) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--name", default="run")
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args(["--lr", "0.5", "--fast"])
    exp.params.set(**vars(args))
    assert exp.params.get() == {"lr": 0.5, "layers": [1, 2], "name": "run", "fast": True}


def test_params_accept_dataclasses_asdict(exp: Experiment) -> None:
    @dataclasses.dataclass
    class Optim:
        name: str = "adam"
        betas: tuple[float, float] = (0.9, 0.999)

    @dataclasses.dataclass
    class Config:
        lr: float = 0.01
        optim: Optim = dataclasses.field(default_factory=Optim)

    exp.params.set(**dataclasses.asdict(Config()))
    assert exp.params.get() == {"lr": 0.01, "optim.name": "adam", "optim.betas": [0.9, 0.999]}


def test_params_with_unstorable_value_raise_naming_the_param_and_store_nothing_of_the_call(exp: Experiment) -> None:
    exp.params.set(lr=0.1)
    with pytest.raises(InvalidValueError, match=r"model\.weird"):
        exp.params.set(ok=1, model={"weird": object()})
    assert exp.params.get() == {"lr": 0.1}
    assert params_json(exp)["version"] == 1


# -- metrics ------------------------------------------------------------------------------


def test_metric_log_appends_points_with_any_fields(exp: Experiment) -> None:
    exp.metrics("train").log(loss=0.5, epoch=1)
    exp.metrics("train").log(accuracy=0.8)
    page = exp.metrics("train").read()
    assert [p["index"] for p in page["data"]] == [0, 1]
    assert [fields(p) for p in page["data"]] == [{"loss": 0.5, "epoch": 1}, {"accuracy": 0.8}]


def test_metric_streams_are_independent(exp: Experiment) -> None:
    exp.metrics("train").log(loss=1.0)
    exp.metrics("train").log(loss=0.9)
    exp.metrics("eval").log(acc=0.5)
    assert [p["index"] for p in exp.metrics("eval").read()["data"]] == [0]
    assert exp.metrics("train").stats()["totalDataPoints"] == 2


def test_metric_points_get_a_wall_clock_timestamp(exp: Experiment) -> None:
    before = time.time()
    exp.metrics("train").log(loss=1.0)
    ts = exp.metrics("train").read()["data"][0]["data"]["_ts"]
    assert isinstance(ts, float)
    assert before <= ts <= time.time()


def test_metric_ts_argument_sets_the_timestamp(exp: Experiment) -> None:
    exp.metrics("train").log(loss=1.0, _ts=1000.25)
    exp.metrics("train").log(loss=0.5, _ts=2000)
    data = exp.metrics("train").read()["data"]
    assert [p["data"]["_ts"] for p in data] == [1000.25, 2000.0]
    stats = exp.metrics("train").stats()
    assert (stats["firstDataAt"], stats["lastDataAt"]) == (1000.25, 2000.0)


def test_metric_ts_minus_one_reuses_this_threads_last_time_across_streams(exp: Experiment) -> None:
    exp.metrics("train").log(loss=1.0)
    exp.metrics("eval").log(acc=0.5, _ts=-1)
    exp.metrics("lr").log(value=0.1, _ts=-1)
    train_ts = exp.metrics("train").read()["data"][0]["data"]["_ts"]
    assert exp.metrics("eval").read()["data"][0]["data"]["_ts"] == train_ts
    assert exp.metrics("lr").read()["data"][0]["data"]["_ts"] == train_ts

    exp.metrics("train").log(loss=0.9, _ts=5555.5)
    exp.metrics("eval").log(acc=0.6, _ts=-1)
    assert exp.metrics("eval").read(start_index=1)["data"][0]["data"]["_ts"] == 5555.5


def test_metric_ts_minus_one_in_another_thread_does_not_reuse_this_threads_time(exp: Experiment) -> None:
    exp.metrics("train").log(loss=1.0, _ts=1234.5)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            exp.metrics("worker").log(x=1, _ts=-1)
        except BaseException as e:
            errors.append(e)

    before = time.time()
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert not errors
    ts = exp.metrics("worker").read()["data"][0]["data"]["_ts"]
    assert ts != 1234.5
    assert ts >= before


@pytest.mark.parametrize("bad_ts", ["yesterday", float("nan"), -5.0, float("inf")])
def test_metric_invalid_ts_is_a_clear_error(exp: Experiment, bad_ts: Any) -> None:
    with pytest.raises(InvalidValueError, match="_ts"):
        exp.metrics("train").log(loss=1.0, _ts=bad_ts)
    assert exp.metrics("train").stats()["totalDataPoints"] == 0


def test_metric_read_pages_report_start_end_total_and_has_more(exp: Experiment) -> None:
    for i in range(25):
        exp.metrics("train").log(step=i)
    first = exp.metrics("train").read(start_index=0, limit=10)
    assert [p["index"] for p in first["data"]] == list(range(10))
    assert (first["startIndex"], first["endIndex"], first["total"], first["hasMore"]) == (0, 9, 25, True)
    last = exp.metrics("train").read(start_index=20, limit=10)
    assert [p["data"]["step"] for p in last["data"]] == list(range(20, 25))
    assert (last["startIndex"], last["endIndex"], last["total"], last["hasMore"]) == (20, 24, 25, False)
    exact = exp.metrics("train").read(start_index=15, limit=10)
    assert (exact["endIndex"], exact["hasMore"]) == (24, False)
    for key in ("startIndex", "endIndex", "total"):
        assert type(first[key]) is int
    assert type(first["hasMore"]) is bool


def test_metric_read_past_the_end_returns_no_points(exp: Experiment) -> None:
    for i in range(5):
        exp.metrics("train").log(step=i)
    page = exp.metrics("train").read(start_index=5, limit=10)
    assert page["data"] == []
    assert (page["total"], page["hasMore"]) == (5, False)
    assert exp.metrics("train").read(start_index=100)["data"] == []


def test_metric_read_default_returns_at_most_1000_points(exp: Experiment) -> None:
    stream = exp.metrics("train")
    for i in range(1005):
        stream.log(step=i)
    page = stream.read()
    assert len(page["data"]) == 1000
    assert (page["total"], page["hasMore"], page["endIndex"]) == (1005, True, 999)


def test_read_from_middle_returns_limit_points(exp: Experiment) -> None:
    stream = exp.metrics("train")
    for i in range(5000):
        stream.log(step=i, loss=1.0 / (i + 1), tag=f"p{i}")
    for start in (1, 1234, 2500, 4990):
        page = stream.read(start_index=start, limit=7)
        expected = [i for i in range(start, min(start + 7, 5000))]
        assert [p["index"] for p in page["data"]] == expected
        assert [fields(p) for p in page["data"]] == [
            {"step": i, "loss": 1.0 / (i + 1), "tag": f"p{i}"} for i in expected
        ]
        assert page["startIndex"] == start


def test_metric_read_and_stats_of_an_empty_stream(exp: Experiment) -> None:
    page = exp.metrics("never").read()
    assert page["data"] == []
    assert (page["total"], page["hasMore"]) == (0, False)
    stats = exp.metrics("never").stats()
    assert stats["totalDataPoints"] == 0 and type(stats["totalDataPoints"]) is int


def test_metric_stats_counts_points_as_int_with_name_and_times(exp: Experiment) -> None:
    for i in range(7):
        exp.metrics("train").log(loss=float(i), _ts=100.0 + i)
    stats = exp.metrics("train").stats()
    assert type(stats["totalDataPoints"]) is int
    assert stats["totalDataPoints"] == 7
    assert stats["name"] == "train"
    assert (stats["firstDataAt"], stats["lastDataAt"]) == (100.0, 106.0)


def test_metrics_list_and_list_all_give_every_stream_with_its_count(exp: Experiment) -> None:
    for _ in range(3):
        exp.metrics("train").log(loss=1.0)
    exp.metrics("eval").log(acc=1.0)
    exp.metrics("train/grad").log(norm=2.0)
    for listing in (exp.metrics.list(), exp.metrics.list_all()):
        counts = {s["name"]: s["totalDataPoints"] for s in listing}
        assert counts == {"train": 3, "eval": 1, "train/grad": 1}
        assert all(type(s["totalDataPoints"]) is int for s in listing)


def test_metric_reads_see_points_the_background_writer_has_not_written(exp: Experiment) -> None:
    # flush_interval=3600: the background writer does not flush during this test.
    stream = exp.metrics("train")
    for i in range(10):
        stream.log(step=i)
    assert [p["data"]["step"] for p in stream.read()["data"]] == list(range(10))
    stream.log(step=10)
    assert stream.stats()["totalDataPoints"] == 11
    stream.log(step=11)
    assert {s["name"]: s["totalDataPoints"] for s in exp.metrics.list()} == {"train": 12}


def test_metric_stream_flush_writes_the_data_file(exp: Experiment) -> None:
    exp.metrics("train").log(loss=1.0).log(loss=2.0)
    exp.metrics("train").flush()
    lines = jsonl(Path(exp.path) / "metrics/train/data.jsonl")
    assert [line["data"]["loss"] for line in lines] == [1.0, 2.0]


def test_experiment_flush_writes_all_streams_and_metadata(exp: Experiment) -> None:
    exp.metrics("train").log(loss=1.0)
    exp.log("hi")
    exp.tracks("pose").append(x=1.0, _ts=1.0)
    exp.flush()
    folder = Path(exp.path)
    assert len(jsonl(folder / "metrics/train/data.jsonl")) == 1
    assert len(jsonl(folder / "logs/logs.jsonl")) == 1
    assert len(jsonl(folder / "tracks/pose/data.jsonl")) == 1
    meta = strict_json((folder / "metrics/train/metadata.json").read_text())
    assert meta["totalDataPoints"] == 1


def test_metric_metadata_json_holds_name_count_and_next_index(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run:
        for i in range(4):
            exp.metrics("train", description="training loss", tags=["loss"]).log(loss=float(i))
    meta = strict_json((Path(exp.path) / "metrics/train/metadata.json").read_text())
    assert meta["name"] == "train"
    assert meta["totalDataPoints"] == 4 and type(meta["totalDataPoints"]) is int
    assert meta["nextIndex"] == 4
    assert meta["description"] == "training loss"
    assert meta["tags"] == ["loss"]


def test_metric_data_lines_have_index_and_data_with_ts(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run:
        exp.metrics("train").log(loss=0.5, epoch=1, _ts=1700000000.5)
    (line,) = jsonl(Path(exp.path) / "metrics/train/data.jsonl")
    assert line["index"] == 0
    assert line["data"] == {"loss": 0.5, "epoch": 1, "_ts": 1700000000.5}


def test_metric_log_without_fields_is_an_error(exp: Experiment) -> None:
    with pytest.raises(InvalidValueError):
        exp.metrics("train").log()


def test_metric_unstorable_value_raises_naming_the_field_and_loses_nothing_else(exp: Experiment) -> None:
    stream = exp.metrics("train")
    stream.log(step=0)
    with pytest.raises(InvalidValueError, match="weird_field"):
        stream.log(step=1, weird_field=object())
    stream.log(step=2)
    page = stream.read()
    assert [p["data"]["step"] for p in page["data"]] == [0, 2]
    assert [p["index"] for p in page["data"]] == [0, 1]


def test_metric_values_numpy_scalars_nan_and_inf_round_trip(exp: Experiment) -> None:
    exp.metrics("train").log(
        a=np.float32(0.5), b=np.int64(7), c=np.bool_(True), d=float("nan"), e=float("inf"), f=-math.inf, g=2**80
    )
    (point,) = exp.metrics("train").read()["data"]
    got = fields(point)
    assert got["a"] == 0.5 and type(got["a"]) is float
    assert got["b"] == 7 and type(got["b"]) is int
    assert got["c"] is True
    assert math.isnan(got["d"]) and got["e"] == math.inf and got["f"] == -math.inf
    assert got["g"] == 2**80


def test_buffer_then_log_summary_logs_aggregates(exp: Experiment) -> None:
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    for v in values:
        exp.metrics("train").buffer(loss=v, acc=v / 10)
    logged = exp.metrics.buffer.log_summary("mean", "min", "max", "std", "count", "p95", epoch=3)
    page = exp.metrics("train").read()
    assert len(page["data"]) == 1
    got = fields(page["data"][0])
    assert got["epoch"] == 3
    assert got["loss.mean"] == pytest.approx(statistics.fmean(values))
    assert got["loss.min"] == 1.0
    assert got["loss.max"] == 10.0
    assert got["loss.std"] == pytest.approx(statistics.stdev(values))
    assert got["loss.count"] == 5
    assert got["loss.p95"] == pytest.approx(float(np.percentile(values, 95)))
    assert got["acc.max"] == pytest.approx(1.0)
    assert logged["train"]["loss.max"] == 10.0


def test_log_summary_defaults_to_mean_and_clears_the_buffer(exp: Experiment) -> None:
    exp.metrics("train").buffer(loss=1.0)
    exp.metrics("train").buffer(loss=3.0)
    exp.metrics("eval").buffer(acc=0.5)
    exp.metrics.buffer.log_summary()
    assert fields(exp.metrics("train").read()["data"][0]) == {"loss.mean": 2.0}
    assert fields(exp.metrics("eval").read()["data"][0]) == {"acc.mean": 0.5}
    exp.metrics.buffer.log_summary()
    assert exp.metrics("train").stats()["totalDataPoints"] == 1


def test_log_summary_rejects_an_unknown_aggregation(exp: Experiment) -> None:
    exp.metrics("train").buffer(loss=1.0)
    with pytest.raises(InvalidValueError, match="bogus"):
        exp.metrics.buffer.log_summary("bogus")


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


def test_logs_are_echoed_to_stderr_by_default(
    make_exp: Callable[..., Experiment], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ML_DASH_ECHO")
    exp = make_exp()
    with exp.run:
        exp.log("echo me please", level="warning")
    err = capsys.readouterr().err
    assert "echo me please" in err
    assert "warn" in err


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
    assert "loud line" in capsys.readouterr().err


# -- tracks -------------------------------------------------------------------------------


def test_track_append_writes_timestamped_entries(exp: Experiment) -> None:
    topic = exp.tracks("robot/position")
    topic.append(x=1.0, y=2.0, _ts=10.0)
    topic.append(x=1.5, y=2.5, _ts=11.0)
    assert topic.read() == [{"timestamp": 10.0, "x": 1.0, "y": 2.0}, {"timestamp": 11.0, "x": 1.5, "y": 2.5}]


def test_track_topic_with_slash_is_a_nested_folder(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run:
        exp.tracks("robot/position").append(x=1.0, _ts=5.0)
    (line,) = jsonl(Path(exp.path) / "tracks" / "robot" / "position" / "data.jsonl")
    assert (line["timestamp"], line["x"]) == (5.0, 1.0)  # the store may add keys of its own


def test_track_entries_with_the_same_timestamp_merge(exp: Experiment) -> None:
    topic = exp.tracks("pose")
    topic.append(x=1.0, _ts=5.0)
    topic.append(y=2.0, _ts=5.0)
    topic.append(x=3.0, _ts=6.0)
    topic.flush()
    topic.append(z=9.0, x=4.0, _ts=6.0)  # in a later batch: still merges, later fields win
    assert topic.read() == [{"timestamp": 5.0, "x": 1.0, "y": 2.0}, {"timestamp": 6.0, "x": 4.0, "z": 9.0}]


def test_track_default_timestamps_strictly_increase(exp: Experiment) -> None:
    topic = exp.tracks("fast")
    before = time.time()
    for i in range(300):
        topic.append(i=i)
    entries = topic.read()
    assert [e["i"] for e in entries] == list(range(300))
    stamps = [e["timestamp"] for e in entries]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert stamps[0] >= before


def test_track_default_timestamp_after_an_explicit_future_one_still_increases(exp: Experiment) -> None:
    topic = exp.tracks("pose")
    future = time.time() + 10_000
    topic.append(x=1, _ts=future)
    topic.append(x=2)
    entries = topic.read()
    assert len(entries) == 2
    assert entries[1]["timestamp"] > future


def test_track_ts_minus_one_lines_up_with_metrics_and_other_topics(exp: Experiment) -> None:
    exp.metrics("train").log(loss=1.0)
    exp.tracks("robot/position").append(x=1.0, _ts=-1)
    exp.tracks("robot/velocity").append(v=0.5, _ts=-1)
    metric_ts = exp.metrics("train").read()["data"][0]["data"]["_ts"]
    assert exp.tracks("robot/position").read()[0]["timestamp"] == metric_ts
    assert exp.tracks("robot/velocity").read()[0]["timestamp"] == metric_ts

    exp.tracks("robot/position").append(x=2.0, _ts=777.0)
    exp.metrics("eval").log(acc=0.1, _ts=-1)
    assert exp.metrics("eval").read()["data"][0]["data"]["_ts"] == 777.0


def test_track_read_with_time_range_and_columns(exp: Experiment) -> None:
    topic = exp.tracks("pose")
    for i in range(10):
        topic.append(x=float(i), y=float(-i), label=f"t{i}", _ts=100.0 + i)
    window = topic.read(start_timestamp=103.0, end_timestamp=106.0)
    assert [e["timestamp"] for e in window] == [103.0, 104.0, 105.0, 106.0]
    assert window[0] == {"timestamp": 103.0, "x": 3.0, "y": -3.0, "label": "t3"}
    only_x = topic.read(start_timestamp=108.0, columns=["x"])
    assert only_x == [{"timestamp": 108.0, "x": 8.0}, {"timestamp": 109.0, "x": 9.0}]
    assert [e["timestamp"] for e in topic.read(end_timestamp=101.0)] == [100.0, 101.0]


def test_track_read_returns_time_order_even_when_appended_out_of_order(exp: Experiment) -> None:
    topic = exp.tracks("pose")
    topic.append(x=3, _ts=3.0)
    topic.append(x=1, _ts=1.0)
    topic.flush()
    topic.append(x=2, _ts=2.0)
    assert [e["x"] for e in topic.read()] == [1, 2, 3]


def test_track_slice_find_by_time_gives_the_last_entry_at_or_before(exp: Experiment) -> None:
    topic = exp.tracks("pose")
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):
        topic.append(x=t * 10, _ts=t)
    view = topic.slice(2.0, 4.0)
    assert [e["timestamp"] for e in view] == [2.0, 3.0, 4.0]
    assert len(view) == 3
    assert view.findByTime(3.5)["x"] == 30.0
    assert view.findByTime(3.0)["x"] == 30.0
    assert view.findByTime(100.0)["x"] == 40.0
    assert view.findByTime(1.5) is None


def test_track_flush_writes_the_data_file(exp: Experiment) -> None:
    topic = exp.tracks("pose")
    topic.append(x=1.0, _ts=1.0)
    topic.append(x=2.0, _ts=2.0)
    topic.flush()
    lines = jsonl(Path(exp.path) / "tracks/pose/data.jsonl")
    assert [line["x"] for line in lines] == [1.0, 2.0]


def test_track_nested_field_dicts_are_flattened_with_dots(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run:
        exp.tracks("robot").append(pose={"x": 1.0, "rot": {"yaw": 0.1}}, speed=2.0, _ts=3.0)
        assert exp.tracks("robot").read() == [{"timestamp": 3.0, "pose.x": 1.0, "pose.rot.yaw": 0.1, "speed": 2.0}]
    (line,) = jsonl(Path(exp.path) / "tracks/robot/data.jsonl")
    expected = {"timestamp": 3.0, "pose.x": 1.0, "pose.rot.yaw": 0.1, "speed": 2.0}
    assert {k: line.get(k) for k in expected} == expected  # the store may add keys of its own
    assert "pose" not in line and "pose.rot" not in line


def test_track_metadata_json_holds_columns_count_and_time_span(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run:
        topic = exp.tracks("robot/position")
        topic.append(x=1.0, _ts=10.0)
        topic.append(y=2.0, _ts=12.5)
    meta = strict_json((Path(exp.path) / "tracks/robot/position/metadata.json").read_text())
    assert set(meta["columns"]) >= {"x", "y"}
    assert meta["totalEntries"] == 2
    assert (meta["firstTimestamp"], meta["lastTimestamp"]) == (10.0, 12.5)


def test_track_append_without_fields_or_with_reserved_field_is_an_error(exp: Experiment) -> None:
    with pytest.raises(InvalidValueError):
        exp.tracks("pose").append(_ts=1.0)
    with pytest.raises(InvalidValueError, match="timestamp"):
        exp.tracks("pose").append(timestamp=5.0, x=1.0)


@pytest.mark.parametrize("name", ["_batchId", "batchId", "_nonFinite", "nonFinite", "index", "data", "_x"])
def test_track_field_names_the_store_uses_itself_round_trip_or_are_rejected(exp: Experiment, name: str) -> None:
    topic = exp.tracks("pose")
    try:
        topic.append(_ts=1.0, x=1, **{name: "user value"})
        rejected = False
    except InvalidValueError as err:
        assert name in str(err)
        rejected = True
    assert topic.read() == ([] if rejected else [{"timestamp": 1.0, "x": 1, name: "user value"}])
    topic.append(_ts=2.0, x=2)
    assert [e["x"] for e in topic.read()] == ([2] if rejected else [1, 2])


@pytest.mark.parametrize("name", ["batchId", "_batchId", "nonFinite", "_nonFinite", "index", "data"])
def test_metric_field_names_the_store_uses_itself_round_trip(exp: Experiment, name: str) -> None:
    exp.metrics("m").log(x=1, **{name: "user value"})
    (point,) = exp.metrics("m").read()["data"]
    assert fields(point) == {"x": 1, name: "user value"}


def test_invalid_metric_and_topic_names_are_rejected_before_touching_disk(exp: Experiment, dash_root: Path) -> None:
    with pytest.raises(InvalidNameError, match=r"\.\./escape"):
        exp.metrics("../escape")
    with pytest.raises(InvalidNameError):
        exp.tracks("/abs")
    assert not (dash_root.parent / "escape").exists()
    assert not any(p.name == "escape" for p in dash_root.rglob("*"))


# -- files are strict JSON ----------------------------------------------------------------


def test_every_written_file_is_strict_json_and_non_finite_values_read_back_exactly(
    make_exp: Callable[..., Experiment],
) -> None:
    exp = make_exp()
    odd = {"nan": float("nan"), "inf": math.inf, "ninf": -math.inf, "list": [1.0, float("nan")], "big": 2**70}
    with exp.run:
        exp.params.set(**odd)
        exp.metrics("train").log(**odd)
        exp.log("odd values", metadata=odd)
        exp.tracks("pose").append(_ts=1.0, **odd)
    folder = Path(exp.path)
    checked = 0
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl"):
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".jsonl":
                jsonl(path)
            else:
                strict_json(text)
            checked += 1
    assert checked >= 7  # experiment, parameters, metric data+metadata, logs, track data+metadata

    with make_exp().run as again:
        got_params = again.params.get()
        got_metric = fields(again.metrics("train").read()["data"][0])
        got_log = again.logs.read()["logs"][0]["metadata"]
        got_track = {k: v for k, v in again.tracks("pose").read()[0].items() if k != "timestamp"}
    for got in (got_params, got_metric, got_log, got_track):
        assert math.isnan(got["nan"]) and got["inf"] == math.inf and got["ninf"] == -math.inf
        assert got["list"][0] == 1.0 and math.isnan(got["list"][1])
        assert got["big"] == 2**70 and type(got["big"]) is int


# -- folders written by the ML-Dash SDK ---------------------------------------------------


def test_resume_reads_sdk_written_metric_and_log_lines(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    folder = Path(exp.path)
    (folder / "metrics/train").mkdir(parents=True)
    (folder / "logs").mkdir(parents=True)
    (folder / "experiment.json").write_text(
        json.dumps(
            {
                "name": "run-1",
                "project": "vision",
                "description": None,
                "tags": [],
                "prefix": PREFIX,
                "metadata": {},
                "createdAt": "2025-01-02T03:04:05.000Z",
            }
        )
    )
    (folder / "metrics/train/data.jsonl").write_text(
        "".join(
            json.dumps({"index": i, "data": {"loss": 1.0 / (i + 1)}, "createdAt": f"2025-01-02T03:04:0{i}.000000Z"})
            + "\n"
            for i in range(3)
        )
    )
    (folder / "logs/logs.jsonl").write_text(
        json.dumps(
            {
                "sequenceNumber": 0,
                "timestamp": "2025-01-02T03:04:05.000Z",
                "level": "info",
                "message": "sdk line",
                "metadata": {},
            }
        )
        + "\n"
    )
    with exp.run:
        exp.metrics("train").log(loss=0.1)
        page = exp.metrics("train").read()
        stats = exp.metrics("train").stats()
        exp.log("our line")
        logs = exp.logs.read()
        in_2025 = exp.logs.read(
            start_time=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).timestamp(),
            end_time=dt.datetime(2025, 12, 31, tzinfo=dt.timezone.utc).timestamp(),
        )
    assert [p["index"] for p in page["data"]] == [0, 1, 2, 3]
    assert [p["data"]["loss"] for p in page["data"]] == [1.0, 0.5, 1.0 / 3, 0.1]
    assert stats["totalDataPoints"] == 4
    assert stats["firstDataAt"] == dt.datetime(2025, 1, 2, 3, 4, 0, tzinfo=dt.timezone.utc).timestamp()
    assert [(r["sequenceNumber"], r["message"]) for r in logs["logs"]] == [(0, "sdk line"), (1, "our line")]
    assert [r["message"] for r in in_2025["logs"]] == ["sdk line"]
    assert exp_json(exp)["createdAt"].startswith("2025-01-02T03:04:05")
