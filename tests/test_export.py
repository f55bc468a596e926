"""Getting data out: streams as pandas/Arrow tables, open_many, and ``ml-dash export``."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ml_dash
from ml_dash import Experiment
from ml_dash.errors import InvalidValueError
from ml_dash.values import restore_nonfinite
from support.processes import child_env
from support.processes import ml_dash as run_cli

PREFIX = "alice/vision/resnet/run-1"
T0 = 1_700_000_000.0
LOSSES = [1.0, math.nan, math.inf, -math.inf, 0.25, 0.125]


def _log_train(exp: Experiment, lr: float = 1e-3, scale: float = 1.0) -> None:
    exp.params.set(lr=lr)
    for i, loss in enumerate(LOSSES):
        exp.metrics("train").log(loss=loss * scale, step=i, phase="warm" if i < 2 else "main", _ts=T0 + i)


def _same_floats(got: list[float], want: list[float]) -> bool:
    return len(got) == len(want) and all(
        (math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(got, want, strict=True)
    )


def test_metric_stream_to_pandas_gives_index_time_and_every_field_as_logged(tmp_path: Path) -> None:
    with Experiment(prefix=PREFIX, dash_root=tmp_path, echo=False).run as exp:
        _log_train(exp)
        live = exp.metrics("train").to_pandas()  # queued points included
    with ml_dash.open(PREFIX, root=tmp_path) as run:
        frame = run.metrics("train").to_pandas()
    for df in (live, frame):
        assert list(df.columns) == ["index", "time", "loss", "step", "phase"]
        assert df["index"].tolist() == list(range(6))
        assert df["time"].tolist() == [T0 + i for i in range(6)]
        assert _same_floats(df["loss"].tolist(), LOSSES)
        assert str(df["loss"].dtype) == "float64" and str(df["step"].dtype) == "int64"
        assert df["step"].tolist() == list(range(6))
        assert df["phase"].tolist() == ["warm", "warm", "main", "main", "main", "main"]


def test_nan_and_infinities_come_back_exactly_in_arrow_and_a_missing_field_is_null(tmp_path: Path) -> None:
    with Experiment(prefix=PREFIX, dash_root=tmp_path, echo=False).run as exp:
        _log_train(exp)
        exp.metrics("train").log(step=6, _ts=T0 + 6)  # no loss: missing, not NaN
    with ml_dash.open(PREFIX, root=tmp_path) as run:
        table = run.metrics("train").to_arrow()
        frame = run.metrics("train").to_pandas()
    assert table.schema.field("loss").type == pa.float64()
    assert table.schema.field("step").type == pa.int64()
    loss = table.column("loss").to_pylist()
    assert loss[6] is None, "a point without the field is null, not NaN"
    assert _same_floats(loss[:6], LOSSES)
    assert math.isnan(frame["loss"].iloc[6]) and frame["index"].tolist() == list(range(7))


def test_fields_named_index_or_time_are_renamed_and_never_overwrite_the_real_columns(tmp_path: Path) -> None:
    with Experiment(prefix=PREFIX, dash_root=tmp_path, echo=False).run as exp:
        for i in range(3):
            exp.metrics("train").log(index=100 + i, time="noon", **{"data.index": -i}, _ts=T0 + i)
        frame = exp.metrics("train").to_pandas()
        table = exp.metrics("train").to_arrow()
    assert list(frame.columns) == ["index", "time", "data.index", "data.time", "data.data.index"]
    assert frame["index"].tolist() == [0, 1, 2]
    assert frame["time"].tolist() == [T0, T0 + 1, T0 + 2]
    assert frame["data.index"].tolist() == [100, 101, 102]
    assert frame["data.time"].tolist() == ["noon"] * 3
    assert frame["data.data.index"].tolist() == [0, -1, -2]
    assert table.column_names == list(frame.columns)


def test_logs_and_tracks_to_pandas_and_arrow(tmp_path: Path) -> None:
    with Experiment(prefix=PREFIX, dash_root=tmp_path, echo=False).run as exp:
        exp.log("start", level="info", metadata={"epoch": 1, "lr": math.inf})
        exp.log("careful", level="warn")
        exp.tracks("robot/pos").append(_ts=1.0, x=1.0, arm={"y": 2.0})
        exp.tracks("robot/pos").append(_ts=2.0, x=math.nan, arm={"y": 2.5})
        live_logs = exp.logs.to_pandas()
        live_track = exp.tracks("robot/pos").to_pandas()
    with ml_dash.open(PREFIX, root=tmp_path) as run:
        logs, track = run.logs.to_pandas(), run.tracks("robot/pos").to_pandas()
        logs_table, track_table = run.logs.to_arrow(), run.tracks("robot/pos").to_arrow()
    for df in (logs, live_logs):
        assert list(df.columns) == ["index", "time", "level", "message", "metadata"]
        assert df["message"].tolist() == ["start", "careful"] and df["level"].tolist() == ["info", "warn"]
        assert df["metadata"].iloc[0] == {"epoch": 1, "lr": math.inf} and df["metadata"].iloc[1] is None
    for df in (track, live_track):
        assert list(df.columns) == ["time", "x", "arm.y"]
        assert df["time"].tolist() == [1.0, 2.0] and df["arm.y"].tolist() == [2.0, 2.5]
        assert df["x"].iloc[0] == 1.0 and math.isnan(df["x"].iloc[1])
    assert json.loads(logs_table.column("metadata")[0].as_py()) == {"epoch": 1, "lr": None}
    assert track_table.column("arm.y").to_pylist() == [2.0, 2.5]


def _three_runs(root: Path) -> None:
    for i, lr in enumerate([1e-3, 0.1, 1e-4]):
        with Experiment(prefix=f"alice/vision/lr/run-{i}", dash_root=root, echo=False).run as exp:
            _log_train(exp, lr=lr, scale=i + 1)
            if i == 2:
                exp.metrics("train").log(extra=7, _ts=T0 + 9)


def test_open_many_long_table_has_one_row_per_numeric_value_of_the_selected_experiments(tmp_path: Path) -> None:
    _three_runs(tmp_path)
    with ml_dash.open_many("params.lr < 0.01", root=tmp_path, sort="name") as runs:
        assert runs.prefixes == ["alice/vision/lr/run-0", "alice/vision/lr/run-2"]
        long = runs.metrics("train").to_pandas()
        long_table = runs.metrics("train").to_arrow(shape="long")
    assert list(long.columns) == ["experiment", "stream", "index", "time", "field", "value"]
    assert long_table.column_names == list(long.columns)
    assert set(long["stream"]) == {"train"}
    run0 = long[long["experiment"] == "alice/vision/lr/run-0"]
    assert _same_floats(run0[run0["field"] == "loss"]["value"].tolist(), LOSSES)
    assert run0[run0["field"] == "step"]["value"].tolist() == [float(i) for i in range(6)]
    assert set(run0["field"]) == {"loss", "step"}, "text fields are not in the long table"
    run2 = long[long["experiment"] == "alice/vision/lr/run-2"]
    assert _same_floats(run2[run2["field"] == "loss"]["value"].tolist(), [v * 3 for v in LOSSES])
    extra = run2[run2["field"] == "extra"]
    assert extra["index"].tolist() == [6] and extra["value"].tolist() == [7.0] and extra["time"].tolist() == [T0 + 9]
    assert len(long) == 2 * (6 + 6) + 1  # loss and step of 6 points in each, and one `extra`
    assert len(long_table) == len(long)


def test_open_many_wide_table_has_one_row_per_point_and_the_union_of_fields(tmp_path: Path) -> None:
    _three_runs(tmp_path)
    with ml_dash.open_many("params.lr < 0.01", root=tmp_path, sort="name") as runs:
        wide = runs.metrics("train").to_pandas(shape="wide")
        table = runs.metrics("train").to_arrow(shape="wide")
        assert [r.prefix for r in runs] == runs.prefixes and len(runs) == 2
        with pytest.raises(InvalidValueError, match="shape"):
            runs.metrics("train").to_pandas(shape="tall")
    assert list(wide.columns) == ["experiment", "index", "time", "loss", "step", "phase", "extra"]
    assert wide["experiment"].tolist() == ["alice/vision/lr/run-0"] * 6 + ["alice/vision/lr/run-2"] * 7
    assert wide["index"].tolist() == list(range(6)) + list(range(7))
    assert _same_floats(wide["loss"].tolist()[6:12], [v * 3 for v in LOSSES])
    assert table.column("extra").to_pylist() == [None] * 12 + [7]
    assert table.column("step").to_pylist() == list(range(6)) + list(range(6)) + [None]


def test_open_many_with_no_match_gives_empty_tables(tmp_path: Path) -> None:
    _three_runs(tmp_path)
    with ml_dash.open_many("params.lr > 1", root=tmp_path) as runs:
        assert len(runs) == 0
        assert runs.metrics("train").to_pandas().empty


@pytest.mark.parametrize(("module", "extra", "call"), [
    ("pandas", "ml-dash[pandas]", "to_pandas"),
    ("pyarrow", "ml-dash[arrow]", "to_arrow"),
])
def test_without_the_extra_the_call_names_the_extra_to_install(tmp_path: Path, module: str, extra: str,
                                                                call: str) -> None:
    with Experiment(prefix=PREFIX, dash_root=tmp_path, echo=False).run as exp:
        _log_train(exp)
    script = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "import ml_dash\n"
        "from ml_dash.track_formats import MissingExtraError\n"
        f"run = ml_dash.open({PREFIX!r}, root={str(tmp_path)!r})\n"
        "try:\n"
        f"    run.metrics('train').{call}()\n"
        "except MissingExtraError as exc:\n"
        "    print('missing:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=child_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "missing:" in done.stdout and f"pip install '{extra}'" in done.stdout


def test_export_parquet_without_pyarrow_is_a_one_line_error_and_writes_nothing(tmp_path: Path) -> None:
    with Experiment(prefix=PREFIX, dash_root=tmp_path, echo=False).run as exp:
        _log_train(exp)
    out = tmp_path / "out.parquet"
    script = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from ml_dash.cli import main\n"
        f"sys.exit(main(['export', 'alice/*', '--metric', 'train', '--format', 'parquet', '--root', "
        f"{str(tmp_path)!r}, '-o', {str(out)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=child_env(), timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "ml-dash[arrow]" in done.stderr
    assert not out.exists()


# -- ml-dash export ---------------------------------------------------------------------------


def _expected_rows() -> list[dict[str, Any]]:
    rows = []
    for i, scale in ((0, 1), (1, 2), (2, 3)):
        for j, loss in enumerate(LOSSES):
            rows.append({"experiment": f"alice/vision/lr/run-{i}", "index": j, "time": T0 + j, "loss": loss * scale,
                         "step": j, "phase": "warm" if j < 2 else "main"})
    rows.append({"experiment": "alice/vision/lr/run-2", "index": 6, "time": T0 + 9, "extra": 7})
    return rows


def _assert_rows_equal(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w), (g, w)
        for key, value in w.items():
            if isinstance(value, float) and math.isnan(value):
                assert isinstance(g[key], float) and math.isnan(g[key]), (key, g)
            else:
                assert g[key] == value and type(g[key]) is type(value), (key, g[key], value)


def test_export_jsonl_reads_back_equal_with_nan_and_infinities(tmp_path: Path) -> None:
    _three_runs(tmp_path)
    out = tmp_path / "train.jsonl"
    done = run_cli("export", "alice/vision/lr/*", "--metric", "train", "--format", "jsonl", "--root", str(tmp_path),
                   "-o", str(out))
    assert "19 rows of 3 experiments" in done.stderr
    rows = []
    for line in out.read_text().splitlines():
        row = json.loads(line)
        restore_nonfinite(row, row.pop("nonFinite", {}))
        rows.append(row)
    _assert_rows_equal(rows, _expected_rows())


def test_export_csv_to_stdout_reads_back_equal(tmp_path: Path) -> None:
    _three_runs(tmp_path)
    done = run_cli("--root", str(tmp_path), "export", "alice/vision/lr/run-?", "--metric", "train")
    lines = done.stdout.splitlines()
    assert lines[0] == "experiment,index,time,loss,step,phase,extra"
    frame = pd.read_csv(io.StringIO(done.stdout))
    want = _expected_rows()
    assert frame["experiment"].tolist() == [r["experiment"] for r in want]
    assert _same_floats(frame["loss"].tolist()[:18], [r["loss"] for r in want[:18]])
    assert frame["time"].tolist() == [r["time"] for r in want], "times survive the text round trip exactly"
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert rows[-1]["loss"] == "" and rows[-1]["extra"] == "7", "a missing value is an empty cell"


def test_export_parquet_reads_back_equal(tmp_path: Path) -> None:
    _three_runs(tmp_path)
    out = tmp_path / "train.parquet"
    run_cli("export", "alice/*", "--metric", "train", "--format", "parquet", "--root", str(tmp_path), "-o", str(out))
    table = pq.read_table(out)
    assert table.schema.field("step").type == pa.int64() and table.schema.field("loss").type == pa.float64()
    rows = [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]
    _assert_rows_equal(rows, _expected_rows())


def test_export_logs_and_tracks(tmp_path: Path) -> None:
    with Experiment(prefix=PREFIX, dash_root=tmp_path, echo=False).run as exp:
        exp.log("start", metadata={"epoch": 1})
        exp.tracks("robot/pos").append(_ts=1.0, x=1.0)
        exp.tracks("robot/pos").append(_ts=2.0, x=-math.inf)
    logs = run_cli("export", PREFIX, "--logs", "--format", "jsonl", "--root", str(tmp_path)).stdout
    (row,) = [json.loads(line) for line in logs.splitlines()]
    assert row["message"] == "start" and row["metadata"] == {"epoch": 1} and row["experiment"] == PREFIX
    out = tmp_path / "pos.csv"
    run_cli("export", PREFIX, "--tracks", "robot/pos", "--format", "csv", "--root", str(tmp_path), "-o", str(out))
    assert out.read_text().splitlines() == ["experiment,time,x", f"{PREFIX},1.0,1.0", f"{PREFIX},2.0,-inf"]


@pytest.mark.parametrize(("args", "message"), [
    (["bob/*", "--metric", "train"], "no experiment matches 'bob/*'"),
    (["alice/*", "--metric", "nope"], "no metric stream 'nope'"),
    (["alice/*", "--tracks", "nope"], "no track topic 'nope'"),
    (["alice/*", "--metric", "train", "-o", "/no/such/dir/x.csv"], "cannot write /no/such/dir/x.csv"),
    (["alice/*", "--metric", "train", "--url", "http://127.0.0.1:9", "--timeout", "2"], "cannot reach"),
])
def test_export_bad_input_is_a_one_line_error_and_a_nonzero_exit(tmp_path: Path, args: list[str],
                                                                 message: str) -> None:
    with Experiment(prefix=PREFIX, dash_root=tmp_path, echo=False).run as exp:
        _log_train(exp)
    root = [] if "--url" in args else ["--root", str(tmp_path)]
    done = run_cli("export", *args, *root, check=False)
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
