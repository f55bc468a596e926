"""Connections that cannot hold the server: read timeouts and caps on how many there are.

uvicorn waits forever for the headers of a request (its keep-alive timeout runs only
after a response), so connections that send half their headers and stop held the
server until it ran out of file descriptors. :class:`GuardedProtocol` is uvicorn's
httptools protocol with four guards, all set by ``ml_dash.limits.ConnectionLimits``:

- the request line and headers must arrive within ``header_timeout`` seconds of the
  connection (or of the first byte of a request on a kept-alive one);
- the body may not stall: no byte for ``body_timeout`` seconds while the route waits
  for more ends it (time the route itself takes is not counted);
- one client address may hold ``max_per_client`` connections; more are answered 503
  and closed at once;
- ``max_connections`` in all: a new connection over it closes the connection that has
  waited longest for a request's headers (idle or half-sent; a connection whose
  request is being served is never closed), and is itself refused with 503 only when
  every connection is busy with a request.

A timeout is answered ``408`` ``timeout`` (``RequestTimeoutError``) and a refusal
``503`` ``unavailable`` (``UnavailableError``), as ``{"code", "message"}`` with the
status ``errors.HTTP_STATUS`` gives, then the connection closes; refusals are logged at
most once a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .. import wire
from ..errors import HTTP_STATUS, MLDashError, RequestTimeoutError, UnavailableError
from ..limits import ConnectionLimits

log = logging.getLogger("ml_dash.server")


def _raw_answer(error: MLDashError) -> bytes:
    """The bytes of an HTTP/1.1 answer to ``error`` (its status, ``{"code", "message"}``),
    closing the connection: written straight to the socket, outside any route."""
    status = HTTP_STATUS[error.code]
    body = wire.encode(wire.ErrorBody(error.code, error.message))
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


class ConnectionGuard:
    """The open connections of one server: counts per client address, and which ones
    wait for headers (oldest first), the ones a full server closes first."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.total = limits.total
        self.open = 0
        self.by_client: dict[str, int] = {}
        self.waiting: OrderedDict[GuardedProtocol, float] = OrderedDict()
        self.refused = 0
        self._logged_at = 0.0

    def admit(self, conn: GuardedProtocol) -> str | None:
        """Count ``conn`` in; the reason to refuse it (None: it may stay)."""
        key = conn.client_key
        per_client = self.limits.max_per_client
        if per_client and self.by_client.get(key, 0) >= per_client:
            return f"too many connections from {key or 'this client'} (the limit is {per_client})"
        if self.open >= self.total:
            oldest = next((c for c in self.waiting if not c.serving), None)
            if oldest is None:
                return f"the server holds {self.open} connections, all busy (the limit is {self.total})"
            self.note_refusal("closed the connection that waited longest for headers: the server is full")
            oldest.close_with(RequestTimeoutError("the server is full and this connection sent no request"))
            self.release(oldest)
        self.open += 1
        self.by_client[key] = self.by_client.get(key, 0) + 1
        conn.counted = True
        return None

    def release(self, conn: GuardedProtocol) -> None:
        """Count ``conn`` out (once)."""
        self.waiting.pop(conn, None)
        if not conn.counted:
            return
        conn.counted = False
        self.open -= 1
        left = self.by_client.get(conn.client_key, 1) - 1
        if left > 0:
            self.by_client[conn.client_key] = left
        else:
            self.by_client.pop(conn.client_key, None)

    def note_refusal(self, what: str) -> None:
        """Log refusals, at most once a second (a flood must not flood the log)."""
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at >= 1.0:
            self._logged_at = now
            log.warning("connection guard: %s (%d refused or closed so far)", what, self.refused)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guards of the module docstring.

    ``configured(guard)`` gives the class to pass as ``uvicorn.Config(http=...)``.
    """

    guard: ClassVar[ConnectionGuard]

    @classmethod
    def configured(cls, guard: ConnectionGuard) -> type[GuardedProtocol]:
        """A subclass bound to ``guard`` (one per server)."""
        return type("GuardedProtocol", (cls,), {"guard": guard})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counted = False
        self.client_key = ""
        self._timer: asyncio.TimerHandle | None = None
        self._in_headers = False

    # -- the connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.client_key = self.client[0] if self.client else ""
        refusal = self.guard.admit(self)
        if refusal is not None:
            self.guard.note_refusal(refusal)
            self.close_with(UnavailableError(refusal + "; try again later"))
            return
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.guard.release(self)
        super().connection_lost(exc)

    def close_with(self, error: MLDashError, *, stalled: bool = False) -> None:
        """Answer ``error`` (``_raw_answer``) and close. ``stalled``: the request being
        served is the one given up on (its body stalled): the answer is its answer (the
        route's own, if it comes, goes nowhere), unless the route has begun answering.
        Otherwise nothing is written while a response is under way: it would be read as
        the answer to the next request."""
        self._cancel_timer()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if stalled and cycle is not None and not cycle.response_started:
            cycle.disconnected = True  # the route reads a disconnect; its answer, if any, goes nowhere
            cycle.message_event.set()
        elif stalled or self.serving:
            self.transport.close()  # an answer is (or was) under way: another one would be read as the next
            return
        self.transport.write(_raw_answer(error))
        self.transport.close()

    @property
    def serving(self) -> bool:
        """A response to a request of this connection is still to be sent."""
        return self.cycle is not None and not self.cycle.response_complete

    # -- timers ------------------------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _await_headers(self) -> None:
        """From now, the headers of a request must arrive within the header timeout."""
        self._in_headers = True
        self.guard.waiting[self] = time.monotonic()
        if self._timer is None:
            self._timer = self.loop.call_later(self.guard.limits.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._timer = None
        self.guard.note_refusal("closed a connection whose request headers did not arrive in time")
        self.close_with(RequestTimeoutError(
            f"the request headers did not arrive within {self.guard.limits.header_timeout:g} s"))

    def _arm_body_timer(self) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(self.guard.limits.body_timeout, self._body_stalled)

    def _body_stalled(self) -> None:
        self._timer = None
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self._arm_body_timer()  # the route has not asked for (more of) the body yet: not the client's fault
            return
        self.guard.note_refusal("closed a connection whose request body stalled")
        self.close_with(RequestTimeoutError(
            f"no byte of the request body arrived for {self.guard.limits.body_timeout:g} s"), stalled=True)

    # -- uvicorn's callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_headers:  # the first byte of a request on a kept-alive connection
            self._await_headers()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self.guard.waiting.pop(self, None)
        self._cancel_timer()
        super().on_headers_complete()
        self._arm_body_timer()  # until the message is complete (at once for a request without a body)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self._timer is not None:
            self._arm_body_timer()

    def on_message_complete(self) -> None:
        self._cancel_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timeout
        if not self.transport.is_closing():
            self.guard.waiting[self] = time.monotonic()  # idle: the first to go when the server is full
