"""Stage 1 training: domain adaptation of the text tower, then modal alignment of the towers.

1. Domain adaptation: the top ``text_trainable_layers`` of the text tower train with unsupervised
   SimCSE on the training items' own texts (the rest of the tower is frozen and cached).
2. Modal alignment: symmetric InfoNCE with a learnable temperature between every pair of
   switched-on modalities an item has (text<->attributes on MovieLens; image<->text where items
   have images). Projections, the attribute tower, the temperature and the top
   ``image_trainable_blocks`` of the image tower train (its BatchNorm statistics stay frozen:
   the image tower runs in eval mode); the adapted text tower is frozen.

The fusion weights get no gradient here (no loss looks at the fused vector); stage 2 trains them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from mimrec.artifacts import stage_dir, write_manifest
from mimrec.data.samples import Samples
from mimrec.early_stopping import BestEpoch
from mimrec.encoders.attributes import build_vocab
from mimrec.encoders.checkpoint import load_stage_encoder, save_item_encoder
from mimrec.encoders.config import EncoderConfig
from mimrec.encoders.features import TextFeatures
from mimrec.encoders.fusion import Modality
from mimrec.encoders.item_encoder import ItemEncoder, build_item_encoder
from mimrec.encoders.sources import ItemSources, catalogue_vectors
from mimrec.errors import MimrecError
from mimrec.eval.retrieval import p2_metrics
from mimrec.pretrain.config import PretrainConfig
from mimrec.pretrain.evaluate import paired_recall_at_k
from mimrec.pretrain.losses import SymmetricInfoNCE, simcse_loss
from mimrec.runtime import torch_threads

STAGE = "pretrain"
SELECT_METRIC = "recall@50"  # the P2 (valid) figure alignment is early-stopped on
PAIRS = (
    (Modality.TEXT, Modality.ATTRIBUTES),
    (Modality.IMAGE, Modality.TEXT),
    (Modality.IMAGE, Modality.ATTRIBUTES),
)


def split_items(
    item_ids: pd.Series, train_item_ids: Sequence[str] | None, cfg: PretrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Rows used for pre-training and rows held out for evaluation.

    Args:
        item_ids: the catalogue's item ids (strings).
        train_item_ids: ids pre-training may use, all others held out; None = hold out
            ``round(holdout_fraction * N)`` ids drawn with ``default_rng(seed)`` from sorted ids.
        cfg: the stage config.
    """
    ids = item_ids.astype(str).to_numpy()
    if train_item_ids is None:
        rng = np.random.default_rng(cfg.seed)
        held = rng.choice(np.sort(ids), size=round(cfg.holdout_fraction * len(ids)), replace=False)
        is_train = ~np.isin(ids, held)
    else:
        is_train = np.isin(ids, np.asarray([str(i) for i in train_item_ids]))
    if not is_train.any():
        raise MimrecError("pre-training has no items: train_item_ids names none of the catalogue")
    return np.flatnonzero(is_train), np.flatnonzero(~is_train)


def batches(rows: np.ndarray, size: int, rng: np.random.Generator) -> Iterator[torch.Tensor]:
    """Shuffled mini-batches of ``rows`` (the last one dropped when it has fewer than 2 rows)."""
    order = rng.permutation(rows)
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        if len(chunk) >= 2:
            yield torch.as_tensor(chunk, dtype=torch.long)


def head_parameters(encoder: ItemEncoder) -> list[nn.Parameter]:
    """Projections and the attribute tower: what alignment trains at the main learning rate."""
    modules = [
        encoder.text_projection,
        encoder.image_projection,
        encoder.attribute_projection,
        encoder.attribute_tower,
    ]
    return [p for m in modules if m is not None for p in m.parameters()]


def run_epochs(
    loss_of: Callable[[torch.Tensor], torch.Tensor | None],
    rows: np.ndarray,
    batch_size: int,
    epochs: int,
    opt: torch.optim.Optimizer,
    rng: np.random.Generator,
    after_epoch: Callable[[int], bool] | None = None,
) -> list[float]:
    """Plain training loop over shuffled mini-batches of ``rows``; returns the mean loss per epoch.

    Args:
        loss_of: the loss of one batch of rows (None skips the batch).
        rows: the training rows.
        batch_size: rows per step.
        epochs: at most this many passes over ``rows``.
        opt: the optimizer of the trainable parameters.
        rng: shuffles the rows.
        after_epoch: called with the 1-based epoch after each pass; True stops training.
    """
    history = []
    for epoch in range(1, epochs + 1):
        losses = []
        for batch in batches(rows, batch_size, rng):
            loss = loss_of(batch)
            if loss is None:
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)) if losses else float("nan"))
        if after_epoch is not None and after_epoch(epoch):
            break
    return history


def adapt_text(
    encoder: ItemEncoder,
    text: TextFeatures | None,
    rows: np.ndarray,
    cfg: PretrainConfig,
    rng: np.random.Generator,
) -> list[float]:
    """Domain adaptation: SimCSE on the texts of ``rows``; returns the mean loss per epoch."""
    params = encoder.text_top_parameters(cfg.text_trainable_layers)
    if text is None or not params or cfg.adapt_epochs == 0:
        return []
    encoder.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.adapt_lr, weight_decay=0.0)

    def loss_of(batch: torch.Tensor) -> torch.Tensor:
        noise = cfg.simcse_state_dropout
        z1, z2 = text.pooled(batch, noise), text.pooled(batch, noise)  # (B, H) two dropout views
        return simcse_loss(z1, z2, cfg.simcse_temperature)

    encoder.text_tower.train()
    try:
        return run_epochs(loss_of, rows, cfg.adapt_batch_size, cfg.adapt_epochs, opt, rng)
    finally:
        encoder.text_tower.eval()
        encoder.requires_grad_(False)


def alignment_optimizer(
    encoder: ItemEncoder, loss_fn: SymmetricInfoNCE, cfg: PretrainConfig
) -> torch.optim.Optimizer:
    """AdamW over what alignment trains (all else frozen): heads + temperature, top image blocks."""
    heads = head_parameters(encoder) + list(loss_fn.parameters())
    image = encoder.image_top_parameters(cfg.image_trainable_blocks)
    encoder.requires_grad_(False)
    for p in heads + image:
        p.requires_grad_(True)
    groups = [{"params": heads, "lr": cfg.lr, "weight_decay": cfg.weight_decay}]
    if image:
        groups.append({"params": image, "lr": cfg.image_lr, "weight_decay": 0.0})
    return torch.optim.AdamW(groups)


def active_pairs(sources: ItemSources) -> list[tuple[Modality, Modality]]:
    """Modality pairs that some item has both of."""
    return [
        (a, b)
        for a, b in PAIRS
        if bool((sources.present[:, a.value] & sources.present[:, b.value]).any())
    ]


def alignment_loss(
    sources: ItemSources,
    loss_fn: SymmetricInfoNCE,
    rows: torch.Tensor,
    pairs: Sequence[tuple[Modality, Modality]],
) -> torch.Tensor | None:
    """Sum over modality pairs of the InfoNCE between the rows that have both (None if none do)."""
    total = None
    for a, b in pairs:
        both = rows[sources.present[rows, a.value] & sources.present[rows, b.value]]
        if len(both) < 2:
            continue
        loss = loss_fn(sources.embed(a, both), sources.embed(b, both))
        total = loss if total is None else total + loss
    return total


def align(
    encoder: ItemEncoder,
    sources: ItemSources,
    loss_fn: SymmetricInfoNCE,
    rows: np.ndarray,
    cfg: PretrainConfig,
    rng: np.random.Generator,
    score: Callable[[], float],
) -> tuple[list[float], BestEpoch]:
    """Modal alignment over ``rows``, early-stopped on ``score`` (higher is better; epoch 0 =
    before alignment) with the best epoch's weights restored.

    Returns the mean loss per epoch run and the selection record.
    """
    pairs = active_pairs(sources)
    opt = alignment_optimizer(encoder, loss_fn, cfg)
    best = BestEpoch([p for g in opt.param_groups for p in g["params"]], cfg.patience)
    best.update(0, score())
    try:
        history = run_epochs(
            lambda batch: alignment_loss(sources, loss_fn, batch, pairs),
            rows,
            cfg.align_batch_size,
            cfg.align_epochs,
            opt,
            rng,
            after_epoch=lambda epoch: best.update(epoch, score()),
        )
        best.restore()
        return history, best
    finally:
        encoder.requires_grad_(False)


@torch.no_grad()
def cross_modal_recall(sources: ItemSources, rows: np.ndarray, k: int) -> dict[str, float]:
    """Recall@k of each active modality pair (a -> b) over the ``rows`` that have both.

    Keys look like ``text->attributes_recall@10``; ``..._n`` holds the number of items ranked.
    """
    out: dict[str, float] = {}
    rows_t = torch.as_tensor(rows, dtype=torch.long)
    for a, b in active_pairs(sources):
        both = rows_t[sources.present[rows_t, a.value] & sources.present[rows_t, b.value]]
        name = f"{a.name.lower()}->{b.name.lower()}_recall@{k}"
        if len(both) < 2:
            continue
        out[name] = paired_recall_at_k(sources.embed(a, both), sources.embed(b, both), k)
        out[f"{a.name.lower()}->{b.name.lower()}_n"] = len(both)
    return out


def recall_metrics(before: dict[str, float], after: dict[str, float], k: int) -> dict[str, float]:
    """``<pair>_recall@k_before`` / ``_after`` / ``_chance`` (k over the items ranked)."""
    out = {f"{name}_before": v for name, v in before.items() if not name.endswith("_n")}
    out |= {f"{name}_after": v for name, v in after.items() if not name.endswith("_n")}
    out |= {
        f"{name.removesuffix('_n')}_recall@{k}_chance": min(1.0, k / v)
        for name, v in after.items()
        if name.endswith("_n")
    }
    return out


def selection_score(
    encoder: ItemEncoder,
    sources: ItemSources,
    held_rows: np.ndarray,
    cfg: PretrainConfig,
    samples: Samples | None,
) -> tuple[str, Callable[[], float]]:
    """What alignment is early-stopped on, and a function scoring the encoder's current state.

    ``select_on`` "p2" with behaviour samples: P2 (VALID) Recall@50 of the catalogue's fused
    vectors. Otherwise (or "heldout"): the mean held-out cross-modal Recall@k, stage 1's own
    metric (NaN without a held-out pair: no selection).
    """
    if cfg.select_on == "p2" and samples is not None:
        def p2() -> float:
            return p2_metrics(catalogue_vectors(encoder, sources), samples)[SELECT_METRIC]

        return f"p2_valid_{SELECT_METRIC}", p2

    def heldout() -> float:
        found = [v for k, v in cross_modal_recall(sources, held_rows, cfg.recall_k).items()
                 if not k.endswith("_n")]
        return float(np.mean(found)) if found else float("nan")

    return f"heldout_recall@{cfg.recall_k}", heldout


def p2_comparison(raw: np.ndarray | None, trained: np.ndarray,
                  samples: Samples | None) -> dict[str, dict[str, float]]:
    """P2 (VALID) of the raw text vectors and of the stage-1 vectors (empty without samples)."""
    if samples is None:
        return {}
    table = {"raw": p2_metrics(raw, samples)} if raw is not None else {}
    return table | {"pretrain": p2_metrics(trained, samples)}


def train_encoder(
    cfg: PretrainConfig,
    encoder_cfg: EncoderConfig,
    items: pd.DataFrame,
    train_item_ids: Sequence[str] | None = None,
    samples: Samples | None = None,
) -> tuple[ItemEncoder, dict[str, Any]]:
    """Build, adapt and align an encoder on a catalogue; returns it with its metrics (no files).

    Args: as :func:`run_pretrain`.
    """
    started = time.perf_counter()
    items = items.reset_index(drop=True)
    train_rows, held_rows = split_items(items["item_id"], train_item_ids, cfg)
    vocab: tuple[str, ...] = ()
    if encoder_cfg.use_attributes and "attributes" in items.columns:
        vocab = build_vocab(items["attributes"].iloc[train_rows], encoder_cfg.attribute_min_count)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    encoder = build_item_encoder(encoder_cfg, vocab).eval()
    sources = ItemSources(encoder, items, cfg.text_trainable_layers, cfg.image_trainable_blocks)
    before = cross_modal_recall(sources, held_rows, cfg.recall_k)
    raw = raw_pooled(sources) if samples is not None else None
    train_text = train_rows[sources.present[train_rows, Modality.TEXT.value].numpy()]
    adapt = adapt_text(encoder, sources.text, train_text, cfg, rng)
    sources.freeze_text()
    loss_fn = SymmetricInfoNCE(cfg.temperature_init, cfg.max_logit_scale)
    select_on, score = selection_score(encoder, sources, held_rows, cfg, samples)
    aligned, best = align(encoder, sources, loss_fn, train_rows, cfg, rng, score)
    after = cross_modal_recall(sources, held_rows, cfg.recall_k)
    metrics: dict[str, Any] = {
        "items_train": len(train_rows),
        "items_heldout": len(held_rows),
        "attribute_vocab": len(vocab),
        "adapt_loss": adapt,
        "align_loss": aligned,
        "select_on": select_on,
        "select_by_epoch": best.scores,
        "best_epoch": best.kept,
        "epochs_run": len(aligned),
        "temperature": float(1.0 / loss_fn.scale.item()),
        **recall_metrics(before, after, cfg.recall_k),
        "p2_valid": p2_comparison(raw, catalogue_vectors(encoder, sources), samples),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return encoder, metrics


def raw_pooled(sources: ItemSources) -> np.ndarray | None:
    """The untouched text model's normalised pooled vectors (call before adaptation)."""
    if sources.text is None:
        return None
    return F.normalize(sources.text.all_pooled(), dim=-1).numpy().astype(np.float32)


def run_pretrain(
    cfg: PretrainConfig,
    encoder_cfg: EncoderConfig,
    items: pd.DataFrame,
    out: Path,
    train_item_ids: Sequence[str] | None = None,
    parents: dict[str, Path] | None = None,
    inputs: tuple[Path, ...] = (),
    samples: Samples | None = None,
) -> dict[str, Any]:
    """Stage 1 on a catalogue: adapt + align an item encoder and write it as a pretrain artifact.

    Args:
        cfg: the stage config (``[pretrain]``).
        encoder_cfg: the encoder config (``[encoder]``).
        items: the standard items table (``item_id``, the ``text_fields``, optional ``image`` and
            ``attributes``), every catalogue item.
        out: the artifact folder to write: the saved encoder (see
            :mod:`mimrec.encoders.checkpoint`) plus ``manifest.json``; replaced atomically.
        train_item_ids: items pre-training may use; the others are held out and only evaluated.
            None = hold out ``cfg.holdout_fraction`` of the catalogue (deterministic).
        parents: artifacts this stage read, recorded in the manifest.
        inputs: data files read, hashed into the manifest.
        samples: the P1 samples (catalogue index space = ``items`` row order); given, alignment
            is early-stopped on P2 (VALID) Recall@50 (``cfg.select_on`` "p2") and P2 of the raw
            and stage-1 vectors is reported.

    Returns:
        The metrics (also in the manifest): losses per epoch, ``select_on``, the selection score
        per epoch (``select_by_epoch``, index 0 = before alignment), ``best_epoch`` (the one
        kept), learned temperature, held-out cross-modal Recall@k before and after training (e.g.
        ``text->attributes_recall@10_before`` / ``_after`` / ``_chance``), ``p2_valid`` (``raw``
        and ``pretrain``; with samples), wall ``seconds``.
    """
    from mimrec.serialize import to_dict

    with torch_threads(cfg.threads):
        encoder, metrics = train_encoder(cfg, encoder_cfg, items, train_item_ids, samples)
    config = {"encoder": to_dict(encoder_cfg), "pretrain": to_dict(cfg)}
    with stage_dir(Path(out)) as folder:
        save_item_encoder(encoder, folder)
        write_manifest(folder, STAGE, config, parents=parents, metrics=metrics, inputs=inputs)
    return metrics


def load_pretrained_encoder(folder: Path) -> ItemEncoder:
    """The item encoder of a finished pretrain artifact (a clear MimrecError otherwise)."""
    return load_stage_encoder(Path(folder), STAGE)
