"""Metric streams: logging, timestamps, reads, stats, files and summaries, as COMPAT.md states them."""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml_dash import Experiment, InvalidValueError
from support.experiments import fields
from support.files import jsonl, strict_json

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
