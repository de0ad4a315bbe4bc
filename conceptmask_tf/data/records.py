"""Small helpers shared by the JSON readers: load a file and check record fields.

Every failure raises `DataError` naming the file and the record, so one bad record
among millions can be found.
"""

from __future__ import annotations

import json
import math
import types
from typing import Any

from conceptmask_tf.base import files
from conceptmask_tf.data._gc import gc_paused
from conceptmask_tf.errors import DataError

_MISSING = object()


def load_json(path: str) -> Any:
    """Parses a JSON file; a syntax or encoding error becomes a `DataError` naming the file."""
    try:
        with files.open_file(path, encoding="utf-8") as f, gc_paused():
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                        path=path) from e
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text: {e}", path=path) from e


def is_int(value: Any) -> bool:
    """True for a JSON integer (bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for a finite JSON number (bool is not one)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def require_list(value: Any, what: str, path: str, record: str | None = None) -> list:
    if not isinstance(value, list):
        raise DataError(f"{what} must be a list, got {type(value).__name__}", path=path,
                        record=record)
    return value


def require_dict(value: Any, what: str, path: str, record: str | None = None) -> dict:
    if not isinstance(value, dict):
        raise DataError(f"{what} must be an object, got {type(value).__name__}", path=path,
                        record=record)
    return value


def _is_positive_int(value: Any) -> bool:
    return is_int(value) and value > 0


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


_CHECKS = types.MappingProxyType({
    "int": is_int, "positive int": _is_positive_int, "number": is_number, "str": _is_str,
    "list": _is_list})


def get_field(obj: dict, key: str, kind: str, path: str, record: str,
              default: Any = _MISSING) -> Any:
    """Returns `obj[key]` after checking its type.

    Args:
        obj: A JSON object.
        key: The field name.
        kind: One of "int", "positive int", "number" (finite), "str", "list".
        path: The file (for the error message).
        record: The record locator (for the error message).
        default: Returned when the key is absent; without it a missing key is an error.

    Raises:
        DataError: The key is missing (and no default) or the value has the wrong type.
    """
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        if default is not _MISSING:
            return default
        raise DataError(f"missing required key {key!r}", path=path, record=record)
    if not _CHECKS[kind](value):
        raise DataError(f"{key!r} must be a {kind}, got {value!r:.60}", path=path, record=record)
    return value
