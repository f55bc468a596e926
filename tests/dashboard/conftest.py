"""Browser fixtures: Debian's Chromium driven by Playwright for Python, against a real
``ml-dash serve`` child over a folder that a real training script filled.

Every page records the requests it makes; a test fails if any went to another host
than the server, if the page threw, or if the Content-Security-Policy blocked
anything. ``shoot(page, name)`` saves a screenshot in ``tests/dashboard/screenshots/``
(git-ignored; made at run time).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from support.processes import HANG_GUARD, ServerProcess, child_env

HERE = Path(__file__).resolve().parent
SCREENSHOTS = HERE / "screenshots"
CHROMIUM = os.environ.get("ML_DASH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync"]
TIMEOUT_MS = 20_000  # 2 shared cores: generous, still a hang guard


def fill(root: Path, *args: str) -> None:
    """Run the demo training script (a real ml_dash.Experiment user) into ``root``."""
    done = subprocess.run([sys.executable, str(HERE / "train_demo.py"), str(root), *args], env=child_env(),
                          capture_output=True, text=True, timeout=HANG_GUARD * 2)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dashboard") / ".dash"
    fill(root)
    return root


@pytest.fixture(scope="session")
def server(demo_root: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(root=demo_root).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageWatch:
    """What a page did that a test must not allow: requests elsewhere, errors, CSP refusals."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.requests: list[str] = []
        self.problems: list[str] = []

    def on_request(self, request: Any) -> None:
        self.requests.append(request.url)
        parts = urlsplit(request.url)
        if parts.scheme not in ("data", "blob") and f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.problems.append(f"request to another host: {request.url}")

    def on_console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            self.problems.append(f"CSP: {message.text}")

    def on_error(self, error: Any) -> None:
        self.problems.append(f"page error: {error}")


@pytest.fixture
def open_page(browser: Any, server: ServerProcess) -> Iterator[Callable[..., Any]]:
    """``open_page(path, color_scheme="light")``: a fresh page (own context) at ``server.url + path``."""
    contexts: list[tuple[Any, PageWatch]] = []

    def open_(path: str = "/", color_scheme: str = "light", base: str | None = None) -> Any:
        origin = base or server.url
        context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme=color_scheme)
        context.set_default_timeout(TIMEOUT_MS)
        watch = PageWatch(origin)
        page = context.new_page()
        page.on("request", watch.on_request)
        page.on("console", watch.on_console)
        page.on("pageerror", watch.on_error)
        page.watch = watch
        contexts.append((context, watch))
        page.goto(origin + path)
        return page

    yield open_
    problems = [p for _, watch in contexts for p in watch.problems]
    for context, _ in contexts:
        context.close()
    assert not problems, "\n".join(problems)


def shoot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as screenshots/<name>.png (the folder is made here)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
