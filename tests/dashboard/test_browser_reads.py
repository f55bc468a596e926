"""The dashboard on the read side of issue 10: the filter sent to ``GET /api/v1/runs``,
zoom asking ``GET /api/v1/metrics/series`` for a range at the chart's width, and live
updates over ``GET /api/v1/events``. Each test is skipped while the server it runs
against lacks its route (the page then uses the fallback in frontend/src/fallback.ts,
which test_browser.py covers).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from support.processes import LineWaiter, ServerProcess, kill_child, start

from .conftest import fill, shoot
from .test_browser import chart, chart_line, wait_for_runs
from .train_demo import SPIKE_INDEX, SPIKE_VALUE

OpenPage = Callable[..., Any]


def has_route(base: str, path: str) -> bool:
    """False when the server answers Starlette's own 404 (no such route)."""
    with httpx.Client(timeout=10) as client, client.stream("GET", base + path) as response:
        if response.status_code != 404:
            return True
        return bool(response.read() != b'{"code":"not_found","message":"Not Found"}')


def need(server: ServerProcess, path: str) -> None:
    if not has_route(server.url, path):
        pytest.skip(f"this server has no {path.split('?')[0]} route yet")


def test_filter_is_applied_by_the_server(open_page: OpenPage, server: ServerProcess) -> None:
    need(server, "/api/v1/runs?owner=alice")
    page = open_page("/runs/alice/vision")
    wait_for_runs(page, 3)
    box = page.get_by_role("combobox", name="Filter runs")
    with page.expect_request(re.compile(r"/api/v1/runs\?.*where=")) as asked:
        box.fill('params.lr < 0.005 and status == "COMPLETED"')
        box.press("Enter")
    assert parse_qs(urlsplit(asked.value.url).query)["where"] == ['params.lr < 0.005 and status == "COMPLETED"']
    assert sorted(wait_for_runs(page, 2)) == ["alice/vision/resnet/run-1", "alice/vision/resnet/run-3"]
    page.reload()
    assert sorted(wait_for_runs(page, 2)) == ["alice/vision/resnet/run-1", "alice/vision/resnet/run-3"]
    box.fill("params.lr <")
    box.press("Enter")
    error = page.get_by_test_id("filter-error")
    error.wait_for()
    assert "column" in error.inner_text()
    shoot(page, "runs-filter-error")


@pytest.mark.slow
def test_zoom_asks_the_server_for_the_range_at_the_chart_width(open_page: OpenPage, server: ServerProcess) -> None:
    need(server, "/api/v1/metrics/series?prefix=alice/vision/resnet/run-1&name=train&y=loss&width=10")
    page = open_page("/run/alice/vision/resnet/run-1?smooth=0")
    plot = chart(page, "train", "loss")
    box = plot.locator(".u-over").bounding_box()
    left, right = plot.evaluate(f"""el => [{SPIKE_INDEX - 300}, {SPIKE_INDEX + 300}]
        .map(x => el.mlDashChart.uplot.valToPos(x, 'x'))""")
    y = box["y"] + box["height"] / 2
    with page.expect_request(re.compile(r"/api/v1/metrics/series\?.*x0=")) as asked:
        page.mouse.move(box["x"] + left, y)
        page.mouse.down()
        page.mouse.move(box["x"] + right, y, steps=4)
        page.mouse.up()
    query = parse_qs(urlsplit(asked.value.url).query)
    assert query["name"] == ["train"] and query["y"] == ["loss"] and query["x"] == ["index"]
    per_pixel = 5000 / box["width"]  # the drag lands on whole pixels
    assert abs(float(query["x0"][0]) - (SPIKE_INDEX - 300)) < 3 * per_pixel
    assert abs(float(query["x1"][0]) - (SPIKE_INDEX + 300)) < 3 * per_pixel
    assert int(query["width"][0]) >= box["width"] * 0.9
    page.wait_for_selector('figure[data-field="loss"][data-zoomed="1"]')
    assert SPIKE_VALUE in chart_line(plot)["y"]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[ServerProcess]:
    root = tmp_path / ".dash"
    fill(root)
    srv = ServerProcess(root=root).start()
    yield srv
    srv.stop()


@pytest.mark.slow
def test_a_running_experiment_updates_by_itself(live_server: ServerProcess, open_page: OpenPage) -> None:
    # live_server first: set up before the page and stopped after it, once the page's event stream is closed.
    need(live_server, "/api/v1/events?prefix=alice/vision/resnet/run-1")
    assert live_server.root is not None
    trainer = start("dashboard/train_demo.py", live_server.root, "--live", "carol/live/run-1", "--seconds", "6")
    try:
        LineWaiter(trainer).wait_for("started")
        page = open_page("/run/carol/live/run-1?smooth=0", base=live_server.url)
        page.evaluate("window.__sameDocument = true")
        assert "RUNNING" in page.locator(".run-header .status").inner_text()
        plot = chart(page, "train", "loss")
        first = len(chart_line(plot)["x"])
        page.wait_for_function("n => document.querySelector('[data-field=loss] [data-testid=chart]')"
                               ".mlDashChart.lines[0].x.length > n + 10", arg=first, timeout=10_000)
        page.get_by_role("tab", name="logs").click()
        page.get_by_test_id("live-tail").wait_for()
        assert page.get_by_test_id("live-tail").is_checked()
        page.get_by_text(re.compile(r"live step \d+")).first.wait_for()
        page.get_by_role("tab", name="charts").click()
        page.locator(".run-header .status-completed").wait_for(timeout=30_000)
        assert page.evaluate("window.__sameDocument") is True  # no reload
        assert page.get_by_test_id("live-state").inner_text() == "● live"
    finally:
        kill_child(trainer)
