"""Child process for tests/test_crash.py: logs until it is killed with SIGKILL.

Modes:

``loop``   logs metric points, log lines and track entries (one of each per step ``i``)
           forever. Every ``--every`` steps it appends ``"<i> <time>\\n"`` to the
           progress file: steps ``0..i`` had been handed to ML-Dash (``log`` returned)
           at wall time ``<time>``. With ``--resume`` each stream's step numbers
           continue from its count on disk (the first progress line,
           ``"start <metric> <logs> <track>"``, gives those counts). The progress
           file is written with ``os.write`` so a kill never loses a line that was
           reported (only the page cache is needed).
``flush``  logs ``--count`` steps, calls ``exp.flush()``, prints ``flushed`` and sleeps
           until it is killed.

Prints ``ready`` once the run has started (before the first step).
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
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--mode", choices=("loop", "flush"), required=True)
    parser.add_argument("--flush-interval", type=float, default=0.2)
    parser.add_argument("--progress")
    parser.add_argument("--every", type=int, default=16)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue every stream from what is on disk")
    args = parser.parse_args()

    exp = Experiment(args.prefix, dash_root=args.root, flush_interval=args.flush_interval, echo=False)
    exp.run.start()
    metric = exp.metrics("train")
    track = exp.tracks("robot/pose")
    rng = random.Random(args.seed)

    if args.mode == "flush":
        for i in range(args.count):
            metric.log(i=i, loss=1.0 / (i + 1))
            exp.log(f"step {i}", metadata={"i": i})
            track.append(i=i, x=float(i))
        exp.flush()
        print("flushed", flush=True)
        time.sleep(3600)
        return

    # After an earlier crash, every stream continues from what is on disk.
    m0 = l0 = t0 = 0
    if args.resume:
        m0 = metric.stats()["totalDataPoints"]
        l0 = exp.logs.read(limit=1)["total"]
        t0 = len(track.read())
    progress = os.open(args.progress, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(progress, f"start {m0} {l0} {t0}\n".encode())
    print("ready", flush=True)
    # Vary the line length and the pace so kills land in many different places.
    pad = "x" * 200
    i = 0
    burst = rng.randint(10, 200)
    while True:
        metric.log(i=m0 + i, loss=1.0 / (i + 1), note=pad[: i % 97])
        exp.log(f"step {l0 + i}", level="info", metadata={"i": l0 + i})
        track.append(i=t0 + i, x=float(i), label=pad[: i % 53])
        if i % args.every == 0:
            os.write(progress, f"{i} {time.time():.6f}\n".encode())
        i += 1
        burst -= 1
        if burst == 0:
            time.sleep(rng.random() * 0.006)
            burst = rng.randint(10, 200)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
