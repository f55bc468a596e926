"""Kill benchmark of ML-Dash: what a process killed with SIGKILL leaves behind.

(a) Right after a tight loop. A child process logs N points (``log(i=i, loss=...)``)
in a tight loop, writes ``done`` to its stdout and sleeps; the parent, blocked on that
pipe, sends SIGKILL the moment it reads the line (about 0.1 ms later). Then it counts
the points that survived: on disk (local mode), or on the server plus in the client's
outbox spool (remote mode; then ``ml-dash sync`` delivers the spool and the server is
counted again: indexes gapless, nothing twice).

(b) At random moments. A child logs forever (one metric point, one log line and one
track entry per step, in bursts with short sleeps between them) and records
``"<step> <time>"`` every 8 steps; the parent kills it after a random 0.2-1.5 s. The
figure is the age, at the kill, of the oldest point that is missing (0 when none of
the reported points is missing): the process-death horizon.

    .venv/bin/python benchmarks/bench_kill.py            # about 2 minutes
    .venv/bin/python benchmarks/bench_kill.py --quick    # about 30 s: fewer runs, no 1,000,000-point runs

Prints one row per figure with PASS or MISS against the targets of issue 16
(at least 99.5 % kept; nothing older than 50 ms missing); exits non-zero only when a
run breaks (a child fails, the files are damaged, indexes have gaps or duplicates).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench_local import load_average, scratch  # same folder
from bench_remote import Server
from ml_dash import Experiment, LocalStore
from ml_dash.outbox import PART, SUFFIX, decode_entry, deliver_left_behind
from ml_dash.stores.remote import RemoteStore

PREFIX = "bench/kill/run-{}"  # one experiment per kill: the server keeps its files open
_runs = iter(range(1 << 30))
KEEP_TARGET = 0.995
AGE_TARGET = 0.050  # seconds
EVERY = 8  # the steady child reports its progress every EVERY steps


# -- the children ---------------------------------------------------------------------------


def open_experiment(prefix: str, root: str, url: str | None) -> Experiment:
    if url:
        os.environ["ML_DASH_ROOT"] = root  # the spool goes under it
        exp = Experiment(prefix, dash_url=url, dash_root=None, echo=False)
    else:
        exp = Experiment(prefix, dash_root=root, echo=False)
    exp.run.start()
    return exp


def child_burst(prefix: str, root: str, url: str | None, n: int) -> None:
    exp = open_experiment(prefix, root, url)
    metric = exp.metrics("train")
    os.write(1, b"ready\n")
    sys.stdin.readline()
    for i in range(n):
        metric.log(i=i, loss=1.0 / (i + 1))
    os.write(1, b"done\n")
    time.sleep(3600)


def child_steady(prefix: str, root: str, url: str | None, progress_path: str, seed: int) -> None:
    exp = open_experiment(prefix, root, url)
    metric = exp.metrics("train")
    track = exp.tracks("pose")
    rng = random.Random(seed)
    progress = os.open(progress_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(1, b"ready\n")
    i = 0
    burst = rng.randint(10, 400)
    while True:
        metric.log(i=i, loss=1.0 / (i + 1))
        exp.log(f"step {i}", metadata={"i": i})
        track.append(i=i, x=float(i))
        if i % EVERY == 0:
            os.write(progress, f"{i} {time.time():.6f}\n".encode())
        i += 1
        burst -= 1
        if burst == 0:
            time.sleep(rng.random() * 0.004)
            burst = rng.randint(10, 400)


# -- counting what survived -----------------------------------------------------------------


def steps_on_disk(root: str, prefix: str) -> dict[str, list[int]]:
    """The step of every record of ``prefix`` in the folder, per stream, checking the counters."""
    store = LocalStore(root)
    try:
        points = store.read_metrics(prefix, "train", 0, 1 << 40)["data"]
        if [p["index"] for p in points] != list(range(len(points))):
            raise RuntimeError("metric indexes are not gapless")
        logs = store.query_logs(prefix, {"offset": 0, "limit": 1 << 40, "descending": False})["logs"]
        if [line["sequenceNumber"] for line in logs] != list(range(len(logs))):
            raise RuntimeError("log sequence numbers are not gapless")
        tracks = store.read_tracks(prefix, "pose") if store.list_tracks(prefix) else []
    finally:
        store.close()
    return {
        "metric": [p["data"]["i"] for p in points],
        "logs": [line["metadata"]["i"] for line in logs],
        "track": [e["i"] for e in tracks],
    }


def steps_in_spool(root: str) -> dict[str, list[int]]:
    """The steps in the outbox files a killed remote-mode client left (sealed or open)."""
    found: dict[str, list[int]] = {"metric": [], "logs": [], "track": []}
    for path in sorted(Path(root, ".spool").rglob("*")):
        if path.suffix not in (SUFFIX, PART) or "rejected" in path.parts:
            continue
        raw = path.read_bytes()
        if raw.count(b"\n") < 2:
            continue  # an open call killed before its first piece was written (sync deletes it)
        call, _url = decode_entry(raw)
        if call.op == "append_metrics":
            found["metric"] += [p["i"] for p in call.args[0]]
        elif call.op == "append_logs":
            found["logs"] += [r.metadata["i"] for r in call.args[0]]
        elif call.op == "append_tracks":
            found["track"] += [e["i"] for e in call.args[0]]
    return found


def start_child(*args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert proc.stdout is not None
    first = os.read(proc.stdout.fileno(), 100)
    if first != b"ready\n":
        proc.kill()
        raise RuntimeError(f"child {args[0]} did not start: {first!r}")
    return proc


def kill(proc: subprocess.Popen[bytes]) -> float:
    at = time.time()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    return at


def burst_once(n: int, server: Server | None) -> tuple[float, float | None]:
    """Kill right after an n-point loop: (fraction kept, fraction on the server after sync)."""
    prefix = PREFIX.format(next(_runs))
    with scratch() as tmp:
        root = os.path.join(tmp, "client")
        proc = start_child("burst", prefix, root, server.url if server else "-", str(n))
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"go\n")
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(proc.stdout.fileno(), 100)
            if not chunk:
                raise RuntimeError("the child died before the end of its loop")
            line += chunk
        kill(proc)
        if server is None:
            steps = steps_on_disk(root, prefix)["metric"]
            if steps != list(range(len(steps))):
                raise RuntimeError("the points on disk are not steps 0..n-1")
            return len(steps) / n, None
        on_server = steps_on_disk(server.root, prefix)["metric"]
        kept = set(on_server) | set(steps_in_spool(root)["metric"])
        done = deliver_left_behind(os.path.join(root, ".spool"), lambda url: RemoteStore(url), timeout=60)
        if done.left or done.rejected:
            raise RuntimeError(f"ml-dash sync left {done.left}, rejected {done.rejected}")
        after = steps_on_disk(server.root, prefix)["metric"]
        if len(set(after)) != len(after):
            raise RuntimeError("a point is on the server twice")
        if set(after) != kept:
            raise RuntimeError("ml-dash sync delivered something else than the spool held")
        return len(kept & set(range(n))) / n, len(after) / n


def random_kill_once(server: Server | None, rng: random.Random) -> float:
    """Kill a steady logger at a random moment: the age (s) of the oldest missing point."""
    prefix = PREFIX.format(next(_runs))
    with scratch() as tmp:
        root = os.path.join(tmp, "client")
        progress = os.path.join(tmp, "progress.txt")
        proc = start_child("steady", prefix, root, server.url if server else "-", progress,
                           str(rng.randrange(1 << 30)))
        time.sleep(rng.uniform(0.2, 1.5))
        at = kill(proc)
        found = steps_on_disk(server.root if server else root, prefix)
        if server is not None:
            spooled = steps_in_spool(root)
            found = {kind: found[kind] + spooled[kind] for kind in found}
        worst = 0.0
        reported = [line.split() for line in Path(progress).read_text().splitlines() if line.count(" ") == 1]
        for steps in found.values():
            present = set(steps)
            first_missing = next(i for i in range(len(present) + 1) if i not in present)
            for step, t in reported:
                if int(step) >= first_missing:
                    worst = max(worst, at - float(t))
                    break
        return worst


# -- the benchmark --------------------------------------------------------------------------


def percent(x: float) -> str:
    return f"{100 * x:.2f} %"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="fewer runs, no 1,000,000-point runs")
    p.add_argument("--runs", type=int, default=None, help="kills per 10,000-point case (default 20; --quick 5)")
    p.add_argument("--big-runs", type=int, default=3, help="kills per 1,000,000-point case (default 3)")
    p.add_argument("--random", type=int, default=None, help="random-moment kills per mode (default 20; --quick 5)")
    p.add_argument("--modes", default="local,remote")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, prefix, root, url, *rest = args.child
        url = None if url == "-" else url
        if kind == "burst":
            child_burst(prefix, root, url, int(rest[0]))
        else:
            child_steady(prefix, root, url, rest[0], int(rest[1]))
        return 0

    runs = args.runs or (5 if args.quick else 20)
    randoms = args.random if args.random is not None else (5 if args.quick else 20)
    # 10,000 = 78 x 128 + 16: the last window of the loop is short. The sweep logs
    # 10,000 + k points for k spread over 0..127, so every length of it is measured.
    sizes = [("10,000", [10_000] * runs), ("10,000 to 10,127", [10_000 + k * 128 // runs for k in range(runs)])]
    if not args.quick:
        sizes.append(("1,000,000", [1_000_000] * args.big_runs))
    started = time.monotonic()
    print(f"ml-dash kill benchmark - {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC - Python "
          f"{sys.version.split()[0]} - {os.cpu_count()} CPUs - load average {load_average()}")
    rows: list[tuple[str, str, str, str]] = []
    failed = False
    rng = random.Random(16)
    for mode in args.modes.split(","):
        server = None
        server_dir = None
        if mode == "remote":
            server_dir = scratch()
            base = server_dir.__enter__()
            os.makedirs(os.path.join(base, "root"))
            server = Server(os.path.join(base, "root"))
        try:
            for label, counts in sizes:
                kept: list[float] = []
                synced: list[float] = []
                for n in counts:
                    try:
                        fraction, after = burst_once(n, server)
                    except RuntimeError as exc:
                        print(f"  {mode} {n:,}: FAILED: {exc}")
                        failed = True
                        continue
                    kept.append(fraction)
                    if after is not None:
                        synced.append(after)
                if not kept:
                    continue
                kept.sort()
                where = "on disk" if server is None else "on the server + in the spool"
                below = sum(k < KEEP_TARGET for k in kept)
                spread = (f"min {percent(kept[0])}, median {percent(kept[len(kept) // 2])}; {below} of {len(kept)} "
                          "kills below 99.5 %")
                rows.append((f"{mode}: SIGKILL after {label} points, {where}", spread, "≥ 99.5 %",
                             "PASS" if kept[0] >= KEEP_TARGET else "MISS"))
                if synced:
                    synced.sort()
                    rows.append((f"{mode}: ... on the server after `ml-dash sync`",
                                 f"min {percent(synced[0])}, median {percent(synced[len(synced) // 2])}", "", ""))
            ages = []
            for _ in range(randoms):
                try:
                    ages.append(random_kill_once(server, rng))
                except (RuntimeError, StopIteration) as exc:
                    print(f"  {mode} random kill: FAILED: {exc}")
                    failed = True
            if ages:
                ages.sort()
                over = sum(a > AGE_TARGET for a in ages)
                rows.append((f"{mode}: SIGKILL at a random moment: oldest missing point",
                             f"worst {1000 * ages[-1]:.1f} ms, median {1000 * ages[len(ages) // 2]:.1f} ms; "
                             f"{over} of {len(ages)} kills over 50 ms", "≤ 50 ms",
                             "PASS" if ages[-1] <= AGE_TARGET else "MISS"))
        finally:
            if server is not None:
                server.stop()
            if server_dir is not None:
                server_dir.__exit__(None, None, None)
    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{'figure':<{width}}{'measured':<60}{'target':<12}result")
    print("-" * (width + 80))
    for name, measured, target, result in rows:
        print(f"{name:<{width}}{measured:<60}{target:<12}{result}")
    print(f"\n{time.monotonic() - started:.0f} s, load average now {load_average()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
