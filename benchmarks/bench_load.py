"""Load benchmark of ``ml-dash serve`` (folder backend): many client processes at once.

C client processes (default 50) each run the SDK in remote mode against one real
``python -m ml_dash serve`` on loopback and log P points each (default 20,000) as
``metrics(name).log(client=c, step=i, loss=...)``, pausing 10 ms after every 100 points
as a training loop would, then ``exp.run.complete()`` (which returns once the server
acknowledged everything). Two scenarios, each on a fresh server and root:

- ``C streams``: one metric stream per client (each client its own experiment);
- ``S streams``: S distinct streams (default 1,000) spread across the clients: client c
  logs round-robin to S / C streams of its own experiment.

Reported per scenario: points/s (all points, from the start signal until the last client's
``complete()`` returned), the latency of every append request the clients' senders made
(timed in each client by httpx event hooks: p50 / p90 / p99 / max), the same for a probe
in this process appending a 200-point batch every 50 ms, the server's CPU seconds and
peak RSS. Afterwards every stream is checked on disk (exactly P points per client); a
missing point fails the run.

    .venv/bin/python benchmarks/bench_load.py            # 50 clients x 20,000 points; 1,000 streams
    .venv/bin/python benchmarks/bench_load.py --quick    # 6 clients x 5,000 points; 60 streams (< 1 min)

Runs against whichever ml_dash is importable: ``PYTHONPATH=/other/tree/src`` makes the
server and every client use that tree (children inherit the environment; each reports
where it imported ml_dash from, and the run stops if one differs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import IO, Any

PAUSE_EVERY = 100
PAUSE = 0.01
PROBE_BATCH = 200
PROBE_EVERY = 0.05
HANG_GUARD = 900.0


# -- a client (this script with --client) -----------------------------------------------------------


def client_main(url: str, prefix: str, client: int, points: int, streams: int) -> int:
    import httpx

    import ml_dash
    from ml_dash import Experiment

    clock = time.perf_counter
    exp = Experiment(prefix=prefix, dash_url=url, dash_root=None, close_timeout=HANG_GUARD, flush_interval=0.2,
                     echo=False)
    seconds: list[float] = []
    sent_at: dict[int, float] = {}

    def on_request(request: httpx.Request) -> None:
        sent_at[id(request)] = clock()

    def on_response(response: httpx.Response) -> None:
        took = clock() - sent_at.pop(id(response.request), clock())
        if response.request.url.path.endswith("/append"):
            seconds.append(took)

    try:  # the RemoteStore's client (internal: timing only; the figures say when it is missing)
        sender: Any = exp._session.backend.replica._client  # type: ignore[union-attr]
        sender.event_hooks = {"request": [on_request], "response": [on_response]}
        timed = True
    except AttributeError:
        timed = False
    exp.run.start()
    names = ["train"] if streams == 1 else [f"stream-{k:03d}" for k in range(streams)]
    metrics = [exp.metrics(name) for name in names]
    print(json.dumps({"ready": True, "ml_dash": os.path.dirname(ml_dash.__file__)}), flush=True)
    sys.stdin.readline()
    started = clock()
    cpu = time.process_time()
    for i in range(points):
        metrics[i % streams].log(client=client, step=i, loss=1.0 / (i + 1))
        if i % PAUSE_EVERY == PAUSE_EVERY - 1:
            time.sleep(PAUSE)
    logged = clock() - started
    report = exp.run.complete()
    print(json.dumps({
        "ok": report is not None and report.ok,
        "report": str(report),
        "log_seconds": logged,
        "total_seconds": clock() - started,
        "cpu_seconds": time.process_time() - cpu,
        "timed": timed,
        "requests": seconds,
    }), flush=True)
    return 0


# -- the server and the probe ------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env["ML_DASH_ECHO"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``python -m ml_dash serve --root ROOT`` on a free loopback port, output to a file."""

    def __init__(self, root: str) -> None:
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root + ".log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ml_dash", "serve", "--root", root, "--host", "127.0.0.1", "--port", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=child_env(),
        )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /health within 120 s")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e3
        return math.nan

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def output(self) -> str:
        self._log.flush()
        with open(self.log_path, "rb") as fh:
            return fh.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Probe(threading.Thread):
    """Appends PROBE_BATCH points every PROBE_EVERY seconds until stopped; times each request."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(name="probe", daemon=True)
        self.url, self.prefix = url, prefix
        self.stopping = threading.Event()
        self.seconds: list[float] = []
        self.failures: list[str] = []

    def run(self) -> None:
        import httpx
        import msgspec

        headers = {"content-type": "application/json"}
        with httpx.Client(base_url=self.url, timeout=HANG_GUARD) as client:
            client.post("/api/v1/experiment/open", content=msgspec.json.encode({"prefix": self.prefix}),
                        headers=headers)
            while not self.stopping.wait(PROBE_EVERY):
                first = len(self.seconds) * PROBE_BATCH
                points = [{"probe": i, "_ts": time.time()} for i in range(first, first + PROBE_BATCH)]
                body = msgspec.json.encode({"batchId": uuid.uuid4().hex, "points": points})
                t0 = time.perf_counter()
                answer = client.post("/api/v1/metrics/append", params={"prefix": self.prefix, "name": "probe"},
                                     content=body, headers=headers)
                took = time.perf_counter() - t0
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                    return
                self.seconds.append(took)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def latency(label: str, seconds: Sequence[float]) -> str:
    ms = [s * 1e3 for s in seconds]
    return (f"  {label:<34} {len(ms):>7,} requests  p50 {percentile(ms, 50):7.1f}  p90 {percentile(ms, 90):7.1f}  "
            f"p99 {percentile(ms, 99):7.1f}  max {max(ms, default=math.nan):7.1f} ms")


# -- one scenario --------------------------------------------------------------------------------------


def scenario(label: str, work: str, clients: int, points: int, streams: int) -> dict[str, Any]:
    import ml_dash

    root = os.path.join(work, f"root-{streams}")
    began = time.perf_counter()
    server = Server(root)
    server_up = time.perf_counter() - began
    children: list[subprocess.Popen[str]] = []
    try:
        shares = [streams // clients + (client < streams % clients) for client in range(clients)]
        for client in range(clients):
            folder = os.path.join(work, f"client-{streams}-{client}")
            os.makedirs(folder)
            children.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--client", server.url, f"load/bench/c{client:03d}",
                 str(client), str(points), str(max(1, shares[client]))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=folder, env=child_env(),
            ))
        mine = os.path.dirname(ml_dash.__file__)
        for child in children:
            assert child.stdout is not None
            ready = json.loads(child.stdout.readline() or "{}")
            if not ready.get("ready"):
                raise RuntimeError("a client did not start")
            if ready["ml_dash"] != mine:
                raise RuntimeError(f"a client imported ml_dash from {ready['ml_dash']}, not {mine}")
        setup = time.perf_counter() - began
        probe = Probe(server.url, "load/bench/probe")
        probe.start()
        cpu = server.cpu_seconds()
        started = time.perf_counter()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line:
                raise RuntimeError(f"a client died (exit {child.wait()})")
            results.append(json.loads(line))
        elapsed = time.perf_counter() - started
        server_cpu = server.cpu_seconds() - cpu
        probe.stopping.set()
        probe.join(HANG_GUARD)
        peak, files = server.peak_rss_mb(), server.open_files()
        for child in children:
            child.wait(HANG_GUARD)
        if probe.failures:
            raise RuntimeError(f"the probe was refused: {probe.failures[0]}")
        bad = [r["report"] for r in results if not r["ok"]]
        if bad:
            raise RuntimeError(f"{len(bad)} client(s) did not deliver everything: {bad[0]}")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        server.stop()
    check_on_disk(root, points, shares)
    requests = [s for r in results for s in r["requests"]]
    return {
        "label": label, "clients": clients, "points": points, "streams": sum(max(1, n) for n in shares),
        "elapsed": elapsed, "rate": clients * points / elapsed, "requests": requests,
        "timed": all(r["timed"] for r in results), "probe": probe.seconds, "server_cpu": server_cpu,
        "client_cpu": sum(r["cpu_seconds"] for r in results), "peak_mb": peak, "open_files": files,
        "close_p50": percentile([r["total_seconds"] - r["log_seconds"] for r in results], 50),
        "server_up": server_up, "setup": setup,
    }


def check_on_disk(root: str, points: int, shares: list[int]) -> None:
    """Every client's points are on disk, spread over its streams."""
    from ml_dash.stores.local import LocalStore

    store = LocalStore(root)
    try:
        for client, share in enumerate(shares):
            prefix = f"load/bench/c{client:03d}"
            names = ["train"] if share <= 1 else [f"stream-{k:03d}" for k in range(share)]
            total = sum(store.metric_stats(prefix, name)["totalDataPoints"] for name in names)
            if total != points:
                raise RuntimeError(f"{prefix}: {total} points on disk, {points} logged")
    finally:
        store.close()


def report(result: dict[str, Any]) -> None:
    total = result["clients"] * result["points"]
    print(f"\n{result['label']}: {result['clients']} clients x {result['points']:,} points ({total:,}) into "
          f"{result['streams']:,} streams in {result['elapsed']:.1f} s: {result['rate']:,.0f} points/s")
    print(f"  (server up in {result['server_up']:.1f} s, clients ready {result['setup']:.1f} s after the start)")
    print(f"  server CPU {result['server_cpu']:.1f} s, clients' CPU {result['client_cpu']:.1f} s; server peak RSS "
          f"{result['peak_mb']:.0f} MB, {result['open_files']} open files at the end; close took "
          f"{result['close_p50']:.2f} s (median)")
    if result["timed"]:
        print(latency("append requests (clients' senders)", result["requests"]))
    else:
        print("  append requests: not timed (this tree's RemoteStore has no reachable httpx client)")
    print(latency(f"probe: {PROBE_BATCH} points every {PROBE_EVERY * 1e3:.0f} ms", result["probe"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 clients x 5,000 points, 60 streams (< 1 min)")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--points", type=int, help="points per client")
    parser.add_argument("--streams", type=int, help="distinct streams in the second scenario")
    parser.add_argument("--client", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        url, prefix, client, points, streams = args.client
        return client_main(url, prefix, int(client), int(points), int(streams))
    clients = args.clients or (6 if args.quick else 50)
    points = args.points or (5_000 if args.quick else 20_000)
    streams = args.streams or (60 if args.quick else 1_000)
    import ml_dash

    print(f"ml_dash from {os.path.dirname(ml_dash.__file__)} (server and clients alike); "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
    work = tempfile.mkdtemp(prefix="bench-load-")
    try:
        for label, count in ((f"{clients} streams", clients), (f"{streams:,} streams", streams)):
            report(scenario(label, work, clients, points, count))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
