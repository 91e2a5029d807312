"""``mimrec init DATA_DIR``: a commented pipeline config written for a folder of generic tables.

The columns are chosen by :func:`mimrec.data.inspect.inspect_tables` (its docstring lists the
rules); each choice is written next to the setting it made, and the config is loaded back
through :func:`mimrec.config.load_config` before it is kept, so ``init`` never writes a config
that ``mimrec run`` would refuse.
"""

from __future__ import annotations

import os
from pathlib import Path

from mimrec.config import load_config
from mimrec.data.inspect import TableSummary, inspect_tables
from mimrec.errors import DataError
from mimrec.toml_writer import toml_value

SMALL_EVENTS = 200_000  # below this, CTR models train one after another with 3 seeds


def _reasons(summary: TableSummary, prefix: str) -> list[str]:
    return [f"#   {key.split('.', 1)[1]}: {why}" for key, why in summary.reasons.items()
            if key.startswith(prefix)]


def _sizes(summary: TableSummary) -> dict[str, object]:
    """Epochs and seeds scaled to the data: a tiny catalogue runs in minutes on a laptop."""
    tiny = summary.events < 20_000
    return {
        "align_epochs": 10 if tiny else 20,
        "csft_epochs": 4 if tiny else 8,
        "max_epochs": 10 if tiny else 20,
        "seeds": [0] if tiny else [0, 1, 2],
        "workers": 1 if summary.events < SMALL_EVENTS else 2,
    }


def render_config(summary: TableSummary, data_path: str, name: str) -> str:
    """The commented TOML text of a config for ``summary``'s tables."""
    if not summary.text_fields and not summary.image and not summary.attributes:
        raise DataError(f"{summary.folder}: the items table has no column mimrec can read as "
                        "content (text, categories, an 'image' or an 'attributes' column)")
    s = _sizes(summary)
    label = ("labels 0/1 are the clicks" if summary.has_label else
             f"ratings (median {summary.rating_median:g}): rating >= positive_rating is a click")
    positive = 1.0 if summary.has_label else summary.rating_median
    lines = [
        f"# Written by `mimrec init {data_path}` for {summary.items:,} items, {summary.users:,} "
        f"users and {summary.events:,} events.",
        "# Every choice below says why it was made; change any of them. Run it with",
        "#   mimrec run THIS_FILE --out runs/NAME",
        "# and later stages, eval and serve with --out runs/NAME alone (the run folder",
        "# remembers this config in runs/NAME/config.toml).",
        f"name = {toml_value(name)}",
        "",
        "[data]",
        'dataset = "files"',
        f"path = {toml_value(data_path)}    # relative to the folder you run mimrec from",
        f"# {label}",
        f"positive_rating = {float(positive)!r}",
        "# the items' columns, and what each is used for:",
        *_reasons(summary, "items."),
        f"item_features = {toml_value(list(summary.item_features))}",
        *(["# the users' columns:", *_reasons(summary, "users.")] if _reasons(summary, "users.")
          else ["# no users table (or no usable column): no user features"]),
        f"user_features = {toml_value(list(summary.user_features))}",
        "max_seq_len = 50",
        "bucket_edges = []          # report buckets at train-count quantiles of this data",
        "",
        "[encoder]",
        "dim = 128",
        f"use_text = {toml_value(bool(summary.text_fields))}"
        + ("            # the text and category columns above" if summary.text_fields else ""),
        f"text_fields = {toml_value(list(summary.text_fields) or ['title'])}",
        f"use_image = {toml_value(summary.image)}"
        + ("           # the items' image column (paths relative to the data folder)"
           if summary.image else "          # no 'image' column"),
        f"use_attributes = {toml_value(summary.attributes)}"
        + ("      # tokens of the 'attributes' column" if summary.attributes
           else "     # no 'attributes' column with tokens shared by two items"),
        "image_resolution = 64      # small images keep CPU encoding fast",
        "",
        "[pretrain]",
        "threads = 1                # one torch thread per stage: same results on any machine",
        "adapt_epochs = 1",
        f"align_epochs = {s['align_epochs']}",
        "",
        "[csft]",
        "threads = 1",
        f"epochs = {s['csft_epochs']}",
        "",
        "[ctr]",
        'variants = ["din", "ciubm"]  # ID-only DIN against the content model CiUBM',
        "shuffled_controls = true  # each content model again on item-shuffled vectors: served "
        "only when it beats that",
        "",
        "[ctr.model]",
        'ciubm_modules = ["sa_ta", "simtier", "cold_id"]   # the MovieLens choice (README)',
        "",
        "[ctr.train]",
        "batch_size = 512",
        f"max_epochs = {s['max_epochs']}",
        "patience = 3",
        "ema_decay = 0.99",
        f"seeds = {toml_value(s['seeds'])}"
        + ("              # one seed for a tiny log; use [0, 1, 2] to see the spread"
           if s["seeds"] == [0] else ""),
        f"workers = {s['workers']}",
        "threads = 1",
        "tensorboard = false        # true: epochs also as TensorBoard files in RUN/logs/tensorboard",
        "",
        "[eval]",
        'baseline = "din"',
    ]
    return "\n".join(lines) + "\n"


def write_init_config(data_dir: Path, out: Path) -> tuple[Path, TableSummary]:
    """Inspect ``data_dir``, write the config to ``out`` (through a temporary file), check it."""
    summary = inspect_tables(data_dir)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(data_dir).resolve().name)
    text = render_config(summary, str(data_dir), name or "own_data")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    try:
        load_config(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return out, summary
