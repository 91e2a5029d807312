"""Command-line entry of stage 2, alone or data-parallel under ``torchrun`` (gloo on CPU).

    python -m mimrec.csft.main --data RUN/data --encoder RUN/pretrain --out RUN/csft
    torchrun --nproc_per_node=2 -m mimrec.csft.main --data RUN/data --encoder RUN/pretrain \
        --out RUN/csft --set batch_size=128

``--config`` reads the ``[csft]`` table of a TOML file; ``--set key=value`` (or ``csft.key=value``)
overrides it. With N workers every step sees N x ``batch_size`` in-batch candidates; worker 0
writes the artifact and prints the metrics as JSON. User mistakes print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from mimrec.errors import ConfigError, MimrecError


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``python -m mimrec.csft.main``."""
    parser = argparse.ArgumentParser(prog="python -m mimrec.csft.main",
                                     description="C-SFT: fine-tune a stage-1 item encoder on "
                                                 "behaviour pairs (torchrun for data parallel).")
    parser.add_argument("--data", type=Path, required=True, help="the data artifact folder")
    parser.add_argument("--encoder", type=Path, required=True, help="the pretrain artifact folder")
    parser.add_argument("--out", type=Path, required=True, help="the csft artifact folder to write")
    parser.add_argument("--config", type=Path, help="TOML file whose [csft] table is read")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a csft value, e.g. queue_size=0")
    return parser


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string


def csft_config(path: Path | None, overrides: list[str]):
    """The :class:`CsftConfig` of a TOML file's ``[csft]`` table plus ``key=value`` overrides."""
    from mimrec.config import from_dict
    from mimrec.csft.config import CsftConfig

    raw: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = dict(tomllib.loads(path.read_text()).get("csft", {}))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value (e.g. queue_size=0), got {item!r}")
        raw[key.strip().removeprefix("csft.")] = _value(text.strip())
    return from_dict(CsftConfig, raw, "csft")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        from mimrec.csft.distributed import process_group_from_env, rank
        from mimrec.csft.train import run_csft
        from mimrec.data.stage import read_data

        cfg = csft_config(args.config, args.overrides)
        with process_group_from_env():
            metrics = run_csft(cfg, args.encoder, read_data(args.data), args.out)
            if rank() == 0:
                print(json.dumps(metrics, indent=2, default=str))
    except MimrecError as exc:
        print(f"mimrec csft: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
