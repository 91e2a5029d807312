"""Typed, frozen configs: dataclass defaults <- TOML file <- ``--set section.key=value`` overrides.

Every stage defines its own frozen dataclass next to the code that reads it; :class:`PipelineConfig`
composes them. Unknown keys and wrong types raise :class:`~mimrec.errors.ConfigError` naming the key (the
checked dict -> dataclass conversion is :mod:`mimrec.serialize`, re-exported here).
"""

from __future__ import annotations

import tomllib
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

__all__ = ["PipelineConfig", "from_dict", "load_config", "to_dict"]  # the two re-exported


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
