"""Storage backends behind the one :class:`Store` protocol."""

from .base import Store
from .local import LocalStore

__all__ = ["LocalStore", "Store"]
