"""Config of the data stage: which dataset, and how CTR samples are cut from it (protocol P1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mimrec.ranges import check_each, check_range, check_seed


@dataclass(frozen=True)
class P4Config:
    """Size and seed of protocol P4's catalogue and simulated behaviour (``data.dataset = "p4"``).

    Args:
        seed: seed of the one ``numpy.random.default_rng`` every draw of the simulation uses.
        users: simulated users (protocol: 5,000).
        items_per_class: the first this many Fashion-MNIST train images of each of the 10
            classes are the catalogue (protocol: 600, so 6,000 items).
    """

    seed: int = 0
    users: int = 5000
    items_per_class: int = 600

    def __post_init__(self) -> None:
        check_seed("data.p4.seed", self.seed)
        check_range("data.p4.users", self.users, 1)
        check_range("data.p4.items_per_class", self.items_per_class, 1, 5000)


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how samples are built.

    Args:
        dataset: ``movielens`` reads MovieLens-100K from the installed recbole package; ``files``
            reads the documented tables (interactions/items/users as parquet or CSV) from ``path``;
            ``fashion`` is the image-text alignment pipeline on Fashion-MNIST (protocol P3);
            ``p4`` is protocol P4: Fashion-MNIST product photos as the catalogue with simulated
            behaviour (see :mod:`mimrec.data.p4` and ``p4``).
        path: folder of the tables when ``dataset = "files"``; with ``dataset = "p4"``, the folder
            of the Fashion-MNIST IDX files ("" = the Debian package's /usr/share/datasets/
            fashion-mnist).
        movielens_kg: attach recbole's Freebase tokens (``ml-100k.kg`` via ``ml-100k.link``) as
            item attributes. Off by default: in recbole 1.2.1 the link file's item ids follow
            MovieLens-1M numbering, so the tokens describe other films (item 127 "The Godfather"
            gets a Tunisian film's country and languages). Attributes are then genre/year tokens.
        item_features: item columns used as categorical CTR features (a list value = multi-valued).
        user_features: user columns used as categorical CTR features.
        positive_rating: label = 1 if rating >= this, when the interactions carry ratings, not labels.
        max_seq_len: behaviour sequence length (most recent kept).
        train_fraction: share of time-sorted events in train; ``valid_fraction`` follows it.
        window_end: share of time-sorted events the protocol uses at all; test is the events from
            ``train_fraction + valid_fraction`` to here, later ones are dropped. 1 is P1. Rolling
            time windows (README "Robustness") move all three cuts back: e.g. train 0.6, valid
            0.1, end 0.8 tests on the 8th tenth of the log with a model that never saw later events.
        new_item_fraction: share of the catalogue launched late (P1-cold); 0 is plain P1.
        new_item_seed: seed of the numpy generator that draws the new items.
        new_item_launch: when the new items launch. ``test`` (P1-cold, v1): their events are
            dropped from train and valid, so only test holds cold rows. ``valid`` (P1-cold v2):
            dropped from train only; valid and test are P1's, so cold-start choices can be made
            on valid's cold bucket.
        p4: the P4 simulation's seed and sizes (read when ``dataset = "p4"``).
        bucket_edges: the report's popularity buckets by train impressions of the item: edges
            ``[a, b, c]`` make cold (0), tail (1..a-1 when a > 1, else from a), mid and head
            buckets, each ``[edge, next edge)``; ``[]`` (the default) takes them from the data:
            tail / mid / head split the train events in thirds by their item's train count. A
            bucket without test rows is merged into its neighbour (the report notes it).
    """

    dataset: Literal["movielens", "files", "fashion", "p4"] = "movielens"
    path: str = ""
    movielens_kg: bool = False
    item_features: tuple[str, ...] = ("genres", "year")
    user_features: tuple[str, ...] = ("age", "gender", "occupation")
    positive_rating: float = 4.0
    max_seq_len: int = 50
    train_fraction: float = 0.8
    valid_fraction: float = 0.1
    window_end: float = 1.0
    new_item_fraction: float = 0.0
    new_item_seed: int = 0
    new_item_launch: Literal["test", "valid"] = "test"
    p4: P4Config = field(default_factory=P4Config)
    bucket_edges: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_each("data.bucket_edges", self.bucket_edges, 1)
        if list(self.bucket_edges) != sorted(set(self.bucket_edges)):
            raise ValueError(f"data.bucket_edges = {list(self.bucket_edges)}: expected "
                             "increasing train counts, e.g. [1, 10, 100]")
        check_range("data.positive_rating", self.positive_rating)
        check_range("data.max_seq_len", self.max_seq_len, 1)
        check_range("data.train_fraction", self.train_fraction, 0, 1, low_open=True, high_open=True)
        check_range("data.window_end", self.window_end, 0, 1, low_open=True)
        check_range("data.valid_fraction", self.valid_fraction, 0, 1, low_open=True, high_open=True)
        if self.train_fraction + self.valid_fraction >= self.window_end:
            raise ValueError(f"data.train_fraction + data.valid_fraction = {self.train_fraction} + "
                             f"{self.valid_fraction} leaves no test share before data.window_end = "
                             f"{self.window_end}")
        check_range("data.new_item_fraction", self.new_item_fraction, 0, 1, high_open=True)
        check_seed("data.new_item_seed", self.new_item_seed)
        if self.dataset == "files" and not self.path:
            raise ValueError("data.path must name the folder of the tables when data.dataset = 'files'")
        if self.max_seq_len < 1:
            raise ValueError(f"data.max_seq_len must be >= 1, got {self.max_seq_len}")
        if not 0 <= self.new_item_fraction < 1:
            raise ValueError(f"data.new_item_fraction must be in [0, 1), got {self.new_item_fraction}")
        if self.dataset == "p4" and self.new_item_fraction > 0:
            raise ValueError("data.new_item_fraction must be 0 with data.dataset = 'p4': P4 "
                             "launches its own late items (a fifth of the catalogue, on day 144)")
