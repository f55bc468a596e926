"""``ml-dash serve``: run the server over a dash root folder with uvicorn.

Auth follows the address: on loopback it is off unless asked for; on any other
address it is on, and only ``--insecure`` turns it off (with a loud warning). The
folder backend is single-server: one server process per folder.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass

from ..stores.local import LocalStore
from .app import create_app
from .auth import FileTokenStore
from .http import DEFAULT_MAX_BODY

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
    root: str | None, host: str, port: int, auth: bool, insecure: bool, max_body: int = DEFAULT_MAX_BODY
) -> ServePlan:
    """Decide root, auth and warnings from the command line (no side effects)."""
    folder = os.path.abspath(root or os.environ.get("ML_DASH_ROOT") or ".dash")
    if auth or (not is_loopback(host) and not insecure):
        return ServePlan(folder, host, port, True, max_body)
    warning = None
    if not is_loopback(host):
        warning = (
            f"WARNING: auth is OFF on {host}, a non-loopback address (--insecure): anyone who can reach "
            "this port can read and write every experiment. Use --auth and `ml-dash token create` instead."
        )
    return ServePlan(folder, host, port, False, max_body, warning)


def startup_lines(p: ServePlan, tokens: int) -> list[str]:
    """The lines ``serve`` prints before it starts listening."""
    lines = [f"ml-dash server: serving {p.root} at {p.url}"]
    if p.auth:
        lines.append("auth: ON (send 'Authorization: Bearer <token>')")
        if tokens == 0:
            lines.append(f"no tokens yet: create one with `ml-dash token create --owner NAME --root {p.root}`")
    else:
        lines.append("auth: OFF (loopback only; requests must be addressed to localhost; --auth turns it on)")
    lines.append(f"note: {SINGLE_SERVER}")
    return lines


def run(p: ServePlan) -> None:
    """Serve ``p.root`` until interrupted (blocks); prints the URL and the auth state first."""
    import uvicorn

    store = LocalStore(p.root)
    tokens = FileTokenStore(p.root) if p.auth else None
    if p.warning:
        print(p.warning, file=sys.stderr, flush=True)
    active = sum(1 for t in tokens.list() if not t.revoked) if tokens is not None else 0
    print("\n".join(startup_lines(p, active)), flush=True)
    app = create_app(store, tokens, p.max_body, allowed_hosts=p.allowed_hosts)
    try:
        uvicorn.run(app, host=p.host, port=p.port, workers=1, log_level="info", server_header=False)
    finally:
        store.close()
