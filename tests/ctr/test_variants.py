import pandas as pd
import pytest
import torch

from mimrec.config import load_config
from mimrec.ctr.config import ModelConfig
from mimrec.ctr.features import build_feature_tables
from mimrec.ctr.model import CiUBM
from mimrec.ctr.variants import variant_config
from mimrec.errors import ConfigError

MODULES = ("sa_ta", "simtier", "content_attention", "target_content")
N_ITEMS, E = 20, 8


def _switched_on(cfg: ModelConfig) -> set[str]:
    return {m for m in MODULES if getattr(cfg, m)}


def test_ciubm_switches_on_the_configured_modules_and_ablations_drop_one():
    assert _switched_on(variant_config(ModelConfig(), "ciubm")) == set(MODULES)
    pair = ModelConfig(ciubm_modules=("sa_ta", "simtier"))
    assert _switched_on(variant_config(pair, "ciubm")) == {"sa_ta", "simtier"}
    assert _switched_on(variant_config(pair, "ciubm_raw")) == {"sa_ta", "simtier"}
    assert _switched_on(variant_config(pair, "ciubm_no_simtier")) == {"sa_ta"}
    assert _switched_on(variant_config(pair, "ciubm_no_sa_ta")) == {"simtier"}
    # dropping a module the set lacks leaves ciubm itself
    assert variant_config(pair, "ciubm_no_target_content") == variant_config(pair, "ciubm")
    assert _switched_on(variant_config(pair, "din")) == set()
    assert _switched_on(variant_config(pair, "content_only")) == set(MODULES)


def test_ciubm_modules_load_from_overrides_and_bad_names_are_errors():
    cfg = load_config(None, ["ctr.model.ciubm_modules=['sa_ta', 'simtier']"])
    assert cfg.ctr.model.ciubm_modules == ("sa_ta", "simtier")
    with pytest.raises(ConfigError, match="ciubm_modules"):
        load_config(None, ["ctr.model.ciubm_modules=['sa_ta', 'gsu']"])


@pytest.fixture
def model_and_batch():
    items = pd.DataFrame({"item_id": [str(i) for i in range(N_ITEMS)],
                          "genres": [["a", "b"][i % 2] for i in range(N_ITEMS)]})
    tables = build_feature_tables(items, None, 4, ("genres",), ())
    content = torch.randn(N_ITEMS + 1, E, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    cfg = variant_config(ModelConfig(content_dropout=0.5, batch_norm=False, dropout=0.0), "ciubm")
    model = CiUBM(cfg, tables, content)
    batch = (torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6]),
             torch.tensor([[0, 1, 2], [7, 8, 9], [10, 11, 12]]))
    return model, batch


def test_content_dropout_acts_in_training_only(model_and_batch):
    model, batch = model_and_batch
    model.train()
    torch.manual_seed(1)
    first = model(*batch)
    assert not torch.allclose(first, model(*batch))
    model.eval()
    torch.testing.assert_close(model(*batch), model(*batch))


def test_content_projections_keep_linear_weight_names(model_and_batch):
    """Models saved before content dropout existed load unchanged."""
    model, _ = model_and_batch
    keys = set(model.state_dict())
    assert {"target_content.weight", "target_content.bias",
            "content_attention.projection.weight"} <= keys
