"""The ML-Dash server: the HTTP API (docs/http-api.md) over one Store, plus tokens."""

from .app import create_app
from .auth import FileTokenStore, TokenRecord, TokenStore

__all__ = ["FileTokenStore", "TokenRecord", "TokenStore", "create_app"]
