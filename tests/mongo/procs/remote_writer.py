"""Child process for tests/mongo/test_serve_mongo.py: one SDK client in remote mode.

Opens ``--prefix`` on the server at ``--url`` (the spool under the working folder's
``.dash``), prints ``ready``, waits for ``go`` on stdin (so all writers start
together), logs ``--points`` points ``{w, i}`` into the metric ``shared`` and one log
line per 100 points, completes the run and prints the close report as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ml_dash import Experiment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--points", type=int, required=True)
    args = parser.parse_args()

    # Several writers of one experiment on purpose: each joins the others (join=True).
    exp = Experiment(args.prefix, dash_url=args.url, flush_interval=0.01, close_timeout=120.0, echo=False,
                     join=True)
    exp.run.start()
    metric = exp.metrics("shared")
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("no go")
    for i in range(args.points):
        metric.log(w=args.worker, i=i)
        if i % 100 == 99:
            exp.log(f"w{args.worker} {i}", metadata={"w": args.worker, "i": i})
        if i % 25 == 24:
            time.sleep(0.005)  # let the writer send many small batches, interleaved with the others
    report = exp.run.complete()
    assert report is not None
    print(json.dumps({"ok": report.ok, "report": str(report)}), flush=True)


if __name__ == "__main__":
    main()
