"""The index stage's safeguard: a trained source is stored only when it beats the raw vectors on
P2 (valid); on a catalogue whose content is random words the stored vectors still score >= raw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from mimrec import pipeline
from mimrec.artifacts import read_manifest
from mimrec.config import load_config
from mimrec.data.config import DataConfig
from mimrec.data.stage import read_data, run_data
from mimrec.encoders.config import EncoderConfig
from mimrec.eval.retrieval import p2_metrics
from mimrec.store import build
from mimrec.store.center import RepresentationCenter, StoreInfo
from mimrec.store.encode_shards import ShardedRun
from tests.conftest import write_slice
from tests.encoders.tiny_towers import WORDS, save_tiny_text_model


@pytest.fixture(scope="module")
def slice_data(ml100k, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("index")
    write_slice(ml100k, root / "slice", n_users=150)
    run_data(DataConfig(dataset="files", path=str(root / "slice")), root / "data")
    return root / "data"


def _fake_sources(monkeypatch, raw: np.ndarray, trained: dict[str, np.ndarray]) -> None:
    done = ShardedRun(encoded=len(raw), shards=1, reused=0, seconds=0.1)
    monkeypatch.setattr(build, "raw_vectors", lambda cfg, items, shards: (
        raw, StoreInfo("raw:fake", "r0", raw.shape[1]), done))
    monkeypatch.setattr(build, "encoder_vectors", lambda folder, items, name, shards: (
        trained[Path(folder).name], StoreInfo(Path(folder).name, "h", trained[Path(folder).name]
                                              .shape[1]), done))


def test_a_source_that_loses_to_raw_on_valid_is_stored_as_raw(slice_data, tmp_path, monkeypatch):
    data = read_data(slice_data)
    n = len(data.items)
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(n, 6)).astype(np.float32)
    constant = np.ones((n, 4), np.float32)  # every item alike: P2 Recall@50 = 0
    _fake_sources(monkeypatch, raw, {"good": raw * 3.0 + 0.01 * rng.normal(size=(n, 6)),
                                     "bad": constant})
    sources = {"raw": None, "good": tmp_path / "good", "bad": tmp_path / "bad"}
    metrics = build.run_index(sources, EncoderConfig(), data.items, tmp_path / "index", {},
                              samples=data.samples)
    raw_score = p2_metrics(raw, data.samples)["recall@50"]
    assert 0 < raw_score and metrics["bad"]["p2_valid"]["recall@50"] == 0.0
    assert metrics["bad"]["vectors"] == "raw" and metrics["bad"]["encoder"] == "raw:fake"
    stored = RepresentationCenter(tmp_path / "index" / "bad")
    np.testing.assert_array_equal(stored.vectors, raw)
    assert stored.info == StoreInfo("raw:fake", "r0", 6)
    manifest = read_manifest(tmp_path / "index")
    assert manifest["metrics"]["bad"]["vectors"] == "raw"
    assert manifest["config"]["select_metric"] == "p2_valid recall@50"
    assert "do not beat raw" in build.choice_line("bad", metrics["bad"])
    # a source that beats raw (here: barely) keeps its own vectors
    good = metrics["good"]
    assert good["vectors"] == ("trained" if good["p2_valid"]["recall@50"] > raw_score else "raw")
    # without samples nothing is judged: every trained source is stored as it is
    plain = build.run_index(sources, EncoderConfig(), data.items, tmp_path / "plain", {})
    assert "vectors" not in plain["bad"] and plain["bad"]["encoder"] == "bad"


def _random_words(items: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The catalogue with every text field and attribute replaced by random words."""
    rng = np.random.default_rng(seed)
    out = items.copy()
    words = lambda k: " ".join(rng.choice(WORDS, size=k))  # noqa: E731
    out["title"] = [words(3) for _ in range(len(out))]
    out["year"] = [str(rng.integers(1900, 2000)) for _ in range(len(out))]
    out["genres"] = ["|".join(rng.choice(WORDS[:15], size=2, replace=False)) for _ in range(len(out))]
    if "attributes" in out.columns:
        out["attributes"] = [list(rng.choice(WORDS, size=2)) for _ in range(len(out))]
    return out


def test_random_word_content_never_yields_vectors_worse_than_raw(ml100k, tmp_path):
    folder = write_slice(ml100k, tmp_path / "slice", n_users=100)
    _random_words(ml100k.items).to_parquet(folder / "items.parquet", index=False)
    bert = save_tiny_text_model(tmp_path / "bert")
    cfg = load_config("configs/movielens.toml", [
        "data.dataset=files", f"data.path={folder}", f"encoder.text_model={bert}",
        "pretrain.adapt_epochs=0", "pretrain.align_epochs=2", "csft.epochs=2",
        "csft.batch_size=64", "csft.progress=false", "encoder.progress=false"])
    out, console = tmp_path / "run", Console(file=open(tmp_path / "log.txt", "w"), width=160)
    for stage in (pipeline.stage_data, pipeline.stage_pretrain, pipeline.stage_csft,
                  pipeline.stage_index):
        stage(cfg, out, console)
    data = read_data(out / "data")
    ids = data.items["item_id"].astype(str).to_numpy()

    def score(source: str) -> float:
        return p2_metrics(RepresentationCenter(out / "index" / source).lookup(ids),
                          data.samples)["recall@50"]

    raw = score("raw")
    assert raw > 0
    for source in ("pretrain", "csft"):
        assert score(source) >= raw, source
    index = read_manifest(out / "index")["metrics"]
    assert {index[s]["vectors"] for s in ("pretrain", "csft")} <= {"trained", "raw"}
    # each stage kept its best valid epoch: never below what it started from
    csft = read_manifest(out / "csft")["metrics"]
    assert csft["p2_valid"]["csft"]["recall@50"] >= csft["p2_valid"]["pretrain"]["recall@50"]
    log = (tmp_path / "log.txt").read_text()
    assert "valid P2" in log and "csft: " in log


@pytest.mark.parametrize(("trained", "raw", "kept"), [
    ({"recall@50": 0.20, "mrr": 0.01}, {"recall@50": 0.10, "mrr": 0.05}, True),
    ({"recall@50": 0.10, "mrr": 0.09}, {"recall@50": 0.20, "mrr": 0.01}, False),
    # a catalogue of <= 50 items: Recall@50 is 1.0 for both, MRR decides
    ({"recall@50": 1.0, "mrr": 0.30}, {"recall@50": 1.0, "mrr": 0.20}, True),
    ({"recall@50": 1.0, "mrr": 0.20}, {"recall@50": 1.0, "mrr": 0.20}, False),
    ({"recall@50": float("nan"), "mrr": 0.0}, {"recall@50": 0.1, "mrr": 0.1}, True),
])
def test_trained_vectors_are_kept_only_when_they_beat_raw_ties_broken_on_mrr(trained, raw, kept):
    assert build.beats_raw(trained, raw) is kept


def test_the_terminal_names_a_tie_and_how_it_was_broken():
    from mimrec.pipeline import versus_raw

    m = {"items": 48, "dim": 128, "vectors": "trained", "p2_valid": {"recall@50": 1.0, "mrr": 0.1258},
         "raw_p2_valid": {"recall@50": 1.0, "mrr": 0.0996}}
    line = build.choice_line("csft", m)
    assert "trained vectors kept" in line and "tie, broken on MRR 0.1258 vs raw 0.0996" in line
    p2 = {"raw": {"recall@50": 1.0, "mrr": 0.0996}, "csft": {"recall@50": 1.0, "mrr": 0.1258}}
    assert "ties with the raw text vectors" in versus_raw("C-SFT", p2, "csft")
    assert "NOT" not in versus_raw("C-SFT", p2, "csft")
    p2["csft"]["recall@50"] = 0.5
    assert "does NOT beat" in versus_raw("C-SFT", p2, "csft")
