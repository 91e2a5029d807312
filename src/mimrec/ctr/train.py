"""Training of a CTR model: Adam, BCE, embedding L2, early stopping on valid AUC, best restored."""

from __future__ import annotations

import copy
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from mimrec.ctr.config import TrainConfig
from mimrec.data.samples import Samples
from mimrec.eval.metrics import auc


@dataclass
class Batchable:
    """Model inputs of one split as tensors in model index space (0 = padding / unknown).

    Shapes: ``user`` (N,), ``item`` (N,), ``history`` (N, L), ``label`` (N,).
    """

    user: torch.Tensor
    item: torch.Tensor
    history: torch.Tensor
    label: torch.Tensor

    def __len__(self) -> int:
        return len(self.label)

    def take(self, idx: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
        return tuple(t[idx].to(device, non_blocking=True)
                     for t in (self.user, self.item, self.history, self.label))


def batchable(samples: Samples, split: int) -> Batchable:
    """Tensors of one split; catalogue rows r become model indices r + 1 (-1 padding -> 0)."""
    s = samples.subset(split)
    return Batchable(
        user=torch.as_tensor(s["user"] + 1),
        item=torch.as_tensor(s["item"] + 1),
        history=torch.as_tensor(s["history"] + 1),
        label=torch.as_tensor(s["label"], dtype=torch.float32),
    )


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch; optionally make torch's kernels deterministic.

    Deterministic mode matters on the CPU too: the multi-threaded scatter-add behind embedding
    gradients otherwise sums in a varying order, and two runs with one seed drift apart.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


@torch.inference_mode()
def predict(model: nn.Module, data: Batchable, batch_size: int = 4096) -> np.ndarray:
    """Click probabilities for every sample of ``data``, in order."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        user, item, history, _ = data.take(idx, device)
        out.append(torch.sigmoid(model(user, item, history)).float().cpu())
    return torch.cat(out).numpy()


def embedding_penalty(model: nn.Module, l2: float) -> torch.Tensor | float:
    """``l2 / 2 * sum ||E||^2`` over the model's embedding tables."""
    if l2 <= 0:
        return 0.0
    return 0.5 * l2 * sum(e.weight.pow(2).sum() for e in model.embeddings())


def train_epoch(model: nn.Module, data: Batchable, opt: torch.optim.Optimizer,
                cfg: TrainConfig, progress: Progress | None, epoch: int) -> float:
    """One pass over ``data`` in a random order; returns the mean BCE loss."""
    model.train()
    device = next(model.parameters()).device
    order = torch.randperm(len(data))
    loss_fn = nn.BCEWithLogitsLoss()
    total, steps = 0.0, 0
    task = progress.add_task(f"epoch {epoch}", total=len(data)) if progress else None
    for start in range(0, len(data), cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        user, item, history, label = data.take(idx, device)
        loss = loss_fn(model(user, item, history), label)
        opt.zero_grad(set_to_none=True)
        (loss + embedding_penalty(model, cfg.embedding_l2)).backward()
        opt.step()
        total, steps = total + loss.item(), steps + 1
        if progress:
            progress.update(task, advance=len(idx))
    if progress:
        progress.remove_task(task)
    return total / max(steps, 1)


def fit(model: nn.Module, train: Batchable, valid: Batchable, cfg: TrainConfig,
        progress: Progress | None = None) -> list[dict]:
    """Train with early stopping on valid AUC; the best epoch's weights are restored in place.

    Returns one record per epoch: ``epoch``, ``train_loss``, ``valid_auc``.
    """
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    best_auc, best_state, since_best, log = -1.0, None, 0, []
    for epoch in range(1, cfg.max_epochs + 1):
        loss = train_epoch(model, train, opt, cfg, progress, epoch)
        valid_auc = auc(valid.label.numpy(), predict(model, valid))
        log.append({"epoch": epoch, "train_loss": loss, "valid_auc": valid_auc})
        if valid_auc > best_auc:
            best_auc, best_state, since_best = valid_auc, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if since_best >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return log
