import dataclasses
import typing

import pytest

from mimrec.config import PipelineConfig, load_config, to_dict
from mimrec.errors import ConfigError


def test_defaults_and_the_shipped_config_load():
    cfg = load_config("configs/movielens.toml")
    assert isinstance(cfg, PipelineConfig)
    assert cfg.data.max_seq_len == 50 and cfg.ctr.variants[0] == "din"
    assert to_dict(cfg)["ctr"]["train"]["seeds"] == list(cfg.ctr.train.seeds)


def test_the_p4_config_loads_with_images_on_and_refuses_a_second_cold_draw():
    cfg = load_config("configs/fashion_ctr.toml")
    assert cfg.data.dataset == "p4" and cfg.data.p4.users == 5000 and cfg.data.p4.seed == 0
    assert cfg.encoder.use_image and cfg.data.item_features == ("class", "brand")
    with pytest.raises(ConfigError, match="new_item_fraction must be 0 with data.dataset = 'p4'"):
        load_config("configs/fashion_ctr.toml", ["data.new_item_fraction=0.2"])


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
        ("ctr.train.seeds=one", "'ctr.train.seeds[0]': expected int"),  # 1 alone is [1]
        ("ctr.train.device=tpu", "'ctr.train.device': 'tpu' is not one of"),
        ("ctr.variants=['nope']", "'ctr.variants[0]': 'nope' is not one of"),
        ("data.new_item_fraction=1.5",
         "data.new_item_fraction = 1.5 is out of range: expected a finite number in [0, 1)"),
        ("data.new_item_launch=train", "'data.new_item_launch': 'train' is not one of"),
        ("data.p4.users=0", "data.p4.users = 0 is out of range: expected an integer >= 1"),
        ("data.p4.items_per_class=6001", "data.p4.items_per_class = 6001 is out of range"),
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
    with pytest.raises(ConfigError, match=r"^csft.modality_weight = -1.0 is out of range"):
        load_config(None, ["csft.modality_weight=-1.0"])


def test_negative_bootstrap_resamples_are_refused():
    with pytest.raises(ConfigError, match="eval.bootstrap_resamples must be >= 0"):
        load_config(None, ["eval.bootstrap_resamples=-1"])


@pytest.mark.parametrize(
    "override, shown",
    [  # the settings of the issue that ended in tracebacks or replaced the trained artifact
        ("ctr.train.lr=-0.1", "ctr.train.lr = -0.1 is out of range: expected a finite number > 0"),
        ("ctr.train.lr=nan", "ctr.train.lr = nan is out of range: expected a finite number > 0"),
        ("ctr.train.batch_size=0", "ctr.train.batch_size = 0 is out of range: expected an "
                                   "integer >= 1"),
        ("ctr.train.batch_size=-5", "ctr.train.batch_size = -5 is out of range"),
        ("ctr.model.dropout=-0.5", "ctr.model.dropout = -0.5 is out of range: expected a finite "
                                   "number in [0, 1)"),
        ("ctr.model.embedding_dim=0", "ctr.model.embedding_dim = 0 is out of range"),
        ("ctr.train.threads=-3", "ctr.train.threads = -3 is out of range: expected an integer "
                                 ">= 0"),
        ("ctr.train.max_epochs=0", "ctr.train.max_epochs = 0 is out of range"),
        ("ctr.train.embedding_l2=-1", "ctr.train.embedding_l2 = -1.0 is out of range"),
        ("ctr.train.seeds=[]", "ctr.train.seeds = [] is out of range: expected at least one"),
        ("ctr.variants=[]", "ctr.variants = [] is out of range: expected at least one model"),
        ("ctr.train.seeds=[0, 0]", "ctr.train.seeds = [0, 0]: a seed is listed twice"),
        ("ctr.train.lr=inf", "ctr.train.lr = inf is out of range"),
        ("ctr.model.mlp_units=[16, 0]", "ctr.model.mlp_units[1] = 0 is out of range"),
    ],
)
def test_training_settings_out_of_range_are_one_line_errors(override, shown):
    with pytest.raises(ConfigError) as err:
        load_config("configs/movielens.toml", [override])
    assert str(err.value) == shown or str(err.value).startswith(shown)
    assert "\n" not in str(err.value)


def _numeric_keys():
    """Every numeric setting of every section: (key, a value outside any sensible range)."""
    for name, tp in typing.get_type_hints(PipelineConfig).items():
        if dataclasses.is_dataclass(tp):
            yield from _numeric_fields(tp, name)


def _numeric_fields(cls, prefix):
    for name, tp in typing.get_type_hints(cls).items():
        key = f"{prefix}.{name}"
        if dataclasses.is_dataclass(tp):
            yield from _numeric_fields(tp, key)
        elif tp is float:
            yield key, "nan"
        elif tp is int:
            yield key, "-1000000000000"
        elif typing.get_origin(tp) is tuple and typing.get_args(tp)[0] is int:
            yield key, "[-1000000000000]"


NUMERIC = list(_numeric_keys())


def test_every_numeric_setting_is_found():
    assert len(NUMERIC) > 60 and ("ctr.train.lr", "nan") in NUMERIC


@pytest.mark.parametrize("key, value", NUMERIC, ids=[k for k, _ in NUMERIC])
def test_every_numeric_setting_is_range_checked_at_load_time(key, value):
    """NaN for every float and a huge negative number for every integer is refused with one
    line naming the key (no string registry: each config's __post_init__ checks its fields)."""
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{key}={value}"])
    message = str(err.value)
    assert key.rsplit(".", 1)[1] in message and "\n" not in message, message
