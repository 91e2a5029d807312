"""Configs of the CTR stage: the model's shape and switches, and how it is trained."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Where content vectors come from: the raw pretrained text model, stage 1, or C-SFT.
ContentSource = Literal["raw", "pretrain", "csft"]

# The named models a report can compare; each is resolved in mimrec.ctr.variants.
Variant = Literal[
    "din", "content_only", "ciubm", "ciubm_no_sa_ta", "ciubm_no_simtier",
    "ciubm_no_content_attention", "ciubm_no_target_content", "ciubm_no_retrieval",
    "ciubm_no_cold_id", "ciubm_raw", "ciubm_pretrain",
]

# The content modules a CiUBM variant can switch on (each is a ModelConfig switch).
ContentModule = Literal["sa_ta", "simtier", "content_attention", "target_content", "cold_id"]



@dataclass(frozen=True)
class ModelConfig:
    """Shape of the CiUBM model; ID-only DIN is this model with every content module off.

    Args:
        embedding_dim: size of every ID / categorical embedding.
        attention_units: hidden sizes of the DIN attention MLP.
        attention_softmax: normalise attention weights with a softmax (DIN's original is off).
        mlp_units: hidden sizes of the prediction tower.
        dropout: dropout in the tower.
        batch_norm: batch norm in the tower.
        use_user_id: embed the user id (off for the content-only model).
        use_item_id: embed the item id of target and behaviour items (off for content-only).
        id_attention: DIN target attention over the behaviour ID vectors.
        sa_ta: similarity-aware target attention (ID scores fused with content cosines).
        simtier: histogram of target-to-behaviour content similarities as a feature.
        simtier_bins: number of SimTier bins over [-1, 1].
        content_attention: target attention in content space.
        target_content: the target's (projected) content vector as a feature.
        cold_id: an item whose ID embedding training never updated (no train impression: a cold
            item, or one added after training) gets an ID embedding generated from its content
            vector by a linear map, fitted during training to the trained items' ID embeddings
            (a regression the CTR loss does not see); trained items keep their own.
        content_proj_dim: size content vectors are projected to inside the CTR model.
        content_dropout: dropout on the projected content vectors (the target content feature
            and the inputs of content attention); regularises the content path.
        ciubm_modules: the content modules the ``ciubm`` variants switch on (``ciubm_raw``,
            ``ciubm_pretrain`` alike; each ``ciubm_no_*`` drops one of them). Default: all four;
            MUSE's best pair is ``["sa_ta", "simtier"]``.
        item_id_dropout: in training, zero each sample's target item-ID embedding with this
            probability (its features and content stay), so the model also learns to score an
            item it has no trained ID for (cold start; DropoutNet-style). 0 = off.
        retrieval_k: keep only the K behaviours most similar in content to the target (GSU);
            0 = keep all. Applies when the sequence is longer than K.
    """

    embedding_dim: int = 16
    attention_units: tuple[int, ...] = (64, 32)
    attention_softmax: bool = False
    mlp_units: tuple[int, ...] = (256, 128)
    dropout: float = 0.2
    batch_norm: bool = True
    use_user_id: bool = True
    use_item_id: bool = True
    id_attention: bool = True
    sa_ta: bool = False
    simtier: bool = False
    simtier_bins: int = 20
    content_attention: bool = False
    target_content: bool = False
    cold_id: bool = False
    content_proj_dim: int = 32
    content_dropout: float = 0.0
    ciubm_modules: tuple[ContentModule, ...] = ("sa_ta", "simtier", "content_attention",
                                                "target_content")
    retrieval_k: int = 0
    item_id_dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.item_id_dropout <= 1.0:
            raise ValueError(f"ctr.model.item_id_dropout must be in [0, 1], "
                             f"got {self.item_id_dropout}")

    @property
    def uses_content(self) -> bool:
        """Whether any module reads content vectors."""
        return (self.sa_ta or self.simtier or self.content_attention or self.target_content
                or (self.cold_id and self.use_item_id) or self.retrieval_k > 0)


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

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ctr.train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.workers < 1:
            raise ValueError(f"ctr.train.workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class CtrConfig:
    """The CTR stage: the base model, the named variants trained from it, and their training.

    Args:
        model: shape shared by every variant.
        variants: which named models to train (see :mod:`mimrec.ctr.variants`).
        content_source: the Representation Center store content modules read (``ciubm_raw`` and
            ``ciubm_pretrain`` fix their own).
        train: optimisation and early stopping.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    variants: tuple[Variant, ...] = ("din",)
    content_source: ContentSource = "csft"
    train: TrainConfig = field(default_factory=TrainConfig)
