"""The folder store's kept run summaries (``.ml-dash/summary.json``): always the answer a
full read would give, after appends, damage, and writes by other processes, and read
without touching the streams when nothing changed."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ml_dash import Experiment
from ml_dash.records import ExperimentInfo
from ml_dash.stores import run_summary_files as summary_files
from ml_dash.stores.generic_reads import fields_by_reading
from ml_dash.stores.local import LocalStore
from ml_dash.stores.series_index import SeriesIndex
from ml_dash.summaries import RunSummary, select_runs

OWNER, PROJECT = "alice", "table"
RUNS = [f"{OWNER}/{PROJECT}/run-{k}" for k in range(3)]


def _points(start: int, n: int, seed: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(start, start + n):
        value = math.sin(i * 0.37 + seed) * (seed + 1)
        out.append({"loss": value if i % 17 else math.nan, "acc": (i * 7 + seed) % 11 / 10, "step": i,
                    "_ts": 1000.0 + i})
    return out


def _fill(store: LocalStore, n: int = 40) -> None:
    for k, prefix in enumerate(RUNS):
        store.open_experiment(ExperimentInfo(prefix=prefix, owner=OWNER, project=PROJECT, name=f"run-{k}",
                                             tags=("baseline",) if k == 0 else ()))
        store.set_params(prefix, {"lr": 10.0 ** -(k + 1), "model.depth": 18 * (k + 1)})
        store.append_metrics(prefix, "train", _points(0, n, k))
        store.append_metrics(prefix, "eval", [{"acc": 0.5 + k / 10, "_ts": 1.0}])


def _truth(store: LocalStore) -> dict[str, tuple[dict[str, Any], dict[str, Any], str]]:
    """Per prefix: params, field statistics (from reading every point) and status."""
    out = {}
    for info in store.list_experiments(OWNER, PROJECT):
        metrics = {}
        for stats in store.list_metrics(info.prefix):
            fields = fields_by_reading(store, info.prefix, stats["name"])
            fields.pop("_ts", None)
            metrics[stats["name"]] = fields
        out[info.prefix] = (dict(store.get_params(info.prefix).data), metrics, info.status)
    return out


def _seen(summaries: list[RunSummary]) -> dict[str, tuple[dict[str, Any], dict[str, Any], str]]:
    return {s.info.prefix: (s.params, s.metrics, s.info.status) for s in summaries}


def _summary_path(root: Path, prefix: str) -> Path:
    return root.joinpath(*prefix.split("/"), ".ml-dash", "summary.json")


class _StreamReads:
    """Counts the series-index reads of field statistics (the real ones still run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folders: list[str] = []
        real = SeriesIndex.field_stats

        def counted(index: SeriesIndex) -> Any:
            self.folders.append(index.folder)
            return real(index)

        monkeypatch.setattr(SeriesIndex, "field_stats", counted)


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sources count as settled at once (the real rule waits SETTLE seconds, see
    test_a_same_size_rewrite_right_after_a_build_is_still_seen)."""
    monkeypatch.setattr(summary_files, "SETTLE", -60.0)


def test_summaries_follow_appends_and_param_changes(dash_root: Path) -> None:
    store = LocalStore(dash_root)
    _fill(store)
    assert _seen(store.run_summaries(OWNER, PROJECT)) == _truth(store)
    store.append_metrics(RUNS[1], "train", [*_points(40, 25, 1), {"loss": -1e9, "_ts": 2.0}])
    store.append_metrics(RUNS[2], "sys/gpu", [{"util": 0.9, "_ts": 3.0}])  # a new (nested) stream
    store.set_params(RUNS[0], {"lr": 0.5})
    store.update_experiment(RUNS[2], status="COMPLETED")
    got = _seen(store.run_summaries(OWNER, PROJECT))
    assert got == _truth(store)
    assert got[RUNS[1]][1]["train"]["loss"]["min"] == -1e9
    assert got[RUNS[1]][1]["train"]["loss"]["minIndex"] == 65
    assert got[RUNS[2]][1]["sys/gpu"]["util"]["last"] == 0.9
    assert got[RUNS[0]][0]["lr"] == 0.5 and got[RUNS[2]][2] == "COMPLETED"


def test_a_fresh_store_answers_from_the_kept_files_without_reading_a_stream(
        dash_root: Path, monkeypatch: pytest.MonkeyPatch, settled: None) -> None:
    store = LocalStore(dash_root)
    _fill(store)
    first = _seen(store.run_summaries(OWNER, PROJECT))
    assert all(_summary_path(dash_root, prefix).is_file() for prefix in RUNS)
    reads = _StreamReads(monkeypatch)
    fresh = LocalStore(dash_root)  # as a server right after a restart
    assert _seen(fresh.run_summaries(OWNER, PROJECT)) == first
    assert reads.folders == []
    store.append_metrics(RUNS[2], "train", _points(40, 3, 2))
    again = _seen(fresh.run_summaries(OWNER, PROJECT))
    assert again == _truth(store)
    assert reads.folders == [os.path.join(store.experiment_dir(RUNS[2]), "metrics", "train")]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong types", "other version"])
def test_a_damaged_summary_file_is_rebuilt_and_never_trusted(dash_root: Path, damage: str, settled: None) -> None:
    store = LocalStore(dash_root)
    _fill(store)
    want = _seen(store.run_summaries(OWNER, PROJECT))
    path = _summary_path(dash_root, RUNS[1])
    raw = path.read_bytes()
    doc = msgspec.json.decode(raw)
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(raw)))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "wrong types":
        doc["streams"]["train"]["fields"]["loss"]["count"] = "many"
        path.write_bytes(msgspec.json.encode(doc))
    else:
        doc["version"] = 999
        path.write_bytes(msgspec.json.encode(doc))
    assert _seen(LocalStore(dash_root).run_summaries(OWNER, PROJECT)) == want
    assert summary_files.load(str(path.parent.parent)) is not None  # written anew


def test_an_old_summary_put_back_after_a_crash_is_not_believed(dash_root: Path, settled: None) -> None:
    """A summary that is intact but older than the data (a crash between a write and the
    summary's rewrite, a backup restored) matches none of the sources it names."""
    store = LocalStore(dash_root)
    _fill(store)
    store.run_summaries(OWNER, PROJECT)
    old = _summary_path(dash_root, RUNS[0]).read_bytes()
    store.append_metrics(RUNS[0], "train", [{"loss": 99.0, "_ts": 5.0}])
    store.set_params(RUNS[0], {"lr": 0.25})
    store.run_summaries(OWNER, PROJECT)
    _summary_path(dash_root, RUNS[0]).write_bytes(old)
    got = _seen(LocalStore(dash_root).run_summaries(OWNER, PROJECT))
    assert got == _truth(store)
    assert got[RUNS[0]][1]["train"]["loss"]["max"] == 99.0 and got[RUNS[0]][0]["lr"] == 0.25


def test_a_same_size_rewrite_right_after_a_build_is_still_seen(dash_root: Path) -> None:
    """File times tick coarsely: a change in the same tick as the build, same size, same
    inode, same time, must still be seen, because a source that recent is read again."""
    store = LocalStore(dash_root)
    _fill(store)
    store.run_summaries(OWNER, PROJECT)
    path = Path(store.experiment_dir(RUNS[0])) / "parameters.json"
    st = path.stat()
    text = path.read_text()
    assert '"lr": 0.1' in text
    with open(path, "r+") as fh:  # in place: same inode, same size
        fh.write(text.replace('"lr": 0.1', '"lr": 0.7'))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_ino == st.st_ino
    got = _seen(LocalStore(dash_root).run_summaries(OWNER, PROJECT))
    assert got[RUNS[0]][0]["lr"] == 0.7


def test_appends_by_another_process_show_in_a_running_store(dash_root: Path, settled: None) -> None:
    store = LocalStore(dash_root)
    _fill(store)
    before = _seen(store.run_summaries(OWNER, PROJECT))
    script = (
        "import sys\n"
        "from ml_dash.stores.local import LocalStore\n"
        "from ml_dash.records import ExperimentInfo\n"
        "s = LocalStore(sys.argv[1])\n"
        f"s.append_metrics({RUNS[1]!r}, 'train', [{{'loss': 1e6, '_ts': 9.0}}, {{'loss': -5.0, 'acc': 2.0}}])\n"
        f"s.append_metrics({RUNS[1]!r}, 'extra', [{{'x': 3}}])\n"
        f"s.set_params({RUNS[1]!r}, {{'seed': 7}})\n"
        f"s.open_experiment(ExperimentInfo(prefix='{OWNER}/{PROJECT}/late', owner={OWNER!r}, project={PROJECT!r}, "
        "name='late'))\n"
        "s.close()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(dash_root)], check=True, timeout=120)
    got = _seen(store.run_summaries(OWNER, PROJECT))
    assert got == _truth(store) and got != before
    loss = got[RUNS[1]][1]["train"]["loss"]
    assert loss["max"] == 1e6 and loss["last"] == -5.0 and loss["lastIndex"] == 41
    assert got[RUNS[1]][1]["extra"]["x"]["count"] == 1 and got[RUNS[1]][0]["seed"] == 7
    assert f"{OWNER}/{PROJECT}/late" in got


def test_logging_writes_no_summary_and_a_read_only_store_writes_none(dash_root: Path) -> None:
    exp = Experiment(prefix=RUNS[0], dash_root=dash_root, echo=False)
    with exp.run:
        exp.params.set(lr=0.1)
        for i in range(100):
            exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
    assert not _summary_path(dash_root, RUNS[0]).exists()
    reader = LocalStore(dash_root)
    reader.read_only = True  # as ml_dash.open makes it
    (summary,) = reader.run_summaries(OWNER)
    assert summary.metrics["train"]["loss"]["count"] == 100 and summary.params == {"lr": 0.1}
    assert not _summary_path(dash_root, RUNS[0]).exists()
    LocalStore(dash_root).run_summaries(OWNER)
    assert _summary_path(dash_root, RUNS[0]).is_file()


def test_a_damaged_experiment_file_leaves_that_run_out_with_a_warning(dash_root: Path) -> None:
    store = LocalStore(dash_root)
    _fill(store)
    store.run_summaries(OWNER, PROJECT)
    (Path(store.experiment_dir(RUNS[2])) / "experiment.json").write_text("{not json")
    with pytest.warns(RuntimeWarning, match="leaving out"):
        got = store.run_summaries(OWNER, PROJECT)
    assert [s.info.prefix for s in got] == RUNS[:2]


def test_the_table_filters_and_sorts_over_kept_summaries(dash_root: Path, settled: None) -> None:
    store = LocalStore(dash_root)
    _fill(store)
    store.run_summaries(OWNER, PROJECT)
    page, total = select_runs(LocalStore(dash_root).run_summaries(OWNER, PROJECT), "params.model.depth >= 36",
                              "metrics.eval.acc.max", descending=True)
    assert total == 2 and [s.info.prefix for s in page] == [RUNS[2], RUNS[1]]
