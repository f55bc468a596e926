"""Child process for tests/test_concurrency.py: one of several writers of one experiment.

Opens ``--prefix`` under ``--root``, prints ``ready``, waits for a line on stdin (so all
writers start together), then logs ``--points`` metric points ``{w, i}`` into the
metric ``shared``, ``--logs`` log lines and ``--tracks`` track entries ``{w<id>: i}``
into the topic ``shared/topic``, interleaved. Completes the run and prints the close
report as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ml_dash import Experiment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--points", type=int, default=0)
    parser.add_argument("--logs", type=int, default=0)
    parser.add_argument("--tracks", type=int, default=0)
    parser.add_argument("--flush-interval", type=float, default=0.2)
    args = parser.parse_args()

    # Several writers of one experiment on purpose: each joins the others (join=True).
    exp = Experiment(args.prefix, dash_root=args.root, flush_interval=args.flush_interval, echo=False, join=True)
    exp.run.start()
    metric = exp.metrics("shared")
    track = exp.tracks("shared/topic")
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("no go")
    w = args.worker
    field = f"w{w}"
    for i in range(max(args.points, args.logs, args.tracks)):
        if i < args.points:
            metric.log(w=w, i=i)
        if i < args.logs:
            exp.log(f"w{w} {i}", metadata={"w": w, "i": i})
        if i < args.tracks:
            track.append(**{field: i})
        if i % 256 == 255:
            time.sleep(0.001)  # spread the writes out so the writers really interleave
    report = exp.run.complete()
    assert report is not None
    print(json.dumps({"ok": report.ok, "report": str(report)}), flush=True)


if __name__ == "__main__":
    main()
