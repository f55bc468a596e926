"""A server that refuses: found at the start when it can be, reported at close, resent later.

Against a real ``ml-dash serve --auth`` on loopback with tokens in its root.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from ml_dash import Experiment, InvalidValueError, LocalStore, NotFoundError
from ml_dash.errors import ForbiddenError, UnauthorizedError
from ml_dash.server.auth import FileTokenStore
from support.processes import ServerProcess, free_port, ml_dash, running

PREFIX = "alice/proj/run-1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running("--auth", root=tmp_path / "server-root") as proc:
        yield proc


def stored_indexes(server: ServerProcess, name: str = "train") -> list[int]:
    page = LocalStore(server.root).read_metrics(PREFIX, name, 0, 1_000_000)
    return [p["index"] for p in page["data"]]


def test_no_token_is_refused_at_the_start_before_anything_is_logged(server: ServerProcess, tmp_path: Path) -> None:
    exp = Experiment(PREFIX, dash_url=server.url, dash_root=None, echo=False)
    with pytest.raises(UnauthorizedError, match="requires a token"):
        exp.run.start()
    assert exp.status is None
    with pytest.raises(Exception, match="has not started"):
        exp.metrics("train").log(loss=1.0)
    assert LocalStore(server.root).get_experiment(PREFIX) is None


def test_another_owners_prefix_is_refused_at_the_start(server: ServerProcess) -> None:
    token = FileTokenStore(server.root).create("bob")
    exp = Experiment(PREFIX, dash_url=server.url, api_key=token, dash_root=None)
    with pytest.raises(ForbiddenError, match="belongs to 'bob'"):
        exp.run.start()
    assert LocalStore(server.root).get_experiment(PREFIX) is None


def test_a_good_token_starts_and_writes_everything(server: ServerProcess, tmp_path: Path) -> None:
    token = FileTokenStore(server.root).create("alice")
    with Experiment(PREFIX, dash_url=server.url, api_key=token, dash_root=None).run as exp:
        for i in range(100):
            exp.metrics("train").log(loss=float(i))
    assert exp.close_report is not None and exp.close_report.ok, str(exp.close_report)
    assert stored_indexes(server) == list(range(100))


def test_an_address_that_is_no_url_is_refused_when_the_experiment_is_made() -> None:
    with pytest.raises(InvalidValueError, match="not a server address"):
        Experiment(PREFIX, dash_url="localhost:8000", dash_root=None)
    with pytest.raises(InvalidValueError, match="not a server address"):
        Experiment(PREFIX, dash_url="ftp://example.org", dash_root=None)


class _NotMLDash(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>no such page</html>"
        self.send_response(404)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_an_address_that_is_not_an_ml_dash_server_is_refused_at_the_start() -> None:
    web = HTTPServer(("127.0.0.1", 0), _NotMLDash)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        exp = Experiment(PREFIX, dash_url=f"http://127.0.0.1:{web.server_port}", dash_root=None)
        with pytest.raises(NotFoundError, match="not an ML-Dash server"):
            exp.run.start()
    finally:
        web.shutdown()
        web.server_close()


def test_an_unreachable_server_only_warns_at_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp = Experiment(PREFIX, dash_url=url, dash_root=None, check_timeout=2.0, close_timeout=0.5)
        exp.run.start()
        exp.metrics("train").log(loss=1.0)
        report = exp.run.complete()
    assert any("cannot reach" in str(w.message) and "kept in the outbox" in str(w.message) for w in caught)
    assert report is not None and report.spooled > 0 and report.queued.get("metrics 'train'") == 1


def test_data_the_server_refuses_mid_run_is_reported_then_resent_with_retry_rejected(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tokens = FileTokenStore(server.root)
    first = tokens.create("alice")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Experiment(PREFIX, dash_url=server.url, api_key=first, dash_root=None, close_timeout=20).run as exp:
            for i in range(100):
                exp.metrics("train").log(step=i)
            assert exp.metrics("train").stats()["totalDataPoints"] == 100  # delivered
            tokens.revoke(first.split("_")[1])
            for i in range(100, 300):
                exp.metrics("train").log(step=i)
            exp.log("after the revocation")
    report = exp.close_report
    assert report is not None and not report.ok
    assert report.refused.get("metrics 'train'") == 200, str(report)
    assert report.refused.get("logs") == 1
    assert "REFUSED by the server" in str(report) and "--retry-rejected" in str(report)
    assert any("REFUSED by the server" in str(w.message) for w in caught), "the summary reaches stderr"
    assert stored_indexes(server) == list(range(100))

    second = tokens.create("alice")
    root = str(tmp_path / ".dash")
    plain = ml_dash("--root", root, "sync", "--api-key", second, check=False)
    assert "sent 0 requests" in plain.stdout, plain.stdout + plain.stderr
    assert stored_indexes(server) == list(range(100)), "a plain sync leaves refused data alone"

    again = ml_dash("--root", root, "sync", "--api-key", second, "--retry-rejected")
    assert "tried again" in again.stdout and "0 still waiting" in again.stdout, again.stdout
    assert stored_indexes(server) == list(range(300))
    steps = [p["data"]["step"] for p in LocalStore(server.root).read_metrics(PREFIX, "train", 0, 1000)["data"]]
    assert steps == list(range(300))
    info = LocalStore(server.root).get_experiment(PREFIX)
    assert info is not None and info.status == "COMPLETED"
    assert LocalStore(server.root).query_logs(PREFIX, {"search": "revocation"})["total"] == 1

    once_more = ml_dash("--root", root, "sync", "--api-key", second, "--retry-rejected")
    assert "sent 0 requests" in once_more.stdout
    assert stored_indexes(server) == list(range(300)), "nothing is stored twice"
