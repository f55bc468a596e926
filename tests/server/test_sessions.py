"""Dashboard sessions: a token given once to POST /api/v1/session, then an HttpOnly,
SameSite=Strict cookie naming a session the server keeps (docs/http-api.md, "Sessions").

Most tests drive a real ``ml-dash serve --auth`` child over loopback with httpx; the
SessionStore's idle limit and cap are tested on the store itself, with a clock we move.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_dash.names import parse_prefix
from ml_dash.records import ExperimentInfo, LogRecord
from ml_dash.server import FileTokenStore, create_app
from ml_dash.server.sessions import COOKIE, SessionStore
from ml_dash.stores.local import LocalStore
from support.app import AppClient
from support.processes import HANG_GUARD, ServerProcess, ml_dash

ALICE = "alice/vision/run-1"
BOB = "bob/speech/run-a"
SESSION = "/api/v1/session"


@dataclass
class Env:
    server: ServerProcess
    root: Path
    alice: str
    bob: str

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=HANG_GUARD, **kwargs)

    def token(self, owner: str) -> str:
        return FileTokenStore(self.root).create(owner)


def seed(root: Path) -> None:
    """alice's and bob's experiments, each with a metric stream and a log line."""
    store = LocalStore(root)
    for prefix in (ALICE, BOB):
        p = parse_prefix(prefix)
        store.open_experiment(ExperimentInfo(prefix=prefix, owner=p.owner, project=p.project, name=p.name))
        store.append_metrics(prefix, "train", [{"loss": 1.0 / (i + 1), "_ts": 1.0 + i} for i in range(5)],
                             batch_id="seed")
        store.append_logs(prefix, [LogRecord(1.0, "info", f"hello from {p.owner}", None)], batch_id="seed")
    store.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("sessions") / ".dash"
    seed(root)
    tokens = FileTokenStore(root)
    alice, bob = tokens.create("alice"), tokens.create("bob")
    server = ServerProcess("--auth", root=root).start()
    yield Env(server, root, alice, bob)
    server.stop()


def log_in(client: httpx.Client, token: str) -> httpx.Response:
    return client.post(SESSION, json={"token": token})


def session_cookie(response: httpx.Response) -> SimpleCookie:
    """The Set-Cookie of ``response`` for the session cookie, parsed (attributes included)."""
    headers = [v for v in response.headers.get_list("set-cookie") if v.startswith(COOKIE + "=")]
    assert len(headers) == 1, response.headers
    jar: SimpleCookie = SimpleCookie()
    jar.load(headers[0])
    return jar


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"code", "message"} and body["code"] == "unauthorized"


# -- logging in ------------------------------------------------------------------------------


def test_logging_in_sets_an_httponly_samesite_strict_cookie_that_is_not_the_token(env: Env) -> None:
    with env.client() as client:
        response = log_in(client, env.alice)
        assert response.status_code == 200, response.text
        assert response.json() == {"auth": True, "owner": "alice"}
        assert response.headers["cache-control"] == "no-store"
        raw = response.headers["set-cookie"]
        morsel = session_cookie(response)[COOKIE]
        assert morsel["httponly"] is True
        assert morsel["samesite"].lower() == "strict"
        assert morsel["path"] == "/"
        assert not morsel["secure"]  # plain http: a Secure cookie would never come back
        assert not morsel["max-age"] and not morsel["expires"]  # ends with the browser session
        assert env.alice not in raw and env.alice.split("_", 2)[2] not in morsel.value
        assert len(morsel.value) == 43  # 256 random bits, url-safe base64
        assert client.get(SESSION).json() == {"auth": True, "owner": "alice"}  # the jar sends it back


def test_behind_an_https_proxy_the_cookie_is_secure(env: Env) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, where a reverse proxy would be.
    with env.client() as client:
        response = client.post(SESSION, json={"token": env.alice}, headers={"X-Forwarded-Proto": "https"})
        assert response.status_code == 200, response.text
        morsel = session_cookie(response)[COOKIE]
        assert morsel["secure"] is True and morsel["httponly"] is True and morsel["samesite"].lower() == "strict"
        out = client.request("DELETE", SESSION, headers={"X-Forwarded-Proto": "https"})
        cleared = session_cookie(out)[COOKIE]  # cleared with the same attributes, or a browser would keep it
        assert cleared.value == "" and cleared["max-age"] == "0" and cleared["secure"] is True


@pytest.mark.parametrize("kind", ["wrong secret", "unknown id", "malformed", "empty-ish", "revoked"])
def test_a_bad_token_is_401_with_the_error_shape_and_sets_no_cookie(env: Env, kind: str) -> None:
    token_id = env.alice.split("_")[1]
    if kind == "revoked":
        token = env.token("alice")
        ml_dash("token", "revoke", token.split("_")[1], "--root", str(env.root))
    else:
        token = {"wrong secret": f"mld_{token_id}_{'A' * 43}", "unknown id": f"mld_ffffffffff_{'A' * 43}",
                 "malformed": "not a token", "empty-ish": " "}[kind]
    with env.client() as client:
        response = log_in(client, token)
        assert_unauthorized(response)
        assert "set-cookie" not in response.headers
        assert_unauthorized(client.get("/api/v1/runs"))


@pytest.mark.parametrize("headers, body", [
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"token=x"),  # what a cross-site form sends
    ({"Content-Type": "text/plain"}, b'{"token": "x"}'),  # the other "simple" content type
    ({"Content-Type": "application/json"}, b'{"token": "x", "owner": "bob"}'),  # unknown member
    ({"Content-Type": "application/json"}, b'{"tok": "x"}'),
    ({"Content-Type": "application/json"}, b'{"token": 5}'),
    ({"Content-Type": "application/json"}, b"{bad"),
])
def test_logging_in_takes_only_a_json_body_with_just_the_token(env: Env, headers: dict[str, str],
                                                                 body: bytes) -> None:
    with env.client() as client:
        response = client.post(SESSION, content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "bad_request"
        assert "set-cookie" not in response.headers


# -- what a cookie reaches ---------------------------------------------------------------------


def read_events(client: httpx.Client, **params: Any) -> list[str]:
    """The ``data:`` lines of an event stream up to its ``ready`` event."""
    lines: list[str] = []
    with client.stream("GET", "/api/v1/events", params=params) as response:
        assert response.status_code == 200, response.read()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                lines.append(f"{event} {line[6:]}")
                if event == "ready":
                    return lines
    raise AssertionError(f"the stream ended before ready: {lines}")


def test_a_cookie_reaches_only_its_owners_experiments(env: Env) -> None:
    with env.client() as bob:
        log_in(bob, env.bob)
        runs = bob.get("/api/v1/runs").json()["runs"]
        assert [r["prefix"] for r in runs] == [BOB]
        assert [e["prefix"] for e in bob.get("/api/v1/experiments").json()["experiments"]] == [BOB]
        series = bob.get("/api/v1/metrics/series", params={"prefix": BOB, "name": "train", "y": "loss"})
        assert series.status_code == 200 and series.json()["series"][0]["total"] == 5
        assert bob.get("/api/v1/logs", params={"prefix": BOB}).json()["logs"][0]["message"] == "hello from bob"
        events = read_events(bob)  # no scope: the cookie's owner
        assert events and all(BOB in e for e in events if not e.startswith("ready")), events
        assert not any(ALICE in e for e in events)
        refusals: list[tuple[str, dict[str, Any]]] = [
            ("/api/v1/runs", {"owner": "alice"}),
            ("/api/v1/runs", {"folder": "alice/vision"}),
            ("/api/v1/experiments", {"owner": "alice"}),
            ("/api/v1/experiment", {"prefix": ALICE}),
            ("/api/v1/metrics/series", {"prefix": ALICE, "name": "train", "y": "loss"}),
            ("/api/v1/metrics/series", {"prefix": [BOB, ALICE], "name": "train", "y": "loss"}),
            ("/api/v1/metrics/read", {"prefix": ALICE, "name": "train"}),
            ("/api/v1/logs", {"prefix": ALICE}),
            ("/api/v1/events", {"prefix": ALICE}),
            ("/api/v1/events", {"owner": "alice"}),
        ]
        for path, params in refusals:
            refused = bob.get(path, params=params)
            assert refused.status_code == 403, (path, params, refused.text)
            assert refused.json()["code"] == "forbidden"
            assert "hello from alice" not in refused.text
    with env.client() as alice:
        log_in(alice, env.alice)
        assert [r["prefix"] for r in alice.get("/api/v1/runs").json()["runs"]] == [ALICE]


def test_a_cookie_may_write_with_json_but_not_with_a_form(env: Env) -> None:
    prefix = "bob/speech/from-cookie"
    with env.client() as bob:
        log_in(bob, env.bob)
        form = bob.post("/api/v1/experiment/open", content=b"prefix=" + prefix.encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 400 and form.json()["code"] == "bad_request"
        assert bob.get("/api/v1/experiment", params={"prefix": prefix}).status_code == 404
        opened = bob.post("/api/v1/experiment/open", json={"prefix": prefix})
        assert opened.status_code == 200, opened.text
        assert bob.post("/api/v1/experiment/open", json={"prefix": "alice/vision/x"}).status_code == 403


def test_the_bearer_header_is_unchanged_and_wins_over_a_cookie(env: Env) -> None:
    with env.client() as client:
        assert client.get(SESSION, headers={"Authorization": f"Bearer {env.alice}"}).json() == {
            "auth": True, "owner": "alice"}
        log_in(client, env.bob)
        assert client.get(SESSION).json()["owner"] == "bob"
        assert client.get(SESSION, headers={"Authorization": f"Bearer {env.alice}"}).json()["owner"] == "alice"
        assert_unauthorized(client.get(SESSION, headers={"Authorization": "Bearer nope"}))  # no fallback


def test_without_a_cookie_or_token_who_am_i_is_401(env: Env) -> None:
    with env.client() as client:
        assert_unauthorized(client.get(SESSION))
    for made_up in ("A" * 43, "x", env.alice):  # a guessed session, garbage, the token itself
        with env.client(cookies={COOKIE: made_up}) as client:
            assert_unauthorized(client.get(SESSION))


# -- ending sessions ---------------------------------------------------------------------------


def test_logout_clears_the_cookie_and_ends_the_session_on_the_server(env: Env) -> None:
    with env.client() as client:
        session_id = session_cookie(log_in(client, env.alice))[COOKIE].value
        assert client.get("/api/v1/runs").status_code == 200
        out = client.request("DELETE", SESSION)
        assert out.status_code == 200 and out.json() == {"auth": True, "owner": None}
        cleared = session_cookie(out)[COOKIE]
        assert cleared.value == "" and cleared["max-age"] == "0" and cleared["path"] == "/"
        assert cleared["httponly"] is True and cleared["samesite"].lower() == "strict"
        assert COOKIE not in client.cookies
    with env.client(cookies={COOKIE: session_id}) as replay:  # the old cookie, kept by an attacker
        assert_unauthorized(replay.get("/api/v1/runs"))
        assert_unauthorized(replay.get(SESSION))
        assert replay.request("DELETE", SESSION).status_code == 200  # logging out twice is fine


def test_logging_in_again_ends_the_previous_session(env: Env) -> None:
    with env.client() as client:
        first = session_cookie(log_in(client, env.alice))[COOKIE].value
        second = session_cookie(log_in(client, env.alice))[COOKIE].value
        assert first != second
    with env.client(cookies={COOKIE: first}) as old:
        assert_unauthorized(old.get(SESSION))
    with env.client(cookies={COOKIE: second}) as new:
        assert new.get(SESSION).json()["owner"] == "alice"


def test_revoking_the_token_ends_its_sessions(env: Env) -> None:
    token = env.token("alice")
    with env.client() as one, env.client() as two:
        log_in(one, token)
        log_in(two, token)
        assert one.get("/api/v1/runs").status_code == 200 and two.get(SESSION).status_code == 200
        ml_dash("token", "revoke", token.split("_")[1], "--root", str(env.root))
        assert_unauthorized(one.get("/api/v1/runs"))
        assert_unauthorized(two.get(SESSION))
        assert_unauthorized(log_in(one, token))
    with env.client() as other:  # alice's other token and its sessions go on
        log_in(other, env.alice)
        assert other.get(SESSION).json()["owner"] == "alice"


# -- the SessionStore itself (real FileTokenStore, a clock we move) ------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_idle_for_too_long_ends_and_use_keeps_it_alive(tmp_path: Path) -> None:
    tokens = FileTokenStore(tmp_path)
    token = tokens.create("alice")
    clock = Clock()
    sessions = SessionStore(tokens, idle_seconds=60, clock=clock)
    opened = sessions.open(token)
    assert opened is not None
    session_id, owner = opened
    assert owner == "alice"
    for _ in range(5):
        clock.now += 50
        assert sessions.owner(session_id) == "alice"
    clock.now += 61
    assert sessions.owner(session_id) is None
    assert len(sessions) == 0


def test_beyond_the_cap_the_least_recently_used_sessions_are_dropped(tmp_path: Path) -> None:
    tokens = FileTokenStore(tmp_path)
    token = tokens.create("alice")
    clock = Clock()
    sessions = SessionStore(tokens, max_sessions=3, clock=clock)
    ids = []
    for _ in range(3):
        clock.now += 1
        opened = sessions.open(token)
        assert opened is not None
        ids.append(opened[0])
    clock.now += 1
    assert sessions.owner(ids[0]) == "alice"  # used: now the most recent
    clock.now += 1
    assert sessions.open(token) is not None
    assert len(sessions) == 3
    assert sessions.owner(ids[1]) is None  # the least recently used went
    assert sessions.owner(ids[0]) == "alice" and sessions.owner(ids[2]) == "alice"


def test_without_auth_the_session_routes_say_so_and_set_no_cookie(dash_root: Path) -> None:
    client = AppClient(create_app(LocalStore(dash_root)))
    try:
        assert client.get(SESSION).json() == {"auth": False, "owner": None}
        response = client.post(SESSION, json={"token": "anything"})
        assert response.json() == {"auth": False, "owner": None} and "set-cookie" not in response.headers
        assert client.post(SESSION, json={"nope": 1}).status_code == 400
    finally:
        client.close()
