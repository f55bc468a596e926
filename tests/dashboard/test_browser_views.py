"""The dashboard's views at their edges, in a real browser: no runs at all, a run with
nothing logged, names and tag lists far longer than a column, a 1,000-run table with
100 runs selected and overlaid, and a log of 1,000,000 lines paged at any depth.

The data is written through LocalStore (the folder format a training script writes);
each test saves screenshots under ``tests/dashboard/screenshots/``. The page fixture
fails a test whose page requested another host, threw, or hit the CSP.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_dash.records import ExperimentInfo, LogRecord
from ml_dash.stores.local import LocalStore
from support.processes import ServerProcess

from .conftest import SCREENSHOTS, shoot

OpenPage = Callable[..., Any]

WIDE = 1000  # runs in alice/wide
LOG_LINES = 1_000_000
LONG_NAME = "an-experiment-whose-name-goes-on-" + "and-on-" * 14 + "end"
LONG_RUN = f"alice/long/{'folder-with-a-rather-long-name/' * 2}{LONG_NAME}"
LONG_TAGS = [f"tag-{i}-{'x' * (i % 9)}" for i in range(40)] + ["a-single-tag-that-is-longer-than-any-column-" * 3]
EMPTY_RUN = "alice/edge/nothing-logged"
LOG_RUN = "alice/edge/chatty"


def experiment(store: LocalStore, prefix: str, *, at: float, tags: tuple[str, ...] = (),
               description: str | None = None) -> None:
    owner, project, *rest = prefix.split("/")
    store.open_experiment(ExperimentInfo(prefix=prefix, owner=owner, project=project, name=rest[-1],
                                         folders=tuple(rest[:-1]), tags=tags, description=description,
                                         status="COMPLETED", created_at=at, started_at=at, ended_at=at + 600))


def fill_edges(root: Path) -> None:
    store = LocalStore(str(root))
    t0 = 1_700_000_000.0
    for i in range(WIDE):
        prefix = f"alice/wide/sweep-{i // 100}/run-{i:04d}"
        experiment(store, prefix, at=t0 + i, tags=(["baseline", "sweep"][i % 2],))
        store.set_params(prefix, {"lr": round(0.1 / (1 + (i * 37) % 101), 6), "batch": [32, 64, 128][i % 3],
                                  "optimizer": ["adam", "sgd", "adamw"][i % 3]})
        store.append_metrics(prefix, "train", [{"loss": (2 + i / WIDE) / (1 + s) + (s * i % 7) / 50, "step": s}
                                               for s in range(50)])
    experiment(store, LONG_RUN, at=t0 + 5000, tags=tuple(LONG_TAGS),
               description="A description that is one long line " * 12 + "\nand a second line.")
    store.set_params(LONG_RUN, {"optimizer.schedule.warmup_then_cosine_with_restarts.cycle_length_in_steps": 12_000,
                                "model.name": "x" * 300, "lr": 0.001})
    store.append_metrics(LONG_RUN, "validation/per-class/accuracy-of-the-rarest-class",
                         [{"a_field_name_that_is_far_too_long_for_a_chart_title": i / 100, "step": i}
                          for i in range(200)])
    experiment(store, EMPTY_RUN, at=t0 + 6000)
    experiment(store, LOG_RUN, at=t0 + 7000)
    levels = ["debug", "info", "info", "info", "warn", "error"]
    batch = 100_000
    for lo in range(0, LOG_LINES, batch):
        store.append_logs(LOG_RUN, [LogRecord(t0 + i * 0.01, levels[i % 6], f"log line {i + 1} of the run",
                                              {"i": i + 1} if i % 1000 == 0 else None)
                                    for i in range(lo, lo + batch)])
    store.close()


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("edges") / ".dash"
    fill_edges(root)
    srv = ServerProcess(root=root).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def nothing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("nothing") / ".dash"
    root.mkdir()
    srv = ServerProcess(root=root).start()
    yield srv
    srv.stop()


def rows(page: Any) -> Any:
    return page.locator("[data-testid=runs-table] tbody tr")


def wait_rows(page: Any, count: int) -> None:
    """Until the table holds ``count`` runs (a long one renders only the rows near the screen)."""
    page.wait_for_function(
        "n => document.querySelector('[data-testid=runs-table]')?.getAttribute('aria-rowcount') === String(n + 1) "
        "&& document.querySelector('[data-testid=runs-table] tbody tr[data-prefix]') "
        "&& !document.querySelector('[data-testid=runs-table][aria-busy=true]')", arg=count, timeout=60_000)


def overflow(page: Any) -> int:
    """How far the page is wider than the window (0 when nothing sticks out)."""
    return int(page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth"))


def test_no_runs_at_all_says_so_and_how_to_start(nothing: ServerProcess, open_page: OpenPage) -> None:
    for scheme in ("light", "dark"):
        page = open_page("/", color_scheme=scheme, base=nothing.url)
        page.get_by_text("No runs here yet.").wait_for()
        assert page.get_by_test_id("run-count").inner_text() == "0 runs"
        assert page.locator("[data-testid=runs-table] th button.sort").count() > 0  # the header stays
        shoot(page, "empty-runs" if scheme == "light" else "empty-runs-dark")
    compare = open_page("/compare", base=nothing.url)
    compare.get_by_text("Select runs in the").wait_for()


def test_a_run_with_nothing_logged_says_so_on_every_tab(edges: ServerProcess, open_page: OpenPage) -> None:
    page = open_page(f"/run/{EMPTY_RUN}", base=edges.url)
    page.get_by_text("This run has no metrics yet.").wait_for()
    shoot(page, "run-empty")
    page.get_by_role("tab", name="params").click()
    page.get_by_text("No params.").wait_for()
    page.get_by_role("tab", name="logs").click()
    page.get_by_text("This run has no log lines yet.").wait_for()
    assert page.locator(".pager").count() == 0  # nothing to page through
    shoot(page, "run-empty-logs")
    page.get_by_role("tab", name="tracks").click()
    page.get_by_text("No tracks.").wait_for()


def test_long_names_and_tag_lists_stay_inside_the_layout(edges: ServerProcess, open_page: OpenPage) -> None:
    for scheme in ("light", "dark"):
        page = open_page("/runs/alice/long", color_scheme=scheme, base=edges.url)
        wait_rows(page, 1)
        assert overflow(page) == 0
        cell = page.locator("[data-testid=runs-table] td.name")
        assert cell.bounding_box()["width"] < 1400 / 2  # cut with an ellipsis, not as wide as the name
        shoot(page, "runs-long-names" if scheme == "light" else "runs-long-names-dark")

        run = open_page(f"/run/{LONG_RUN}", color_scheme=scheme, base=edges.url)
        run.get_by_test_id("run-name").wait_for()
        run.locator("[data-testid=chart] canvas").first.wait_for()
        assert overflow(run) == 0
        name = run.get_by_test_id("run-name").bounding_box()
        assert name["x"] + name["width"] <= 1400
        tags = run.locator(".run-header .tag")
        assert tags.count() == len(LONG_TAGS)
        last = tags.nth(len(LONG_TAGS) - 1).bounding_box()
        assert last["x"] + last["width"] <= 1400  # the tag list wraps
        shoot(run, "run-long-names" if scheme == "light" else "run-long-names-dark")
    params = open_page(f"/run/{LONG_RUN}?tab=params", base=edges.url)
    params.get_by_text("cycle_length_in_steps").first.wait_for()
    assert overflow(params) == 0
    shoot(params, "run-long-params")


def test_a_thousand_run_table_selects_a_hundred_and_overlays_them(edges: ServerProcess, open_page: OpenPage) -> None:
    page = open_page("/runs/alice/wide", base=edges.url)
    wait_rows(page, WIDE)
    assert page.get_by_test_id("run-count").inner_text() == f"{WIDE} runs"
    page.locator('button.sort[data-column="params.lr"]').click()
    page.wait_for_url(re.compile(r"sort=params\.lr"))
    rendered = rows(page).count()
    assert 20 < rendered < 200  # the rows near the screen, not 1,000
    page.get_by_role("checkbox", name="Select all shown runs").click()  # the first 100: compare takes no more
    compare = page.get_by_role("button", name="Compare 100 selected")
    compare.wait_for()
    assert rows(page).first.get_attribute("class") == "selected"
    assert compare.is_enabled()
    assert page.get_by_role("link", name="Compare (100)").count() == 1
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "runs-1000-selected.png"))  # the window only: 1,000 rows are tall
    page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_function(f"() => [...document.querySelectorAll('[data-testid=runs-table] tbody tr[data-prefix]')]"
                           f".some(r => r.getAttribute('aria-rowindex') === '{WIDE + 1}')")  # the last run, scrolled to
    assert rows(page).count() < 200
    page.screenshot(path=str(SCREENSHOTS / "runs-1000-bottom.png"))
    page.evaluate("() => window.scrollTo(0, 0)")
    compare.click()
    page.wait_for_url("**/compare?**")
    page.get_by_role("heading", name="Compare 100 runs").wait_for()
    page.wait_for_function("() => document.querySelector('[data-testid=chart]')?.mlDashChart?.lines.length === 100",
                           timeout=60_000)
    assert page.locator(".legend li").count() == 100
    assert overflow(page) == 0
    shoot(page, "compare-100")


def test_a_million_log_lines_page_at_any_depth(edges: ServerProcess, open_page: OpenPage) -> None:
    page = open_page(f"/run/{LOG_RUN}?tab=logs", base=edges.url)
    count = page.get_by_test_id("log-count")
    count.get_by_text(f"lines 1–100 of {LOG_LINES}").wait_for(timeout=60_000)  # the first read builds the index
    page.get_by_role("button", name="Last").click()
    count.get_by_text(f"lines {LOG_LINES - 99}–{LOG_LINES} of {LOG_LINES}").wait_for()
    assert page.locator(".log-line").last.locator(".log-message").inner_text() == f"log line {LOG_LINES} of the run"
    started = time.monotonic()
    goto = page.get_by_test_id("log-goto")
    goto.fill("654321")
    goto.press("Enter")
    count.get_by_text(f"lines 654321–654420 of {LOG_LINES}").wait_for()
    assert page.locator(".log-line").first.locator(".log-message").inner_text() == "log line 654321 of the run"
    page.get_by_role("button", name="Next →").click()
    count.get_by_text(f"lines 654421–654520 of {LOG_LINES}").wait_for()
    assert time.monotonic() - started < 30  # a hang guard, not a speed target (the benchmark has those)
    page.get_by_role("checkbox", name="error").check()
    count.get_by_text(re.compile(r"lines 1–100 of 166,?666")).wait_for()
    assert set(page.locator(".log-line .level").all_inner_texts()) == {"error"}
    goto.fill("100000")
    goto.press("Enter")
    count.get_by_text(re.compile(r"lines 100000–100099 of 166,?666")).wait_for()
    shoot(page, "logs-million")
