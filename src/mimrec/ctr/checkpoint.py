"""Checkpoints of the CTR stage, so that a killed ``mimrec train`` goes on where it stopped.

They live in ``RUN/checkpoints/ctr/`` (next to the artifact ``RUN/ctr``), per model key:

- ``<key>.epoch.pt``: the training state after the model's last finished epoch (weights,
  optimiser, weight average, early stopping, history, random number generators), written by
  :func:`mimrec.ctr.train.fit` after every epoch it goes on from;
- ``<key>.safetensors``, ``<key>.npz`` (valid and test probabilities), ``<key>.json`` (record,
  written last: a model counts as finished only when it is there): a finished model; its epoch
  file is removed then.

Every file is written to a ``.tmp-<pid>`` name and renamed, so a kill leaves a whole checkpoint
or none; temporary files of killed runs are removed when the next run starts. Each file carries a
fingerprint of what the model's result depends on (the CTR and data config, the data and index
artifacts, the model's spec and seed; not ``workers`` or ``threads``); a file whose fingerprint
differs is dropped and that model starts over. The folder goes once the stage has written its
artifact. Checkpoints are loaded with ``torch.load(weights_only=True)``: no unpickling.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from mimrec.artifacts import write_json_atomic
from mimrec.eval.npz_members import npz_memmaps
from mimrec.processes import remove_stale_temps

FOLDER = "checkpoints"


def checkpoint_folder(out: Path) -> Path:
    """Where the checkpoints of the stage writing ``out`` (``RUN/ctr``) live: ``RUN/checkpoints/ctr``."""
    return Path(out).parent / FOLDER / Path(out).name


def _tmp(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


@dataclass(frozen=True)
class ModelCheckpoint:
    """The checkpoint files of one model (model x seed); picklable, for worker processes.

    Args:
        folder: the stage's checkpoint folder.
        key: the model key, ``din-seed0``.
        fingerprint: what the model's result depends on (see the module docstring).
    """

    folder: Path
    key: str
    fingerprint: str

    @property
    def epoch_file(self) -> Path:
        return self.folder / f"{self.key}.epoch.pt"

    def _finished_files(self) -> tuple[Path, Path, Path]:
        return (self.folder / f"{self.key}.safetensors", self.folder / f"{self.key}.npz",
                self.folder / f"{self.key}.json")

    def save(self, state: dict[str, Any]) -> None:
        """Write a training state (after an epoch) atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = _tmp(self.epoch_file)
        torch.save({**state, "fingerprint": self.fingerprint}, tmp)
        os.replace(tmp, self.epoch_file)

    def load(self) -> dict[str, Any] | None:
        """The last saved training state, or None (none, or one of other settings: dropped)."""
        if not self.epoch_file.is_file():
            return None
        try:
            state = torch.load(self.epoch_file, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - an unreadable checkpoint only costs a restart
            state = None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            self.epoch_file.unlink(missing_ok=True)
            return None
        return state

    def finish(self, weights: dict[str, torch.Tensor], valid: np.ndarray, test: np.ndarray,
               record: dict) -> None:
        """Keep a finished model (the record last) and drop its epoch checkpoint."""
        self.folder.mkdir(parents=True, exist_ok=True)
        weights_file, preds_file, record_file = self._finished_files()
        tmp = _tmp(weights_file)
        save_file(weights, tmp)
        os.replace(tmp, weights_file)
        tmp = _tmp(preds_file)
        with open(tmp, "wb") as f:
            np.savez(f, valid=valid, test=test)
        os.replace(tmp, preds_file)
        write_json_atomic(record_file, {"fingerprint": self.fingerprint, "record": record})
        self.epoch_file.unlink(missing_ok=True)

    def finished(self) -> tuple[np.ndarray, np.ndarray, dict, Path] | None:
        """A model finished before the run was stopped: valid and test probabilities, its
        record and its weights file; None when there is none (with these settings)."""
        weights_file, preds_file, record_file = self._finished_files()
        if not (record_file.is_file() and weights_file.is_file() and preds_file.is_file()):
            return None
        saved = json.loads(record_file.read_text())
        if saved.get("fingerprint") != self.fingerprint:
            for path in (record_file, weights_file, preds_file):
                path.unlink(missing_ok=True)
            return None
        preds = npz_memmaps(preds_file)  # a large split is not loaded whole
        return preds["valid"], preds["test"], saved["record"], weights_file


class Checkpoints:
    """The checkpoint folder of one CTR stage run.

    Args:
        out: the artifact folder the stage writes (``RUN/ctr``).
        settings: plain data of everything a model's result depends on besides its spec and
            seed (configs without ``workers`` / ``threads``, parent artifact hashes).
    """

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        self.folder = checkpoint_folder(out)
        self.settings = json.dumps(settings, sort_keys=True, default=str)
        remove_stale_temps(self.folder, "*.tmp-*")  # left by killed runs

    def model(self, key: str, spec: dict[str, Any]) -> ModelCheckpoint:
        """The checkpoint of model ``key`` (``spec``: its spec record, seed included in key)."""
        text = self.settings + json.dumps({"key": key, "spec": spec}, sort_keys=True)
        return ModelCheckpoint(self.folder, key, hashlib.sha256(text.encode()).hexdigest())

    def clear(self) -> None:
        """Remove every checkpoint (the stage has written its artifact)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        parent = self.folder.parent
        if parent.name == FOLDER and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
