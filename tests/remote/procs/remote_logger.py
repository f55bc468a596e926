"""A training script in remote mode, driven line by line over stdin (JSON answers on stdout).

    python remote_logger.py URL PREFIX CLOSE_TIMEOUT FLUSH_INTERVAL

Commands:

- ``log K``: log the next K points. Point ``i`` is ``metrics("train").log(loss=1/(i+1),
  step=i)``; every 10th point (i % 10 == 0) also writes a log line ``"line {i}"`` and
  every 10th (i % 10 == 5) a track entry ``x=i`` at ``_ts=i``. Each call is timed; the
  answer holds the total so far and the slowest call of this command.
- ``close``: prints ``{"closing": true}``, then ``exp.run.complete()``; answers with the
  close report and how long close took, and exits.

The spool lives under the working directory (``.dash/.spool``).
"""

from __future__ import annotations

import json
import sys
import time
import warnings

from ml_dash import Experiment


def say(**answer: object) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def main() -> int:
    url, prefix, close_timeout, flush_interval = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    warnings.simplefilter("always")  # every warning reaches stderr; none may raise
    exp = Experiment(
        prefix=prefix,
        dash_url=url,
        dash_root=None,
        close_timeout=close_timeout,
        flush_interval=flush_interval,
        echo=False,
    )
    exp.run.start()
    metric = exp.metrics("train")
    track = exp.tracks("robot/pose")
    clock = time.perf_counter
    done = 0
    say(ready=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "log":
            slowest = 0.0
            errors = 0
            started = clock()
            for i in range(done, done + int(args[0])):
                t0 = clock()
                try:
                    metric.log(loss=1.0 / (i + 1), step=i)
                    if i % 10 == 0:
                        exp.log(f"line {i}", level="info", metadata={"i": i})
                    elif i % 10 == 5:
                        track.append(x=i, _ts=float(i))
                except Exception as exc:  # counted and shown: the loop must never see one
                    errors += 1
                    print(f"log call raised {type(exc).__name__}: {exc}", file=sys.stderr)
                took = clock() - t0
                if took > slowest:
                    slowest = took
            done += int(args[0])
            outbox = exp._session.backend.outbox
            say(logged=done, max_call=slowest, seconds=clock() - started, errors=errors,
                spooled=len(outbox) if outbox is not None else 0)
        elif command == "close":
            say(closing=True)
            t0 = clock()
            report = exp.run.complete()
            say(ok=report is not None and report.ok, report=str(report), close_seconds=clock() - t0, logged=done)
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
