"""``mimrec init``: the tables are inspected and a commented config that loads is written."""

import subprocess
import sys

import pandas as pd
import pytest

from mimrec.config import load_config
from mimrec.data.inspect import inspect_tables
from mimrec.errors import DataError
from mimrec.init_config import write_init_config
from tests.catalogue import build_catalogue


@pytest.fixture
def shop(tmp_path):
    return build_catalogue(tmp_path / "shop")


def test_columns_are_chosen_for_what_they_hold(shop):
    s = inspect_tables(shop)
    assert s.text_fields == ("title", "category", "brand")
    assert s.item_features == ("category", "brand")  # price (decimals) is skipped
    assert s.user_features == ("country",)
    assert s.image and not s.attributes and s.has_label
    assert "decimals" in s.reasons["items.price"]


def test_attributes_are_on_only_when_items_share_a_token(shop):
    items = pd.read_csv(shop / "items.csv")
    items["attributes"] = [f"only{i}" for i in range(len(items))]
    items.to_csv(shop / "items.csv", index=False)
    assert not inspect_tables(shop).attributes
    items["attributes"] = ["handmade" if i % 2 else "" for i in range(len(items))]
    items.to_csv(shop / "items.csv", index=False)
    assert inspect_tables(shop).attributes


def test_the_written_config_loads_and_explains_its_choices(shop, tmp_path):
    path, _ = write_init_config(shop, tmp_path / "cfg" / "shop.toml")
    cfg = load_config(path)
    assert cfg.data.dataset == "files" and cfg.data.path == str(shop)
    assert cfg.encoder.use_image and not cfg.encoder.use_attributes
    assert cfg.encoder.text_fields == ("title", "category", "brand")
    assert cfg.data.item_features == ("category", "brand") and cfg.data.bucket_edges == ()
    text = path.read_text()
    assert "price: numbers with decimals" in text and "no 'attributes' column" in text
    assert not list(path.parent.glob(".*tmp*"))


def test_ratings_set_the_click_threshold_at_their_median(shop, tmp_path):
    inter = pd.read_csv(shop / "interactions.csv")
    inter = inter.drop(columns="label").assign(rating=[1 + i % 5 for i in range(len(inter))])
    inter.to_csv(shop / "interactions.csv", index=False)
    path, s = write_init_config(shop, tmp_path / "r.toml")
    assert s.rating_median == 3.0 and load_config(path).data.positive_rating == 3.0


def test_a_catalogue_without_content_is_refused(shop, tmp_path):
    pd.DataFrame({"item_id": [f"sku{i}" for i in range(48)]}).to_csv(shop / "items.csv",
                                                                     index=False)
    with pytest.raises(DataError, match="no column mimrec can read as content"):
        write_init_config(shop, tmp_path / "x.toml")
    assert not (tmp_path / "x.toml").exists()


def test_init_on_the_command_line_writes_once(shop, tmp_path):
    out = tmp_path / "shop.toml"
    run = [sys.executable, "-m", "mimrec", "init", str(shop), "--out", str(out)]
    r = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "next: mimrec run" in r.stdout and "image: on; attributes: off" in r.stdout
    r = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--force" in r.stderr


def test_the_own_data_template_loads_with_buckets_from_the_data():
    cfg = load_config("configs/own_data.toml")
    assert cfg.data.dataset == "files" and cfg.data.bucket_edges == ()
    assert not cfg.encoder.use_attributes


def test_an_empty_column_is_skipped_and_said_so(shop):
    items = pd.read_csv(shop / "items.csv").assign(notes=None)
    items.to_csv(shop / "items.csv", index=False)
    s = inspect_tables(shop)
    assert "notes" not in s.text_fields + s.item_features and s.reasons["items.notes"] == "empty"
