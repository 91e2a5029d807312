"""The run folder remembers its config; ``--set`` reads the obvious forms of lists and strings."""

import tomllib

import pytest

from mimrec.cli import build_parser
from mimrec.config import SET_EXAMPLES, load_config, to_dict
from mimrec.errors import ConfigError
from mimrec.run_config import RUN_CONFIG, read_run_config, resolve_run_config, write_run_config
from mimrec.toml_writer import dumps


@pytest.mark.parametrize(("text", "expected"), [
    ("[title]", ("title",)), ("[title, genre]", ("title", "genre")),
    ("title,genre", ("title", "genre")), ("title", ("title",)), ("['a', 'b']", ("a", "b")),
    ('["a b", c]', ("a b", "c")),
])
def test_set_reads_lists_in_every_obvious_form(text, expected):
    assert load_config(None, [f"encoder.text_fields={text}"]).encoder.text_fields == expected


@pytest.mark.parametrize(("item", "key", "expected"), [
    ("data.path=data/shop", ("data", "path"), "data/shop"),
    ('data.path="my shop"', ("data", "path"), "my shop"),
    ("data.path='x'", ("data", "path"), "x"),
    ("data.path=2024", ("data", "path"), "2024"),  # a string field keeps digits as text
    ("eval.baseline=ciubm", ("eval", "baseline"), "ciubm"),
    ("ctr.train.seeds=0,1", ("ctr", "train", "seeds"), (0, 1)),
    ("ctr.train.seeds=[3]", ("ctr", "train", "seeds"), (3,)),
    ("ctr.train.lr=0.5", ("ctr", "train", "lr"), 0.5),
    ("data.positive_rating=3", ("data", "positive_rating"), 3.0),
    ("encoder.use_image=true", ("encoder", "use_image"), True),
])
def test_set_reads_strings_numbers_and_booleans(item, key, expected):
    value = load_config(None, [item])
    for part in key:
        value = getattr(value, part)
    assert value == expected


def test_set_still_refuses_wrong_types_and_unknown_keys():
    with pytest.raises(ConfigError, match="ctr.train.lr"):
        load_config(None, ["ctr.train.lr=fast"])
    with pytest.raises(ConfigError, match="ctr.lr"):
        load_config(None, ["ctr.lr=0.001"])


def test_the_help_shows_real_keys():
    for example in SET_EXAMPLES:
        load_config("configs/movielens.toml", [example])  # each is a key that exists
    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    assert "ctr.train.lr=" in sub.format_help() and "ctr.lr=" not in sub.format_help()


def test_resolved_config_round_trips_through_toml(tmp_path):
    cfg = load_config("configs/movielens.toml",
                      ['ctr.models=[{name = "mine", blocks = ["id_attention", "simtier"]}]',
                       "data.path=rel/shop"])
    path = write_run_config(tmp_path, cfg)
    assert not list(tmp_path.glob(".*tmp*"))  # written through a temporary file
    again = read_run_config(tmp_path)
    assert to_dict(again) == {**to_dict(cfg), "data": {**to_dict(cfg)["data"],
                                                       "path": str(tmp_path.cwd() / "rel/shop")}}
    assert tomllib.loads(dumps(to_dict(cfg))) == to_dict(cfg)
    assert path.read_text().startswith("# The resolved config")


def test_later_stages_read_the_remembered_config(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="config.toml not found"):
        resolve_run_config("train", None, [], out)
    first = resolve_run_config("data", "configs/movielens.toml", ["ctr.train.seeds=[4]"], out)
    write_run_config(out, first)
    assert (out / RUN_CONFIG).is_file()
    later = resolve_run_config("train", None, [], out)
    assert later.ctr.train.seeds == (4,) and to_dict(later) == to_dict(read_run_config(out))
    # the stage's own section and runtime-only settings may change; the result is what runs
    assert resolve_run_config("train", None, ["ctr.train.lr=0.01"], out).ctr.train.lr == 0.01
    assert resolve_run_config("csft", None, ["pretrain.threads=2"], out).pretrain.threads == 2
    # an explicit config that agrees on the upstream sections is accepted
    cfg = resolve_run_config("train", "configs/movielens.toml", [], out)
    assert cfg.ctr.train.seeds == (0, 1, 2)


def test_a_config_that_disagrees_on_finished_stages_is_one_error(tmp_path):
    out = tmp_path / "run"
    write_run_config(out, load_config("configs/movielens.toml"))
    with pytest.raises(ConfigError, match=r"data.max_seq_len = 10 .* says 50"):
        resolve_run_config("train", None, ["data.max_seq_len=10"], out)
    with pytest.raises(ConfigError, match="encoder.dim"):
        resolve_run_config("index", "configs/movielens.toml", ["encoder.dim=64"], out)
    with pytest.raises(ConfigError, match="ctr.train.seeds"):
        resolve_run_config("eval", None, ["ctr.train.seeds=[9]"], out)
    # data and run start the folder over: anything may change
    assert resolve_run_config("data", None, ["data.max_seq_len=10"], out).data.max_seq_len == 10
