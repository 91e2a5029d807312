"""Stage 2 training, C-SFT: fine-tune a stage-1 item encoder on behaviour pairs.

Pairs (trigger -> next engaged item of the same user, TRAIN split only) are embedded by the
encoder; the multi-level InfoNCE scores each anchor against the keys of the whole step (all
data-parallel workers) and a FIFO queue of earlier keys. What trains: the projections, optionally
the attribute tower, the fusion weights and the top ``text_trainable_layers`` text layers (the
frozen bottom runs once and is cached), plus the temperature. Progress, P2 retrieval before and
after, and the artifact (the saved encoder + manifest) are the outputs.
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
from mimrec.config import to_dict
from mimrec.csft import distributed as dist
from mimrec.csft.config import CsftConfig
from mimrec.csft.losses import ContrastiveBatch, LossOutput, MultiLevelInfoNCE
from mimrec.csft.pairs import Pairs, behaviour_pairs
from mimrec.csft.queue import EmbeddingQueue
from mimrec.csft.retrieval import p2_metrics, raw_text_vectors
from mimrec.data.stage import DataArtifact
from mimrec.encoders.checkpoint import save_item_encoder
from mimrec.encoders.fusion import Modality
from mimrec.encoders.item_encoder import ItemEncoder
from mimrec.errors import MimrecError
from mimrec.pretrain.sources import ItemSources
from mimrec.pretrain.train import load_pretrained_encoder, text_top_parameters, torch_threads

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
    text = text_top_parameters(encoder, cfg.text_trainable_layers)
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


def item_views(encoder: ItemEncoder, sources: ItemSources,
               rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused and per-modality embeddings of catalogue rows (each must have some modality).

    Shapes: rows (N,) -> fused (N, D), per-modality (N, M, D) (zeros where absent), present (N, M).
    """
    present = sources.present[rows]  # (N, M)
    views = []
    for m in Modality:
        has = torch.nonzero(present[:, m.value]).squeeze(1)
        view = torch.zeros((len(rows), encoder.cfg.dim))
        if has.numel():
            view = view.index_copy(0, has, sources.embed(m, rows[has]))
        views.append(view)
    per = torch.stack(views, dim=1)  # (N, M, D)
    return encoder.fusion(per, present), per, present


def pair_batch(encoder: ItemEncoder, sources: ItemSources, pairs: Pairs,
               idx: np.ndarray) -> ContrastiveBatch:
    """Embed one worker's pairs ``idx``: every distinct item once, then index anchors and keys."""
    anchor, positive = pairs.anchor[idx], pairs.positive[idx]
    rows, inverse = np.unique(np.concatenate([anchor, positive]), return_inverse=True)
    fused, per, present = item_views(encoder, sources, torch.as_tensor(rows))
    a, k = torch.as_tensor(inverse[: len(idx)]), torch.as_tensor(inverse[len(idx):])
    return ContrastiveBatch(fused[a], per[a], present[a], fused[k], torch.as_tensor(anchor),
                            torch.as_tensor(positive), torch.as_tensor(pairs.weight[idx]))


@torch.no_grad()
def catalogue_vectors(encoder: ItemEncoder, sources: ItemSources, chunk: int = 512) -> np.ndarray:
    """Fused vectors of every catalogue row (zeros for rows with no modality). Shapes: (I, D)."""
    n = sources.present.shape[0]
    out = torch.zeros((n, encoder.cfg.dim))
    rows = torch.nonzero(sources.present.any(dim=1)).squeeze(1)
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        out[part] = item_views(encoder, sources, part)[0]
    return out.numpy().astype(np.float32)


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


def train(encoder: ItemEncoder, sources: ItemSources, loss_fn: MultiLevelInfoNCE, pairs: Pairs,
          cfg: CsftConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Run ``cfg.epochs`` over the pairs; returns the loss per epoch and what a step saw."""
    steps = len(pairs) // (cfg.batch_size * dist.world_size())
    if steps == 0:
        raise MimrecError(f"C-SFT has {len(pairs)} pairs, fewer than one step needs "
                          f"(batch_size {cfg.batch_size} x {dist.world_size()} workers)")
    groups = encoder_parameters(encoder, cfg)
    synced = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW([*groups, {"params": list(loss_fn.parameters()), "lr": cfg.lr,
                                       "weight_decay": 0.0}])
    queue = EmbeddingQueue(cfg.queue_size, encoder.cfg.dim)
    history, levels, out = [], {}, None
    with Progress(disable=not cfg.progress or dist.rank() != 0) as bar:
        task = bar.add_task("C-SFT", total=steps * cfg.epochs)
        for epoch in range(cfg.epochs):
            losses, level_sums = [], {}
            for idx in worker_batches(len(pairs), cfg.batch_size, rng):
                out = train_step(encoder, sources, loss_fn, queue, pairs, idx, opt, synced)
                losses.append(float(out.total.detach()))
                for name, value in out.levels.items():
                    level_sums[name] = level_sums.get(name, 0.0) + value
                bar.update(task, advance=1,
                           description=f"C-SFT epoch {epoch + 1}/{cfg.epochs} loss {losses[-1]:.3f}")
            history.append(float(np.mean(losses)))
            levels = {name: s / len(losses) for name, s in level_sums.items()}
    encoder.requires_grad_(False)
    return {"loss": history, "last_epoch_levels": levels, "steps": steps * cfg.epochs,
            "in_batch_candidates": out.in_batch, "queue_candidates": out.queued,
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
    encoder = load_pretrained_encoder(Path(encoder_dir))
    sources = ItemSources(encoder, data.items.reset_index(drop=True), cfg.text_trainable_layers, 0)
    pairs = training_pairs(data.samples, sources, cfg, rng)
    loss_fn = build_loss(cfg, encoder.cfg.dim)
    lead = dist.rank() == 0
    before = catalogue_vectors(encoder, sources) if lead else None
    trained = train(encoder, sources, loss_fn, pairs, cfg, rng)
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
        losses, candidates per step, the learned temperature, ``p2_valid`` = P2 on VALID as
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
    from mimrec.artifacts import require_stage
    from mimrec.encoders.checkpoint import load_item_encoder

    require_stage(Path(folder), STAGE)
    return load_item_encoder(Path(folder))
