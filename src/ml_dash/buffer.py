"""``BufferConfig``: the public ML-Dash SDK's buffering switch, mapped onto our writer.

What each setting does here:

- ``buffer_enabled=False`` (``ML_DASH_BUFFER_ENABLED=false``): synchronous mode. Every
  ``log``/``append``/log line is written into the files (the outbox, in remote-only
  mode) before the call returns; slower, for debugging. The periodic fsync still runs.
- ``flush_interval``: how often the writer fsyncs what it wrote (our default, 0.5 s,
  stays when the setting is not given).
- ``retry_base_delay`` / ``retry_max_delay``: the first and the longest wait between
  retries while a store fails (ours: the flush interval, and 10 s).
- ``max_retries``: accepted; our writer never gives data up after a number of tries
  (it keeps it, bounded in memory, and reports at close what is still unwritten).
- ``log_batch_size``, ``metric_batch_size``, ``track_batch_size``: accepted; our writer
  sizes its batches itself (a hand-over every few records, ``ml_dash.writer``).
- ``file_upload_workers``: accepted, for the files API.

Settings read from the environment count only when their variable is set; a
BufferConfig made by hand counts in full.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import InvalidValueError

_ENV = {
    "flush_interval": "ML_DASH_FLUSH_INTERVAL",
    "log_batch_size": "ML_DASH_LOG_BATCH_SIZE",
    "metric_batch_size": "ML_DASH_METRIC_BATCH_SIZE",
    "track_batch_size": "ML_DASH_TRACK_BATCH_SIZE",
    "file_upload_workers": "ML_DASH_FILE_UPLOAD_WORKERS",
    "buffer_enabled": "ML_DASH_BUFFER_ENABLED",
    "max_retries": "ML_DASH_MAX_RETRIES",
    "retry_base_delay": "ML_DASH_RETRY_BASE_DELAY",
    "retry_max_delay": "ML_DASH_RETRY_MAX_DELAY",
}
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class BufferConfig:
    """The SDK's buffering settings (same names, same defaults); see the module doc."""

    flush_interval: float = 5.0
    log_batch_size: int = 100
    metric_batch_size: int = 1000
    track_batch_size: int = 100
    file_upload_workers: int = 4
    buffer_enabled: bool = True
    max_retries: int = 3
    retry_base_delay: float = 1.0
    retry_max_delay: float = 30.0
    # The settings that were given (by hand: all; from_env: those whose variable is set).
    given: frozenset[str] = field(default=frozenset(_ENV), repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("flush_interval", "retry_base_delay", "retry_max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidValueError(f"BufferConfig.{name} must be a number of seconds > 0, got {value!r}")
        for name in ("log_batch_size", "metric_batch_size", "track_batch_size", "file_upload_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidValueError(f"BufferConfig.{name} must be an int >= 1, got {value!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise InvalidValueError(f"BufferConfig.max_retries must be an int >= 0, got {self.max_retries!r}")
        if not isinstance(self.buffer_enabled, bool):
            raise InvalidValueError(f"BufferConfig.buffer_enabled must be True or False, got {self.buffer_enabled!r}")

    @classmethod
    def from_env(cls) -> BufferConfig:
        """The settings from ``ML_DASH_FLUSH_INTERVAL``, ``ML_DASH_LOG_BATCH_SIZE``,
        ``ML_DASH_METRIC_BATCH_SIZE``, ``ML_DASH_TRACK_BATCH_SIZE``,
        ``ML_DASH_FILE_UPLOAD_WORKERS``, ``ML_DASH_BUFFER_ENABLED``, ``ML_DASH_MAX_RETRIES``,
        ``ML_DASH_RETRY_BASE_DELAY`` and ``ML_DASH_RETRY_MAX_DELAY``; the defaults for the
        others. A value that does not parse raises InvalidValueError naming the variable."""
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, var in _ENV.items():
            raw = os.environ.get(var)
            if raw is None or raw.strip() == "":
                continue
            text = raw.strip()
            try:
                if name == "buffer_enabled":
                    if text.lower() not in _TRUE + _FALSE:
                        raise ValueError(text)
                    values[name] = text.lower() in _TRUE
                elif kinds[name] in ("int", int):
                    values[name] = int(text)
                else:
                    values[name] = float(text)
            except ValueError:
                raise InvalidValueError(f"{var}={raw!r} is not a valid {name}") from None
        return cls(**values, given=frozenset(values))

    def setting(self, name: str) -> Any:
        """The value of setting ``name`` when it was given, else None (our default applies)."""
        return getattr(self, name) if name in self.given else None
