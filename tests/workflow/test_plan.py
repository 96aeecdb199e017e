"""The workflow's plan (aria/workflow/plan.py) without Snakemake: rows, job parameters and rerun scope.

Each job reruns when its parameter string changes (Snakemake's params trigger), so "changing one
method's parameter reruns that method's jobs and nothing else" is a property of the plan's getters:
checked here on the demo, tiny and a user's config in milliseconds. tests/workflow/test_workflow.py
checks the same scope through real ``snakemake -n`` runs.
"""

from __future__ import annotations

import copy
import itertools
import json
import shlex
from pathlib import Path
from types import SimpleNamespace as W

import pytest
import yaml

from aria import registry
from aria.config import validate_config
from aria.workflow.plan import make_plan

REPO = Path(__file__).resolve().parents[2]


def _config(name):
    if name == "demo":
        return yaml.safe_load((REPO / "config.yaml").read_text())
    tiny = yaml.safe_load((REPO / "tests" / "data" / "config_tiny.yaml").read_text())
    if name == "tiny":
        return tiny
    # a user's run: symbolic only, their own MIDI folder and a score matrix computed elsewhere
    user = copy.deepcopy(tiny)
    user.pop("audio")
    user["experiments"] = ["symbolic"]
    user["experiment"] = "mine"
    user["corpus"] = {"kind": "midi_folder", "midi_folder": {"manifest": "my/manifest.csv", "root": "my/midi"}}
    user["external_scores"] = {"theirs": {"path": "theirs.npy", "rows": "rows.txt", "cols": "cols.txt"}}
    return user


CONFIGS = ["demo", "tiny", "user"]


@pytest.fixture(autouse=True)
def _user_files(tmp_path, monkeypatch):
    """The user's matrix and id lists exist (the config check looks), in a folder of the test's own."""
    monkeypatch.chdir(tmp_path)
    for f in ("theirs.npy", "rows.txt", "cols.txt"):
        (tmp_path / f).write_text("")


def plan_of(cfg):
    return make_plan(validate_config(copy.deepcopy(cfg)))


def every_job_params(plan):
    """``{(job, wildcards): params}`` of the per-stage jobs, from the plan's one getter ``job_settings``."""
    out = {}
    for (exp, stage), cfg in plan.STAGES.items():
        n_c, n_m = plan.n_checkpoints(cfg), plan.ensemble_size(cfg)
        for m in range(max(n_m, 2)):
            out["model", exp, stage, m] = plan.job_settings("train", W(exp=exp, stage=stage, m=m))
            for c in range(1, n_c + 1):
                out["projection", exp, stage, m, c] = plan.job_settings("project", W(exp=exp, stage=stage, c=c))
        for method in cfg["methods"]["run"]:
            w = W(exp=exp, stage=stage, method=method)
            if registry.method(method).reads != "model":
                out["score", exp, stage, method] = plan.job_settings("score", w)
            out["tracklevel", exp, stage, method] = plan.job_settings("tracklevel", w)
            out["homogeneity", exp, stage, method] = plan.job_settings("homogeneity", w)
            if registry.method(method).reads == "factored":
                out["factored", exp, stage, method] = plan.job_settings("project-factored", w)
        if "unlearning" in cfg["methods"]["run"]:
            w = W(exp=exp, stage=stage)
            for chunk in range(plan.unlearning_chunks(w)):
                out["unlearning", exp, stage, chunk] = plan.job_settings(
                    "unlearning-scores", W(exp=exp, stage=stage, chunk=chunk)
                )
        if cfg["lds"]:
            out["lds_retrain", exp, stage] = plan.job_settings("lds-retrain", W(exp=exp, stage=stage, subset=0))
    return out


def changed(cfg, edit):
    before = every_job_params(plan_of(cfg))
    cfg = copy.deepcopy(cfg)
    edit(cfg)
    after = every_job_params(plan_of(cfg))
    assert set(before) == set(after)
    return {k for k in before if before[k] != after[k]}


@pytest.mark.parametrize("name", CONFIGS)
def test_rows_follow_config_and_registry(name):
    cfg = _config(name)
    plan = plan_of(cfg)
    ext = [n for n, e in cfg.get("external_scores", {}).items() if e.get("experiment", "symbolic") == "symbolic"]
    assert plan.SYMBOLIC_ROWS == cfg["methods"]["run"] + ext
    if "audio" not in cfg:
        assert plan.AUDIO_ROWS == [] and not plan.AUDIO
        return
    a = cfg["audio"]
    want = [
        f"{m.name}/{s}"
        for m in registry.stage_methods()
        for s in registry.audio_stages()
        if m.name in a["stages"][s]["methods"]["run"]
    ]
    want += [f"{e}{v}/baseline" for e in a.get("baselines", []) for v in registry.EMBEDDING_MODES]
    assert plan.AUDIO_ROWS == want
    # the model of every audio stage sees the tokenizer's vocabulary and the stage's window
    for s in registry.audio_stages():
        stage = plan.STAGES[(a["experiment"], s)]
        assert stage["model"]["vocab_size"] == plan.AUDIO_VOCAB.size
        assert stage["seq_len"] == plan.AUDIO_VOCAB.seq_len(s)


@pytest.mark.parametrize("name", CONFIGS)
def test_a_methods_damping_reruns_that_method_only(name):
    cfg = _config(name)
    exp = cfg["experiment"]

    def edit(c):
        c["methods"]["trak"]["damping"] = {"rule": "relative", "alpha": 123.0}

    assert changed(cfg, edit) == {("score", exp, "symbolic", "trak")}


@pytest.mark.parametrize("name", CONFIGS)
def test_projection_k_reruns_projections_not_models(name):
    cfg = _config(name)
    exp = cfg["experiment"]

    def edit(c):
        c["projection"]["k"] = 8

    got = changed(cfg, edit)
    assert got and all(k[0] == "projection" and k[1:3] == (exp, "symbolic") for k in got)


@pytest.mark.parametrize("name", CONFIGS)
def test_memory_only_settings_rerun_nothing(name):
    cfg = _config(name)

    def edit(c):
        c["projection"]["cache_mib"] = 7  # memory for a Gaussian P's blocks: a resource, not a parameter

    assert changed(cfg, edit) == set()


@pytest.mark.parametrize("name", ["demo", "tiny"])
def test_lds_settings_rerun_the_retraining_only(name):
    cfg = _config(name)
    cfg.setdefault("lds", {})["enabled"] = True

    def edit(c):
        c["lds"]["alpha"] = 0.25

    assert changed(cfg, edit) == {("lds_retrain", cfg["experiment"], "symbolic")}


def test_params_hold_exactly_their_settings():
    """A job's --params is its settings dict, JSON with sorted keys (what Snakemake compares)."""
    plan = plan_of(_config("tiny"))
    w = W(exp="tiny", stage="symbolic", method="trak")
    settings = plan.job_settings("score", w)
    assert type(settings).__name__ == "ScoreSettings" and settings == plan.method_run_settings(w)
    assert set(settings) == {"row_chunk", *registry.method("trak").run_params}
    assert settings["damping"] == {"rule": "absolute", "lambda": 0.01}
    cmd = plan.aria_job("score", wildcards=["method"], extra={"engine": "numpy"})["job"](
        w, _Files(features=["a b.zarr", "c.zarr"]), _Files(out="s.zarr")
    )
    assert shlex.split(cmd) == [
        "score", "--features", "a b.zarr", "c.zarr", "--out", "s.zarr",
        "--params", json.dumps(dict(settings), sort_keys=True), "--method", "trak", "--engine", "numpy",
    ]  # fmt: skip


class _Files(dict):
    """A rule's named inputs or outputs, as Snakemake passes them to a params function."""


def test_command_line_follows_the_job_dataclass():
    """Lists, empty lists (bare only where nargs="*"), flags, JSON, and an option the job lacks."""
    from aria.workflow.plan import command_line

    cmd = command_line(
        "report", dict(diagnostics=["d1", "d2"], homogeneity=["h"], sensitivity=[], lds=[], cost={"b": 1, "a": 2})
    )
    assert shlex.split(cmd) == [
        "report",
        "--diagnostics",
        "d1",
        "d2",
        "--homogeneity",
        "h",
        "--sensitivity",
        "--cost",
        '{"a": 2, "b": 1}',
    ]
    with pytest.raises(ValueError, match=r"aria null: the rule names \['segments'\]"):
        command_line("null", dict(features="f", segments="s"))
    # the parsed command line gives back the values (the CLI built from the same dataclass)
    from aria.cli import build_parser

    ns = build_parser().parse_args(
        shlex.split(command_line("null", dict(features="f x.npz", out="n.json", params={"ks": [3]})))
    )
    assert (ns.features, ns.out, json.loads(ns.params)) == ("f x.npz", "n.json", {"ks": [3]})


@pytest.mark.parametrize("name", CONFIGS)
def test_sweep_grid_is_the_product_of_its_lists(name):
    cfg = _config(name)
    plan = plan_of(cfg)
    grid = (cfg.get("sensitivity") or {}).get("grid") or {}
    for method, lists in grid.items():
        damping = [v for k in ("alpha", "lambda") for v in lists.get(k, [])]
        others = [lists[k] for k in lists if k not in ("alpha", "lambda")]
        n = len(list(itertools.product(*others))) * max(len(damping), 1)
        assert len(plan.sweep_points(method)) == n, method


def test_settings_param_is_what_the_params_trigger_sees():
    """Snakemake's params trigger ignores params that read inputs or outputs (the ``job`` command
    line), so each rule's ``settings`` param is a function of the wildcards alone, and it changes
    exactly when the job's settings or fixed options change."""
    import inspect

    cfg = _config("tiny")
    w = W(exp="tiny", stage="symbolic", method="trak")
    params = plan_of(cfg).aria_job("score", wildcards=["method"], extra={"engine": "numpy"})
    assert list(inspect.signature(params["settings"]).parameters) == ["w"]
    before = params["settings"](w)
    cfg["methods"]["trak"]["damping"] = {"rule": "absolute", "lambda": 0.5}
    after = plan_of(cfg).aria_job("score", wildcards=["method"], extra={"engine": "numpy"})["settings"](w)
    assert json.loads(before)["settings"]["damping"]["lambda"] == 0.01
    assert json.loads(after)["settings"]["damping"]["lambda"] == 0.5
    assert json.loads(after)["engine"] == "numpy" and json.loads(after)["method"] == "trak"


def test_every_job_with_settings_has_them_in_the_plan():
    """The plan's settings table and the jobs' settings dataclasses name the same jobs, and the plan's
    settings of every per-stage job of the demo, tiny and user configs pass their job's check."""
    from aria.workflow.jobs import all_jobs
    from aria.workflow.jobs.base import Settings

    plan = plan_of(_config("tiny"))
    assert set(plan.JOB_SETTINGS) == {n for n, j in all_jobs().items() if j.settings is not None}
    for name in CONFIGS:
        for key, settings in every_job_params(plan_of(_config(name))).items():
            assert isinstance(settings, Settings), key


def test_stage_inputs_name_the_stage_files():
    """A rule's stage inputs: the job options model, segments and queries, at member {m} or a fixed one."""
    plan = plan_of(_config("tiny"))
    assert plan.stage_inputs("model", "segments", m=0) == {
        "model": "results/{exp}/models/{stage}/m0.pt",
        "segments": "results/{exp}/segments/{stage}/train.npz",
    }
    assert plan.stage_inputs("queries", "model") == {
        "queries": "results/{exp}/queries/{stage}/queries.npz",
        "model": "results/{exp}/models/{stage}/m{m}.pt",
    }


def test_one_of_matches_exactly_the_names():
    """A wildcard constraint from names: each name whole (a dot is no wildcard), nothing when empty."""
    import re

    from aria.workflow.plan import one_of

    rx = re.compile(f"(?:{one_of(['demo.v1', 'tiny'])})")
    assert rx.fullmatch("demo.v1") and rx.fullmatch("tiny") and not rx.fullmatch("demoXv1")
    assert not re.fullmatch(f"(?:{one_of([])})", "anything")


def test_the_architecture_retrains_the_symbolic_models_only():
    """model.architecture (aria.models.build) is a setting of the symbolic stage's training and LDS
    retraining, and of nothing else: all that reads a model reruns through its file. Left out, it
    is no setting at all, so configs written before it rerun nothing."""
    cfg = _config("tiny")
    exp = cfg["experiment"]

    def edit(c):
        c["model"]["architecture"] = "gpt2"

    got = changed(cfg, edit)
    assert {k[0] for k in got} == {"model", "lds_retrain"} and all(k[1:3] == (exp, "symbolic") for k in got)
    after = copy.deepcopy(cfg)
    edit(after)
    plan = plan_of(after)
    assert plan.job_settings("train", W(exp=exp, stage="symbolic", m=0))["architecture"] == "gpt2"
    assert plan.job_settings("lds-retrain", W(exp=exp, stage="symbolic", subset=0))["model"]["architecture"] == "gpt2"
    assert "architecture" not in plan_of(cfg).job_settings("train", W(exp=exp, stage="symbolic", m=0))
    bad = copy.deepcopy(cfg)
    bad["model"]["architecture"] = "mamba"
    with pytest.raises(Exception, match="architecture"):
        plan_of(bad)


def _diffusion_config():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    over = yaml.safe_load((REPO / "profiles" / "diffusion" / "demo.yaml").read_text())
    return {**cfg, **over}


def test_diffusion_grid_is_the_product_of_its_lists_plus_the_setting():
    """The self-influence grid: every combination of the four lists, the unlearning setting marked
    chosen once (added when the lists leave it out); each point's job gets its own point and the Fisher
    side its mask needs."""
    cfg = _diffusion_config()
    g = cfg["diffusion"]["selfinfluence"]["grid"]
    plan = plan_of(cfg)
    pts = plan.diffusion_points()
    combos = {(p["lr"], p["steps"], p["group"], p["mask"]) for p in pts.values()}
    assert combos == set(itertools.product(g["lr"], g["steps"], g["group"], g["mask"]))
    assert [p for p in pts.values() if p["chosen"]] == [dict(lr=1e-6, steps=1, group="all", mask="mixed", chosen=True)]
    for name, p in pts.items():
        s = plan.job_settings("diffusion-selfinfluence", W(point=name))
        assert (s["lr"], s["steps"], s["group"], s["mask"]) == (p["lr"], p["steps"], p["group"], p["mask"])
        assert plan.diffusion_fisher(p["mask"]).endswith(
            "fisher_masked.pt" if p["mask"] == "both" else "fisher_full.pt"
        )
    cfg["diffusion"]["selfinfluence"]["grid"] = {"lr": [1e-5]}  # the setting is not in the grid: added
    pts = plan_of(cfg).diffusion_points()
    assert len(pts) == 2 and sum(p["chosen"] for p in pts.values()) == 1


def test_diffusion_replica_and_adopted_checkpoint():
    """The noise diagnostic's second DiT trains with seeds.train + r and is compared on the DiT's own
    rows only; an adopted checkpoint (diffusion.model.pretrained) reaches the training job as such, not
    as a model size, and has no replica (there is no second training run)."""
    cfg = _diffusion_config()
    plan = plan_of(cfg)
    seed = cfg["seeds"]["train"]
    assert plan.job_settings("diffusion-train", W())["seed"] == seed
    assert plan.job_settings("diffusion-train", W(r="1"))["seed"] == seed + 1
    assert plan.diffusion_replica_pair("unlearning/dit") == [
        plan.diff("scores/unlearning.zarr"),
        plan.diff("replica1/scores/unlearning.zarr"),
    ]
    assert plan.diffusion_replica_pair("aisfx/baseline") == []
    assert plan.diffusion_fisher("both", replica="1") == plan.diff("replica1/unlearning/fisher_masked.pt")
    cfg["diffusion"]["model"] = {**cfg["diffusion"]["model"], "pretrained": "pipe/transformer"}
    plan = plan_of(cfg)
    s = plan.job_settings("diffusion-train", W())
    assert s["pretrained"] == "pipe/transformer" and "pretrained" not in s["sizes"]
    assert plan.diffusion_replica_pair("unlearning/dit") == [] and "adopted" in plan.DIFF_REPLICA_NOTE


def test_diffusion_settings_change_only_their_jobs():
    """A diffusion key reaches exactly the jobs that read it: Grad-Cos's k only the gradient job, the
    unlearning lr the chunks (and the chosen grid point's name), the encoder the embedding job."""
    base = _diffusion_config()
    names = ["diffusion-latents", "diffusion-train", "diffusion-queries", "diffusion-gradients", "diffusion-embed"]
    names += ["diffusion-baselines", "diffusion-report"]

    def settings(cfg):
        plan = plan_of(cfg)
        out = {n: plan.job_settings(n, W()).to_dict() for n in names}
        out["diffusion-unlearning"] = plan.job_settings("diffusion-unlearning", W(chunk="0")).to_dict()
        out["diffusion-fisher"] = plan.job_settings("diffusion-fisher", W(side="full")).to_dict()
        return out

    ref = settings(base)
    for key, value, changed in (
        (("gradcos", "k"), 64, {"diffusion-gradients"}),
        (("unlearning", "lr"), 1e-5, {"diffusion-unlearning"}),
        (("unlearning", "timesteps"), 4, {"diffusion-unlearning", "diffusion-fisher", "diffusion-gradients"}),
        (("embedding", "window_s"), 3.0, {"diffusion-baselines"}),
        (("model", "steps"), 10, {"diffusion-train"}),
    ):
        cfg = copy.deepcopy(base)
        cfg["diffusion"][key[0]][key[1]] = value
        new = settings(cfg)
        assert {n for n in ref if ref[n] != new[n]} == changed, key
