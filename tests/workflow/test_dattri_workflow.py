"""corpus.kind dattri_benchmark end to end (the Aria paper's Table 1 setting): a tiny folder in
dattri's layout (tests/dattri_folder.py) through the whole symbolic workflow.

References: ``dattri.metric.lds`` on the score stores the run wrote and the folder's own tensors
(every LDS of the report), and the job list (nothing trained, generated or retrained).
"""

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, run_snakemake, shared_run

pytest.importorskip("dattri")
pytest.importorskip("pretty_midi")
sys.path.insert(0, str(REPO / "tests"))
from dattri_folder import make_folder  # noqa: E402

from aria.io.stores import iter_row_chunks, open_scores  # noqa: E402

TABLE1 = ["trak", "tracin", "gradcos", "graddot"]


def _config(download_path: Path) -> dict:
    tiny = yaml.safe_load((REPO / "tests" / "data" / "config_tiny.yaml").read_text())
    cfg = {k: tiny[k] for k in ("device", "seeds", "model", "queries", "homogeneity")}
    cfg.update(
        experiment="maestro",
        experiments=["symbolic"],
        corpus={
            "kind": "dattri_benchmark",
            "dattri_benchmark": {"download_path": str(download_path), "n_train": 24, "n_test": 6},
        },
        segments={"block_tokens": 257},
        projection={"k": 32, "batch_size": 8, "block_rows": 4096},
        methods={
            "run": TABLE1,
            "trak": {"damping": {"rule": "absolute", "lambda": 0.01}, "ensemble": 2},
            "tracin": {"checkpoints": 1},
            "gradcos": {},
            "graddot": {},
        },
        lds={"enabled": True, "n_boot": 200},
    )
    return cfg


@pytest.fixture(scope="module")
def dattri_run(tmp_path_factory):
    """``(workdir, ground truth)``: the run is built once per session, shared by the workers."""

    def build(wd):
        make_folder(wd / "dl", n_train=24, n_test=6, n_subsets=10)
        shutil.copytree(REPO / "profiles", wd / "profiles")
        (wd / "config.yaml").write_text(yaml.safe_dump(_config(wd / "dl")))
        run_snakemake(wd, "--cores", "2")

    wd = shared_run(tmp_path_factory, "dattri", build)
    lds = next((wd / "dl").rglob("target_values_lds.pt")).parent  # the ground truth make_folder wrote
    made = {"targets": torch.load(lds / "target_values_lds.pt"), "indices": torch.load(lds / "indices_lds.pt")}
    return wd, made


def test_table1_layout_with_the_published_ground_truth(dattri_run):
    from dattri.metric import lds as dattri_lds

    wd, made = dattri_run
    res = wd / "results" / "maestro"
    summary = json.loads((res / "summary.json").read_text())
    assert list(summary["methods"]) == TABLE1
    for m in TABLE1:
        S, rows, cols = open_scores(res / "scores" / "symbolic" / f"{m}.zarr")
        full = np.concatenate([np.asarray(b, dtype=np.float64) for _, b in iter_row_chunks(S)])
        assert full.shape == (24, 6)
        theirs, _ = dattri_lds(torch.as_tensor(full), (made["targets"].double(), made["indices"]))
        row = summary["methods"][m]
        assert row["lds"]["lds"] == pytest.approx(float(np.nanmean(theirs.numpy())), abs=1e-12)
        assert row["lds"]["n_subsets"] == 10
        # Table 1's columns: LDS, the diagnostics and the five symbolic channels
        assert {"r1", "r2_5", "c_bar", "rho_bar"} <= set(row)
        assert set(row["homogeneity"]["3"]) == {"melody", "harmony", "rhythm", "dynamic", "texture"}
    report = (res / "report.md").read_text()
    assert "LDS against the benchmark's published ground truth" in report
    assert "one retrained model per subset" in report  # why the seed-noise ceiling is not available


def test_nothing_is_trained_generated_or_retrained(dattri_run):
    wd, _ = dattri_run
    logs = wd / "results" / "maestro" / "logs"
    assert (logs / "dattri_benchmark.log").is_file()
    for absent in ("train_model", "lds_retrain", "lds_ground_truth", "symbolic_queries.log", "symbolic_segments.log"):
        assert not (logs / absent).exists(), absent
    again = run_snakemake(wd, "--cores", "1", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_table1_overlay_plans_the_papers_setting(tmp_path):
    """`make table1`'s config (config.yaml + profiles/dattri/table1.yaml): one import, TRAK's ten
    models projected, the four methods scored and compared with the published ground truth."""
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    dl = tmp_path / "dl"
    out = run_snakemake(
        tmp_path,
        "-n",
        "--configfile",
        "config.yaml",
        "profiles/dattri/table1.yaml",
        "--config",
        f'corpus={{"kind": "dattri_benchmark", "dattri_benchmark": {{"download_path": "{dl}"}}}}',
    ).stdout
    stats = out[out.index("Job stats:") :].split("total")[0]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}
    assert jobs["dattri_benchmark"] == 1 and jobs["project_gradients"] == 10
    assert jobs["score"] == jobs["lds"] == jobs["diagnostics"] == 4
    assert not {"train_model", "lds_retrain", "lds_ground_truth", "symbolic_queries", "demo_collection"} & set(jobs)
