"""A small shop catalogue built at test time: titles, categories, a brand, a price, tiny PNG
photos (relative paths in ``images/``), users and clicks that follow each user's favourite
categories. No attributes column: the case ``mimrec init`` must switch the attribute tower off for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = {
    "mugs": ("ceramic", "mug", "coffee", "tea", "cup"),
    "lamps": ("desk", "lamp", "light", "bulb", "shade"),
    "shirts": ("cotton", "shirt", "linen", "collar", "sleeve"),
    "books": ("novel", "paperback", "story", "poems", "atlas"),
}
COLOURS = {"mugs": (200, 60, 60), "lamps": (240, 220, 80), "shirts": (60, 90, 200),
           "books": (70, 160, 90)}


def write_png(path: Path, rgb: tuple[int, int, int], rng: np.random.Generator) -> None:
    """A 16x16 PNG of one colour plus noise."""
    from PIL import Image

    pixels = np.clip(np.array(rgb)[None, None, :] + rng.integers(-30, 30, (16, 16, 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def build_catalogue(folder: Path, items: int = 48, users: int = 40, per_user: int = 50,
                    seed: int = 0, no_content: tuple[int, ...] = ()) -> Path:
    """Write ``interactions.csv``, ``items.csv``, ``users.csv`` and ``images/*.png``; the items
    at rows ``no_content`` have no title, category, brand or photo (real catalogues have some)."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = list(CATEGORIES)
    rows = []
    for i in range(items):
        cat = names[i % len(names)]
        words = rng.choice(CATEGORIES[cat], size=3, replace=False)
        image = f"images/item{i}.png"
        write_png(folder / image, COLOURS[cat], rng)
        rows.append({"item_id": f"sku{i}", "title": f"{' '.join(words).capitalize()} {i}",
                     "category": cat, "brand": f"brand{i % 3}",
                     "price": round(float(rng.uniform(3, 90)), 2), "image": image})
    item_table = pd.DataFrame(rows)
    likes_of = item_table.category.copy()  # users' taste follows the true category
    item_table.loc[list(no_content), ["title", "category", "brand", "image"]] = None
    user_table = pd.DataFrame({"user_id": [f"u{u}" for u in range(users)],
                               "country": [("fr", "de", "it")[u % 3] for u in range(users)]})
    events = []
    for u in range(users):
        likes = set(rng.choice(names, size=2, replace=False))
        for k, i in enumerate(rng.integers(0, items, per_user)):
            liked = likes_of[i] in likes
            events.append({"user_id": f"u{u}", "item_id": f"sku{i}",
                           "timestamp": 1_700_000_000 + 60 * (k * users + u),
                           "label": int(rng.random() < (0.7 if liked else 0.15))})
    pd.DataFrame(events).to_csv(folder / "interactions.csv", index=False)
    item_table.to_csv(folder / "items.csv", index=False)
    user_table.to_csv(folder / "users.csv", index=False)
    return folder
