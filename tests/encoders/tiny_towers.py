"""Tiny random towers saved to disk and a toy catalogue, for the encoder and pretrain tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

WORDS = [
    "toy",
    "story",
    "golden",
    "eye",
    "four",
    "rooms",
    "comedy",
    "drama",
    "action",
    "thriller",
    "animation",
    "children",
    "romance",
    "war",
    "horror",
    "film",
    "movie",
    "the",
    "a",
    "of",
    "and",
    "dress",
    "shirt",
    "coat",
    "bag",
    "sneaker",
    "sandal",
    "trouser",
    "pullover",
    "boot",
    "photo",
]


def save_tiny_text_model(folder: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide random BERT and a WordPiece tokenizer, saved with save_pretrained."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,'-/")
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *WORDS,
        *chars,
        *(f"##{c}" for c in chars),
    ]
    index = {token: i for i, token in enumerate(dict.fromkeys(vocab))}
    tokenizer = BertTokenizerFast(vocab=index, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_image_weights(path: Path, seed: int = 0) -> Path:
    """A randomly initialised EfficientNet-Lite0 state dict as .safetensors."""
    from safetensors.torch import save_file

    from mimrec.encoders.image import build_backbone

    torch.manual_seed(seed)
    net = build_backbone("efficientnet-lite0", 32)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    return path


def toy_items(n: int = 12, with_images: bool = True, seed: int = 0) -> pd.DataFrame:
    """A small catalogue: title/year/genres text, attribute tokens, and images on even rows."""
    rng = np.random.default_rng(seed)
    genres = ["Comedy", "Drama", "Action", "Thriller", "Animation"]
    rows = []
    for i in range(n):
        image = (
            rng.integers(0, 256, (28, 28), dtype=np.uint8) if with_images and i % 2 == 0 else None
        )
        rows.append(
            {
                "item_id": str(i + 1),
                "title": f"{WORDS[i % 6]} {WORDS[(i * 3) % 7]} {i}",
                "year": str(1990 + i % 8),
                "genres": [genres[i % 5], genres[(i + 2) % 5]],
                "attributes": [f"actor:a{i % 4}", f"genre:g{i % 3}", f"director:d{i % 2}"],
                "image": image,
            }
        )
    return pd.DataFrame(rows)
