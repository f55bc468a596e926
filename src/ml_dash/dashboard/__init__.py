"""The dashboard: the built single-page app in ``static/``, served by the ML-Dash server.

:func:`mount_dashboard` adds GET routes to an app for the page and its files only:
``/`` and the page's own paths (``/runs/...``, ``/run/...``, ``/compare``) answer
``index.html`` (the page routes itself in the browser); ``/assets/<name>`` and
``/favicon.svg`` answer the built files. Nothing else is matched, so ``/api/...``,
``/health`` and ``/openapi.json`` keep their routes and their JSON 404.

Every answer carries a Content-Security-Policy that allows scripts, styles and
connections from this origin only (no inline script, nothing from a CDN), and
``X-Content-Type-Options: nosniff``. Asset names carry a hash of their content
(the build in ``frontend/``), so they are cached for a year; ``index.html`` is
revalidated on every load. The bundle is committed with the package:
``static/SOURCE_HASH`` records the hash of the frontend sources it was built from
(``tests/dashboard/test_bundle.py`` checks it).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, Response

STATIC = Path(__file__).resolve().parent / "static"

CSP = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
    ".json": "application/json",
}
# The page's own paths: the views of frontend/src/urlstate.ts (parseRoute).
PAGE_PATHS = ("/", "/runs", "/runs/{rest:path}", "/run/{rest:path}", "/compare")
_ASSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def _headers(cache: str) -> dict[str, str]:
    return {**SECURITY_HEADERS, "Cache-Control": cache}


def _missing(what: str) -> Response:
    """The server's error body (docs/http-api.md), 404 ``not_found``."""
    body = json.dumps({"code": "not_found", "message": what}).encode()
    return Response(body, status_code=404, media_type="application/json", headers=_headers("no-store"))


def _file(path: Path, cache: str) -> Response:
    media = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media, headers=_headers(cache))


def mount_dashboard(app: FastAPI, static: Path = STATIC) -> None:
    """Serve the dashboard from ``static`` on ``app`` (GET routes added at the end of its routes).

    An asset name is one path segment of ``[A-Za-z0-9_.-]`` not starting with a dot,
    so no request can name a file outside ``static/assets``. When the bundle is missing
    (a source checkout before ``npm run build``) the page paths answer 404
    ``not_found`` saying so.
    """
    index = static / "index.html"
    folder = static / "assets"
    favicon = static / "favicon.svg"

    async def page() -> Response:
        if not index.is_file():
            return _missing("the dashboard is not built: run `npm ci && npm run build` in frontend/")
        return _file(index, REVALIDATE)

    zipped: dict[str, bytes] = {}

    async def asset(name: str, request: Request) -> Response:
        found = folder / name if _ASSET_NAME.match(name) else None
        if found is None or not found.is_file():
            return _missing(f"no asset {name[:80]!r}")
        if found.suffix not in (".js", ".css") or "gzip" not in request.headers.get("accept-encoding", ""):
            return _file(found, IMMUTABLE)
        body = zipped.get(name)
        if body is None:  # compressed once per process: a hashed name never changes its content
            body = zipped[name] = gzip.compress(found.read_bytes(), 9, mtime=0)
        headers = {**_headers(IMMUTABLE), "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        return Response(body, media_type=MEDIA_TYPES[found.suffix], headers=headers)

    async def icon() -> Response:
        if not favicon.is_file():
            return _missing("no favicon")
        return _file(favicon, "public, max-age=86400")

    for path in PAGE_PATHS:
        app.add_api_route(path, page, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/assets/{name}", asset, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/favicon.svg", icon, methods=["GET"], include_in_schema=False)
