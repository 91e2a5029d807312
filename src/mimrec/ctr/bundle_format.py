"""The serving bundle's files: what training writes for ``mimrec serve`` to read (``RUN/serve/``).

The bundle describes itself, so the service needs it and the Representation Center only (no data
artifact, no training samples, no training code):

- ``bundle.json``: format version; per trained model its spec, resolved model config, weights
  file, valid AUC (for the default choice), and for content models the store it reads (a path
  relative to the bundle, the version it was trained on, the encoder identity) and the encoder
  that embeds new items (a stage folder, or the raw text model's config); the data settings the
  service reads (item and user features, max behaviour length, the data folder images live in);
  the sha256 of the ctr manifest it was written from (a retrained run makes it stale);
- ``weights/<model>-seed<k>.safetensors``: the weights (hard links of the ctr artifact's files);
- ``vocab.json`` and ``features.npz``: each categorical feature's vocabulary and its (rows, M)
  index table;
- ``items.parquet``: the training catalogue in model index order (row r = index r + 1);
- ``users.parquet``: user ids in index order and their positive events (the users route);
- ``history_offsets.npy``, ``history_items.npy``: each user's last :data:`BROWSE_HISTORY`
  positive items, oldest first (catalogue rows; memory-mapped when read);
- ``popular.npy``: the :data:`BROWSE_POPULAR` most trained-on catalogue rows, most first.

Nothing here imports the data stage: :mod:`mimrec.ctr.bundle_writer` builds a bundle from the
artifacts, :mod:`mimrec.serve.bundle` reads one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mimrec.artifacts import file_sha256
from mimrec.ctr.features import Bag, FeatureTables
from mimrec.errors import MimrecError

BUNDLE_DIR = "serve"  # RUN/serve
# Encoder artifacts that can embed a new item (stage folders of a run); a store of raw vectors
# ("raw:<model>") embeds new items with the raw text model of the index's encoder config.
ENCODER_STAGES = ("pretrain", "csft")
BUNDLE_FILE = "bundle.json"
FORMAT = 1
WEIGHTS_DIR = "weights"
VOCAB_FILE = "vocab.json"
FEATURES_FILE = "features.npz"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
HISTORY_OFFSETS_FILE = "history_offsets.npy"
HISTORY_ITEMS_FILE = "history_items.npy"
POPULAR_FILE = "popular.npy"
REQUIRED_FILES = (VOCAB_FILE, FEATURES_FILE, ITEMS_FILE, USERS_FILE, HISTORY_OFFSETS_FILE,
                  HISTORY_ITEMS_FILE, POPULAR_FILE)
BROWSE_HISTORY = 1000  # positives kept per user: the history route's largest limit
BROWSE_POPULAR = 5000  # catalogue rows kept by popularity: the items route's largest limit


def bundle_dir(run: Path) -> Path:
    """Where a run folder's serving bundle lives."""
    return Path(run) / BUNDLE_DIR


def ctr_manifest_hash(run: Path) -> str | None:
    """sha256 of the run's ctr manifest (None without one: a bundle moved away from its run)."""
    path = Path(run) / "ctr" / "manifest.json"
    return file_sha256(path) if path.is_file() else None


def bundle_problem(run: Path) -> str | None:
    """Why the run's bundle cannot be served as it is (missing, of another format, or written
    before the ctr artifact was retrained), or None when it can."""
    path = bundle_dir(run) / BUNDLE_FILE
    if not path.is_file():
        return f"{bundle_dir(run)} is missing (a run trained by an earlier mimrec)"
    raw = _read_json(path)
    if raw.get("format") != FORMAT:
        return f"{path} is of format {raw.get('format')!r}, this mimrec reads {FORMAT}"
    current = ctr_manifest_hash(run)
    if current is not None and raw.get("ctr_manifest") != current:
        return f"{bundle_dir(run)} was written before {Path(run) / 'ctr'} was retrained"
    return None


@dataclass(frozen=True)
class BundleModel:
    """One trained model of a bundle (``bundle.json`` ``models.<key>``)."""

    name: str
    seed: int
    spec: dict[str, Any]  # a ModelSpec as JSON (mimrec.ctr.stage.spec_record)
    weights: str  # relative to the bundle folder
    valid_auc: float  # the kept weights' valid AUC (chooses the default model)
    content: dict[str, Any] | None  # the store identity: encoder, encoder_hash, dim, dtype
    store: str | None  # the Representation Center, relative to the bundle folder
    store_version: int | None  # the version the model was trained on
    encoder: dict[str, Any] | None  # {"stage": "../csft"} or {"raw": <encoder config>}


@dataclass(frozen=True)
class BundleManifest:
    """``bundle.json``: what the service reads besides the files beside it."""

    folder: Path
    ctr_config: dict[str, Any]  # the resolved [ctr] config (CtrConfig as JSON)
    models: dict[str, BundleModel]
    item_features: tuple[str, ...]
    user_features: tuple[str, ...]
    max_seq_len: int
    data_folder: str | None  # relative image paths of the catalogue start here
    # shuffled-content controls: not servable, kept as ctr manifest records for the selection
    controls: dict[str, dict] = field(default_factory=dict)

    def records(self) -> dict[str, dict]:
        """The models (and controls) as :mod:`mimrec.eval.selection` reads ctr manifest
        records, so the service chooses what the report chose."""
        return {**{key: {"model": m.name, "spec": m.spec, "epochs": [{"valid_auc": m.valid_auc}]}
                   for key, m in self.models.items()}, **self.controls}

    def path(self, relative: str) -> Path:
        """A path the manifest names, relative to the bundle folder (absolute stays)."""
        return Path(os.path.normpath(self.folder / relative))


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write ``bundle.json`` into a bundle folder being filled."""
    (folder / BUNDLE_FILE).write_text(json.dumps({"format": FORMAT, **manifest}, indent=2) + "\n")


def read_manifest(folder: Path) -> BundleManifest:
    """Read ``bundle.json``; a missing or wrong field names the file and the field."""
    path = folder / BUNDLE_FILE
    raw = _read_json(path)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise MimrecError(f"{folder}: the bundle lacks {', '.join(missing)}; rebuild it (delete "
                          f"{folder} and run `mimrec serve` on the run)")
    try:
        models = {key: BundleModel(**m) for key, m in raw["models"].items()}
        data = raw["data"]
        return BundleManifest(folder, raw["ctr"], models, tuple(data["item_features"]),
                              tuple(data["user_features"]), int(data["max_seq_len"]),
                              data["data_folder"], dict(raw.get("controls", {})))
    except (KeyError, TypeError, AttributeError) as exc:
        raise MimrecError(f"{path}: a field is missing or malformed ({exc}); rebuild the bundle "
                          f"(delete {folder} and run `mimrec serve` on the run)") from None


def _read_json(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MimrecError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise MimrecError(f"{path}: expected a JSON object")
    return raw


def save_feature_tables(folder: Path, tables: FeatureTables) -> None:
    """Vocabularies (``vocab.json``) and index tables (``features.npz``) of every feature bag."""
    vocab = {"items": {b.name: b.vocab for b in tables.items},
             "users": {b.name: b.vocab for b in tables.users},
             "num_items": tables.num_items, "num_users": tables.num_users}
    (folder / VOCAB_FILE).write_text(json.dumps(vocab) + "\n")
    arrays = {f"{side}/{b.name}": b.index
              for side, bags in (("items", tables.items), ("users", tables.users)) for b in bags}
    with open(folder / FEATURES_FILE, "wb") as f:
        np.savez(f, **arrays)


def load_feature_tables(folder: Path) -> FeatureTables:
    """The feature tables :func:`save_feature_tables` wrote (no pickle)."""
    vocab = _read_json(folder / VOCAB_FILE)
    try:
        with np.load(folder / FEATURES_FILE, allow_pickle=False) as arrays:
            bags = {side: [Bag(name, arrays[f"{side}/{name}"], list(words))
                           for name, words in vocab[side].items()]
                    for side in ("items", "users")}
        return FeatureTables(bags["items"], bags["users"], int(vocab["num_items"]),
                             int(vocab["num_users"]))
    except (OSError, KeyError, ValueError) as exc:
        raise MimrecError(f"{folder / FEATURES_FILE}: unreadable feature tables ({exc})") from None


@dataclass(frozen=True)
class BrowseTables:
    """The small precomputed tables of the browse routes.

    Shapes: ``positives`` (U,) positive events per user; ``offsets`` (U + 1,) and ``items`` (H,):
    user u's kept history is ``items[offsets[u]:offsets[u + 1]]`` (catalogue rows, oldest first);
    ``popular`` (P,) catalogue rows by train impressions, most first.
    """

    positives: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    popular: np.ndarray

    def history(self, user_row: int) -> np.ndarray:
        """User ``user_row``'s (0-based) kept positive items, oldest first."""
        return np.asarray(self.items[self.offsets[user_row]:self.offsets[user_row + 1]])

    @classmethod
    def build(cls, user: np.ndarray, item: np.ndarray, timestamp: np.ndarray,
              num_users: int, item_train_count: np.ndarray) -> BrowseTables:
        """From the positive events (user row, catalogue row, time) of every split: per user
        the last :data:`BROWSE_HISTORY` by time (ties in event order)."""
        order = np.lexsort((timestamp, user))  # stable: by user, then time, then event order
        user, item = user[order], item[order]
        counts = np.bincount(user, minlength=num_users)
        ends = np.cumsum(counts)
        rank_from_end = ends[user] - np.arange(len(user))  # 1 = a user's latest
        keep = rank_from_end <= BROWSE_HISTORY
        offsets = np.concatenate([[0], np.cumsum(np.minimum(counts, BROWSE_HISTORY))])
        popular = np.argsort(-item_train_count, kind="stable")[:BROWSE_POPULAR]
        return cls(counts.astype(np.int64), offsets.astype(np.int64),
                   item[keep].astype(np.int32), popular.astype(np.int64))

    def save(self, folder: Path) -> None:
        for name, array in ((HISTORY_OFFSETS_FILE, self.offsets),
                            (HISTORY_ITEMS_FILE, self.items), (POPULAR_FILE, self.popular)):
            np.save(folder / name, array, allow_pickle=False)

    @classmethod
    def load(cls, folder: Path, positives: np.ndarray) -> BrowseTables:
        """Read the saved tables; the histories stay on disk (memory-mapped)."""
        try:
            return cls(positives,
                       np.load(folder / HISTORY_OFFSETS_FILE, allow_pickle=False),
                       np.load(folder / HISTORY_ITEMS_FILE, mmap_mode="r", allow_pickle=False),
                       np.load(folder / POPULAR_FILE, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise MimrecError(f"{folder}: unreadable browse tables ({exc})") from None
