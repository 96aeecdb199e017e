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
    assert set(seeds["properties"]) == set(seeds["required"]) | {"lds", "unlearning"}
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["lds"]["enabled"] = True
    validate_config(cfg)
    del cfg["seeds"]["lds"]
    with pytest.raises(ConfigError, match="lds.enabled needs seeds.lds"):
        validate_config(cfg)


def test_unlearning_checks():
    """Unlearning needs its seed; the self-influence grid needs a stage that runs unlearning."""
    cfg = copy.deepcopy(_load("config.yaml"))
    del cfg["seeds"]["unlearning"]
    with pytest.raises(ConfigError, match=r"unlearning runs \(stages \['symbolic', 'semantic'.*needs seeds.unlearning"):
        validate_config(cfg)
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["selfinfluence"]["stages"] = ["symbolic", "middle"]
    with pytest.raises(ConfigError, match="selfinfluence.stages: unknown stage 'middle'"):
        validate_config(cfg)
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["methods"]["run"].remove("unlearning")
    cfg["selfinfluence"]["stages"] = ["symbolic"]
    with pytest.raises(ConfigError, match=r"none of them runs unlearning \(those that do: \['semantic'"):
        validate_config(cfg)
    for s in cfg["audio"]["stages"].values():
        s["methods"]["run"].remove("unlearning")
    with pytest.raises(ConfigError, match="no stage runs unlearning"):
        validate_config(cfg)
    with pytest.raises(ConfigError, match="steps"):
        validate_config({**_load("config.yaml"), "selfinfluence": {"grid": {"steps": [5]}}})


def test_lds_checks():
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["audio"]["lds"] = {"enabled": True, "stages": ["semantic", "middle"]}
    with pytest.raises(ConfigError, match="unknown stage 'middle'"):
        validate_config(cfg)
    cfg["audio"]["lds"]["stages"] = ["semantic"]
    cfg["audio"]["stages"]["semantic"]["checkpoints"] = ["my.pt"]
    with pytest.raises(ConfigError, match="stage 'semantic' uses your own checkpoints"):
        validate_config(cfg)


@pytest.mark.parametrize(
    "path, value, match",
    [
        (["homogeneity", "main_k"], 7, "main_k"),
        (["model", "n_heads"], 3, "divisible"),
        (["device"], "gpu", "device"),
        (["lds", "alpha"], 1.0, "alpha"),
    ],
)
def test_cross_field_checks(path, value, match):
    """The shipped config with the one value at ``path`` changed is rejected, naming ``match``."""
    cfg = copy.deepcopy(_load("config.yaml"))
    *parents, key = path
    section = cfg
    for k in parents:
        section = section[k]
    section[key] = value
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)


def test_audio_only_config_sections(tmp_path):
    """An audio-only config (issue 28): no top-level experiment needed; a missing audio section
    is said in so many words (it used to end in a bare KeyError: 'audio')."""
    demo = _load("config.yaml")
    shared = {k: copy.deepcopy(demo[k]) for k in ("device", "seeds", "homogeneity")}
    man = tmp_path / "m.csv"
    rows = [f"t{i},t{i}.wav,g,{'eval' if i < 3 else 'train'}" for i in range(60)]
    man.write_text("track_id,path,genre,split\n" + "\n".join(rows) + "\n")
    audio = copy.deepcopy(demo["audio"])
    audio["corpus"] = {"kind": "audio_folder", "audio_folder": {"root": str(tmp_path), "manifest": str(man)}}
    cfg = {"experiments": ["audio"], **shared, "audio": audio}
    assert validate_config(cfg) is cfg
    with pytest.raises(ConfigError) as info:
        validate_config({"experiments": ["audio"], **shared}, source="config my.yaml")
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid config my.yaml:"
    assert lines[1:] == [
        "  - experiments lists 'audio' but the config has no audio section: add 'audio:' with the audio "
        "experiment's settings (start from config.yaml's audio block; docs/audio.md)"
    ]
    # the audio demo renders the symbolic demo corpus into results/<experiment>/: that needs the name
    cfg = {"experiments": ["audio"], **shared, "corpus": demo["corpus"], "audio": copy.deepcopy(demo["audio"])}
    with pytest.raises(ConfigError, match=r"renders the symbolic demo corpus into results/<experiment>/corpus"):
        validate_config(cfg)
    # the symbolic experiment's sections are asked for together, with the way out
    with pytest.raises(ConfigError, match=r"key\(s\) 'experiment', 'corpus', .*set experiments: \[audio\]"):
        validate_config({**shared, "audio": audio})


def test_k_against_the_largest_possible_pool(tmp_path):
    """Every K is checked against the pool the config allows before any job runs."""
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["homogeneity"]["ks"] = [5, 10, 200]
    with pytest.raises(ConfigError, match=r"K = 200 exceeds the 120 training tracks of audio.corpus.demo.n_train"):
        validate_config(cfg)
    man = tmp_path / "m.csv"
    man.write_text(
        "track_id,path,genre,split\n" + "".join(f"t{i},t{i}.wav,g,{'train' if i < 7 else 'eval'}\n" for i in range(9))
    )
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["audio"]["corpus"] = {"kind": "audio_folder", "audio_folder": {"root": str(tmp_path), "manifest": str(man)}}
    with pytest.raises(ConfigError, match=r"K = 10 exceeds the 7 training tracks listed in .*m\.csv;"):
        validate_config(cfg)
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["homogeneity"]["unit"] = "track"
    cfg["homogeneity"]["ks"] = [10, 400]
    with pytest.raises(ConfigError, match=r"K = 400 exceeds the 320 training pieces"):
        validate_config(cfg)


def test_pool_check():
    from aria.evaluation.accounting import pool_check

    r = pool_check(28, 5, [5, 10, 50], min_queries=10, pool="tracks", fix="lower K")
    assert r["errors"] == ["K = [50] (homogeneity.ks) exceeds the 28 tracks; lower K"]
    assert r["warnings"] == [
        "only 5 queries (analysis.verdict.min_queries = 10): only a collapse beyond doubt gets a verdict, "
        "and Pos/Sig move in steps of 20%"
    ]
    r = pool_check(28, 12, [5, 20], min_queries=10, pool="tracks", fix="")
    assert not r["errors"] and "K = 20 is more than half of the 28 tracks" in r["warnings"][0]
    assert pool_check(100, 0, [5], min_queries=1, pool="x", fix="")["errors"][0].startswith("no query survives")
    # one query: refused here, not minutes later in the diagnostics (rho_bar needs two); says what to do
    r = pool_check(100, 1, [5], min_queries=10, pool="x", fix="", add_queries="add eval tracks")
    assert len(r["errors"]) == 1 and r["errors"][0].startswith("only 1 query survives")
    assert r["errors"][0].endswith("; add eval tracks") and not r["warnings"]
    assert not pool_check(100, 2, [5], min_queries=2, pool="x", fix="")["errors"]


def test_covariance_pass_follows_the_settings():
    """The workflow plans the KFAC pass exactly when the factored projection reads it: LoGra's
    KFAC initialisation (its default), FactGraSS's magnitude mask (not its default)."""
    from aria import registry

    logra_m, fg_m = registry.method("logra"), registry.method("factgrass")
    assert logra_m.needs_covariance({}) and logra_m.needs_covariance({"init": "kfac", "k_in": 8})
    assert not logra_m.needs_covariance({"init": "random"})
    assert not fg_m.needs_covariance({}) and not fg_m.needs_covariance({"mask": "random"})
    assert fg_m.needs_covariance({"mask": "magnitude"})
    assert not any(m.needs_covariance({}) for m in registry.methods() if m.reads != "factored")
    # the projections themselves: without a covariance they fail exactly when it is needed
    import pytest
    from torch import nn

    from aria.attribution.factgrass import factgrass_masks
    from aria.attribution.logra import logra_projections

    layers = {"a": nn.Linear(6, 5)}
    cases = [(logra_m, {"init": i}, logra_projections, dict(k_in=2, k_out=2)) for i in ("kfac", "random")]
    cases += [(fg_m, {"mask": m}, factgrass_masks, dict(k=4, blowup=4)) for m in ("random", "magnitude")]
    for m, setting, build, kw in cases:
        if m.needs_covariance(setting):
            with pytest.raises(ValueError, match="needs the covariance"):
                build(layers, covariance=None, **setting, **kw)
        else:
            assert build(layers, covariance=None, **setting, **kw).keys() == {"a"}


def test_projection_type_default_is_the_registrys_everywhere():
    """The schema documents the type a config without ``projection.type`` gets."""
    from aria import registry

    found = []

    def walk(node, path):
        if isinstance(node, dict):
            if path and path[-1] == "type" and node.get("enum") == list(registry.PROJECTION_TYPES):
                found.append(node.get("default"))
            for k, v in node.items():
                walk(v, (*path, k))

    walk(load_schema(), ())
    assert len(found) == 4 and set(found) == {registry.DEFAULT_PROJECTION}  # symbolic + 3 audio stages
    # (the jobs' side: tests/workflow/test_workflow.py::test_score_store_matches_features)


def test_old_damping_keys_say_how_to_write_them():
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["methods"]["trak"] = {"lambda": 0.01, "ensemble": 3}
    cfg["methods"]["logra"]["alpha"] = 0.2
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    msg = str(e.value)
    assert "{rule: absolute, lambda: 0.01} for the same numbers" in msg
    assert "'damping': {rule: relative, alpha: 0.2} (the same numbers)" in msg


def test_damping_rules_are_exclusive():
    cfg = copy.deepcopy(_load("config.yaml"))
    cfg["methods"]["trak"]["damping"] = {"rule": "relative", "lambda": 0.01}
    with pytest.raises(ConfigError, match="damping"):
        validate_config(cfg)


def test_damping_grid_lists_are_alternatives():
    from aria.config import damping_points, point_damping

    pts = damping_points({"k": [256, 512], "alpha": [1, 10], "lambda": [0.01]})
    assert len(pts) == 2 * 3
    assert {"k": 256, "lambda": 0.01} in pts and {"k": 512, "alpha": 10} in pts
    assert list(pts[0]) == ["k", "alpha"]  # the grid's key order (the point's file name)
    assert point_damping({"alpha": 3}) == {"rule": "relative", "alpha": 3}
    assert point_damping({"k": 3}) is None


def merge(a, b):
    """Config files merged as Snakemake merges them: key by key, recursively."""
    return {
        k: merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v for k, v in {**a, **b}.items()
    }


def test_the_planted_benchmark_overlay_validates_and_fills_its_defaults():
    """profiles/benchmark/planted.yaml over config.yaml (merged as snakemake does, key by key) is a
    valid config; queries.planted's defaults are the schema's; an unknown aspect is named; planted
    audio queries need the rendered demo corpus."""
    from aria.config import PLANTED_DEFAULTS, planted_settings

    cfg = merge(_load("config.yaml"), _load("profiles/benchmark/planted.yaml"))
    validate_config(cfg)
    assert planted_settings(cfg["queries"]) == cfg["queries"]["planted"]
    assert planted_settings(_load("config.yaml")["queries"]) is None  # generated queries
    props = load_schema()["properties"]["queries"]["properties"]["planted"]["properties"]
    assert PLANTED_DEFAULTS == {k: v["default"] for k, v in props.items()}
    assert planted_settings({"kind": "planted"}) == PLANTED_DEFAULTS
    audio_folder = merge(
        cfg, {"audio": {"corpus": {"kind": "audio_folder", "audio_folder": {"root": "x", "manifest": "x.csv"}}}}
    )
    with pytest.raises(ConfigError, match="queries.kind 'planted' renders the plants to audio"):
        validate_config(audio_folder)
    validate_config({**audio_folder, "experiments": ["symbolic"]})  # symbolic alone: fine
    cfg["queries"]["planted"]["aspects"] = ["melody", "timbre"]
    with pytest.raises(ConfigError, match="queries.planted.aspects"):
        validate_config(cfg)


def test_the_second_corpus_overlay_replaces_the_demo_collections():
    """profiles/corpus2/validate.yaml: the demo's collections at 0 are left out, the second corpus's
    three are taken (eval quotas spread over those three alone); all at 0 is refused."""
    from aria.symbolic.corpus import demo_collections, eval_quotas

    cfg = merge(_load("config.yaml"), _load("profiles/corpus2/validate.yaml"))
    validate_config(cfg)
    cols = demo_collections(cfg["corpus"]["demo"])
    assert cols == {"airds_airs": 140, "essen_folksong": 140, "trecento": 80}
    assert eval_quotas(cols, 40) == {"airds_airs": 14, "essen_folksong": 13, "trecento": 13}
    assert cfg["queries"]["kind"] == "planted" and cfg["lds"]["enabled"]
    none = merge(cfg, {"corpus": {"demo": {"collections": dict.fromkeys(cols, 0)}}})
    with pytest.raises(ConfigError, match="every collection is set to 0"):
        validate_config(none)


def test_the_dattri_overlay_and_what_it_fixes():
    """`make table1`'s overlay validates; what the benchmark fixes is refused with the reason."""
    from aria.workflow.plan import symbolic_model, symbolic_pretrained

    cfg = merge(_load("config.yaml"), _load("profiles/dattri/table1.yaml"))
    validate_config(cfg)
    for key, value, match in [
        (("segments", "block_tokens"), 256, "block_tokens must be 257"),
        (("methods", "tracin"), {"checkpoints": 3}, "TracIn has one checkpoint"),
        (("model", "checkpoints"), ["m.pt"], "leave model.checkpoints out"),
        (("tokenizer",), {"kind": "miditok", "path": "profiles/examples/remi_tokenizer.json"}, "leave tokenizer out"),
    ]:
        bad = copy.deepcopy(cfg)
        node = bad
        for k in key[:-1]:
            node = node[k]
        node[key[-1]] = value
        if key == ("methods", "tracin"):
            bad["methods"]["run"] = ["tracin"]
        with pytest.raises(ConfigError, match=match):
            validate_config(bad)
    # model.kind hf: the training settings leave the sources out; path is the members' folders
    assert symbolic_model({"kind": "hf", "d_model": 8, "path": "x"}) == {"d_model": 8, "architecture": "gpt2"}
    assert symbolic_pretrained({"kind": "hf", "path": "a"}) == ["a"]
    assert symbolic_pretrained({"checkpoints": ["c.pt"], "path": ["a", "b"]}) == ["c.pt", "a", "b"]


def test_the_hf_miditok_example_validates_and_bad_sources_are_named(tmp_path):
    cfg = _load("profiles/examples/hf_miditok.yaml")
    validate_config(cfg)
    bad = copy.deepcopy(cfg)
    bad["tokenizer"]["path"] = str(tmp_path / "none.json")
    with pytest.raises(ConfigError, match="none.json does not exist"):
        validate_config(bad)
    bad = copy.deepcopy(cfg)
    bad["model"]["path"] = str(tmp_path)
    with pytest.raises(ConfigError, match="is not a save_pretrained folder"):
        validate_config(bad)
    bad["model"].pop("kind")
    with pytest.raises(ConfigError, match="it needs model.kind 'hf'"):
        validate_config(bad)
