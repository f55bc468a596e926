"""A small training script that fills a dash folder for the dashboard's browser tests.

``python train_demo.py ROOT`` logs, through ``ml_dash.Experiment`` as a user would:

- ``alice/vision/resnet/run-1`` … ``run-3``: params that differ (lr, optimizer) and
  agree (model.depth), a ``train`` stream of 5,000 points (``loss``, ``acc``, ``step``)
  with one spike (``loss`` = 50 at index SPIKE_INDEX, off any grid) and one NaN
  (NAN_INDEX, run-1 only), an ``eval`` stream per 500 steps, log lines (one of them
  HTML, which the page must show as text), a track;
- ``alice/nlp/bert/run-1`` and ``bob/speech/run-a``: more owners, projects and folders.

``python train_demo.py ROOT --live PREFIX --seconds S`` runs one experiment that logs
a point every 50 ms for S seconds (for live updates), printing "started" first.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from ml_dash import Experiment

POINTS = 5_000
SPIKE_INDEX = 3_137
SPIKE_VALUE = 50.0
NAN_INDEX = 1_234
HTML_MESSAGE = '<img src=x onerror="window.__pwned=1"><b>bold?</b>'


def run(root: str, prefix: str, lr: float, optimizer: str, seed: int, tags: list[str], description: str | None,
        nan: bool) -> None:
    exp = Experiment(prefix=prefix, dash_root=root, tags=tags, description=description)
    with exp.run:
        exp.params.set(lr=lr, optimizer=optimizer, model={"depth": 50, "width": 64}, data={"batch": 128})
        train = exp.metrics("train")
        for step in range(POINTS):
            level = 0.3 * seed + (2.5 - 0.3 * seed) * math.exp(-step * 0.0004 * (1 + seed))
            loss = level + 0.04 * math.sin(step * 0.37 + seed) + 0.03 * math.sin(step * 1.7 + seed * 3)
            if step == SPIKE_INDEX:
                loss = SPIKE_VALUE
            if nan and step == NAN_INDEX:
                loss = float("nan")
            train.log(loss=loss, acc=1 - level / 3, step=step * 2, _ts=1_700_000_000 + step * 0.5)
            if step % 500 == 499:
                exp.metrics("eval").log(accuracy=0.5 + step / (3 * POINTS) + seed * 0.01, epoch=step // 500)
                exp.log(f"epoch {step // 500} done", level="info", metadata={"epoch": step // 500})
        exp.log("learning rate warm-up finished", level="debug")
        exp.log("gradient norm is large", level="warn", metadata={"norm": 1e4})
        exp.log(f"loss spike at step {SPIKE_INDEX * 2}", level="error")
        exp.log(HTML_MESSAGE, level="info")
        for t in range(20):
            exp.tracks("robot/position").append(x=float(t), y=float(t * t), _ts=1_700_000_000 + t)


def fill(root: str) -> None:
    run(root, "alice/vision/resnet/run-1", 0.001, "adam", 1, ["baseline"], "ResNet-50 baseline <i>not italic</i>", True)
    run(root, "alice/vision/resnet/run-2", 0.01, "sgd", 2, [], None, False)
    run(root, "alice/vision/resnet/run-3", 0.003, "adam", 3, ["sweep"], None, False)
    run(root, "alice/nlp/bert/run-1", 0.0001, "adamw", 4, [], None, False)
    run(root, "bob/speech/run-a", 0.02, "sgd", 5, [], None, False)


def live(root: str, prefix: str, seconds: float) -> None:
    exp = Experiment(prefix=prefix, dash_root=root)
    with exp.run:
        exp.params.set(lr=0.1)
        train = exp.metrics("train")
        train.log(loss=1.0, step=0)
        exp.flush()
        print("started", flush=True)
        step = 1
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            train.log(loss=1.0 / (step + 1), step=step)
            if step % 20 == 0:
                exp.log(f"live step {step}", level="info")
            step += 1
            time.sleep(0.05)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--live")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.live:
        live(args.root, args.live, args.seconds)
    else:
        fill(args.root)


if __name__ == "__main__":
    main(sys.argv[1:])
