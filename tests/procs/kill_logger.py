"""Child process for tests/test_kill_window.py and benchmarks/bench_kill.py: logs, then
waits to be killed with SIGKILL (it never closes the experiment).

Modes:

``burst``   logs ``--count`` metric points ``log(i=i, loss=...)`` in a tight loop (the
            points continue after what is stored with ``--resume``), then prints
            ``done <first> <count>`` and sleeps until it is killed.
``steady``  logs forever: one metric point, one log line and one track entry per step
            ``i``, in bursts with short sleeps between them. Every ``--every`` steps it
            appends ``"<i> <time>\\n"`` to the progress file with ``os.write`` (steps
            ``0..i`` had been handed to ML-Dash, ``log`` had returned, at wall time
            ``<time>``; a kill never loses a reported line: it is in the page cache).

Local mode with ``--root``; remote mode with ``--url`` (the outbox spool then lives
under ``--root``). Prints ``ready`` once the run has started.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

from ml_dash import Experiment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--url")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--mode", choices=("burst", "steady"), required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--flush-interval", type=float, default=0.5)
    parser.add_argument("--progress")
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the steps after what is stored")
    args = parser.parse_args()

    if args.url:
        os.environ["ML_DASH_ROOT"] = args.root  # the outbox spool goes under it
        exp = Experiment(args.prefix, dash_url=args.url, dash_root=None, flush_interval=args.flush_interval,
                         echo=False)
    else:
        exp = Experiment(args.prefix, dash_root=args.root, flush_interval=args.flush_interval, echo=False)
    exp.run.start()
    metric = exp.metrics("train")
    first = metric.stats()["totalDataPoints"] if args.resume else 0

    if args.mode == "burst":
        print("ready", flush=True)
        sys.stdin.readline()  # "go": the parent is listening
        for i in range(first, first + args.count):
            metric.log(i=i, loss=1.0 / (i + 1))
        os.write(1, f"done {first} {args.count}\n".encode())
        time.sleep(3600)
        return

    track = exp.tracks("robot/pose")
    rng = random.Random(args.seed)
    progress = os.open(args.progress, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    print("ready", flush=True)
    i = 0
    burst = rng.randint(10, 400)
    while True:
        metric.log(i=i, loss=1.0 / (i + 1))
        exp.log(f"step {i}", metadata={"i": i})
        track.append(i=i, x=float(i))
        if i % args.every == 0:
            os.write(progress, f"{i} {time.time():.6f}\n".encode())
        i += 1
        burst -= 1
        if burst == 0:
            time.sleep(rng.random() * 0.004)
            burst = rng.randint(10, 400)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
