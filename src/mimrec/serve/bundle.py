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
from mimrec.config import from_dict
from mimrec.ctr.blocks import reads_content
from mimrec.ctr.config import CtrConfig, ModelSpec
from mimrec.ctr.features import FeatureTables, feature_tables
from mimrec.ctr.model import CiUBM
from mimrec.ctr.selection import best_seed, valid_best
from mimrec.data.config import DataConfig
from mimrec.data.samples import Samples
from mimrec.data.stage import read_data
from mimrec.encoders.checkpoint import load_item_encoder
from mimrec.encoders.item_encoder import ItemEncoder
from mimrec.errors import MimrecError
from mimrec.store.center import RepresentationCenter, StoreInfo

# Encoder artifacts that can embed a new item (the raw source has no trained encoder folder).
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
    encoder: ItemEncoder | None  # embeds items added while serving
    user_features: tuple[str, ...]
    max_seq_len: int


def choose_model(metrics: dict, wanted: str | None, baseline: str = "din",
                 margin: float = 0.0) -> str:
    """The model key to serve: ``wanted`` (a model name, its best valid seed, or
    "<model>-seed<k>"), or by default the valid-best model (:mod:`mimrec.ctr.selection`: the
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
    store = store_info = encoder_dir = None
    content = None
    if reads_content(spec):
        store = run / "index" / spec.source
        center = RepresentationCenter(store)
        store_info = StoreInfo(**{k: manifest["metrics"][key]["content"][k]
                                  for k in ("encoder", "encoder_hash", "dim", "dtype")})
        center.check_compatible(store_info)
        content = content_rows(center, items["item_id"].astype(str).to_numpy())[0]
        if store_info.encoder in ENCODER_STAGES:
            encoder_dir = run / store_info.encoder
    net = CiUBM(ctr_cfg.model, spec, tables, content)
    weights = run / "ctr" / f"{key}.safetensors"
    if not weights.is_file():
        raise MimrecError(f"model weights missing: {weights}")
    net.load_state_dict(load_file(weights))
    net.eval()
    encoder = load_item_encoder(encoder_dir) if encoder_dir else None
    return ServingBundle(run, key, net, tables, items, data.users, data.samples.user_ids,
                         data.samples, store,
                         store_info, encoder, data_cfg.user_features, data_cfg.max_seq_len)


def content_rows(center: RepresentationCenter, catalogue: np.ndarray
                 ) -> tuple[torch.Tensor, np.ndarray]:
    """Content vectors by model item index: row 0 padding, then the catalogue in order, then the
    items added after training (store ids not in the catalogue, in store order).

    Returns the (1 + I + A, E) table and the A added ids.
    """
    added = center.ids[~np.isin(center.ids, catalogue)]
    # every catalogue item must be in the store: unknown ids raise
    return center.padded_table(np.concatenate([catalogue, added])), added

