"""Stage 2 training, C-SFT: fine-tune a stage-1 item encoder on behaviour pairs.

Pairs (trigger -> next engaged item of the same user, TRAIN split only) are embedded by the
encoder; the multi-level InfoNCE scores each anchor against the keys of the whole step (all
data-parallel workers) and a FIFO queue of earlier keys. What trains: the projections, optionally
the attribute tower, the fusion weights and the top ``text_trainable_layers`` text layers (the
frozen bottom runs once and is cached), plus the temperature.

Early stopping: after every epoch (and before the first: the stage-1 vectors, epoch 0) the
catalogue's fused vectors are scored on protocol P2, VALID split, Recall@50; training stops after
``patience`` epochs without a higher score and the best epoch's weights are restored. So C-SFT
never hands on vectors that retrieve worse on valid than the stage-1 vectors it started from
(worker 0 scores, every worker follows its score). Progress, P2 per epoch, P2 of raw / stage-1 /
C-SFT vectors and the artifact (the saved encoder + manifest) are the outputs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from mimrec.artifacts import stage_dir, write_manifest
from mimrec.csft import distributed as dist
from mimrec.csft.config import CsftConfig
from mimrec.csft.losses import ContrastiveBatch, LossOutput, MultiLevelInfoNCE
from mimrec.csft.pairs import Pairs, behaviour_pairs
from mimrec.csft.queue import EmbeddingQueue
from mimrec.data.samples import Samples
from mimrec.data.stage import DataArtifact
from mimrec.early_stopping import BestEpoch
from mimrec.encoders.checkpoint import load_stage_encoder, save_item_encoder
from mimrec.encoders.item_encoder import ItemEncoder
from mimrec.encoders.raw_text import raw_text_vectors
from mimrec.encoders.sources import ItemSources, catalogue_vectors, item_views
from mimrec.errors import MimrecError
from mimrec.eval.retrieval import p2_metrics
from mimrec.runtime import torch_threads
from mimrec.serialize import to_dict

PRETRAIN_STAGE = "pretrain"
SELECT_METRIC = "recall@50"  # the P2 (valid) figure early stopping and the index stage select on

STAGE = "csft"


def build_loss(cfg: CsftConfig, dim: int) -> MultiLevelInfoNCE:
    """The configured multi-level loss for an encoder of dimension ``dim``."""
    too_big = [d for d in cfg.matryoshka_dims if d >= dim]
    if cfg.matryoshka_weight > 0 and too_big:
        raise MimrecError(f"csft.matryoshka_dims {too_big} must be smaller than the encoder "
                          f"dimension {dim} (the full vector is the fused level)")
    return MultiLevelInfoNCE(cfg.fused_weight, cfg.modality_weight, cfg.matryoshka_weight,
                             cfg.matryoshka_dims, cfg.symmetric, cfg.temperature_init,
                             cfg.max_logit_scale)


def encoder_parameters(encoder: ItemEncoder, cfg: CsftConfig) -> list[dict[str, Any]]:
    """Optimizer groups of what C-SFT trains; every other encoder weight is frozen."""
    heads = [encoder.text_projection, encoder.image_projection, encoder.attribute_projection]
    if cfg.train_attributes:
        heads.append(encoder.attribute_tower)
    head_params = [p for m in heads if m is not None for p in m.parameters()]
    text = encoder.text_top_parameters(cfg.text_trainable_layers)
    fusion = [encoder.fusion.logits] if cfg.train_fusion and encoder.cfg.fusion == "gated" else []
    encoder.requires_grad_(False)
    for p in head_params + text + fusion:
        p.requires_grad_(True)
    groups = [{"params": head_params, "lr": cfg.lr, "weight_decay": cfg.weight_decay}]
    if fusion:
        groups.append({"params": fusion, "lr": cfg.lr, "weight_decay": 0.0})
    if text:
        groups.append({"params": text, "lr": cfg.text_lr, "weight_decay": 0.0})
    return groups


def pair_batch(encoder: ItemEncoder, sources: ItemSources, pairs: Pairs,
               idx: np.ndarray) -> ContrastiveBatch:
    """Embed one worker's pairs ``idx``: every distinct item once, then index anchors and keys."""
    anchor, positive = pairs.anchor[idx], pairs.positive[idx]
    rows, inverse = np.unique(np.concatenate([anchor, positive]), return_inverse=True)
    fused, per, present = item_views(encoder, sources, torch.as_tensor(rows))
    a, k = torch.as_tensor(inverse[: len(idx)]), torch.as_tensor(inverse[len(idx):])
    return ContrastiveBatch(fused[a], per[a], present[a], fused[k], torch.as_tensor(anchor),
                            torch.as_tensor(positive), torch.as_tensor(pairs.weight[idx]))


def worker_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """This worker's slice of each shuffled global batch of ``world_size x batch_size`` pairs.

    Every worker draws the same permutation (same seed), so the slices partition each global
    batch; an incomplete last global batch is dropped.
    """
    world, rank = dist.world_size(), dist.rank()
    order = rng.permutation(n)
    step = batch_size * world
    for start in range(0, n - step + 1, step):
        yield order[start + rank * batch_size : start + (rank + 1) * batch_size]


def train_step(encoder: ItemEncoder, sources: ItemSources, loss_fn: MultiLevelInfoNCE,
               queue: EmbeddingQueue, pairs: Pairs, idx: np.ndarray,
               opt: torch.optim.Optimizer, synced: list[nn.Parameter]) -> LossOutput:
    """One optimisation step on this worker's pairs ``idx``; the step's keys then join the queue.

    Args:
        synced: encoder parameters whose gradients are summed over the workers.
    """
    out = loss_fn(pair_batch(encoder, sources, pairs, idx), queue)
    opt.zero_grad(set_to_none=True)
    out.total.backward()
    dist.all_reduce_gradients(synced)
    opt.step()
    queue.push(out.keys, out.key_ids)
    return out


def valid_score(encoder: ItemEncoder, sources: ItemSources, samples: Samples) -> float:
    """P2 (VALID) Recall@50 of the encoder's catalogue vectors, scored on worker 0 and shared."""
    score = float("nan")
    if dist.rank() == 0:
        score = p2_metrics(catalogue_vectors(encoder, sources), samples)[SELECT_METRIC]
    return dist.broadcast_float(score)


def train(encoder: ItemEncoder, sources: ItemSources, loss_fn: MultiLevelInfoNCE, pairs: Pairs,
          cfg: CsftConfig, rng: np.random.Generator, samples: Samples) -> dict[str, Any]:
    """Up to ``cfg.epochs`` over the pairs, early-stopped on P2 (VALID) Recall@50, best restored.

    Returns the loss per epoch, the valid score per epoch (index 0 = before training), the
    epoch kept, and what a step saw.
    """
    steps = len(pairs) // (cfg.batch_size * dist.world_size())
    if steps == 0:
        raise MimrecError(f"C-SFT has {len(pairs)} pairs, fewer than one step needs "
                          f"(batch_size {cfg.batch_size} x {dist.world_size()} workers)")
    groups = encoder_parameters(encoder, cfg)
    synced = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW([*groups, {"params": list(loss_fn.parameters()), "lr": cfg.lr,
                                       "weight_decay": 0.0}])
    queue = EmbeddingQueue(cfg.queue_size, encoder.cfg.dim)
    best = BestEpoch([*synced, *loss_fn.parameters()], cfg.patience)
    best.update(0, valid_score(encoder, sources, samples))
    history, levels, out = [], {}, None
    with Progress(disable=not cfg.progress or dist.rank() != 0) as bar:
        task = bar.add_task("C-SFT", total=steps * cfg.epochs)
        for epoch in range(1, cfg.epochs + 1):
            losses, level_sums = [], {}
            for idx in worker_batches(len(pairs), cfg.batch_size, rng):
                out = train_step(encoder, sources, loss_fn, queue, pairs, idx, opt, synced)
                losses.append(float(out.total.detach()))
                for name, value in out.levels.items():
                    level_sums[name] = level_sums.get(name, 0.0) + value
                bar.update(task, advance=1,
                           description=f"C-SFT epoch {epoch}/{cfg.epochs} loss {losses[-1]:.3f}")
            history.append(float(np.mean(losses)))
            levels = {name: s / len(losses) for name, s in level_sums.items()}
            if best.update(epoch, valid_score(encoder, sources, samples)):
                break
    kept = best.restore()
    encoder.requires_grad_(False)
    return {"loss": history, "last_epoch_levels": levels, "steps": steps * len(history),
            f"valid_p2_{SELECT_METRIC}_by_epoch": best.scores, "best_epoch": kept,
            "epochs_run": len(history),
            "in_batch_candidates": out.in_batch if out else 0,
            "queue_candidates": out.queued if out else 0,
            "temperature": float(1.0 / loss_fn.scale.detach())}


def training_pairs(samples, sources: ItemSources, cfg: CsftConfig,
                   rng: np.random.Generator) -> Pairs:
    """Behaviour pairs of the TRAIN split whose two items can both be embedded."""
    pairs = behaviour_pairs(samples, cfg.min_label, cfg.window_steps, cfg.window_seconds,
                            cfg.max_pairs_per_user, cfg.pair_weight, rng)
    ok = sources.present.any(dim=1).numpy()
    keep = ok[pairs.anchor] & ok[pairs.positive]
    return Pairs(*(getattr(pairs, f)[keep] for f in ("anchor", "positive", "user", "weight")))


def p2_table(encoder: ItemEncoder, sources: ItemSources, data: DataArtifact,
             before: np.ndarray, raw: bool) -> dict[str, dict[str, float]]:
    """P2 on VALID: raw text vectors (optional), stage-1 vectors ``before``, the tuned encoder."""
    table = {}
    if raw and encoder.text_tower is not None:
        table["raw"] = p2_metrics(raw_text_vectors(encoder.cfg, data.items), data.samples)
    table["pretrain"] = p2_metrics(before, data.samples)
    table["csft"] = p2_metrics(catalogue_vectors(encoder, sources), data.samples)
    return table


def fine_tune(cfg: CsftConfig, encoder_dir: Path,
              data: DataArtifact) -> tuple[ItemEncoder, dict[str, Any]]:
    """Load the stage-1 encoder, fine-tune it on the data's pairs; returns it and its metrics.

    P2 figures (``p2_valid``) are computed on worker 0 only.
    """
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    encoder = load_stage_encoder(Path(encoder_dir), PRETRAIN_STAGE)
    sources = ItemSources(encoder, data.items.reset_index(drop=True), cfg.text_trainable_layers, 0)
    pairs = training_pairs(data.samples, sources, cfg, rng)
    loss_fn = build_loss(cfg, encoder.cfg.dim)
    lead = dist.rank() == 0
    before = catalogue_vectors(encoder, sources) if lead else None
    trained = train(encoder, sources, loss_fn, pairs, cfg, rng, data.samples)
    metrics: dict[str, Any] = {"pairs": len(pairs), "pair_users": len(np.unique(pairs.user)),
                               "world_size": dist.world_size(), **trained}
    if lead:
        metrics["p2_valid"] = p2_table(encoder, sources, data, before, cfg.eval_raw)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    return encoder, metrics


def run_csft(cfg: CsftConfig, encoder_dir: Path, data: DataArtifact, out: Path) -> dict[str, Any]:
    """Stage 2: fine-tune the stage-1 encoder of ``encoder_dir`` on ``data`` and save it to ``out``.

    Works alone or inside a ``torch.distributed`` process group (``torchrun -m mimrec csft ...``);
    there, worker 0 writes the artifact and the others wait for it.

    Args:
        cfg: the stage config (``[csft]``).
        encoder_dir: a finished pretrain artifact (the stage-1 encoder).
        data: the data artifact (P1 samples and the catalogue the encoder embeds).
        out: the artifact folder to write: the saved encoder (see
            :mod:`mimrec.encoders.checkpoint`) plus ``manifest.json``; replaced atomically.

    Returns:
        The metrics (also in the manifest): pair counts, loss per epoch, the last epoch's level
        losses, ``valid_p2_recall@50_by_epoch`` (index 0 = the stage-1 vectors), ``best_epoch``
        (the one kept; 0 = none beat the stage-1 vectors), ``epochs_run``, candidates per step,
        the learned temperature, ``p2_valid`` = P2 on VALID of the kept vectors as
        ``{"raw": {...}, "pretrain": {...}, "csft": {...}}`` with ``recall@10``, ``recall@50``,
        ``mrr`` each (worker 0 only), and wall ``seconds``.
    """
    with torch_threads(cfg.threads):
        encoder, metrics = fine_tune(cfg, Path(encoder_dir), data)
    if dist.rank() == 0:
        config = {"csft": to_dict(cfg), "encoder": to_dict(encoder.cfg)}
        with stage_dir(Path(out)) as folder:
            save_item_encoder(encoder, folder)
            write_manifest(folder, STAGE, config, metrics=metrics,
                           parents={"pretrain": Path(encoder_dir), "data": data.folder})
    dist.barrier()
    return metrics


def load_csft_encoder(folder: Path) -> ItemEncoder:
    """The item encoder of a finished csft artifact (a clear MimrecError otherwise)."""
    return load_stage_encoder(Path(folder), STAGE)
