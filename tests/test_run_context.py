"""Run context (docs/run-context.md): captured at start in a real git repository, stored
with the experiment locally and through a real server, shown by ``ml-dash show``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ml_dash import Experiment, InvalidValueError
from ml_dash.context import PARTS, GitProbe, capture, environment, parts_from, redact_argv, strip_credentials
from ml_dash.stores.local import LocalStore
from support.processes import ml_dash, running

REMOTE = "https://alice:s3cret-token@git.example.com/team/model.git"


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit on branch ``feature/x``, a remote with credentials
    in its URL, and the training script ``train.py``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "feature/x")
    (repo / "train.py").write_text("print('train')\n")
    (repo / "data.txt").write_text("one\n")
    _git(repo, "add", "train.py", "data.txt")
    _git(repo, "commit", "-q", "-m", "first")
    _git(repo, "remote", "add", "origin", REMOTE)
    return repo


def test_git_context_has_commit_branch_clean_tree_and_remote_without_credentials(repo: Path) -> None:
    git = capture(["git"], entry=str(repo / "train.py"))["git"]
    assert git == {"commit": _git(repo, "rev-parse", "HEAD"), "branch": "feature/x", "dirty": False,
                   "remote": "https://git.example.com/team/model.git"}
    assert "s3cret" not in json.dumps(git)


def test_a_modified_tracked_file_makes_the_tree_dirty_an_untracked_one_does_not(repo: Path) -> None:
    (repo / "notes.txt").write_text("untracked\n")
    assert capture(["git"], entry=str(repo / "train.py"))["git"]["dirty"] is False
    (repo / "data.txt").write_text("two\n")
    assert capture(["git"], entry=str(repo / "train.py"))["git"]["dirty"] is True


def test_detached_head_has_no_branch_and_the_upstream_remote_is_preferred(repo: Path) -> None:
    _git(repo, "remote", "add", "mirror", "ssh://git@mirror.example.com/model.git")
    _git(repo, "config", "branch.feature/x.remote", "mirror")
    _git(repo, "config", "branch.feature/x.merge", "refs/heads/feature/x")
    _git(repo, "update-ref", "refs/remotes/mirror/feature/x", "HEAD")
    assert capture(["git"], entry=str(repo / "train.py"))["git"]["remote"] == "ssh://mirror.example.com/model.git"
    _git(repo, "checkout", "-q", "--detach")
    git = capture(["git"], entry=str(repo / "train.py"))["git"]
    assert git["branch"] is None and git["commit"] == _git(repo, "rev-parse", "HEAD")


def test_outside_a_repository_there_is_no_git_key(tmp_path: Path) -> None:
    script = tmp_path / "alone.py"
    script.write_text("")
    context = capture(["git", "python"], entry=str(script))
    assert "git" not in context and context["python"]["version"].startswith(f"{sys.version_info[0]}.")


def test_git_that_does_not_answer_in_time_leaves_an_error_not_a_hang(repo: Path) -> None:
    assert GitProbe(str(repo), timeout=0.0).result() == {"error": "git did not answer within 0 s"}


@pytest.mark.parametrize(("url", "clean"), [
    ("https://user:pass@host.example/r.git", "https://host.example/r.git"),
    ("https://ghp_abc@host.example:8443/r.git?token=x", "https://host.example:8443/r.git"),
    ("git@github.com:team/r.git", "git@github.com:team/r.git"),
    ("https://host.example/r.git", "https://host.example/r.git"),
])
def test_remote_urls_lose_user_password_and_query(url: str, clean: str) -> None:
    assert strip_credentials(url) == clean


def test_environment_keeps_allowed_names_and_never_secret_looking_ones() -> None:
    environ = {"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_JOB_ID": "42", "SLURM_AUTH_TOKEN": "t", "HOME": "/root",
               "MY_API_KEY": "k", "DB_PASSWORD": "p", "HF_TOKEN": "h", "TRACKING_URI": "https://u:p@t.example/x"}
    allow = ["CUDA_VISIBLE_DEVICES", "SLURM_*", "MY_API_KEY", "DB_PASSWORD", "HF_TOKEN", "TRACKING_URI"]
    assert environment(allow, environ) == {"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_JOB_ID": "42",
                                           "TRACKING_URI": "https://t.example/x"}


def test_secret_options_on_the_command_line_are_redacted() -> None:
    argv = ["train.py", "--lr", "0.1", "--api-key=abc", "--token", "xyz", "--data", "s3://u:p@bucket/x"]
    assert redact_argv(argv) == ["train.py", "--lr", "0.1", "--api-key=<redacted>", "--token", "<redacted>",
                                 "--data", "s3://bucket/x"]


def test_parts_come_from_the_keyword_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parts_from(None) == frozenset(PARTS)
    assert parts_from(False) == frozenset()
    assert parts_from(["git", "env"]) == {"git", "env"}
    monkeypatch.setenv("ML_DASH_CONTEXT", "-gpu,-env")
    assert parts_from(None) == frozenset(PARTS) - {"gpu", "env"}
    monkeypatch.setenv("ML_DASH_CONTEXT", "off")
    assert parts_from(None) == frozenset()
    with pytest.raises(InvalidValueError, match="'gitt'"):
        parts_from("gitt")


def test_packages_are_the_imported_ones_only() -> None:
    import numpy

    packages = capture(["packages"])["packages"]
    assert packages["numpy"] == numpy.__version__ and "ml_dash" in packages
    assert ("torch" in packages) == ("torch" in sys.modules)


def _stored(root: Path, prefix: str) -> dict[str, object]:
    info = LocalStore(root).get_experiment(prefix)
    assert info is not None
    return info.metadata


def test_experiment_stores_its_context_in_metadata(repo: Path, dash_root: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("MY_SECRET", "hidden")
    with Experiment("alice/ctx/run-1", dash_root=dash_root, entry=str(repo / "train.py"),
                    metadata={"seed": 1}, context_env=["CUDA_VISIBLE_DEVICES", "MY_SECRET"]).run as exp:
        assert exp.info.metadata["context"]["git"]["branch"] == "feature/x"
    metadata = _stored(dash_root, "alice/ctx/run-1")
    context = metadata["context"]
    assert isinstance(context, dict) and metadata["seed"] == 1
    assert context["git"]["commit"] == _git(repo, "rev-parse", "HEAD")
    assert context["command"]["entry"] == str(repo / "train.py") and context["command"]["cwd"] == os.getcwd()
    assert context["python"]["executable"] == sys.executable
    assert context["host"]["cpus"] == os.cpu_count()
    assert context["env"] == {"CUDA_VISIBLE_DEVICES": "3"}


def test_context_switched_off_stores_nothing(dash_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Experiment("alice/ctx/off", dash_root=dash_root, context=False).run:
        pass
    monkeypatch.setenv("ML_DASH_CONTEXT", "0")
    with Experiment("alice/ctx/off-env", dash_root=dash_root).run:
        pass
    with Experiment("alice/ctx/some", dash_root=dash_root, context=["python"]).run:
        pass
    assert "context" not in _stored(dash_root, "alice/ctx/off")
    assert "context" not in _stored(dash_root, "alice/ctx/off-env")
    assert set(_stored(dash_root, "alice/ctx/some")["context"]) == {"capturedAt", "python"}  # type: ignore[arg-type]


def test_a_context_in_the_users_metadata_wins(dash_root: Path) -> None:
    with Experiment("alice/ctx/mine", dash_root=dash_root, metadata={"context": "lab bench 4"}).run:
        pass
    assert _stored(dash_root, "alice/ctx/mine")["context"] == "lab bench 4"


def test_context_reaches_the_server_and_its_experiment_route(repo: Path, tmp_path: Path) -> None:
    prefix = "alice/ctx/remote"
    with running(root=tmp_path / "server-root") as server:
        with Experiment(prefix, dash_url=server.url, dash_root=None, entry=str(repo / "train.py")).run:
            pass
        answer = httpx.get(f"{server.url}/api/v1/experiment", params={"prefix": prefix}, timeout=10).json()
    git = answer["metadata"]["context"]["git"]
    assert git["branch"] == "feature/x" and git["remote"] == "https://git.example.com/team/model.git"
    assert _stored(tmp_path / "server-root", prefix)["context"] == answer["metadata"]["context"]


def test_show_prints_the_context(repo: Path, dash_root: Path) -> None:
    with Experiment("alice/ctx/shown", dash_root=dash_root, entry=str(repo / "train.py")).run:
        pass
    out = ml_dash("--root", str(dash_root), "show", "alice/ctx/shown").stdout
    commit = _git(repo, "rev-parse", "HEAD")
    assert f"  git: {commit} on feature/x, https://git.example.com/team/model.git" in out
    assert f"  python: {sys.version.split()[0]}" in out
    shown = json.loads(ml_dash("--root", str(dash_root), "show", "--json", "alice/ctx/shown").stdout)
    assert shown["context"]["git"]["commit"] == commit
