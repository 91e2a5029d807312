"""A model whose store holds raw text vectors (``ciubm_raw``, or a trained source the index stage
replaced by raw vectors) embeds items added while serving with the raw text model."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mimrec.encoders.raw_text import RawTextEncoder
from mimrec.errors import MimrecError
from mimrec.serve.bundle import load_bundle, store_encoder
from mimrec.serve.scorer import Scorer
from mimrec.store.center import RepresentationCenter
from tests.test_cli import QUICK


@pytest.mark.slow  # trains one more CTR model (about 1 min on an idle 2-core machine)
def test_a_raw_store_embeds_new_items_with_the_raw_text_model(trained_run, run_copy):
    root = trained_run.parent
    cmd = [sys.executable, "-m", "mimrec", "train", "configs/movielens.toml", "--out",
           str(run_copy), "--set", "data.dataset=files", "--set", f"data.path={root / 'slice'}",
           "--set", f"encoder.text_model={root / 'bert'}", *QUICK,
           "--set", "ctr.train.seeds=[0]", "--set", "ctr.variants=['ciubm_raw']",
           "--set", "ctr.model.ciubm_from_din=false"]  # as the trained_run fixture
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    bundle = load_bundle(run_copy, "ciubm_raw")
    assert isinstance(bundle.encoder, RawTextEncoder) and bundle.store == run_copy / "index" / "raw"
    scorer = Scorer(bundle)
    assert scorer.can_add_items and scorer.text_fields == ("title", "year", "genres")
    fields = {"title": "toy story comedy", "year": "1995", "genres": "Comedy"}
    scorer.add_item("raw-new-1", fields, None, None)
    stored = RepresentationCenter(bundle.store).lookup(["raw-new-1"])
    expected = bundle.encoder.vectors(pd.DataFrame([{"item_id": "raw-new-1", **fields}]))
    np.testing.assert_allclose(stored, expected, rtol=1e-6)
    history = [str(i) for i in scorer.catalogue.ids[:5]]
    p = scorer.score(history, ["raw-new-1", str(scorer.catalogue.ids[7])])
    assert p.shape == (2,) and ((p > 0) & (p < 1)).all()


def test_a_raw_store_is_served_by_the_text_model_that_built_it(trained_run):
    center = RepresentationCenter(trained_run / "index" / "raw")
    encoder = store_encoder(trained_run, center.info)
    assert isinstance(encoder, RawTextEncoder)
    items = load_bundle(trained_run, "din").items.iloc[:20]
    np.testing.assert_allclose(encoder.encode_items(items),
                               center.lookup(items["item_id"].astype(str).to_numpy()), atol=1e-5)
    with pytest.raises(MimrecError, match="not the one that built the store"):
        store_encoder(trained_run, dataclasses.replace(center.info, encoder_hash="0" * 64))
