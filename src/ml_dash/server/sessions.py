"""Browser sessions: a token given once, then a cookie that names a session held by the server.

``POST /api/v1/session`` with ``{"token": "mld_..."}`` verifies the token and answers
with the cookie ``ml_dash_session`` (``HttpOnly; SameSite=Strict; Path=/``, and
``Secure`` when the request came over https). The cookie holds a random session id
(256 bits), never the token; the server keeps the id's SHA-256, mapped to the token, in
this process's memory. Every request that carries the cookie verifies the token again
with the token store, so revoking a token ends its sessions at once.
``DELETE /api/v1/session`` forgets the session and clears the cookie;
``GET /api/v1/session`` says who the caller is (cookie or Bearer header), or 401.

A session also ends after :data:`IDLE_SECONDS` without a request, and the oldest
sessions are dropped beyond :data:`MAX_SESSIONS`. Sessions live in one server process:
a restart, or another server process behind the same address, does not know them and
the page asks for the token again.

The cookie is a credential a browser sends by itself, so cross-site requests must not
be able to use it: ``SameSite=Strict`` keeps browsers from sending it with any request
another site starts, and every POST route (this one too) takes only
``Content-Type: application/json``, which a page of another origin can send only after a
CORS preflight that this server never grants.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from .. import wire
from ..errors import UnauthorizedError
from .auth import TokenStore
from .bodies import decode
from .http import MsgspecResponse, caller, limits_of, read_json_body
from .validate import Access

COOKIE = "ml_dash_session"
IDLE_SECONDS = 12 * 3600.0
MAX_SESSIONS = 10_000
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}\Z")  # secrets.token_urlsafe(32)
_NO_STORE = {"Cache-Control": "no-store"}


class Login(wire.Body, forbid_unknown_fields=True):
    """``POST /api/v1/session``: the token, from ``ml-dash token create``."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class SessionInfo(wire.Body):
    """Who the caller is: ``auth`` False when the server runs without auth (``owner`` then None)."""

    auth: bool
    owner: str | None


@dataclass
class _Session:
    # Verified again on every use, so a revoked token ends the session; the TokenStore
    # protocol verifies whole tokens, so the token itself is what is kept (in memory only).
    token: str
    owner: str
    used_at: float


def _key(session_id: str) -> str:
    # The table is keyed by hashes, not by the ids browsers send, so the time a lookup
    # takes (dict keys are compared) says nothing about the id of a live session.
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """The sessions of one server process, by the SHA-256 of their ids (thread-safe).

    ``open`` and ``owner`` call the token store, which may be a database: call them in a
    worker thread.
    """

    cookie = COOKIE

    def __init__(
        self,
        tokens: TokenStore,
        idle_seconds: float = IDLE_SECONDS,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = tokens
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, token: str) -> tuple[str, str] | None:
        """A new session for ``token``: ``(session id, owner)``, or None when the token does not verify."""
        owner = self.tokens.verify(token)
        if owner is None:
            return None
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._sessions[_key(session_id)] = _Session(token, owner, now)
            self._sweep(now)
        return session_id, owner

    def owner(self, session_id: str) -> str | None:
        """The owner of a live session; None (and the session forgotten) when it is unknown,
        idle for too long, or its token no longer verifies."""
        if not _SESSION_ID.match(session_id):
            return None
        key = _key(session_id)
        now = self._clock()
        with self._lock:
            found = self._sessions.get(key)
            if found is None:
                return None
            if now - found.used_at > self.idle_seconds:
                del self._sessions[key]
                return None
        owner = self.tokens.verify(found.token)
        with self._lock:
            if owner is None or owner != found.owner:
                self._sessions.pop(key, None)
                return None
            if key not in self._sessions:  # logged out meanwhile
                return None
            found.used_at = now
            self._sessions.move_to_end(key)
        return owner

    def close(self, session_id: str) -> None:
        """Forget the session (nothing happens for an unknown id)."""
        with self._lock:
            self._sessions.pop(_key(session_id), None)

    def _sweep(self, now: float) -> None:
        """Drop idle sessions and those over the cap, oldest first (the lock is held)."""
        while self._sessions:
            key, oldest = next(iter(self._sessions.items()))
            if len(self._sessions) <= self.max_sessions and now - oldest.used_at <= self.idle_seconds:
                break
            del self._sessions[key]


# -- the routes --------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1")


def sessions_of(request: Request) -> SessionStore | None:
    """The app's sessions (None when it runs without auth)."""
    sessions: SessionStore | None = request.app.state.sessions
    return sessions


def _answer(info: SessionInfo) -> Response:
    return MsgspecResponse(wire.encode(info), headers=_NO_STORE)


def _with_cookie(response: Response, request: Request, session_id: str | None) -> Response:
    """``response`` setting the session cookie to ``session_id``, or clearing it (None)."""
    # Secure only over https (behind a proxy, uvicorn takes the scheme from X-Forwarded-Proto):
    # a Secure cookie set over plain http on a LAN address would never be sent back.
    secure = request.url.scheme == "https"
    if session_id is None:
        response.delete_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
    else:
        response.set_cookie(COOKIE, session_id, path="/", secure=secure, httponly=True, samesite="strict")
    return response


# The browser's routes, like the page's own, are left out of /openapi.json (the SDK
# never calls them); docs/http-api.md describes them.
@router.post("/session", include_in_schema=False)
async def log_in(request: Request) -> Response:
    """Verify the token of the body and start a session: ``{"auth": true, "owner"}`` and
    the session cookie, or 401 ``unauthorized``. Without auth: ``{"auth": false}``, no cookie."""
    login = decode(await read_json_body(request), Login, limits_of(request))
    sessions = sessions_of(request)
    if sessions is None:
        return _answer(SessionInfo(auth=False, owner=None))
    opened = await run_in_threadpool(sessions.open, login.token)
    if opened is None:
        raise UnauthorizedError("the token is unknown or has been revoked")
    session_id, owner = opened
    previous = request.cookies.get(COOKIE)
    if previous:
        sessions.close(previous)
    return _with_cookie(_answer(SessionInfo(auth=True, owner=owner)), request, session_id)


@router.get("/session", include_in_schema=False)
async def who_am_i(access: Access = Depends(caller)) -> Response:
    """``{"auth", "owner"}`` of the caller (session cookie or Bearer header); 401 when neither is valid."""
    return _answer(SessionInfo(auth=access.owner is not None, owner=access.owner))


@router.delete("/session", include_in_schema=False)
async def log_out(request: Request) -> Response:
    """Forget the session of the cookie (if any) and clear the cookie; always 200."""
    sessions = sessions_of(request)
    session_id = request.cookies.get(COOKIE)
    if sessions is not None and session_id:
        sessions.close(session_id)
    return _with_cookie(_answer(SessionInfo(auth=sessions is not None, owner=None)), request, None)
