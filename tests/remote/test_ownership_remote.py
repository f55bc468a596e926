"""Who runs an experiment, remote mode, against a real ``ml-dash serve``: the server's
lease refuses a second process while the first renews it, lapses after a SIGKILL (the
run then reads STALE), and a server that cannot be reached at start only delays the
claim (offline first).

The children claim with a lease of LEASE seconds, so a lapse takes seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ml_dash import Experiment, ExperimentBusyError, LocalStore, wire
from ml_dash.records import ExperimentInfo
from support.processes import HANG_GUARD, Child, ServerProcess, free_port, running

PREFIX = "alice/owners/remote-1"
LEASE = 1.5


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running(root=tmp_path / "server-root") as proc:
        yield proc


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """``owner_logger.py`` children in remote mode (killed and reaped at the end of the test)."""
    started: list[Child] = []

    def spawn(url: str, *args: object, prefix: str = PREFIX, root: Path | None = None) -> Child:
        spool = root or tmp_path / f"spool-{len(started)}"  # its dash root: another "machine" unless given
        child = Child("procs/owner_logger.py", "--url", url, "--root", spool, "--prefix", prefix,
                      "--lease", LEASE, *args, cwd=tmp_path)
        started.append(child)
        return child

    yield spawn
    for child in started:
        child.kill()


def served(server: ServerProcess, prefix: str = PREFIX) -> ExperimentInfo | None:
    """The experiment as the server's HTTP API answers it."""
    answer = httpx.get(f"{server.url}/api/v1/experiment", params={"prefix": prefix}, timeout=10)
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return wire.decode(answer.content, wire.ExperimentBody).record()


def wait_for(server: ServerProcess, check: Callable[[ExperimentInfo | None], bool], within: float) -> float:
    """Poll the server until ``check`` holds; the seconds it took (AssertionError after ``within``)."""
    start = time.monotonic()
    while True:
        info = served(server)
        if check(info):
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"not seen within {within} s: {info}"
        time.sleep(0.05)


def test_the_lease_refuses_a_second_process_and_lapses_after_a_kill(
    server: ServerProcess, children: Callable[..., Child]
) -> None:
    first = children(server.url)
    assert first.receive() == {"prefix": PREFIX}
    assert first.receive() == {"logged": 100}
    time.sleep(LEASE * 1.5)  # longer than the lease: only the heartbeat keeps the claim alive
    second = children(server.url)
    refused = second.receive()
    assert refused["error"] == "busy" and f"process {first.proc.pid}" in refused["message"]
    assert second.finish() == 3
    info = served(server)
    assert info is not None and info.status == "RUNNING" and info.heartbeat_at is not None

    first.kill()
    killed_at = time.monotonic()
    wait_for(server, lambda i: i is not None and i.status == "STALE", within=HANG_GUARD)
    # The lease lapses LEASE s after the last heartbeat, which came at most LEASE / 6 s before the kill.
    assert time.monotonic() - killed_at < LEASE + 5.0

    third = children(server.url)
    assert third.receive() == {"prefix": PREFIX}
    assert third.receive() == {"logged": 100}
    third.send("complete")
    assert third.receive()["ok"] is True
    assert third.finish() == 0
    info = served(server)
    assert info is not None and info.status == "COMPLETED"
    assert [(r.pid, r.interrupted, r.previous_status) for r in info.resumes] == [(third.proc.pid, True, "RUNNING")]


def test_a_run_restarted_on_the_same_machine_after_a_kill_does_not_wait_for_the_lease(
    server: ServerProcess, children: Callable[..., Child], tmp_path: Path
) -> None:
    machine = tmp_path / "machine"  # one dash root: the claim tickets of one machine
    first = children(server.url, "--lease", 600, root=machine)
    assert first.receive() == {"prefix": PREFIX}
    assert first.receive() == {"logged": 100}
    alive = children(server.url, "--lease", 600, root=machine)  # its ticket is held: the first lives
    assert alive.receive()["error"] == "busy"
    first.kill()
    again = children(server.url, "--lease", 600, root=machine)
    assert again.receive() == {"prefix": PREFIX}  # at once, though the first's lease runs for 10 minutes
    assert again.receive() == {"logged": 100}
    elsewhere = children(server.url, "--lease", 600)  # another machine cannot tell: refused
    assert elsewhere.receive()["error"] == "busy"
    again.send("complete")
    assert again.receive()["ok"] is True
    info = served(server)
    assert info is not None and info.status == "COMPLETED"
    assert [(r.pid, r.interrupted) for r in info.resumes] == [(again.proc.pid, True)]
    tickets = list((machine / ".claims").rglob("*.ticket"))
    assert tickets == [], "a released claim leaves no ticket (and the dead one's was dropped)"


def test_processes_that_join_share_a_remote_experiment(server: ServerProcess, children: Callable[..., Child]) -> None:
    ranks = [children(server.url, "--join", "--stream", f"rank{r}", "--points", 2000) for r in range(2)]
    for rank in ranks:
        assert rank.receive() == {"prefix": PREFIX}
        assert rank.receive() == {"logged": 2000}
    for rank in ranks:
        rank.send("complete")
        assert rank.receive()["ok"] is True
        assert rank.finish() == 0
    for r in range(2):
        stats = httpx.get(f"{server.url}/api/v1/metrics/stats", params={"prefix": PREFIX, "name": f"rank{r}"}).json()
        assert stats["totalDataPoints"] == 2000


def test_resume_never_and_new_ask_the_server(server: ServerProcess, children: Callable[..., Child]) -> None:
    first = children(server.url)
    assert first.receive() == {"prefix": PREFIX}
    assert first.receive() == {"logged": 100}
    first.send("complete")
    assert first.receive()["ok"] is True
    never = children(server.url, "--resume", "never")
    assert never.receive()["error"] == "exists"
    assert never.finish() == 3
    new = children(server.url, "--resume", "new")
    assert new.receive() == {"prefix": "alice/owners/remote-2"}
    assert new.receive() == {"logged": 100}


def test_resume_new_without_the_server_fails_at_start_saying_why(
    tmp_path: Path, children: Callable[..., Child]
) -> None:
    child = children(f"http://127.0.0.1:{free_port()}", "--resume", "new")
    refused = child.receive()
    assert refused["error"] == "storage_error" and "resume='new'" in refused["message"]
    assert child.finish() == 3


def test_a_server_down_at_start_gets_the_claim_once_it_answers(tmp_path: Path, children: Callable[..., Child]) -> None:
    port = free_port()
    child = children(f"http://127.0.0.1:{port}")
    assert child.receive() == {"prefix": PREFIX}  # it warned and went on
    assert child.receive(HANG_GUARD) == {"logged": 100}
    server = ServerProcess(root=tmp_path / "late-root", port=port)
    try:
        server.start()
        wait_for(server, lambda i: i is not None and i.status == "RUNNING" and i.heartbeat_at is not None,
                 within=HANG_GUARD)
        other = children(server.url)  # the claim of the first has landed: a second one is refused
        assert other.receive()["error"] == "busy"
        child.send("complete")
        assert child.receive(HANG_GUARD)["ok"] is True
        assert "cannot claim" in child.stderr()
    finally:
        server.stop()


def test_hybrid_mode_claims_the_folder_and_the_server(server: ServerProcess, tmp_path: Path) -> None:
    local = tmp_path / "local"
    with Experiment(PREFIX, dash_url=server.url, dash_root=local, lease_seconds=LEASE, close_timeout=20).run as exp:
        with pytest.raises(ExperimentBusyError):  # refused by the folder's lock first
            Experiment(PREFIX, dash_url=server.url, dash_root=local).run.start()
        with pytest.raises(ExperimentBusyError):  # another folder, the same server: refused by the lease
            Experiment(PREFIX, dash_url=server.url, dash_root=tmp_path / "other").run.start()
        exp.metrics("train").log(i=1)
    stored = LocalStore(local).get_experiment(PREFIX)
    assert stored is not None and stored.status == "COMPLETED"
    info = served(server)
    assert info is not None and info.status == "COMPLETED" and info.heartbeat_at is not None
