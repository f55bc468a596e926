"""Child process for tests/test_ownership.py and tests/remote/test_ownership_remote.py:
one run that claims an experiment (local mode with ``--root``, remote with ``--url``).

Starts ``Experiment(--prefix, resume=--resume, join=--join, lease_seconds=--lease)``
and prints one JSON line: ``{"prefix": exp.prefix}`` once the run is going, or
``{"error": code, "message": text}`` when the start is refused (then it exits with 3).
Then logs ``--points`` points ``log(i=i)`` into ``metrics(--stream)`` and prints
``{"logged": n}``. Then it waits for a line on stdin: ``complete`` completes the run
and prints ``{"ok": report.ok, "report": text}``; end of input leaves without
completing. Tests SIGKILL it while it waits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ml_dash import Experiment, MLDashError


def say(**answer: object) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--url")
    parser.add_argument("--resume", default="allow")
    parser.add_argument("--join", action="store_true")
    parser.add_argument("--lease", type=float)
    parser.add_argument("--stream", default="train")
    parser.add_argument("--points", type=int, default=100)
    args = parser.parse_args()

    if args.url:
        os.environ["ML_DASH_ROOT"] = args.root  # the outbox spool goes under it
        exp = Experiment(args.prefix, dash_url=args.url, dash_root=None, resume=args.resume, join=args.join,
                         lease_seconds=args.lease, flush_interval=0.1, close_timeout=30.0, echo=False)
    else:
        exp = Experiment(args.prefix, dash_root=args.root, resume=args.resume, join=args.join,
                         lease_seconds=args.lease, flush_interval=0.1, echo=False)
    try:
        exp.run.start()
    except MLDashError as exc:
        say(error=exc.code, message=str(exc))
        return 3
    say(prefix=exp.prefix)
    metric = exp.metrics(args.stream)
    for i in range(args.points):
        metric.log(i=i)
    exp.flush()
    say(logged=args.points)
    if sys.stdin.readline().strip() == "complete":
        report = exp.run.complete()
        assert report is not None
        say(ok=report.ok, report=str(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
