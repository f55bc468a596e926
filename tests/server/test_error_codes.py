"""Every error the server answers has a code with one status, one exception class and a
row in docs/http-api.md — the answers written straight to the socket by the connection
guard (408 ``timeout``, 503 ``unavailable``) included, checked on a real server."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

from ml_dash.errors import ERRORS_BY_CODE, HTTP_STATUS, RequestTimeoutError, UnavailableError
from support.processes import running

DOC = Path(__file__).resolve().parents[2] / "docs" / "http-api.md"


def documented_codes() -> dict[str, int]:
    """code -> status, from the error table of docs/http-api.md."""
    rows = re.findall(r"^\s*\| `([a-z_]+)`[^|]*\| (\d{3}) \|", DOC.read_text(), flags=re.MULTILINE)
    return {code: int(status) for code, status in rows}


def raw_answer(sock: socket.socket, wait: float = 10.0) -> tuple[int, dict[str, str], dict[str, str]]:
    """The status, headers and JSON body of the one answer the server writes before closing."""
    sock.settimeout(wait)
    data = b""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def test_every_code_has_one_status_one_class_and_a_row_in_the_http_api_doc() -> None:
    assert set(ERRORS_BY_CODE) == set(HTTP_STATUS)
    assert documented_codes() == HTTP_STATUS
    assert (HTTP_STATUS[RequestTimeoutError.code], HTTP_STATUS[UnavailableError.code]) == (408, 503)
    for code, cls in ERRORS_BY_CODE.items():
        assert cls.code == code


def test_the_connection_guard_answers_timeout_and_unavailable_as_json_errors(tmp_path: Path) -> None:
    args = ("--header-timeout", "1", "--max-connections-per-client", "1")
    with running(*args, root=tmp_path / ".dash") as server:
        time.sleep(1.5)  # the readiness probe's connection is gone before the test opens its own
        with socket.create_connection(("127.0.0.1", server.port)) as first:
            first.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half the headers, then nothing
            time.sleep(0.2)
            with socket.create_connection(("127.0.0.1", server.port)) as second:
                status, headers, body = raw_answer(second)
            assert (status, body["code"]) == (HTTP_STATUS["unavailable"], "unavailable"), body
            assert "too many connections" in body["message"] and set(body) == {"code", "message"}
            assert headers["content-type"] == "application/json" and headers["connection"] == "close"
            status, headers, body = raw_answer(first)
            assert (status, body["code"]) == (HTTP_STATUS["timeout"], "timeout"), body
            assert "did not arrive within 1 s" in body["message"] and set(body) == {"code", "message"}
