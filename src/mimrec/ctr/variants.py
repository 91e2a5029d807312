"""The named CTR models a report compares, resolved in one place from the base model config.

``din`` is the ID-only baseline: CiUBM with every content module off. ``content_only`` drops the
user and item ID embeddings and switches every content module on (``cold_id`` has no ID
embedding to fill there). ``ciubm`` switches on the content modules listed in
``ModelConfig.ciubm_modules`` (default: the four that read content into the model; the MovieLens
config keeps SA-TA + SimTier, MUSE's best pair, chosen on valid, plus ``cold_id``); each
``ciubm_no_*`` switches one of them off (the ablation rows; naming a module the set lacks gives
``ciubm`` itself).
``ciubm_raw`` and ``ciubm_pretrain`` are ``ciubm`` reading the raw pretrained text vectors or
the stage-1 vectors instead of the C-SFT ones.
"""

from __future__ import annotations

from dataclasses import replace

from mimrec.ctr.config import ContentSource, ModelConfig, Variant

_ALL_CONTENT = {"sa_ta": True, "simtier": True, "content_attention": True, "target_content": True,
                "cold_id": True}


def variant_config(base: ModelConfig, name: Variant) -> ModelConfig:
    """The model config of one named variant."""
    off = {key: False for key in _ALL_CONTENT}
    ciubm = {**off, **{key: True for key in base.ciubm_modules}}
    match name:
        case "din":
            return replace(base, **off, retrieval_k=0, use_user_id=True, use_item_id=True)
        case "content_only":
            return replace(base, **_ALL_CONTENT, use_user_id=False, use_item_id=False)
        case "ciubm" | "ciubm_raw" | "ciubm_pretrain":
            return replace(base, **ciubm)
        case "ciubm_no_sa_ta":
            return replace(base, **{**ciubm, "sa_ta": False})
        case "ciubm_no_simtier":
            return replace(base, **{**ciubm, "simtier": False})
        case "ciubm_no_content_attention":
            return replace(base, **{**ciubm, "content_attention": False})
        case "ciubm_no_target_content":
            return replace(base, **{**ciubm, "target_content": False})
        case "ciubm_no_cold_id":
            return replace(base, **{**ciubm, "cold_id": False})
        case "ciubm_no_retrieval":
            return replace(base, **ciubm, retrieval_k=0)
    raise AssertionError(f"unhandled variant {name}")  # pragma: no cover


def content_source(name: Variant, default: ContentSource) -> ContentSource:
    """Which vectors a variant reads: ``ciubm_raw`` / ``ciubm_pretrain`` fix theirs."""
    match name:
        case "ciubm_raw":
            return "raw"
        case "ciubm_pretrain":
            return "pretrain"
    return default
