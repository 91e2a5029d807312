"""Write a run's serving bundle (``RUN/serve/``, :mod:`mimrec.ctr.bundle_format`) from its data,
index and ctr artifacts: at the end of ``mimrec train``, or once by ``mimrec serve`` for a run
trained by an earlier mimrec. The folder is filled beside its place and renamed into it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from mimrec.artifacts import require_stage, stage_dir
from mimrec.ctr.blocks import reads_content
from mimrec.ctr.bundle_format import (
    ENCODER_STAGES,
    ITEMS_FILE,
    USERS_FILE,
    WEIGHTS_DIR,
    BrowseTables,
    bundle_dir,
    bundle_problem,
    ctr_manifest_hash,
    save_feature_tables,
    write_manifest,
)
from mimrec.ctr.config import ModelSpec
from mimrec.ctr.features import feature_tables
from mimrec.data.config import DataConfig
from mimrec.data.stage import DataArtifact, read_data
from mimrec.encoders.raw_text import RAW_PREFIX
from mimrec.errors import MimrecError
from mimrec.eval.selection import best_valid_auc, is_control
from mimrec.serialize import from_dict


def ensure_serving_bundle(run: Path) -> str | None:
    """Write the run's bundle when it is missing or stale; returns a line saying so, else None."""
    problem = bundle_problem(run)
    if problem is None:
        return None
    folder = write_serving_bundle(run)
    return f"{problem}: built {folder} from the run's artifacts (once; `mimrec train` writes it)"


def write_serving_bundle(run: Path) -> Path:
    """Write ``RUN/serve`` for every model of ``RUN/ctr`` but the shuffled-content controls;
    returns the folder."""
    run = Path(run)
    manifest = require_stage(run / "ctr", "ctr")
    records = manifest["metrics"]
    if any("spec" not in record for record in records.values()):
        raise MimrecError(f"{run / 'ctr'} was trained by an earlier mimrec (its models do not "
                          "describe themselves): run `mimrec train` on this folder again")
    data_cfg = from_dict(DataConfig, manifest["config"]["data"], "data")
    data = read_data(run / "data")
    folder = bundle_dir(run)
    with stage_dir(folder) as tmp:
        (tmp / WEIGHTS_DIR).mkdir()
        # a shuffled-content control is not servable: its vectors are not the store's
        models = {key: _model_entry(run, key, record, tmp) for key, record in records.items()
                  if not is_control(record)}
        save_feature_tables(tmp, feature_tables(data, data_cfg))
        data.items.to_parquet(tmp / ITEMS_FILE, index=False)
        _browse(data).save(tmp)
        positives = np.bincount(data.samples.user[data.samples.label > 0],
                                minlength=len(data.samples.user_ids))
        pd.DataFrame({"user_id": np.asarray(data.samples.user_ids, dtype=str),
                      "positives": positives}).to_parquet(tmp / USERS_FILE, index=False)
        write_manifest(tmp, {
            "ctr_manifest": ctr_manifest_hash(run), "ctr": manifest["config"]["ctr"],
            "models": models,
            "controls": {key: {"model": r["model"], "spec": r["spec"],
                               "epochs": [{"valid_auc": best_valid_auc(r)}]}
                         for key, r in records.items() if is_control(r)},
            "data": {"item_features": list(data_cfg.item_features),
                     "user_features": list(data_cfg.user_features),
                     "max_seq_len": data_cfg.max_seq_len,
                     "data_folder": (str(Path(data_cfg.path).resolve())
                                     if data_cfg.dataset == "files" and data_cfg.path else None)},
        })
    return folder


def _browse(data: DataArtifact) -> BrowseTables:
    s = data.samples
    positive = s.label > 0
    return BrowseTables.build(s.user[positive], s.item[positive], s.timestamp[positive],
                              len(s.user_ids), s.item_train_count)


def _model_entry(run: Path, key: str, record: dict, tmp: Path) -> dict:
    """One model's ``bundle.json`` entry; its weights linked into ``tmp/weights``."""
    weights = run / "ctr" / f"{key}.safetensors"
    if not weights.is_file():
        raise MimrecError(f"model weights missing: {weights}")
    _link(weights, tmp / WEIGHTS_DIR / weights.name)
    spec = from_dict(ModelSpec, record["spec"], f"model {key}")
    entry = {"name": record["model"], "seed": record["seed"], "spec": record["spec"],
             "weights": f"{WEIGHTS_DIR}/{weights.name}", "valid_auc": best_valid_auc(record),
             "content": None, "store": None, "store_version": None, "encoder": None}
    if reads_content(spec):
        content = record["content"]
        entry.update(content={k: content[k] for k in ("encoder", "encoder_hash", "dim", "dtype")},
                     store=f"../index/{spec.source}", store_version=content.get("version"),
                     encoder=_encoder_entry(run, content["encoder"]))
    return entry


def _encoder_entry(run: Path, name: str) -> dict | None:
    """How the service loads the encoder that made a store (None: it cannot embed new items)."""
    if name in ENCODER_STAGES:
        return {"stage": f"../{name}"}
    if not name.startswith(RAW_PREFIX):
        return None
    saved = require_stage(run / "index", "index")["config"].get("encoder")
    return None if saved is None else {"raw": saved}


def _link(source: Path, target: Path) -> None:
    """A hard link (no second copy on disk), a copy across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
