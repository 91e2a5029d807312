"""Configs of the CTR stage: the model's shape and switches, and how it is trained."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mimrec.ranges import check_each, check_range, check_seed

# Where content vectors come from: the raw pretrained text model, stage 1, or C-SFT.
ContentSource = Literal["raw", "pretrain", "csft"]

# The preset models a report can compare; each resolves to a ModelSpec in mimrec.ctr.variants.
Variant = Literal[
    "din", "content_only", "ciubm", "ciubm_no_sa_ta", "ciubm_no_simtier",
    "ciubm_no_content_attention", "ciubm_no_target_content", "ciubm_no_retrieval",
    "ciubm_no_content_taste", "ciubm_no_cold_id", "ciubm_raw", "ciubm_pretrain",
]

# The interest blocks a model can list (each is one class in mimrec.ctr.blocks).
BlockKind = Literal["id_attention", "sa_ta", "simtier", "content_attention", "target_content",
                    "content_taste"]

# What the ``ciubm`` presets switch on: the content blocks, and the cold ID of the ID block.
ContentModule = Literal["sa_ta", "simtier", "content_attention", "target_content",
                        "content_taste", "cold_id"]

# Which train samples cold dropout picks: each with the same probability, or rarely trained items
# more often (see ModelSpec.cold_dropout_weight).
ColdDropoutWeight = Literal["uniform", "rare"]


@dataclass(frozen=True)
class ModelSpec:
    """One model a run trains, as data: a name, its interest blocks, its ID parts and the vectors
    its content blocks read. ID-only DIN is ``ModelSpec("din")``; CiUBM lists content blocks too.

    Args:
        name: the model's name in reports, weights files and ``mimrec serve --model``.
        blocks: the interest blocks, in tower-input order (see :mod:`mimrec.ctr.blocks`). Each entry
            is a block kind, or (in code) an ``InterestBlock`` subclass.
        cold_id: an item whose ID embedding training never updated (a cold item, or one added
            after training) gets an ID embedding generated from its content vector by a linear
            map fitted to the trained items' ID embeddings (a regression the CTR loss does not
            see); trained items keep their own.
        item_id: embed the item id of target and behaviour items (off for content-only).
        user_id: embed the user id (off for content-only).
        retrieval_k: keep only the K behaviours most similar in content to the target (GSU, the
            sequence pre-step); 0 = keep all. Applies when the sequence is longer than K.
        source: the Representation Center store content blocks read (raw, stage 1 or C-SFT).
        init_from: the name of another model of the run (one without ``init_from``) whose
            trained weights of the same seed this one starts from, frozen: only the content
            parts train, and the starting point is judged on valid too, so the model is never
            worse on valid than the one it starts from. Empty = train everything from scratch.
        cold_dropout: in training only, show each sample's target item to the model as an item
            training never saw, with this probability: its ID embedding is replaced by what a
            cold item gets (the cold ID's content-generated embedding; nothing without the cold
            ID), so the content parts are fitted on real targets of items without a trained ID
            (DropoutNet / meta warm-up). Unlike ``ctr.model.item_id_dropout`` it is this model's
            own, so a DIN it starts from is untouched. 0 = off.
        cold_dropout_weight: ``uniform``: every train sample with probability ``cold_dropout``;
            ``rare``: ``cold_dropout * k / (k + n)`` for a target with ``n`` train impressions
            (``k`` = ``ctr.model.cold_id_halfway``), so rarely trained items are shown cold most.
        shuffled_content: a control, not a model to serve: the store's vectors are permuted
            across the catalogue's items (one fixed permutation,
            :data:`mimrec.ctr.stage.SHUFFLE_SEED`), so the content blocks see vectors of the
            real distribution that say nothing about their item. What such a model gains over
            its ID model is the content path's extra capacity and inputs (history length, ...),
            not content; the same model with the true vectors minus this control is content's
            own share. Never chosen to serve.
    """

    name: str
    blocks: tuple[BlockKind | type, ...] = ("id_attention",)
    cold_id: bool = False
    item_id: bool = True
    user_id: bool = True
    retrieval_k: int = 0
    source: ContentSource = "csft"
    init_from: str = ""
    cold_dropout: float = 0.0
    cold_dropout_weight: ColdDropoutWeight = "uniform"
    shuffled_content: bool = False

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name != self.name.strip():
            raise ValueError(f"ctr.models: a model name must be a non-empty word, got {self.name!r}")
        if len(set(self.blocks)) != len(self.blocks):
            raise ValueError(f"ctr.models: model {self.name!r} lists a block twice: {self.blocks}")
        if self.retrieval_k < 0:
            raise ValueError(f"ctr.models: model {self.name!r}: retrieval_k must be >= 0, "
                             f"got {self.retrieval_k}")
        check_range(f"ctr.models[{self.name}].cold_dropout", self.cold_dropout, 0, 1)
        if self.cold_dropout > 0 and not self.item_id:
            raise ValueError(f"ctr.models: model {self.name!r}: cold_dropout needs item_id "
                             "(there is no item ID embedding to hide)")


@dataclass(frozen=True)
class CiubmTraining:
    """Training options of the ``ciubm`` presets only (``ctr.ciubm``): they are each preset's
    :class:`ModelSpec` fields, so changing them retrains the content models alone and keeps the
    DIN they start from (``ctr.model`` is shared by every model; changing it retrains all).

    Args:
        cold_dropout: see ``ModelSpec.cold_dropout``. Default 0.1, chosen on P1-cold v2's valid
            cold bucket among 0.05, 0.1, 0.3 (and ``rare`` at 1.0); see the README.
        cold_dropout_weight: see ``ModelSpec.cold_dropout_weight``.
    """

    cold_dropout: float = 0.1
    cold_dropout_weight: ColdDropoutWeight = "uniform"

    def __post_init__(self) -> None:
        check_range("ctr.ciubm.cold_dropout", self.cold_dropout, 0, 1)


@dataclass(frozen=True)
class ModelConfig:
    """Shape shared by every model of a run (what each model switches on is its ModelSpec).

    Args:
        embedding_dim: size of every ID / categorical embedding.
        attention_units: hidden sizes of the DIN attention MLP.
        attention_softmax: normalise attention weights with a softmax (DIN's original is off).
        mlp_units: hidden sizes of the prediction tower.
        dropout: dropout in the tower.
        batch_norm: batch norm in the tower.
        simtier_bins: number of SimTier bins over [-1, 1].
        content_proj_dim: size content vectors are projected to inside the CTR model.
        content_dropout: dropout on the projected content vectors (the target content feature
            and the inputs of content attention); regularises the content path.
        ciubm_modules: the content modules the ``ciubm`` presets switch on (``ciubm_raw``,
            ``ciubm_pretrain`` alike; each ``ciubm_no_*`` drops one of them). Default: all four
            content blocks; MUSE's best pair is ``["sa_ta", "simtier"]``.
        item_id_dropout: in training, zero each sample's target item-ID embedding with this
            probability (its features and content stay), so the model also learns to score an
            item it has no trained ID for (cold start; DropoutNet-style). 0 = off.
        retrieval_k: the GSU top-K of the ``ciubm`` presets (see ``ModelSpec.retrieval_k``).
        residual_units: hidden sizes of the content residual tower (its last layer starts at
            zero, so a content model starts as its ID model).
        ciubm_from_din: the ``ciubm`` presets start from the run's trained DIN of the same seed
            (frozen; see ``ModelSpec.init_from``) when the run trains ``din``.
        cold_id_halfway: the train count at which an item's own ID embedding and its
            content-generated one weigh the same in the cold ID (weight ``k / (k + n)``).
        cold_id_blend: how the cold ID's content part meets the ID embedding: ``add`` adds it
            (``id + gate * w * map(content)``); ``replace`` moves the ID embedding towards it
            (``id + gate * w * (map(content) - id)``, at gate 1 the blend ``(1 - w) id + w map``).
            Both are the ID model's vectors at gate 0.
    """

    embedding_dim: int = 16
    attention_units: tuple[int, ...] = (64, 32)
    attention_softmax: bool = False
    mlp_units: tuple[int, ...] = (256, 128)
    dropout: float = 0.2
    batch_norm: bool = True
    simtier_bins: int = 20
    content_proj_dim: int = 32
    content_dropout: float = 0.0
    ciubm_modules: tuple[ContentModule, ...] = ("sa_ta", "simtier", "content_attention",
                                                "target_content")
    retrieval_k: int = 0
    item_id_dropout: float = 0.0
    residual_units: tuple[int, ...] = (64,)
    ciubm_from_din: bool = True
    cold_id_halfway: float = 10.0
    cold_id_blend: Literal["add", "replace"] = "add"

    def __post_init__(self) -> None:
        if not 0.0 <= self.item_id_dropout <= 1.0:
            raise ValueError(f"ctr.model.item_id_dropout must be in [0, 1], "
                             f"got {self.item_id_dropout}")
        check_range("ctr.model.embedding_dim", self.embedding_dim, 1)
        check_each("ctr.model.attention_units", self.attention_units, 1)
        check_each("ctr.model.mlp_units", self.mlp_units, 1)
        check_range("ctr.model.dropout", self.dropout, 0, 1, high_open=True)
        check_range("ctr.model.simtier_bins", self.simtier_bins, 1)
        check_range("ctr.model.content_proj_dim", self.content_proj_dim, 1)
        check_range("ctr.model.content_dropout", self.content_dropout, 0, 1, high_open=True)
        check_range("ctr.model.retrieval_k", self.retrieval_k, 0)
        check_range("ctr.model.item_id_dropout", self.item_id_dropout, 0, 1)
        check_each("ctr.model.residual_units", self.residual_units, 1)
        check_range("ctr.model.cold_id_halfway", self.cold_id_halfway, 0, low_open=True)


@dataclass(frozen=True)
class TrainConfig:
    """How a CTR model is trained.

    Args:
        batch_size: samples per step.
        lr: Adam learning rate.
        embedding_l2: coefficient of the L2 penalty on every embedding table, added to the loss
            each step as ``l2 / 2 * ||E||^2`` (the FuxiCTR ``embedding_regularizer`` convention).
        max_epochs: upper bound on passes over train.
        patience: stop after this many epochs without a better valid AUC; the best is restored.
        ema_decay: when > 0, judge and keep an exponential moving average of the weights
            (updated every step with this decay) instead of the last step's weights.
        seeds: one model is trained per seed; reports give mean and std.
        deterministic: use torch's deterministic kernels, so one seed gives one result.
        device: ``auto`` takes a GPU when one is present.
        threads: CPU threads for torch (0 = torch's default).
        workers: models (variant x seed) trained at once, each in its own process with
            ``threads`` torch threads; 1 trains them one after another in this process. A model's
            result does not depend on it (each is seeded alone).
        tensorboard: also write each model's epochs (train loss, valid AUC) as TensorBoard
            event files under ``RUN/logs/tensorboard`` (needs the ``watch`` extra).
        sparse_updates: update only the embedding rows each step uses (sparse gradients, lazy
            Adam on the tables, L2 on the used rows, a lazily caught-up weight average;
            :mod:`mimrec.ctr.sparse_updates`), so that a step's cost does not grow with the
            number of users and items. Off: every step updates every row (FuxiCTR's way, and
            the one ML-100K's numbers were measured with). Turn it on for hundreds of thousands
            of users or items.
    """

    batch_size: int = 256
    lr: float = 1e-3
    embedding_l2: float = 0.0
    max_epochs: int = 20
    patience: int = 2
    ema_decay: float = 0.0
    seeds: tuple[int, ...] = (0, 1, 2)
    deterministic: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0
    workers: int = 1
    tensorboard: bool = False
    sparse_updates: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ctr.train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.workers < 1:
            raise ValueError(f"ctr.train.workers must be >= 1, got {self.workers}")
        check_range("ctr.train.batch_size", self.batch_size, 1)
        check_range("ctr.train.lr", self.lr, 0, low_open=True)
        check_range("ctr.train.embedding_l2", self.embedding_l2, 0)
        check_range("ctr.train.max_epochs", self.max_epochs, 1)
        check_range("ctr.train.patience", self.patience, 1)
        check_range("ctr.train.ema_decay", self.ema_decay, 0, 1, high_open=True)
        check_each("ctr.train.seeds", self.seeds, 0, non_empty=True)
        for i, seed in enumerate(self.seeds):
            check_seed(f"ctr.train.seeds[{i}]", seed)
        if len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"ctr.train.seeds = {list(self.seeds)}: a seed is listed twice")
        check_range("ctr.train.threads", self.threads, 0)
        check_range("ctr.train.workers", self.workers, 1)


@dataclass(frozen=True)
class CtrConfig:
    """The CTR stage: the shared model shape, the models trained with it, and their training.

    Args:
        model: shape shared by every model.
        variants: preset models to train (see :mod:`mimrec.ctr.variants`).
        models: further models given as data (``[[ctr.models]]`` tables: a name, a list of
            blocks, ...), trained after the presets.
        content_source: the Representation Center store the presets' content blocks read
            (``ciubm_raw`` and ``ciubm_pretrain`` fix their own).
        ciubm: training options of the ``ciubm`` presets only (cold dropout).
        train: optimisation and early stopping.
        select_margin: the service (and the report's "valid-best") takes a model other than
            ``din`` only when its mean valid AUC is higher than DIN's by more than this.
        shuffled_controls: train with every model that reads content its shuffled-content
            control ``<name>_shuffled`` (``ModelSpec.shuffled_content``: the same model on
            vectors permuted across items). The report gives each model's difference to its
            control (content's own share), and a model is served only when it beats its control
            on valid too; one that starts from DIN (``init_from``) and does not beat its control
            by more than ``select_margin`` has its content switched off (its weights become its
            DIN start, which computes exactly DIN; the manifest keeps what it scored as
            trained). Costs one more training per content model and seed. Off here (a
            library default that trains only what is listed); the shipped configs and
            ``mimrec init`` switch it on.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    variants: tuple[Variant, ...] = ("din",)
    models: tuple[ModelSpec, ...] = ()
    content_source: ContentSource = "csft"
    ciubm: CiubmTraining = field(default_factory=CiubmTraining)
    train: TrainConfig = field(default_factory=TrainConfig)
    select_margin: float = 0.001
    shuffled_controls: bool = False

    def __post_init__(self) -> None:
        check_range("ctr.select_margin", self.select_margin, 0, 1, high_open=True)
        if not self.variants and not self.models:
            raise ValueError("ctr.variants = [] is out of range: expected at least one model "
                             "(a variant, or a [[ctr.models]] table)")
        names = list(self.variants) + [m.name for m in self.models]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"ctr: model name {twice[0]!r} is given twice (variants and models)")

