"""A CTR model exported to ONNX gives PyTorch's probabilities under onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mimrec.ctr.config import CtrConfig, ModelConfig
from mimrec.ctr.features import feature_tables
from mimrec.ctr.model import CiUBM
from mimrec.ctr.onnx_export import export_onnx
from mimrec.ctr.stage import content_table
from mimrec.ctr.variants import model_specs

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("variant", ["ciubm", pytest.param("din", marks=pytest.mark.slow)])
def test_onnx_graph_gives_the_pytorch_probabilities(artifacts, tmp_path, variant):
    data_cfg, data, index = artifacts
    cfg = CtrConfig(model=ModelConfig(mlp_units=(16,), retrieval_k=8), variants=(variant,))
    spec = next(s for s in model_specs(cfg) if s.name == variant)
    content = content_table(index / spec.source, data.items)[0] if variant != "din" else None
    torch.manual_seed(0)
    model = CiUBM(cfg.model, spec, feature_tables(data, data_cfg), content).eval()
    with torch.no_grad():  # a "trained" model: no zero-initialised part left at zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    length = data_cfg.max_seq_len
    path = export_onnx(model, tmp_path / "model.onnx", length)
    rng = np.random.default_rng(0)
    n, items, users = 64, len(data.items), len(data.samples.user_ids)
    history = rng.integers(1, items + 1, (n, length))
    history[np.arange(length)[None, :] < rng.integers(0, length, n)[:, None]] = 0  # left pad
    feed = {"user": rng.integers(0, users + 1, n), "item": rng.integers(1, items + 1, n),
            "history": history}
    feed = {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in feed.items()}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, feed)[0]
    with torch.no_grad():
        tables = model.catalogue_tables()
        want = torch.sigmoid(model(*(torch.from_numpy(feed[k]) for k in ("user", "item",
                                                                          "history")),
                                   tables=tables)).numpy()
    assert got.shape == (n,)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert want.std() > 1e-3  # the inputs move the probabilities: a real comparison
    # a batch of another size runs through the same graph
    one = session.run(None, {k: v[:1] for k, v in feed.items()})[0]
    np.testing.assert_allclose(one, want[:1], atol=1e-5)
