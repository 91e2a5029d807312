"""The index stage: embed the whole catalogue once per vector source and store it.

Sources: ``raw`` (the pretrained text model's mean-pooled vectors, no training), ``pretrain`` (the
stage-1 encoder) and ``csft`` (the C-SFT encoder). Items that never occur in training are embedded
too: their content is known, and that is the cold-start win.

The safeguard: given the samples, every trained source is scored on protocol P2 (VALID split,
Recall@50) beside the raw vectors, and stored only when it scores higher; otherwise the raw vectors
are stored under that source's name (the store's encoder then reads ``raw:<model>``, so serving
embeds new items with the raw text model). The manifest records the figures and the choice, so the
vectors every later stage reads never retrieve worse on valid than the untrained text model.

Each source is encoded in shards (:mod:`mimrec.store.encode_shards`): a killed run resumes from
the finished shards, and under ``torchrun`` the workers share the shards and worker 0 writes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mimrec.artifacts import read_manifest, stage_dir, write_manifest
from mimrec.csft.distributed import rank
from mimrec.data.samples import Samples
from mimrec.encoders.checkpoint import load_item_encoder
from mimrec.encoders.config import EncoderConfig
from mimrec.encoders.raw_text import load_raw_text_encoder, raw_encoder_identity
from mimrec.eval.retrieval import p2_metrics
from mimrec.runtime import torch_threads
from mimrec.serialize import to_dict
from mimrec.store.center import StoreInfo, write_version
from mimrec.store.encode_shards import (
    SHARDS_DIR,
    ShardedRun,
    encode_in_shards,
    remove_shards,
    shard_folder,
)

SELECT_METRIC = "recall@50"  # the P2 (valid) figure a trained source must beat raw on
TIE_BREAK = "mrr"  # decides when both score the same on SELECT_METRIC


def raw_vectors(cfg: EncoderConfig, items: pd.DataFrame, shards: Path
                ) -> tuple[np.ndarray | None, StoreInfo, ShardedRun]:
    """Mean-pooled vectors of the pretrained text model, untouched by any training (None on a
    worker other than 0 under torchrun)."""
    name, digest = raw_encoder_identity(cfg)
    identity = f"{name}:{digest}:{cfg.text_fields}:{cfg.text_max_length}"
    encoder = load_raw_text_encoder(cfg)
    folder = shard_folder(shards, "raw", identity, items["item_id"].to_numpy())
    vectors, run = encode_in_shards(encoder.vectors, items, folder, "raw")
    dim = vectors.shape[1] if vectors is not None else 0
    return vectors, StoreInfo(name, digest, dim), run


def encoder_vectors(encoder_dir: Path, items: pd.DataFrame, name: str, shards: Path
                    ) -> tuple[np.ndarray | None, StoreInfo, ShardedRun]:
    """Vectors of a trained encoder artifact (stage 1 or C-SFT); an item without any usable
    content gets the zero vector (see :mod:`mimrec.data.content`)."""
    manifest = read_manifest(encoder_dir)
    encoder = load_item_encoder(encoder_dir)
    folder = shard_folder(shards, name, f"{manifest['stage']}:{manifest['hash']}",
                          items["item_id"].to_numpy())
    vectors, run = encode_in_shards(lambda part: encoder.encode_items(part, allow_empty=True),
                                    items, folder, name)
    dim = vectors.shape[1] if vectors is not None else 0
    return vectors, StoreInfo(manifest["stage"], manifest["hash"], dim), run


def beats_raw(trained: dict[str, float], raw: dict[str, float]) -> bool:
    """Whether trained vectors score strictly higher than raw on the selection figure; on a tie,
    on MRR (a catalogue of at most 50 items puts every source's Recall@50 at 1.0, and the tie
    would otherwise keep raw text vectors, and no image tower, for any small catalogue).

    With no valid query to judge by (NaN), the trained vectors are kept.
    """
    ours, theirs = trained[SELECT_METRIC], raw[SELECT_METRIC]
    if math.isnan(ours) or math.isnan(theirs):
        return True
    if tied(trained, raw):
        return trained[TIE_BREAK] > raw[TIE_BREAK]
    return ours > theirs


def tied(trained: dict[str, float], raw: dict[str, float]) -> bool:
    """Whether the two P2 figures tie on the selection figure and can be told apart on MRR."""
    return (trained[SELECT_METRIC] == raw[SELECT_METRIC] and TIE_BREAK in trained
            and TIE_BREAK in raw)


def run_index(sources: dict[str, Path | None], encoder_cfg: EncoderConfig, items: pd.DataFrame,
              out: Path, parents: dict[str, Path], threads: int = 0,
              samples: Samples | None = None, shards: Path | None = None) -> dict:
    """Build one store per source under ``out/<source>``; ``None`` as a path means ``raw``.

    Args:
        sources: store name -> trained encoder artifact, or None for the raw vectors.
        encoder_cfg: names the raw text model and the item text fields.
        items: the catalogue, in the samples' item index order.
        out: the index artifact folder (replaced atomically).
        parents: artifacts read, recorded in the manifest.
        threads: torch CPU threads while encoding (0 = torch's default).
        samples: the P1 samples; given, each trained source is kept only when it beats the raw
            vectors on P2 (VALID) Recall@50, else raw vectors are stored in its place.
        shards: where the encoding shards live until the stores are written (default
            ``out/../.index-shards``; a rerun after a kill reuses the finished ones).

    Returns:
        Per store: ``items``, ``dim``, ``encoder``, ``encoding`` (items encoded now, shards
        reused, seconds, items/s), and with samples ``p2_valid`` (of the trained vectors),
        ``raw_p2_valid`` and ``vectors`` ("trained" or "raw": what the store holds). Empty on a
        worker other than 0 under torchrun (it encodes its shards; worker 0 writes).
    """
    shards = shards or Path(out).parent / SHARDS_DIR
    encoded: dict[str, tuple[np.ndarray | None, StoreInfo, ShardedRun]] = {}
    with torch_threads(threads):
        for name, encoder_dir in sources.items():
            if encoder_dir is None or samples is not None:
                if "raw" not in encoded:
                    encoded["raw"] = raw_vectors(encoder_cfg, items, shards)
            if encoder_dir is not None:
                encoded[name] = encoder_vectors(encoder_dir, items, name, shards)
    if rank() != 0:
        return {}
    metrics = {}
    raw = encoded["raw"][:2] if "raw" in encoded else None
    raw_p2 = None  # raw vectors' P2, computed once for every trained source
    with stage_dir(out) as tmp:
        for name, encoder_dir in sources.items():
            vectors, info, run = encoded["raw" if encoder_dir is None else name]
            assert vectors is not None
            record: dict = {"encoding": run.record()}
            if encoder_dir is not None and samples is not None:
                assert raw is not None and raw[0] is not None
                raw_p2 = raw_p2 or p2_metrics(raw[0], samples)
                record["p2_valid"] = p2_metrics(vectors, samples)
                record["raw_p2_valid"] = raw_p2
                record["vectors"] = "trained" if beats_raw(record["p2_valid"],
                                                           record["raw_p2_valid"]) else "raw"
                if record["vectors"] == "raw":
                    vectors, info = raw
            write_version(tmp / name, items["item_id"].to_numpy(),
                          vectors.astype(np.float32, copy=False), info)  # no copy
            metrics[name] = {"items": len(items), "dim": info.dim, "encoder": info.encoder, **record}
        config = {"sources": {k: str(v) for k, v in sources.items()},
                  "encoder": to_dict(encoder_cfg), "select_metric": f"p2_valid {SELECT_METRIC}"}
        write_manifest(tmp, "index", config, parents=parents, metrics=metrics)
    remove_shards(shards)
    return metrics


def encoding_line(name: str, m: dict) -> str:
    """``raw: 1,682 items encoded in 3.1 s (543 items/s); 0 of 1 shards reused``."""
    e = m.get("encoding")
    return ShardedRun.from_record(e).line(name) if e is not None else f"{name}: encoded"


def choice_line(name: str, m: dict) -> str:
    """One line saying what the store ``name`` holds and why (the terminal's account of a run)."""
    head = f"{name}: {m['items']:,} items x {m['dim']}"
    if "vectors" not in m:
        return head
    ours, raw = m["p2_valid"][SELECT_METRIC], m["raw_p2_valid"][SELECT_METRIC]
    ratio = f" = {ours / raw:.2f}x raw" if raw > 0 else ""
    tie = ""
    if tied(m["p2_valid"], m["raw_p2_valid"]):
        tie = (f"; a tie, broken on MRR {m['p2_valid'][TIE_BREAK]:.4f} vs raw "
               f"{m['raw_p2_valid'][TIE_BREAK]:.4f}")
    if m["vectors"] == "trained":
        return (f"{head}, trained vectors kept (valid P2 Recall@50 {ours:.4f}{ratio}, raw "
                f"{raw:.4f}{tie})")
    return (f"{head}: the {name} vectors do not beat raw on valid P2 (Recall@50 {ours:.4f} vs raw "
            f"{raw:.4f}{tie}); storing the raw vectors as '{name}'")
