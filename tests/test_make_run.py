"""The README's first command, ``make run``: the example trains, then the dashboard serves it.

It runs the real Makefile target (the install step is taken as done: the test suite
runs inside the venv it built) with ``DASH_ROOT`` pointing into a temporary folder, so
the developer's own ``.dash`` is never touched, and a free ``PORT``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from support.processes import HANG_GUARD, TESTS, child_env, free_port

REPO = TESTS.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_trains_the_example_then_serves_the_dashboard_over_it(tmp_path: Path) -> None:
    if not (REPO / ".venv" / "bin" / "ml-dash").exists():
        pytest.skip("make run needs the project's .venv (make install)")
    port = free_port()
    root = tmp_path / "dash"
    log = tmp_path / "make.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "-o", ".venv/.installed", "run", f"PORT={port}", f"DASH_ROOT={root}"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 3 * HANG_GUARD
        while f"dashboard: open {url}/" not in log.read_text():
            assert proc.poll() is None, f"make run ended early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"make run never served:\n{log.read_text()}"
            time.sleep(0.2)
        printed = log.read_text()
        assert re.search(r"logged 10000 training points", printed), printed
        assert f"open http://127.0.0.1:{port}/" in printed
        with httpx.Client(base_url=url, timeout=HANG_GUARD) as http:
            for _ in range(100):  # the address is printed just before the socket listens
                try:
                    page = http.get("/")
                    break
                except httpx.ConnectError:
                    time.sleep(0.1)
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            runs = http.get("/api/v1/runs", params={"owner": "demo"}).json()
            assert [r["name"] for r in runs["runs"]] == ["run-1"]
            assert runs["runs"][0]["status"] == "COMPLETED"
            assert runs["runs"][0]["metrics"]["train"]["loss"]["count"] == 10_000
        assert (root / "demo" / "quickstart" / "mlp" / "run-1" / "experiment.json").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
