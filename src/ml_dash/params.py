"""``exp.params``: the experiment's parameters, flattened with ``.``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from .errors import InvalidValueError, StorageError, TooLargeError
from .limits import DEFAULT, Limits
from .values import check_container, normalize

if TYPE_CHECKING:
    from .session import Session


def flatten(params: Mapping[str, Any], limits: Limits = DEFAULT) -> dict[str, Any]:
    """``{"model": {"lr": 1}}`` -> ``{"model.lr": 1}``; lists and empty dicts stay values.

    InvalidValueError for a name that is not a non-empty string, a value that cannot
    be stored (``values.normalize``), nesting or item counts over ``limits``, and two
    names that flatten to one (``{"a.b": 1, "a": {"b": 2}}``): one value would be lost.
    """
    flat: dict[str, Any] = {}
    _flatten_into(flat, {}, params, (), limits)
    return flat


def _flatten_into(
    flat: dict[str, Any], origins: dict[str, tuple[str, ...]], params: Mapping[str, Any], path: tuple[str, ...],
    limits: Limits,
) -> None:
    parent = ".".join(path)
    check_container(params, parent or "params", len(path), limits)
    for key, value in params.items():
        if not isinstance(key, str):
            raise InvalidValueError(f"param {parent + '.' if parent else ''}{key!r}: names must be strings, "
                                    f"got {type(key).__name__}")
        if key == "":
            raise InvalidValueError(f"param under {parent or 'the top level'!r}: empty name")
        where = (*path, key)
        full = ".".join(where)
        if isinstance(value, Mapping) and value:
            _flatten_into(flat, origins, value, where, limits)
            continue
        if full in flat:
            raise InvalidValueError(
                f"param {full!r} is given twice, as {_spelled(origins[full])} and as {_spelled(where)}: "
                "a dotted name and a nested one would be the same param, and one value would be lost"
            )
        flat[full] = normalize(value, full, len(path), limits)
        origins[full] = where


def _spelled(path: tuple[str, ...]) -> str:
    """``("a", "b")`` -> ``{'a': {'b': ...}}``; ``("a.b",)`` -> ``'a.b'``."""
    if len(path) == 1:
        return repr(path[0])
    return "".join(f"{{{key!r}: " for key in path) + "..." + "}" * len(path)


def check_size(flat: Mapping[str, Any], limits: Limits = DEFAULT) -> None:
    """TooLargeError when the params document ``flat`` is over ``limits.max_params_bytes`` as JSON."""
    size = len(msgspec.json.encode(flat))
    if size > limits.max_params_bytes:
        raise TooLargeError(
            f"params: the document is {size} bytes of JSON, over the limit of {limits.max_params_bytes} bytes"
        )


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


def class_fields(cls: type) -> dict[str, Any]:
    """A class given as a param value, as a dict: its own public attributes that are
    neither callable nor classes nor descriptors (``class Args: lr = 0.1`` -> ``{"lr": 0.1}``)."""
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_") and not callable(value) and not inspect.isclass(value)
        and not isinstance(value, property | classmethod | staticmethod)
    }


def expand_classes(params: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    """``params`` with every class value (also inside dicts) turned into :func:`class_fields`."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if inspect.isclass(value):
            value = class_fields(value)
        if isinstance(value, Mapping) and depth < DEFAULT.max_depth:
            value = expand_classes(value, depth + 1)
        out[key] = value
    return out


class ParametersBuilder:
    """``exp.params``: ``set`` merges, ``get`` reads back."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._set_now: dict[str, Any] = {}  # what this process set, for reads while the server lags

    def set(self, **params: Any) -> Params:
        """Merge these params (nested dicts flattened with ``.``) into ``parameters.json``.

        Raises InvalidValueError naming a param that cannot be stored (or two names
        that flatten to one), TooLargeError when the params would be over the size
        limit (``ml_dash.limits``); nothing of the call is stored then.
        """
        self._session.require_running("params")
        flat = flatten(expand_classes(params))
        check_size({**self._set_now, **flat})
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

    @staticmethod
    def flatten_dict(d: Mapping[str, Any], parent_key: str = "", sep: str = ".") -> dict[str, Any]:
        """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (keys joined under ``parent_key`` with
        ``sep``): dicts are recursed into, an empty one vanishes, every other value
        (lists, None, bools) is kept as is. Pure: ``d`` is not changed."""
        flat: dict[str, Any] = {}
        for key, value in d.items():
            full = f"{parent_key}{sep}{key}" if parent_key else key
            if isinstance(value, Mapping):
                flat.update(ParametersBuilder.flatten_dict(value, full, sep))
            else:
                flat[full] = value
        return flat

    @staticmethod
    def unflatten_dict(d: Mapping[str, Any], sep: str = ".") -> dict[str, Any]:
        """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``, splitting keys on ``sep``. Pure."""
        nested: dict[str, Any] = {}
        for key, value in d.items():
            node = nested
            parts = key.split(sep)
            for part in parts[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
            node[parts[-1]] = value
        return nested


Params = ParametersBuilder  # the name this package used first
