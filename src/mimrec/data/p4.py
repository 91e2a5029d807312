"""Protocol P4: real Fashion-MNIST product photos as the catalogue, **simulated behaviour**.

No package ships real clicks joined to real product images, so P4 keeps the content real and
simulates who sees and clicks what, with a known click probability (the oracle bounds every
model). It shows that the pipeline extracts content interest where it exists, not that it lifts a
real site's CTR. The rules are ``shared/protocol.md`` "P4":

* Items: the first ``items_per_class`` (600) *train* images of each class, in file order (t10k is
  never used). Title = a brand word (one of 50 made-up words, drawn uniformly) and the class name;
  categorical features ``class`` and ``brand``; ``image`` = the photo as PNG bytes.
* Hidden style z_i: the first 8 principal components of the raw pixels (PCA fitted on the
  catalogue, component signs fixed so each one's largest loading is positive), standardised.
* Users: class affinity a_u ~ Dirichlet(0.3 * 1_10), style taste w_u ~ N(0, I_8), bias
  b_u ~ N(0, 0.5^2); item appeal q_i ~ N(0, 0.5^2) (known to IDs only, not to content).
* Click logit(u, i) = log(10 a_u[class_i]) + w_u . z_i / sqrt(8) + q_i + b_u - 0.5;
  label ~ Bernoulli(sigmoid(logit)); the probability is kept as ``click_probability``.
* Impressions: user u gets 20 + Poisson(30) of them at times uniform over 180 days; each shows an
  item drawn with probability proportional to (a_u[class_i] + 0.02) exp(q_i) among the items
  launched by then. A fifth of the items launch on day 144, the rest on day 0.

Every draw comes from one ``numpy.random.default_rng(seed)``, in this order: brands, user
affinities, tastes, biases, item appeals, the late items, impression counts, times, the class of
each impression, the item within its class, the click. The item draw is done in two exact steps
(class ∝ (a_u[c] + 0.02) x the launched items' total exp(q) in class c, then item ∝ exp(q_i)
within the class), which is the protocol's joint distribution.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mimrec.data.config import P4Config
from mimrec.data.fashion import FASHION_CLASSES, FASHION_DIR, load_fashion_mnist
from mimrec.data.tables import Dataset, validate_interactions, validate_items
from mimrec.errors import DataError

BRANDS: tuple[str, ...] = (
    "Aldova", "Brinmar", "Calveto", "Dorelle", "Elvaro", "Fenwyck", "Galdora", "Halvani",
    "Istrel", "Jovanta", "Kestrel", "Lumira", "Marvelle", "Norvik", "Ostara", "Pellino",
    "Quenby", "Rosmund", "Selvaggi", "Tarrow", "Ulmara", "Vantelle", "Wexley", "Xandri",
    "Yorvane", "Zelmont", "Arveno", "Belcora", "Corwyn", "Delmaro", "Estavia", "Farrelli",
    "Grevant", "Hollis", "Ivoria", "Jastrow", "Korvel", "Lanzetti", "Mirabel", "Nolvane",
    "Orsella", "Presco", "Quillon", "Ravella", "Sorrento", "Tivoli", "Umbrial", "Veltrano",
    "Wendale", "Yselle",
)
STYLE_DIMS = 8
DAYS = 180
LATE_DAY = 144
LATE_FRACTION = 0.2
AFFINITY_ALPHA = 0.3
SHOW_SMOOTHING = 0.02
MIN_IMPRESSIONS, MEAN_EXTRA_IMPRESSIONS = 20, 30
BIAS_STD = APPEAL_STD = 0.5
LOGIT_SHIFT = -0.5
SECONDS_PER_DAY = 86_400


@dataclass
class P4World:
    """The whole simulation: catalogue, hidden user and item parameters, impressions.

    Shapes: I items, U users, N impressions, C = 10 classes, S = 8 style dimensions.
    """

    source_row: np.ndarray  # (I,) int64 row of the Fashion-MNIST train split
    item_class: np.ndarray  # (I,) int64 index into FASHION_CLASSES
    brand: np.ndarray  # (I,) int64 index into BRANDS
    style: np.ndarray  # (I, S) float64 standardised pixel principal components z_i
    appeal: np.ndarray  # (I,) float64 q_i
    launch_day: np.ndarray  # (I,) int64: 0 or LATE_DAY
    affinity: np.ndarray  # (U, C) float64 a_u, rows sum to 1
    taste: np.ndarray  # (U, S) float64 w_u
    bias: np.ndarray  # (U,) float64 b_u
    user: np.ndarray  # (N,) int64
    item: np.ndarray  # (N,) int64 catalogue row
    timestamp: np.ndarray  # (N,) int64 seconds from day 0
    probability: np.ndarray  # (N,) float64 sigmoid(logit)
    label: np.ndarray  # (N,) int8

    def logit(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """The click logit of (user, item) pairs. Shapes: (N,), (N,) -> (N,)."""
        with np.errstate(divide="ignore"):  # an affinity of exactly 0 gives logit -inf, p = 0
            interest = np.log(10.0 * self.affinity[user, self.item_class[item]])
        style = (self.taste[user] * self.style[item]).sum(1) / np.sqrt(STYLE_DIMS)
        return interest + style + self.appeal[item] + self.bias[user] + LOGIT_SHIFT


def catalogue_rows(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Rows of the first ``per_class`` images of each class, in file order."""
    rows = np.concatenate([np.flatnonzero(labels == c)[:per_class]
                           for c in range(len(FASHION_CLASSES))])
    if len(rows) < per_class * len(FASHION_CLASSES):
        raise DataError(f"Fashion-MNIST train has fewer than {per_class} images of some class")
    return np.sort(rows)


def pixel_style(images: np.ndarray) -> np.ndarray:
    """The first 8 principal components of raw pixels, standardised (PCA fitted on ``images``).

    A component's sign is fixed so its largest-magnitude loading is positive, so the result does
    not depend on the linear-algebra library. The eigen-decomposition of the (H*W, H*W) pixel
    covariance runs on one BLAS thread (a busy shared machine made the threaded SVD take
    minutes). Shapes: (I, H, W) uint8 -> (I, 8) float64.
    """
    from threadpoolctl import threadpool_limits

    x = images.reshape(len(images), -1).astype(np.float64)
    x -= x.mean(0)
    with threadpool_limits(1):
        _, vectors = np.linalg.eigh(x.T @ x)  # eigenvalues ascending
        components = vectors[:, ::-1][:, :STYLE_DIMS].T  # (S, H*W)
        largest = components[np.arange(len(components)), np.abs(components).argmax(1)]
        components = components * np.sign(largest)[:, None]
        scores = x @ components.T  # (I, S)
    return scores / scores.std(0)


def _draw_items(rng: np.random.Generator, user: np.ndarray, launched_late: np.ndarray,
                world: dict) -> np.ndarray:
    """Shown items: class ∝ (a_u[c] + 0.02) x launched exp(q) mass of c, then item ∝ exp(q).

    Shapes: user (N,), launched_late (N,) bool: the late items are out -> items (N,).
    """
    item_class, weight, late = world["item_class"], np.exp(world["appeal"]), world["late"]
    n_classes = len(FASHION_CLASSES)
    shown = np.empty(len(user), dtype=np.int64)
    class_u, item_u = rng.random(len(user)), rng.random(len(user))
    for regime in (False, True):
        rows = np.flatnonzero(launched_late == regime)
        avail = np.flatnonzero(~late | regime)  # catalogue rows launched in this regime
        order = avail[np.lexsort((avail, item_class[avail]))]  # by class, then row
        mass = np.bincount(item_class[order], weight[order], minlength=n_classes)  # (C,)
        class_w = (world["affinity"][user[rows]] + SHOW_SMOOTHING) * mass  # (n, C)
        cum = np.cumsum(class_w, axis=1)
        cls = (cum < (class_u[rows] * cum[:, -1])[:, None]).sum(1)
        cls = np.minimum(cls, n_classes - 1)
        start = np.r_[0, np.cumsum(np.bincount(item_class[order], minlength=n_classes))]
        cum_w = np.cumsum(weight[order])
        offset = np.r_[0.0, np.cumsum(mass)][cls]
        pos = np.searchsorted(cum_w, offset + item_u[rows] * mass[cls], side="right")
        pos = np.clip(pos, start[cls], start[cls + 1] - 1)
        shown[rows] = order[pos]
    return shown


def simulate(images: np.ndarray, labels: np.ndarray, cfg: P4Config) -> P4World:
    """Run the P4 simulation on the Fashion-MNIST train split (see the module docstring).

    Args:
        images: train images (N_train, 28, 28) uint8.
        labels: their classes (N_train,).
        cfg: seed and sizes.
    """
    rows = catalogue_rows(labels, cfg.items_per_class)
    n_items, n_users = len(rows), cfg.users
    rng = np.random.default_rng(cfg.seed)
    brand = rng.integers(0, len(BRANDS), n_items)
    affinity = rng.dirichlet(np.full(len(FASHION_CLASSES), AFFINITY_ALPHA), n_users)
    taste = rng.standard_normal((n_users, STYLE_DIMS))
    bias = rng.normal(0.0, BIAS_STD, n_users)
    appeal = rng.normal(0.0, APPEAL_STD, n_items)
    late = np.zeros(n_items, dtype=bool)
    late[rng.choice(n_items, size=round(LATE_FRACTION * n_items), replace=False)] = True
    counts = MIN_IMPRESSIONS + rng.poisson(MEAN_EXTRA_IMPRESSIONS, n_users)
    user = np.repeat(np.arange(n_users), counts)
    days = rng.uniform(0.0, DAYS, len(user))
    timestamp = (days * SECONDS_PER_DAY).astype(np.int64)
    launched_late = timestamp >= LATE_DAY * SECONDS_PER_DAY
    params = {"item_class": labels[rows], "appeal": appeal, "late": late, "affinity": affinity}
    item = _draw_items(rng, user, launched_late, params)
    world = P4World(rows, labels[rows].astype(np.int64), brand, pixel_style(images[rows]),
                    appeal, np.where(late, LATE_DAY, 0), affinity, taste, bias, user, item,
                    timestamp, np.empty(0), np.empty(0, dtype=np.int8))
    with np.errstate(over="ignore"):
        world.probability = 1.0 / (1.0 + np.exp(-world.logit(user, item)))
    world.label = (rng.random(len(user)) < world.probability).astype(np.int8)
    return world


def png_bytes(image: np.ndarray) -> bytes:
    """One grey uint8 image as PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def world_tables(world: P4World, images: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The standard ``interactions`` and ``items`` tables of a simulation (ids as strings)."""
    class_name = np.asarray(FASHION_CLASSES)[world.item_class]
    brand = np.asarray(BRANDS)[world.brand]
    items = pd.DataFrame({
        "item_id": world.source_row.astype(str),
        "title": [f"{b} {c}" for b, c in zip(brand, class_name, strict=True)],
        "class": class_name, "brand": brand,
        "image": [png_bytes(images[r]) for r in world.source_row],
        "launch_day": world.launch_day,
    })
    interactions = pd.DataFrame({
        "user_id": world.user.astype(str), "item_id": items["item_id"].to_numpy()[world.item],
        "timestamp": world.timestamp, "label": world.label,
        "click_probability": world.probability.astype(np.float32),
    })
    return interactions, items


def load_p4(cfg: P4Config, text_fields: tuple[str, ...] = ("title",),
            folder: Path = FASHION_DIR) -> Dataset:
    """Protocol P4 in standard form (simulated behaviour on real Fashion-MNIST photos).

    Args:
        cfg: seed and sizes.
        text_fields: the item columns the encoder reads (P4 items have ``title``).
        folder: where the Fashion-MNIST files lie.
    """
    folder = Path(folder)
    images, labels = load_fashion_mnist("train", folder)
    world = simulate(images, labels, cfg)
    interactions, items = world_tables(world, images)
    name = "p4 (Fashion-MNIST photos, simulated behaviour)"
    sources = tuple(folder / f"train-{kind}-idx{n}-ubyte.gz" for kind, n in
                    (("images", 3), ("labels", 1)))
    return Dataset(name, validate_interactions(interactions, f"{name}: interactions", 1.0),
                   validate_items(items, f"{name}: items", text_fields), None, sources)
