"""Timestamps shared by metrics and tracks: ``_ts`` handling and the per-thread last time."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from .errors import InvalidValueError

now = time.time
thread_state = threading.local()


def resolve_ts(ts: Any, where: str) -> float:
    """Turn a user ``_ts`` into seconds: None -> now, -1 -> this thread's last time."""
    if ts is None:
        return now()
    if type(ts) is bool or not isinstance(ts, int | float):
        kind = type(ts).__module__
        if kind.startswith(("numpy", "torch")) and hasattr(ts, "item"):
            ts = ts.item()
        else:
            raise InvalidValueError(f"{where}: _ts must be seconds since the epoch (a number), got {ts!r}")
    seconds = float(ts)
    if seconds == -1:
        last: float | None = getattr(thread_state, "ts", None)
        return last if last is not None else now()
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidValueError(f"{where}: _ts must be a finite, non-negative number of seconds, got {seconds!r}")
    return seconds
