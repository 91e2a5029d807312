"""A synthetic dataset of any size for the scale benchmarks, written as mimrec's generic tables.

Synthetic, and said so in every table's metadata: no row comes from a real log. The shape is
meant to be realistic: Zipf-like item popularity (weight of the k-th most popular item ~ 1/k),
skewed user activity (log-normal weights: a few users make many events), time-ordered events
(exponential gaps), and clicks drawn from a hidden model (item quality, user bias, a favourite
genre per user). Item text is built from real catalogue vocabulary: the words of the MovieLens-100K
titles and its genre names, read from the installed recbole package (words only, never rows).

Output ``OUT/``: ``interactions/part-00000.parquet ...`` (a parquet dataset folder, one shard per
``--shard-events`` events; columns ``user_id``, ``item_id`` int64, ``timestamp`` int64 seconds,
``label`` int8), ``items.parquet`` (``item_id``, ``title``, ``year``, ``genres`` list), and
``users.parquet`` (``user_id``, ``age``, ``gender``, ``occupation``). Vectorised numpy, one
seeded generator: the same arguments write the same files. The folder appears whole or not at all.

Usage: python benchmarks/make_scale_data.py --events N [--users U] [--items I] [--seed S]
       --out DIR [--shard-events 5000000]
"""

from __future__ import annotations

import argparse
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mimrec.data.movielens import movielens_dir, read_atomic

START = 1_577_836_800  # 2020-01-01 UTC: events start here
SPAN_SECONDS = 3 * 365 * 86400  # and spread over about three years
METADATA = {b"mimrec": b"synthetic data from benchmarks/make_scale_data.py (not a real log)"}


@dataclass(frozen=True)
class Vocabulary:
    """Real catalogue words: title words, genre names and occupations of MovieLens-100K."""

    words: np.ndarray  # (V,) str
    genres: np.ndarray  # (G,) str
    occupations: np.ndarray  # (O,) str


def movielens_vocabulary() -> Vocabulary:
    """The words of the installed MovieLens-100K catalogue (recbole package), no rows."""
    folder = movielens_dir()
    items = read_atomic(folder / "ml-100k.item")
    titles = " ".join(items["movie_title"].astype(str)).lower()
    words = sorted({w for w in re.findall(r"[a-z]+", titles) if len(w) > 2})
    genres = sorted({g for cell in items["class"].astype(str) for g in cell.split()})
    users = read_atomic(folder / "ml-100k.user")
    return Vocabulary(np.array(words), np.array(genres),
                      np.array(sorted(set(users["occupation"].astype(str)))))


def zipf_cdf(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Cumulative weights over ``n`` rows whose popularity ranks are a random permutation."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    weights = weights[rng.permutation(n)]
    return np.cumsum(weights / weights.sum())


def draw(cdf: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` rows drawn with the weights of ``cdf`` (inverse transform)."""
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def write(table: pa.Table, path: Path) -> None:
    pq.write_table(table.replace_schema_metadata(METADATA), path)


def make_items(n: int, vocab: Vocabulary, rng: np.random.Generator) -> tuple[pa.Table, np.ndarray]:
    """The catalogue table and each item's first genre (the click model reads it)."""
    n_words = rng.integers(1, 5, n)  # 1-4 title words
    word_idx = rng.integers(0, len(vocab.words), (n, 4))
    cols = [pa.array(np.where(n_words > k, vocab.words[word_idx[:, k]], None)) for k in range(4)]
    title = pa.compute.binary_join_element_wise(*cols, " ", null_handling="skip")
    n_genres = rng.integers(1, 4, n)
    genre_idx = np.argsort(rng.random((n, len(vocab.genres))), axis=1)[:, :3]  # distinct
    flat = genre_idx[np.arange(3)[None, :] < n_genres[:, None]]
    offsets = np.concatenate([[0], np.cumsum(n_genres)]).astype(np.int32)
    genres = pa.ListArray.from_arrays(pa.array(offsets), pa.array(vocab.genres[flat]))
    year = rng.integers(1930, 2026, n).astype(str)
    table = pa.table({"item_id": np.arange(1, n + 1, dtype=np.int64), "title": title,
                      "year": year, "genres": genres})
    return table, genre_idx[:, 0]


def make_users(n: int, vocab: Vocabulary, rng: np.random.Generator) -> pa.Table:
    return pa.table({
        "user_id": np.arange(1, n + 1, dtype=np.int64),
        "age": (rng.integers(2, 7, n) * 10).astype(str),
        "gender": np.array(["F", "M"])[rng.integers(0, 2, n)],
        "occupation": vocab.occupations[rng.integers(0, len(vocab.occupations), n)],
    })


def make_scale_data(events: int, users: int, items: int, seed: int, out: Path,
                    shard_events: int = 5_000_000) -> dict:
    """Write the synthetic tables to ``out`` (see the module docstring); returns a summary."""
    rng = np.random.default_rng(seed)
    vocab = movielens_vocabulary()
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "interactions").mkdir(parents=True)
    item_table, first_genre = make_items(items, vocab, rng)
    write(item_table, tmp / "items.parquet")
    write(make_users(users, vocab, rng), tmp / "users.parquet")
    item_cdf = zipf_cdf(items, 1.0, rng)
    user_weights = rng.lognormal(0.0, 1.2, users)
    user_cdf = np.cumsum(user_weights / user_weights.sum())
    quality, bias = rng.normal(0, 1, items), rng.normal(0, 0.5, users)
    favourite = rng.integers(0, len(vocab.genres), users)
    gap = SPAN_SECONDS / max(events, 1)
    clock, clicks = float(START), 0
    for shard, first in enumerate(range(0, events, shard_events)):
        n = min(shard_events, events - first)
        user, item = draw(user_cdf, n, rng), draw(item_cdf, n, rng)
        times = clock + np.cumsum(rng.exponential(gap, n))
        clock = float(times[-1])
        logit = -0.5 + quality[item] + bias[user] + 1.5 * (first_genre[item] == favourite[user])
        label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
        clicks += int(label.sum())
        write(pa.table({"user_id": user.astype(np.int64) + 1, "item_id": item.astype(np.int64) + 1,
                        "timestamp": times.astype(np.int64), "label": label}),
              tmp / "interactions" / f"part-{shard:05d}.parquet")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return {"events": events, "users": users, "items": items, "seed": seed,
            "click_rate": clicks / max(events, 1), "shards": -(-events // shard_events)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--users", type=int, default=None, help="default: events / 100")
    parser.add_argument("--items", type=int, default=None, help="default: events / 200")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shard-events", type=int, default=5_000_000)
    args = parser.parse_args()
    if min(args.events, args.shard_events) < 1:
        parser.error("--events and --shard-events must be >= 1")
    users = args.users or max(100, args.events // 100)
    items = args.items or max(100, args.events // 200)
    if min(users, items) < 1:
        parser.error("--users and --items must be >= 1")
    start = time.perf_counter()
    summary = make_scale_data(args.events, users, items, args.seed, args.out, args.shard_events)
    seconds = time.perf_counter() - start
    print(f"synthetic data: {summary['events']:,} events, {users:,} users, {items:,} items, "
          f"click rate {summary['click_rate']:.3f}, {summary['shards']} shards -> {args.out} "
          f"({seconds:.1f} s, {summary['events'] / seconds:,.0f} events/s)")


if __name__ == "__main__":
    main()
