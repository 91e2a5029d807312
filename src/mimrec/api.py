"""The public Python API: a finished run folder as one object, for notebooks and scripts.

``mimrec.load_run(path)`` reads what ``mimrec serve`` reads (the trained CTR model, its
vocabularies, the Representation Center and the encoder that built it) and imports no training
code. Scores equal the service's for the same request. A runnable example is
``examples/python_api.py`` (the README's "Python API" section); a test runs it on a small run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mimrec.errors import MimrecError
from mimrec.serve.bundle import ServingBundle, load_bundle, store_encoder
from mimrec.serve.scorer import Scorer
from mimrec.store.center import RepresentationCenter

STORE_SOURCES = ("csft", "pretrain", "raw")  # the index stores, in order of preference


class Run:
    """A finished run: score, embed, look up vectors, read the report, export.

    Args:
        path: the run folder (``mimrec run ... --out PATH``).
        model: the model to use, as ``mimrec serve --model`` takes it (a name such as
            ``ciubm``, or ``ciubm-seed1``); None = the valid-best model.
    """

    def __init__(self, path: str | Path, model: str | None = None) -> None:
        self.path = Path(path)
        self.bundle: ServingBundle = load_bundle(self.path, model)
        self._scorer = Scorer(self.bundle)
        self._store: RepresentationCenter | None = None
        self._encoder = self.bundle.encoder

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}, model={self.model!r}, "
                f"items={len(self.bundle.items):,})")

    @property
    def model(self) -> str:
        """The key of the model in use, ``<name>-seed<k>``."""
        return self.bundle.model_key

    @property
    def items(self) -> pd.DataFrame:
        """The training catalogue (one row per item, model index order)."""
        return self.bundle.items

    def score(self, history: list, candidates: list, user_id: Any = None,
              **side: Any) -> np.ndarray:
        """Click probabilities of ``candidates`` for a user with ``history``.

        Args:
            history: item ids the user engaged with, most recent last.
            candidates: item ids to score (ids of the catalogue or items added while serving).
            user_id: a known user (None: a new user).
            **side: the user's side features by name (e.g. ``age="24"``).

        Returns one probability per candidate, in order. Unknown ids raise
        :class:`~mimrec.errors.MimrecError` naming them.
        """
        return self._scorer.score(list(history), list(candidates), user_id, side)

    @property
    def store(self) -> RepresentationCenter:
        """The Representation Center of the model's content vectors (for an ID-only model:
        the run's C-SFT store, else stage-1's, else the raw one); ``.lookup(ids)`` gives
        vectors (N, D)."""
        if self._store is None:
            folder = self.bundle.store
            if folder is None:
                found = [self.path / "index" / s for s in STORE_SOURCES
                         if (self.path / "index" / s).is_dir()]
                if not found:
                    raise MimrecError(f"{self.path / 'index'}: no Representation Center (run "
                                      "`mimrec index` first)")
                folder = found[0]
            self._store = RepresentationCenter(folder)
        return self._store

    def encode_items(self, items: pd.DataFrame) -> np.ndarray:
        """Content vectors of an items table by the encoder that built :attr:`store` (so an
        item of the catalogue gets the vector the store holds for it).

        Args:
            items: rows with ``item_id`` and the encoder's text fields (and ``image`` /
                ``attributes`` where the encoder reads them).

        Returns (N, D) float32, unit rows, in table order.
        """
        if self._encoder is None:
            self._encoder = store_encoder(self.path, self.store.info)
            if self._encoder is None:
                raise MimrecError(f"{self.store.folder}: no saved encoder can embed new items")
        return self._encoder.encode_items(items)

    @property
    def report(self) -> dict:
        """``report.json`` of the run (``mimrec eval`` writes it)."""
        path = self.path / "report.json"
        if not path.is_file():
            raise MimrecError(f"{path}: no report (run `mimrec eval` on this folder)")
        return json.loads(path.read_text())

    def export_text_model(self, folder: str | Path) -> Path:
        """The trained text tower as a sentence-transformers / Hugging Face folder
        (:mod:`mimrec.encoders.export`): C-SFT's encoder, else stage-1's."""
        from mimrec.encoders.checkpoint import load_item_encoder
        from mimrec.encoders.export import export_text_model

        for stage in ("csft", "pretrain"):
            if (self.path / stage / "encoder.json").is_file():
                return export_text_model(load_item_encoder(self.path / stage), folder)
        raise MimrecError(f"{self.path}: no trained encoder (csft/ or pretrain/)")

    def export_onnx(self, path: str | Path) -> Path:
        """The model in use as an ONNX graph (:mod:`mimrec.ctr.onnx_export`): inputs ``user``,
        ``item`` (B,) and ``history`` (B, max_seq_len) as model indices (see
        :meth:`indices`), output the click probability (B,)."""
        from mimrec.ctr.onnx_export import export_onnx

        return export_onnx(self._scorer.model, path, self.bundle.max_seq_len)

    def indices(self, history: list, candidates: list, user_id: Any = None
                ) -> dict[str, np.ndarray]:
        """The ONNX graph's inputs for one request: ``user`` and ``item`` (C,), ``history``
        (C, max_seq_len), left-padded with 0 (the graph scores exactly :meth:`score`'s
        probabilities for them)."""
        length = self.bundle.max_seq_len
        items = self._scorer.item_indices(list(candidates), "candidates")
        recent = self._scorer.item_indices(list(history), "history")[-length:]
        row = np.zeros(length, dtype=np.int64)
        if len(recent):
            row[-len(recent):] = recent
        n = len(items)
        return {"user": np.full(n, self._scorer.user_row(user_id), dtype=np.int64),
                "item": items.astype(np.int64), "history": np.tile(row, (n, 1))}


def load_run(path: str | Path, model: str | None = None) -> Run:
    """Open a finished run folder (see :class:`Run`)."""
    return Run(path, model)
