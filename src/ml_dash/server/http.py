"""The HTTP edge: msgspec responses, error bodies, body limits and body reading.

Every refusal leaves the server as ``{"code": str, "message": str}`` with the status
``ml_dash.errors.HTTP_STATUS`` gives for the code, whatever raised it: our own
errors, FastAPI's parameter validation, Starlette's 404/405, or the size guard.
Stores raise only ``MLDashError`` (each translates its backend's failures at its own
edge), so this module maps codes and knows nothing of files or databases; any other
exception is a bug (500), answered like any error, so that the client's kept-alive
connection goes on serving it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote_to_bytes

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import HTTP_STATUS, BadRequestError, MLDashError, TooLargeError, UnauthorizedError
from ..limits import Limits
from ..stores.base import Store
from .auth import TokenStore
from .validate import Access

if TYPE_CHECKING:
    from .sessions import SessionStore  # which imports this module

log = logging.getLogger("ml_dash.server")

DEFAULT_MAX_BODY = 64 * 1024 * 1024
T = TypeVar("T")
_encode = msgspec.json.Encoder().encode
# Parameter errors that mean "a value of the right type, out of range" (422); every
# other validation error (missing, unparsable, wrong type) is a 400.
_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"})
OPEN_ACCESS = Access(None)
_SERVER_SIDE = {
    "storage_error": "the store cannot read or write now; retry later (details are in the server log)",
    "unavailable": "the server has no room for this request now; retry later",
    "error": "the server failed on this request (a bug; details are in the server log)",
}


class MsgspecResponse(JSONResponse):
    """A JSON response encoded by msgspec; bytes passed in are sent as they are."""

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else _encode(content)


def error_response(
    code: str, message: str, status: int | None = None, headers: dict[str, str] | None = None
) -> Response:
    """``{"code", "message"}`` with the status of ``code`` (or ``status`` when given)."""
    status = status or HTTP_STATUS.get(code, 500)
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return MsgspecResponse({"code": code, "message": message}, status_code=status, headers=headers)


def _on_mldash_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MLDashError)
    if HTTP_STATUS.get(exc.code, 500) >= 500:
        # The details (paths on the server's disk) go to the log, not to the client.
        log.error("%s: %s", exc.code, exc.message)
        return error_response(exc.code, _SERVER_SIDE.get(exc.code, _SERVER_SIDE["error"]))
    return error_response(exc.code, exc.message)


def _on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    out_of_range = True
    for error in exc.errors():
        where = [str(part) for part in error.get("loc", ()) if part not in ("query", "header", "body")]
        field = ".".join(where) or "request"
        kind = error.get("type", "")
        out_of_range = out_of_range and kind in _RANGE_ERRORS
        if kind == "missing":
            problems.append(f"query parameter {field!r} is required")
        else:
            problems.append(f"parameter {field!r}: {error.get('msg', 'invalid')}")
    code = "invalid_value" if problems and out_of_range else "bad_request"
    return error_response(code, "; ".join(problems) or "invalid request")


def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 413: "too_large"}.get(exc.status_code)
    if code is None:
        code = "error" if exc.status_code >= 500 else "bad_request"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first route of the path; GET and POST of one path are two routes.
        operations = request.app.openapi()["paths"].get(request.url.path, {})
        headers["Allow"] = ", ".join(sorted(method.upper() for method in operations))
    return error_response(code, str(exc.detail), status=exc.status_code, headers=headers)


def _on_recursion_error(request: Request, _exc: Exception) -> Response:
    depth = limits_of(request).max_depth
    return error_response("invalid_value", f"the body nests lists and objects too deeply (the limit is {depth} levels)")


def _on_bug(_request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback and re-raises after this answer is sent.
    return error_response("error", _SERVER_SIDE["error"])


def install_error_handlers(app: FastAPI) -> None:
    """Make every error leave ``app`` as ``{"code", "message"}``."""
    app.add_exception_handler(MLDashError, _on_mldash_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RecursionError, _on_recursion_error)
    app.add_exception_handler(Exception, _on_bug)


def host_of(header: str) -> str:
    """``"[::1]:8000"`` -> ``"::1"``, ``"localhost:8000"`` -> ``"localhost"``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def query_problem(query: bytes) -> str | None:
    """What is wrong with a query string whose names or values are not UTF-8 once
    percent-decoded (None when nothing is). Starlette would decode them with U+FFFD in
    place of the bad bytes, so two different byte strings would name one folder."""
    if query.isascii() and b"%" not in query:
        return None
    for pair in query.split(b"&"):
        for part in pair.split(b"=", 1):
            raw = unquote_to_bytes(part.replace(b"+", b" "))
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                name = unquote_to_bytes(pair.split(b"=", 1)[0].replace(b"+", b" ")).decode("utf-8", "replace")
                return (f"query parameter {name[:80]!r} is not valid UTF-8 once percent-decoded "
                        f"(byte 0x{raw[exc.start]:02x} at {exc.start})")
    return None


class RequestGuard:
    """ASGI middleware: refuses bodies over ``max_body``, query strings that are not
    UTF-8, (optionally) foreign Host headers, and answers a bug as a 500 JSON error.

    A declared ``Content-Length`` over the limit is answered 413 before any of the body
    is read. A body without one (chunked) is counted as the route reads it; the chunk
    that crosses the limit raises TooLargeError, so at most ``max_body`` plus one chunk
    is ever held. ``allowed_hosts`` (hosts without port) protects a server without
    auth on loopback from web pages that rebind a DNS name to 127.0.0.1. An exception
    that no handler took is logged and answered 500 here, inside Starlette's error
    middleware, which would answer it too but then raise it on to uvicorn, which
    closes the connection the client expects to keep.
    """

    def __init__(self, app: ASGIApp, max_body: int, allowed_hosts: Collection[str] | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts) if allowed_hosts else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(headers, scope.get("query_string", b""))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        seen = 0
        limit = self.max_body
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLargeError(f"the request body is over the limit of {limit} bytes")
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except ClientDisconnect:
            return  # nobody to answer
        except Exception:
            if started:
                raise  # half an answer is out: only closing the connection can tell the client
            log.exception("error on %s %s", scope.get("method"), scope.get("path"))
            await error_response("error", _SERVER_SIDE["error"])(scope, receive, send)

    def _refusal(self, headers: Headers, query: bytes) -> Response | None:
        if self.allowed_hosts is not None and host_of(headers.get("host", "")) not in self.allowed_hosts:
            return error_response(
                "bad_request", "this server answers only requests addressed to localhost (start it with --auth)"
            )
        problem = query_problem(query)
        if problem is not None:
            return error_response("bad_request", problem)
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return error_response("bad_request", f"Content-Length {declared[:40]!r} is not a number")
            if size > self.max_body:
                return error_response("too_large", f"the request body ({size} bytes) is over the limit of "
                                      f"{self.max_body} bytes")
        return None


async def read_json_body(request: Request) -> bytearray:
    """The raw body of a JSON request (size-limited by :class:`RequestGuard`).

    Requiring ``application/json`` also makes browsers ask before a cross-site POST
    (a CORS preflight this server never grants), so a web page cannot write here. The
    body is read into one buffer of its declared length: it is held once, never as
    pieces plus their join.
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise BadRequestError(f"the body must be JSON sent as Content-Type: application/json, not {media or 'none'!r}")
    declared = request.headers.get("content-length", "")
    body = bytearray(int(declared) if declared.isdigit() else 0)  # RequestGuard has checked it against the limit
    filled = 0
    async for chunk in request.stream():
        end = filled + len(chunk)
        if end <= len(body):
            body[filled:end] = chunk
        else:
            body[filled:] = chunk  # no Content-Length (chunked): grows as it comes
        filled = end
    del body[filled:]
    return body


def limits_of(request: Request) -> Limits:
    """The limits the app enforces (``create_app(limits=...)``)."""
    limits: Limits = request.app.state.limits
    return limits


def encoded(call: Callable[..., Any], *args: Any) -> bytes:
    """``call(*args)`` encoded as JSON (bytes it returns are taken as already encoded)."""
    result = call(*args)
    return result if isinstance(result, bytes) else _encode(result)


async def answer(call: Callable[..., Any], *args: Any) -> Response:
    """Run ``call(*args)`` (store work: blocking) in a worker thread; its result as JSON."""
    return MsgspecResponse(await run_in_threadpool(encoded, call, *args))


def store_of(request: Request) -> Store:
    """The store the app serves."""
    store: Store = request.app.state.store
    return store


async def caller(request: Request) -> Access:
    """Who sends this request (a FastAPI dependency; it runs before any parameter is used).

    With auth on: the owner of the ``Authorization: Bearer <token>`` header, or, when
    the request has no Authorization header, of the session its cookie names
    (``server.sessions``; the session's token is verified again). UnauthorizedError
    without either, or with a token the TokenStore does not know (or has revoked).
    """
    tokens: TokenStore | None = request.app.state.tokens
    if tokens is None:
        return OPEN_ACCESS
    header = request.headers.get("authorization")
    if header is None:
        sessions: SessionStore | None = request.app.state.sessions
        session_id = request.cookies.get(sessions.cookie) if sessions is not None else None
        if sessions is None or not session_id:
            raise UnauthorizedError("this server requires a token: send 'Authorization: Bearer <token>' "
                                    "(the dashboard logs in with POST /api/v1/session)")
        owner = await run_in_threadpool(sessions.owner, session_id)
        if owner is None:
            raise UnauthorizedError("the session has ended (logged out, idle too long, or its token was revoked): "
                                    "log in again")
        return Access(owner)
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError("this server requires a token: send 'Authorization: Bearer <token>'")
    owner = await run_in_threadpool(tokens.verify, token)  # a token store may be a database
    if owner is None:
        raise UnauthorizedError("the token is unknown or has been revoked")
    return Access(owner)
