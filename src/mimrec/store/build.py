"""The index stage: embed the whole catalogue once per vector source and store it.

Sources: ``raw`` (the pretrained text model's mean-pooled vectors, no training), ``pretrain`` (the
stage-1 encoder) and ``csft`` (the C-SFT encoder). Items that never occur in training are embedded
too: their content is known, and that is the cold-start win.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mimrec.artifacts import file_sha256, read_manifest, stage_dir, write_manifest
from mimrec.csft.retrieval import raw_text_vectors
from mimrec.encoders.checkpoint import load_item_encoder
from mimrec.encoders.config import EncoderConfig
from mimrec.encoders.text import default_text_model
from mimrec.pretrain.train import torch_threads
from mimrec.store.center import StoreInfo, write_version


def raw_vectors(cfg: EncoderConfig, items: pd.DataFrame) -> tuple[np.ndarray, StoreInfo]:
    """Mean-pooled vectors of the pretrained text model, untouched by any training."""
    folder = Path(cfg.text_model) if cfg.text_model else default_text_model()
    vectors = raw_text_vectors(cfg, items)
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    digest = file_sha256(weights[0]) if weights else "unknown"
    return vectors, StoreInfo("raw:" + folder.name, digest, vectors.shape[1])


def encoder_vectors(encoder_dir: Path, items: pd.DataFrame) -> tuple[np.ndarray, StoreInfo]:
    """Vectors of a trained encoder artifact (stage 1 or C-SFT)."""
    manifest = read_manifest(encoder_dir)
    encoder = load_item_encoder(encoder_dir)
    vectors = encoder.encode_items(items)
    return vectors, StoreInfo(manifest["stage"], manifest["hash"], vectors.shape[1])


def run_index(sources: dict[str, Path | None], encoder_cfg: EncoderConfig, items: pd.DataFrame,
              out: Path, parents: dict[str, Path], threads: int = 0) -> dict:
    """Build one store per source under ``out/<source>``; ``None`` as a path means ``raw``.
    ``threads``: torch CPU threads while encoding (0 = torch's default)."""
    metrics = {}
    with stage_dir(out) as tmp, torch_threads(threads):
        for name, encoder_dir in sources.items():
            if encoder_dir is None:
                vectors, info = raw_vectors(encoder_cfg, items)
            else:
                vectors, info = encoder_vectors(encoder_dir, items)
            write_version(tmp / name, items["item_id"].to_numpy(), vectors.astype(np.float32), info)
            metrics[name] = {"items": len(items), "dim": info.dim, "encoder": info.encoder}
        write_manifest(tmp, "index", {"sources": {k: str(v) for k, v in sources.items()}},
                       parents=parents, metrics=metrics)
    return metrics
