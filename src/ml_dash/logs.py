"""``exp.log(...)`` and ``exp.logs``: leveled log lines with metadata."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from . import frames
from .clock import now
from .errors import InvalidValueError
from .records import LOG_LEVELS, LogPage, LogQuery, LogRecord
from .values import check_text, normalize
from .writer import HANDOFF_MASK

if TYPE_CHECKING:
    from .session import Session

_ALIASES = {"warning": "warn", "critical": "fatal", "err": "error"}
_TO_STDERR = ("error", "fatal")


def normalize_level(level: Any) -> str:
    """``"INFO"`` -> ``"info"``, ``"warning"`` -> ``"warn"``; anything else raises."""
    if isinstance(level, str):
        lowered = level.strip().lower()
        lowered = _ALIASES.get(lowered, lowered)
        if lowered in LOG_LEVELS:
            return lowered
    raise InvalidValueError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")


def echo_default() -> bool:
    """Console echo unless ``ML_DASH_ECHO`` is 0/false/no/off."""
    return os.environ.get("ML_DASH_ECHO", "1").strip().lower() not in ("0", "false", "no", "off")


def echo_line(level: str, message: str, metadata: dict[str, Any] | None) -> None:
    """Print ``[LEVEL] message`` plus `` [k=v, k2=v2]`` when there is metadata, as the
    public SDK does: error and fatal to ``sys.stderr``, the others to ``sys.stdout``."""
    suffix = " [" + ", ".join(f"{k}={v}" for k, v in metadata.items()) + "]" if metadata else ""
    stream = sys.stderr if level in _TO_STDERR else sys.stdout
    print(f"[{level.upper()}] {message}{suffix}", file=stream)


class Logs:
    """``exp.logs``: shortcuts per level and reading back."""

    def __init__(self, session: Session, echo: bool) -> None:
        self._session = session
        self.echo = echo

    def write(self, message: Any, level: Any = "info", metadata: dict[str, Any] | None = None,
              **extra: Any) -> None:
        """Queue one log line (``logs/logs.jsonl``); ``extra`` keywords merge into
        ``metadata``. With echo on, print it as
        ``[LEVEL] message [k=v, ...]``: debug, info and warn to stdout, error and fatal
        to stderr (the streams ``sys`` holds at the time of the call)."""
        self._session.require_running("log")
        channel = self._session.channel("logs")
        lvl = normalize_level(level)
        text = check_text(message if isinstance(message, str) else str(message), "message")
        meta = None
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidValueError(f"log metadata must be a dict, got {type(metadata).__name__}")
        if extra:
            metadata = {**(metadata or {}), **extra}
        if metadata is not None:
            meta = normalize(metadata, "metadata")
        queue = channel.queue
        queue.append(LogRecord(now(), lvl, text, meta))
        if self._session.synchronous:
            self._session.hand_over(channel)
        elif not len(queue) & HANDOFF_MASK:
            self._session.poke(queue)
        if self.echo:
            echo_line(lvl, text, meta)

    def debug(self, message: Any, **metadata: Any) -> None:
        self.write(message, "debug", metadata or None)

    def info(self, message: Any, **metadata: Any) -> None:
        self.write(message, "info", metadata or None)

    def warn(self, message: Any, **metadata: Any) -> None:
        self.write(message, "warn", metadata or None)

    warning = warn

    def error(self, message: Any, **metadata: Any) -> None:
        self.write(message, "error", metadata or None)

    def fatal(self, message: Any, **metadata: Any) -> None:
        self.write(message, "fatal", metadata or None)

    def read(
        self,
        level: str | list[str] | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
        descending: bool = False,
    ) -> LogPage:
        """Log lines matching every filter given, in time order (or newest first).

        ``level`` is one level or a list; ``start_time``/``end_time`` are seconds
        (inclusive); ``search`` matches message text case-insensitively. Returns
        ``{"logs": [...], "total", "offset", "limit", "hasMore"}``.
        """
        session = self._session
        session.flush(session.channel("logs"))
        query = log_query(level, start_time, end_time, search, limit, offset, descending)
        return session.reader.query_logs(session.prefix, query)

    query = read

    def to_pandas(self) -> Any:
        """Every log line so far as a DataFrame: ``index`` (sequence number), ``time``,
        ``level``, ``message``, ``metadata``. Needs ``ml-dash[pandas]``."""
        session = self._session
        session.flush(session.channel("logs"))
        return frames.to_pandas(frames.log_columns(session.reader, session.prefix))

    def to_arrow(self) -> Any:
        """Every log line so far as a ``pyarrow.Table``. Needs ``ml-dash[arrow]``."""
        session = self._session
        session.flush(session.channel("logs"))
        return frames.to_arrow(frames.log_columns(session.reader, session.prefix))


def log_query(
    level: str | list[str] | None = None,
    start_time: float | None = None,
    end_time: float | None = None,
    search: str | None = None,
    limit: int = 100,
    offset: int = 0,
    descending: bool = False,
) -> LogQuery:
    """The store query for ``read``'s arguments (levels normalised; InvalidValueError for an unknown one)."""
    query = LogQuery(offset=int(offset), limit=int(limit), descending=bool(descending))
    if level is not None:
        levels = [level] if isinstance(level, str) else list(level)
        query["levels"] = [normalize_level(lv) for lv in levels]
    if start_time is not None:
        query["start_time"] = float(start_time)
    if end_time is not None:
        query["end_time"] = float(end_time)
    if search:
        query["search"] = str(search)
    return query
