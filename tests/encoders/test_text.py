"""Text tower: loading a local HF folder, pooling, the frozen/trainable cut, item texts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from mimrec.encoders.text import item_texts, load_text_tower, mean_pool
from mimrec.errors import MimrecError

TEXTS = ["toy story. 1995. comedy", "dress", "golden eye action thriller war film", "a"]


def test_tiny_folder_loads_and_pools_like_sentence_transformers(tiny_text_dir: Path) -> None:
    tower = load_text_tower(tiny_text_dir, max_length=16)
    ids, mask = tower.collate(tower.tokenize(TEXTS))
    with torch.no_grad():
        hidden = tower.model(input_ids=ids, attention_mask=mask).last_hidden_state
        out = tower(ids, mask)
    manual = torch.stack([hidden[i, : int(mask[i].sum())].mean(0) for i in range(len(TEXTS))])
    assert out.shape == (len(TEXTS), tower.dim)
    torch.testing.assert_close(out, manual)


def test_padding_and_batching_do_not_change_a_text_vector(tiny_text_dir: Path) -> None:
    tower = load_text_tower(tiny_text_dir, max_length=16).eval()
    together = tower.encode(TEXTS, batch_size=3)
    alone = torch.cat([tower.encode([t]) for t in TEXTS])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_max_length_truncates(tiny_text_dir: Path) -> None:
    tower = load_text_tower(tiny_text_dir, max_length=5)
    assert max(len(t) for t in tower.tokenize(TEXTS)) == 5


@pytest.mark.parametrize("cut", [0, 1, 2])
def test_cut_tower_equals_whole_tower(tiny_text_dir: Path, cut: int) -> None:
    tower = load_text_tower(tiny_text_dir, max_length=16).eval()
    ids, mask = tower.collate(tower.tokenize(TEXTS))
    with torch.no_grad():
        split = tower.pooled_from(tower.hidden_at(ids, mask, cut), mask, cut)
        torch.testing.assert_close(split, tower(ids, mask), atol=1e-5, rtol=1e-5)


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]


def test_item_texts_join_fields_and_lists() -> None:
    items = pd.DataFrame(
        {
            "title": ["Toy Story", "Nameless"],
            "year": ["1995", None],
            "genres": [["Animation", "Children's", "Comedy"], []],
        }
    )
    assert item_texts(items, ("title", "year", "genres")) == [
        "Toy Story. 1995. Animation, Children's, Comedy",
        "Nameless",
    ]


def test_item_texts_names_a_missing_column() -> None:
    with pytest.raises(MimrecError, match="'plot'"):
        item_texts(pd.DataFrame({"title": ["x"]}), ("title", "plot"))


def test_missing_or_corrupt_model_folder_is_a_clear_error(
    tmp_path: Path, tiny_text_dir: Path
) -> None:
    with pytest.raises(MimrecError, match=str(tmp_path / "nope")):
        load_text_tower(tmp_path / "nope", 16)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_text_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(MimrecError, match="broken"):
        load_text_tower(broken, 16)
