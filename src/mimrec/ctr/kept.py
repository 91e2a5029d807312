"""Models of an earlier CTR artifact that a new ``mimrec train`` keeps.

Retraining a subset of the models (``--set "ctr.variants=['din']"``) must not delete the others:
a model (model x seed) of the artifact already at ``OUT/ctr`` that this run does not train is
carried into the new artifact (weights, predictions, record with its spec), when it can still be
served and compared: it was trained on the same data artifact with the same shared model shape
(``ctr.model``; what each model switches on travels in its record's spec). Models trained on an
earlier data artifact are stale and are dropped, with a note; a shape or data config that
differs is an error, unless the user asks to replace them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mimrec.artifacts import MANIFEST, read_manifest, require_stage
from mimrec.errors import MimrecError
from mimrec.eval.npz_members import npz_memmaps


@dataclass
class KeptModels:
    """What a new artifact takes over from the old one: model key -> record / predictions."""

    folder: Path | None = None
    records: dict[str, dict] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # "<key>/valid", "<key>/test"

    def copy_into(self, tmp: Path) -> None:
        """Copy the kept models' weight files into the new artifact folder."""
        for key in self.records:
            assert self.folder is not None
            shutil.copy2(self.folder / f"{key}.safetensors", tmp / f"{key}.safetensors")


def kept_models(out: Path, config: dict, data_folder: Path, retrained: set[str]) -> tuple[
        KeptModels, str | None]:
    """The models of ``out`` (an earlier ctr artifact) that a run training ``retrained`` keeps,
    and a note to print when some are dropped.

    Args:
        out: the ctr artifact folder (may not exist yet).
        config: the new manifest config, ``{"ctr": ..., "data": ...}`` as plain data.
        data_folder: the data artifact the new run trains on.
        retrained: model keys (``din-seed0``) the new run trains.
    """
    if not (out / MANIFEST).is_file():
        return KeptModels(), None
    manifest = require_stage(out, "ctr")
    others = [k for k in manifest["metrics"] if k not in retrained]
    if not others:
        return KeptModels(), None
    if manifest["parents"]["data"]["hash"] != read_manifest(data_folder)["hash"]:
        return KeptModels(), (f"dropping {len(others)} models of {out} trained on an earlier "
                              f"data artifact: {', '.join(others)}")
    if any("spec" not in manifest["metrics"][k] for k in others):
        raise MimrecError(
            f"{out} holds models this run does not retrain ({', '.join(others)}) and they were "
            "trained by an earlier mimrec (their records carry no spec); retrain them too or "
            "pass --replace to drop them")
    old = manifest["config"]
    if old["ctr"]["model"] != config["ctr"]["model"]:
        raise MimrecError(
            f"{out} holds models this run does not retrain ({', '.join(others)}) and they were "
            "trained with another ctr.model; retrain them too (add them to ctr.variants / "
            "ctr.train.seeds) or pass --replace to drop them")
    if old["data"] != config["data"]:
        raise MimrecError(
            f"{out} holds models this run does not retrain ({', '.join(others)}) and they were "
            "trained with another [data] config; retrain them too or pass --replace")
    kept = KeptModels(out)
    preds = npz_memmaps(out / "predictions.npz")  # read a chunk at a time when copied
    for key in others:
        if not (out / f"{key}.safetensors").is_file():
            raise MimrecError(f"{out}: weights of {key} are missing; pass --replace to drop "
                              "the old models")
        kept.predictions[f"{key}/valid"] = preds[f"{key}/valid"]
        kept.predictions[f"{key}/test"] = preds[f"{key}/test"]
        kept.records[key] = {**manifest["metrics"][key],
                             "kept_from": {"created": manifest["created"],
                                           "train": old["ctr"]["train"]}}
    return kept, None
