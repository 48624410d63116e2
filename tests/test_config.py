"""Config dataclasses: validation messages, coercion from --set strings, dict round trips."""

import dataclasses

import pytest

from mmviz.config import Config, param
from mmviz.errors import ConfigError, unknown_name
from mmviz.registry import Registry
from mmviz.training.config import OptimConfig, build_run_config, parse_sets


@dataclasses.dataclass(frozen=True)
class ToyConfig(Config):
    alpha: float = param(0.5, "a float", low=0.0, high=10.0)
    count: int = param(3, "an int", low=1, high=5)
    mode: str = param("a", "a choice", choices=("a", "b"))
    flag: bool = param(False, "a flag")
    names: tuple[str, ...] = param(("x",), "names", choices=("x", "y", "z"))


def test_defaults_and_round_trip():
    cfg = ToyConfig()
    assert ToyConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["names"] == ["x"]


def test_out_of_range_message_names_field_value_and_range():
    with pytest.raises(ConfigError) as err:
        ToyConfig(alpha=-1.0)
    assert str(err.value) == "The 'alpha' parameter of ToyConfig must be a float in [0, 10]. Got -1.0 instead."


def test_strings_are_coerced_like_cli_values():
    cfg = ToyConfig.from_dict({"alpha": "2.5", "count": "4", "flag": "true", "names": "y,z"})
    assert (cfg.alpha, cfg.count, cfg.flag, cfg.names) == (2.5, 4, True, ("y", "z"))
    with pytest.raises(ConfigError, match="'count' parameter of ToyConfig must be an integer"):
        ToyConfig.from_dict({"count": "4.5"})


def test_choices_with_did_you_mean():
    with pytest.raises(ConfigError, match=r"one of 'a', 'b'. Got 'c' instead"):
        ToyConfig(mode="c")
    with pytest.raises(ConfigError, match="Got 'w' instead"):
        ToyConfig(names=("x", "w"))


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        ToyConfig.from_dict({"alpah": 1.0}, where="method")
    msg = str(err.value)
    assert "Unknown setting 'method.alpah'" in msg and "Did you mean 'method.alpha'?" in msg
    assert "method.count" in msg


def test_lr_must_be_positive():
    with pytest.raises(ConfigError, match=r"'lr' parameter of OptimConfig must be a float in \(0, 10\]"):
        OptimConfig(lr=0.0)


def test_parse_sets_and_sections():
    assert parse_sets(["optim.lr=0.1", "probes.grad_norm.every_n_steps=5"]) == {
        "optim": {"lr": "0.1"},
        "probes": {"grad_norm": {"every_n_steps": "5"}},
    }
    with pytest.raises(ConfigError, match="Unknown --set key 'optm.lr'. Did you mean 'optim'"):
        parse_sets(["optm.lr=1"])
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        parse_sets(["lr"])


def test_build_run_config_keeps_base_and_resets_on_method_change():
    base = build_run_config("mfeat", "unimodal", ["method.modality=fou", "optim.lr=0.01"]).to_dict()
    same = build_run_config(base=base)
    assert same.method_params.modality == "fou" and same.optim.lr == 0.01
    other = build_run_config(method="baseline", base=base)
    assert other.method == "baseline" and other.optim.lr == 0.01


def test_registry_rejects_duplicates_and_suggests_names():
    reg = Registry("widget")
    reg.register("alpha_beta")(lambda cfg: cfg)
    with pytest.raises(ValueError):
        reg.register("alpha_beta")(lambda cfg: cfg)
    with pytest.raises(ConfigError, match="Unknown widget 'alpha-beta'. Did you mean 'alpha_beta'"):
        reg.get("alpha-beta")
    assert "Available: x, y." in str(unknown_name("thing", "q", ["y", "x"]))
