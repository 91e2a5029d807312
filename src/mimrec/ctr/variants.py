"""The preset models a report compares, each resolved to a :class:`ModelSpec` in one place.

``din`` is the ID-only baseline: ID target attention only. ``content_only`` drops the user and
item ID embeddings and lists every content block (``cold_id`` has no ID embedding to fill
there). ``ciubm`` adds the content modules listed in ``ModelConfig.ciubm_modules`` (default: the
four content blocks; the MovieLens config keeps SA-TA + SimTier, MUSE's best pair, chosen on
valid, plus ``cold_id``); each ``ciubm_no_*`` drops one of them (the ablation rows; naming a
module the set lacks gives ``ciubm`` itself). ``ciubm_raw`` and ``ciubm_pretrain`` are ``ciubm``
reading the raw pretrained text vectors or the stage-1 vectors instead of the C-SFT ones.
With ``ctr.shuffled_controls`` every model that reads content gets its control
``<name>_shuffled``: the same model on vectors permuted across items, which says how much of its
gain is content's (``ModelSpec.shuffled_content``; never served).
Every ``ciubm*`` preset takes its training options (cold dropout) from ``ctr.ciubm``.
Combinations beyond these are data: ``[[ctr.models]]`` tables (see :class:`ModelSpec`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from mimrec.ctr.blocks import reads_content
from mimrec.ctr.config import BlockKind, ContentModule, ContentSource, CtrConfig, ModelSpec, Variant
from mimrec.errors import ConfigError

# Content blocks in tower-input order (the order the presets list them in).
CONTENT_BLOCKS: tuple[BlockKind, ...] = ("sa_ta", "simtier", "content_attention", "target_content",
                                          "content_taste")
# content_only has no user ID, so no per-user taste
CONTENT_ONLY_BLOCKS: tuple[BlockKind, ...] = CONTENT_BLOCKS[:4]


def preset(cfg: CtrConfig, name: Variant, kept: Collection[str] = ()) -> ModelSpec:
    """The spec of one preset model under a run's config. The ``ciubm`` presets start from the
    run's DIN when it trains one, or keeps one from an earlier run (``kept``: names of models
    the ctr artifact holds for every seed of the run), with ``ctr.model.ciubm_from_din``."""
    modules, k, source = cfg.model.ciubm_modules, cfg.model.retrieval_k, cfg.content_source
    has_din = "din" in cfg.variants or "din" in kept
    from_din = "din" if cfg.model.ciubm_from_din and has_din else ""

    def _ciubm(name: str, modules: tuple[ContentModule, ...], retrieval_k: int,
               source: ContentSource) -> ModelSpec:
        blocks = ("id_attention", *(b for b in CONTENT_BLOCKS if b in modules))
        return ModelSpec(name, blocks, cold_id="cold_id" in modules, retrieval_k=retrieval_k,
                         source=source, init_from=from_din,
                         cold_dropout=cfg.ciubm.cold_dropout,
                         cold_dropout_weight=cfg.ciubm.cold_dropout_weight)

    match name:
        case "din":
            return ModelSpec("din")
        case "content_only":
            return ModelSpec(name, ("id_attention", *CONTENT_ONLY_BLOCKS), cold_id=True, item_id=False,
                             user_id=False, retrieval_k=k, source=source)
        case "ciubm":
            return _ciubm(name, modules, k, source)
        case "ciubm_raw":
            return _ciubm(name, modules, k, "raw")
        case "ciubm_pretrain":
            return _ciubm(name, modules, k, "pretrain")
        case "ciubm_no_retrieval":
            return _ciubm(name, modules, 0, source)
        case ("ciubm_no_sa_ta" | "ciubm_no_simtier" | "ciubm_no_content_attention"
              | "ciubm_no_target_content" | "ciubm_no_content_taste" | "ciubm_no_cold_id"):
            dropped = name.removeprefix("ciubm_no_")
            return _ciubm(name, tuple(m for m in modules if m != dropped), k, source)
    raise AssertionError(f"unhandled preset {name}")  # pragma: no cover


def listed_specs(cfg: CtrConfig, kept: Collection[str] = ()) -> tuple[ModelSpec, ...]:
    """The models a config lists, unchecked: the presets of ``variants``, then ``models``, each
    content model followed by its shuffled-content control when ``ctr.shuffled_controls``."""
    specs = tuple(preset(cfg, name, kept) for name in cfg.variants) + cfg.models
    if not cfg.shuffled_controls:
        return specs
    out: list[ModelSpec] = []
    for spec in specs:
        out.append(spec)
        if reads_content(spec) and not spec.shuffled_content:
            out.append(replace(spec, name=f"{spec.name}_shuffled", shuffled_content=True))
    names = [spec.name for spec in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"ctr: model name {twice[0]!r} is also the name of a shuffled-content "
                          "control (ctr.shuffled_controls): rename the model, or set "
                          "ctr.shuffled_controls = false")
    return tuple(out)


def model_specs(cfg: CtrConfig, kept: Collection[str] = ()) -> tuple[ModelSpec, ...]:
    """Every model a run trains (:func:`listed_specs`); a model that starts from another must
    name one that starts from scratch, trained by this run or kept from an earlier one
    (``kept``: model names the ctr artifact holds for every seed)."""
    specs = listed_specs(cfg, kept)
    starts = {spec.name: spec.init_from for spec in specs}
    for name, source in starts.items():
        if source in kept and source not in starts:
            continue  # kept models started from scratch (only those are ever started from)
        if source and (source not in starts or starts[source]):
            raise ConfigError(f"ctr: model {name!r} starts from {source!r}, which must be a "
                              f"model of this run that starts from scratch ({list(starts)})")
    return specs
