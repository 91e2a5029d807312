"""Plain data -> TOML text (the inverse of :mod:`tomllib` for what configs hold).

Handles what :func:`mimrec.serialize.to_dict` produces: tables (dicts), arrays of tables (lists of
dicts, e.g. ``[[ctr.models]]``), strings, integers, floats, booleans and lists of those.
"""

from __future__ import annotations

import json
import math
from typing import Any


def toml_value(value: Any) -> str:
    """One TOML value (strings in double quotes, lists inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a TOML value")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(v, dict) for v in value)


def dumps(data: dict[str, Any], prefix: str = "") -> str:
    """TOML text of a nested dict; ``tomllib.loads(dumps(d)) == d`` for config dicts."""
    lines = [f"{key} = {toml_value(value)}" for key, value in data.items()
             if not isinstance(value, dict) and not _is_table_array(value)]
    blocks = ["\n".join(lines)] if lines else []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            body = dumps(value, f"{name}.")
            blocks.append(f"[{name}]\n{body}".rstrip())
        elif _is_table_array(value):
            for entry in value:
                blocks.append(f"[[{name}]]\n{dumps(entry, f'{name}.')}".rstrip())
    return "\n\n".join(b for b in blocks if b) + "\n"
