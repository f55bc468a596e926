"""What values ML-Dash accepts, and how they become plain JSON data.

The hot path only checks ``type(v) in PLAIN``; everything else goes through
:func:`normalize`, which turns numpy/torch scalars and arrays into Python values and
raises :class:`InvalidValueError` naming the field for anything it cannot store.

Non-finite floats (NaN, +inf, -inf) are not JSON. They are written as ``null`` with a
``nonFinite`` map beside the record (JSON Pointer -> "NaN" | "Infinity" | "-Infinity"),
so every line stays valid JSON and our readers restore the floats exactly.
"""

from __future__ import annotations

import datetime as _dt
import math
import pathlib
from collections.abc import Mapping, Sized
from typing import Any

from .errors import InvalidValueError
from .limits import DEFAULT, Limits

PLAIN: frozenset[type] = frozenset({float, int, str, bool, type(None)})

NONFINITE_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _scalar_from_array_like(value: Any) -> Any | None:
    """numpy/torch scalars, 0-d arrays and tensors -> Python value; None if not one."""
    module = type(value).__module__
    if module.startswith("numpy"):
        if hasattr(value, "ndim") and value.ndim > 0:
            return value.tolist()
        return value.item()
    if module.startswith("torch"):
        if hasattr(value, "detach"):
            value = value.detach().cpu()
            return value.item() if value.numel() == 1 and value.dim() == 0 else value.tolist()
        return None
    return None


def normalize(value: Any, field: str, depth: int = 0, limits: Limits = DEFAULT) -> Any:
    """Return ``value`` as plain JSON-able Python data, or raise InvalidValueError.

    Accepts: None, bool, int (any size), float (also non-finite), str, numpy and torch
    scalars/arrays/tensors, dicts with string keys, lists, tuples, datetime (as ISO
    text) and paths (as text); lists and dicts at most ``limits.max_depth`` levels
    deep (``depth`` is how deep ``value`` already is) with at most ``limits.max_items``
    items each.
    """
    kind = type(value)
    if kind is str:
        return check_text(value, field)
    if kind in PLAIN:
        return value
    if isinstance(value, bool | int | float | str):  # subclasses such as IntEnum, np.float64
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        return check_text(str(value), field)
    if isinstance(value, Mapping | list | tuple):
        check_container(value, field, depth, limits)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidValueError(
                    f"field {field!r}: dictionary key {key!r} is a {type(key).__name__}, keys must be strings"
                )
            check_text(key, f"{field}.{key}")
            out[key] = normalize(item, f"{field}.{key}", depth + 1, limits)
        return out
    if isinstance(value, list | tuple):
        return [normalize(item, f"{field}[{i}]", depth + 1, limits) for i, item in enumerate(value)]
    converted = _scalar_from_array_like(value)
    if converted is not None or type(value).__module__.startswith(("numpy", "torch")):
        return normalize(converted, field, depth, limits)  # the same value, as lists: no level deeper
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if isinstance(value, pathlib.PurePath):
        return str(value)
    raise InvalidValueError(
        f"field {field!r}: value {value!r:.80} of type {type(value).__name__} cannot be stored "
        "(use numbers, strings, booleans, None, lists or dicts)"
    )


def check_container(value: Sized, field: str, depth: int, limits: Limits = DEFAULT) -> None:
    """InvalidValueError when the list or dict ``value``, ``depth`` levels inside its
    value, is one level too many or holds more than ``limits.max_items`` items."""
    if depth >= limits.max_depth:
        raise InvalidValueError(
            f"field {field!r}: lists and objects nested more than {limits.max_depth} levels deep "
            f"(the limit is {limits.max_depth})"
        )
    if len(value) > limits.max_items:
        raise InvalidValueError(
            f"field {field!r}: {len(value)} items in one list or object, over the limit of {limits.max_items}"
        )


def check_text(text: str, field: str) -> str:
    """``text`` if it can be written as UTF-8 (no lone surrogates), else InvalidValueError."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidValueError(
                f"field {field!r}: text {text[:40]!r} holds {text[exc.start]!r}, which UTF-8 cannot store"
            ) from None
    return text


def normalize_fields(fields: dict[str, Any], where: str | None = None, limits: Limits = DEFAULT) -> dict[str, Any]:
    """Normalize every value of ``fields`` in place (the slow path of ``log``, and the
    server's check of metric points); errors name ``<where>.<key>``, or ``<key>``.
    A point holds at most ``limits.max_items`` fields."""
    if len(fields) > limits.max_items:
        raise InvalidValueError(f"{where or 'the point'}: {len(fields)} fields, over the limit of {limits.max_items}")
    for key, value in fields.items():
        if type(value) not in PLAIN:
            fields[key] = normalize(value, f"{where}.{key}" if where else key, 0, limits)
    return fields


def _escape_pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _unescape_pointer(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def find_nonfinite(value: Any, pointer: str = "") -> dict[str, str]:
    """Map JSON Pointer -> name for every non-finite float inside ``value``."""
    found: dict[str, str] = {}
    kind = type(value)
    if kind is float:
        if value != value:
            found[pointer] = "NaN"
        elif value in (math.inf, -math.inf):
            found[pointer] = "Infinity" if value > 0 else "-Infinity"
    elif kind is dict:
        for key, item in value.items():
            if type(item) in (float, dict, list):
                found.update(find_nonfinite(item, f"{pointer}/{_escape_pointer(key)}"))
    elif kind is list:
        for i, item in enumerate(value):
            if type(item) in (float, dict, list):
                found.update(find_nonfinite(item, f"{pointer}/{i}"))
    return found


def restore_nonfinite(target: Any, nonfinite: Mapping[str, str]) -> Any:
    """Put the non-finite floats listed in ``nonfinite`` back into ``target``."""
    for pointer, name in nonfinite.items():
        number = NONFINITE_NAMES.get(name)
        if number is None or not pointer.startswith("/"):
            continue
        tokens = [_unescape_pointer(t) for t in pointer[1:].split("/")]
        node = target
        try:
            for token in tokens[:-1]:
                node = node[int(token)] if isinstance(node, list) else node[token]
            last = tokens[-1]
            if isinstance(node, list):
                node[int(last)] = number
            elif isinstance(node, dict):
                node[last] = number
        except (KeyError, IndexError, ValueError, TypeError):
            continue
    return target


def put_at_null(target: Any, pointer: str, number: float) -> bool:
    """Replace the ``null`` that the JSON Pointer ``pointer`` names inside ``target`` with
    ``number``; False (and nothing changed) when it names nothing or something that is
    not ``null``. Unlike :func:`restore_nonfinite` (for the store's own files), this is
    for maps from the outside: they may neither add a field nor overwrite a value."""
    if not pointer.startswith("/"):
        return False
    node = target
    tokens = pointer[1:].split("/")
    for i, raw in enumerate(tokens):
        token = _unescape_pointer(raw)
        if type(node) is dict and token in node:
            key: Any = token
        elif (type(node) is list and token.isascii() and token.isdigit() and (token == "0" or token[0] != "0")
              and int(token) < len(node)):
            key = int(token)
        else:
            return False
        if i == len(tokens) - 1:
            if node[key] is not None:
                return False
            node[key] = number
            return True
        node = node[key]
    return False
