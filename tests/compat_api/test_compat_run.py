"""``exp.run``'s attributes, ``run.prefix`` templates, ``RUN`` and ``find_project_root``, and
the Experiment keywords code written for the public ML-Dash SDK passes (COMPAT-SURFACE.md,
"Run, prefix and templates"). Real temporary folders and real child processes for the
environment defaults."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

import ml_dash
import ml_dash.run
from ml_dash import RUN, Experiment, InvalidNameError, find_project_root
from support.experiments import exp_json
from support.processes import child_env


@pytest.fixture(autouse=True)
def _keep_run_counter() -> Iterator[None]:
    before = RUN.job_counter
    yield
    RUN.job_counter = before


# -- exp.run's attributes ------------------------------------------------------------------


def test_run_exposes_the_run_attributes(dash_root: Path) -> None:
    exp = Experiment(prefix="alice/vision/resnet/run-1", dash_root=dash_root)  # made here: the entry is this file
    run = exp.run
    assert (run.prefix, run.owner, run.project, run.name) == ("alice/vision/resnet/run-1", "alice", "vision", "run-1")
    assert isinstance(run.now, datetime)
    assert run.date == run.now.strftime("%Y%m%d") and re.fullmatch(r"\d{8}", run.date)
    assert run.datetime_str == run.now.strftime("%Y%m%d.%H%M%S")
    assert run.user == RUN.user
    assert run.entry == __file__
    assert run.path_stem == "tests/compat_api/test_compat_run"
    assert re.fullmatch(r"\d\d\.\d\d\.\d\d/\d{3}", run.job_name)
    assert run.job_name.endswith(f"/{run.job_counter:03d}")
    assert isinstance(run, RUN) and isinstance(run, ml_dash.Run)


def test_each_experiment_takes_the_next_job_counter(make_exp: Callable[..., Experiment]) -> None:
    start = RUN.job_counter
    first, second = make_exp("a/p/one"), make_exp("a/p/two")
    assert (first.run.job_counter, second.run.job_counter, RUN.job_counter) == (start, start + 1, start + 2)


def test_run_gets_an_18_digit_time_ordered_id_at_the_start(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp("a/p/one")
    assert exp.run.id is None
    with exp.run:
        first = exp.run.id
    later = make_exp("a/p/two")
    with later.run:
        pass
    assert isinstance(first, int) and len(str(first)) == 18
    assert later.run.id > first


def test_unknown_keywords_are_run_attributes(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp("a/p/one", job_name="sweep-{job_counter}", seed_note="x", entry="/somewhere/train.py",
                   path_stem="exp/train")
    assert exp.run.seed_note == "x"
    assert exp.run.job_name == f"sweep-{exp.run.job_counter}"
    assert (exp.run.entry, exp.run.path_stem) == ("/somewhere/train.py", "exp/train")


# -- run.prefix --------------------------------------------------------------------------


def test_assigning_run_prefix_before_the_start_retargets_the_experiment(
    make_exp: Callable[..., Experiment], dash_root: Path
) -> None:
    exp = make_exp("alice/vision/run-1")
    exp.run.prefix = "bob/nlp/bert/{EXP.name}-b"
    assert exp.run.prefix == "bob/nlp/bert/run-1-b"
    assert (exp.prefix, exp.owner, exp.project, exp.name) == ("bob/nlp/bert/run-1-b", "bob", "nlp", "run-1-b")
    assert (exp.run.owner, exp.run.project, exp.run.name) == ("bob", "nlp", "run-1-b")
    with exp.run:
        exp.metrics("train").log(loss=1.0)
    assert (dash_root / "bob/nlp/bert/run-1-b/metrics/train/data.jsonl").is_file()
    assert not (dash_root / "alice").exists()
    assert exp_json(exp)["prefix"] == "bob/nlp/bert/run-1-b"


def test_exp_templates_expand_the_runs_current_attributes(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp("alice/vision/run-1")
    exp.run.prefix = "{EXP.owner}/{EXP.project}/{EXP.date}/{EXP.user}-{EXP.job_counter}"
    assert exp.run.prefix == f"alice/vision/{exp.run.date}/{exp.run.user}-{exp.run.job_counter}"


def test_exp_id_makes_an_18_digit_id_kept_in_run_id(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp("alice/vision/run-1")
    exp.run.prefix = "alice/vision/run-{EXP.id}"
    assert re.fullmatch(r"\d{18}", str(exp.run.id))
    assert exp.name == f"run-{exp.run.id}"
    with exp.run:
        assert exp.run.id == int(exp.name[4:])  # the start keeps the id the prefix used


def test_an_unknown_exp_attribute_raises_attribute_error_naming_it(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp("alice/vision/run-1")
    with pytest.raises(AttributeError, match="bogus"):
        exp.run.prefix = "alice/vision/{EXP.bogus}"
    assert exp.prefix == "alice/vision/run-1"


def test_an_invalid_prefix_is_refused_and_changes_nothing(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp("alice/vision/run-1")
    with pytest.raises(InvalidNameError):
        exp.run.prefix = "alice/../run"
    assert (exp.prefix, exp.run.prefix) == ("alice/vision/run-1", "alice/vision/run-1")


def test_assigning_run_prefix_while_running_says_cannot_change(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp("alice/vision/run-1")
    with exp.run:
        with pytest.raises(RuntimeError, match="Cannot change"):
            exp.run.prefix = "alice/vision/other"
        assert exp.prefix == "alice/vision/run-1"


def test_the_prefix_getter_returns_the_prefix_as_given(make_exp: Callable[..., Experiment],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_OWNER", "carol")
    exp = make_exp("vision/run-3")
    assert (exp.run.prefix, exp.prefix, exp.run.owner) == ("vision/run-3", "carol/vision/run-3", "carol")


def test_braces_in_a_prefix_given_to_experiment_are_kept_as_they_are(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp("alice/vision/run-{x}")
    assert exp.prefix == exp.run.prefix == "alice/vision/run-{x}"


# -- Experiment keywords ----------------------------------------------------------------


def test_description_readme_and_bindrs_are_kept(make_exp: Callable[..., Experiment]) -> None:
    with_readme = make_exp("a/p/one", readme="# notes", bindrs=["ckpt", "eval"])
    assert (with_readme.readme, with_readme.description, with_readme.bindrs) == ("# notes", "# notes",
                                                                                ["ckpt", "eval"])
    with with_readme.run:
        pass
    assert exp_json(with_readme)["description"] == "# notes"
    with_description = make_exp("a/p/two", description="short")
    assert (with_description.description, with_description.readme, with_description.bindrs) == ("short", "short", [])


# -- RUN --------------------------------------------------------------------------------


def test_run_class_defaults() -> None:
    assert RUN.project == "{user}/scratch"
    assert RUN.job_name == "{now:%H.%M.%S}/{job_counter:03d}"
    assert isinstance(RUN.job_counter, int)
    assert ml_dash.run.RUN is RUN and ml_dash.RUN is RUN


def test_run_instance_takes_the_counter_expands_templates_and_splits_the_prefix(tmp_path: Path) -> None:
    RUN.job_counter = 7
    run = RUN(user="dana", entry=str(tmp_path / "exp" / "train.py"), project_root=str(tmp_path),
              now=datetime(2025, 3, 4, 5, 6, 7))
    assert (run.job_counter, RUN.job_counter) == (7, 8)
    assert run.job_name == "05.06.07/007"
    assert run.path_stem == "exp/train"
    assert run.prefix == "dana/scratch/2025/03-04/exp/train/05.06.07/007"
    assert (run.owner, run.project, run.name) == ("dana", "scratch", "007")
    assert (run.date, run.datetime_str) == ("20250304", "20250304.050607")


def test_run_templates_expand_over_several_passes() -> None:
    run = RUN(user="eve", entry="x.py", path_stem="s", prefix="{project}/{job_name}", job_name="{path_stem}-{date}",
              now=datetime(2024, 1, 2))
    assert run.prefix == "eve/scratch/s-20240102"


def test_run_template_with_an_unknown_name_raises_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="nope"):
        RUN(entry="x.py", prefix="a/b/{nope}")


def test_run_defaults_come_from_the_environment_in_a_real_process(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "pyproject.toml").write_text("")
    (tmp_path / "proj" / "scripts").mkdir()
    script = tmp_path / "proj" / "scripts" / "train.py"
    script.write_text(textwrap.dedent("""
        import json
        from ml_dash import RUN
        run = RUN()
        print(json.dumps({"user": RUN.user, "prefix": run.prefix, "entry": run.entry, "stem": run.path_stem,
                          "owner": run.owner, "counter": [run.job_counter, RUN.job_counter],
                          "env_prefix": RUN().prefix}))
    """))
    env = child_env(ML_DASH_USER="frank", USER="ignored")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60,
                          check=True, cwd=tmp_path)
    got = json.loads(done.stdout)
    assert got["user"] == "frank" and got["owner"] == "frank"
    assert got["entry"] == str(script) and got["stem"] == "scripts/train"
    assert re.fullmatch(r"frank/scratch/\d{4}/\d\d-\d\d/scripts/train/\d\d\.\d\d\.\d\d/000", got["prefix"])
    assert got["counter"] == [0, 1]
    env = child_env(USER="gina", ML_DASH_PREFIX="gina/proj/{job_counter:02d}")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60,
                          check=True, cwd=tmp_path)
    got = json.loads(done.stdout)
    assert (got["user"], got["prefix"], got["env_prefix"]) == ("gina", "gina/proj/00", "gina/proj/01")


# -- find_project_root ------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["pyproject.toml", "requirements.txt", "setup.py", "setup.cfg"])
def test_find_project_root_is_the_first_folder_upwards_with_a_marker(tmp_path: Path, marker: str) -> None:
    root = tmp_path / "repo"
    deep = root / "a" / "b"
    deep.mkdir(parents=True)
    (root / marker).write_text("")
    (deep / "train.py").write_text("")
    assert find_project_root(deep) == str(root)
    assert find_project_root(deep / "train.py") == str(root)
    assert find_project_root(str(root)) == str(root)
    (root / "a" / "setup.cfg").write_text("")
    assert find_project_root(deep) == str(root / "a")
    assert ml_dash.run.find_project_root is find_project_root


def test_find_project_root_without_a_marker_is_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lone = tmp_path / "lone"
    lone.mkdir()
    if any((p / m).exists() for p in (lone, *lone.parents) for m in ml_dash.run.PROJECT_ROOT_FILES):
        pytest.skip("a project marker above the temporary folder")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert find_project_root(lone) == str(elsewhere)
    assert find_project_root() == str(elsewhere)


def test_ids_keep_growing_within_one_millisecond() -> None:
    ids = [ml_dash.run.new_run_id() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == 5000
    assert all(len(str(i)) == 18 for i in ids)
    assert os.getpid() & 0x3FF == (ids[0] >> 12) & 0x3FF
    assert abs((ids[0] >> 22) / 1000 + 1_704_067_200 - time.time()) < 60
