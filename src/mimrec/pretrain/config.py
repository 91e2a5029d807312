"""Config of stage 1: domain adaptation of the text tower, then modal alignment (and its P3 run)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mimrec.ranges import check_range, check_seed


@dataclass(frozen=True)
class PretrainConfig:
    """Stage-1 training and evaluation settings.

    Args:
        seed: seeds the projections' initialisation, batch order, dropout and the hold-out draw.
        threads: torch CPU threads while the stage runs; 0 leaves torch's default. On a machine
            shared with other jobs, 1 can be several times faster than oversubscribed threads.
        holdout_fraction: share of the catalogue held out of pre-training (drawn with numpy
            ``default_rng(seed)`` over sorted item ids) to measure cross-modal retrieval on unseen
            items; used when no explicit list of training items is given.
        text_trainable_layers: the top transformer layers of the text tower that train; the frozen
            bottom runs once and is cached. 0 freezes the text tower.
        adapt_epochs: epochs of domain adaptation: SimCSE (dropout noise as the only augmentation:
            two passes of the same text are positives, other texts of the batch negatives) on the
            domain's own texts. 0 skips it.
        adapt_lr: learning rate of the text layers during adaptation.
        adapt_batch_size: texts per SimCSE batch.
        simcse_temperature: fixed temperature of the SimCSE loss.
        simcse_state_dropout: dropout on the cached token states entering the trainable layers
            during SimCSE (stands in for the dropout of the frozen, cached layers).
        align_epochs: at most this many epochs of modal alignment (symmetric InfoNCE between an
            item's modalities).
        select_on: what alignment is early-stopped on, the best epoch's weights restored (epoch
            0, before alignment, included): "p2" = protocol P2 (VALID) Recall@50 of the fused
            catalogue vectors when the run has behaviour samples (else as "heldout"); "heldout" =
            the mean held-out cross-modal Recall@k. Default "p2": held-out alignment can reach
            0.99 Recall@10 (titles pulled onto their category tokens) while the vectors retrieve
            what users engage next worse than the raw text model does.
        patience: stop alignment after this many epochs without a higher selection score; 0 =
            run every epoch (still restoring the best).
        align_batch_size: items per alignment batch.
        lr: learning rate of the projections, the attribute tower and the temperature.
        weight_decay: AdamW weight decay of the projections and attribute tower.
        temperature_init: initial InfoNCE temperature (learned; logit scale clamped to
            ``max_logit_scale``).
        max_logit_scale: upper bound of 1 / temperature.
        image_trainable_blocks: the top EfficientNet blocks (plus the head convolution) tuned during
            alignment ("light tuning"); 0 freezes the image tower. A Hugging Face image model
            (``image_arch`` "hf") is one block: 1 tunes all of it.
        image_lr: learning rate of the trainable image blocks.
        recall_k: k of the cross-modal Recall@k reported on held-out items.
        fashion_train_images: images of the Fashion-MNIST train split used for P3 training (the
            first ones, in file order; at most 60,000). t10k is never trained on.
        reviews_per_class: clothing reviews kept per Fashion-MNIST class as texts (file order).
        prompt_share: chance that an image's text in a P3 batch is a class prompt rather than a
            review (classes without reviews always get a prompt).
        train_prompts: prompt templates used in P3 training; ``{}`` is the class name.
        eval_prompt: the single P3 evaluation prompt per class; keep it out of ``train_prompts``.
    """

    seed: int = 0
    threads: int = 0
    holdout_fraction: float = 0.15
    text_trainable_layers: int = 1
    adapt_epochs: int = 1
    adapt_lr: float = 3e-5
    adapt_batch_size: int = 64
    simcse_temperature: float = 0.05
    simcse_state_dropout: float = 0.1
    align_epochs: int = 20
    select_on: Literal["p2", "heldout"] = "p2"
    patience: int = 3
    align_batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature_init: float = 0.07
    max_logit_scale: float = 100.0
    image_trainable_blocks: int = 1
    image_lr: float = 1e-4
    recall_k: int = 10
    fashion_train_images: int = 60000
    reviews_per_class: int = 100
    prompt_share: float = 0.5
    train_prompts: tuple[str, ...] = (
        "{}.",
        "a {} in a product catalogue.",
        "an online shop listing for a {}.",
    )
    eval_prompt: str = "a photo of a {}."

    def __post_init__(self) -> None:
        self._check_ranges()
        if not 0 <= self.holdout_fraction < 1:
            raise ValueError(
                f"pretrain.holdout_fraction must be in [0, 1), got {self.holdout_fraction}"
            )
        for name in (
            "threads",
            "text_trainable_layers",
            "adapt_epochs",
            "align_epochs",
            "patience",
            "image_trainable_blocks",
            "reviews_per_class",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"pretrain.{name} must be >= 0, got {getattr(self, name)}")
        if self.recall_k < 1:
            raise ValueError(f"pretrain.recall_k must be >= 1, got {self.recall_k}")
        for name in ("adapt_batch_size", "align_batch_size"):
            if getattr(self, name) < 2:
                raise ValueError(f"pretrain.{name} must be >= 2, got {getattr(self, name)}")
        if not 0 < self.temperature_init < 1 or self.max_logit_scale <= 1:
            raise ValueError("pretrain.temperature_init must be in (0, 1) and max_logit_scale > 1")
        if not 0 < self.fashion_train_images <= 60000:
            raise ValueError("pretrain.fashion_train_images must be in 1..60000")
        if not 0 <= self.simcse_state_dropout < 1:
            raise ValueError("pretrain.simcse_state_dropout must be in [0, 1)")
        if not 0 <= self.prompt_share <= 1:
            raise ValueError(f"pretrain.prompt_share must be in [0, 1], got {self.prompt_share}")
        if "{}" not in self.eval_prompt or not all("{}" in p for p in self.train_prompts):
            raise ValueError("pretrain.eval_prompt and every train_prompts entry need a {} slot")
        if self.eval_prompt in self.train_prompts:
            raise ValueError("pretrain.eval_prompt must not be one of train_prompts (zero-shot)")

    def _check_ranges(self) -> None:
        """Every numeric setting in its range (one line naming key, value and range)."""
        check_seed("pretrain.seed", self.seed)
        for name in ("threads", "text_trainable_layers", "adapt_epochs", "align_epochs",
                     "image_trainable_blocks", "reviews_per_class"):
            check_range(f"pretrain.{name}", getattr(self, name), 0)
        check_range("pretrain.holdout_fraction", self.holdout_fraction, 0, 1, high_open=True)
        for name in ("adapt_lr", "lr", "image_lr", "simcse_temperature"):
            check_range(f"pretrain.{name}", getattr(self, name), 0, low_open=True)
        check_range("pretrain.weight_decay", self.weight_decay, 0)
        check_range("pretrain.simcse_state_dropout", self.simcse_state_dropout, 0, 1,
                    high_open=True)
        check_range("pretrain.temperature_init", self.temperature_init, 0, 1, low_open=True,
                    high_open=True)
        check_range("pretrain.max_logit_scale", self.max_logit_scale, 1, low_open=True)
        check_range("pretrain.recall_k", self.recall_k, 1)
        check_range("pretrain.fashion_train_images", self.fashion_train_images, 1, 60000)
        check_range("pretrain.prompt_share", self.prompt_share, 0, 1)
