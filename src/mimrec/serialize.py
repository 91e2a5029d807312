"""Frozen dataclass configs <-> plain JSON-able dicts (a leaf module: imports only mimrec.errors).

:func:`from_dict` builds a config from a dict, checking keys and types (unknown keys and wrong
types raise :class:`~mimrec.errors.ConfigError` naming the key); :func:`to_dict` is its inverse,
used to save resolved configs in manifests and checkpoints. Every stage and the encoder
checkpoints use these, so they live below every stage; :mod:`mimrec.config` composes the
pipeline's config from them.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal, TypeVar

from mimrec.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], raw: dict[str, Any], where: str = "") -> T:
    """Build the frozen dataclass ``cls`` from a plain dict, checking keys and types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a section (table), got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key {name!r}; known keys here: {', '.join(sorted(fields))}")
    values = {}
    for key, value in raw.items():
        name = f"{where}.{key}" if where else key
        values[key] = _coerce(hints[key], value, name)
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        if not where:
            message = f"config: {message}"
        elif not message.startswith(f"{where}."):  # most checks already name their key
            message = f"{where}: {message}"
        raise ConfigError(message) from None


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, name)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"config key {name!r}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(arg, value, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"config key {name!r}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {name!r}: expected a list, got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, f"{name}[{i}]") for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise ConfigError(
                f"config key {name!r}: expected {tp.__name__}, got {type(value).__name__} {value!r}"
            )
        return value
    raise ConfigError(f"config key {name!r}: unsupported type {tp}")  # pragma: no cover


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))
