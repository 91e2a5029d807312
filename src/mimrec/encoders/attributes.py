"""Attribute tower: a learned bag of content tokens (cast, crew, brand, category, ...).

The vocabulary is built from a catalogue: a token enters it if it occurs in at least
``min_count`` items. Tokens outside the vocabulary are ignored; an item none of whose tokens is
known has no attribute modality (the fusion then uses its other modalities).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn


def attribute_tokens(value: object) -> list[str]:
    """One item's tokens from a list/array of tokens, a space-separated string, or None/NaN."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value]


def build_vocab(token_lists: Iterable[object], min_count: int) -> tuple[str, ...]:
    """Sorted tokens that occur in at least ``min_count`` items (each item counted once)."""
    counts = Counter(t for tokens in token_lists for t in set(attribute_tokens(tokens)))
    return tuple(sorted(t for t, c in counts.items() if c >= min_count))


class AttributeTower(nn.Module):
    """Mean of learned token embeddings over an item's known tokens.

    Args:
        vocab: the token vocabulary (position = embedding row).
        dim: E, the embedding size.

    Shapes: forward takes flat token ids (T,) and bag offsets (B,) and returns (B, E).
    """

    def __init__(self, vocab: Sequence[str], dim: int) -> None:
        super().__init__()
        if not vocab:
            raise ValueError("the attribute vocabulary is empty: no token occurs often enough")
        self.vocab = tuple(vocab)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.bag = nn.EmbeddingBag(len(self.vocab), dim, mode="mean")
        nn.init.normal_(self.bag.weight, std=dim**-0.5)

    @property
    def dim(self) -> int:
        """E, the embedding size."""
        return self.bag.embedding_dim

    def token_ids(
        self, values: Sequence[object]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Known token ids of many items as ``(ids (T,), offsets (B,), present (B,) bool)``."""
        rows = [[self.index[t] for t in attribute_tokens(v) if t in self.index] for v in values]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        offsets = torch.cumsum(lengths, 0) - lengths
        ids = torch.tensor([i for r in rows for i in r], dtype=torch.long)
        return ids, offsets, lengths > 0

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.bag(ids, offsets)  # (B, E); an empty bag gives zeros

    def encode(self, values: Sequence[object]) -> tuple[torch.Tensor, torch.Tensor]:
        """Bag vectors and presence of many items. Shapes: N items -> (N, E), (N,) bool."""
        ids, offsets, present = self.token_ids(values)
        return self(ids, offsets), present
