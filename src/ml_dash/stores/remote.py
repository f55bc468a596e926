"""RemoteStore: the Store protocol over the HTTP API of ``ml-dash serve``.

Writes never wait for the network. Each one becomes a request file in the spool
(``<dash_root>/.spool/<host>/<session>/``) and a sender thread delivers the files in
order over one kept-alive connection: acknowledged files are deleted; connection
errors, 5xx, 408 and 429 are retried with backoff (honouring ``Retry-After``); any
other 4xx sets the file aside in ``rejected/`` with a warning and the rest goes on.
Appends carry batch ids, so a resent batch is never stored twice.

Reads go straight to the server after the spool has drained (read-your-writes).
"""

from __future__ import annotations

import os
import re
import threading
import time
import warnings
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from ..errors import ERRORS_BY_CODE, MLDashError, StorageError
from ..records import ExperimentInfo, FirstIndex, LogPage, LogQuery, LogRecord, MetricPage, MetricStats, ParamsDoc
from ..spool import Spool, SpooledRequest
from ..wire import attach_nonfinite, info_to_body, restore_body

_encode = msgspec.json.encode
_decode = msgspec.json.decode
_CAMEL = {"started_at": "startedAt", "ended_at": "endedAt", "created_at": "createdAt"}
MAX_BACKOFF = 5.0


def host_key(url: str) -> str:
    """A folder name for a server address: ``http://127.0.0.1:8000`` -> ``127.0.0.1_8000``."""
    parts = urlsplit(url)
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{parts.hostname or 'server'}_{parts.port or ''}".rstrip("_"))


def error_from_response(response: httpx.Response) -> MLDashError:
    """The exception a server error answer stands for (same class as on the server)."""
    try:
        body = _decode(response.content)
        code, message = body.get("code", "error"), body.get("message", response.text)
    except (msgspec.DecodeError, AttributeError):
        code, message = "error", response.text[:500]
    cls = ERRORS_BY_CODE.get(code, MLDashError)
    if response.status_code >= 500 or response.status_code in (408, 429):
        cls = StorageError
    return cls(f"server answered {response.status_code} {code}: {message}")


def _json_body(value: dict[str, Any], member: str) -> bytes:
    body = _encode(value)
    if b"null" in body:
        before = len(value)
        attach_nonfinite(value, member)
        if len(value) != before:
            body = _encode(value)
    return body


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, min(float(response.headers.get("retry-after", "0")), 60.0))
    except ValueError:
        return 0.0


def send_one(client: httpx.Client, req: SpooledRequest) -> tuple[str, float, str]:
    """Send one spooled request: ("done" | "retry" | "reject", delay, reason)."""
    try:
        response = client.request(
            req.method, req.path, params=req.params, content=req.body, headers={"content-type": "application/json"}
        )
    except httpx.HTTPError as exc:
        return "retry", 0.0, f"{type(exc).__name__}: {exc}"
    status = response.status_code
    if status < 300:
        return "done", 0.0, ""
    reason = str(error_from_response(response))
    if status >= 500 or status in (408, 429):
        return "retry", _retry_after(response), reason
    return "reject", 0.0, reason


class RemoteStore:
    """The Store protocol against an ML-Dash server at ``url``."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        spool_root: str | os.PathLike[str] = ".dash/.spool",
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        wait_for_ack: bool = False,
    ) -> None:
        """``wait_for_ack=False`` (the SDK's mode) spools writes and returns at once;
        ``True`` sends each write now and returns the server's answer (or raises)."""
        self.url = url.rstrip("/")
        self.wait_for_ack = wait_for_ack
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_keepalive_connections=4, keepalive_expiry=60)
        timeouts = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self._send_client = httpx.Client(base_url=self.url, headers=headers, timeout=timeouts, limits=limits,
                                         transport=transport)
        self._read_client = httpx.Client(base_url=self.url, headers=headers, timeout=timeouts, limits=limits,
                                         transport=transport)
        session = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{os.urandom(3).hex()}"
        self.spool = Spool(os.path.join(os.fspath(spool_root), host_key(self.url), session), self.url)
        self.read_wait = timeout
        self.rejected = 0
        self.last_error: str | None = None
        self._infos: dict[str, ExperimentInfo] = {}
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._failing = False

    # -- the sender --------------------------------------------------------------------

    def _write(self, method: str, path: str, params: dict[str, Any], body: bytes) -> Any:
        """Spool the request (answer None), or with ``wait_for_ack`` send it and answer."""
        if not self.wait_for_ack:
            self._enqueue(method, path, params, body)
            return None
        try:
            response = self._read_client.request(
                method, path, params=params, content=body, headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise StorageError(f"cannot reach {self.url}: {exc}") from exc
        if response.status_code >= 300:
            raise error_from_response(response)
        return _decode(response.content)

    def _enqueue(self, method: str, path: str, params: dict[str, Any], body: bytes) -> None:
        self.spool.put(method, path, params, body)
        if self._thread is None:
            self._thread = threading.Thread(target=self._send_loop, name=f"ml-dash-sender:{self.url}", daemon=True)
            self._thread.start()
        self._wake.set()

    def _send_loop(self) -> None:
        backoff = 0.0
        while not self._stopped.is_set():
            try:
                req = self.spool.peek()
            except OSError as exc:
                self.last_error = f"cannot read the spool: {exc}"
                self._stopped.wait(1.0)
                continue
            if req is None:
                with self._idle:
                    self._idle.notify_all()
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            outcome, delay, reason = send_one(self._send_client, req)
            if outcome == "done":
                self.spool.done(req.name)
                if self._failing:
                    self._failing = False
                    warnings.warn(f"ml-dash: {self.url} answers again; sending the spool", RuntimeWarning,
                                  stacklevel=1)
                backoff = 0.0
            elif outcome == "reject":
                self.rejected += 1
                self.last_error = reason
                where = self.spool.reject(req.name, reason)
                warnings.warn(f"ml-dash: the server refused a request for good ({reason}); set aside in {where}",
                              RuntimeWarning, stacklevel=1)
            else:
                self.last_error = reason
                if not self._failing:
                    self._failing = True
                    warnings.warn(
                        f"ml-dash: cannot deliver to {self.url} ({reason}); keeping {len(self.spool)} batches in "
                        f"{self.spool.folder} and retrying",
                        RuntimeWarning,
                        stacklevel=1,
                    )
                backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF)
                self._stopped.wait(max(delay, backoff))

    def drain(self, timeout: float) -> bool:
        """Wait until everything spooled so far was delivered (True) or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while len(self.spool):
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._wake.set()
                self._idle.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 30.0) -> int:
        """Deliver what is spooled within ``timeout``; returns how many requests are left."""
        self.drain(timeout)
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)
        left = len(self.spool)
        if not left:
            self.spool.remove_if_empty()
        self._send_client.close()
        self._read_client.close()
        return left

    # -- reads -------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        self.drain(self.read_wait)
        try:
            response = self._read_client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise StorageError(f"cannot reach {self.url}: {exc}") from exc
        if response.status_code >= 300:
            raise error_from_response(response)
        return _decode(response.content)

    # -- the Store protocol ------------------------------------------------------------

    def open_experiment(self, info: ExperimentInfo) -> ExperimentInfo:
        answer = self._write("POST", "/api/v1/experiment/open", {}, _encode(info_to_body(info)))
        if answer is not None:
            info = _info_from_json(answer)
        self._infos[info.prefix] = info
        return info

    def update_experiment(self, prefix: str, **changes: Any) -> ExperimentInfo:
        body = {_CAMEL.get(k, k): (list(v) if k == "tags" else v) for k, v in changes.items()}
        if "metadata" in body:
            attach_nonfinite(body, "metadata")
        answer = self._write("POST", "/api/v1/experiment/update", {"prefix": prefix}, _encode(body))
        if answer is not None:
            return _info_from_json(answer)
        info = self._infos.get(prefix)
        if info is None:
            from ..names import parse_prefix

            parsed = parse_prefix(prefix)
            info = ExperimentInfo(prefix, parsed.owner, parsed.project, parsed.name, parsed.folders)
        info = info.with_changes(**changes)
        self._infos[prefix] = info
        return info

    def get_experiment(self, prefix: str) -> ExperimentInfo | None:
        from ..errors import NotFoundError

        try:
            body = self._get("/api/v1/experiment", {"prefix": prefix})
        except NotFoundError:
            return None
        return _info_from_json(body)

    def list_experiments(self, owner: str | None = None, project: str | None = None) -> list[ExperimentInfo]:
        params = {k: v for k, v in (("owner", owner), ("project", project)) if v}
        return [_info_from_json(b) for b in self._get("/api/v1/experiments", params)["experiments"]]

    def set_params(self, prefix: str, flat: dict[str, Any]) -> ParamsDoc:
        answer = self._write("POST", "/api/v1/params", {"prefix": prefix}, _json_body({"params": flat}, "params"))
        if answer is not None:
            return _params_from_json(answer)
        return ParamsDoc(data=dict(flat))

    def get_params(self, prefix: str) -> ParamsDoc:
        return _params_from_json(self._get("/api/v1/params", {"prefix": prefix}))

    def append_metrics(self, prefix: str, name: str, points: list[dict[str, Any]], batch_id: str | None = None) -> int:
        body = _json_body({"batchId": batch_id or _fresh_id(), "points": list(points)}, "points")
        answer = self._write("POST", "/api/v1/metrics/append", {"prefix": prefix, "name": name}, body)
        return FirstIndex(answer["firstIndex"], bool(answer.get("duplicate"))) if answer is not None else -1

    def read_metrics(self, prefix: str, name: str, start_index: int = 0, limit: int = 1000) -> MetricPage:
        body = self._get("/api/v1/metrics/read",
                         {"prefix": prefix, "name": name, "start_index": start_index, "limit": limit})
        return restore_body(body, "data")  # type: ignore[return-value]

    def metric_stats(self, prefix: str, name: str) -> MetricStats:
        return self._get("/api/v1/metrics/stats", {"prefix": prefix, "name": name})

    def list_metrics(self, prefix: str) -> list[MetricStats]:
        return self._get("/api/v1/metrics/list", {"prefix": prefix})["metrics"]

    def append_logs(self, prefix: str, records: list[LogRecord], batch_id: str | None = None) -> int:
        items = [{"ts": r.ts, "level": r.level, "message": r.message, "metadata": r.metadata} for r in records]
        body = _json_body({"batchId": batch_id or _fresh_id(), "records": items}, "records")
        answer = self._write("POST", "/api/v1/logs/append", {"prefix": prefix}, body)
        return FirstIndex(answer["firstSequence"], bool(answer.get("duplicate"))) if answer is not None else -1

    def query_logs(self, prefix: str, query: LogQuery) -> LogPage:
        params: dict[str, Any] = {"prefix": prefix}
        for key in ("start_time", "end_time", "search", "offset", "limit"):
            if key in query:
                params[key] = query[key]
        if query.get("descending"):
            params["descending"] = "true"
        if query.get("levels"):
            params["level"] = list(query["levels"])
        return restore_body(self._get("/api/v1/logs", params), "logs")  # type: ignore[return-value]

    def append_tracks(
        self, prefix: str, topic: str, entries: list[dict[str, Any]], batch_id: str | None = None
    ) -> int:
        body = _json_body({"batchId": batch_id or _fresh_id(), "entries": list(entries)}, "entries")
        answer = self._write("POST", "/api/v1/tracks/append", {"prefix": prefix, "topic": topic}, body)
        return int(answer["count"]) if answer is not None else len(entries)

    def read_tracks(
        self,
        prefix: str,
        topic: str,
        start_timestamp: float | None = None,
        end_timestamp: float | None = None,
        columns: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"prefix": prefix, "topic": topic}
        if start_timestamp is not None:
            params["start_timestamp"] = start_timestamp
        if end_timestamp is not None:
            params["end_timestamp"] = end_timestamp
        if columns is not None:
            params["columns"] = ",".join(columns)
        return restore_body(self._get("/api/v1/tracks/read", params), "entries")["entries"]

    def list_tracks(self, prefix: str) -> list[dict[str, Any]]:
        return self._get("/api/v1/tracks/list", {"prefix": prefix})["tracks"]

    def sync(self, prefix: str) -> None:
        if not self.drain(self.read_wait):
            raise StorageError(f"{len(self.spool)} requests are still waiting in {self.spool.folder}")


def _params_from_json(body: dict[str, Any]) -> ParamsDoc:
    body = restore_body(body, "data")
    return ParamsDoc(data=body["data"], version=body.get("version", 0), created_at=body.get("createdAt"),
                     updated_at=body.get("updatedAt"))


def _fresh_id() -> str:
    from ..writer import new_batch_id

    return new_batch_id()


def _info_from_json(body: dict[str, Any]) -> ExperimentInfo:
    if body.get("nonFinite") and isinstance(body.get("metadata"), dict):
        restore_body(body, "metadata")
    return ExperimentInfo(
        prefix=body["prefix"],
        owner=body.get("owner") or body["prefix"].split("/")[0],
        project=body.get("project") or body["prefix"].split("/")[1],
        name=body.get("name") or body["prefix"].rsplit("/", 1)[-1],
        folders=tuple(body.get("folders") or ()),
        description=body.get("description"),
        tags=tuple(body.get("tags") or ()),
        metadata=body.get("metadata") or {},
        status=body.get("status") or "RUNNING",
        created_at=body.get("createdAt") or 0.0,
        started_at=body.get("startedAt"),
        ended_at=body.get("endedAt"),
        format_version=body.get("formatVersion") or 1,
    )


def sync_spools(spool_root: str, api_key: str | None = None, url: str | None = None,
                timeout: float = 30.0) -> tuple[int, int, int]:
    """Send what past runs left in ``spool_root``: returns (sent, rejected, left)."""
    sent = rejected = left = 0
    if not os.path.isdir(spool_root):
        return 0, 0, 0
    for host in sorted(os.listdir(spool_root)):
        host_dir = os.path.join(spool_root, host)
        if not os.path.isdir(host_dir):
            continue
        for session in sorted(os.listdir(host_dir)):
            spool = Spool(os.path.join(host_dir, session))
            if not spool.adopt_existing():
                continue
            first = spool.peek()
            target = url or (first.url if first else None)
            if not target:
                left += len(spool)
                continue
            headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
            with httpx.Client(base_url=target, headers=headers, timeout=timeout) as client:
                deadline = time.monotonic() + timeout
                while (req := spool.peek()) is not None:
                    outcome, delay, reason = send_one(client, req)
                    if outcome == "done":
                        spool.done(req.name)
                        sent += 1
                    elif outcome == "reject":
                        spool.reject(req.name, reason)
                        rejected += 1
                    elif time.monotonic() + delay < deadline:
                        time.sleep(max(delay, 0.5))
                    else:
                        break
            left += len(spool)
            if not len(spool):
                spool.remove_if_empty()
    return sent, rejected, left
