"""How big and how deep one value, record or request may be.

The same limits hold on both sides: the SDK refuses a value over them when it is
logged (``ml_dash.values.normalize``, ``ml_dash.params``), and ``ml-dash serve``
refuses a request over them (``--max-depth``, ``--max-items``, ``--max-point-bytes``,
``--max-log-bytes``, ``--max-track-bytes``, ``--max-params-bytes``) before the store is
touched. Nesting and item counts are properties of a value, so they are refused as
``invalid_value`` (422); byte counts are sizes, refused as ``too_large`` (413).

Why these exist: JSON is compact and Python objects are not. ``[]`` is two bytes of
JSON and a 56-byte list once decoded, so a 60 MB body of empty lists became 3 GB of
server memory. The server therefore also estimates, from a few byte counts, what a
body will cost once decoded (:func:`decoded_cost`) and refuses it unread when that
is over :func:`decode_budget` (4x the body by default, at least ``DECODE_FLOOR``).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, fields

MiB = 1024 * 1024
# A body may always cost this much memory once decoded, whatever its size: small
# batches of small points cost 6-12x their JSON (a dict per point), and must pass.
DECODE_FLOOR = 32 * MiB


@dataclass(frozen=True)
class Limits:
    """The limits of one server (``ml-dash serve`` options) or of the SDK (the defaults).

    - ``max_depth``: lists and objects nested inside one value (a metric field, a param,
      log or experiment metadata, a track field): ``[[1]]`` is 2 levels;
    - ``max_items``: items in one list or object, and records in one append;
    - ``max_point_bytes`` / ``max_log_bytes`` / ``max_track_bytes``: one metric point,
      log record or track entry as JSON;
    - ``max_params_bytes``: the params one call sends, as JSON;
    - ``max_decode_ratio``: the server's budget for decoding a body, in times its size
      (at least ``DECODE_FLOOR``): see :func:`decode_budget`.
    """

    max_depth: int = 32
    max_items: int = 100_000
    max_point_bytes: int = 1 * MiB
    max_log_bytes: int = 1 * MiB
    max_track_bytes: int = 1 * MiB
    max_params_bytes: int = 8 * MiB
    max_decode_ratio: int = 4

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{field.name} must be a positive whole number, got {value!r}")


DEFAULT = Limits()


def decoded_cost(
    size: int, containers: int, commas: int, colons: int, strings: int, digits: int | None = None, text: int = 4
) -> int:
    """An upper estimate of the bytes of Python objects a JSON body of ``size`` bytes,
    with these counts of ``[``/``{``, ``,``, ``:``, strings (and digits), decodes to.

    Measured on CPython 3.11 with msgspec: a list costs 56+ bytes, a small dict 184,
    a float 24, an int 28 (0 for -5..256, which are shared), an item slot 8 (list) to
    ~40 (dict), a string 49 (73-76 when not ASCII) plus 1, 2 or 4 bytes per character.
    The estimate takes 120 per list or object, 48 per colon, 80 per string, ``text`` bytes per byte of
    the body for the characters, and per comma 48 (a number and its slot) or, given
    the ``digits``, 8 plus 12 per digit (``1e5``: 24 bytes for 2 digits). It
    over-counts (``[],``: 176 bytes, costs 64; a point ``{"v":1,"_ts":1.5},``: 426,
    costs 216; ``[1,2,...]``: 5x) and under-counts no shape we measured.
    """
    items = 48 * commas if digits is None else 8 * commas + 12 * digits
    return 120 * containers + items + 48 * colons + 80 * strings + text * size


def decode_budget(size: int, ratio: int = DEFAULT.max_decode_ratio) -> int:
    """What a body of ``size`` bytes may cost once decoded: ``ratio`` (4) times its size, at least ``DECODE_FLOOR``."""
    return max(ratio * size, DECODE_FLOOR)


def default_max_connections() -> int:
    """Half the process's open-file limit (the rest is for the store's files), 64 to 4,096."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(64, min(4096, soft // 2))


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection to ``ml-dash serve`` may cost (``ml_dash.server.connections``).

    - ``header_timeout``: seconds for the request line and headers to arrive;
    - ``body_timeout``: seconds the body may stall (no byte while the route waits);
    - ``max_connections``: open connections in all (0: :func:`default_max_connections`);
    - ``max_per_client``: open connections from one client address (0: no cap).
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 0
    max_per_client: int = 128

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        for name in ("max_connections", "max_per_client"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")

    @property
    def total(self) -> int:
        """The cap on open connections in all."""
        return self.max_connections or default_max_connections()
