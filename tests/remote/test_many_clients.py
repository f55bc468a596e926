"""32 client processes logging at once to one real ``ml-dash serve``.

Half of them log to experiments of their own; the other half share one experiment and
one metric stream (and its log lines and a track topic). Nothing may be lost, nothing
stored twice, and the shared stream's indexes must be exactly 0..total-1, each
client's points in the order it logged them. The append latency under that load is
printed, not asserted, seen two ways: by the clients (each request their senders
made, timed in the client by httpx event hooks) and by a probe in this process that
appends a 200-point batch every 50 ms while the clients run (its stream is checked too).
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from ml_dash.stores.local import LocalStore
from support.files import spooled_left
from support.processes import Child, ServerProcess, cpu_seconds

CLIENTS = 32
SHARING = 16  # clients CLIENTS - SHARING .. CLIENTS - 1 share one experiment and metric
POINTS = 20_000
EVERY = 100  # a log line and a track entry every EVERY points (see procs/many_logger.py)
SHARED = "alice/many/shared"
PROBE = "alice/many/probe"
PROBE_BATCH = 200
HANG_GUARD = 600.0


def prefix_of(client: int) -> str:
    return SHARED if client >= CLIENTS - SHARING else f"alice/many/solo-{client}"


def check_solo(store: LocalStore, client: int) -> None:
    prefix = prefix_of(client)
    page = store.read_metrics(prefix, "train", 0, POINTS + 100)
    assert [p["index"] for p in page["data"]] == list(range(POINTS)), prefix
    assert [(p["data"]["client"], p["data"]["step"]) for p in page["data"]] == [(client, i) for i in range(POINTS)]
    logs = store.query_logs(prefix, {"limit": POINTS})["logs"]
    assert [r["message"] for r in logs] == [f"client {client} step {i}" for i in range(0, POINTS, EVERY)]
    assert [e["step"] for e in store.read_tracks(prefix, "pose")] == list(range(0, POINTS, EVERY))


def check_shared(store: LocalStore, clients: range) -> None:
    total = POINTS * len(clients)
    page = store.read_metrics(SHARED, "train", 0, total + 100)
    assert page["total"] == total
    assert [p["index"] for p in page["data"]] == list(range(total)), "shared stream: indexes are not 0..total-1"
    seen = [(p["data"]["client"], p["data"]["step"]) for p in page["data"]]
    assert len(set(seen)) == total, "a point of the shared stream is stored twice"
    for client in clients:
        assert [step for who, step in seen if who == client] == list(range(POINTS)), f"client {client}"
    logs = store.query_logs(SHARED, {"limit": total})["logs"]
    assert [r["sequenceNumber"] for r in logs] == list(range(len(logs)))
    assert Counter(r["message"] for r in logs) == Counter(
        f"client {c} step {i}" for c in clients for i in range(0, POINTS, EVERY)
    )
    entries = store.read_tracks(SHARED, "pose")
    assert sorted((e["client"], e["step"]) for e in entries) == [
        (c, i) for c in clients for i in range(0, POINTS, EVERY)
    ]


class Probe(threading.Thread):
    """Appends PROBE_BATCH points to PROBE every 50 ms until stopped; times each request."""

    def __init__(self, url: str) -> None:
        super().__init__(name="latency-probe", daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.seconds: list[float] = []
        self.failures: list[str] = []

    def run(self) -> None:
        headers = {"content-type": "application/json"}
        params = {"prefix": PROBE, "name": "probe"}
        with httpx.Client(base_url=self.url, timeout=HANG_GUARD) as client:
            client.post("/api/v1/experiment/open", content=msgspec.json.encode({"prefix": PROBE}), headers=headers)
            while not self.stopping.wait(0.05):
                start = len(self.seconds) * PROBE_BATCH
                points = [{"probe": i, "_ts": time.time()} for i in range(start, start + PROBE_BATCH)]
                body = msgspec.json.encode({"batchId": uuid.uuid4().hex, "points": points})
                t0 = time.perf_counter()
                response = client.post("/api/v1/metrics/append", params=params, content=body, headers=headers)
                took = time.perf_counter() - t0
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
                    return
                self.seconds.append(took)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_line(label: str, seconds: list[float]) -> str:
    ms = [s * 1e3 for s in seconds]
    return (
        f"  {label:<8} {len(ms):>6} requests  p50 {percentile(ms, 50):8.1f} ms  p90 {percentile(ms, 90):8.1f} ms  "
        f"p99 {percentile(ms, 99):8.1f} ms  max {max(ms, default=0.0):8.1f} ms"
    )


@pytest.mark.slow
def test_32_clients_log_at_once_to_one_server(tmp_path: Path) -> None:
    server = ServerProcess(root=tmp_path / "server-root").start()
    chats: list[Child] = []
    try:
        for client in range(CLIENTS):
            workdir = tmp_path / f"client-{client}"
            workdir.mkdir()
            chats.append(
                Child("remote/procs/many_logger.py", server.url, prefix_of(client), client, POINTS, cwd=workdir)
            )
        for chat in chats:
            assert chat.receive(HANG_GUARD) == {"ready": True}
        probe = Probe(server.url)
        probe.start()
        assert server.proc is not None
        server_cpu = cpu_seconds(server.proc.pid)
        started = time.perf_counter()
        for chat in chats:
            chat.send("go")
        results: list[dict[str, Any]] = [chat.receive(HANG_GUARD) for chat in chats]
        elapsed = time.perf_counter() - started
        server_cpu = cpu_seconds(server.proc.pid) - server_cpu
        probe.stopping.set()
        probe.join(HANG_GUARD)
        assert not probe.failures, probe.failures
        for chat in chats:
            assert chat.finish() == 0

        for client, result in enumerate(results):
            assert result["ok"] and result["errors"] == 0, (client, result["report"])
            assert spooled_left(tmp_path / f"client-{client}") == [], client
        by_route: dict[str, list[float]] = {}
        for result in results:
            for route, seconds in result["requests"]:
                by_route.setdefault(route, []).append(seconds)
        every = [s for values in by_route.values() for s in values]
        loops = [r["log_seconds"] for r in results]
        closes = [r["total_seconds"] - r["log_seconds"] for r in results]
        print(
            f"\n{CLIENTS} clients x {POINTS:,} points ({CLIENTS * POINTS:,} in all) in {elapsed:.1f} s, "
            f"{CLIENTS * POINTS / elapsed:,.0f} points/s; CPU used: server {server_cpu:.1f} s, clients "
            f"{sum(r['cpu_seconds'] for r in results):.1f} s (of {elapsed * (os.cpu_count() or 1):.1f} s on "
            f"{os.cpu_count()} cores); logging loops took {percentile(loops, 50):.1f} s "
            f"(median; {POINTS // 100 * 0.01:.1f} s of it pauses), close took "
            f"{percentile(closes, 50):.1f} s (median; max {max(closes):.1f} s); slowest logging call "
            f"{max(r['max_call'] for r in results) * 1e3:.1f} ms; append latency seen by the clients:"
        )
        for route in sorted(by_route):
            print(latency_line(route, by_route[route]))
        print(latency_line("all", every))
        print(f"  the probe's {PROBE_BATCH}-point appends from this process, every 50 ms during the load:")
        print(latency_line("probe", probe.seconds))

        server.stop()
        assert "Traceback" not in server.output(), server.output()
        store = LocalStore(server.root)
        try:
            for client in range(CLIENTS - SHARING):
                check_solo(store, client)
            check_shared(store, range(CLIENTS - SHARING, CLIENTS))
            probed = store.read_metrics(PROBE, "probe", 0, 10_000_000)["data"]
            expected = list(range(len(probe.seconds) * PROBE_BATCH))
            assert [p["index"] for p in probed] == expected and [p["data"]["probe"] for p in probed] == expected
        finally:
            store.close()
    finally:
        for chat in chats:
            chat.kill()
        server.kill()
        server.stop()
