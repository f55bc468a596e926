"""Child process for tests/test_write_failures.py: logging while writes really fail.

``--failure fsize``     a full disk, for real: RLIMIT_FSIZE (soft) is set to ``--limit``
                        bytes with SIGXFSZ ignored, so a write past it fails with EFBIG.
``--failure readonly``  after the first steps are written, every folder and file under
                        the dash root is made read-only with chmod. Run as root, the
                        process first drops CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, so
                        the permission bits really apply to it.

Each step logs a metric point ``{i, pad}``, a log line and a track entry (``--tracks``
topic). Logging calls must never raise; any exception is recorded and reported.

``--then close``    completes the run while writes still fail (``close_timeout``).
``--then recover``  clears the failure (raises the limit / chmods back), logs
                    ``--after`` more steps and completes the run.

``--max-pending N`` sets ``exp._session._writer.max_pending`` right after the start.

Prints one JSON document on the last line of stdout.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import time
import traceback
import warnings

from ml_dash import Experiment


def drop_dac_capabilities() -> None:
    """As root: stop ignoring permission bits (for this thread and threads it starts)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    mask = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    data[0].effective &= ~mask
    data[0].permitted &= ~mask
    data[0].inheritable &= ~mask
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def set_tree_writable(root: str, writable: bool) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            os.chmod(path, 0o644 if writable else 0o444)
        os.chmod(folder, 0o755 if writable else 0o555)


def probe_readonly(root: str) -> bool:
    try:
        fd = os.open(os.path.join(root, "probe"), os.O_WRONLY | os.O_CREAT, 0o644)
    except PermissionError:
        return True
    os.close(fd)
    os.unlink(os.path.join(root, "probe"))
    return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--failure", choices=("fsize", "readonly"), required=True)
    parser.add_argument("--then", choices=("close", "recover"), required=True)
    parser.add_argument("--limit", type=int, default=64 * 1024)
    parser.add_argument("--before", type=int, default=100, help="steps logged before the failure")
    parser.add_argument("--during", type=int, default=3000, help="steps logged while writes fail")
    parser.add_argument("--after", type=int, default=100, help="steps logged after the recovery")
    parser.add_argument("--metric", default="train")
    parser.add_argument("--topic", default="robot/pose")
    parser.add_argument("--flush-interval", type=float, default=0.1)
    parser.add_argument("--close-timeout", type=float, default=2.0)
    parser.add_argument("--max-pending", type=int)
    parser.add_argument("--prefill-logs", action="store_true", help="fsize: make only the log file too big")
    args = parser.parse_args()

    out: dict = {"exceptions": [], "logged": 0}
    warnings.simplefilter("always")
    caught: list[str] = []
    warnings.showwarning = lambda message, category, *rest: caught.append(f"{category.__name__}: {message}")

    if args.failure == "readonly" and os.geteuid() == 0:
        drop_dac_capabilities()

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.limit, hard))

    if args.failure == "fsize" and not args.prefill_logs:
        limit_file_size()

    exp = Experiment(
        args.prefix,
        dash_root=args.root,
        flush_interval=args.flush_interval,
        close_timeout=args.close_timeout,
        echo=False,
    )
    exp.run.start()
    if args.prefill_logs:
        # Only the log file grows past the limit: that one stream fails, the others have room.
        logs_path = os.path.join(exp.path, "logs", "logs.jsonl")
        while not os.path.exists(logs_path) or os.path.getsize(logs_path) <= args.limit:
            exp.log("prefill " + "l" * 1000, metadata={"i": -1})
            exp.flush()
        limit_file_size()
    if args.max_pending is not None:
        exp._session._writer.max_pending = args.max_pending  # type: ignore[union-attr]
    max_pending_seen = 0
    pad = "p" * 40

    def step(i: int, metric: str, topic: str) -> None:
        nonlocal max_pending_seen
        try:
            exp.metrics(metric).log(i=i, pad=pad)
            exp.log(f"step {i}", metadata={"i": i})
            exp.tracks(topic).append(i=i)
            out["logged"] = i + 1
        except Exception:
            out["exceptions"].append(traceback.format_exc())
        writer = exp._session._writer
        if writer is not None:
            max_pending_seen = max(max_pending_seen, writer._pending_total)
        if i % 64 == 63:
            time.sleep(0.002)  # a training step takes time: let the writer run

    i = 0
    for _ in range(args.before):
        step(i, args.metric, args.topic)
        i += 1
    exp.flush()  # the first steps are on disk (and the files are open)
    if args.failure == "readonly":
        set_tree_writable(args.root, False)
        out["readonly_effective"] = probe_readonly(args.root)
        # New streams need new folders: they cannot be created now.
        metric, topic = args.metric + "-new", args.topic + "-new"
    else:
        metric, topic = args.metric, args.topic
    out["streams"] = [metric, topic]
    for _ in range(args.during):
        step(i, metric, topic)
        i += 1
    # Give the writer a few wake-ups so the failure is certainly noticed.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("cannot write" in w for w in caught):
        time.sleep(args.flush_interval)
    time.sleep(3 * args.flush_interval)
    out["failing_noticed"] = any("cannot write" in w for w in caught)
    writer = exp._session._writer
    out["last_error"] = writer.last_error if writer is not None else None

    if args.then == "recover":
        if args.failure == "fsize":
            _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # the disk has room again
        else:
            set_tree_writable(args.root, True)
        try:
            exp.flush()
        except Exception:
            out["exceptions"].append(traceback.format_exc())
        for _ in range(args.after):
            step(i, metric, topic)
            i += 1

    started = time.monotonic()
    report = exp.run.complete()
    out["close_seconds"] = time.monotonic() - started
    if args.failure == "readonly":
        set_tree_writable(args.root, True)  # let the parent read and clean up
    assert report is not None
    out["report"] = {
        "ok": report.ok,
        "unwritten": report.unwritten,
        "dropped": report.dropped,
        "rejected": report.rejected,
        "last_error": report.last_error,
        "text": str(report),
    }
    out["close_report_is_report"] = exp.close_report is report
    out["max_pending_seen"] = max_pending_seen
    out["warnings"] = caught
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
