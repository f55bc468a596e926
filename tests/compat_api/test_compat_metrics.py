"""Metrics as code written for the public ML-Dash SDK uses them (COMPAT-SURFACE.md, "Metrics"):
the unnamed stream, dict fields into named streams, chaining, streams kept across runs,
``list_all`` and ``summary_cache``. Real temporary folders; files read back from disk."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

import pytest

from ml_dash import Experiment, InvalidValueError, NotStartedError
from support.experiments import fields
from support.files import jsonl


def points(exp: Experiment, name: str) -> list[dict[str, object]]:
    return jsonl(Path(exp.path) / "metrics" / name / "data.jsonl")


# -- the unnamed stream and dict fields ---------------------------------------------------


def test_metrics_log_without_a_name_writes_the_unnamed_stream_stored_as_none(exp: Experiment) -> None:
    exp.metrics.log(epoch=1, lr=0.1)
    exp.flush()
    (line,) = points(exp, "None")
    assert {k: v for k, v in line["data"].items() if k != "_ts"} == {"epoch": 1, "lr": 0.1}
    assert exp.metrics(None).stats()["name"] == "None"
    assert exp.metrics(None) is exp.metrics("None")


def test_dict_valued_fields_go_to_named_streams_with_the_plain_fields(exp: Experiment) -> None:
    exp.metrics.log(epoch=3, train={"loss": 0.5, "acc": 0.8}, eval=dict(loss=0.7))
    assert [fields(p) for p in exp.metrics("train").read()["data"]] == [{"epoch": 3, "loss": 0.5, "acc": 0.8}]
    assert [fields(p) for p in exp.metrics("eval").read()["data"]] == [{"epoch": 3, "loss": 0.7}]
    assert [fields(p) for p in exp.metrics(None).read()["data"]] == [{"epoch": 3}]


def test_dict_fields_win_over_plain_fields_of_the_same_name(exp: Experiment) -> None:
    exp.metrics.log(step=1, train={"step": 99, "loss": 1.0})
    assert fields(exp.metrics("train").read()["data"][0]) == {"step": 99, "loss": 1.0}


def test_only_dict_fields_log_nothing_to_the_unnamed_stream(exp: Experiment) -> None:
    exp.metrics.log(train={"loss": 1.0})
    assert exp.metrics("train").stats()["totalDataPoints"] == 1
    assert [s["name"] for s in exp.metrics.list()] == ["train"]


def test_ts_applies_to_every_point_of_one_metrics_log_call(exp: Experiment) -> None:
    exp.metrics.log(epoch=1, train={"loss": 1.0}, eval={"loss": 2.0}, _ts=1234.5)
    for name in ("None", "train", "eval"):
        assert exp.metrics(None if name == "None" else name).read()["data"][0]["data"]["_ts"] == 1234.5


def test_without_ts_one_metrics_log_call_gives_all_its_points_one_time(exp: Experiment) -> None:
    exp.metrics.log(epoch=1, train={"loss": 1.0}, eval={"loss": 2.0})
    times = {exp.metrics(n).read()["data"][0]["data"]["_ts"] for n in (None, "train", "eval")}
    assert len(times) == 1


def test_metrics_log_chains_and_returns_the_metrics_object(exp: Experiment) -> None:
    returned = exp.metrics.log(epoch=1).log(epoch=2).flush().log(epoch=3)
    assert returned is exp.metrics
    assert [fields(p)["epoch"] for p in exp.metrics(None).read()["data"]] == [1, 2, 3]


def test_flush_keyword_writes_the_file_before_log_returns(exp: Experiment) -> None:
    # ``exp`` never flushes on its own during a test (flush_interval=3600): only _flush wrote it.
    exp.metrics.log(epoch=7, train={"loss": 0.25}, _flush=True)
    assert [line["data"]["epoch"] for line in points(exp, "None")] == [7]
    assert [line["data"]["loss"] for line in points(exp, "train")] == [0.25]


def test_metrics_log_without_fields_or_with_a_bad_stream_name_is_an_error(exp: Experiment) -> None:
    with pytest.raises(InvalidValueError):
        exp.metrics.log()
    with pytest.raises(InvalidValueError):
        exp.metrics.log(_ts=5.0)
    with pytest.raises(ValueError, match=r"\.\."):
        exp.metrics.log(epoch=1, **{"..": {"loss": 1.0}})
    # The bad name was refused before anything was logged.
    assert exp.metrics.list() == []


def test_metrics_flush_returns_an_object_with_log(exp: Experiment) -> None:
    exp.metrics.flush().log(epoch=1)
    assert exp.metrics(None).stats()["totalDataPoints"] == 1


# -- streams that outlive a run -----------------------------------------------------------


def test_a_stream_object_logs_again_after_complete_and_start(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    exp.run.start()
    train = exp.metrics("train")
    train.log(loss=1.0)
    exp.run.complete()
    with pytest.raises(NotStartedError):
        train.log(loss=99.0)
    assert train.read()["total"] == 1  # read through it while no run goes
    exp.run.start()
    assert exp.metrics("train") is train
    train.log(loss=2.0)
    exp.run.complete()
    assert [p["index"] for p in train.read()["data"]] == [0, 1]
    assert [line["data"]["loss"] for line in points(exp, "train")] == [1.0, 2.0]


def test_a_track_topic_object_appends_again_after_complete_and_start(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run:
        pose = exp.tracks("robot/pose")
        pose.append(x=1.0, _ts=1.0)
    assert [e["x"] for e in pose.read()] == [1.0]
    with exp.run:
        assert exp.tracks("robot/pose") is pose
        pose.append(x=2.0, _ts=2.0)
    assert [e["x"] for e in pose.read()] == [1.0, 2.0]


# -- list_all ---------------------------------------------------------------------------


def test_list_all_of_a_stream_lists_every_stream_with_int_counts(exp: Experiment) -> None:
    train = exp.metrics("train")
    train.log(loss=1.0).log(loss=2.0)
    exp.metrics("eval").log(loss=3.0)
    exp.metrics.log(epoch=1)
    listed = {s["name"]: s["totalDataPoints"] for s in train.list_all()}
    assert listed == {"None": 1, "eval": 1, "train": 2}
    assert all(type(n) is int for n in listed.values())
    assert exp.metrics.list_all() == train.list_all()


# -- summary_cache ----------------------------------------------------------------------


def test_summarize_logs_mean_min_max_count_and_sample_std_with_the_set_fields(exp: Experiment) -> None:
    train = exp.metrics("train")
    for v in (1.0, 2.0, 4.0):
        train.summary_cache.store(loss=v)
    train.summary_cache.set(epoch=1, lr=0.1)
    train.summary_cache.set(lr=0.05)  # replaces lr, keeps epoch
    train.summary_cache.summarize()
    (point,) = train.read()["data"]
    assert fields(point) == {
        "epoch": 1, "lr": 0.05, "loss.mean": pytest.approx(7 / 3), "loss.min": 1.0, "loss.max": 4.0,
        "loss.count": 3, "loss.std": pytest.approx(statistics.stdev([1.0, 2.0, 4.0])),
    }


def test_summary_of_one_value_has_std_zero(exp: Experiment) -> None:
    train = exp.metrics("train")
    train.summary_cache.store(loss=3)
    train.summary_cache.summarize()
    assert fields(train.read()["data"][0]) == {"loss.mean": 3.0, "loss.min": 3.0, "loss.max": 3.0,
                                               "loss.count": 1, "loss.std": 0.0}


def test_none_and_nan_are_left_out_and_a_key_with_only_nan_gives_nothing(exp: Experiment) -> None:
    train = exp.metrics("train")
    train.summary_cache.store(loss=None, acc=None)
    train.summary_cache.store(loss=2.0, acc=float("nan"))
    train.summary_cache.summarize()
    got = fields(train.read()["data"][0])
    assert got["loss.count"] == 1 and got["loss.mean"] == 2.0
    assert not any(k.startswith("acc.") for k in got)


def test_summarize_with_nothing_stored_or_set_logs_nothing(exp: Experiment) -> None:
    train = exp.metrics("train")
    assert train.summary_cache.summarize() is None
    train.summary_cache.store(loss=float("nan"))  # stored, but no non-NaN value and nothing set
    train.summary_cache.summarize()
    assert train.stats()["totalDataPoints"] == 0


def test_set_alone_logs_the_set_fields(exp: Experiment) -> None:
    train = exp.metrics("train")
    train.summary_cache.set(epoch=4)
    train.summary_cache.summarize()
    assert [fields(p) for p in train.read()["data"]] == [{"epoch": 4}]


def test_summarize_clears_by_default_and_clear_false_keeps_accumulating(exp: Experiment) -> None:
    train = exp.metrics("train")
    cache = train.summary_cache
    cache.store(loss=1.0)
    cache.set(epoch=1)
    cache.summarize(clear=False)
    cache.store(loss=3.0)
    cache.summarize(clear=False)
    cache.summarize()  # clears
    cache.summarize()  # nothing left: logs nothing
    got = [fields(p) for p in train.read()["data"]]
    assert [(g["loss.count"], g["loss.mean"], g["epoch"]) for g in got] == [(1, 1.0, 1), (2, 2.0, 1), (2, 2.0, 1)]
    assert cache.peek() == {}


def test_store_turns_values_into_floats_and_refuses_non_numbers_naming_the_key(exp: Experiment) -> None:
    cache = exp.metrics("train").summary_cache
    cache.store(loss=True, n="2.5")
    assert cache.peek() == {"loss": [1.0], "n": [2.5]}
    with pytest.raises(ValueError, match="'loss'"):
        cache.store(loss="high")
    with pytest.raises(ValueError, match="'x'"):
        cache.store(ok=1.0, x=object())
    assert cache.peek() == {"loss": [1.0], "n": [2.5]}  # nothing of a refused call was kept


def test_peek_gives_the_last_values_per_key_without_changing_anything(exp: Experiment) -> None:
    cache = exp.metrics("train").summary_cache
    for i in range(8):
        cache.store(loss=float(i), acc=i / 10)
    assert cache.peek("loss", limit=3) == {"loss": [5.0, 6.0, 7.0]}
    assert cache.peek() == {"loss": [3.0, 4.0, 5.0, 6.0, 7.0], "acc": [0.3, 0.4, 0.5, 0.6, 0.7]}
    assert cache.peek("nothing", "loss", limit=1) == {"loss": [7.0]}
    assert len(cache.peek("acc", limit=None)["acc"]) == 8
    cache.summarize()
    assert fields(exp.metrics("train").read()["data"][0])["loss.count"] == 8


def test_summary_cache_is_one_object_per_stream(exp: Experiment) -> None:
    assert exp.metrics("train").summary_cache is exp.metrics("train").summary_cache
    assert exp.metrics("train").summary_cache is not exp.metrics("eval").summary_cache


def test_summary_cache_values_are_kept_when_the_point_cannot_be_logged(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp()
    with exp.run:
        cache = exp.metrics("train").summary_cache
        cache.store(loss=1.0)
    with pytest.raises(NotStartedError):
        cache.summarize()
    assert cache.peek() == {"loss": [1.0]}


# -- log_summary -----------------------------------------------------------------------


@pytest.mark.parametrize("agg", ["avg", "p42", "MEAN", ""])
def test_log_summary_with_an_unknown_aggregation_says_unsupported_aggregation(exp: Experiment, agg: str) -> None:
    exp.metrics("train").buffer(loss=1.0)
    with pytest.raises(ValueError, match="Unsupported aggregation") as info:
        exp.metrics.buffer.log_summary("mean", agg)
    assert repr(agg) in str(info.value)
    assert exp.metrics("train").stats()["totalDataPoints"] == 0


def test_log_summary_of_the_unnamed_stream_buffer(exp: Experiment) -> None:
    exp.metrics(None).buffer(loss=2.0).buffer(loss=4.0)
    exp.metrics.buffer.log_summary("mean", "max", epoch=1)
    assert fields(exp.metrics(None).read()["data"][0]) == {"epoch": 1, "loss.mean": 3.0, "loss.max": 4.0}
