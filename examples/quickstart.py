"""A small training loop that records params, metrics, logs and tracks with ML-Dash.

Run it with ``python examples/quickstart.py`` (or ``make run``); it writes into
``.dash/`` in the current folder and prints where everything went.
"""

from __future__ import annotations

import argparse
import math
import random

from ml_dash import Experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000, help="steps per epoch")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dash-root", default=".dash")
    parser.add_argument("--prefix", default="demo/quickstart/mlp/run-1")
    args = parser.parse_args()

    with Experiment(prefix=args.prefix, dash_root=args.dash_root, echo=False,
                    tags=["example"], description="ML-Dash quickstart").run as exp:
        exp.params.set(**vars(args), model={"kind": "mlp", "hidden": [128, 64]})
        exp.log("training started", level="info", metadata={"epochs": args.epochs})
        rng = random.Random(0)
        step = 0
        for epoch in range(args.epochs):
            train = exp.metrics("train")
            for _ in range(args.steps):
                loss = 2.0 * math.exp(-step / 3000) + 0.05 * rng.random()
                train.log(loss=loss, step=step, epoch=epoch)
                exp.metrics("epoch").buffer(loss=loss)
                if step % 100 == 0:
                    exp.tracks("robot/position").append(x=math.cos(step / 500), y=math.sin(step / 500), _ts=-1)
                step += 1
            exp.metrics.buffer.log_summary("mean", "min", "max", epoch=epoch)
            accuracy = 1.0 - 0.5 * math.exp(-epoch)
            exp.metrics("eval").log(accuracy=accuracy, epoch=epoch)
            exp.log("epoch done", level="info", metadata={"epoch": epoch, "accuracy": accuracy})

        stats = exp.metrics("train").stats()
        print(f"logged {stats['totalDataPoints']} training points, "
              f"{len(exp.tracks('robot/position').read())} track entries")
        print(f"experiment folder: {exp.path}")
    print(f"status: {exp.status}; see it with: ml-dash --root {args.dash_root} show {args.prefix}")


if __name__ == "__main__":
    main()
