"""Getting data out of a server: to_pandas/to_arrow, open_many and ``ml-dash export --url``
against a real ``ml-dash serve`` process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq

import ml_dash
from ml_dash import Experiment
from ml_dash.values import restore_nonfinite
from support.processes import ml_dash as run_cli
from support.processes import running

T0 = 1_700_000_000.0
LOSSES = [1.0, math.nan, math.inf, -math.inf, 0.5]


def _same_floats(got: list[float], want: list[float]) -> bool:
    return len(got) == len(want) and all(
        (math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(got, want, strict=True)
    )


def test_streams_of_a_server_come_out_as_tables_and_files(tmp_path: Path) -> None:
    with running(root=tmp_path / "server") as server:
        for i, lr in enumerate([1e-3, 0.1]):
            with Experiment(prefix=f"alice/vision/run-{i}", dash_url=server.url, dash_root=None).run as exp:
                exp.params.set(lr=lr)
                for j, loss in enumerate(LOSSES):
                    exp.metrics("train").log(loss=loss, step=j, index=-j, _ts=T0 + j)
                exp.log("done", metadata={"n": i})
                exp.tracks("pos").append(_ts=1.0, x=float(i))
                live = exp.metrics("train").to_pandas()
                assert live["index"].tolist() == list(range(5)) and live["data.index"].tolist() == [0, -1, -2, -3, -4]

        with ml_dash.open("alice/vision/run-0", url=server.url) as run:
            frame = run.metrics("train").to_pandas()
            table = run.metrics("train").to_arrow()
            logs = run.logs.to_pandas()
            track = run.tracks("pos").to_arrow()
        assert list(frame.columns) == ["index", "time", "loss", "step", "data.index"]
        assert _same_floats(frame["loss"].tolist(), LOSSES)
        assert frame["time"].tolist() == [T0 + j for j in range(5)]
        assert _same_floats(table.column("loss").to_pylist(), LOSSES)
        assert logs["message"].tolist() == ["done"] and logs["metadata"].iloc[0] == {"n": 0}
        assert track.column("x").to_pylist() == [0.0]

        with ml_dash.open_many("params.lr < 0.01", url=server.url) as runs:
            assert runs.prefixes == ["alice/vision/run-0"]
            long = runs.metrics("train").to_pandas(shape="long")
            wide = runs.metrics("train").to_pandas(shape="wide")
        assert _same_floats(long[long["field"] == "loss"]["value"].tolist(), LOSSES)
        assert set(long["experiment"]) == {"alice/vision/run-0"} and len(wide) == 5

        out = tmp_path / "train.parquet"
        done = run_cli("export", "alice/vision/*", "--metric", "train", "--format", "parquet", "--url", server.url,
                       "-o", str(out))
        assert "10 rows of 2 experiments" in done.stderr
        back = pq.read_table(out)
        assert back.column("experiment").to_pylist() == ["alice/vision/run-0"] * 5 + ["alice/vision/run-1"] * 5
        assert _same_floats(back.column("loss").to_pylist(), LOSSES * 2)

        lines = run_cli("export", "alice/vision/run-1", "--metric", "train", "--format", "jsonl",
                        "--url", server.url).stdout.splitlines()
        rows = [json.loads(line) for line in lines]
        for row in rows:
            restore_nonfinite(row, row.pop("nonFinite", {}))
        assert _same_floats([r["loss"] for r in rows], LOSSES)

        missing = run_cli("export", "bob/*", "--metric", "train", "--url", server.url, check=False)
        assert missing.returncode != 0 and missing.stderr.strip() == "ml-dash: no experiment matches 'bob/*'"
