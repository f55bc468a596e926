"""``exp.params``: the experiment's parameters, flattened with ``.``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import InvalidValueError, StorageError
from .values import normalize

if TYPE_CHECKING:
    from .session import Session


def flatten(params: Mapping[str, Any], parent: str = "") -> dict[str, Any]:
    """``{"model": {"lr": 1}}`` -> ``{"model.lr": 1}``; lists and empty dicts stay values."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise InvalidValueError(f"param {parent}{key!r}: names must be strings, got {type(key).__name__}")
        if key == "":
            raise InvalidValueError(f"param under {parent[:-1] or 'the top level'!r}: empty name")
        full = f"{parent}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, full + "."))
        else:
            flat[full] = normalize(value, full)
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten` (``"a.b"`` -> ``{"a": {"b": ...}}``)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return nested


class Params:
    """``exp.params``: ``set`` merges, ``get`` reads back."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._set_now: dict[str, Any] = {}  # what this process set, for reads while the server lags

    def set(self, **params: Any) -> Params:
        """Merge these params (nested dicts flattened with ``.``) into ``parameters.json``.

        Raises InvalidValueError naming a param that cannot be stored; nothing of the
        call is stored then.
        """
        self._session.require_running("params")
        flat = flatten(params)
        self._set_now.update(flat)
        self._session.control("set_params", None, flat)
        return self

    log = set

    def get(self, flatten: bool = True) -> dict[str, Any]:
        """The stored params: flat (``"model.lr"``) or, with ``flatten=False``, nested."""
        session = self._session
        session.require_running("params")
        session.flush()
        try:
            data = dict(session.reader.get_params(session.prefix).data)
        except StorageError:
            data = {}
        data.update({k: v for k, v in self._set_now.items() if k not in data})
        return data if flatten else unflatten(data)
