"""``create_app``: the ASGI application serving one Store over the HTTP API.

The app is a thin adapter (docs/http-api.md): routes parse, authorise, call the store
and serialise. ``/openapi.json`` describes every route with its request and answer
schemas; ``/health`` answers without a token.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from .. import __version__, wire
from ..limits import DEFAULT, Limits
from ..stores.base import Store
from . import routes_experiments, routes_reads, routes_streams, schemas, sessions
from .auth import TokenStore
from .http import DEFAULT_MAX_BODY, MsgspecResponse, RequestGuard, install_error_handlers


class MLDashApp(FastAPI):
    """FastAPI whose OpenAPI document carries the msgspec schemas of our bodies."""

    auth_enabled = False

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document (built once): FastAPI's plus our components and security."""
        if self.openapi_schema is not None:
            return self.openapi_schema
        doc = super().openapi()
        found = doc.setdefault("components", {}).setdefault("schemas", {})
        found.update(schemas.components())
        schemas.describe_limits(doc)
        if "HTTPValidationError" not in str(doc["paths"]):  # we answer {code, message} instead
            found.pop("HTTPValidationError", None)
            found.pop("ValidationError", None)
        if self.auth_enabled:
            doc["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a token from `ml-dash token create`"}
            }
            for path, operations in doc["paths"].items():
                if path.startswith("/api/"):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
        self.openapi_schema = doc
        return doc


def create_app(
    store: Store,
    auth: TokenStore | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    *,
    allowed_hosts: Collection[str] | None = None,
    backend: str | None = None,
    limits: Limits = DEFAULT,
) -> MLDashApp:
    """An ASGI app serving ``store``.

    ``auth`` None serves every owner to anyone; with a TokenStore each request needs
    ``Authorization: Bearer <token>`` or the cookie of a session the dashboard opened
    with that token (``server.sessions``), and reaches only the token owner's experiments.
    Bodies over ``max_body`` bytes are refused with 413, values, points, records,
    entries and params over ``limits`` with 422 or 413 (``ml_dash.limits``).
    ``allowed_hosts`` (host names without port) refuses requests whose Host header
    names another host.
    """
    app = MLDashApp(
        title="ML-Dash",
        version=__version__,
        summary="Experiment tracking: params, metrics, logs and tracks",
        docs_url=None,  # the Swagger page would load assets from the internet
        redoc_url=None,
        default_response_class=MsgspecResponse,
    )
    app.auth_enabled = auth is not None
    app.state.store = store
    app.state.tokens = auth
    app.state.sessions = sessions.SessionStore(auth) if auth is not None else None
    app.state.limits = limits
    app.state.backend = backend or type(store).__name__.removesuffix("Store").lower() or "store"
    install_error_handlers(app)
    app.include_router(routes_experiments.router)
    app.include_router(routes_streams.router)
    app.include_router(routes_reads.router)
    app.include_router(sessions.router)
    app.add_api_route(
        "/health",
        health,
        methods=["GET"],
        responses={200: {"description": "OK", "content": {"application/json": {"schema": schemas.ref(wire.Health)}}}},
    )
    from ..dashboard import mount_dashboard  # the page at / and its assets, after every API route

    mount_dashboard(app)
    app.add_middleware(RequestGuard, max_body=max_body, allowed_hosts=allowed_hosts)
    return app


async def health(request: Request) -> Response:
    """``{"status": "ok", "version", "backend"}``: the server is up (no token needed)."""
    return MsgspecResponse(wire.encode(wire.Health("ok", __version__, request.app.state.backend)))
