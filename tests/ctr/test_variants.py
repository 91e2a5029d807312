"""Models as data: presets resolve to block lists, ``[[ctr.models]]`` tables add models, and a
new interest block is one class named in a model's block list."""

import pandas as pd
import pytest
import torch

from mimrec.config import load_config
from mimrec.ctr.blocks import Behaviours, BlockDims, InterestBlock, reads_content
from mimrec.ctr.config import CtrConfig, ModelConfig, ModelSpec, TrainConfig
from mimrec.ctr.features import build_feature_tables
from mimrec.ctr.model import CiUBM
from mimrec.ctr.stage import spec_record
from mimrec.ctr.train import Batchable, train_epoch
from mimrec.ctr.variants import model_specs, preset
from mimrec.errors import ConfigError

N_ITEMS, E = 20, 8
CONTENT = ("sa_ta", "simtier", "content_attention", "target_content")


def _content_blocks(spec: ModelSpec) -> set[str]:
    return set(spec.blocks) - {"id_attention"}


def test_ciubm_lists_the_configured_blocks_and_ablations_drop_one():
    assert _content_blocks(preset(CtrConfig(), "ciubm")) == set(CONTENT)
    pair = CtrConfig(model=ModelConfig(ciubm_modules=("sa_ta", "simtier", "cold_id")))
    assert preset(pair, "ciubm").blocks == ("id_attention", "sa_ta", "simtier")
    assert preset(pair, "ciubm").cold_id
    assert preset(pair, "ciubm_raw").source == "raw"
    assert _content_blocks(preset(pair, "ciubm_no_simtier")) == {"sa_ta"}
    assert _content_blocks(preset(pair, "ciubm_no_sa_ta")) == {"simtier"}
    assert not preset(pair, "ciubm_no_cold_id").cold_id
    # dropping a module the set lacks leaves ciubm itself, under its own name
    assert preset(pair, "ciubm_no_target_content").blocks == preset(pair, "ciubm").blocks
    assert preset(pair, "din") == ModelSpec("din")
    assert _content_blocks(preset(pair, "content_only")) == set(CONTENT)
    assert not reads_content(preset(pair, "din")) and reads_content(preset(pair, "ciubm"))


def test_ciubm_modules_load_from_overrides_and_bad_names_are_errors():
    cfg = load_config(None, ["ctr.model.ciubm_modules=['sa_ta', 'simtier']"])
    assert cfg.ctr.model.ciubm_modules == ("sa_ta", "simtier")
    with pytest.raises(ConfigError, match="ciubm_modules"):
        load_config(None, ["ctr.model.ciubm_modules=['sa_ta', 'gsu']"])


def test_models_as_data_from_a_config_line():
    cfg = load_config(None, ["ctr.variants=['din']",
                             "ctr.models=[{name = 'simtier_only', blocks = ['id_attention', "
                             "'simtier'], cold_id = true, source = 'raw'}]"]).ctr
    assert [s.name for s in model_specs(cfg)] == ["din", "simtier_only"]
    custom = model_specs(cfg)[1]
    assert custom.blocks == ("id_attention", "simtier") and custom.cold_id and custom.source == "raw"
    with pytest.raises(ConfigError, match="'gsu' is not one of"):
        load_config(None, ["ctr.models=[{name = 'x', blocks = ['gsu']}]"])
    with pytest.raises(ConfigError, match="given twice"):
        load_config(None, ["ctr.variants=['din']", "ctr.models=[{name = 'din'}]"])
    with pytest.raises(ConfigError, match="lists a block twice"):
        load_config(None, ["ctr.models=[{name = 'x', blocks = ['simtier', 'simtier']}]"])


class MeanContent(InterestBlock):
    """A toy block: the mean content vector of the behaviours, scaled by a learned weight."""

    reads_content = True

    def __init__(self, content_dim: int) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(content_dim))
        self.out_dim = content_dim

    @classmethod
    def build(cls, dims: BlockDims, cfg: ModelConfig) -> "MeanContent":
        return cls(dims.content_dim)

    def forward(self, ctx: Behaviours, prepared: None) -> torch.Tensor:
        vectors = ctx.tables.content[ctx.history] * ctx.mask.unsqueeze(-1)  # (B, L, E)
        return vectors.sum(1) / ctx.mask.sum(1, keepdim=True).clamp(min=1) * self.scale


@pytest.fixture
def tables():
    items = pd.DataFrame({"item_id": [str(i) for i in range(N_ITEMS)],
                          "genres": [["a", "b"][i % 2] for i in range(N_ITEMS)]})
    return build_feature_tables(items, None, 4, ("genres",), ())


def test_a_new_block_is_one_class_and_one_config_line_and_trains(tables):
    spec = ModelSpec("toy", blocks=("id_attention", MeanContent))  # the config line
    content = torch.randn(N_ITEMS + 1, E, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = CiUBM(ModelConfig(mlp_units=(8,)), spec, tables, content)
    assert model.describe()["parts"][-1] == {"name": "MeanContent", "out_dim": E, "params": E}
    assert spec_record(spec)["blocks"] == ["id_attention", "MeanContent"]
    g = torch.Generator().manual_seed(1)
    data = Batchable(torch.randint(1, 5, (64,), generator=g),
                     torch.randint(1, N_ITEMS + 1, (64,), generator=g),
                     torch.randint(0, N_ITEMS + 1, (64, 5), generator=g),
                     torch.randint(0, 2, (64,), generator=g).float())
    before = model.blocks["MeanContent"].scale.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    train_epoch(model, data, opt, TrainConfig(batch_size=32), None, 1)
    assert not torch.equal(model.blocks["MeanContent"].scale, before)  # it trained


@pytest.fixture
def model_and_batch(tables):
    content = torch.randn(N_ITEMS + 1, E, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    cfg = CtrConfig(model=ModelConfig(content_dropout=0.5, batch_norm=False, dropout=0.0))
    model = CiUBM(cfg.model, preset(cfg, "ciubm"), tables, content)
    torch.nn.init.normal_(model.residual.net[-1].weight)  # as if trained: it starts at 0
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
