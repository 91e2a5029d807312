"""The stages of a pipeline run, each reading the previous stage's artifact under ``--out``:
``data`` -> ``pretrain`` -> ``csft`` -> ``index`` -> ``train`` -> ``eval``. ``run_all`` runs them in
order; with ``data.dataset = "fashion"`` it runs the image-text alignment pipeline (P3) instead."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from mimrec.artifacts import read_manifest
from mimrec.config import PipelineConfig
from mimrec.data.content import ContentNeeds
from mimrec.data.samples import SPLITS
from mimrec.data.stage import read_data, run_data
from mimrec.run_config import write_run_config


def stage_data(cfg: PipelineConfig, out: Path, console: Console) -> None:
    """Build the P1 samples into ``out/data``."""
    console.print(f"[bold]data[/]: {cfg.data.dataset} -> {out / 'data'}")
    e = cfg.encoder
    needs = ContentNeeds(e.text_fields, e.use_text, e.use_image, e.use_attributes,
                         e.attribute_min_count)
    art = run_data(cfg.data, out / "data", needs=needs, both_classes=tuple(SPLITS))
    n = len(art.samples.split)
    console.print(f"  {n:,} samples, {len(art.items):,} items, {len(art.samples.user_ids):,} users")
    metrics = read_manifest(out / "data")["metrics"]
    if metrics["no_content_items"]:
        console.print(f"  {metrics['no_content_items']:,} items have no usable content (e.g. "
                      f"{', '.join(map(str, metrics['no_content_examples']))}): they get the zero "
                      "content vector and are scored from their ID (README: Your own catalogue)")


def stage_pretrain(cfg: PipelineConfig, out: Path, console: Console) -> None:
    """Stage 1: domain adaptation + modal alignment of the item encoder into ``out/pretrain``."""
    from mimrec.pretrain.train import run_pretrain

    console.print(f"[bold]pretrain[/]: item encoder -> {out / 'pretrain'}")
    data = read_data(out / "data")
    metrics = run_pretrain(cfg.pretrain, cfg.encoder, data.items, out / "pretrain",
                           parents={"data": out / "data"}, samples=data.samples)
    console.print(alignment_table(metrics))
    console.print(f"  stage 1: kept alignment epoch {metrics['best_epoch']} of "
                  f"{metrics['epochs_run']} run (selected on {metrics['select_on']})")
    if metrics["p2_valid"]:
        console.print(retrieval_table(metrics["p2_valid"]))
        console.print(f"  {versus_raw('stage 1', metrics['p2_valid'], 'pretrain')}")


def stage_csft(cfg: PipelineConfig, out: Path, console: Console) -> None:
    """Stage 2: contrastive fine-tuning on behaviour pairs into ``out/csft``.

    Under ``torchrun`` the workers join one process group (gloo on CPU); worker 0 writes.
    """
    from mimrec.csft.distributed import process_group_from_env, rank, world_size
    from mimrec.csft.train import run_csft

    with process_group_from_env():
        lead = rank() == 0
        if lead:
            console.print(f"[bold]csft[/]: behaviour-pair fine-tuning on {world_size()} "
                          f"worker(s) -> {out / 'csft'}")
        metrics = run_csft(cfg.csft, out / "pretrain", read_data(out / "data"), out / "csft")
    if lead:
        p2 = metrics.get("p2_valid", {})
        console.print(retrieval_table(p2))
        console.print(f"  C-SFT: kept epoch {metrics['best_epoch']} of {metrics['epochs_run']} run "
                      "(selected on P2 valid Recall@50; 0 = the stage-1 vectors)")
        console.print(f"  {versus_raw('C-SFT', p2, 'csft')}")


def stage_index(cfg: PipelineConfig, out: Path, console: Console) -> None:
    """Representation Center: embed the catalogue with each vector source into ``out/index``.

    A trained source that does not beat the raw vectors on P2 (valid) Recall@50 is replaced by
    them; one line per store says which vectors it holds.
    """
    from mimrec.csft.distributed import process_group_from_env, rank, world_size
    from mimrec.store.build import choice_line, encoding_line, run_index

    with process_group_from_env():
        lead = rank() == 0
        if lead:
            console.print(f"[bold]index[/]: raw / pretrain / csft vectors -> {out / 'index'}"
                          + (f" on {world_size()} workers" if world_size() > 1 else ""))
        data = read_data(out / "data")
        sources = {"raw": None, "pretrain": out / "pretrain", "csft": out / "csft"}
        parents = {"data": out / "data", "pretrain": out / "pretrain", "csft": out / "csft"}
        # the encoder stages' thread setting (one thread keeps a shared machine from
        # oversubscribing)
        metrics = run_index(sources, cfg.encoder, data.items, out / "index", parents,
                            threads=cfg.pretrain.threads, samples=data.samples)
    for name, m in metrics.items():  # empty on workers other than 0
        console.print(f"  {encoding_line(name, m)}")
        console.print(f"  {choice_line(name, m)}")


def stage_train(cfg: PipelineConfig, out: Path, console: Console, replace: bool = False) -> None:
    """Train the CTR models on ``out/data`` (content from ``out/index``) into ``out/ctr``;
    models already there that this run does not train are kept unless ``replace``. Then write
    the serving bundle ``out/serve`` (:mod:`mimrec.ctr.bundle_writer`)."""
    from mimrec.csft.distributed import process_group_from_env, rank
    from mimrec.ctr.stage import run_ctr
    from mimrec.ctr.train import resolve_device
    from mimrec.ctr.variants import listed_specs
    from mimrec.runtime import keep_freed_memory

    names = [spec.name for spec in listed_specs(cfg.ctr)]
    index = out / "index" if (out / "index" / "manifest.json").is_file() else None
    # under torchrun: one process group (NCCL on GPUs, gloo on CPUs); rank 0 writes; a rank
    # ends with its launcher, also when that is killed with kill -9 (process_group_from_env)
    backend = "nccl" if resolve_device(cfg.ctr.train.device).type == "cuda" else "gloo"
    keep_freed_memory()  # before the data is read: this process may train (one worker, a rank)
    with process_group_from_env(backend):
        if rank() == 0:
            console.print(f"[bold]train[/]: {', '.join(names)} x seeds "
                          f"{list(cfg.ctr.train.seeds)} -> {out / 'ctr'}")
        run_ctr(cfg.ctr, cfg.data, read_data(out / "data"), out / "ctr", console, index,
                replace)
        if rank() == 0:
            from mimrec.ctr.bundle_writer import write_serving_bundle

            console.print(f"  serving bundle -> {write_serving_bundle(out)}")


def stage_eval(cfg: PipelineConfig, out: Path, console: Console) -> dict:
    """Write the report of ``out/ctr`` (with stage 1 and 2 figures) into ``out``; print it."""
    from mimrec.eval.report import build_report

    extra = {}
    if (out / "pretrain" / "manifest.json").is_file():
        extra["alignment"] = read_manifest(out / "pretrain")["metrics"]
    if (out / "csft" / "manifest.json").is_file():
        extra["retrieval"] = read_manifest(out / "csft")["metrics"].get("p2_valid", {})
    report = build_report(cfg.eval, out / "ctr", out, extra)
    if report.get("note"):
        console.print(f"[bold]{report['note']}[/]")
    console.print(summary_table(report))
    console.print(bucket_auc_table(report))
    for note in report.get("buckets", {}).get("notes", []):
        console.print(f"  buckets: {note}")
    console.print(report["selection"])
    if any(m.get("vs_baseline_buckets") for m in report["models"].values()):
        console.print(bucket_table(report))
    console.print(f"report: {out / 'report.md'} (also report.json, report_buckets.png, "
                  "report_curves.png)")
    return report


def run_fashion(cfg: PipelineConfig, out: Path, console: Console) -> dict:
    """Protocol P3: image <-> text alignment on Fashion-MNIST; report into ``out``."""
    from mimrec.eval.report import write_alignment_report
    from mimrec.pretrain.fashion import run_fashion_alignment

    console.print(f"[bold]pretrain[/]: Fashion-MNIST image-text alignment -> {out / 'pretrain'}")
    metrics = run_fashion_alignment(cfg.pretrain, cfg.encoder, out / "pretrain")
    console.print(alignment_table(metrics))
    report = write_alignment_report(metrics, out)
    console.print(f"report: {out / 'report.md'} (also report.json)")
    return report


def run_all(cfg: PipelineConfig, out: Path, console: Console) -> dict:
    """Every stage in order (or the fashion alignment pipeline).

    Under torchrun (:mod:`mimrec.rank_stages`): data, pretrain, eval and the fashion pipeline
    run on rank 0 while the other ranks wait; C-SFT, the index and CTR training run on every
    rank, sharing the work. Returns the report (empty on ranks other than 0).
    """
    from mimrec.ctr.train import resolve_device
    from mimrec.rank_stages import rank_stages

    with rank_stages(resolve_device(cfg.ctr.train.device).type) as ranks:
        if cfg.data.dataset == "fashion":
            return ranks.lead("fashion", run_fashion, cfg, out, console) or {}
        for stage in (stage_data, stage_pretrain, stage_csft, stage_index, stage_train):
            if stage in (stage_data, stage_pretrain):
                ranks.lead(stage.__name__.removeprefix("stage_"), stage, cfg, out, console)
            else:
                ranks.all(stage, cfg, out, console)
            # an interrupted run goes on with `mimrec <stage> --out OUT`
            ranks.lead("config", write_run_config, out, cfg)
        return ranks.lead("eval", stage_eval, cfg, out, console) or {}


def _table(title: str) -> Table:
    """A terminal table that fits 80 columns: no vertical rules, one space of padding."""
    return Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)


def _auc(value: float | None) -> str:
    """An AUC cell; n/a where it is undefined (a bucket with one label)."""
    return "n/a" if value is None or value != value else f"{value:.4f}"


def _bucket_names(report: dict) -> tuple[str, ...]:
    models = report.get("models") or {}
    return tuple(next(iter(models.values()))["buckets"]) if models else ()


def summary_table(report: dict) -> Table:
    """The report's CTR table for the terminal (80 columns); per-bucket AUC is
    :func:`bucket_auc_table`."""
    from mimrec.eval.report import interval_text

    controls = set(report.get("controls", ()))
    note = "; ~ shuffled-content control" if controls else ""
    table = _table(f"{report['protocol']} test (mean over seeds; * valid-best{note})")
    for col in ("model", "valid AUC", "AUC", "gAUC", "LogLoss", f"ΔAUC vs {report['baseline']} "
                "[95%]"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, m in report["models"].items():
        label = f"{name} *" if name == report.get("valid_best") else name
        label = f"{name} ~" if name in controls else label
        table.add_row(label, f"{m.get('valid_auc', float('nan')):.4f}", f"{m['auc']:.4f}",
                      f"{m['gauc']:.4f}", f"{m['logloss']:.4f}",
                      interval_text(m.get("vs_baseline"), "delta_auc")
                      if name != report["baseline"] else "")
    oracle = report.get("oracle")
    if oracle:
        table.add_row("oracle", "", f"{oracle['auc']:.4f}", f"{oracle['gauc']:.4f}",
                      f"{oracle['logloss']:.4f}", "")
    return table


def bucket_auc_table(report: dict) -> Table:
    """Test AUC per popularity bucket: one column per bucket, headed by its train-count range
    and test rows; one row per model (and the oracle when known)."""
    edges = report.get("buckets", {}).get("edges", {})
    table = _table("test AUC per popularity bucket (item's train impressions, test rows)")
    table.add_column("model")
    first = next(iter(report["models"].values()))["buckets"] if report["models"] else {}
    for b in _bucket_names(report):
        span = edges[b]["train_count"] if b in edges else ""
        table.add_column(f"{b}\n{span}\n{first[b]['n']:,}", justify="right")
    rows = list(report["models"].items())
    if report.get("oracle"):
        rows.append(("oracle", report["oracle"]))
    for name, m in rows:
        table.add_row(name, *[_auc(m["buckets"][b]["auc"]) for b in _bucket_names(report)])
    return table


def bucket_table(report: dict) -> Table:
    """Each model's test AUC difference to the baseline per bucket: rows, users, interval."""
    from mimrec.eval.report import interval_text

    table = _table(f"test ΔAUC vs {report['baseline']} per bucket (paired bootstrap, 95%; "
                   "resolved = interval excludes 0)")
    for col in ("model", "bucket", "rows", "users", "ΔAUC [95%]", "resolved"):
        table.add_column(col, justify="left" if col in ("model", "bucket") else "right")
    for name, m in report["models"].items():
        if name in report.get("controls", ()):
            continue  # a shuffled-content control: its row in the summary table is enough
        per = {"all": m.get("vs_baseline"), **m.get("vs_baseline_buckets", {})}
        for bucket, vs in per.items():
            if name == report["baseline"] or not m.get("vs_baseline"):
                continue
            rows = vs["n"] if vs else m["buckets"][bucket]["n"]
            table.add_row(name, bucket, f"{rows:,}", f"{vs['users']:,}" if vs else "",
                          interval_text(vs, "delta_auc"),
                          "n/a" if not vs else ("yes" if vs["resolved"] else "no"))
    return table


def retrieval_table(p2: dict) -> Table:
    """Protocol P2 figures per vector source."""
    table = Table(title="P2 next-positive retrieval by content (valid)")
    for col in ("vectors", "Recall@10", "Recall@50", "MRR"):
        table.add_column(col)
    for name, m in p2.items():
        table.add_row(name, f"{m['recall@10']:.4f}", f"{m['recall@50']:.4f}", f"{m['mrr']:.4f}")
    return table


def versus_raw(label: str, p2: dict, key: str) -> str:
    """One line comparing a stage's P2 (valid) Recall@50 with the raw text vectors'."""
    if "raw" not in p2 or key not in p2:
        return f"{label}: no raw-vector P2 figure to compare with"
    from mimrec.store.build import tied

    ours, raw = p2[key]["recall@50"], p2["raw"]["recall@50"]
    if not raw > 0:
        return f"{label}: valid P2 Recall@50 {ours:.4f}, raw {raw:.4f}"
    if tied(p2[key], p2["raw"]):
        return (f"{label} ties with the raw text vectors on valid P2 Recall@50 ({ours:.4f}); MRR "
                f"{p2[key]['mrr']:.4f} vs raw {p2['raw']['mrr']:.4f} (the index stage breaks the "
                "tie on MRR)")
    verdict = "beats" if ours > raw else "does NOT beat"
    return (f"{label} {verdict} the raw text vectors on valid P2: Recall@50 {ours:.4f} vs "
            f"{raw:.4f} ({ours / raw:.2f}x raw)")


def alignment_table(metrics: dict) -> Table:
    """Stage-1 figures (numbers only) as a two-column table."""
    table = Table(title="stage 1: modal alignment")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
        elif isinstance(value, int):
            table.add_row(key, str(value))
    return table
