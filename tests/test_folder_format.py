"""The folder on disk: every file is strict JSON, and folders the ML-Dash SDK wrote are read and resumed."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from pathlib import Path

from ml_dash import Experiment
from support.experiments import PREFIX, exp_json, fields
from support.files import jsonl, strict_json

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
