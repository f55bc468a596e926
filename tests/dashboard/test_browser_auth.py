"""The dashboard's login in a real browser, against ``ml-dash serve --auth``.

The page asks for a token once and posts it; from then on the server's session cookie
(HttpOnly, SameSite=Strict) is all the page sends: no token in any storage a script can
read. Data: a copy of the demo folder (``train_demo.py``), where alice has four runs
and bob one.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_dash.server.sessions import COOKIE
from support.processes import HANG_GUARD, ServerProcess, ml_dash

from .conftest import shoot
from .test_browser import chart, wait_for_runs

OpenPage = Callable[..., Any]
BOB_RUNS = ["bob/speech/run-a"]


@dataclass
class AuthServer:
    server: ServerProcess
    root: Path
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def auth_server(demo_root: Path, tmp_path: Path) -> Iterator[AuthServer]:
    root = tmp_path / ".dash"
    shutil.copytree(demo_root, root)
    tokens = {}
    for owner in ("alice", "bob"):
        created = ml_dash("token", "create", "--owner", owner, "--root", str(root))
        tokens[owner] = re.findall(r"mld_\S+", created.stdout)[0]
    server = ServerProcess("--auth", root=root).start()
    yield AuthServer(server, root, tokens)
    server.stop()


def login_form(page: Any) -> Any:
    form = page.get_by_test_id("login-form")
    form.wait_for()
    return form


def log_in(page: Any, token: str) -> None:
    login_form(page)
    page.get_by_label("Token").fill(token)
    page.get_by_label("Token").press("Enter")  # the keyboard submits


def status_of(page: Any, path: str) -> int:
    """The status of a GET the page itself makes (same origin: the cookie goes with it)."""
    status: int = page.evaluate("p => fetch(p).then(r => r.status)", path)
    return status


def script_storage(page: Any) -> str:
    """Everything a script can read that could hold a token: both storages and document.cookie."""
    text: str = page.evaluate(
        "() => JSON.stringify({s: {...sessionStorage}, l: {...localStorage}, c: document.cookie})")
    return text


def test_login_then_only_the_owners_runs_a_cookie_scripts_cannot_read_and_logout(
    auth_server: AuthServer, open_page: OpenPage
) -> None:
    page = open_page("/runs", base=auth_server.url)
    form = login_form(page)
    assert page.get_by_role("heading", name="Log in to ML-Dash").is_visible()
    assert page.evaluate("document.activeElement?.name") == "token"  # focus is in the field
    assert page.get_by_role("navigation", name="Main").count() == 0
    shoot(page, "login")

    page.get_by_label("Token").fill("mld_0123456789_" + "A" * 43)
    page.get_by_role("button", name="Log in").click()
    alert = form.get_by_role("alert")
    alert.wait_for()
    assert "does not know this token" in alert.inner_text()
    assert page.context.cookies() == []
    shoot(page, "login-refused")

    log_in(page, auth_server.tokens["bob"])
    assert wait_for_runs(page, 1) == BOB_RUNS
    assert page.get_by_test_id("owner").inner_text() == "bob"
    shoot(page, "runs-logged-in")

    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == [COOKIE]
    cookie = cookies[0]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["secure"] is False  # plain http on loopback
    assert cookie["expires"] == -1  # a session cookie: gone with the browser session
    assert cookie["value"] != auth_server.tokens["bob"]
    storage = script_storage(page)
    assert "mld_" not in storage and cookie["value"] not in storage and '"c":""' in storage

    page.reload()  # the session survives a reload: no form, the same runs
    assert wait_for_runs(page, 1) == BOB_RUNS
    assert page.get_by_test_id("login-form").count() == 0
    assert status_of(page, "/api/v1/runs?owner=alice") == 403
    assert status_of(page, "/api/v1/metrics/series?prefix=alice/vision/resnet/run-1&name=train&y=loss") == 403

    logout = page.get_by_role("button", name="Log out")
    logout.focus()
    page.keyboard.press("Enter")  # keyboard-accessible
    login_form(page)
    assert page.context.cookies() == []
    assert status_of(page, "/api/v1/runs") == 401
    assert status_of(page, "/api/v1/session") == 401
    # The server forgot the session: the old cookie, replayed, is refused too.
    with httpx.Client(base_url=auth_server.url, cookies={COOKIE: cookie["value"]}, timeout=HANG_GUARD) as replay:
        answer = replay.get("/api/v1/runs")
        assert answer.status_code == 401 and answer.json()["code"] == "unauthorized"
    assert "mld_" not in script_storage(page)


def test_charts_and_live_events_use_the_cookie(auth_server: AuthServer, open_page: OpenPage) -> None:
    page = open_page("/run/alice/vision/resnet/run-1", base=auth_server.url, color_scheme="dark")
    login_form(page)
    shoot(page, "login-dark")
    log_in(page, auth_server.tokens["alice"])
    chart(page, "train", "loss")  # series through the cookie
    page.wait_for_function("() => document.querySelector('[data-testid=live-state]')?.textContent === '● live'")
    page.get_by_role("link", name="Runs").click()
    assert len(wait_for_runs(page, 4)) == 4


def test_a_revoked_token_returns_the_open_page_to_the_login_form(auth_server: AuthServer,
                                                                 open_page: OpenPage) -> None:
    page = open_page("/runs", base=auth_server.url)
    log_in(page, auth_server.tokens["alice"])
    wait_for_runs(page, 4)
    token_id = auth_server.tokens["alice"].split("_")[1]
    ml_dash("token", "revoke", token_id, "--root", str(auth_server.root))
    page.get_by_role("link", name="run-2").click()  # the next request gets 401
    login_form(page)
    assert status_of(page, "/api/v1/session") == 401
    log_in(page, auth_server.tokens["bob"])  # another token goes on from the same form
    refused = page.locator("main").get_by_role("alert")
    refused.wait_for()  # alice's run is not bob's
    assert "cannot use experiments of 'alice'" in refused.inner_text()
    assert page.get_by_test_id("owner").inner_text() == "bob"
    page.get_by_role("link", name="Runs").click()
    assert wait_for_runs(page, 1) == BOB_RUNS
