"""The trained text tower as a sentence-transformers / Hugging Face model folder.

The folder holds, at its root, the fine-tuned transformer and its tokenizer as
``save_pretrained`` writes them (``transformers.AutoModel`` / ``AutoTokenizer`` load it), and the
sentence-transformers module files that turn it into the item encoder's text modality vector:
mean pooling over the attention mask (``1_Pooling``), the text projection to the item space
(``2_Dense``, a linear layer without activation) and L2 normalisation (``3_Normalize``).
``SentenceTransformer(folder).encode(texts)`` therefore gives :meth:`ItemEncoder.project` of the
text tower's output, which for an item with text only is its item vector.

The image tower (EfficientNet-Lite0) is not a Hugging Face architecture and is not exported here;
the full encoder stays readable with :func:`mimrec.encoders.checkpoint.load_item_encoder`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from mimrec.encoders.item_encoder import ItemEncoder
from mimrec.errors import MimrecError

POOLING_DIR, DENSE_DIR, NORMALIZE_DIR = "1_Pooling", "2_Dense", "3_Normalize"


def _modules() -> list[dict]:
    st = "sentence_transformers.models."
    return [{"idx": 0, "name": "0", "path": "", "type": st + "Transformer"},
            {"idx": 1, "name": "1", "path": POOLING_DIR, "type": st + "Pooling"},
            {"idx": 2, "name": "2", "path": DENSE_DIR, "type": st + "Dense"},
            {"idx": 3, "name": "3", "path": NORMALIZE_DIR, "type": st + "Normalize"}]


def _write_json(path: Path, data: dict | list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def export_text_model(encoder: ItemEncoder, folder: str | Path) -> Path:
    """Write ``encoder``'s text tower and text projection into ``folder`` (replaced whole,
    written to a temporary folder first).

    Args:
        encoder: a trained item encoder with a text tower.
        folder: the target folder.

    Returns the folder. Raises :class:`MimrecError` when the encoder has no text tower.
    """
    tower, projection = encoder.text_tower, encoder.text_projection
    if tower is None or projection is None:
        raise MimrecError("this encoder has no text tower (encoder.use_text is off): "
                          "nothing to export")
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tower.model.save_pretrained(tmp, safe_serialization=True)
    tower.tokenizer.save_pretrained(tmp)
    hidden, dim = projection.in_features, projection.out_features
    _write_json(tmp / "modules.json", _modules())
    _write_json(tmp / "sentence_bert_config.json",
                {"max_seq_length": tower.max_length, "do_lower_case": False})
    _write_json(tmp / POOLING_DIR / "config.json", {
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False, "include_prompt": True})
    _write_json(tmp / DENSE_DIR / "config.json", {
        "in_features": hidden, "out_features": dim, "bias": True,
        "activation_function": "torch.nn.modules.linear.Identity"})
    save_file({"linear.weight": projection.weight.detach().contiguous().cpu(),
               "linear.bias": projection.bias.detach().contiguous().cpu()},
              tmp / DENSE_DIR / "model.safetensors")
    (tmp / NORMALIZE_DIR).mkdir()
    _write_json(tmp / "config_sentence_transformers.json",
                {"similarity_fn_name": "cosine", "prompts": {}, "default_prompt_name": None})
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


@torch.inference_mode()
def text_vectors(encoder: ItemEncoder, texts: list[str]) -> torch.Tensor:
    """The text modality vectors the exported folder reproduces. Shapes: N texts -> (N, D)."""
    from mimrec.encoders.fusion import Modality

    if encoder.text_tower is None:
        raise MimrecError("this encoder has no text tower (encoder.use_text is off)")
    return encoder.project(Modality.TEXT, encoder.text_tower.encode(texts))
