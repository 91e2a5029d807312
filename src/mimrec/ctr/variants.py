"""The named CTR models a report compares, resolved in one place from the base model config.

``din`` is the ID-only baseline: CiUBM with every content module off. ``content_only`` drops the
user and item ID embeddings and keeps the content modules. ``ciubm`` switches every content module
on; each ``ciubm_no_*`` switches one off (the ablation rows). ``ciubm_raw`` and ``ciubm_pretrain``
are the full model reading the raw pretrained text vectors or the stage-1 vectors instead of the
C-SFT ones.
"""

from __future__ import annotations

from dataclasses import replace

from mimrec.ctr.config import ContentSource, ModelConfig, Variant

_ALL_CONTENT = {"sa_ta": True, "simtier": True, "content_attention": True, "target_content": True}


def variant_config(base: ModelConfig, name: Variant) -> ModelConfig:
    """The model config of one named variant."""
    match name:
        case "din":
            off = {key: False for key in _ALL_CONTENT}
            return replace(base, **off, retrieval_k=0, use_user_id=True, use_item_id=True)
        case "content_only":
            return replace(base, **_ALL_CONTENT, use_user_id=False, use_item_id=False)
        case "ciubm" | "ciubm_raw" | "ciubm_pretrain":
            return replace(base, **_ALL_CONTENT)
        case "ciubm_no_sa_ta":
            return replace(base, **{**_ALL_CONTENT, "sa_ta": False})
        case "ciubm_no_simtier":
            return replace(base, **{**_ALL_CONTENT, "simtier": False})
        case "ciubm_no_content_attention":
            return replace(base, **{**_ALL_CONTENT, "content_attention": False})
        case "ciubm_no_target_content":
            return replace(base, **{**_ALL_CONTENT, "target_content": False})
        case "ciubm_no_retrieval":
            return replace(base, **_ALL_CONTENT, retrieval_k=0)
    raise AssertionError(f"unhandled variant {name}")  # pragma: no cover


def content_source(name: Variant, default: ContentSource) -> ContentSource:
    """Which vectors a variant reads: ``ciubm_raw`` / ``ciubm_pretrain`` fix theirs."""
    match name:
        case "ciubm_raw":
            return "raw"
        case "ciubm_pretrain":
            return "pretrain"
    return default
