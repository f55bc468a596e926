"""``ml-dash serve``: run the server with uvicorn, over a dash root folder or MongoDB + S3.

Auth follows the address: on loopback it is off unless asked for; on any other
address it is on, and only ``--insecure`` turns it off (with a loud warning). What one
request may hold (``ml_dash.limits.Limits``) and what one connection may cost
(``ml_dash.limits.ConnectionLimits``: read timeouts, connection caps, enforced by
``connections.GuardedProtocol``) are options too (docs/http-api.md, "Limits"), and so
is how many data files the folder backend keeps open (``--max-open-files``). The
folder backend is single-server: one server process per folder. The MongoDB backend
(``mongo_backend``) keeps everything, tokens included, in the database and the bucket,
so several server processes may share them.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import StorageError
from ..limits import DEFAULT, ConnectionLimits, Limits
from ..stores.base import Store
from ..stores.fdpool import default_capacity
from ..stores.local import LocalStore
from .app import create_app
from .auth import FileTokenStore, TokenStore
from .connections import ConnectionGuard, GuardedProtocol
from .http import DEFAULT_MAX_BODY
from .mongo_backend import MULTI_SERVER, MongoSettings, check_backend, open_backend

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SINGLE_SERVER = "the folder backend is single-server: run one `ml-dash serve` per folder"


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServePlan:
    """What ``serve`` will do, decided before anything starts."""

    root: str
    host: str
    port: int
    auth: bool
    max_body: int
    warning: str | None = None
    mongo: MongoSettings | None = None  # None: the folder backend at ``root``
    limits: Limits = DEFAULT
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    max_open_files: int | None = None  # the folder backend's bound (None: ``fdpool.default_capacity``)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def allowed_hosts(self) -> tuple[str, ...] | None:
        """Without auth on loopback, only requests addressed to loopback names are answered."""
        if self.auth or not is_loopback(self.host):
            return None
        return (*LOOPBACK_NAMES, self.host.strip("[]").lower())


def plan(
    root: str | None,
    host: str,
    port: int,
    auth: bool,
    insecure: bool,
    max_body: int = DEFAULT_MAX_BODY,
    mongo: MongoSettings | None = None,
    limits: Limits = DEFAULT,
    connections: ConnectionLimits | None = None,
    max_open_files: int | None = None,
) -> ServePlan:
    """Decide backend, auth and warnings from the command line (no side effects).

    ``max_open_files``: how many data files the folder backend keeps open at once
    (``LocalStore(max_open_files=...)``); ValueError unless None or a positive int.
    """
    if max_open_files is not None and (type(max_open_files) is not int or max_open_files < 1):
        raise ValueError(f"max_open_files must be a positive whole number, got {max_open_files!r}")
    folder = os.path.abspath(root or os.environ.get("ML_DASH_ROOT") or ".dash")
    conns = connections or ConnectionLimits()
    if auth or (not is_loopback(host) and not insecure):
        return ServePlan(folder, host, port, True, max_body, mongo=mongo, limits=limits, connections=conns,
                         max_open_files=max_open_files)
    warning = None
    if not is_loopback(host):
        warning = (
            f"WARNING: auth is OFF on {host}, a non-loopback address (--insecure): anyone who can reach "
            "this port can read and write every experiment. Use --auth and `ml-dash token create` instead."
        )
    return ServePlan(folder, host, port, False, max_body, warning, mongo, limits, conns, max_open_files)


def startup_lines(p: ServePlan, tokens: int | None) -> list[str]:
    """The lines ``serve`` prints before it starts listening (``tokens`` None: count unknown)."""
    served = p.mongo.describe() if p.mongo is not None else p.root
    lines = [f"ml-dash server: serving {served} at {p.url}",
             f"dashboard: open {p.url}/ in a browser"]
    if p.auth:
        lines.append("auth: ON (clients send 'Authorization: Bearer <token>'; the dashboard asks for a token once "
                     "and keeps an HttpOnly session cookie)")
        if tokens == 0:
            where = "--mongo URI --mongo-db " + p.mongo.database if p.mongo is not None else "--root " + p.root
            lines.append(f"no tokens yet: create one with `ml-dash token create --owner NAME {where}`")
    else:
        lines.append("auth: OFF (loopback only; requests must be addressed to localhost; --auth turns it on)")
    lines.append(f"note: {MULTI_SERVER if p.mongo is not None else SINGLE_SERVER}")
    c = p.connections
    per_client = f"{c.max_per_client} per client address" if c.max_per_client else "no cap per client address"
    lines.append(f"connections: at most {c.total} ({per_client}); headers within {c.header_timeout:g} s, "
                 f"no body stall over {c.body_timeout:g} s")
    if p.mongo is None:
        files = p.max_open_files if p.max_open_files is not None else default_capacity()
        lines.append(f"open data files: at most {files} (least recently used closed first)")
    return lines


class _Backend(NamedTuple):
    store: Store
    tokens: TokenStore | None
    warnings: list[str]
    reachable: bool  # False: MongoDB did not answer at startup


def _open(p: ServePlan) -> _Backend:
    """The store, the token store and what to warn about, for the plan's backend."""
    if p.mongo is None:
        local = LocalStore(p.root, max_open_files=p.max_open_files)
        return _Backend(local, FileTokenStore(p.root) if p.auth else None, [], True)
    store, tokens = open_backend(p.mongo, p.auth)
    try:
        found = check_backend(p.mongo, store)
    except BaseException:
        store.close()
        raise
    return _Backend(store, tokens, found.warnings, found.reachable)


def _active_tokens(backend: _Backend) -> int | None:
    """How many unrevoked tokens there are (None: unknown, MongoDB does not answer)."""
    if backend.tokens is None:
        return 0
    if not backend.reachable:
        return None
    try:
        return sum(1 for t in backend.tokens.list() if not t.revoked)
    except StorageError:
        return None


def run(p: ServePlan) -> None:
    """Serve the plan's backend until interrupted (blocks); prints the URL and the auth state first.

    With MongoDB, an unreachable database or bucket is a warning, not a refusal to
    start: requests answer 503 until MongoDB answers.
    """
    import uvicorn

    backend = _open(p)
    for line in ([p.warning] if p.warning else []) + backend.warnings:
        print(line, file=sys.stderr, flush=True)
    print("\n".join(startup_lines(p, _active_tokens(backend))), flush=True)
    app = create_app(backend.store, backend.tokens, p.max_body, allowed_hosts=p.allowed_hosts, limits=p.limits)
    protocol = GuardedProtocol.configured(ConnectionGuard(p.connections))
    try:
        # Event streams (/api/v1/events) never end by themselves: a stop waits 2 s for
        # requests in flight, then closes what is left.
        uvicorn.run(app, host=p.host, port=p.port, workers=1, log_level="info", server_header=False, http=protocol,
                    timeout_graceful_shutdown=2)
    finally:
        close = getattr(backend.tokens, "close", None)
        if close is not None:
            close()
        backend.store.close()
