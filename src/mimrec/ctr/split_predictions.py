"""The valid / test probabilities of a large split (more than
:data:`~mimrec.eval.config.STREAM_ABOVE_ROWS` rows): written batch by batch into a
memory-mapped ``.npy`` in the stage's temporary folder, so no whole copy is held in memory; the
stage copies it into ``predictions.npz`` in chunks and scores it with the streaming metrics."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mimrec.ctr.model import CiUBM
from mimrec.ctr.train import Batchable, predict

SUFFIX = ".predict.npy"  # the memory-mapped files; removed before the artifact is committed


def predict_to_file(model: CiUBM, data: Batchable, folder: Path, name: str) -> np.ndarray:
    """Probabilities of every row of ``data`` written batch by batch into
    ``folder/<name>.predict.npy`` (under a temporary name, then renamed); returns its read-only
    memory map."""
    path = folder / f"{name}{SUFFIX}"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    out = np.lib.format.open_memmap(tmp, "w+", np.float32, (len(data),))
    predict(model, data, out=out)
    out.flush()
    del out
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def portable(probs: np.ndarray) -> np.ndarray | Path:
    """What a worker process sends back: a memory map by its path (pickling would copy it)."""
    return Path(probs.filename) if isinstance(probs, np.memmap) else probs


def reopened(probs: np.ndarray | Path) -> np.ndarray:
    """The probabilities a worker sent (:func:`portable`)."""
    return np.load(probs, mmap_mode="r") if isinstance(probs, Path) else probs


def remove_prediction_files(folder: Path) -> None:
    """Drop the memory-mapped prediction files from a stage folder (once copied)."""
    for path in folder.glob(f"*{SUFFIX}"):
        path.unlink()
