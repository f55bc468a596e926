"""RemoteStore: the Store protocol as a plain synchronous client of ``ml-dash serve``.

Every call sends its request now, over one kept-alive connection, and returns what the
server answered, decoded with the same ``ml_dash.wire`` struct the server encoded it
with; or it raises. Nothing is queued here: keeping data while the server is away is
the Writer's outbox (``ml_dash.outbox``), which replays its calls through this class.

Errors: a server that cannot be reached, a timeout, 5xx, 408 and 429 raise
:class:`ServerUnavailableError` (a StorageError: trying again later may work; its
``retry_after`` holds the server's ``Retry-After`` seconds, if it sent one); any other
refusal raises the class the server raised (``ml_dash.errors.ERRORS_BY_CODE``).
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec

from .. import wire
from ..errors import ERRORS_BY_CODE, InvalidValueError, MLDashError, NotFoundError, StorageError
from ..records import (
    AppendResult,
    Claim,
    ExperimentInfo,
    Holder,
    LogPage,
    LogQuery,
    LogRecord,
    MetricPage,
    MetricStats,
    ParamsDoc,
    StreamDescription,
)
from ..series import Series, series_from_answer
from ..summaries import MAX_PAGE, FieldStats, RunSummary
from .claims import check_holder, check_holder_ids, check_lease

T = TypeVar("T")
MAX_RETRY_AFTER = 3600.0
_JSON = {"content-type": "application/json"}


class ServerUnavailableError(StorageError):
    """The server could not be reached or asked to be tried again later.

    ``retry_after``: the seconds its ``Retry-After`` header asked for (None without one).
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def check_url(url: str) -> str:
    """``url`` without a trailing ``/``; InvalidValueError unless it is an http(s) address."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidValueError(
            f"dash_url {url!r} is not a server address: give http://host:port or https://host (the address "
            "`ml-dash serve` prints)"
        )
    return url.strip().rstrip("/")


def host_key(url: str) -> str:
    """A folder name for a server address: ``http://127.0.0.1:8000`` -> ``127.0.0.1_8000``."""
    parts = urlsplit(url)
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{parts.hostname or 'server'}_{parts.port or ''}".rstrip("_"))


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds from now (a number or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER) if seconds == seconds else None


def error_from_response(response: httpx.Response) -> MLDashError:
    """The exception a server's refusal stands for (the same class the server raised).

    5xx, 408 and 429 are :class:`ServerUnavailableError` whatever the body says.
    """
    try:
        body = msgspec.json.decode(response.content, type=wire.ErrorBody)
        code, message = body.code, body.message
    except msgspec.DecodeError:  # not our server, or a proxy's page
        code, message = "error", response.text[:500]
    text = f"server answered {response.status_code} {code}: {message}"
    if response.status_code >= 500 or response.status_code in (408, 429):
        return ServerUnavailableError(text, retry_after(response))
    return ERRORS_BY_CODE.get(code, MLDashError)(text)


class RemoteStore:
    """The Store protocol against an ML-Dash server at ``url``.

    ``api_key`` is sent as ``Authorization: Bearer``; each request may take ``timeout``
    seconds (connecting at most 5); ``transport`` replaces the network (tests drive
    the ASGI app in-process with it).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = check_url(url)
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_keepalive_connections=4, keepalive_expiry=60),
            transport=transport,
        )

    # -- one request -------------------------------------------------------------------

    def _request(self, method: str, path: str, params: dict[str, Any], body: bytes | None, kind: type[T]) -> T:
        """Send one request; the answer decoded into ``kind``, or the error it stands for."""
        try:
            response = self._client.request(method, path, params=params, content=body,
                                            headers=_JSON if body is not None else None)
        except httpx.HTTPError as exc:
            raise ServerUnavailableError(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise error_from_response(response)
        try:
            return wire.decode(response.content, kind)
        except MLDashError as exc:
            raise ServerUnavailableError(f"{self.url} answered {path} with something else than "
                                         f"{kind.__name__}: {exc}") from exc

    def _post(self, path: str, params: dict[str, Any], op: str, args: tuple[Any, ...], kind: type[T]) -> T:
        return self._request("POST", path, params, wire.encode_call(op, args), kind)

    def _get(self, path: str, params: dict[str, Any], kind: type[T]) -> T:
        return self._request("GET", path, params, None, kind)

    # -- the Store protocol ------------------------------------------------------------

    def open_experiment(self, info: ExperimentInfo) -> ExperimentInfo:
        return self._post("/api/v1/experiment/open", {}, "open_experiment", (info,), wire.ExperimentBody).record()

    def update_experiment(self, prefix: str, **changes: Any) -> ExperimentInfo:
        answer = self._post("/api/v1/experiment/update", {"prefix": prefix}, "update_experiment", (changes,),
                            wire.ExperimentBody)
        return answer.record()

    def get_experiment(self, prefix: str) -> ExperimentInfo | None:
        try:
            return self._get("/api/v1/experiment", {"prefix": prefix}, wire.ExperimentBody).record()
        except NotFoundError:
            return None

    def list_experiments(self, owner: str | None = None, project: str | None = None) -> list[ExperimentInfo]:
        params = {key: value for key, value in (("owner", owner), ("project", project)) if value is not None}
        return self._get("/api/v1/experiments", params, wire.ExperimentList).record()

    def claim_experiment(
        self,
        prefix: str,
        holder: Holder,
        lease_seconds: float,
        join: bool = False,
        new: bool = False,
        replaces: Sequence[str] = (),
    ) -> Claim:
        body = wire.encode(wire.ClaimBody.of(check_holder(holder), check_lease(lease_seconds), join, new,
                                             check_holder_ids(replaces)))
        return self._request("POST", "/api/v1/experiment/claim", {"prefix": prefix}, body, wire.ClaimOut).record()

    def release_experiment(self, prefix: str, holder_id: str) -> None:
        self._request("POST", "/api/v1/experiment/release", {"prefix": prefix},
                      wire.encode(wire.ReleaseBody(holder_id)), wire.ReleaseBody)

    def set_params(self, prefix: str, flat: dict[str, Any]) -> ParamsDoc:
        return self._post("/api/v1/params", {"prefix": prefix}, "set_params", (flat,), wire.ParamsOut).record()

    def get_params(self, prefix: str) -> ParamsDoc:
        return self._get("/api/v1/params", {"prefix": prefix}, wire.ParamsOut).record()

    def append_metrics(
        self, prefix: str, name: str, points: list[dict[str, Any]], batch_id: str | None = None
    ) -> AppendResult:
        answer = self._post("/api/v1/metrics/append", {"prefix": prefix, "name": name}, "append_metrics",
                            (points, batch_id), wire.MetricsAppended)
        return answer.record()

    def describe_stream(self, prefix: str, name: str, description: StreamDescription) -> None:
        self._post("/api/v1/metrics/describe", {"prefix": prefix, "name": name}, "describe_stream", (description,),
                   wire.StreamDescriptionBody)

    def read_metrics(self, prefix: str, name: str, start_index: int = 0, limit: int = 1000) -> MetricPage:
        params = {"prefix": prefix, "name": name, "start_index": start_index, "limit": limit}
        return self._get("/api/v1/metrics/read", params, wire.MetricPageOut).record()

    def metric_stats(self, prefix: str, name: str) -> MetricStats:
        return self._get("/api/v1/metrics/stats", {"prefix": prefix, "name": name}, MetricStats)

    def list_metrics(self, prefix: str) -> list[MetricStats]:
        return self._get("/api/v1/metrics/list", {"prefix": prefix}, wire.MetricList).record()

    def append_logs(self, prefix: str, records: list[LogRecord], batch_id: str | None = None) -> AppendResult:
        answer = self._post("/api/v1/logs/append", {"prefix": prefix}, "append_logs", (records, batch_id),
                            wire.LogsAppended)
        return answer.record()

    def query_logs(self, prefix: str, query: LogQuery) -> LogPage:
        params: dict[str, Any] = {"prefix": prefix}
        for key in ("start_time", "end_time", "search", "offset", "limit"):
            if key in query:
                params[key] = query[key]
        if query.get("descending"):
            params["descending"] = "true"
        if query.get("levels"):
            params["level"] = list(query["levels"])
        return self._get("/api/v1/logs", params, wire.LogPageOut).record()

    def append_tracks(
        self, prefix: str, topic: str, entries: list[dict[str, Any]], batch_id: str | None = None
    ) -> AppendResult:
        answer = self._post("/api/v1/tracks/append", {"prefix": prefix, "topic": topic}, "append_tracks",
                            (entries, batch_id), wire.TracksAppended)
        return answer.record()

    def read_tracks(
        self,
        prefix: str,
        topic: str,
        start_timestamp: float | None = None,
        end_timestamp: float | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
        after: float | None = None,
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"prefix": prefix, "topic": topic}
        if start_timestamp is not None:
            params["start_timestamp"] = start_timestamp
        if end_timestamp is not None:
            params["end_timestamp"] = end_timestamp
        if columns is not None:
            params["columns"] = ",".join(columns)
        if limit is not None:
            params["limit"] = limit
        if after is not None:
            params["after"] = after
        return self._get("/api/v1/tracks/read", params, wire.TrackEntries).record()

    def list_tracks(self, prefix: str) -> list[dict[str, Any]]:
        return self._get("/api/v1/tracks/list", {"prefix": prefix}, wire.TrackList).record()

    def metric_series(self, prefix: str, name: str, y: str, x: str = "index", x0: float | None = None,
                      x1: float | None = None, width: int = 1000) -> Series:
        params: dict[str, Any] = {"prefix": prefix, "name": name, "y": y, "x": x, "width": width}
        if x0 is not None:
            params["x0"] = x0
        if x1 is not None:
            params["x1"] = x1
        found = self._get("/api/v1/metrics/series", params, dict[str, Any])["series"][0]
        return series_from_answer(found)

    def metric_fields(self, prefix: str, name: str) -> dict[str, FieldStats]:
        found: dict[str, FieldStats] = self._get("/api/v1/metrics/fields", {"prefix": prefix, "name": name},
                                                 dict[str, Any])["fields"]
        return found

    def run_summaries(self, owner: str | None = None, project: str | None = None) -> list[RunSummary]:
        params: dict[str, Any] = {"limit": MAX_PAGE}
        if owner is not None:
            params["owner"] = owner
        if project is not None:
            params["project"] = project
        found: list[RunSummary] = []
        while True:
            page = self._get("/api/v1/runs", {**params, "offset": len(found)}, dict[str, Any])
            for run in page["runs"]:
                params_of, metrics = run.pop("params", {}), run.pop("metrics", {})
                info = wire.decode(wire.encode(run), wire.ExperimentBody).record()
                found.append(RunSummary(info, params_of, metrics))
            if not page["runs"] or len(found) >= page["total"]:
                return found

    def check_access(self, prefix: str, timeout: float) -> None:
        """Ask the server (``/health``, then the experiment with this token) within
        ``timeout`` seconds: UnauthorizedError / ForbiddenError for a token it refuses,
        NotFoundError when the address is not an ML-Dash server, ServerUnavailableError
        when it cannot be reached or answers 5xx."""
        try:
            response = self._client.get("/health", timeout=timeout)
        except httpx.HTTPError as exc:
            raise ServerUnavailableError(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise error_from_response(response)
        try:
            health = wire.decode(response.content, wire.Health) if response.status_code == 200 else None
        except MLDashError:
            health = None
        if health is None or health.status != "ok":
            raise NotFoundError(f"{self.url} is not an ML-Dash server: GET /health answered "
                                f"{response.status_code} {response.text[:120]!r}")
        try:
            response = self._client.get("/api/v1/experiment", params={"prefix": prefix}, timeout=timeout)
        except httpx.HTTPError as exc:
            raise ServerUnavailableError(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code not in (200, 404):
            raise error_from_response(response)

    def sync(self, prefix: str, *, refresh: bool = True) -> None:
        """Nothing to do: the server answered every write after its store had it."""

    def close(self) -> None:
        """Close the connection to the server."""
        self._client.close()
