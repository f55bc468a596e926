"""Dashboard benchmark: the page in headless Chromium against a real ``ml-dash serve``.

Data (written once with the real SDK and LocalStore, reused with ``--keep DIR``):

- ``bench/big/run``: one ``train`` stream of 10,000,000 points (``loss`` a random walk
  with one spike, ``step``, ``_ts``), its series index built, as a server that has
  read it once has it;
- ``bench/compare-20000/run-000`` … ``run-099``: 100 runs, a ``train`` stream of 20,000
  points each (``loss``, ``acc``), answered reduced (M4); ``bench/compare-4000/…``: the
  same with 4,000 points each, answered raw;
- ``bench/table/run-0000`` … ``run-0999``: 1,000 runs with params, tags and metrics;
- ``bench/live/run-1``: made during the run by a training process (local mode) that
  logs a point every 0.1 s while the page shows it.

Timing comes from the page itself: a page whose ``window.mlDashTrace`` is an array
(set here by an init script; a normal page has none) records every chart it draws at
the animation frame that shows it (``frontend/src/trace.ts``); interactions are timed
inside the page from the click to the first animation frame at which the result is in
the DOM, layout forced. Each figure stands beside a floor measured in the same run:

- a blank page (the bundle, the session call, a "no such page" view): what any
  navigation costs before it shows data;
- the same series request the page made, fetched with httpx (the server's share);
- an interaction that changes nothing, timed the same way (one animation frame);
- for live, the arrival of the same points on an event-stream client (bench_live.py).

    .venv/bin/python benchmarks/bench_dashboard.py                  # the figures of issue 11
    .venv/bin/python benchmarks/bench_dashboard.py --quick          # 1,000,000 points, 300 runs, 30 live points
    .venv/bin/python benchmarks/bench_dashboard.py --keep /tmp/bd   # keep the data (10M points take minutes)

Targets (issue 11): first chart of a 10M-point stream ≤ 1 s after navigation, a zoom
re-drawn ≤ 200 ms, 100 runs overlaid ≤ 300 ms, a 1,000-run table sorted or filtered
≤ 100 ms, live p95 ≤ 1 s from ``log()`` to the point on screen. A missed target prints
MISS; only a broken run (a chart never drawn, a crash) exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np

from bench_live import TRAIN, Arrivals, Server, env, pct

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from ml_dash import Experiment  # noqa: E402
from ml_dash.stores.local import LocalStore  # noqa: E402
from ml_dash.stores.series_index import SeriesIndex  # noqa: E402

BIG = "bench/big/run"
COMPARE = "bench/compare"
TABLE = "bench/table"
LIVE = "bench/live/run-1"  # bench_live's Arrivals watches this prefix
CHROMIUM = os.environ.get("ML_DASH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 900}
TIMEOUT_MS = 120_000
perf = time.perf_counter

# Installed before the page's own script: turns the page's trace on, and notes the
# first frame at which a few selectors match (for views that draw no chart).
INIT = """
window.mlDashTrace = [];
window.benchSeen = {};
const benchWatch = {notfound: "main .empty h1", table: "[data-testid=runs-table] tbody tr"};
const benchTick = () => {
  for (const [key, sel] of Object.entries(benchWatch)) {
    if (!(key in window.benchSeen) && document.querySelector(sel)) {
      void document.body.offsetHeight;
      window.benchSeen[key] = performance.now();
    }
  }
  if (Object.keys(window.benchSeen).length < Object.keys(benchWatch).length) requestAnimationFrame(benchTick);
};
requestAnimationFrame(benchTick);
"""

# Run `act`, then poll each animation frame until `done` holds; answers the ms from
# just before `act` to that frame, layout forced. Both are functions of the page, as
# text, put into the expression itself (the page's CSP forbids eval, rightly).
TIMED = """
async () => {
  const act = %s;
  const done = %s;
  const t0 = performance.now();
  act();
  return await new Promise((resolve, reject) => {
    const tick = () => {
      if (done()) { void document.body.offsetHeight; resolve(performance.now() - t0); }
      else if (performance.now() > t0 + 60000) reject(new Error("timed out"));
      else requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}
"""


def ms(value: float) -> str:
    return f"{value:,.0f} ms"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, name: str, value: str, ratio: str = "", target: str = "", verdict: str = "") -> None:
        self.rows.append((name, value, ratio, target, verdict))
        print(f"  {name}: {value} {ratio} {target} {verdict}".rstrip(), flush=True)

    def timed(self, name: str, value_ms: float, floor_ms: float | None, target_ms: float | None,
              extra: str = "") -> None:
        ratio = "" if not floor_ms else f"{value_ms / floor_ms:.1f}x"
        target = "" if target_ms is None else f"≤ {target_ms:,.0f} ms"
        verdict = "" if target_ms is None else ("PASS" if value_ms <= target_ms else "MISS")
        self.add(name, ms(value_ms) + (f" ({extra})" if extra else ""), ratio, target, verdict)

    def print(self) -> None:
        headers = ("figure", "measured", "vs floor", "target", "result")
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) for i, h in enumerate(headers)]
        print()
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        print("-" * (sum(widths) + 8))
        for row in self.rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


# -- data -----------------------------------------------------------------------------


def done_marker(root: Path, what: str) -> Path:
    return root / f".bench-dashboard-{what}"


def make_big(root: Path, n: int) -> None:
    marker = done_marker(root, f"big-{n}")
    if marker.exists():
        print(f"{BIG}: reusing {n:,} points", flush=True)
        return
    shutil.rmtree(root / "bench" / "big", ignore_errors=True)
    with Experiment(prefix=BIG, dash_root=str(root), echo=False).run as exp:
        exp.params.set(lr=0.001, points=n)
    store = LocalStore(str(root))
    rng = np.random.default_rng(7)
    walk = np.cumsum(rng.normal(0, 1, n))
    walk[n // 2 + 12_345] += 50 * (np.abs(walk).max() + 1)
    t = perf()
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        points = [{"loss": v, "step": i, "_ts": 1_795_730_519.64 + i * 0.001}
                  for i, v in zip(range(lo, hi), walk[lo:hi].tolist(), strict=True)]
        store.append_metrics(BIG, "train", points)
        if hi % 1_000_000 == 0:
            print(f"  {hi:,} points written ({perf() - t:.0f} s)", flush=True)
    t = perf()
    SeriesIndex(os.path.join(store.experiment_dir(BIG), "metrics", "train")).refresh()
    print(f"  series index built in {perf() - t:.0f} s", flush=True)
    store.close()
    marker.touch()


def make_compare(root: Path, runs: int, points: int) -> list[str]:
    project = f"{COMPARE}-{points}"
    prefixes = [f"{project}/run-{i:03d}" for i in range(runs)]
    marker = done_marker(root, f"compare-{runs}-{points}")
    if marker.exists():
        return prefixes
    shutil.rmtree(root / project, ignore_errors=True)
    t = perf()
    store = LocalStore(str(root))
    steps = np.arange(points)
    for i, prefix in enumerate(prefixes):
        with Experiment(prefix=prefix, dash_root=str(root), echo=False).run as exp:
            exp.params.set(lr=10 ** -(2 + i % 4), seed=i, optimizer=["adam", "sgd"][i % 2], depth=50)
        rng = np.random.default_rng(i)
        loss = (2.0 + i / runs) * np.exp(-steps / (points / 4)) + rng.normal(0, 0.05, points)
        acc = 1 - loss / 4
        store.append_metrics(prefix, "train", [{"loss": a, "acc": b, "step": s} for a, b, s in
                                               zip(loss.tolist(), acc.tolist(), steps.tolist(), strict=True)])
        SeriesIndex(os.path.join(store.experiment_dir(prefix), "metrics", "train")).refresh()
    store.close()
    print(f"{project}: {runs} runs × {points:,} points written in {perf() - t:.0f} s", flush=True)
    marker.touch()
    return prefixes


def make_table(root: Path, runs: int) -> None:
    marker = done_marker(root, f"table-{runs}")
    if marker.exists():
        return
    shutil.rmtree(root / "bench" / "table", ignore_errors=True)
    t = perf()
    for i in range(runs):
        exp = Experiment(prefix=f"{TABLE}/sweep-{i // 100}/run-{i:04d}", dash_root=str(root), echo=False,
                         tags=[["baseline", "sweep"][i % 2], f"group-{i % 7}"])
        with exp.run:
            exp.params.set(lr=round(0.1 / (1 + (i * 37) % 101), 6), batch=[32, 64, 128][i % 3],
                           optimizer=["adam", "sgd", "adamw"][i % 3], model={"depth": 18 + i % 5 * 16})
            train = exp.metrics("train")
            for step in range(10):
                train.log(loss=1 / (1 + step) + (i * 13 % 97) / 100, acc=step / 10, step=step)
    print(f"{TABLE}: {runs} runs written in {perf() - t:.0f} s", flush=True)
    marker.touch()


# -- the page ---------------------------------------------------------------------------


class Browser:
    def __init__(self, pw: Any, base: str) -> None:
        self.base = base
        self.chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

    def open(self, path: str, color_scheme: str = "light") -> Any:
        context = self.chromium.new_context(viewport=VIEWPORT, color_scheme=color_scheme)
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(INIT)
        page = context.new_page()
        page.series_urls = []
        page.errors = []
        page.on("request", lambda r: page.series_urls.append(r.url) if "/metrics/series" in r.url else None)
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(self.base + path)
        return page

    def close(self) -> None:
        self.chromium.close()


def charts(page: Any, label_start: str = "", after: float = -1.0, lines: int | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("() => window.mlDashTrace.filter(e => e.kind === 'chart')")
    return [e for e in found if e["label"].startswith(label_start) and e.get("since", 0) > after
            and (lines is None or e["lines"] == lines)]


def wait_chart(page: Any, label_start: str = "", after: float = -1.0, lines: int | None = None,
               timeout: float = 120.0) -> dict[str, Any]:
    """The first chart drawn (after ``after`` on the page's clock) whose label starts so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = charts(page, label_start, after, lines)
        if found:
            return min(found, key=lambda e: e["at"])
        page.wait_for_timeout(20)
    raise SystemExit(f"BROKEN: no chart {label_start!r} drawn within {timeout:.0f} s; page errors: {page.errors}")


def timed(page: Any, act: str, done: str) -> float:
    return float(page.evaluate(TIMED % (act, done)))


def server_ms(url: str, repeats: int = 5) -> float:
    """Median wall time of a GET of ``url`` with httpx (a new connection each time, as a page's first)."""
    samples = []
    with httpx.Client(timeout=120) as client:
        for _ in range(repeats):
            t = perf()
            answer = client.get(url)
            samples.append((perf() - t) * 1000)
            answer.raise_for_status()
    return statistics.median(samples)


def blank_floor(browser: Browser, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        page = browser.open("/compare")  # the empty compare view: no data asked for
        page.wait_for_function("() => 'notfound' in window.benchSeen")
        samples.append(float(page.evaluate("() => window.benchSeen.notfound")))
        page.context.close()
    return statistics.median(samples)


# -- the figures ------------------------------------------------------------------------


def bench_big(browser: Browser, table: Table, blank: float, n: int, repeats: int) -> None:
    path = "/run/" + BIG
    firsts, requests = [], []
    for attempt in range(repeats):
        page = browser.open(path)
        first = wait_chart(page, "train ")
        firsts.append(first["at"])
        requests.append(first["at"] - first["since"])
        if attempt < repeats - 1:
            page.context.close()
    label = f"{n / 1e6:g}M-point stream"
    table.timed(f"{label}: first chart after navigation, first visit to a new server", firsts[0], blank, None)
    first_ms = statistics.median(firsts[1:]) if len(firsts) > 1 else firsts[0]
    table.timed(f"{label}: first chart after navigation (median of {max(1, len(firsts) - 1)})", first_ms, blank, 1000)
    url = next(u for u in page.series_urls if "y=loss" in u and "x0" not in u)
    floor = server_ms(url)
    table.timed(f"{label}: its series request + drawing, in the page", statistics.median(requests), floor, None)
    table.timed(f"{label}: the same series request with httpx (floor)", floor, None, None)

    plot = page.locator('figure[data-stream="train"][data-field="loss"] .u-over')
    box = plot.bounding_box()
    zooms, coarse = [], []
    for k in range(repeats):
        page.evaluate("() => { window.benchUp = null; addEventListener('mouseup', () => { "
                      "window.benchUp = performance.now(); }, {capture: true, once: true}); }")
        x0 = box["x"] + box["width"] * (0.3 + 0.1 * k)
        page.mouse.move(x0, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(x0 + box["width"] * 0.02, box["y"] + box["height"] / 2, steps=4)
        page.mouse.up()
        up = float(page.evaluate("() => window.benchUp"))
        fine = wait_chart(page, "train loss", after=up)
        drawn = [e for e in charts(page, "train loss") if e["at"] > up]
        coarse.append(min(e["at"] for e in drawn) - up)
        zooms.append(fine["at"] - up)
        page.dblclick('figure[data-stream="train"][data-field="loss"] .u-over')
        page.wait_for_selector('figure[data-stream="train"][data-field="loss"][data-zoomed="0"]')
        page.wait_for_timeout(300)
    zoom_url = [u for u in page.series_urls if "y=loss" in u and "x0" in u][-1]
    zoom_floor = server_ms(zoom_url)
    table.timed(f"{label}: zoom (2 % of the range), first re-draw from the data at hand", statistics.median(coarse),
                None, None)
    table.timed(f"{label}: zoom re-drawn with the finer answer (median of {repeats})", statistics.median(zooms),
                zoom_floor, 200)
    table.timed(f"{label}: the zoom's series request with httpx (floor)", zoom_floor, None, None)
    page.context.close()


SERVER_WAIT = """() => {
  const r = performance.getEntriesByType('resource').filter(e => e.name.includes('/metrics/series'));
  const last = r[r.length - 1]; return [last.responseStart - last.requestStart, last.responseEnd - last.responseStart,
  last.encodedBodySize]; }"""


def bench_compare(browser: Browser, table: Table, blank: float, prefixes: list[str], points: int,
                  repeats: int) -> None:
    query = urlencode([("r", p) for p in prefixes] + [("stream", "train"), ("field", "loss")])
    navs, requests, waits, draws = [], [], [], []
    page = None
    for _ in range(repeats):
        if page is not None:
            page.context.close()
        page = browser.open(f"/compare?{query}")
        first = wait_chart(page, "train", lines=len(prefixes))
        navs.append(first["at"])
        requests.append(first["at"] - first["since"])
        draws.append(first["at"] - first["received"])
        waits.append(page.evaluate(SERVER_WAIT))
    assert page is not None
    url = next(u for u in page.series_urls if "y=loss" in u)
    floor = server_ms(url)
    n = len(prefixes)
    what = f"compare {n} runs × {points:,} points"
    wait, transfer = statistics.median(w[0] for w in waits), statistics.median(w[1] for w in waits)
    table.timed(f"{what}: chart drawn after navigation (median of {repeats})", statistics.median(navs), blank, None)
    table.timed(f"{what}: series request + drawing, in the page", statistics.median(requests), floor, 300,
                f"server wait {wait:,.0f} ms, {waits[-1][2] / 1e6:.1f} MB in {transfer:,.0f} ms, "
                f"answer to frame {statistics.median(draws):,.0f} ms")
    table.timed(f"{what}: the same series request with httpx (floor)", floor, None, None)
    switches = []
    for k in range(repeats):
        field = ["acc", "loss"][k % 2]
        before = float(page.evaluate("() => performance.now()"))
        page.evaluate("f => { const s = document.querySelector('[data-testid=compare-field]'); "
                      "s.value = JSON.stringify(['train', f]); "
                      "s.dispatchEvent(new Event('change', {bubbles: true})); }",
                      field)
        drawn = wait_chart(page, f"train train · {field}", after=before, lines=n)
        switches.append(drawn["at"] - before)
    table.timed(f"{what}: another field chosen, re-drawn (median of {repeats})", statistics.median(switches), floor,
                300)
    page.context.close()


def bench_table(browser: Browser, table: Table, runs: int, repeats: int) -> None:
    page = browser.open("/runs/" + TABLE)
    page.wait_for_function(f"() => document.querySelector('[data-testid=run-count]')?.textContent === '{runs} runs'")
    shown = float(page.evaluate("() => window.benchSeen.table"))
    table.timed(f"{runs}-run table: first rows shown after navigation", shown, None, None)
    floor = statistics.median(timed(page, "() => document.querySelector('[data-testid=run-count]').click()",
                                    "() => true") for _ in range(repeats))
    table.timed(f"{runs}-run table: an interaction that changes nothing (floor: one frame)", floor, None, None)
    sorts = []
    for k in range(repeats):
        column = ["params.lr", "name", "params.batch", "created", "duration"][k % 5]
        first = page.evaluate("() => document.querySelector('[data-testid=runs-table] tbody tr').dataset.prefix")
        act = f"() => document.querySelector('button.sort[data-column=\"{column}\"]').click()"
        done = ("() => { const th = document.querySelector('button.sort[data-column=\"" + column + "\"]')"
                ".closest('th'); return th.hasAttribute('aria-sort') && "
                "document.querySelector('[data-testid=runs-table] tbody tr')"
                f".dataset.prefix !== {json.dumps(first)}; }}")
        try:
            sorts.append(timed(page, act, done))
        except Exception:  # the first row stayed the first: time the header only
            sorts.append(timed(page, act, "() => true"))
    table.timed(f"{runs}-run table: sorted by a column in the page (median of {repeats})", statistics.median(sorts),
                floor, 100)
    filters = []
    for k in range(repeats):
        where = ["params.lr < 0.01", 'params.optimizer == "adam"', ""][k % 3]
        page.evaluate("w => { const i = document.querySelector('#filter-input'); i.value = w; "
                      "i.dispatchEvent(new Event('input', {bubbles: true})); }", where)
        page.wait_for_timeout(100)  # the box has taken the text; the timing starts at the submit
        act = "() => document.querySelector('form.filter').requestSubmit()"
        before = page.evaluate("() => document.querySelector('[data-testid=run-count]').textContent")
        done = ("() => document.querySelector('[data-testid=run-count]').textContent !== " + json.dumps(before)
                + " && !document.querySelector('[data-testid=runs-table][aria-busy=true]')")
        filters.append(timed(page, act, done))
    url = f"{browser.base}/api/v1/runs?" + urlencode({"owner": "bench", "project": "table", "where": "params.lr < 0.01",
                                                      "limit": 1000})
    filter_floor = server_ms(url)
    table.timed(f"{runs}-run table: filtered (the server answers the filter; median of {repeats})",
                statistics.median(filters), filter_floor, 100)
    table.timed(f"{runs}-run table: the filter's /runs request with httpx (floor)", filter_floor, None, None)
    select = timed(page, "() => document.querySelector('th.check input').click()",
                   "() => document.querySelector('.toolbar button.primary').textContent === 'Compare 100 selected'"
                   " && document.querySelectorAll('tr.selected').length > 0")
    table.timed(f"{runs}-run table: select all (the first 100 selected)", select, floor, 100)
    page.context.close()


def bench_live(browser: Browser, table: Table, root: Path, points: int, interval: float) -> None:
    shutil.rmtree(root / "bench" / "live", ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-live-") as tmp:
        out = Path(tmp) / "times.json"
        train = subprocess.Popen([sys.executable, "-c", TRAIN, "local", str(root), LIVE, str(points), str(interval),
                                  str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env(), text=True)
        assert train.stdin is not None and train.stdout is not None
        if train.stdout.readline().strip() != "started":
            raise SystemExit("BROKEN: the training process did not start")
        arrivals = Arrivals(browser.base)
        page = browser.open("/run/" + LIVE)
        page.wait_for_selector("[data-testid=live-state]:has-text('live')")
        if not arrivals.ready.wait(60):
            raise SystemExit("BROKEN: no ready event")
        page.wait_for_timeout(500)
        train.stdin.write("go\n")
        train.stdin.flush()
        if train.wait(120 + points * interval * 4) != 0:
            raise SystemExit(f"BROKEN: the training process failed ({train.returncode})")
        times: list[float] = json.loads(out.read_text())
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            drawn = charts(page, "live i ")
            if drawn and max(e["lastX"] for e in drawn) >= points - 1:
                break
            page.wait_for_timeout(50)
        arrivals.close()
        drawn = sorted(charts(page, "live i "), key=lambda e: e["wall"])
        page.context.close()
    screen, events = [], []
    for i, t in enumerate(times):
        shown = [e["wall"] / 1000 for e in drawn if e["lastX"] >= i]
        if not shown:
            raise SystemExit(f"BROKEN: point {i} never drawn (last drawn {drawn[-1]['lastX'] if drawn else None})")
        screen.append(min(shown) - t)
        seen = [at for count, at in arrivals.first_seen.items() if count > i]
        if seen:
            events.append(min(seen) - t)
    p95, p50 = pct(screen, 0.95) * 1000, pct(screen, 0.5) * 1000
    floor = pct(events, 0.95) * 1000 if events else None
    table.timed(f"live: log() to the point on screen, p95 of {points}", p95, floor, 1000,
                f"p50 {p50:,.0f} ms, max {max(screen) * 1000:,.0f} ms")
    if events:
        table.timed("live: log() to the event at an event-stream client, p95 (floor)", pct(events, 0.95) * 1000, None,
                    None, f"p50 {pct(events, 0.5) * 1000:,.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000,000 points, 300 table runs, 30 live points")
    parser.add_argument("--keep", help="write the data into this folder and keep it (reused when run again)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["big", "compare", "table", "live"], action="append",
                        help="run only these parts (repeatable)")
    args = parser.parse_args()
    big = 1_000_000 if args.quick else 10_000_000
    table_runs = 300 if args.quick else 1000
    live_points = 30 if args.quick else 100
    parts = set(args.only or ["big", "compare", "table", "live"])
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-dashboard-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    results = Table()
    from playwright.sync_api import sync_playwright

    try:
        if "big" in parts:
            make_big(root, big)
        compares = [(points, make_compare(root, 100, points)) for points in (4_000, 20_000)] if "compare" in parts \
            else []
        if "table" in parts:
            make_table(root, table_runs)
        server = Server(root)
        try:
            with sync_playwright() as pw:
                browser = Browser(pw, server.url)
                try:
                    blank = blank_floor(browser, args.repeats)
                    results.timed("floor: a blank page (the empty compare view: bundle, session) after navigation",
                                  blank, None, None)
                    if "big" in parts:
                        bench_big(browser, results, blank, big, args.repeats)
                    if "compare" in parts:
                        for points, prefixes in compares:
                            bench_compare(browser, results, blank, prefixes, points, args.repeats)
                    if "table" in parts:
                        bench_table(browser, results, table_runs, args.repeats)
                    if "live" in parts:
                        bench_live(browser, results, root, live_points, 0.1)
                finally:
                    browser.close()
        finally:
            server.stop()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results.print()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"\n{sys.platform}, {os.cpu_count()} CPUs, load average {load:.1f} at the end, {version}, "
          f"viewport {VIEWPORT['width']}×{VIEWPORT['height']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
