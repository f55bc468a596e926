"""A client in remote mode while its server is SIGKILLed and started again.

A real child process logs metrics, log lines and track entries to a real ``ml-dash
serve``. The test SIGKILLs the server while it receives (twice in the default test,
four times in the slow one), lets the client log a whole chunk while the server is
dead, and starts it again on the same port and root; a last kill comes just before
the client closes, so close starts with the server dead and must complete once it is
back. The client must lose nothing and store nothing twice (batch ids make resends
idempotent), and its logging calls must never raise or stall while the server is away.

Nothing is timed as an assertion: the slowest logging call is printed, and every
wait has a generous hang guard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_dash.stores.local import LocalStore
from support.files import spooled_left
from support.processes import HANG_GUARD, Child, ServerProcess

PREFIX = "alice/kill/run-1"
CLOSE_TIMEOUT = 120.0  # close waits for the server this long at most (a hang guard, not a target)


@dataclass
class Run:
    """The client, its server and what the client answered."""

    server: ServerProcess
    chat: Child
    workdir: Path
    answers: list[dict[str, Any]] = field(default_factory=list)
    down: list[dict[str, Any]] = field(default_factory=list)  # answers to `log` while the server was dead
    kills: list[tuple[int, int]] = field(default_factory=list)  # (points the server held, points logged)

    def log(self, points: int) -> dict[str, Any]:
        answer = self.chat.ask(f"log {points}")
        assert answer["errors"] == 0, answer
        self.answers.append(answer)
        if self.server.proc is not None and self.server.proc.poll() is not None:
            self.down.append(answer)
        return answer


def stored_points(server: ServerProcess) -> int:
    """How many points of ``train`` the running server holds (it answers on its own port)."""
    response = httpx.get(f"{server.url}/api/v1/metrics/stats", params={"prefix": PREFIX, "name": "train"}, timeout=30)
    return int(response.json()["totalDataPoints"])


def kill_while_receiving(run: Run, logged: int) -> None:
    """SIGKILL the server as soon as it stores more of the ``logged`` points.

    Usually it holds only part of them then, so requests are in flight when it dies; if
    it already held them all, the kill lands between two of the client's batches. Both
    are noted in ``run.kills``.
    """
    deadline = time.monotonic() + HANG_GUARD
    before = stored = stored_points(run.server)
    while stored == before and stored < logged:
        if time.monotonic() > deadline:
            raise AssertionError(f"the server stored nothing new for {HANG_GUARD}s (hang guard): {stored} points")
        time.sleep(0.002)
        stored = stored_points(run.server)
    run.server.kill()
    run.kills.append((stored, logged))


def check_stored(root: Path, n: int) -> None:
    """Exactly the client's points, log lines and track entries, each once, in order."""
    store = LocalStore(root)
    try:
        page = store.read_metrics(PREFIX, "train", 0, n + 100)
        assert page["total"] == n
        indexes = [p["index"] for p in page["data"]]
        steps = [p["data"]["step"] for p in page["data"]]
        assert indexes == list(range(n)), "metric indexes are not exactly 0..N-1"
        assert steps == list(range(n)), "a point is missing, repeated or out of order"
        logs = store.query_logs(PREFIX, {"limit": n})["logs"]
        assert [r["sequenceNumber"] for r in logs] == list(range(len(logs)))
        assert [r["message"] for r in logs] == [f"line {i}" for i in range(0, n, 10)]
        entries = store.read_tracks(PREFIX, "robot/pose")
        assert [(e["timestamp"], e["x"]) for e in entries] == [(float(i), i) for i in range(5, n, 10)]
        info = store.get_experiment(PREFIX)
        assert info is not None and info.status == "COMPLETED"
    finally:
        store.close()


def start_run(tmp_path: Path, flush_interval: float) -> Run:
    server = ServerProcess(root=tmp_path / "server-root").start()
    workdir = tmp_path / "client"
    workdir.mkdir()
    chat = Child("remote/procs/remote_logger.py", server.url, PREFIX, CLOSE_TIMEOUT, flush_interval, cwd=workdir)
    assert chat.receive() == {"ready": True}
    return Run(server, chat, workdir)


def close_run(run: Run, restart_while_closing: bool) -> dict[str, Any]:
    """Close the client; with ``restart_while_closing`` the server is dead when close starts
    and comes back while close waits."""
    assert run.chat.ask("close") == {"closing": True}
    if restart_while_closing:
        run.server.start()
    result = run.chat.receive(hang_guard=CLOSE_TIMEOUT + 60)
    assert run.chat.finish() == 0
    return result


def report(run: Run, result: dict[str, Any]) -> None:
    slowest = max(a["max_call"] for a in run.answers)
    slowest_down = max((a["max_call"] for a in run.down), default=0.0)
    print(
        f"\n{result['logged']:,} points, {run.server.starts} server starts; slowest logging call "
        f"{slowest * 1e3:.2f} ms (while the server was dead: {slowest_down * 1e3:.2f} ms, "
        f"{sum(a['seconds'] for a in run.down):.2f} s of logging); close took {result['close_seconds']:.2f} s; "
        "killed holding " + ", ".join(f"{held:,} of {logged:,}" for held, logged in run.kills) + " points"
    )


def run_scenario(tmp_path: Path, chunk: int, kills: int, kill_during_close: bool, flush_interval: float) -> None:
    run = start_run(tmp_path, flush_interval)
    try:
        for _ in range(kills):
            answer = run.log(chunk)  # server up: the sender is delivering when the kill lands
            kill_while_receiving(run, answer["logged"])
            run.log(chunk)  # server dead: every call must return at once, nothing raises
            run.server.start()  # same port, same root
        run.log(chunk)
        if kill_during_close:
            kill_while_receiving(run, run.answers[-1]["logged"])
        result = close_run(run, restart_while_closing=kill_during_close)
        report(run, result)
        assert result["ok"], result["report"]
        n = result["logged"]
        assert n == (2 * kills + 1) * chunk
        assert len(run.down) == kills
        assert spooled_left(run.workdir) == [], "the client left requests in its spool"
        run.server.stop()
        assert "Traceback" not in run.server.output(), run.server.output()
        check_stored(run.server.root, n)
    finally:
        run.chat.kill()
        run.server.kill()
        run.server.stop()


def test_server_killed_twice_while_the_client_logs(tmp_path: Path) -> None:
    run_scenario(tmp_path, chunk=10_000, kills=2, kill_during_close=True, flush_interval=0.05)


@pytest.mark.slow
def test_server_killed_repeatedly_under_a_heavy_stream(tmp_path: Path) -> None:
    run_scenario(tmp_path, chunk=150_000, kills=4, kill_during_close=True, flush_interval=0.5)
