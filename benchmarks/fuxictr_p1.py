"""FuxiCTR 2.3.10 DIN (its ``model_zoo/LongCTR`` model and data loader) on mimrec's P1 split.

Runs in the separate benchmark environment (``.venv-fuxictr``, ``make bench-env``), never in
mimrec's own. Reads a mimrec data artifact (``mimrec data ... --out RUN`` -> ``RUN/data``) and
hands FuxiCTR the same P1 events through its own preprocessing:

- train/valid/test CSV files (one row per P1 event) -> FuxiCTR's ``FeatureProcessor`` fits the
  vocabularies on train and writes its parquet files and ``feature_map.json``;
- the behaviour sequence in FuxiCTR's LongCTR form (``user_info`` rows pointed to by each event's
  ``user_index``, of which its loader keeps the last ``max_len`` = 50 of the first ``seq_len``):
  one row per event holding that event's P1 history, because under P1-cold a user's history
  differs by split (checked here to equal mimrec's histories, event by event);
- ``item_info`` holds the item features (item_id and the item feature columns) encoded with
  FuxiCTR's fitted tokenizers; FuxiCTR's DIN embeds target and behaviour items from it.

Features: the ones mimrec's DIN reads, taken from the data artifact's own config
(``RUN/data/manifest.json``: ``data.user_features``, ``data.item_features``): user_id and the
user feature columns of the users table (user), item_id and the item feature columns of the items
table (item), the behaviour sequence. A column whose cells are lists (MovieLens' genres) is a
FuxiCTR sequence feature padded to its widest row, any other a categorical one (values as text).
MovieLens-100K: age, gender, occupation; genres (sequence), year. P4: no user features (no users
table); class, brand. Test predictions are scored with
mimrec's metrics (``mimrec.eval.metrics.ctr_metrics``), written as JSON, and kept per seed
(``OUT.seed<k>.test.npy``) so that mimrec's paired bootstrap can compare them row by row.

``--content ITEMS.npz`` (``key``: item ids, ``value``: one vector per item, e.g. mimrec's frozen
C-SFT vectors) makes the content peer: FuxiCTR's pretrained-embedding feature on ``item_id``
(``pretrained_emb``, ``pretrain_usage = "concat"``, ``freeze_emb = True``: the frozen vector is
concatenated with a trained ID embedding and projected to the embedding size), the way the
MicroLens multimodal CTR baseline feeds item content to an ID model. FuxiCTR's preprocessing then
adds every item of the file to the item_id vocabulary, so an item that never appears in train
(cold) is embedded from its vector instead of the out-of-vocabulary row.

Usage: .venv-fuxictr/bin/python benchmarks/fuxictr_p1.py RUN/data --work DIR --out result.json
       [--config tuned|default|mimrec_shapes] [--seeds 0 1 2] [--threads 1] [--no-quality]
       [--no-throughput] [--batch-size 1024] [--batches 40] [--reuse] [--smoke]
       [--content ITEMS.npz]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mimrec.data.sample_shards import read_samples
from mimrec.data.samples import TEST, TRAIN, VALID, Samples
from mimrec.errors import DataError
from mimrec.eval.metrics import ctr_metrics

# MovieLens-100K's features (configs/movielens.toml); the features used come from the artifact.
USER_FEATURES = ("user_id", "age", "gender", "occupation")
ITEM_FEATURES = ("item_id", "genres", "year")
META = ("user_index", "item_index", "seq_len")
SEPARATOR = "^"  # joins a list-valued cell into FuxiCTR's sequence text
SPLIT_NAMES = {TRAIN: "train", VALID: "valid", TEST: "test"}

# FuxiCTR's model_zoo/LongCTR/config/din_config/model_config.yaml (DIN_default + Base) ...
DEFAULT = {
    "model": "DIN", "loss": "binary_crossentropy", "metrics": ["AUC", "logloss"],
    "task": "binary_classification", "optimizer": "adam", "learning_rate": 1.0e-3,
    "embedding_regularizer": 0, "net_regularizer": 0, "batch_size": 8192, "embedding_dim": 64,
    "dnn_hidden_units": [500, 500, 500], "dnn_activations": "relu",
    "attention_hidden_units": [64], "attention_hidden_activations": "Dice",
    "attention_output_activation": None, "attention_dropout": 0, "din_use_softmax": False,
    "net_dropout": 0, "batch_norm": False, "epochs": 100, "shuffle": True, "seed": 2019,
    "monitor": {"AUC": 1, "logloss": -1}, "monitor_mode": "max", "max_len": 50,
    "accumulation_steps": 1, "verbose": 0, "early_stop_patience": 2,
    "pickle_feature_encoder": True, "save_best_only": True, "eval_steps": None,
    "debug_mode": False, "group_id": None, "use_features": None, "feature_specs": None,
    "feature_config": None, "gpu": -1,
}
# ... and the configuration tuned on valid for P1 (issue 14: 0.7283 ± 0.0022 AUC over 3 seeds):
# embedding 16, batch 1,024, up to 20 epochs, early stopping (patience 2) on valid AUC alone,
# embedding regularizer 0.1, net dropout 0.2, batch norm; attention [64] with Dice, DNN
# [500, 500, 500] and Adam lr 1e-3 as in the defaults.
REGULARISED = {**DEFAULT, "embedding_regularizer": 0.1, "net_dropout": 0.2, "batch_norm": True}
TUNED = {**REGULARISED, "embedding_dim": 16, "batch_size": 1024, "epochs": 20,
         "monitor": {"AUC": 1}}
# FuxiCTR's DIN in mimrec's shapes (throughput at equal model size; see bench_ctr_throughput).
MIMREC_SHAPES = {**REGULARISED, "embedding_dim": 16, "dnn_hidden_units": [256, 128],
                 "attention_hidden_units": [64, 32], "attention_hidden_activations": "ReLU"}
CONFIGS = {"default": DEFAULT, "tuned": TUNED, "mimrec_shapes": MIMREC_SHAPES}


@dataclass(frozen=True)
class Feature:
    """One FuxiCTR feature column taken from the items or users table.

    Attributes:
        name: the column (and FuxiCTR feature) name.
        source: ``"user"`` or ``"item"``.
        width: 0 for a categorical (scalar) column; else the widest list of a list-valued column
            (a FuxiCTR sequence feature padded to this length).
    """

    name: str
    source: str
    width: int = 0


def is_list(value: object) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def column_feature(name: str, source: str, column: pd.Series) -> Feature:
    """A categorical feature, or a sequence feature when any cell of ``column`` is a list."""
    if any(is_list(v) for v in column):
        return Feature(name, source, max(1, max((len(v) for v in column if is_list(v)),
                                                default=1)))
    return Feature(name, source)


def data_features(data: Path, items: pd.DataFrame, users: pd.DataFrame | None
                  ) -> tuple[Feature, ...]:
    """user_id + ``data.user_features``, item_id + ``data.item_features`` of the artifact's config."""
    manifest = data / "manifest.json"
    config = json.loads(manifest.read_text())["config"]
    user_cols, item_cols = list(config["user_features"]), list(config["item_features"])
    taken = set(META) | {"label", "user_id", "item_id"}
    for name in user_cols + item_cols:
        if name in taken:
            raise DataError(f"{manifest}: feature column {name!r} clashes with a column the "
                            f"benchmark writes itself ({', '.join(sorted(taken))})")
        taken.add(name)
    if user_cols and users is None:
        raise DataError(f"{manifest}: data.user_features = {user_cols} but {data} has no "
                        "users.parquet")
    for cols, table, what in ((user_cols, users, "users.parquet"),
                              (item_cols, items, "items.parquet")):
        missing = [c for c in cols if c not in table.columns] if cols else []
        if missing:
            raise DataError(f"{data / what}: no column {missing[0]!r} (named in "
                            f"{manifest}: data.{what.split('.')[0][:-1]}_features)")
    return (Feature("user_id", "user"), *(column_feature(c, "user", users[c]) for c in user_cols),
            Feature("item_id", "item"), *(column_feature(c, "item", items[c]) for c in item_cols))


def feature_values(f: Feature, column: pd.Series) -> np.ndarray:
    """A column's raw values as FuxiCTR reads them: text, lists joined by ``SEPARATOR``."""
    if f.width:
        return np.array([SEPARATOR.join(str(x) for x in v) if is_list(v) else
                         ("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
                         for v in column], dtype=object)
    return column.astype(str).to_numpy()


def event_sequences(s: Samples) -> tuple[list[np.ndarray], np.ndarray]:
    """Each event's own P1 history in LongCTR form: ``user_info`` row ``n + 1`` holds event
    ``n``'s history items (model index = row + 1, most recent last; row 0 is empty) and its
    ``seq_len`` is the history's length.

    One row per event rather than one sequence per user: under P1-cold the same user's history
    differs by split (new items are removed from the histories before their launch only), which a
    single sequence with a pointer cannot express. The loader reads exactly the same items.
    """
    history = s.history_rows(np.arange(len(s.label)))
    seqs = [np.zeros(0, dtype=np.int64)]
    seqs += [row[row >= 0].astype(np.int64) + 1 for row in history]
    return seqs, np.array([len(q) for q in seqs[1:]], dtype=np.int64)


def check_histories(s: Samples, seqs: list[np.ndarray], seq_len: np.ndarray) -> None:
    """What FuxiCTR's LongCTR loader reads (the last ``max_len`` of the first ``seq_len`` items of
    the event's ``user_info`` row) == the event's P1 history."""
    history = s.history_rows(np.arange(len(s.label)))
    for n in range(len(s.label)):
        mine = history[n][history[n] >= 0] + 1
        theirs = seqs[n + 1][: seq_len[n]][-s.max_seq_len:]
        if not np.array_equal(mine, theirs):
            raise AssertionError(f"event {n}: FuxiCTR sequence differs from the P1 history")


def event_table(s: Samples, items: pd.DataFrame, users: pd.DataFrame | None,
                seq_len: np.ndarray, features: tuple[Feature, ...]) -> pd.DataFrame:
    """One CSV row per P1 event: raw feature values, the LongCTR meta columns (``user_index``:
    the event's own ``user_info`` row, see :func:`event_sequences`), the label.

    ``users`` rows are in the samples' user order (row ``u`` is ``s.user_ids[u]``); without a
    users table, user_id comes from the samples.
    """
    if users is None:
        users = pd.DataFrame({"user_id": s.user_ids})
    tables = {"user": users.iloc[s.user], "item": items.iloc[s.item]}
    return pd.DataFrame({
        **{f.name: feature_values(f, tables[f.source][f.name]) for f in features},
        "user_index": np.arange(1, len(s.label) + 1), "item_index": s.item + 1,
        "seq_len": seq_len,
        "label": s.label.astype(np.int64),  # int: LongCTR stacks all columns in one array
    })


def content_spec(content: Path | None) -> dict:
    """The item_id column's pretrained-embedding fields for ``content`` (none without it)."""
    if content is None:
        return {}
    with np.load(content, allow_pickle=False) as npz:
        dim = int(npz["value"].shape[1])
    return {"pretrained_emb": str(content), "pretrain_dim": dim, "pretrain_usage": "concat",
            "freeze_emb": True}


def feature_cols(features: tuple[Feature, ...], content: Path | None = None) -> list[dict]:
    """FuxiCTR's ``feature_cols``: the features in order, then the LongCTR meta columns."""
    cols = []
    for f in features:
        col = {"name": f.name, "active": True, "dtype": "str", "type": "categorical",
               "source": f.source}
        if f.width:
            col.update(type="sequence", splitter=SEPARATOR, max_len=f.width, padding="post")
        if f.name == "item_id":
            col.update(content_spec(content))
        cols.append(col)
    cols += [{"name": m, "active": True, "dtype": "int", "type": "meta", "remap": False}
             for m in META]
    return cols


def prepare(data: Path, work: Path, params: dict, max_users: int | None, reuse: bool = False,
            content: Path | None = None) -> tuple[dict, Samples]:
    """CSV files + FuxiCTR preprocessing + user_info / item_info; returns completed params.

    With ``reuse``, a work folder prepared before from the same data artifact (and content
    file) is kept.
    """
    from fuxictr.preprocess import FeatureProcessor, build_dataset

    params.update(dataset_id="ml100k_p1", data_root=str(work / "data"), data_format="csv",
                  model_root=str(work / "checkpoints"), num_workers=0)
    s = read_samples(data / "samples")
    if max_users:
        s = subset_users(s, max_users)
    raw = work / "raw"
    stamp = work / "prepared.json"
    source = {"data": str(data.resolve()), "events": len(s.label), "max_users": max_users,
              "content": str(content.resolve()) if content else None}
    if reuse and stamp.is_file() and json.loads(stamp.read_text()) == source:
        return finish_params(params, work, json.loads((work / "paths.json").read_text())), s
    shutil.rmtree(work, ignore_errors=True)
    items = pd.read_parquet(data / "items.parquet")
    users = (pd.read_parquet(data / "users.parquet") if (data / "users.parquet").is_file()
             else None)
    features = data_features(data, items, users)
    seqs, seq_len = event_sequences(s)
    check_histories(s, seqs, seq_len)
    raw.mkdir(parents=True, exist_ok=True)
    table = event_table(s, items, users, seq_len, features)
    for code, name in SPLIT_NAMES.items():
        table[s.split == code].to_csv(raw / f"{name}.csv", index=False)
    params.update(train_data=str(raw / "train.csv"), valid_data=str(raw / "valid.csv"),
                  test_data=str(raw / "test.csv"),
                  feature_cols=feature_cols(features, content),
                  label_col={"name": "label", "dtype": "int"})
    encoder = FeatureProcessor(**params)
    params["train_data"], params["valid_data"], params["test_data"] = build_dataset(
        encoder, **params)
    import ray  # FuxiCTR's preprocessing started a local Ray; its daemons would share the CPU

    ray.shutdown()
    for split in ("train_data", "valid_data", "test_data"):  # item features come via item_info
        path = params[split]
        item_names = [f.name for f in features if f.source == "item"]
        pd.read_parquet(path).drop(columns=item_names).to_parquet(path)
    write_item_info(encoder, items, features, work / "item_info.parquet")
    pd.DataFrame({"full_item_seq": [list(q) for q in seqs]}).to_parquet(work / "user_info.parquet")
    paths = {k: params[k] for k in ("train_data", "valid_data", "test_data")}
    (work / "paths.json").write_text(json.dumps(paths))
    stamp.write_text(json.dumps(source))
    return finish_params(params, work, paths), s


def finish_params(params: dict, work: Path, paths: dict) -> dict:
    """Data paths, user_info / item_info and the feature map (loaded with this config's dims)."""
    from fuxictr.features import FeatureMap

    params.update(paths, user_info=str(work / "user_info.parquet"),
                  item_info=str(work / "item_info.parquet"))
    data_dir = os.path.join(params["data_root"], params["dataset_id"])
    feature_map = FeatureMap(params["dataset_id"], data_dir)
    feature_map.load(os.path.join(data_dir, "feature_map.json"), params)
    params["feature_map"] = feature_map
    return params


def write_item_info(encoder, items: pd.DataFrame, features: tuple[Feature, ...], path: Path
                    ) -> None:
    """Item features by item_index (row 0 = padding), encoded with FuxiCTR's tokenizers."""
    item_features = [f for f in features if f.source == "item"]
    enc = encoder.transform({f.name: feature_values(f, items[f.name]) for f in item_features})
    table = {"item_index": np.arange(len(items) + 1)}
    for f in item_features:
        values = np.asarray(enc[f.name])
        if f.width:
            pad = np.zeros((1, values.shape[1]), dtype=values.dtype)
            table[f.name] = list(np.vstack([pad, values]))
        else:
            table[f.name] = np.r_[0, values]
    pd.DataFrame(table).to_parquet(path)


def subset_users(s: Samples, max_users: int) -> Samples:
    """Events of the first ``max_users`` users only (histories are per user, so unchanged)."""
    keep = s.user < max_users
    per_event = ("split", "user", "item", "timestamp", "label", "hist_end", "hist_len", "bucket")
    fields = {k: v[keep] if k in per_event else v for k, v in s.__dict__.items()}
    if len(s.click_probability):
        fields["click_probability"] = s.click_probability[keep]
    fields["user_ids"] = s.user_ids[:max_users]
    return Samples(**fields)


def loaders(params: dict, batch_size: int):
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from model_zoo.LongCTR.longctr_dataloader import LongCTRDataLoader

    kw = {k: v for k, v in params.items() if k not in ("feature_map", "batch_size")}
    kw["data_loader"] = LongCTRDataLoader
    train, valid = RankDataLoader(params["feature_map"], stage="train", batch_size=batch_size,
                                  **kw)
    test = RankDataLoader(params["feature_map"], stage="test", batch_size=batch_size, **kw)
    return train, valid, test


def make_model(params: dict, seed: int):
    """FuxiCTR's DIN; its best-epoch checkpoint goes to a folder of its own per seed."""
    from fuxictr.pytorch.torch_utils import seed_everything
    from model_zoo.LongCTR.DIN import DIN

    seed_everything(seed)
    kw = {k: v for k, v in params.items() if k != "feature_map"}
    kw.update(seed=seed, model_root=os.path.join(params["model_root"], f"seed{seed}"))
    return DIN(params["feature_map"], **kw)


def train_quality(params: dict, s: Samples, seed: int, predictions: Path | None = None) -> dict:
    """FuxiCTR's own fit (early stopping on valid, best restored), then mimrec's test metrics;
    the test probabilities go to ``predictions`` (.npy, test rows in P1 order) when given."""
    train, valid, test = loaders(params, params["batch_size"])
    model = make_model(params, seed)
    os.makedirs(model.model_dir, exist_ok=True)
    start = time.perf_counter()
    model.fit(train, validation_data=valid, epochs=params["epochs"])
    seconds = time.perf_counter() - start
    probs = model.predict(test)
    t = s.split == TEST
    if predictions is not None:
        np.save(predictions, np.asarray(probs, dtype=np.float64))
    return {"test": ctr_metrics(s.user[t], s.label[t], probs, s.bucket[t]),
            "epochs": model._epoch_index + 1, "train_seconds": seconds}


def throughput(params: dict, batch_size: int, seed: int, max_batches: int) -> dict:
    """Train samples/s of FuxiCTR's loader + train step over the first ``max_batches`` batches of
    a shuffled epoch; predict samples/s over the test split."""
    train, _, test = loaders(params, batch_size)
    model = make_model(params, seed)
    model._max_gradient_norm = 10.0
    model.train()
    n, start = 0, time.perf_counter()
    for i, batch in enumerate(train):
        model._batch_index = i
        model.train_step(batch)
        n += len(batch[2])
        if i + 1 == max_batches:
            break
    train_rate = n / (time.perf_counter() - start)
    start = time.perf_counter()
    probs = model.predict(test)
    predict_rate = len(probs) / (time.perf_counter() - start)
    return {"train_samples_per_second": train_rate, "predict_samples_per_second": predict_rate,
            "train_samples": n, "batch_size": batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a mimrec data artifact (RUN/data)")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (replaced)")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tuned")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024, help="of the throughput run")
    parser.add_argument("--batches", type=int, default=40, help="train batches timed")
    parser.add_argument("--reuse", action="store_true", help="keep a prepared --work folder")
    parser.add_argument("--quality", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--throughput", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--smoke", action="store_true", help="40 users, 1 epoch, tiny model")
    parser.add_argument("--content", type=Path, default=None,
                        help="item vectors (.npz with key, value): the content peer")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    torch.set_num_threads(args.threads)
    params = dict(CONFIGS[args.config])
    if args.smoke:
        params.update(epochs=1, embedding_dim=4, dnn_hidden_units=[8], batch_size=256)
    started = time.perf_counter()
    params, s = prepare(args.data, args.work, params, 40 if args.smoke else None, args.reuse,
                        args.content)
    label = f"{args.config}+content" if args.content else args.config
    result = {"library": "fuxictr 2.3.10 (model_zoo/LongCTR DIN)", "config": label,
              "content": str(args.content) if args.content else None,
              "threads": args.threads, "prepare_seconds": time.perf_counter() - started,
              "params": {k: v for k, v in params.items()
                         if k not in ("feature_map", "feature_cols")}}
    if args.throughput:
        result["throughput"] = throughput(params, args.batch_size, args.seeds[0],
                                          args.batches)
        print(f"FuxiCTR DIN ({label}): train "
              f"{result['throughput']['train_samples_per_second']:,.0f} samples/s, predict "
              f"{result['throughput']['predict_samples_per_second']:,.0f} samples/s "
              f"(batch {args.batch_size}, {args.threads} thread(s))", flush=True)
    if args.quality:
        result["seeds"] = {}
        for seed in args.seeds:
            preds = args.out.with_name(f"{args.out.stem}.seed{seed}.test.npy")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            r = result["seeds"][str(seed)] = train_quality(params, s, seed, preds)
            r["predictions"] = str(preds)
            print(f"FuxiCTR DIN ({label}) seed {seed}: test AUC {r['test']['auc']:.4f} "
                  f"gAUC {r['test']['gauc']:.4f} logloss {r['test']['logloss']:.4f} "
                  f"({r['epochs']} epochs, {r['train_seconds']:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
