"""One of many training scripts logging to one server at once (remote mode).

    python many_logger.py URL PREFIX CLIENT N

Prints ``{"ready": true}`` once its run has started, waits for a line on stdin (the
start signal shared by all clients), then logs N points to ``metrics("train")`` as
``log(client=CLIENT, step=i, loss=...)``, pausing 10 ms after every 100 points like a
training loop would. Every 100th point (i % 100 == 0) also writes a log line
``"client {CLIENT} step {i}"`` and a ``pose`` track entry at ``_ts = i * 1000 + CLIENT``
(unique across clients). After ``exp.run.complete()`` it prints one JSON line: the
close report, the slowest logging call, the CPU time it used from the start signal on,
and the time of every append request its
sender made (a response hook on its httpx client: from just before the request is
sent until the answer's headers arrive, which the server sends with the whole answer).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from typing import Any

import httpx

from ml_dash import Experiment

PAUSE_EVERY = 100
PAUSE = 0.01


def main() -> int:
    url, prefix, client, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    warnings.simplefilter("always")
    clock = time.perf_counter
    # Some clients share one prefix on purpose: each joins the others (join=True).
    exp = Experiment(prefix=prefix, dash_url=url, dash_root=None, close_timeout=240.0, flush_interval=0.2, echo=False,
                     join=True)
    requests: list[tuple[str, float]] = []  # (route, seconds) of every append request
    sent_at: dict[int, float] = {}

    def on_request(request: httpx.Request) -> None:
        sent_at[id(request)] = clock()

    def on_response(response: httpx.Response) -> None:
        took = clock() - sent_at.pop(id(response.request), clock())
        path = response.request.url.path
        if path.endswith("/append"):
            requests.append((path.rsplit("/", 2)[-2], took))

    sender: Any = exp._session.backend.replica._client  # type: ignore[union-attr]  # the RemoteStore's client
    sender.event_hooks = {"request": [on_request], "response": [on_response]}
    exp.run.start()
    metric = exp.metrics("train")
    pose = exp.tracks("pose")
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()

    slowest = 0.0
    errors = 0
    started = clock()
    cpu_at_start = time.process_time()
    for i in range(n):
        t0 = clock()
        try:
            metric.log(client=client, step=i, loss=1.0 / (i + 1))
            if i % PAUSE_EVERY == 0:
                exp.log(f"client {client} step {i}", level="info")
                pose.append(client=client, step=i, _ts=float(i * 1000 + client))
        except Exception as exc:
            errors += 1
            print(f"log call raised {type(exc).__name__}: {exc}", file=sys.stderr)
        took = clock() - t0
        if took > slowest:
            slowest = took
        if i % PAUSE_EVERY == PAUSE_EVERY - 1:
            time.sleep(PAUSE)
    logged = clock() - started
    report = exp.run.complete()
    print(
        json.dumps(
            {
                "ok": report is not None and report.ok,
                "report": str(report),
                "errors": errors,
                "max_call": slowest,
                "log_seconds": logged,
                "total_seconds": clock() - started,
                "cpu_seconds": time.process_time() - cpu_at_start,
                "requests": requests,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
