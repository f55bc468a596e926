"""Child process for tests/test_write_failures.py: the store blocks (a lock is never granted).

Logs one point to ``metrics/m`` and flushes (so the file exists), prints ``ready`` and
waits for a line on stdin; meanwhile the parent takes an exclusive ``flock`` on that
file and keeps it, like a stopped or hung process that shares the experiment would.
Then logs ``--points`` more points (the writer thread blocks in flock), completes the
run with ``--close-timeout`` and prints the close report and timings as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings

from ml_dash import Experiment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--close-timeout", type=float, default=1.0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    exp = Experiment(args.prefix, dash_root=args.root, flush_interval=0.1, close_timeout=args.close_timeout, echo=False)
    exp.run.start()
    metric = exp.metrics("m")
    metric.log(i=0)
    metric.flush()
    print("ready", flush=True)
    sys.stdin.readline()
    out: dict = {"exceptions": []}
    started = time.monotonic()
    for i in range(1, args.points + 1):
        try:
            metric.log(i=i)
        except Exception:
            out["exceptions"].append(traceback.format_exc())
    out["log_seconds"] = time.monotonic() - started
    time.sleep(0.5)  # the writer picks the points up and blocks on the lock
    started = time.monotonic()
    report = exp.run.complete()
    out["close_seconds"] = time.monotonic() - started
    assert report is not None
    out["report"] = {"ok": report.ok, "unwritten": report.unwritten, "dropped": report.dropped, "text": str(report)}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
