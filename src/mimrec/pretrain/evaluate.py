"""Stage-1 evaluation: cross-modal retrieval on held-out items; protocol P3 zero-shot figures."""

from __future__ import annotations

import torch


def paired_recall_at_k(queries: torch.Tensor, candidates: torch.Tensor, k: int) -> float:
    """Share of queries whose own partner (same row) ranks in the top ``k`` candidates by cosine.

    Ties count against the query (a candidate scoring equal to the partner ranks above it), so a
    constant embedding scores 0, not 1.

    Shapes: queries, candidates (N, D) L2-normalised -> float.
    """
    scores = queries @ candidates.T  # (N, N)
    own = scores.diagonal().unsqueeze(1)  # (N, 1)
    others = scores >= own
    others.fill_diagonal_(False)
    rank = others.sum(dim=1)  # (N,) candidates at least as close as the partner
    return float((rank < k).float().mean())


def zero_shot_metrics(
    image_emb: torch.Tensor, labels: torch.Tensor, prompt_emb: torch.Tensor
) -> dict[str, float]:
    """Protocol P3 figures from image embeddings and one prompt embedding per class.

    ``zero_shot_acc``: share of images whose most similar prompt is their class's. ``i2t_r1``:
    image->text Recall@1 over the class prompts (each image has exactly one relevant prompt, so it
    equals ``zero_shot_acc``). ``t2i_r1``: text->image Recall@1: share of prompts whose most
    similar image is of their class. ``t2i_p100``: mean precision of each prompt's 100 nearest
    images (a finer-grained text->image figure than Recall@1 over 10 queries).

    Shapes: image_emb (N, D), labels (N,), prompt_emb (C, D), all L2-normalised -> dict.
    """
    scores = image_emb @ prompt_emb.T  # (N, C)
    predicted = scores.argmax(dim=1)
    acc = float((predicted == labels).float().mean())
    nearest = scores.argmax(dim=0)  # (C,) image index per prompt
    classes = torch.arange(prompt_emb.shape[0])
    t2i = float((labels[nearest] == classes).float().mean())
    top = scores.topk(min(100, scores.shape[0]), dim=0).indices  # (100, C)
    p100 = float((labels[top] == classes[None, :]).float().mean())
    return {"zero_shot_acc": acc, "i2t_r1": acc, "t2i_r1": t2i, "t2i_p100": p100}
