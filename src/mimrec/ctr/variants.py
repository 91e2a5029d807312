"""The named CTR models a report compares, resolved in one place from the base model config.

``din`` is the ID-only baseline: CiUBM with every content module off.
"""

from __future__ import annotations

from dataclasses import replace

from mimrec.ctr.config import ModelConfig, Variant


def variant_config(base: ModelConfig, name: Variant) -> ModelConfig:
    """The model config of one named variant."""
    match name:
        case "din":
            return replace(base, use_user_id=True, use_item_id=True)
    raise AssertionError(f"unhandled variant {name}")  # pragma: no cover
