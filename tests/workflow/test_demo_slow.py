"""The full embedded demo (config.yaml), end to end. Slow: run with `pytest -m slow`."""

import json
import shutil

import pytest
from conftest import REPO, run_snakemake


@pytest.mark.slow
def test_full_demo(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    run_snakemake(tmp_path, "--cores", "all")
    res = tmp_path / "results" / "demo_symbolic"
    summary = json.loads((res / "summary.json").read_text())
    assert set(summary["methods"]) == {"trak", "tracin", "gradcos", "graddot"}
    assert summary["main_k"] == 10
    assert all(str(k) in summary["methods"]["trak"]["homogeneity"] for k in (5, 10, 20, 50))
    assert (res / "report.html").stat().st_size > 50_000
    audio = json.loads((tmp_path / "results" / "demo_audio" / "summary.json").read_text())
    assert audio["channels"] == ["rhythmic", "harmonic", "timbral"]
    assert {k.split("/")[1] for k in audio["methods"]} == {"semantic", "coarse", "fine", "baseline"}
