"""Remote-mode benchmark of ML-Dash: one client against a local ``ml-dash serve`` over loopback.

(a) One client logs N single-field points (``log(loss=v)``) in remote mode to a real
``python -m ml_dash serve`` (folder backend, a child process on 127.0.0.1), timed end to
end until ``exp.run.complete()`` returns, i.e. until the server acknowledged every
batch; the count the server wrote to disk is checked afterwards. The same loop in local
mode runs in the same rounds (interleaved), so the ratio stays meaningful on a noisy
machine.

(b) One ``POST /api/v1/metrics/append`` of a 1,000-point batch (a fresh ``batchId``
each time) over a kept-alive httpx connection: p50/p99 over R requests, next to
``GET /health`` (the HTTP round trip alone) and the route's own work without HTTP
(the server's handler called in this process on a LocalStore).

    .venv/bin/python benchmarks/bench_remote.py           # 1,000,000 points, 500 requests
    .venv/bin/python benchmarks/bench_remote.py --quick   # 100,000 points, 100 requests
    .venv/bin/python benchmarks/bench_remote.py --profile # + cProfile of the client's threads in round 1

Missed targets print MISS but do not fail the run; a crash, a server that fails, or
points missing on disk exit non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import math
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import httpx
import msgspec

from bench_local import Row, load_average, median, print_table, scratch, us  # same folder
from ml_dash import Experiment, LocalStore

PREFIX = "bench/remote"
STREAM = "train"
BATCH = 1000  # points per request in (b)
TARGET_RATE = 250_000.0  # points/s, (a)
TARGET_RATIO = 4.0  # remote end to end / local end to end, (a)

perf = time.perf_counter


# -- the server -----------------------------------------------------------------------------


class Server:
    """``python -m ml_dash serve --root ROOT`` on a free loopback port; output to a log file."""

    def __init__(self, root: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.root = root
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(os.path.dirname(root), "server.log")
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ml_dash", "serve", "--root", root, "--host", "127.0.0.1", "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=env,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ml-dash serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"ml-dash serve did not answer within 60 s:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-5000:]

    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._log.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


# -- (a) one client, N points ---------------------------------------------------------------


def write_points(exp: Experiment, n: int) -> tuple[float, float]:
    """The timed part: the loop, then complete(). Returns (loop seconds, end-to-end seconds)."""
    gc.collect()
    t0 = perf()
    m = exp.metrics(STREAM)
    for i in range(n):
        v = 1.0 / (i + 1)
        m.log(loss=v)
    loop = perf() - t0
    report = exp.run.complete()
    elapsed = perf() - t0
    if report is None or not report.ok:
        raise RuntimeError(f"complete() did not deliver everything: {report}")
    return loop, elapsed


def check_on_disk(root: str, prefix: str, n: int) -> None:
    store = LocalStore(root)
    try:
        total = store.metric_stats(prefix, STREAM)["totalDataPoints"]
    finally:
        store.close()
    if total != n:
        raise RuntimeError(f"{total} points of {prefix} on disk, expected {n}")


def remote_round(
    server: Server, spool_root: str, prefix: str, n: int, profile: ThreadProfiles | None
) -> dict[str, float]:
    os.environ["ML_DASH_ROOT"] = spool_root  # where remote-only mode keeps its spool
    with profile or contextlib.nullcontext():
        exp = Experiment(prefix=prefix, dash_url=server.url, dash_root=None, echo=False, close_timeout=600.0)
        exp.run.start()
        cpu0, own0 = cpu_seconds(server.pid()), time.process_time()
        loop, elapsed = write_points(exp, n)
    result = {
        "loop": loop,
        "total": elapsed,
        "server_cpu": cpu_seconds(server.pid()) - cpu0,
        "client_cpu": time.process_time() - own0,
    }
    check_on_disk(server.root, prefix, n)
    return result


def local_round(root: str, n: int) -> float:
    exp = Experiment(prefix=f"{PREFIX}/local", dash_root=root, echo=False)
    exp.run.start()
    _loop, elapsed = write_points(exp, n)
    check_on_disk(root, f"{PREFIX}/local", n)
    return elapsed


def bench_throughput(server: Server, base: str, n: int, rounds: int, profile: ThreadProfiles | None) -> list[Row]:
    print(f"(a) {n:,} points x {rounds} rounds, remote and local interleaved ...", flush=True)
    remote: list[dict[str, float]] = []
    local: list[float] = []
    for r in range(rounds):
        with scratch() as d:
            local.append(local_round(d, n))
        spool = os.path.join(base, f"spool-{r}")
        remote.append(remote_round(server, spool, f"{PREFIX}/run-{r}", n, profile if r == 0 else None))
        left = [p for p in Path(spool).rglob("*.req")]
        if left:
            raise RuntimeError(f"{len(left)} requests left in the spool {spool}")
        print(
            f"  round {r + 1}: remote {remote[-1]['total']:.2f} s (loop {remote[-1]['loop']:.2f} s), "
            f"local {local[-1]:.2f} s",
            flush=True,
        )
    total = median([x["total"] for x in remote])
    rate = n / total
    ratio = median([x["total"] / y for x, y in zip(remote, local, strict=True)])
    return [
        Row(
            f"remote: {n:,} points, 1 field, end to end",
            f"{rate:,.0f} points/s ({us(total, n)})",
            target=f"≥ {TARGET_RATE:,.0f} points/s",
            passed=rate >= TARGET_RATE,
        ),
        Row(
            "  ratio to local mode, same run",
            f"{ratio:.2f}x",
            us(median(local), n),
            f"{ratio:.2f}x",
            f"≤ {TARGET_RATIO:g}x",
            ratio <= TARGET_RATIO,
        ),
        Row(
            "  remote: logging loop alone / close (drain)",
            f"{us(median([x['loop'] for x in remote]), n)} / {median([x['total'] - x['loop'] for x in remote]):.2f} s",
        ),
        Row(
            "  CPU during the run: client / server process",
            f"{median([x['client_cpu'] for x in remote]):.2f} s / {median([x['server_cpu'] for x in remote]):.2f} s",
        ),
    ]


# -- (b) one 1,000-point append over loopback --------------------------------------------------


def batch_body(batch_id: str, start: int) -> bytes:
    t = time.time()
    points = [{"loss": 1.0 / (i + 1), "_ts": t} for i in range(start, start + BATCH)]
    return msgspec.json.encode({"batchId": batch_id, "points": points})


def timed(call: Any, count: int) -> list[float]:
    times = []
    for i in range(count):
        t0 = perf()
        call(i)
        times.append(perf() - t0)
    return times


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile, nearest rank."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def spread(values: list[float]) -> str:
    ms = [v * 1e3 for v in values]
    return f"p50 {pct(ms, 50):.2f} / p99 {pct(ms, 99):.2f} / max {max(ms):.2f} ms"


def bench_latency(server: Server, base: str, requests: int) -> list[Row]:
    print(f"(b) {requests} appends of {BATCH:,} points over loopback ...", flush=True)
    from ml_dash.names import parse_prefix
    from ml_dash.server.routes_streams import _append_metrics

    prefix = f"{PREFIX}/latency"
    warm = 20
    session = os.urandom(4).hex()
    bodies = [batch_body(f"b-{session}-{i}", i * BATCH) for i in range(requests + warm)]
    params = {"prefix": prefix, "name": STREAM}
    headers = {"content-type": "application/json"}
    failures: list[str] = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        client.post("/api/v1/experiment/open", content=b'{"prefix": "%s"}' % prefix.encode(), headers=headers)

        def post(i: int) -> None:
            response = client.post("/api/v1/metrics/append", params=params, content=bodies[i], headers=headers)
            if response.status_code != 200 or response.json()["duplicate"]:
                failures.append(f"{response.status_code} {response.text[:200]}")

        timed(lambda i: client.get("/health"), warm)
        health = timed(lambda i: client.get("/health"), requests)
        timed(post, warm)
        appends = timed(lambda i: post(warm + i), requests)
    if failures:
        raise RuntimeError(f"{len(failures)} appends failed, first: {failures[0]}")
    check_on_disk(server.root, prefix, (requests + warm) * BATCH)

    # The route's own work, without HTTP: the handler the server runs in its worker thread.
    store = LocalStore(os.path.join(base, "in-process"))
    target = parse_prefix(prefix)
    try:
        timed(lambda i: _append_metrics(store, target, STREAM, bodies[i]), warm)
        work = timed(lambda i: _append_metrics(store, target, STREAM, bodies[warm + i]), requests)
    finally:
        store.close()
    return [
        Row(f"append {BATCH:,} points over loopback ({requests} requests)", spread(appends)),
        Row("  GET /health over the same connection", spread(health)),
        Row("  the route's work alone (no HTTP, in-process)", spread(work)),
    ]


# -- profile -------------------------------------------------------------------------------


class ThreadProfiles:
    """cProfile for the calling thread and every thread started while installed.

    cProfile follows one thread only; the writer and the sender threads are where the
    remote path spends its time, so each gets its own profiler from its first call on.
    """

    def __init__(self) -> None:
        self.profiles: dict[str, cProfile.Profile] = {}
        self._main = cProfile.Profile()

    def _start_in_thread(self, frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile()
        self.profiles[threading.current_thread().name] = profile
        profile.enable()

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._start_in_thread)
        self.profiles[threading.current_thread().name] = self._main
        self._main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        self._main.disable()
        threading.setprofile(None)

    def print(self, top: int = 12) -> None:
        """The ``top`` functions by own time in each thread (the threads have ended by now)."""
        for name, profile in self.profiles.items():
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out)
            print(f"\ncProfile, thread {name!r}: {stats.total_tt:.3f} s of calls profiled")  # type: ignore[attr-defined]
            stats.sort_stats("tottime").print_stats(top)
            print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


def bench(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    profile = ThreadProfiles() if args.profile else None
    with tempfile.TemporaryDirectory(prefix="ml-dash-bench-remote-") as base:
        root = os.path.join(base, "server", "root")
        os.makedirs(root)
        server = Server(root)
        try:
            rows += bench_throughput(server, base, args.points, args.repeats, profile)
            rows += bench_latency(server, base, args.requests)
        finally:
            server.stop()
        if "Traceback" in server.output():
            raise RuntimeError(f"the server logged an error:\n{server.output()}")
    if profile is not None:
        profile.print()
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--points", type=int, default=None, help="points in (a) (default 1,000,000; --quick 100,000)")
    p.add_argument("--requests", type=int, default=None, help="timed requests in (b) (default 500; --quick 100)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds of (a); medians are reported")
    p.add_argument("--quick", action="store_true", help="CI smoke run: 100,000 points, 100 requests")
    p.add_argument("--profile", action="store_true", help="cProfile the client's threads in round 1 of (a)")
    args = p.parse_args(argv)
    if args.points is None:
        args.points = 100_000 if args.quick else 1_000_000
    if args.requests is None:
        args.requests = 100 if args.quick else 500
    if args.points < 1 or args.requests < 1 or args.repeats < 1:
        p.error("--points, --requests and --repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = perf()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"ml-dash remote benchmark - {now} - Python {sys.version.split()[0]} - {os.cpu_count()} CPUs - "
        f"httpx {httpx.__version__} - load average {load_average()}"
    )
    rows = bench(args)
    print()
    print_table(rows)
    missed = [r.name.strip() for r in rows if r.passed is False]
    print(
        f"\n{len(missed)} target(s) missed"
        + (": " + "; ".join(missed) if missed else "")
        + f" - {perf() - started:.0f} s, load average now {load_average()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
