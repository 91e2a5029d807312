"""A trained bundle, read from a run's serving bundle (``RUN/serve``,
:mod:`mimrec.ctr.bundle_format`): the CTR model, the Representation Center its content vectors
come from, the encoder that built that store, the catalogue and the browse tables.

Nothing here reads the data artifact or imports training code (``mimrec.ctr.train``,
``mimrec.data.stage``, ...): the service loads weights and tables, it never fits anything. A run
without a bundle (trained by an earlier mimrec) is refused with a message; ``mimrec serve``
builds the bundle first (:func:`mimrec.ctr.bundle_writer.ensure_serving_bundle`).
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
from mimrec.ctr.bundle_format import (
    ENCODER_STAGES,
    ITEMS_FILE,
    USERS_FILE,
    BrowseTables,
    BundleManifest,
    BundleModel,
    bundle_dir,
    bundle_problem,
    load_feature_tables,
    read_manifest,
)
from mimrec.ctr.config import CtrConfig, ModelSpec
from mimrec.ctr.features import FeatureTables
from mimrec.ctr.model import CiUBM
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
from mimrec.eval.selection import best_seed, is_control, valid_best
from mimrec.serialize import from_dict
from mimrec.serve.heap import return_freed_memory
from mimrec.serve.item_writer import ItemWriter
from mimrec.serve.live_tables import headroom
from mimrec.store.center import RepresentationCenter, StoreInfo


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
    user_ids: np.ndarray  # (U,) str, row u = user index u + 1
    browse: BrowseTables  # the browse routes' tables (histories, positives, popularity)
    store: Path | None
    store_info: StoreInfo | None
    encoder: ItemEncoder | RawTextEncoder | None  # embeds items added while serving
    user_features: tuple[str, ...]
    max_seq_len: int
    data_folder: Path | None = None  # the user's data folder (relative image paths start here)
    store_version: int | None = None  # the store version the model was trained on
    # what start-up read of the store (once, in load_bundle): the ids of the items added after
    # training (model indices past the catalogue, in store order) and the version read; the
    # model's content rows are that version's. None: the model holds no store rows yet.
    added_ids: np.ndarray | None = None
    store_read_version: int | None = None
    encoder_named: bool = False  # the bundle names the store's encoder (None above: not loaded)


def choose_model(metrics: dict, wanted: str | None, baseline: str = "din",
                 margin: float = 0.0) -> str:
    """The model key to serve: ``wanted`` (a model name, its best valid seed, or
    "<model>-seed<k>"), or by default the valid-best model (:mod:`mimrec.eval.selection`: the
    ID-only baseline unless a content model did better on valid), its best valid seed."""
    if not metrics:
        raise MimrecError("the ctr artifact holds no trained model")
    if wanted and any(r["model"] == wanted or k == wanted
                      for k, r in metrics.items() if is_control(r)):
        raise MimrecError(f"model {wanted!r} is a shuffled-content control (it read other items' "
                          "vectors in training): not servable")
    if wanted in metrics:
        return wanted
    names = {record["model"] for record in metrics.values()}
    if wanted and wanted not in names:
        raise MimrecError(f"model {wanted!r} is not in this run; trained: {', '.join(metrics)}")
    return best_seed(metrics, wanted or valid_best(metrics, baseline, margin))


def load_bundle(run: str | Path, model: str | None = None, encoder: bool = True
                ) -> ServingBundle:
    """Read the serving bundle of a finished run folder (``mimrec run`` / ``make demo``
    output) and the store it names; nothing else of the run is read.

    Args:
        run: the run folder (holding ``serve/``, and for content models the store and encoder
            the bundle names).
        model: which trained model to serve (see :func:`choose_model`).
        encoder: load the store's encoder (False: a process whose adds run in a writer process
            does not hold it; 140 MiB of a worker at a million items).
    """
    run = Path(run)
    manifest, ctr_cfg, key, spec = _chosen(run, model)
    folder, entry = manifest.folder, manifest.models[key]
    tables = load_feature_tables(folder)
    users = pd.read_parquet(folder / USERS_FILE)
    store = store_info = item_encoder = content = added = read_version = None
    items = pd.read_parquet(folder / ITEMS_FILE)
    if reads_content(spec):
        store, store_info = _store_of(manifest, entry)
        center = RepresentationCenter(store, vectors=False)  # the one read of the store
        center.check_compatible(store_info)
        content, added = content_rows(center, items["item_id"].astype(str).to_numpy())
        read_version = center.version
        del center  # its vectors are in ``content`` now
        return_freed_memory()  # Arrow's pool keeps the read's buffers otherwise
        if encoder:
            item_encoder = bundle_encoder(manifest, entry, store_info)
    # built on the padding row (the content dim sizes the blocks), then given the whole table,
    # normalised in place: one catalogue-sized copy at start-up instead of two
    net = CiUBM(ctr_cfg.model, spec, tables, None if content is None else content[:1].clone())
    if content is not None:
        net.set_content(content, in_place=True)
    del content
    weights = manifest.path(entry.weights)
    if not weights.is_file():
        raise MimrecError(f"model weights missing: {weights}")
    net.load_state_dict(load_file(weights))
    net.eval()
    data_folder = Path(manifest.data_folder) if manifest.data_folder else None
    return ServingBundle(run, key, net, tables, items, users["user_id"].astype(str).to_numpy(),
                         BrowseTables.load(folder, users["positives"].to_numpy()), store,
                         store_info, item_encoder, manifest.user_features, manifest.max_seq_len,
                         data_folder, entry.store_version, added, read_version,
                         encoder_named=store is not None and names_encoder(entry))


def check_bundle(run: str | Path, model: str | None = None) -> tuple[str, int | None]:
    """What :func:`load_bundle` checks before it reads anything big, without reading the store's
    rows or building the model: the run folder, its bundle, the model choice, the weights file
    and the store's encoder and dim. For a supervisor process that only starts workers (each
    loads the bundle itself). Returns the model key and the store's item count (None for an
    ID-only model)."""
    from mimrec.store.center import store_count

    manifest, _, key, spec = _chosen(Path(run), model)
    entry = manifest.models[key]
    if not manifest.path(entry.weights).is_file():
        raise MimrecError(f"model weights missing: {manifest.path(entry.weights)}")
    if not reads_content(spec):
        return key, None
    store, store_info = _store_of(manifest, entry)
    return key, store_count(store, store_info)


def load_writer(run: str | Path, model: str) -> ItemWriter:
    """The item writer of a served content model: its store and the encoder that made the
    store's vectors, and nothing else of the bundle (the child process of
    :mod:`mimrec.serve.writer_process`)."""
    manifest, _, key, spec = _chosen(Path(run), model)
    entry = manifest.models[key]
    if not reads_content(spec):
        raise MimrecError(f"model {key} reads no content vectors: it adds no items")
    store, store_info = _store_of(manifest, entry)
    encoder = bundle_encoder(manifest, entry, store_info)
    if encoder is None:
        raise MimrecError(f"{manifest.folder}: the bundle names no encoder for {store}")
    return ItemWriter(store, encoder)


def _chosen(run: Path, model: str | None) -> tuple[BundleManifest, CtrConfig, str, ModelSpec]:
    """The run's bundle manifest (checked present and current), its CTR config, and the key and
    spec of the model to serve (:func:`choose_model`)."""
    if not run.is_dir():
        raise MimrecError(f"run folder not found: {run}")
    problem = bundle_problem(run)
    if problem is not None:
        raise MimrecError(f"{problem}; `mimrec serve {run}` builds it from the run's artifacts "
                          "(or run `mimrec train` again)")
    manifest = read_manifest(bundle_dir(run))
    ctr_cfg = from_dict(CtrConfig, manifest.ctr_config, "ctr")
    key = choose_model(manifest.records(), model, margin=ctr_cfg.select_margin)
    return manifest, ctr_cfg, key, from_dict(ModelSpec, manifest.models[key].spec, f"model {key}")


def _store_of(manifest: BundleManifest, entry: BundleModel) -> tuple[Path, StoreInfo]:
    if entry.store is None or entry.content is None:
        raise MimrecError(f"{manifest.folder}: model {entry.name!r} reads content but its "
                          "bundle entry names no store")
    return manifest.path(entry.store), StoreInfo(**entry.content)


def names_encoder(entry: BundleModel) -> bool:
    """Whether a bundle model's entry names the encoder of its store (a trained stage or a raw
    text model); bundles written before the index manifest kept an encoder config do not."""
    reference = entry.encoder or {}
    return "stage" in reference or "raw" in reference


def bundle_encoder(manifest: BundleManifest, entry: BundleModel, info: StoreInfo
                   ) -> ItemEncoder | RawTextEncoder | None:
    """The encoder that made a store's vectors, to embed items added while serving.

    A trained encoder is read from the stage folder the bundle names; raw vectors come from the
    text model of the encoder config the bundle holds, checked against the store's weights hash.
    None when the bundle names no encoder (the store predates the index manifest's encoder
    config).
    """
    if not names_encoder(entry):
        return None
    reference = entry.encoder
    if "stage" in reference:
        return load_item_encoder(manifest.path(reference["stage"]))
    return raw_store_encoder(from_dict(EncoderConfig, reference["raw"], "encoder"), info)


def store_encoder(run: Path, info: StoreInfo) -> ItemEncoder | RawTextEncoder | None:
    """The encoder that made a store of ``run/index`` (for a store no bundle model reads): a
    trained encoder from its stage folder, raw vectors from the text model the index manifest's
    encoder config names. None when the store predates that config."""
    if info.encoder in ENCODER_STAGES:
        return load_item_encoder(run / info.encoder)
    if not info.encoder.startswith(RAW_PREFIX):
        return None
    saved = require_stage(run / "index", "index")["config"].get("encoder")
    if saved is None:
        return None
    return raw_store_encoder(from_dict(EncoderConfig, saved, "encoder"), info)


def raw_store_encoder(cfg: EncoderConfig, info: StoreInfo) -> RawTextEncoder:
    """The raw text model of ``cfg``, refused when it is not the one that built the store."""
    if raw_encoder_identity(cfg) != (info.encoder, info.encoder_hash):
        raise MimrecError(f"the text model {cfg.text_model or 'all-MiniLM-L6-v2 (packaged)'} is "
                          f"not the one that built the store {info.encoder} (weights differ)")
    return load_raw_text_encoder(cfg)


def content_rows(center: RepresentationCenter, catalogue: np.ndarray
                 ) -> tuple[torch.Tensor, np.ndarray]:
    """Content vectors by model item index: row 0 padding, then the catalogue in order, then the
    items added after training (store ids not in the catalogue, in store order). The table is
    the first rows of one with :func:`~mimrec.serve.live_tables.headroom` rows more, which the
    live tables take over as their buffer instead of copying it.

    Returns the (1 + I + A, E) table and the A added ids.
    """
    # every catalogue item must be in the store: unknown ids raise. Binary search, not np.isin
    # (which compares every store id with every catalogue id: minutes at a million items)
    rows = center.rows(catalogue)
    rest = np.ones(len(center), dtype=bool)
    rest[rows] = False
    order = np.concatenate([rows, np.flatnonzero(rest)])
    if len(order) != len(center):
        raise MimrecError(f"the catalogue names {len(catalogue) - len(np.unique(rows))} item "
                          "ids more than once")
    positions = np.empty(len(order), np.int64)  # store row -> model index
    positions[order] = np.arange(1, len(order) + 1)
    size = 1 + len(order)
    table = np.empty((size + headroom(size), center.dim), np.float32)  # the one such array
    table[0] = 0.0
    center.read_vectors_into(table, positions)
    return torch.from_numpy(table)[:size], center.ids[rest]

