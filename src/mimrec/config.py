"""Typed, frozen configs: dataclass defaults <- TOML file <- ``--set section.key=value`` overrides.

Every stage defines its own frozen dataclass next to the code that reads it; :class:`PipelineConfig`
composes them. Unknown keys and wrong types raise :class:`~mimrec.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from mimrec.csft.config import CsftConfig
from mimrec.ctr.config import CtrConfig
from mimrec.data.config import DataConfig
from mimrec.encoders.config import EncoderConfig
from mimrec.errors import ConfigError
from mimrec.eval.config import EvalConfig
from mimrec.pretrain.config import PretrainConfig

T = TypeVar("T")


@dataclass(frozen=True)
class PipelineConfig:
    """The whole pipeline: one section per stage."""

    name: str = "pipeline"
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    csft: CsftConfig = field(default_factory=CsftConfig)
    ctr: CtrConfig = field(default_factory=CtrConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Read a TOML pipeline config, apply ``key.sub=value`` overrides, and type-check everything."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = tomllib.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: "
                              f"{exc.object[exc.start:exc.start + 1]!r}); TOML files are UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(PipelineConfig, raw)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value (e.g. ctr.lr=0.001), got {item!r}")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = _parse_value(text.strip())


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string: --set data.dataset=movielens


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
