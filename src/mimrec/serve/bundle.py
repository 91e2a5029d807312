"""A trained bundle, read from a run folder: the CTR model, the Representation Center its content
vectors come from, the encoder that built that store, and the catalogue.

Nothing here imports training code (``mimrec.ctr.train``, ``mimrec.pretrain``, ``mimrec.csft``):
the service loads weights and tables, it never fits anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from mimrec.artifacts import require_stage
from mimrec.ctr.blocks import reads_content
from mimrec.ctr.config import CtrConfig, ModelSpec
from mimrec.ctr.features import FeatureTables, feature_tables
from mimrec.ctr.model import CiUBM
from mimrec.data.config import DataConfig
from mimrec.data.samples import Samples
from mimrec.data.stage import read_data
from mimrec.encoders.checkpoint import load_item_encoder
from mimrec.encoders.config import EncoderConfig
from mimrec.encoders.item_encoder import ItemEncoder
from mimrec.encoders.raw_text import (
    RAW_PREFIX,
    RawTextEncoder,
    load_raw_text_encoder,
    raw_encoder_identity,
)
from mimrec.errors import MimrecError
from mimrec.eval.selection import best_seed, valid_best
from mimrec.serialize import from_dict
from mimrec.store.center import RepresentationCenter, StoreInfo

# Encoder artifacts that can embed a new item; a store of raw vectors ("raw:<model>") embeds new
# items with the raw text model the index manifest names.
ENCODER_STAGES = ("pretrain", "csft")


@dataclass
class ServingBundle:
    """Everything the service reads at start-up.

    ``store`` is None for an ID-only model: it cannot score items added after training.
    """

    run: Path
    model_key: str  # "<model>-seed<k>"
    model: CiUBM
    tables: FeatureTables
    items: pd.DataFrame  # the training catalogue, in model index order (row r = index r + 1)
    users: pd.DataFrame | None
    user_ids: np.ndarray  # (U,) str, row u = user index u + 1
    samples: Samples
    store: Path | None
    store_info: StoreInfo | None
    encoder: ItemEncoder | RawTextEncoder | None  # embeds items added while serving
    user_features: tuple[str, ...]
    max_seq_len: int
    data_folder: Path | None = None  # the user's data folder (relative image paths start here)


def choose_model(metrics: dict, wanted: str | None, baseline: str = "din",
                 margin: float = 0.0) -> str:
    """The model key to serve: ``wanted`` (a model name, its best valid seed, or
    "<model>-seed<k>"), or by default the valid-best model (:mod:`mimrec.eval.selection`: the
    ID-only baseline unless a content model did better on valid), its best valid seed."""
    if not metrics:
        raise MimrecError("the ctr artifact holds no trained model")
    if wanted in metrics:
        return wanted
    names = {record["model"] for record in metrics.values()}
    if wanted and wanted not in names:
        raise MimrecError(f"model {wanted!r} is not in this run; trained: {', '.join(metrics)}")
    return best_seed(metrics, wanted or valid_best(metrics, baseline, margin))


def load_bundle(run: str | Path, model: str | None = None) -> ServingBundle:
    """Read the bundle of a finished run folder (``mimrec run`` / ``make demo`` output).

    Args:
        run: the run folder (holding data/, ctr/ and, for content models, index/ and the encoder).
        model: which trained model to serve (see :func:`choose_model`).
    """
    run = Path(run)
    if not run.is_dir():
        raise MimrecError(f"run folder not found: {run}")
    manifest = require_stage(run / "ctr", "ctr")
    data = read_data(run / "data")
    if any("spec" not in record for record in manifest["metrics"].values()):
        raise MimrecError(f"{run / 'ctr'} was trained by an earlier mimrec (its models do not "
                          "describe themselves): run `mimrec train` on this folder again")
    ctr_cfg = from_dict(CtrConfig, manifest["config"]["ctr"], "ctr")
    data_cfg = from_dict(DataConfig, manifest["config"]["data"], "data")
    key = choose_model(manifest["metrics"], model, margin=ctr_cfg.select_margin)
    spec = from_dict(ModelSpec, manifest["metrics"][key]["spec"], f"model {key}")

    items = data.items
    tables = feature_tables(data, data_cfg)
    store = store_info = None
    content = encoder = None
    if reads_content(spec):
        store = run / "index" / spec.source
        center = RepresentationCenter(store)
        store_info = StoreInfo(**{k: manifest["metrics"][key]["content"][k]
                                  for k in ("encoder", "encoder_hash", "dim", "dtype")})
        center.check_compatible(store_info)
        content = content_rows(center, items["item_id"].astype(str).to_numpy())[0]
        encoder = store_encoder(run, store_info)
    net = CiUBM(ctr_cfg.model, spec, tables, content)
    weights = run / "ctr" / f"{key}.safetensors"
    if not weights.is_file():
        raise MimrecError(f"model weights missing: {weights}")
    net.load_state_dict(load_file(weights))
    net.eval()
    return ServingBundle(run, key, net, tables, items, data.users, data.samples.user_ids,
                         data.samples, store,
                         store_info, encoder, data_cfg.user_features, data_cfg.max_seq_len,
                         Path(data_cfg.path) if data_cfg.dataset == "files" and data_cfg.path
                         else None)


def store_encoder(run: Path, info: StoreInfo) -> ItemEncoder | RawTextEncoder | None:
    """The encoder that made a store's vectors, to embed items added while serving.

    A trained encoder is read from its stage folder; raw vectors come from the text model the
    index manifest's encoder config names, checked against the store's weights hash. None when the
    store predates the index manifest's encoder config.
    """
    if info.encoder in ENCODER_STAGES:
        return load_item_encoder(run / info.encoder)
    if not info.encoder.startswith(RAW_PREFIX):
        return None
    saved = require_stage(run / "index", "index")["config"].get("encoder")
    if saved is None:
        return None
    cfg = from_dict(EncoderConfig, saved, "encoder")
    if raw_encoder_identity(cfg) != (info.encoder, info.encoder_hash):
        raise MimrecError(f"the text model {cfg.text_model or 'all-MiniLM-L6-v2 (packaged)'} is "
                          f"not the one that built the store {info.encoder} (weights differ)")
    return load_raw_text_encoder(cfg)


def content_rows(center: RepresentationCenter, catalogue: np.ndarray
                 ) -> tuple[torch.Tensor, np.ndarray]:
    """Content vectors by model item index: row 0 padding, then the catalogue in order, then the
    items added after training (store ids not in the catalogue, in store order).

    Returns the (1 + I + A, E) table and the A added ids.
    """
    added = center.ids[~np.isin(center.ids, catalogue)]
    # every catalogue item must be in the store: unknown ids raise
    return center.padded_table(np.concatenate([catalogue, added])), added

