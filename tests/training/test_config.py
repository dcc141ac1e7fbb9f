from __future__ import annotations

import json

import pytest

from prodsearch.errors import ConfigError
from prodsearch.training.config import TrainConfig, field_help, load_config


def test_every_field_has_help():
    helps = field_help()
    assert set(helps) == set(TrainConfig.__dataclass_fields__)
    assert all(h["help"] for h in helps.values())


def test_file_and_overrides(tmp_path):
    (tmp_path / "c.toml").write_text('[train]\nepochs = 3\nlr = 0.01\nfreeze = "top"\n')
    (tmp_path / "c.yaml").write_text("epochs: 5\nhead: linear\n")
    (tmp_path / "c.json").write_text(json.dumps({"embed-dim": 64}))
    cfg = load_config(tmp_path / "c.toml", {"lr": "0.5", "batch_size": None, "image_augment": "false"})
    assert (cfg.epochs, cfg.lr, cfg.freeze, cfg.batch_size, cfg.image_augment) == (3, 0.5, "top", 256, False)
    assert load_config(tmp_path / "c.yaml").head == "linear"
    assert load_config(tmp_path / "c.json").embed_dim == 64
    assert load_config(None, {"max_products": "none"}).max_products is None


def test_unknown_and_out_of_range_fields_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown .*\['bogus'\]"):
        load_config(None, {"bogus": 1})
    with pytest.raises(ConfigError) as err:
        load_config(None, {"embed_dim": 1, "freeze": "half", "lr": 2.0})
    msg = str(err.value)
    assert "embed_dim=1" in msg and "freeze='half'" in msg and "lr=2.0" in msg
    with pytest.raises(ConfigError, match="epochs.*expects int.*'many'"):
        load_config(None, {"epochs": "many"})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "bad.yaml")
