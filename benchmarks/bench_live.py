"""Live-event latency: from ``log()`` in a training process to the event at a client.

A real ``ml-dash serve`` over a folder, a client reading ``GET /api/v1/events`` for one
experiment, and a training process (a separate Python process) that logs one point
every ``--interval`` seconds, in two modes:

- ``local``: the training process writes straight into the served folder (local mode);
  the server notices the file grew by polling it;
- ``remote``: the training process sends through the server (remote mode, its durable
  outbox and background sender), so the latency includes the hand-off to the sender.

Each point carries the wall time of its ``log()`` call (``time.time()``; one machine,
one clock). The client stamps the arrival of each ``points`` event (its ``count``
says which points it announces; several points may arrive in one event). Latency of
a point = arrival of the first event whose count covers it − its ``log()`` time.

Floors in the same run: the server's polling period (``events.POLL_INTERVAL``, a point
waits half of it on average) and the round trip of an empty ``/health`` request.

    .venv/bin/python benchmarks/bench_live.py            # 100 points per mode, 0.1 s apart
    .venv/bin/python benchmarks/bench_live.py --quick    # 30 points per mode

Target (issues 10 and 11): p95 ≤ 1 s. A missed target prints MISS; only a failure of the
benchmark itself (points never announced) exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
PREFIX = "bench/live/run-1"
TARGET = 1.0

TRAIN = textwrap.dedent("""
    import json, sys, time
    from ml_dash import Experiment
    mode, where, prefix, n, interval, out = sys.argv[1:7]
    kwargs = {"dash_root": where} if mode == "local" else {"dash_url": where, "dash_root": None}
    with Experiment(prefix=prefix, echo=False, **kwargs).run as exp:
        m = exp.metrics("live")
        times = []
        print("started", flush=True)
        sys.stdin.readline()  # the client is connected: go
        for i in range(int(n)):
            t = time.time()
            m.log(i=i, t=t)
            times.append(t)
            time.sleep(float(interval))
        with open(out, "w") as f:
            json.dump(times, f)
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), e.get("PYTHONPATH", "")) if p)
    e["ML_DASH_ECHO"] = "0"
    return e


class Server:
    def __init__(self, root: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ml_dash", "serve", "--root", str(root), "--port", port],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Arrivals:
    """Reads the event stream on a thread: for each count first seen, its arrival (wall time)."""

    def __init__(self, url: str) -> None:
        self.first_seen: dict[int, float] = {}  # count -> time.time() at arrival
        self.ready = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()

    def _read(self, url: str) -> None:
        params = {"prefix": PREFIX}
        try:
            with httpx.Client(timeout=httpx.Timeout(60.0, read=120.0)) as client, \
                    client.stream("GET", f"{url}/api/v1/events", params=params) as answer:
                event, data = "", ""
                for line in answer.iter_lines():
                    if self._stop:
                        return
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif not line and data:
                        now = time.time()
                        if event == "ready":
                            self.ready.set()
                        elif event == "points":
                            body: dict[str, Any] = json.loads(data)
                            if body.get("name") == "live":
                                self.first_seen.setdefault(int(body["count"]), now)
                        event, data = "", ""
        except httpx.HTTPError:
            if not self._stop:
                raise

    def close(self) -> None:
        self._stop = True


def latencies(times: list[float], seen: dict[int, float]) -> list[float]:
    """Per point: arrival of the first event whose count covers it, minus its log() time."""
    out: list[float] = []
    counts = sorted(seen)
    for i, t in enumerate(times):
        covering = [seen[c] for c in counts if c > i]
        if not covering:
            raise RuntimeError(f"point {i} was never announced (counts seen: {counts[-5:]})")
        out.append(min(covering) - t)
    return out


def run_mode(mode: str, n: int, interval: float) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        root = Path(tmp) / "dash"
        root.mkdir()
        server = Server(root)
        try:
            where = str(root) if mode == "local" else server.url
            extra = env()
            extra["ML_DASH_ROOT"] = str(Path(tmp) / "spool")  # remote mode keeps its outbox here
            out = Path(tmp) / "times.json"
            train = subprocess.Popen([sys.executable, "-c", TRAIN, mode, where, PREFIX, str(n), str(interval),
                                      str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=extra,
                                     text=True)
            assert train.stdin is not None and train.stdout is not None
            if train.stdout.readline().strip() != "started":
                raise RuntimeError("the training process did not start")
            arrivals = Arrivals(server.url)
            if not arrivals.ready.wait(60):
                raise RuntimeError("no ready event")
            train.stdin.write("go\n")
            train.stdin.flush()
            if train.wait(120 + n * interval * 4) != 0:
                raise RuntimeError(f"the training process failed ({train.returncode})")
            times: list[float] = json.loads(out.read_text())
            deadline = time.monotonic() + 10
            while max(arrivals.first_seen, default=0) < n and time.monotonic() < deadline:
                time.sleep(0.05)
            arrivals.close()
            return latencies(times, dict(arrivals.first_seen))
        finally:
            server.stop()


def health_round_trip() -> float:
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        server = Server(Path(tmp))
        try:
            with httpx.Client(base_url=server.url) as client:
                samples = []
                for _ in range(50):
                    t0 = time.perf_counter()
                    client.get("/health")
                    samples.append(time.perf_counter() - t0)
                return statistics.median(samples)
        finally:
            server.stop()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 points per mode")
    parser.add_argument("-n", type=int, default=None, help="points per mode (default 100)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between two log() calls")
    args = parser.parse_args()
    n = args.n or (30 if args.quick else 100)
    sys.path.insert(0, str(SRC))
    from ml_dash.server.events import POLL_INTERVAL

    rtt = health_round_trip()
    print(f"floors: server polling period {POLL_INTERVAL * 1000:.0f} ms (a point waits {POLL_INTERVAL * 500:.0f} ms "
          f"on average); /health round trip {rtt * 1000:.2f} ms")
    print(f"{n} points per mode, one every {args.interval:g} s; latency = event at the client - log() call")
    print(f"{'mode':<8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'p95/target':>12}{'p50/poll':>10}")
    for mode in ("local", "remote"):
        lat = run_mode(mode, n, args.interval)
        p50, p95 = pct(lat, 0.5), pct(lat, 0.95)
        verdict = "OK" if p95 <= TARGET else "MISS"
        print(f"{mode:<8}{p50 * 1000:>9.0f}{p95 * 1000:>9.0f}{max(lat) * 1000:>9.0f}"
              f"{p95 / TARGET:>12.2f}{p50 / POLL_INTERVAL:>10.2f}  target p95 <= {TARGET * 1000:.0f} ms: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
