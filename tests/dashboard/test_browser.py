"""The dashboard in a real browser, on what every ML-Dash server answers.

Data: ``train_demo.py`` (a real training script) logged five runs; ``alice/vision/
resnet/run-1`` has a loss spike of 50 at index SPIKE_INDEX and a NaN at NAN_INDEX.
The page fixture fails a test whose page requested another host, threw, or was
refused something by the Content-Security-Policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.processes import ServerProcess, ml_dash

from .conftest import fill, shoot
from .train_demo import HTML_MESSAGE, NAN_INDEX, SPIKE_INDEX, SPIKE_VALUE

RUN = "/run/alice/vision/resnet/run-1"
OpenPage = Callable[..., Any]


def shown_runs(page: Any) -> list[str]:
    rows = page.locator("[data-testid=runs-table] tbody tr")
    return [rows.nth(i).get_attribute("data-prefix") for i in range(rows.count())]


def wait_for_runs(page: Any, count: int) -> list[str]:
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=runs-table] tbody tr').length === n "
        "&& !document.querySelector('[data-testid=runs-table][aria-busy=true]')", arg=count)
    return shown_runs(page)


def chart(page: Any, stream: str, field: str) -> Any:
    """The plot element of a chart, once it has drawn."""
    plot = page.locator(f'figure[data-stream="{stream}"][data-field="{field}"] [data-testid=chart]')
    plot.locator("canvas").wait_for()
    return plot


def chart_line(plot: Any) -> dict[str, Any]:
    line: dict[str, Any] = plot.evaluate(
        "el => { const l = el.mlDashChart.lines[0]; return {x: l.x, y: l.y, raw: l.raw, nonFinite: l.nonFinite}; }")
    return line


@pytest.mark.slow
def test_tree_and_deep_links_navigate_with_a_working_back_button(open_page: OpenPage) -> None:
    page = open_page("/")
    assert len(wait_for_runs(page, 5)) == 5
    tree = page.get_by_role("navigation", name="Owners, projects and folders")
    tree.get_by_role("link", name=re.compile("^alice")).click()
    page.wait_for_url("**/runs/alice")
    assert all(p.startswith("alice/") for p in wait_for_runs(page, 4))
    page.get_by_role("link", name=re.compile("^vision")).first.click()
    page.wait_for_url("**/runs/alice/vision")
    assert sorted(wait_for_runs(page, 3)) == [f"alice/vision/resnet/run-{i}" for i in (1, 2, 3)]
    shoot(page, "runs")
    page.go_back()
    page.wait_for_url("**/runs/alice")
    wait_for_runs(page, 4)
    page.get_by_role("link", name="run-2").click()
    page.wait_for_url("**/run/alice/vision/resnet/run-2")
    assert page.get_by_test_id("run-name").inner_text() == "run-2"
    deep = open_page("/runs/bob")
    assert wait_for_runs(deep, 1) == ["bob/speech/run-a"]


def test_table_sorts_by_any_column_and_keeps_it_in_the_url(open_page: OpenPage) -> None:
    page = open_page("/runs/alice/vision")
    wait_for_runs(page, 3)
    page.locator('button.sort[data-column="params.lr"]').click()
    page.wait_for_url(re.compile(r"sort=params\.lr"))
    assert shown_runs(page) == ["alice/vision/resnet/run-1", "alice/vision/resnet/run-3", "alice/vision/resnet/run-2"]
    page.locator('button.sort[data-column="params.lr"]').press("Enter")  # the keyboard sorts too
    page.wait_for_url(re.compile(r"desc=1"))
    descending = ["alice/vision/resnet/run-2", "alice/vision/resnet/run-3", "alice/vision/resnet/run-1"]
    assert shown_runs(page) == descending
    page.reload()
    assert wait_for_runs(page, 3) == descending
    assert page.locator('th[aria-sort="descending"]').count() == 1


def test_columns_can_be_chosen(open_page: OpenPage) -> None:
    page = open_page("/runs/alice/vision")
    wait_for_runs(page, 3)
    page.get_by_text("Columns (").click()
    page.get_by_label("train.loss max").check()
    page.wait_for_url(re.compile(r"cols="))
    header = page.locator("[data-testid=runs-table] thead")
    assert "train.loss max" in header.inner_text()
    cell = page.locator('tr[data-prefix="alice/vision/resnet/run-1"] td').last
    assert cell.inner_text() == "50"  # the spike is the maximum


def test_run_page_shows_every_user_string_as_text(open_page: OpenPage) -> None:
    page = open_page(RUN)
    assert page.get_by_test_id("run-description").inner_text() == "ResNet-50 baseline <i>not italic</i>"
    assert page.locator(".description i").count() == 0
    page.get_by_role("tab", name="params").click()
    page.wait_for_url(re.compile(r"tab=params"))
    params = page.get_by_role("region", name="Params")
    assert "model.depth" in params.inner_text() and "optimizer" in params.inner_text()
    page.get_by_label("Search params").fill("depth")
    assert "optimizer" not in params.inner_text() and "model.depth" in params.inner_text()
    page.get_by_role("tab", name="params").press("ArrowRight")  # tabs follow the arrow keys
    page.wait_for_url(re.compile(r"tab=logs"))
    page.get_by_text(HTML_MESSAGE, exact=True).wait_for()
    assert page.locator(".log-lines img, .log-lines b").count() == 0
    assert page.evaluate("window.__pwned") is None
    shoot(page, "run-logs")


def test_logs_filter_by_level_and_text(open_page: OpenPage) -> None:
    page = open_page(RUN + "?tab=logs")
    count = page.get_by_test_id("log-count")
    page.wait_for_function("() => /of 14$/.test(document.querySelector('[data-testid=log-count]')?.textContent ?? '')")
    page.get_by_role("checkbox", name="error").check()
    page.wait_for_function("() => /of 1$/.test(document.querySelector('[data-testid=log-count]')?.textContent ?? '')")
    assert page.locator(".log-line").inner_text().count("loss spike at step") == 1
    page.get_by_role("checkbox", name="error").uncheck()
    page.wait_for_function("() => /of 14$/.test(document.querySelector('[data-testid=log-count]')?.textContent ?? '')")
    page.get_by_test_id("log-search").fill("epoch 3 ")
    page.wait_for_function("() => /of 1$/.test(document.querySelector('[data-testid=log-count]')?.textContent ?? '')")
    assert "epoch 3 done" in page.locator(".log-line").inner_text()
    assert count.is_visible()


def test_chart_draws_the_spike_and_marks_the_nan(open_page: OpenPage) -> None:
    page = open_page(RUN + "?smooth=0")
    plot = chart(page, "train", "loss")
    line = chart_line(plot)
    assert max(line["y"]) == SPIKE_VALUE
    assert line["x"][line["y"].index(SPIKE_VALUE)] == SPIKE_INDEX
    assert line["nonFinite"] == {"x": [NAN_INDEX], "values": ["NaN"]}
    assert f"NaN at {NAN_INDEX}" in page.locator('figure[data-field="loss"] [data-testid=nonfinite]').inner_text()
    # The canvas has the line's colour at the top of the spike.
    pixel = plot.evaluate("""el => {
        const {uplot: u, lines} = el.mlDashChart, l = lines[0], i = l.y.indexOf(Math.max(...l.y));
        const px = Math.round(u.valToPos(l.x[i], 'x', true)), py = Math.round(u.valToPos(l.y[i], 'y', true));
        const d = u.ctx.getImageData(px - 3, py - 1, 7, 7).data;
        let best = [0, 0, 0, 0];
        for (let k = 0; k < d.length; k += 4) if (d[k + 3] > best[3]) best = [d[k], d[k + 1], d[k + 2], d[k + 3]];
        return best;
    }""")
    red, _green, blue, alpha = pixel
    assert alpha > 200 and blue > red, pixel
    shoot(page, "run")


def test_axis_log_scale_and_smoothing_are_in_the_url(open_page: OpenPage) -> None:
    page = open_page(RUN)
    chart(page, "train", "loss")
    page.get_by_test_id("x-axis").select_option("step")
    page.wait_for_url(re.compile(r"x=step"))
    plot = chart(page, "train", "loss")
    page.wait_for_function(f"el => el.mlDashChart && el.mlDashChart.lines[0].x.includes({2 * SPIKE_INDEX})",
                           arg=plot.element_handle())
    page.get_by_test_id("log-scale").check()
    page.wait_for_url(re.compile(r"log=1"))
    page.reload()
    assert page.get_by_test_id("x-axis").input_value() == "step"
    assert page.get_by_test_id("log-scale").is_checked()
    assert page.locator('figure[data-field="step"]').count() == 0  # the x field is not charted against itself


@pytest.mark.slow
def test_drag_zooms_into_raw_points_and_double_click_resets(open_page: OpenPage) -> None:
    page = open_page(RUN + "?smooth=0")
    plot = chart(page, "train", "loss")
    figure = page.locator('figure[data-field="loss"]')
    assert figure.get_attribute("data-raw") == "0"  # 5,000 points on a ~400 px chart: reduced
    box = plot.locator(".u-over").bounding_box()
    left, right = plot.evaluate(f"""el => [{SPIKE_INDEX - 100}, {SPIKE_INDEX + 100}]
        .map(x => el.mlDashChart.uplot.valToPos(x, 'x'))""")
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + left, y)
    page.mouse.down()
    page.mouse.move(box["x"] + (left + right) / 2, y)
    page.mouse.move(box["x"] + right, y)
    page.mouse.up()
    page.wait_for_selector('figure[data-field="loss"][data-zoomed="1"][data-raw="1"]')
    line = chart_line(plot)
    assert SPIKE_VALUE in line["y"]
    assert min(line["x"]) >= SPIKE_INDEX - 110 and max(line["x"]) <= SPIKE_INDEX + 110
    assert line["x"] == list(range(int(min(line["x"])), int(max(line["x"])) + 1))  # every raw point
    shoot(page, "run-zoomed")
    plot.locator(".u-over").dblclick()
    page.wait_for_selector('figure[data-field="loss"][data-zoomed="0"][data-raw="0"]')


@pytest.mark.slow
def test_compare_overlays_selected_runs_and_diffs_params(open_page: OpenPage) -> None:
    page = open_page("/runs/alice/vision")
    wait_for_runs(page, 3)
    for i in (1, 2, 3):
        page.get_by_label(f"Select alice/vision/resnet/run-{i}").check()
    page.get_by_role("button", name="Compare 3 selected").click()
    page.wait_for_url(re.compile(r"/compare\?r="))
    page.get_by_test_id("compare-field").select_option(label="train · loss")
    plot = page.locator("figure [data-testid=chart]")
    plot.locator("canvas").wait_for()
    page.wait_for_function("el => el.mlDashChart && el.mlDashChart.lines.length === 3", arg=plot.element_handle())
    lines = plot.evaluate("el => el.mlDashChart.lines.map(l => [l.key, l.color, Math.max(...l.y)])")
    assert sorted(key for key, _, _ in lines) == [f"alice/vision/resnet/run-{i}" for i in (1, 2, 3)]
    assert len({color for _, color, _ in lines}) == 3
    assert all(peak == SPIKE_VALUE for _, _, peak in lines)
    diff = page.get_by_test_id("params-diff")
    rows = diff.locator("tbody th").all_inner_texts()
    assert rows == ["lr", "optimizer"]
    page.get_by_test_id("log-scale").check()  # the spike of 50 squeezes the losses of ~1 together
    page.wait_for_url(re.compile(r"log=1"))
    page.wait_for_function("el => el.mlDashChart.uplot.scales.y.distr === 3", arg=plot.element_handle())
    shoot(page, "compare")
    page.get_by_test_id("all-params").check()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=params-diff] tbody tr').length === 5")
    # The colour of a run is the same wherever it is shown.
    again = open_page(page.url.replace(page.url.split("/compare")[0], ""))
    again.get_by_test_id("compare-field").wait_for()
    assert again.locator(".legend .swatch").first.evaluate("e => e.style.background") != ""


def test_dark_theme(open_page: OpenPage) -> None:
    page = open_page(RUN, color_scheme="dark")
    chart(page, "train", "loss")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 18, 22)"
    shoot(page, "run-dark")


def test_unknown_page_says_so(open_page: OpenPage) -> None:
    page = open_page("/runs/nobody")
    page.locator(".content", has_text="No runs").wait_for()  # once loaded, not while "loading…"
    assert wait_for_runs(page, 0) == []


def test_filter_box_completes_names_from_the_keyboard(open_page: OpenPage) -> None:
    page = open_page("/runs/alice/vision")
    wait_for_runs(page, 3)
    box = page.get_by_role("combobox", name="Filter runs")
    box.click()
    box.press_sequentially("params.opt")
    page.get_by_role("option", name="params.optimizer").wait_for()
    box.press("Tab")
    assert box.input_value() == "params.optimizer"
    box.press_sequentially(' == "adam"')
    box.press("Enter")
    page.wait_for_url(re.compile(r"where=params\.optimizer"))


def test_tracks_table(open_page: OpenPage) -> None:
    page = open_page(RUN + "?tab=tracks")
    table = page.get_by_test_id("tracks-table")
    table.wait_for()
    assert table.locator("tbody tr").count() == 20
    assert table.locator("thead th").all_inner_texts() == ["timestamp", "x", "y"]
    assert table.locator("tbody tr").last.locator("td").all_inner_texts()[1:] == ["19", "361"]
    page.locator('figure[data-column="y"] canvas').wait_for()  # a line chart per numeric column
    assert page.locator("figure[data-column] [data-testid=chart]").count() == 2


@pytest.mark.slow
def test_with_auth_the_page_asks_for_a_token_and_shows_only_its_owner(tmp_path: Path, open_page: OpenPage) -> None:
    root = tmp_path / ".dash"
    fill(root)
    created = ml_dash("token", "create", "--owner", "alice", "--root", str(root))
    token = re.findall(r"mld_\S+", created.stdout + created.stderr)[0]
    srv = ServerProcess("--auth", root=root).start()
    try:
        page = open_page("/runs", base=srv.url)
        form = page.get_by_role("heading", name="Log in to ML-Dash")
        form.wait_for()
        page.get_by_label("Token").fill(token)
        page.get_by_role("button", name="Log in").click()
        runs = wait_for_runs(page, 4)
        assert all(p.startswith("alice/") for p in runs)
        page.get_by_role("link", name="run-1").first.click()
        chart(page, "train", "loss")  # series and events carry the session cookie too
        page.close()
    finally:
        srv.stop()
