"""Config of stage 2, C-SFT: which pairs, which negatives, which loss levels, what trains."""

from __future__ import annotations

from dataclasses import dataclass

from mimrec.ranges import check_each, check_range, check_seed


@dataclass(frozen=True)
class CsftConfig:
    """Content-interest-aware contrastive fine-tuning of a stage-1 item encoder.

    Args:
        seed: seeds the pair cap draw, the batch order and any initialisation.
        threads: torch CPU threads while the stage runs; 0 leaves torch's default.
        min_label: a train event counts as engaged when its label >= this (P1 labels are 0/1,
            i.e. rating >= 4; logs with graded labels such as click=1 / purchase=2 set 2 to keep
            only purchases).
        pair_weight: weight of behaviour pairs in the loss (relative to other pair sources, such
            as query -> engaged-item pairs).
        window_steps: a trigger pairs with each of the user's next ``window_steps`` engaged items.
        window_seconds: and only with those at most this many seconds later; 0 = no time limit.
        max_pairs_per_user: at most this many pairs per user (a seeded random draw), so heavy users
            do not dominate; 0 = no cap.
        batch_size: pairs per step on each worker; the in-batch ("space") candidates of a step are
            the keys of all workers: world_size x batch_size.
        epochs: at most this many passes over the pairs.
        patience: stop after this many epochs without a higher P2 (VALID) Recall@50; the best
            epoch's weights are restored either way (epoch 0, the stage-1 vectors, included), so
            the stage's vectors never score below the stage-1 vectors on valid. 0 = run every
            epoch (still restoring the best).
        lr: learning rate of the projections, the attribute tower, the fusion and the temperature.
        weight_decay: AdamW weight decay of the heads.
        text_trainable_layers: top text-transformer layers that train (the frozen bottom is cached);
            0 freezes the text tower (the default: one trainable MiniLM layer makes a CPU step
            about 10x slower, and no P2 gain from it was established on MovieLens).
        text_lr: learning rate of the trainable text layers.
        train_attributes: train the attribute tower's token embeddings.
        train_fusion: train the gated-fusion weights.
        queue_size: keys of earlier steps kept as "time" negatives (FIFO); 0 switches the queue off.
            Off by default: on MovieLens-100K with title/genre/year content, P2 on VALID fell as
            the queue grew (Recall@50 0.153 without, 0.151 with 512, 0.143 with 2048 keys).
        symmetric: also score positive -> anchor (candidates: all anchors + queue) at the fused
            and Matryoshka levels.
        fused_weight: weight of the fused-vs-fused InfoNCE; 0 switches the level off.
        modality_weight: weight of the mean over modalities of "anchor modality vs fused
            positive" InfoNCE; 0 switches the level off.
        matryoshka_weight: weight of the mean over ``matryoshka_dims`` of the InfoNCE on
            re-normalised prefixes of the fused vectors; 0 switches the level off.
        matryoshka_dims: prefix sizes, each smaller than the encoder dimension D (the full D is
            the fused level).
        temperature_init: initial temperature (learned; 1/T clamped to [1, max_logit_scale]).
        max_logit_scale: upper bound of 1/T.
        eval_raw: also score raw pretrained text embeddings (mean-pooled, no projection) on P2;
            costs one pass of the original text model over the catalogue.
        progress: show a progress bar.
    """

    seed: int = 0
    threads: int = 0
    min_label: float = 1.0
    pair_weight: float = 1.0
    window_steps: int = 1
    window_seconds: int = 0
    max_pairs_per_user: int = 100
    batch_size: int = 512
    epochs: int = 8
    patience: int = 2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    text_trainable_layers: int = 0
    text_lr: float = 3e-5
    train_attributes: bool = True
    train_fusion: bool = True
    queue_size: int = 0
    symmetric: bool = True
    fused_weight: float = 1.0
    modality_weight: float = 0.5
    matryoshka_weight: float = 0.5
    matryoshka_dims: tuple[int, ...] = (32, 64)
    temperature_init: float = 0.07
    max_logit_scale: float = 100.0
    eval_raw: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        self._check_ranges()
        for name in ("threads", "window_seconds", "max_pairs_per_user", "epochs", "patience",
                     "text_trainable_layers", "queue_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"csft.{name} must be >= 0, got {getattr(self, name)}")
        if self.window_steps < 1:
            raise ValueError(f"csft.window_steps must be >= 1, got {self.window_steps}")
        if self.batch_size < 2:
            raise ValueError(f"csft.batch_size must be >= 2, got {self.batch_size}")
        weights = (self.fused_weight, self.modality_weight, self.matryoshka_weight)
        if min(weights) < 0 or max(weights) == 0:
            raise ValueError("csft level weights must be >= 0 with at least one > 0")
        if self.pair_weight <= 0:
            raise ValueError(f"csft.pair_weight must be > 0, got {self.pair_weight}")
        if any(d < 1 for d in self.matryoshka_dims):
            raise ValueError(f"csft.matryoshka_dims must be >= 1, got {self.matryoshka_dims}")
        if not 0 < self.temperature_init < 1 or self.max_logit_scale <= 1:
            raise ValueError("csft.temperature_init must be in (0, 1) and max_logit_scale > 1")

    def _check_ranges(self) -> None:
        """Every numeric setting in its range (one line naming key, value and range)."""
        check_seed("csft.seed", self.seed)
        for name in ("threads", "window_seconds", "max_pairs_per_user", "epochs",
                     "text_trainable_layers", "queue_size"):
            check_range(f"csft.{name}", getattr(self, name), 0)
        check_range("csft.min_label", self.min_label)
        check_range("csft.window_steps", self.window_steps, 1)
        check_range("csft.batch_size", self.batch_size, 2)
        check_range("csft.pair_weight", self.pair_weight, 0, low_open=True)
        for name in ("fused_weight", "modality_weight", "matryoshka_weight", "weight_decay"):
            check_range(f"csft.{name}", getattr(self, name), 0)
        for name in ("lr", "text_lr"):
            check_range(f"csft.{name}", getattr(self, name), 0, low_open=True)
        check_each("csft.matryoshka_dims", self.matryoshka_dims, 1)
        check_range("csft.temperature_init", self.temperature_init, 0, 1, low_open=True,
                    high_open=True)
        check_range("csft.max_logit_scale", self.max_logit_scale, 1, low_open=True)
