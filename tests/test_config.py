"""The config schema accepts the shipped configs and names every unknown key."""

import copy

import jsonschema
import pytest
import yaml
from conftest import REPO

from aria.config import ConfigError, load_schema, validate_config


def _load(name):
    return yaml.safe_load((REPO / name).read_text())


def test_schema_is_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(load_schema())


@pytest.mark.parametrize("name", ["config.yaml", "tests/data/config_tiny.yaml"])
def test_shipped_configs_validate(name):
    validate_config(_load(name))


@pytest.mark.parametrize(
    "path, key",
    [
        (("methods", "trak"), "lamda"),
        ((), "experimnet"),
        (("seeds",), "nul"),
        (("homogeneity",), "K"),
    ],
)
def test_unknown_keys_are_named(path, key):
    cfg = copy.deepcopy(_load("config.yaml"))
    node = cfg
    for p in path:
        node = node[p]
    node[key] = 1
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert f"unknown key '{'.'.join([*path, key])}'" in str(err.value)


def test_every_random_choice_has_a_seed():
    seeds = load_schema()["properties"]["seeds"]
    assert set(seeds["required"]) == {"corpus", "train", "queries", "projection", "null_groups"}
    # the LDS seed is needed only when the ground truth is computed
    assert set(seeds["properties"]) == set(seeds["required"]) | {"lds"}
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["lds"]["enabled"] = True
    validate_config(cfg)
    del cfg["seeds"]["lds"]
    with pytest.raises(ConfigError, match="lds.enabled needs seeds.lds"):
        validate_config(cfg)


def test_lds_checks():
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["audio"]["lds"] = {"enabled": True, "stages": ["semantic", "middle"]}
    with pytest.raises(ConfigError, match="unknown stage 'middle'"):
        validate_config(cfg)
    cfg["audio"]["lds"]["stages"] = ["semantic"]
    cfg["audio"]["stages"]["semantic"]["checkpoints"] = ["my.pt"]
    with pytest.raises(ConfigError, match="stage 'semantic' uses your own checkpoints"):
        validate_config(cfg)
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["lds"]["alpha"] = 1.0
    with pytest.raises(ConfigError, match="alpha"):
        validate_config(cfg)


def test_cross_field_checks():
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["homogeneity"]["main_k"] = 7
    with pytest.raises(ConfigError, match="main_k"):
        validate_config(cfg)
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["model"]["n_heads"] = 3
    with pytest.raises(ConfigError, match="divisible"):
        validate_config(cfg)
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["device"] = "gpu"
    with pytest.raises(ConfigError, match="device"):
        validate_config(cfg)
