"""Typed, frozen configs: dataclass defaults <- TOML file <- ``--set section.key=value`` overrides.

Every stage defines its own frozen dataclass next to the code that reads it; :class:`PipelineConfig`
composes them. Unknown keys and wrong types raise :class:`~mimrec.errors.ConfigError` naming the key (the
checked dict -> dataclass conversion is :mod:`mimrec.serialize`, re-exported here).
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimrec.csft.config import CsftConfig
from mimrec.ctr.config import CtrConfig
from mimrec.data.config import DataConfig
from mimrec.encoders.config import EncoderConfig
from mimrec.errors import ConfigError
from mimrec.eval.config import EvalConfig
from mimrec.pretrain.config import PretrainConfig
from mimrec.serialize import from_dict, to_dict

__all__ = ["PipelineConfig", "config_from_dict", "from_dict", "load_config", "to_dict"]  # the two re-exported


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
    return config_from_dict(raw, overrides)


def config_from_dict(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """A checked config from plain data (as read from TOML) plus ``key.sub=value`` overrides."""
    for item in overrides:
        apply_override(raw, item)
    return from_dict(PipelineConfig, raw)


# Examples shown by ``--set``'s help and errors; a test loads each, so they stay real keys.
SET_EXAMPLES = ("ctr.train.lr=0.002", "encoder.text_fields=[title,genres]",
                "ctr.train.seeds=[0]", "data.path=data/shop")


def apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value (e.g. {SET_EXAMPLES[0]}), got {item!r}")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = parse_value(text.strip(), _field_type(parts))


def _field_type(parts: list[str]) -> Any:
    """The annotated type of a dotted key of :class:`PipelineConfig`; None if not a field."""
    tp: Any = PipelineConfig
    for part in parts:
        if not dataclasses.is_dataclass(tp):
            return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def parse_value(text: str, tp: Any = None) -> Any:
    """An override's value: TOML (``0.1``, ``true``, ``"a b"``, ``['x', 'y']``), else the obvious
    reading for the field's type ``tp``: a list field takes ``[a, b]``, ``a,b`` or one bare word;
    a string field takes the text as is (quotes around it dropped)."""
    value = _toml(text)
    is_list = typing.get_origin(tp) is tuple
    if is_list and not isinstance(value, list):
        inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        parts = [p.strip() for p in inner.split(",")] if inner.strip() else []
        item_tp = typing.get_args(tp)[0] if typing.get_args(tp) else None
        return [parse_value(p, item_tp) for p in parts]
    if value is _NOT_TOML or (tp is str and not isinstance(value, str)):
        return _unquote(text)  # a bare word is a string: --set data.path=data/shop
    return value


_NOT_TOML = object()


def _toml(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return _NOT_TOML


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text
