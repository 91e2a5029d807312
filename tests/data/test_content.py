"""The data stage checks what later stages need, and counts items without content."""

import json

import pandas as pd
import pytest

from mimrec.data.config import DataConfig
from mimrec.data.content import ContentNeeds
from mimrec.data.stage import run_data
from mimrec.errors import DataError
from tests.catalogue import build_catalogue

NEEDS = ContentNeeds(("title", "category"), use_text=True, use_image=True)


@pytest.fixture
def shop(tmp_path):
    return build_catalogue(tmp_path / "shop")


def _cfg(shop, **kw):
    return DataConfig(dataset="files", path=str(shop), item_features=("category", "brand"),
                      user_features=("country",), **kw)


def test_image_paths_are_relative_to_the_data_folder(shop, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the data folder
    art = run_data(_cfg(shop), tmp_path / "data", needs=NEEDS)
    first = art.items["image"].iloc[0]
    assert first == str((shop / "images/item0.png").resolve())
    assert json.loads((tmp_path / "data/manifest.json").read_text())["metrics"][
        "no_content_items"] == 0


def test_missing_feature_columns_are_refused_before_anything_is_written(shop, tmp_path):
    with pytest.raises(DataError, match=r"items.csv \(data.item_features\): missing column 'colour'"):
        run_data(DataConfig(dataset="files", path=str(shop), item_features=("category", "colour")),
                 tmp_path / "d", needs=NEEDS)
    with pytest.raises(DataError, match=r"users.csv \(data.user_features\): missing column 'age'"):
        run_data(DataConfig(dataset="files", path=str(shop), item_features=("category",)),
                 tmp_path / "d", needs=NEEDS)
    with pytest.raises(DataError, match=r"items.csv: missing column 'name'"):
        run_data(_cfg(shop), tmp_path / "d", needs=ContentNeeds(("name",)))
    assert not (tmp_path / "d").exists()


def test_an_unreadable_image_names_its_row_and_file(shop, tmp_path):
    (shop / "images/item5.png").write_text("not a png")
    with pytest.raises(DataError, match=r"row 6 \(item 'sku5'\): cannot read image .*item5.png"):
        run_data(_cfg(shop), tmp_path / "d", needs=NEEDS)
    (shop / "images/item5.png").unlink()
    with pytest.raises(DataError, match="item5.png"):
        run_data(_cfg(shop), tmp_path / "d", needs=NEEDS)


def test_attributes_switched_on_without_tokens_is_refused(shop, tmp_path):
    needs = ContentNeeds(("title",), use_attributes=True)
    with pytest.raises(DataError, match="use_attributes is on but no attribute token.*missing"):
        run_data(_cfg(shop), tmp_path / "d", needs=needs)


def test_items_without_any_content_are_counted_not_refused(shop, tmp_path):
    items = pd.read_csv(shop / "items.csv")
    items.loc[[3, 7, 11], ["title", "category", "image"]] = None
    items.loc[[2], ["title", "category"]] = None  # still has its photo
    items.to_csv(shop / "items.csv", index=False)
    run_data(_cfg(shop), tmp_path / "d", needs=NEEDS)
    metrics = json.loads((tmp_path / "d/manifest.json").read_text())["metrics"]
    assert metrics["no_content_items"] == 3
    assert metrics["no_content_examples"] == ["sku3", "sku7", "sku11"]


def test_every_split_needs_a_click_and_a_non_click(shop, tmp_path):
    inter = pd.read_csv(shop / "interactions.csv").sort_values("timestamp")
    inter.loc[inter.index[-len(inter) // 10:], "label"] = 1  # the test tenth: clicks only
    inter.to_csv(shop / "interactions.csv", index=False)
    run_data(_cfg(shop), tmp_path / "d", needs=NEEDS)  # enough for pretrain and C-SFT alone
    with pytest.raises(DataError, match="test needs a click and a non-click"):
        run_data(_cfg(shop), tmp_path / "e", needs=NEEDS, both_classes=("train", "valid", "test"))
    assert not (tmp_path / "e").exists()
