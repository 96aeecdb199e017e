import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aria.runtime import isolate_jit_cache

# This test process compiles librosa's numba kernels into a private copy of the JIT
# template, never into the venv (where a parallel workflow could race on them; issue 6).
isolate_jit_cache()

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_snakemake(workdir, *args, check=True, env=None):
    """Run this repository's workflow in ``workdir``; return the CompletedProcess.

    ``env`` adds variables to the jobs' environment.
    """
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {}))
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole workflow on the tiny configuration, run once per test session."""
    wd = tmp_path_factory.mktemp("tiny")
    shutil.copy(REPO / "tests" / "data" / "config_tiny.yaml", wd / "config.yaml")
    run_snakemake(wd, "--cores", "2")
    return wd


def copy_symbolic_run(tiny_run, wd):
    """The tiny run's symbolic experiment in ``wd``: config, results and Snakemake's metadata,
    file times kept, so that Snakemake sees it up to date.
    """
    wd.mkdir(parents=True, exist_ok=True)
    shutil.copy2(tiny_run / "config.yaml", wd / "config.yaml")
    shutil.copytree(tiny_run / "results" / "tiny", wd / "results" / "tiny", symlinks=True)
    shutil.copytree(tiny_run / ".snakemake" / "metadata", wd / ".snakemake" / "metadata")
    return wd
