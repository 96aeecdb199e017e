"""Extending the workflow without touching Aria: a plugin method and a user's own score matrix.

Both run on a copy of the tiny workflow's finished results, so only the new jobs run:
- ``toy`` (tests/plugins/toy_method.py) is one registry entry plus its module; it must flow
  through scoring, diagnostics, homogeneity and the report;
- a TRAK score tensor computed with dattri's ``TRAKAttributor`` on the tiny run's model 0,
  saved with ``torch.save``, comes in as ``external_scores`` and must get the diagnostics of
  the same matrix computed directly, and its report row.
"""

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, run_snakemake, shared_run

from aria.io.stores import open_scores, read_features
from aria.io.tables import read_npz

PLUGINS = str(REPO / "tests" / "plugins")


def brute_force(S):
    S = np.asarray(S, np.float64)
    sv = np.linalg.svd(S, compute_uv=False) ** 2
    C = np.corrcoef(S.T)
    iu = np.triu_indices(S.shape[1], 1)
    return {
        "r1": sv[0] / sv.sum(),
        "r2_5": sv[1:5].sum() / sv.sum(),
        "c_bar": float(np.mean(S.sum(0) ** 2 / (S.shape[0] * (S**2).sum(0)))),
        "rho_bar": float(np.abs(C[iu]).mean()),
    }


def dattri_trak_scores(res, k=16):
    """dattri TRAKAttributor on the tiny run's model 0: train segments x queries, (N, Q)."""
    pytest.importorskip("dattri")
    from dattri.algorithm.trak import TRAKAttributor
    from dattri.task import AttributionTask
    from torch.utils.data import DataLoader, TensorDataset

    from aria.io.checkpoints import load_model
    from aria.models.transformer import per_example_loss

    model, _ = load_model(res / "models" / "symbolic" / "m0.pt")
    model.eval()
    tr, qu = (
        read_npz(res / "segments" / "symbolic" / "train.npz"),
        read_npz(res / "queries" / "symbolic" / "queries.npz"),
    )

    def loss(params, batch):
        t, m, lm = batch
        logits = torch.func.functional_call(model, params, (t[None],))
        return per_example_loss(logits, t[None], m[None], lm[None])[0]

    task = AttributionTask(loss_func=loss, model=model, checkpoints=[model.state_dict()])
    proj = {"proj_type": "normal", "proj_dim": k, "proj_max_batch_size": 32, "proj_seed": 0, "device": "cpu"}
    att = TRAKAttributor(
        task=task,
        correct_probability_func=lambda params, batch: 0.0 * loss(params, batch),
        device="cpu",
        projector_kwargs=proj,
        regularization=1e-3,
    )

    def loader(d, lm):
        ds = TensorDataset(torch.as_tensor(d["tokens"]), torch.as_tensor(d["mask"]), torch.as_tensor(lm))
        return DataLoader(ds, batch_size=16, shuffle=False)

    att.cache(loader(tr, np.ones_like(tr["mask"])))
    S = att.attribute(loader(qu, qu["loss_mask"])).detach()
    assert tuple(S.shape) == (len(tr["segment_ids"]), len(qu["query_ids"]))
    return S, tr["segment_ids"], qu["query_ids"]


def _build_extended(tiny_run, wd):
    # copy2 keeps mtimes: nothing stale; Snakemake's logs and locks are left behind (another test
    # worker's dry run in the shared tiny run may be adding and removing them right now)
    skip = shutil.ignore_patterns("log", "locks", ".changed-*")
    shutil.copytree(tiny_run, wd, symlinks=True, dirs_exist_ok=True, ignore=skip)
    res = wd / "results" / "tiny"
    S, rows, cols = dattri_trak_scores(res)
    torch.save(S, wd / "dattri_trak.pt")
    (wd / "rows.txt").write_text("\n".join(rows) + "\n")
    (wd / "cols.txt").write_text("\n".join(cols) + "\n")
    cfg = yaml.safe_load((REPO / "tests" / "data" / "config_tiny.yaml").read_text())
    cfg["experiments"] = ["symbolic"]
    cfg["plugins"] = ["toy_method"]
    cfg["methods"]["run"].append("toy")
    cfg["methods"]["toy"] = {"scale": 2.0}
    cfg["external_scores"] = {
        "dattri_trak": {
            "path": str(wd / "dattri_trak.pt"),
            "rows": str(wd / "rows.txt"),
            "cols": str(wd / "cols.txt"),
            "label": "dattri TRAK",
        }
    }
    (wd / "extended.yaml").write_text(yaml.safe_dump(cfg))
    env = {"PYTHONPATH": os.pathsep.join([PLUGINS, os.environ.get("PYTHONPATH", "")])}
    plan = run_snakemake(wd, "-n", "--configfile", str(wd / "extended.yaml"), env=env).stdout
    (wd / "plan.txt").write_text(plan)
    run_snakemake(wd, "--cores", "2", "--configfile", str(wd / "extended.yaml"), env=env)


@pytest.fixture(scope="session")
def extended(tiny_run, tmp_path_factory):
    """The tiny run plus the toy plugin method and the dattri matrix, built once (shared by the workers)."""
    wd = shared_run(tmp_path_factory, "extended", lambda wd: _build_extended(tiny_run, wd))
    S = torch.load(wd / "dattri_trak.pt")
    return {"wd": wd, "res": wd / "results" / "tiny", "plan": (wd / "plan.txt").read_text(), "S": S.double().numpy()}


def test_only_the_new_rows_run(extended):
    """Adding a method and an external matrix runs their jobs and the report, nothing else."""
    rules = re.findall(r"(?m)^(?:local)?rule (\w+):", extended["plan"])
    counts = {r: rules.count(r) for r in set(rules)}
    assert counts == {
        "score": 1,
        "replica_score": 1,  # the plugin's gradient method gets its noise diagnostic (member 1) too
        "import_scores": 1,
        "diagnostics": 2,
        "homogeneity": 2,
        "residual": 2,
        "lds": 2,  # against the existing ground truth: no retraining
        "cards": 1,  # the new rows' evidence on every card
        "unlearning_compare": 1,  # unlearning is compared with every other method, the new ones too
        "report": 1,
        "all": 1,
    }
    assert "method=toy" in extended["plan"] and "method=dattri_trak" in extended["plan"]


def test_plugin_method_flows_through_scoring_diagnostics_and_report(extended):
    res = extended["res"]
    S, rows, cols = open_scores(res / "scores" / "symbolic" / "toy.zarr")
    f = read_features(res / "features" / "symbolic" / "m0_c2.zarr")  # model 0, final checkpoint (C = 2)
    want = 2.0 * np.sign(f["train"]).astype(np.float64) @ np.sign(f["query"]).astype(np.float64).T
    np.testing.assert_allclose(np.asarray(S[:]), want, rtol=1e-6)
    summary = json.loads((res / "summary.json").read_text())
    toy = summary["methods"]["toy"]
    assert toy["label"] == "Toy"
    for k, v in brute_force(want).items():
        assert toy[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
    assert set(toy["homogeneity"]) == {"3", "5"}
    assert "toy" in summary["validation"]["symbolic"]["lds_order"]
    assert ">Toy<" in (res / "report.html").read_text()


def test_external_dattri_matrix_gets_the_same_diagnostics(extended):
    res = extended["res"]
    summary = json.loads((res / "summary.json").read_text())
    ext = summary["methods"]["dattri_trak"]
    assert ext["label"] == "dattri TRAK"
    assert -1 <= ext["lds"]["lds"] <= 1
    for k, v in brute_force(extended["S"]).items():
        assert ext[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    # the built-in rows are unchanged by the extension
    assert {"trak", "tracin", "gradcos", "graddot"} < set(summary["methods"])
    html = (res / "report.html").read_text()
    assert "dattri TRAK" in html


def test_user_config_without_audio_plans_no_audio_job(tmp_path):
    """--configfile replaces config.yaml: a config without an audio section plans no audio job."""
    cfg = yaml.safe_load((REPO / "tests" / "data" / "config_tiny.yaml").read_text())
    del cfg["audio"]
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(cfg))
    # the workdir's own config.yaml (the demo's role) has an audio section; it must not leak in
    shutil.copy(REPO / "tests" / "data" / "config_tiny.yaml", tmp_path / "config.yaml")
    out = run_snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "mine.yaml")).stdout
    rules = set(re.findall(r"(?m)^(?:local)?rule (\w+):", out))
    assert "symbolic_segments" in rules and "report" in rules
    assert not [r for r in rules if r.startswith("audio") or r in ("embed_corpus", "embed_baseline", "tracklevel")]
    assert "tiny_audio" not in out
    # and with the merge (no --configfile), the audio experiment is planned
    out = run_snakemake(tmp_path, "-n").stdout
    assert "results/tiny_audio/report.html" in out
