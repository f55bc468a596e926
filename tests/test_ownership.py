"""Who runs an experiment, local mode: ``resume=``, ``join=``, the owner lock and STALE.

Real processes (``procs/owner_logger.py``) claim one folder: a second one is refused
while the first lives and accepted once it was SIGKILLed; joiners write beside each
other; ``resume="never"`` refuses and ``resume="new"`` takes the next name. The owner
lock dies with its process, so a killed run reads STALE at once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ml_dash import Experiment, InvalidValueError, LocalStore
from ml_dash.errors import ExperimentBusyError
from support.experiments import exp_json
from support.files import read_jsonl
from support.processes import HANG_GUARD, Child, ml_dash

PREFIX = "alice/owners/run-1"


@pytest.fixture
def children() -> Iterator[Callable[..., Child]]:
    """``owner_logger.py`` children (killed and reaped at the end of the test)."""
    started: list[Child] = []

    def spawn(root: Path, *args: object, prefix: str = PREFIX, **env: str) -> Child:
        child = Child("procs/owner_logger.py", "--root", root, "--prefix", prefix, *args, **env)
        started.append(child)
        return child

    yield spawn
    for child in started:
        child.kill()


def status_in_list(root: Path, prefix: str = PREFIX) -> str:
    lines = ml_dash("--root", str(root), "list", "--json").stdout.splitlines()
    return next(json.loads(line)["status"] for line in lines if json.loads(line)["prefix"] == prefix)


def test_a_second_process_is_refused_while_the_first_lives_and_resumes_after_it_was_killed(
    dash_root: Path, children: Callable[..., Child]
) -> None:
    first = children(dash_root)
    assert first.receive() == {"prefix": PREFIX}
    assert first.receive() == {"logged": 100}

    second = children(dash_root)
    refused = second.receive()
    assert refused["error"] == "busy"
    assert f"process {first.proc.pid}" in refused["message"] and "join=True" in refused["message"]
    assert second.finish() == 3
    assert status_in_list(dash_root) == "RUNNING"

    first.kill()  # SIGKILL: no release, no final status; its owner lock dies with it
    assert status_in_list(dash_root) == "STALE"
    shown = json.loads(ml_dash("--root", str(dash_root), "show", PREFIX, "--json").stdout)
    assert shown["status"] == "STALE" and shown["resumes"] == []

    third = children(dash_root)
    assert third.receive() == {"prefix": PREFIX}
    assert third.receive() == {"logged": 100}
    assert status_in_list(dash_root) == "RUNNING"
    third.send("complete")
    assert third.receive()["ok"] is True
    assert third.finish() == 0

    info = LocalStore(dash_root).get_experiment(PREFIX)
    assert info is not None and info.status == "COMPLETED"
    assert [(r.pid, r.interrupted, r.previous_status) for r in info.resumes] == [(third.proc.pid, True, "RUNNING")]
    assert LocalStore(dash_root).metric_stats(PREFIX, "train")["totalDataPoints"] == 200
    text = ml_dash("--root", str(dash_root), "show", PREFIX).stdout
    assert "resumes: 1" in text and f"(pid {third.proc.pid}), after an interrupted run" in text


def test_processes_that_join_write_their_own_streams_side_by_side(
    dash_root: Path, children: Callable[..., Child]
) -> None:
    ranks = [children(dash_root, "--join", "--stream", f"rank{r}", "--points", 5000) for r in range(2)]
    for rank in ranks:
        assert rank.receive() == {"prefix": PREFIX}
    for rank in ranks:
        assert rank.receive() == {"logged": 5000}
    outsider = children(dash_root)  # without join=True it is still refused
    assert outsider.receive()["error"] == "busy"
    for rank in ranks:
        rank.send("complete")
        assert rank.receive()["ok"] is True
        assert rank.finish() == 0
    store = LocalStore(dash_root)
    for r in range(2):
        page = store.read_metrics(PREFIX, f"rank{r}", 0, 10_000)
        assert [p["data"]["i"] for p in page["data"]] == list(range(5000))
    info = store.get_experiment(PREFIX)
    assert info is not None and info.status == "COMPLETED" and info.resumes == ()


def test_resume_never_refuses_an_existing_experiment_before_writing_anything(
    make_exp: Callable[..., Experiment], dash_root: Path, children: Callable[..., Child]
) -> None:
    with make_exp(PREFIX).run as exp:
        exp.metrics("train").log(i=0)
    before = exp_json(exp)
    child = children(dash_root, "--resume", "never")
    refused = child.receive()
    assert refused["error"] == "exists" and PREFIX in refused["message"] and "resume='never'" in refused["message"]
    assert child.finish() == 3
    assert exp_json(exp) == before
    assert LocalStore(dash_root).metric_stats(PREFIX, "train")["totalDataPoints"] == 1

    fresh = children(dash_root, "--resume", "never", prefix="alice/owners/fresh")
    assert fresh.receive() == {"prefix": "alice/owners/fresh"}


def test_resume_new_takes_the_next_free_name(
    make_exp: Callable[..., Experiment], dash_root: Path, children: Callable[..., Child]
) -> None:
    for name in ("run-1", "run-2"):
        with make_exp(f"alice/owners/{name}").run as exp:
            exp.metrics("train").log(i=0)
    child = children(dash_root, "--resume", "new")
    assert child.receive() == {"prefix": "alice/owners/run-3"}
    assert child.receive() == {"logged": 100}
    store = LocalStore(dash_root)
    assert store.metric_stats("alice/owners/run-1", "train")["totalDataPoints"] == 1
    assert store.metric_stats("alice/owners/run-3", "train")["totalDataPoints"] == 100
    # A name without a counter gets one.
    with make_exp("alice/owners/baseline", resume="new").run as exp:
        assert exp.prefix == "alice/owners/baseline" and exp.name == "baseline"
    with make_exp("alice/owners/baseline", resume="new").run as exp:
        assert exp.prefix == "alice/owners/baseline-2" and exp.path is not None
        assert exp.path.endswith(os.path.join("owners", "baseline-2"))
        assert exp.info.prefix == "alice/owners/baseline-2"


def test_a_resume_is_recorded_and_the_first_start_is_kept(make_exp: Callable[..., Experiment]) -> None:
    with make_exp().run as first:
        pass
    started = exp_json(first)["startedAt"]
    time.sleep(0.01)
    with make_exp().run as again:
        assert again.info.resumes and again.info.resumes[-1].pid == os.getpid()
    doc = exp_json(again)
    assert doc["startedAt"] == started
    assert doc["status"] == "COMPLETED"
    lines, _tail = read_jsonl(Path(again.path or "") / "resumes.jsonl")
    assert [(line["pid"], line["interrupted"], line["previousStatus"]) for line in lines] == [
        (os.getpid(), False, "COMPLETED")
    ]


def test_two_experiments_of_one_process_on_one_prefix_are_refused_too(make_exp: Callable[..., Experiment]) -> None:
    make_exp().run.start()
    with pytest.raises(ExperimentBusyError, match="join=True"):
        make_exp().run.start()
    make_exp(join=True).run.start()


def test_the_heartbeat_renews_the_claim_off_the_logging_thread(make_exp: Callable[..., Experiment]) -> None:
    exp = make_exp(lease_seconds=0.3)
    exp.run.start()
    store = LocalStore(exp.dash_root or "")
    first = store.get_experiment(exp.prefix)
    assert first is not None and first.heartbeat_at is not None
    deadline = time.monotonic() + HANG_GUARD
    while True:  # nothing is logged meanwhile: only the heartbeat thread writes
        now = store.get_experiment(exp.prefix)
        assert now is not None
        if now.heartbeat_at is not None and now.heartbeat_at > first.heartbeat_at:
            break
        assert time.monotonic() < deadline, "no heartbeat within the hang guard"
        time.sleep(0.05)
    assert now.status == "RUNNING"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"resume": "sometimes"}, "resume"), ({"resume": True}, "resume"), ({"join": "yes"}, "join"),
     ({"lease_seconds": 0}, "lease_seconds"), ({"lease_seconds": float("nan")}, "lease_seconds"),
     ({"lease_seconds": 7200}, "lease_seconds")],
)
def test_bad_ownership_settings_are_refused_naming_them(
    make_exp: Callable[..., Experiment], kwargs: dict[str, object], named: str
) -> None:
    with pytest.raises(InvalidValueError, match=named):
        make_exp(**kwargs)


def test_a_bad_lease_in_the_environment_is_refused_naming_it(
    make_exp: Callable[..., Experiment], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_DASH_LEASE_SECONDS", "soon")
    with pytest.raises(InvalidValueError, match="ML_DASH_LEASE_SECONDS"):
        make_exp()
    monkeypatch.setenv("ML_DASH_LEASE_SECONDS", "2.5")
    assert make_exp().lease_seconds == 2.5


def test_a_start_that_fails_after_the_claim_releases_it(make_exp: Callable[..., Experiment]) -> None:
    with pytest.raises(InvalidValueError, match="flush_interval"):
        make_exp(flush_interval=0).run.start()
    again = make_exp()
    again.run.start()  # not refused: the failed start let go of its claim
    assert again.status == "RUNNING"


@pytest.mark.parametrize(
    ("name", "taken", "first"),
    [("run-1", set(), ["run-1", "run-2"]), ("run-1", {"run-1", "run-2", "run-7"}, ["run-8", "run-9"]),
     ("run-009", {"run-009"}, ["run-010"]), ("baseline", {"baseline"}, ["baseline-2", "baseline-3"]),
     ("baseline", {"baseline", "baseline-4", "other-9"}, ["baseline-5"])],
)
def test_resume_new_counts_on_from_the_highest_name_in_use(name: str, taken: set[str], first: list[str]) -> None:
    from itertools import islice

    from ml_dash.ownership import next_names

    assert list(islice(next_names(name, taken), len(first))) == first
