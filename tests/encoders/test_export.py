"""The trained text tower exported as a sentence-transformers / Hugging Face folder: plain
transformers loads it and, with the exported pooling and projection, reproduces the vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mimrec.encoders.export import export_text_model, text_vectors
from mimrec.encoders.item_encoder import ItemEncoder
from mimrec.encoders.text import item_texts
from mimrec.errors import MimrecError


def test_transformers_loads_the_export_and_reproduces_the_text_vectors(
        tiny_encoder: ItemEncoder, items: pd.DataFrame, tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    with torch.no_grad():  # a "trained" tower: not the weights of the folder it came from
        for p in tiny_encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    folder = export_text_model(tiny_encoder, tmp_path / "st")
    texts = item_texts(items, tiny_encoder.cfg.text_fields)
    expected = text_vectors(tiny_encoder, texts).numpy()

    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    dense = load_file(folder / "2_Dense" / "model.safetensors")
    batch = tokenizer(texts, padding=True, truncation=True,
                      max_length=json.loads((folder / "sentence_bert_config.json").read_text())
                      ["max_seq_length"], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (N, L, H)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)  # 1_Pooling: mean over real tokens
    projected = pooled @ dense["linear.weight"].T + dense["linear.bias"]  # 2_Dense
    vectors = torch.nn.functional.normalize(projected, dim=-1).numpy()  # 3_Normalize
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Dense",
                                                              "Normalize"]
    assert not list(tmp_path.glob(".*tmp"))


def test_sentence_transformers_reproduces_the_vectors_when_installed(
        tiny_encoder: ItemEncoder, items: pd.DataFrame, tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    folder = export_text_model(tiny_encoder, tmp_path / "st")
    texts = item_texts(items, tiny_encoder.cfg.text_fields)
    model = st.SentenceTransformer(str(folder), device="cpu")
    np.testing.assert_allclose(model.encode(texts), text_vectors(tiny_encoder, texts).numpy(),
                               atol=1e-5)


def test_an_encoder_without_text_has_nothing_to_export(tiny_encoder, tmp_path):
    tiny_encoder.text_tower = None
    with pytest.raises(MimrecError, match="no text tower"):
        export_text_model(tiny_encoder, tmp_path / "st")
