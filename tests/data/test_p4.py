"""Protocol P4's simulation (simulated behaviour on Fashion-MNIST photos): its click model, its
draws, and the standard tables and samples built from it."""

from __future__ import annotations

import numpy as np
import pytest

from mimrec.data.config import DataConfig, P4Config
from mimrec.data.fashion import FASHION_CLASSES, FASHION_DIR
from mimrec.data.p4 import (
    BRANDS,
    LATE_DAY,
    SECONDS_PER_DAY,
    catalogue_rows,
    load_p4,
    pixel_style,
    simulate,
    world_tables,
)
from mimrec.data.samples import TEST, TRAIN, VALID, build_samples
from mimrec.data.tables import Dataset


def synthetic_train(n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose pixels depend on the class plus noise (so PCA has structure)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 80, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 * c : 2 * c + 8, :] = 200 + rng.integers(0, 50)
    return images, labels


@pytest.fixture(scope="module")
def train_split():
    return synthetic_train()


@pytest.fixture(scope="module")
def world(train_split):
    images, labels = train_split
    return simulate(images, labels, P4Config(seed=0, users=2000, items_per_class=60))


def test_the_same_seed_gives_the_same_world_and_another_seed_another(train_split, world):
    images, labels = train_split
    again = simulate(images, labels, P4Config(seed=0, users=2000, items_per_class=60))
    for name in ("brand", "appeal", "affinity", "user", "item", "timestamp", "label"):
        assert np.array_equal(getattr(world, name), getattr(again, name)), name
    other = simulate(images, labels, P4Config(seed=1, users=2000, items_per_class=60))
    assert not np.array_equal(world.affinity, other.affinity)
    assert np.array_equal(world.style, other.style)  # the style is a function of pixels only


def test_catalogue_is_the_first_images_of_each_class_in_file_order(train_split, world):
    _, labels = train_split
    assert len(world.source_row) == 600 and np.all(np.diff(world.source_row) > 0)
    for c in range(10):
        assert list(world.source_row[world.item_class == c]) == list(
            np.flatnonzero(labels == c)[:60])


def test_clicks_follow_the_logit_formula_and_are_calibrated(world):
    u, i = world.user[:500], world.item[:500]
    expected = (np.log(10 * world.affinity[u, world.item_class[i]])
                + (world.taste[u] * world.style[i]).sum(1) / np.sqrt(8)
                + world.appeal[i] + world.bias[u] - 0.5)
    assert np.allclose(world.probability[:500], 1 / (1 + np.exp(-expected)))
    # the empirical click rate matches the mean sigmoid(logit), overall and per decile
    p, y = world.probability, world.label
    assert abs(y.mean() - p.mean()) < 4 * np.sqrt((p * (1 - p)).sum()) / len(p)
    edges = np.quantile(p, np.linspace(0, 1, 11))
    decile = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
    for d in range(10):
        m = decile == d
        se = np.sqrt((p[m] * (1 - p[m])).sum()) / m.sum()
        assert abs(y[m].mean() - p[m].mean()) < 4 * se + 1e-3


def test_affinities_are_dirichlet_0_3(world):
    a = world.affinity
    assert a.shape == (2000, 10) and np.allclose(a.sum(1), 1) and (a >= 0).all()
    # Dirichlet(0.3 * 1_10): mean 0.1, variance 0.1 * 0.9 / (3 + 1) = 0.0225 per component
    assert a.mean(0) == pytest.approx(np.full(10, 0.1), abs=0.01)
    assert a.var(0).mean() == pytest.approx(0.0225, rel=0.1)
    # concentrated: the favourite class holds far more than a tenth
    assert a.max(1).mean() > 0.4


def test_user_item_parameters_and_impression_counts(world):
    assert world.taste.std() == pytest.approx(1.0, rel=0.05)
    assert world.bias.std() == pytest.approx(0.5, rel=0.1)
    assert world.appeal.std() == pytest.approx(0.5, rel=0.15)
    counts = np.bincount(world.user, minlength=2000)
    assert counts.min() >= 20 and counts.mean() == pytest.approx(50, abs=1)
    assert 0 <= world.timestamp.min() and world.timestamp.max() < 180 * SECONDS_PER_DAY
    assert world.brand.min() >= 0 and world.brand.max() < len(BRANDS)


def test_late_items_never_appear_before_day_144_and_do_after(world):
    late = world.launch_day == LATE_DAY
    assert late.sum() == round(0.2 * 600) and set(world.launch_day) == {0, LATE_DAY}
    before = world.timestamp < LATE_DAY * SECONDS_PER_DAY
    assert not late[world.item[before]].any()
    assert late[world.item[~before]].mean() > 0.1


def _expected_item_counts(world, rows):
    """Sum over impressions of P(item | user) ∝ (a_u[class] + 0.02) exp(q) over launched items."""
    available = world.launch_day <= world.timestamp[rows[0]] / SECONDS_PER_DAY
    weight = np.exp(world.appeal) * available  # (I,)
    expected = np.zeros(len(weight))
    for u, n in zip(*np.unique(world.user[rows], return_counts=True), strict=True):
        p = (world.affinity[u, world.item_class] + 0.02) * weight
        expected += n * p / p.sum()
    return expected


def test_shown_items_follow_affinity_times_appeal(world):
    """Observed shows per item against the protocol's distribution (chi-square per item ~ 1)."""
    for before in (True, False):
        in_regime = (world.timestamp < LATE_DAY * SECONDS_PER_DAY) == before
        rows = np.flatnonzero(in_regime)
        expected = _expected_item_counts(world, rows)
        observed = np.bincount(world.item[rows], minlength=len(expected))
        assert observed[expected == 0].sum() == 0
        ok = expected > 5
        chi2 = ((observed[ok] - expected[ok]) ** 2 / expected[ok]).mean()
        assert 0.8 < chi2 < 1.25, (before, chi2)


def test_style_is_the_standardised_pixel_pca(train_split, world):
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    images, _ = train_split
    pixels = images[world.source_row].reshape(600, -1).astype(float)
    with threadpool_limits(1):
        reference = PCA(n_components=8, svd_solver="full").fit_transform(pixels)
    z = pixel_style(images[world.source_row])
    assert z.mean(0) == pytest.approx(np.zeros(8), abs=1e-9)
    assert z.std(0) == pytest.approx(np.ones(8))
    for k in range(8):  # the same components, up to sign
        assert abs(np.corrcoef(z[:, k], reference[:, k])[0, 1]) == pytest.approx(1, abs=1e-6)
    assert np.array_equal(pixel_style(images[world.source_row][::-1])[::-1].round(9), z.round(9))


def test_tables_and_samples_keep_the_true_probability_of_each_impression(train_split, world):
    images, _ = train_split
    interactions, items = world_tables(world, images)
    assert list(items.columns[:5]) == ["item_id", "title", "class", "brand", "image"]
    row = 7
    brand, name = BRANDS[world.brand[row]], FASHION_CLASSES[world.item_class[row]]
    assert items["title"][row] == f"{brand} {name}" and items["class"][row] == name
    assert items["image"][row][:8] == b"\x89PNG\r\n\x1a\n"
    samples = build_samples(Dataset("p4", interactions, items, None), DataConfig(dataset="p4"))
    assert [(samples.split == s).mean().round(2) for s in (TRAIN, VALID, TEST)] == [0.8, 0.1, 0.1]
    # every sample carries its own impression's probability (join on user, item, time)
    key = {(int(u), int(i), int(t)): p for u, i, t, p in
           zip(world.user, world.item, world.timestamp, world.probability, strict=True)}
    users = samples.user_ids[samples.user].astype(int)
    items_ = items["item_id"].to_numpy()[samples.item].astype(int)
    row_of = {int(r): k for k, r in enumerate(world.source_row)}
    got = [key[(u, row_of[i], int(t))] for u, i, t in
           zip(users[:2000], items_[:2000], samples.timestamp[:2000], strict=True)]
    assert np.allclose(samples.click_probability[:2000], got, atol=1e-6)
    # the late items are the cold rows: none in train, a part of valid and test
    assert samples.item_train_count[items["launch_day"].to_numpy() == LATE_DAY].sum() == 0
    assert (samples.bucket[samples.split == VALID] == 0).mean() > 0.1


def test_catalogue_rows_refuses_too_few_images():
    with pytest.raises(Exception, match="fewer than 5 images"):
        catalogue_rows(np.array([0, 1, 2] * 3), 5)


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="apt-get install -y dataset-fashion-mnist")
def test_the_real_catalogue_has_600_items_per_class():
    ds = load_p4(P4Config(users=50))
    assert len(ds.items) == 6000
    assert ds.items["class"].value_counts().to_dict() == {c: 600 for c in FASHION_CLASSES}
    assert ds.users is None and ds.interactions["click_probability"].between(0, 1).all()
    assert ds.items["item_id"].astype(int).max() < 60000
