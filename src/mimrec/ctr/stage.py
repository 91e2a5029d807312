"""The CTR stage: train every configured model for every seed, save weights and predictions.

Artifact files: ``<model>-seed<k>.safetensors`` (weights), ``predictions.npz`` (valid and test
probabilities per model and seed, keys ``<model>-seed<k>/<split>``), ``manifest.json`` (per model
and seed: its spec, what it is made of, metrics and training log).
Models of an earlier artifact that a run does not retrain are kept (:mod:`mimrec.ctr.kept`).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Collection
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file, save_file

from mimrec.artifacts import read_manifest, stage_dir, write_manifest
from mimrec.csft.distributed import rank, world_size
from mimrec.ctr.blocks import block_name, reads_content
from mimrec.ctr.checkpoint import Checkpoints, ModelCheckpoint
from mimrec.ctr.config import CtrConfig, ModelSpec
from mimrec.ctr.data_parallel import total_rows
from mimrec.ctr.features import FeatureTables, feature_tables
from mimrec.ctr.kept import KeptModels, kept_models
from mimrec.ctr.model import CiUBM
from mimrec.ctr.split_predictions import (
    portable,
    predict_to_file,
    remove_prediction_files,
    reopened,
)
from mimrec.ctr.train import (
    Batchable,
    EpochCallback,
    batchable,
    fit,
    predict,
    resolve_device,
    seed_everything,
)
from mimrec.ctr.variants import listed_specs, model_specs
from mimrec.ctr.watch import TENSORBOARD, EpochLines, TensorBoardEpochs, init_worker, send_epoch
from mimrec.data.config import DataConfig
from mimrec.data.samples import SPLITS, TEST, TRAIN, VALID
from mimrec.data.stage import DataArtifact, check_splits, read_data
from mimrec.errors import MimrecError
from mimrec.eval.selection import best_valid_auc, to_switch_off, valid_scores
from mimrec.eval.streaming import STREAM_ABOVE_ROWS, split_metrics
from mimrec.processes import remove_stale_temps
from mimrec.runtime import keep_freed_memory
from mimrec.serialize import to_dict
from mimrec.store.center import RepresentationCenter


def make_progress(console: Console) -> Progress:
    """The progress bar style of long CTR steps."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def content_table(store: Path, items: pd.DataFrame) -> tuple[torch.Tensor, dict]:
    """Content vectors by model item index (row 0 = padding) from a Representation Center, and
    the store's identity for the manifest. Every catalogue item must be in the store."""
    center = RepresentationCenter(store)
    table = center.padded_table(items["item_id"].to_numpy())  # (1 + I, E); unknown ids raise
    return table, {"store": str(store.resolve()), "version": center.version,
                   **center.info.__dict__}


# The permutation of a shuffled-content control (ModelSpec.shuffled_content): the same for every
# seed and every run over the same catalogue.
SHUFFLE_SEED = 0


def shuffled_rows(table: torch.Tensor) -> torch.Tensor:
    """A content table with its item rows permuted (row 0, padding, stays) so that every item
    reads another item's vector: one random cycle through all items, each taking the next
    one's row. Shapes: (1 + I, E) -> (1 + I, E)."""
    cycle = torch.from_numpy(np.random.default_rng(SHUFFLE_SEED).permutation(table.shape[0] - 1) + 1)
    source = torch.arange(table.shape[0])
    source[cycle] = cycle.roll(-1)
    return table[source]


def model_key(spec: ModelSpec, seed: int) -> str:
    """The key of one trained model in the artifact: ``<model>-seed<k>``."""
    return f"{spec.name}-seed{seed}"


def spec_record(spec: ModelSpec) -> dict:
    """A spec as JSON-able data (block classes given in code are named by their class)."""
    return {**to_dict(replace(spec, blocks=())),
            "blocks": [block_name(b) for b in spec.blocks]}


def start_model(cfg: CtrConfig, spec: ModelSpec, seed: int, tables: FeatureTables,
                train: Batchable, content: torch.Tensor | None,
                start_weights: dict | None = None) -> CiUBM:
    """A model as its training starts (seeded): fresh weights, or ``start_weights`` (the
    trained weights of ``spec.init_from``, frozen) with every content part at its zero start."""
    seed_everything(seed, cfg.train.deterministic)
    model = CiUBM(cfg.model, spec, tables, content if reads_content(spec) else None)
    model.mark_trained(train.model_items())
    if start_weights is not None:
        model.start_from(start_weights)
    return model.to(resolve_device(cfg.train.device))


def train_one(cfg: CtrConfig, spec: ModelSpec, seed: int, tables: FeatureTables,
              splits: dict[str, Batchable], progress: Progress | None,
              content: torch.Tensor | None, start_weights: dict | None = None,
              on_epoch: EpochCallback | None = None,
              checkpoint: ModelCheckpoint | None = None) -> tuple[CiUBM, dict]:
    """Train one model with one seed; returns the model (best epoch) and its training record.
    ``start_weights``: the trained weights of ``spec.init_from`` (same seed), kept frozen;
    ``on_epoch`` receives each epoch's record as it ends; ``checkpoint``: where the state after
    each epoch is kept, and resumed from."""
    model = start_model(cfg, spec, seed, tables, splits["train"], content, start_weights)
    log = fit(model, splits["train"], splits["valid"], cfg.train, progress,
              judge_start=start_weights is not None, on_epoch=on_epoch, checkpoint=checkpoint)
    seconds = log[-1]["seconds"]  # since training started, before a resume too
    device = next(model.parameters()).device
    samples_seen = total_rows(len(splits["train"]), device) * len(log)  # over every rank
    return model, {"model": spec.name, "seed": seed, "spec": spec_record(spec),
                   "parts": model.describe(), "epochs": log, "train_seconds": seconds,
                   "train_samples_per_second": samples_seen / max(seconds, 1e-9)}


def train_and_save(cfg: CtrConfig, spec: ModelSpec, seed: int, tables: FeatureTables,
                   splits: dict[str, Batchable], content: torch.Tensor | None, folder: Path,
                   progress: Progress | None, on_epoch: EpochCallback | None = None,
                   store: dict | None = None, checkpoint: ModelCheckpoint | None = None
                   ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Train one model, save its weights into ``folder``; returns its valid and test
    probabilities and its training record (``epochs``: one record per epoch, the history;
    ``content``: ``store``, the identity of the content vectors it read).
    A model with ``init_from`` starts from that model's weights file in ``folder`` (trained
    first). With a ``checkpoint`` training resumes from its last epoch and the finished model
    is kept there until the stage is done."""
    start = None
    if spec.init_from:
        start = load_file(folder / f"{spec.init_from}-seed{seed}.safetensors")
    model, record = train_one(cfg, spec, seed, tables, splits, progress, content, start,
                              on_epoch, checkpoint)
    weights = {k: v.contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, folder / f"{model_key(spec, seed)}.safetensors")
    record = {**record, "content": store}
    if rank() != 0:  # a data-parallel helper rank: rank 0 predicts and keeps the model
        return np.zeros(0), np.zeros(0), record
    key = model_key(spec, seed)
    valid = _probabilities(model, splits["valid"], folder, f"{key}.valid")
    test = _probabilities(model, splits["test"], folder, f"{key}.test")
    if checkpoint is not None:
        checkpoint.finish(weights, valid, test, record)
    return valid, test, record


def _probabilities(model: CiUBM, split: Batchable, folder: Path, name: str) -> np.ndarray:
    """A split's probabilities: in memory, or for more than ``STREAM_ABOVE_ROWS`` rows a memory
    map of ``folder/<name>.predict.npy`` written batch by batch
    (:mod:`mimrec.ctr.split_predictions`)."""
    if len(split) <= STREAM_ABOVE_ROWS:
        return predict(model, split)
    return predict_to_file(model, split, folder, name)


def _content_of(spec: ModelSpec, items: pd.DataFrame, index_dir: Path | None
                ) -> tuple[torch.Tensor | None, dict | None]:
    """The content table a model reads (None for ID-only models) and its store identity."""
    if not reads_content(spec):
        return None, None
    if index_dir is None:
        raise MimrecError(f"model {spec.name!r} needs content vectors: run `mimrec index` first "
                          "(or train only 'din')")
    table, identity = content_table(index_dir / spec.source, items)
    if spec.shuffled_content:
        return shuffled_rows(table), {**identity, "shuffled": SHUFFLE_SEED}
    return table, identity


def _splits(data: DataArtifact) -> dict[str, Batchable]:
    """The splits as tensors; under torchrun, train is this rank's shard (rows rank::world)."""
    splits = {name: batchable(data.samples, code)
              for name, code in (("train", TRAIN), ("valid", VALID), ("test", TEST))}
    if world_size() > 1:
        splits["train"] = splits["train"].shard(rank(), world_size())
    return splits


def _worker_job(cfg: CtrConfig, data_cfg: DataConfig, data_folder: Path, index_dir: Path | None,
                spec: ModelSpec, seed: int, folder: Path, checkpoint: ModelCheckpoint
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """One model in a worker process: reload the artifacts, train, save (see ``workers``);
    each epoch's record goes to the parent as it ends (:mod:`mimrec.ctr.watch`)."""
    torch.set_num_threads(cfg.train.threads or 1)
    keep_freed_memory()  # before the data is read (benchmarks/bench_scale.py: 7-14% at 100M)
    data = read_data(data_folder)
    content, store = _content_of(spec, data.items, index_dir)
    key = model_key(spec, seed)
    valid, test, record = train_and_save(cfg, spec, seed, feature_tables(data, data_cfg),
                                         _splits(data), content, folder, None,
                                         lambda epoch: send_epoch(key, epoch), store, checkpoint)
    return portable(valid), portable(test), record


def _resumed(checkpoints: Checkpoints, spec: ModelSpec, seed: int, folder: Path,
             lines: EpochLines) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """A model that finished before the run was stopped, its weights copied into ``folder``."""
    finished = checkpoints.model(model_key(spec, seed), spec_record(spec)).finished()
    if finished is None:
        return None
    valid, test, record, weights = finished
    shutil.copy2(weights, folder / weights.name)
    lines.console.print(f"  {model_key(spec, seed)}: finished before the run was stopped, "
                        f"taken from {checkpoints.folder}", highlight=False)
    return valid, test, record


def _train_all(cfg: CtrConfig, data_cfg: DataConfig, data: DataArtifact, folder: Path,
               index_dir: Path | None, progress: Progress, lines: EpochLines,
               checkpoints: Checkpoints, kept: Collection[str] = ()):
    """Yield ``(spec, seed, valid, test, record)`` for every model as it is trained, models
    that start from scratch first (then those that start from one of them), each x seeds; with
    ``workers`` > 1 the models train in a process pool, a model that starts from another as
    soon as that one is done, and are yielded in the same order. Every epoch is printed by
    ``lines`` as it ends, in either case. Models finished before a stopped run are taken from
    ``checkpoints``; the others resume from their last epoch there. ``kept``: models of an
    earlier run whose weights (every seed, already in ``folder``) a model may start from."""
    specs = model_specs(cfg, kept)
    order = [s for s in specs if not s.init_from] + [s for s in specs if s.init_from]
    if cfg.train.workers > 1 and world_size() == 1:
        yield from _train_in_pool(cfg, data_cfg, data, folder, index_dir, order, lines,
                                  checkpoints)
        return
    tables, splits = feature_tables(data, data_cfg), _splits(data)
    for spec in order:
        content, store = _content_of(spec, data.items, index_dir)
        for seed in cfg.train.seeds:
            key = model_key(spec, seed)
            result = _resumed(checkpoints, spec, seed, folder, lines) or train_and_save(
                cfg, spec, seed, tables, splits, content, folder, progress,
                lambda epoch, key=key: lines(key, epoch), store,
                checkpoints.model(key, spec_record(spec)))
            yield spec, seed, *result


def _train_in_pool(cfg: CtrConfig, data_cfg: DataConfig, data: DataArtifact, folder: Path,
                   index_dir: Path | None, specs: list[ModelSpec], lines: EpochLines,
                   checkpoints: Checkpoints):
    """The models of :func:`_train_all` in ``workers`` processes, yielded in job order; the
    workers' epoch records are printed while the parent waits."""
    jobs = [(spec, s) for spec in specs for s in cfg.train.seeds]
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    done: dict[tuple[str, int], tuple] = {}
    for spec, seed in jobs:
        finished = _resumed(checkpoints, spec, seed, folder, lines)
        if finished is not None:
            done[spec.name, seed] = finished
    with ProcessPoolExecutor(min(cfg.train.workers, len(jobs)), mp_context=ctx,
                             initializer=init_worker, initargs=(os.getpid(), events)) as pool:
        running: dict = {}
        waiting, next_out = list(jobs), 0
        while waiting or running:
            for spec, seed in [j for j in waiting if not j[0].init_from
                               or (j[0].init_from, j[1]) in done
                               or j[0].init_from not in {s.name for s in specs}]:
                waiting.remove((spec, seed))
                if (spec.name, seed) in done:  # finished before a stopped run
                    continue
                running[pool.submit(_worker_job, cfg, data_cfg, data.folder, index_dir, spec,
                                    seed, folder, checkpoints.model(model_key(spec, seed),
                                                                    spec_record(spec)))
                        ] = (spec.name, seed)
            finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            lines.drain(events)
            for future in finished:
                name, seed = running.pop(future)
                valid, test, record = future.result()
                done[name, seed] = reopened(valid), reopened(test), record
                lines.finish(f"{name}-seed{seed}", len(done[name, seed][2]["epochs"]), events)
            while next_out < len(jobs) and (jobs[next_out][0].name, jobs[next_out][1]) in done:
                spec, seed = jobs[next_out]
                yield spec, seed, *done[spec.name, seed]
                next_out += 1


def _startable(kept: KeptModels, seeds: tuple[int, ...]) -> set[str]:
    """Names of kept models another model can start from: trained from scratch, every seed."""
    names = {r["model"] for r in kept.records.values() if not r["spec"].get("init_from")}
    return {n for n in names if all(f"{n}-seed{s}" in kept.records for s in seeds)}


DENSE_ROWS_HINT = 200_000  # above this many ID rows, dense updates cost more than DIN itself


def run_ctr(cfg: CtrConfig, data_cfg: DataConfig, data: DataArtifact, out: Path,
            console: Console | None = None, index_dir: Path | None = None,
            replace: bool = False) -> dict:
    """Train every model of ``cfg`` x ``cfg.train.seeds`` on the data artifact, writing ``out``.

    Content models read their vectors from ``index_dir/<source>`` (the index artifact). Models
    already in ``out`` that this run does not train are kept unless ``replace``.
    """
    console = console or Console(stderr=True)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if rank() != 0:
        return _help_train(cfg, data_cfg, data, out, index_dir, replace)
    check_splits(data.samples, str(data.folder), both_classes=tuple(SPLITS))  # before training
    if world_size() > 1:
        console.print(f"  data-parallel: {world_size()} ranks, each training on its own "
                      f"1/{world_size()} of train, global batch {cfg.train.batch_size}"
                      + (" (ctr.train.workers is 1 under torchrun)"
                         if cfg.train.workers > 1 else ""))
    rows = len(data.samples.user_ids) + len(data.items)
    if rows > DENSE_ROWS_HINT and not cfg.train.sparse_updates:
        console.print(f"  {rows:,} user and item ID rows: every training step updates all of "
                      "them; --set ctr.train.sparse_updates=true makes a step update only the "
                      "rows its batch uses")
    test = data.samples.subset(TEST)
    board = TensorBoardEpochs(out.parent / TENSORBOARD) if cfg.train.tensorboard else None
    config = {"ctr": to_dict(cfg), "data": to_dict(data_cfg)}
    kept, note = _kept(cfg, config, data, out, replace)
    if note:
        console.print(f"  {note}")
    predictions, records = dict(kept.predictions), dict(kept.records)
    checkpoints = Checkpoints(out, _checkpoint_settings(config, data, index_dir))
    with stage_dir(out) as tmp, make_progress(console) as progress:
        kept.copy_into(tmp)
        if records:
            console.print(f"  keeping {', '.join(records)} (not retrained; --replace drops them)")
        lines = EpochLines(console, cfg.train.max_epochs, board)
        for spec, seed, valid, probs, record in _train_all(cfg, data_cfg, data, tmp, index_dir,
                                                            progress, lines, checkpoints,
                                                            _startable(kept, cfg.train.seeds)):
            key = model_key(spec, seed)
            if not (np.isfinite(valid).all() and np.isfinite(probs).all()):
                raise MimrecError(f"ctr: {key} predicts NaN or infinity (training diverged; try "
                                  f"a lower ctr.train.lr than {cfg.train.lr}); {out} was left "
                                  "as it was")
            predictions[f"{key}/valid"], predictions[f"{key}/test"] = valid, probs
            record["test"] = split_metrics(test["user"], test["label"], probs, test["bucket"],
                                           stream_above=STREAM_ABOVE_ROWS)
            records[key] = record
            console.print(f"  {key}: test AUC {record['test']['auc']:.4f}  "
                          f"gAUC {record['test']['gauc']:.4f}  "
                          f"({record['train_seconds']:.0f}s, {len(record['epochs'])} epochs)")
        lines.close()
        _switch_off_content(cfg, data_cfg, data, test, tmp, index_dir, records, predictions,
                            console)
        if board is not None:
            console.print(f"  TensorBoard: tensorboard --logdir {out.parent / TENSORBOARD}")
        np.savez(tmp / "predictions.npz", **predictions)  # memory maps are copied in chunks
        del predictions
        remove_prediction_files(tmp)
        parents = {"data": data.folder, **({"index": index_dir} if index_dir else {})}
        write_manifest(tmp, "ctr", config, parents=parents, metrics=records)
    checkpoints.clear()
    return records


def _switch_off_content(cfg: CtrConfig, data_cfg: DataConfig, data: DataArtifact,
                        test: dict[str, np.ndarray], folder: Path, index_dir: Path | None,
                        records: dict, predictions: dict, console: Console) -> None:
    """Switch off the content of each model trained here that did not beat its shuffled-content
    control on valid (:func:`~mimrec.eval.selection.to_switch_off`): every seed's weights
    become its start (``init_from``'s weights, content parts at zero, which computes exactly
    what that model computes), its predictions and test metrics are the start's, and its record
    keeps what it scored as trained under ``content_off``. ``test``: the test split's samples
    (scored as in :func:`run_ctr`)."""
    specs = {spec.name: spec for spec in model_specs(cfg, {r["model"] for r in records.values()})}
    chosen = {name: control for name, control in to_switch_off(records, cfg.select_margin).items()
              if name in specs}
    if not chosen:
        return
    scores = valid_scores(records, as_trained=True)
    tables, splits = feature_tables(data, data_cfg), _splits(data)
    for name, control in chosen.items():
        spec = specs[name]
        content, _ = _content_of(spec, data.items, index_dir)
        for key in [k for k, r in records.items() if r["model"] == name]:
            record, seed = records[key], records[key]["seed"]
            start = load_file(folder / f"{spec.init_from}-seed{seed}.safetensors")
            model = start_model(cfg, spec, seed, tables, splits["train"], content, start)
            model.eval()
            save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()},
                      folder / f"{key}.safetensors")
            valid = _probabilities(model, splits["valid"], folder, f"{key}-start.valid")
            probs = _probabilities(model, splits["test"], folder, f"{key}-start.test")
            predictions[f"{key}/valid"], predictions[f"{key}/test"] = valid, probs
            record["content_off"] = {
                "control": control, "start": spec.init_from, "margin": cfg.select_margin,
                "valid_auc": scores[name], "control_valid_auc": scores[control],
                "as_trained": {"valid_auc": best_valid_auc(record, as_trained=True),
                               "test": record["test"]}}
            record["test"] = split_metrics(test["user"], test["label"], probs, test["bucket"],
                                           stream_above=STREAM_ABOVE_ROWS)
        console.print(f"  {name}: content switched off (valid AUC {scores[name]:.4f} as trained, "
                      f"its shuffled-content control {scores[control]:.4f}, margin "
                      f"{cfg.select_margin:g}): its weights are its {spec.init_from} start "
                      "(what it scored as trained stays in the manifest)", highlight=False)


def _help_train(cfg: CtrConfig, data_cfg: DataConfig, data: DataArtifact, out: Path,
                index_dir: Path | None, replace: bool = False) -> dict:
    """A data-parallel rank other than 0: train every model with rank 0 (same order, same
    checkpoints to resume from), keeping weights only in a private temporary folder (for the
    models that start from another); rank 0 writes the artifact. Returns no records."""
    config = {"ctr": to_dict(cfg), "data": to_dict(data_cfg)}
    checkpoints = Checkpoints(out, _checkpoint_settings(config, data, index_dir))
    temp = Path(tempfile.gettempdir())
    remove_stale_temps(temp, "mimrec-ctr-rank.tmp-*")  # left by killed runs on this machine
    folder = temp / f"mimrec-ctr-rank.tmp-{os.getpid()}"
    folder.mkdir()
    kept, _ = _kept(cfg, config, data, out, replace)  # rank 0's, so starts are the same weights
    try:
        kept.copy_into(folder)
        lines = EpochLines(Console(quiet=True), cfg.train.max_epochs)
        for _ in _train_all(cfg, data_cfg, data, folder, index_dir, None, lines, checkpoints,
                            _startable(kept, cfg.train.seeds)):
            pass
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {}


def _kept(cfg: CtrConfig, config: dict, data: DataArtifact, out: Path, replace: bool
          ) -> tuple[KeptModels, str | None]:
    """The models of the artifact at ``out`` this run keeps (none with ``replace``), and the
    note to print when some are dropped (:func:`~mimrec.ctr.kept.kept_models`)."""
    if replace:
        return KeptModels(), None
    # unchecked: what a model starts from may be one of the kept models found here
    retrained = {model_key(spec, s) for spec in listed_specs(cfg) for s in cfg.train.seeds}
    return kept_models(out, config, data.folder, retrained)


def _checkpoint_settings(config: dict, data: DataArtifact, index_dir: Path | None) -> dict:
    """What every model's result depends on besides its spec and seed (see
    :class:`~mimrec.ctr.checkpoint.Checkpoints`): configs without the models listed, the seeds
    and the process layout, and the parent artifacts' hashes."""
    ctr = {k: v for k, v in config["ctr"].items() if k not in ("variants", "models")}
    ctr["train"] = {k: v for k, v in ctr["train"].items()
                    if k not in ("seeds", "workers", "threads", "tensorboard")}
    return {"ctr": ctr, "data": config["data"],
            "data_hash": read_manifest(data.folder)["hash"],
            "index_hash": read_manifest(index_dir)["hash"] if index_dir else None}
