"""One exception tree for everything ML-Dash raises on purpose.

Each class carries a stable ``code``. Stores raise only these: each one turns its
backend's own failures (``OSError``, database and HTTP errors) into them at its edge,
chained with ``raise ... from``. The server answers an error with the status
``HTTP_STATUS`` gives for its code and a ``{"code", "message"}`` body
(``ml_dash.server.http``); ``RemoteStore`` raises the class ``ERRORS_BY_CODE`` names
for that code again, so a caller sees the same exception in every mode. The answers a
retry may cure (5xx, 408 ``timeout``, 429) are the exception: the client raises its
``ServerUnavailableError`` (a StorageError) for them, and its outbox tries again.
"""

from __future__ import annotations


class MLDashError(Exception):
    """Base of every error ML-Dash raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidNameError(MLDashError, ValueError):
    """A prefix, metric, topic or folder name that cannot be used as given."""

    code = "invalid_name"


class InvalidValueError(MLDashError, ValueError):
    """A value (metric field, param, metadata) that cannot be stored."""

    code = "invalid_value"


class NotStartedError(MLDashError, RuntimeError):
    """The experiment was used before ``exp.run`` started it (or after it closed)."""

    code = "not_started"


class NotFoundError(MLDashError, LookupError):
    """The experiment, stream or topic asked for does not exist."""

    code = "not_found"


class StorageError(MLDashError, OSError):
    """The store could not read or write (disk full, read-only folder, ...)."""

    code = "storage_error"


class UnauthorizedError(MLDashError):
    """No token, or a token the server does not know (or has revoked)."""

    code = "unauthorized"


class ForbiddenError(MLDashError):
    """The token is valid but does not own the experiment asked for."""

    code = "forbidden"


class BadRequestError(MLDashError, ValueError):
    """A request the server cannot parse (malformed JSON, wrong types)."""

    code = "bad_request"


class FilterSyntaxError(BadRequestError):
    """A filter expression (``ml_dash.query``) that cannot be parsed or names an unknown
    field. The message names what is wrong and the 1-based column, with a caret line;
    ``reason`` and ``column`` hold the same apart (``column`` is None when a client
    raises it again from a code and message)."""

    code = "invalid_filter"

    def __init__(self, message: str, column: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.reason = reason if reason is not None else message


class TooLargeError(MLDashError, ValueError):
    """A body or batch over the server's size limit."""

    code = "too_large"


class RequestTimeoutError(MLDashError):
    """The server gave up waiting for a request: its headers did not arrive within the
    header timeout, or its body stalled longer than the body timeout (``ml-dash serve
    --header-timeout/--body-timeout``). The connection is closed after the answer."""

    code = "timeout"


class UnavailableError(MLDashError):
    """The server refused a connection it has no room for (``--max-connections``,
    ``--max-connections-per-client``); trying again later may work. The connection is
    closed after the answer."""

    code = "unavailable"


class ExperimentBusyError(MLDashError):
    """Another process runs the experiment now (its claim is alive): open it with
    ``join=True`` to write beside it, or wait until it ends."""

    code = "busy"


class ExperimentExistsError(MLDashError):
    """The experiment exists already and ``resume="never"`` was asked for."""

    code = "exists"


ERRORS_BY_CODE: dict[str, type[MLDashError]] = {
    cls.code: cls
    for cls in (
        MLDashError,
        InvalidNameError,
        InvalidValueError,
        NotStartedError,
        NotFoundError,
        StorageError,
        UnauthorizedError,
        ForbiddenError,
        BadRequestError,
        FilterSyntaxError,
        TooLargeError,
        RequestTimeoutError,
        UnavailableError,
        ExperimentBusyError,
        ExperimentExistsError,
    )
}

HTTP_STATUS: dict[str, int] = {
    "bad_request": 400,
    "invalid_filter": 400,
    "invalid_name": 400,
    "invalid_value": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "not_started": 409,
    "busy": 409,
    "exists": 409,
    "timeout": 408,
    "too_large": 413,
    "storage_error": 503,
    "unavailable": 503,
    "error": 500,
}
