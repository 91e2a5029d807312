import pytest

from mimrec.config import PipelineConfig, load_config, to_dict
from mimrec.errors import ConfigError


def test_defaults_and_the_shipped_config_load():
    cfg = load_config("configs/movielens.toml")
    assert isinstance(cfg, PipelineConfig)
    assert cfg.data.max_seq_len == 50 and cfg.ctr.variants[0] == "din"
    assert to_dict(cfg)["ctr"]["train"]["seeds"] == list(cfg.ctr.train.seeds)


def test_overrides_are_typed():
    cfg = load_config(None, ["data.new_item_fraction=0.2", "ctr.train.seeds=[0]",
                             "ctr.train.device=cpu", "ctr.model.mlp_units=[8, 4]"])
    assert cfg.data.new_item_fraction == 0.2
    assert cfg.ctr.train.seeds == (0,)
    assert cfg.ctr.model.mlp_units == (8, 4)
    assert cfg.ctr.train.device == "cpu"


@pytest.mark.parametrize(
    "override, message",
    [
        ("ctr.train.lrr=0.1", "unknown config key 'ctr.train.lrr'"),
        ("ctr.train.lr=fast", "config key 'ctr.train.lr': expected float"),
        ("ctr.train.seeds=1", "'ctr.train.seeds': expected a list"),
        ("ctr.train.device=tpu", "'ctr.train.device': 'tpu' is not one of"),
        ("ctr.variants=['nope']", "'ctr.variants[0]': 'nope' is not one of"),
        ("data.new_item_fraction=1.5", "new_item_fraction must be in [0, 1)"),
        ("nonsense", "--set expects key=value"),
        ("bogus.key=1", "unknown config key 'bogus'"),
    ],
)
def test_bad_keys_and_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_a_value_check_names_its_key_once():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["ctr.train.ema_decay=1.5"])
    assert str(err.value) == "ctr.train.ema_decay must be in [0, 1), got 1.5"
    with pytest.raises(ConfigError, match=r"^csft: csft level weights must be >= 0"):
        load_config(None, ["csft.modality_weight=-1.0"])


def test_negative_bootstrap_resamples_are_refused():
    with pytest.raises(ConfigError, match="eval.bootstrap_resamples must be >= 0"):
        load_config(None, ["eval.bootstrap_resamples=-1"])
