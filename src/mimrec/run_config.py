"""The config a run folder remembers: ``RUN/config.toml``, the resolved pipeline config.

The first stage run into a folder writes it (through a temporary file and a rename); every later
stage, ``mimrec eval`` and ``mimrec serve`` read it, so ``--out RUN`` is enough after the first
command. An explicit CONFIG (or ``--set``) still works for later stages, as long as it agrees with
the remembered config on every section that shaped the stages already run: a stage never runs on
artifacts made under another config without saying so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimrec.config import PipelineConfig, config_from_dict, load_config, to_dict
from mimrec.errors import ConfigError
from mimrec.toml_writer import dumps

RUN_CONFIG = "config.toml"

# The config sections whose values shape the artifacts a stage reads (its upstream stages).
UPSTREAM: dict[str, tuple[str, ...]] = {
    "run": (),
    "data": (),
    "pretrain": ("data",),
    "csft": ("data", "encoder", "pretrain"),
    "index": ("data", "encoder", "pretrain", "csft"),
    "train": ("data", "encoder", "pretrain", "csft"),
    "eval": ("data", "encoder", "pretrain", "csft", "ctr"),
}

# Settings that change how fast or how visibly a stage runs, never what it writes.
RUNTIME_KEYS = frozenset({"threads", "workers", "device", "progress", "text_batch_size",
                          "image_batch_size"})

# Path settings, written resolved so the remembered config works from any folder.
PATH_KEYS = (("data", "path"), ("encoder", "text_model"), ("encoder", "image_model"))


@dataclass(frozen=True)
class Mismatch:
    """A setting on which two configs differ."""

    key: str
    remembered: Any
    given: Any


def resolved_dict(cfg: PipelineConfig) -> dict[str, Any]:
    """The config as plain data with its path settings made absolute."""
    raw = to_dict(cfg)
    for section, key in PATH_KEYS:
        if raw[section][key]:
            raw[section][key] = str(Path(raw[section][key]).expanduser().resolve())
    return raw


def write_run_config(out: Path, cfg: PipelineConfig) -> Path:
    """Write ``out/config.toml`` (atomically) and return its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_CONFIG
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    text = ("# The resolved config of this run folder, written by mimrec: later stages, eval and\n"
            "# serve read it, so `--out RUN` is enough. Edit with care: an edit to a section\n"
            "# that shaped finished stages is refused until those stages are run again.\n\n"
            + dumps(resolved_dict(cfg)))
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def read_run_config(out: Path) -> PipelineConfig | None:
    """The remembered config of a run folder, or None when it has none."""
    path = out / RUN_CONFIG
    return load_config(path) if path.is_file() else None


def differences(a: Any, b: Any, where: str = "") -> list[Mismatch]:
    """Settings that differ between two plain-data configs (runtime-only settings skipped)."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            if key in RUNTIME_KEYS:
                continue
            found += differences(a.get(key), b.get(key), f"{where}.{key}" if where else key)
        return found
    return [] if a == b else [Mismatch(where, a, b)]


def resolve_run_config(command: str, config: Path | None, overrides: list[str],
                       out: Path) -> PipelineConfig:
    """The config a command runs with: CONFIG (or the remembered one) plus ``--set``.

    ``run`` and ``data`` start the folder over, so they may change anything; a later stage is
    refused (one :class:`~mimrec.errors.ConfigError`) when its config differs from the remembered
    one in a section that shaped the stages before it.
    """
    remembered = read_run_config(out) if out.is_dir() else None
    if config is None:
        if remembered is None:
            raise ConfigError(f"{out / RUN_CONFIG} not found: give a CONFIG (e.g. `mimrec "
                              f"{command} configs/own_data.toml --out {out}`) for the first stage "
                              "run into a folder; later stages read the config it remembers")
        cfg = config_from_dict(resolved_dict(remembered), overrides)
    else:
        cfg = load_config(config, overrides)
    if remembered is not None:
        _check_agrees(command, remembered, cfg, out, config)
    return cfg


def _check_agrees(command: str, remembered: PipelineConfig, cfg: PipelineConfig, out: Path,
                  config: Path | None) -> None:
    old, new = resolved_dict(remembered), resolved_dict(cfg)
    for section in UPSTREAM[command]:
        found = differences(old[section], new[section], section)
        if found:
            m = found[0]
            given = f"{config}" if config is not None else "--set"
            raise ConfigError(
                f"{given} sets {m.key} = {m.given!r} but {out / RUN_CONFIG} says {m.remembered!r},"
                f" and {section} shaped the stages `{command}` reads ({len(found)} setting(s) "
                f"differ); run `mimrec run` with the new config into a new --out, or drop the "
                "change")
