"""What later stages need from a catalogue, checked by the data stage before anything trains.

The data stage refuses (one :class:`~mimrec.errors.DataError` naming file, column, row and value)
a catalogue whose configured feature columns are missing, whose images cannot be read, or whose
attribute vocabulary is empty while the attribute tower is on; an item with no usable content at
all is normal in real catalogues and is only counted. Such an item gets the zero content vector
in the Representation Center (see :mod:`mimrec.store.build`): it is similar to no other item, so
CiUBM's content blocks add nothing for it and its score rests on its ID embedding, as in DIN (an
item training never saw gets cold_id's generated ID embedding from that zero vector, i.e. the
fitted map's bias: the trained items' average).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mimrec.data.tables import Dataset, require_columns
from mimrec.errors import DataError
from mimrec.validation import pixels_problem


@dataclass(frozen=True)
class ContentNeeds:
    """The encoder settings the data stage checks the catalogue against.

    Args:
        text_fields: item columns joined into the item text.
        use_text: the text tower is on.
        use_image: the image tower is on (items' ``image`` column).
        use_attributes: the attribute tower is on (items' ``attributes`` column).
        attribute_min_count: a token enters the vocabulary when this many items carry it.
    """

    text_fields: tuple[str, ...] = ()
    use_text: bool = True
    use_image: bool = False
    use_attributes: bool = False
    attribute_min_count: int = 2


def resolve_image_paths(items: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """Image paths relative to the data folder made absolute (bytes and absolute paths kept)."""
    if "image" not in items.columns:
        return items
    def resolve(value: object) -> object:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str((folder / value).resolve())
        return value
    return items.assign(image=[resolve(v) for v in items["image"]])


def _empty(value: object) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    if isinstance(value, (list, tuple, np.ndarray)):
        return len(value) == 0
    return str(value).strip() == ""


def _tokens(value: object) -> list[str]:
    if _empty(value):
        return []
    return value.split() if isinstance(value, str) else [str(v) for v in value]


def check_image(value: object, where: str) -> bool:
    """True when the item has an image that opens; False when it has none; else a DataError."""
    if _empty(value) or isinstance(value, np.ndarray):
        return not _empty(value)
    import io

    from PIL import Image, UnidentifiedImageError

    source = io.BytesIO(bytes(value)) if isinstance(value, (bytes, bytearray, memoryview)) else value
    try:
        with Image.open(source) as img:
            problem = pixels_problem(*img.size)
            if problem is None:
                img.verify()  # reads the whole file without decoding the pixels
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError,
            SyntaxError, EOFError) as exc:
        problem = str(exc).splitlines()[0]
    if problem:
        shown = value if isinstance(value, str) else "image bytes"
        raise DataError(f"{where}: cannot read image {shown}: {problem}")
    return True


def table_source(ds: Dataset, table: str) -> str:
    """The file a table was read from (``items.csv``), or ``NAME: table`` when not from one."""
    return next((str(p) for p in ds.sources if p.name.split(".")[0] == table),
                f"{ds.name}: {table}")


def check_features(ds: Dataset, item_features: tuple[str, ...],
                   user_features: tuple[str, ...]) -> None:
    """The CTR feature columns exist (user ones when the data has a users table)."""
    require_columns(ds.items, list(item_features),
                    f"{table_source(ds, 'items')} (data.item_features)")
    if ds.users is not None:
        require_columns(ds.users, list(user_features),
                        f"{table_source(ds, 'users')} (data.user_features)")


def content_mask(items: pd.DataFrame, needs: ContentNeeds, source: str) -> np.ndarray:
    """(I,) bool: which items have some usable content for the switched-on towers.

    Images are opened (a broken one is an error naming the row); the attribute vocabulary must
    not be empty when the attribute tower is on.
    """
    has = np.zeros(len(items), dtype=bool)
    if needs.use_text:
        require_columns(items, list(needs.text_fields), f"{source} (encoder.text_fields)")
        for field in needs.text_fields:
            has |= ~np.array([_empty(v) for v in items[field]], dtype=bool)
    if needs.use_image:
        column = items["image"] if "image" in items.columns else [None] * len(items)
        ids = items["item_id"].tolist()
        has |= np.array([check_image(v, f"{source}: column 'image', row {r + 1} "
                                        f"(item {ids[r]!r})") for r, v in enumerate(column)],
                        dtype=bool)
    if needs.use_attributes:
        tokens = [_tokens(v) for v in (items["attributes"] if "attributes" in items.columns
                                       else [None] * len(items))]
        counts = Counter(t for ts in tokens for t in set(ts))
        vocab = {t for t, c in counts.items() if c >= needs.attribute_min_count}
        if not vocab:
            raise DataError(f"{source}: encoder.use_attributes is on but no attribute token "
                            f"occurs in >= {needs.attribute_min_count} items (column "
                            "'attributes' " + ("is missing" if "attributes" not in items.columns
                                               else "has too few shared tokens")
                            + "); set encoder.use_attributes = false")
        has |= np.array([any(t in vocab for t in ts) for ts in tokens], dtype=bool)
    return has
