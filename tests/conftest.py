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


def snakemake_cmd(workdir, *args, env=None):
    """``(command, environment)`` that run this repository's workflow in ``workdir``.

    ``env`` adds variables to the jobs' environment. Read-only runs (``-n``, ``--report``) take
    no lock: two test workers may plan in the shared tiny run at once.
    """
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {}))
    if "-n" in args or "--report" in args:
        args = ("--nolock", *args)
    return [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args], env


def run_snakemake(workdir, *args, check=True, env=None):
    """Run this repository's workflow in ``workdir`` (:func:`snakemake_cmd`); the CompletedProcess."""
    cmd, env = snakemake_cmd(workdir, *args, env=env)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def shared_run(tmp_path_factory, name, build):
    """A directory built once per test session by ``build(path)``; read-only for the tests.

    Under pytest-xdist (``make test`` runs two workers) the workers share it: the first to need
    it builds it under a file lock, the others wait and read it; a failed build is reported to
    every worker instead of being retried. Tests copy what they change, and their dry runs take
    no lock (:func:`run_snakemake`).
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        wd = tmp_path_factory.mktemp(name)
        build(wd)
        return wd
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # shared by this session's workers
    wd, done, failed = root / name, root / f"{name}.done", root / f"{name}.failed"
    with FileLock(str(root / f"{name}.lock")):
        if failed.exists():
            pytest.fail(f"building {name} failed in another worker:\n{failed.read_text()}")
        if not done.exists():
            shutil.rmtree(wd, ignore_errors=True)
            wd.mkdir()
            try:
                build(wd)
            except BaseException as e:
                failed.write_text(str(e))
                raise
            done.touch()
    return wd


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole workflow on the tiny configuration, run once per test session (:func:`shared_run`)."""

    def build(wd):
        shutil.copy(REPO / "tests" / "data" / "config_tiny.yaml", wd / "config.yaml")
        run_snakemake(wd, "--cores", "2")

    return shared_run(tmp_path_factory, "tiny", build)


# Longest first, so that the two workers finish together: the tests that need the tiny run (the
# first of them builds it, using both cores; the other worker waits), these modules leading,
# then everything else. ``make test`` passes ``--dist loadgroup``, under which every test (none
# is marked with a group) is handed to whichever worker has run out of work, in this order;
# ``--dist load`` would send each worker a quarter of the suite at the start. (``xdist_group``
# marks would not take effect anyway: xdist 3.8.0 tags the node id through ``item._nodeid``,
# which pytest 9.2 no longer reads; pytest-dev/pytest-xdist#1386.)
_HEAVY_FIRST = (
    "test_slurm.py",
    "test_faults.py",
    "test_diffusion_workflow.py",
    "test_extending.py",
    "test_hf_miditok.py",
    "test_dattri_workflow.py",
)


def pytest_collection_modifyitems(config, items):
    led = set()

    def key(item):
        uses_tiny = "tiny_run" in getattr(item, "fixturenames", ())
        name = item.path.name
        rank = _HEAVY_FIRST.index(name) if name in _HEAVY_FIRST else len(_HEAVY_FIRST)
        if name in _HEAVY_FIRST and name in led:
            # a heavy module's later tests read the run its first test builds: run them last, so
            # that the other worker does not sit waiting for that build (each build uses 2 cores)
            rank = len(_HEAVY_FIRST) + 1
        led.add(name)
        return (not uses_tiny, rank)

    items.sort(key=key)  # stable: the collection order within each rank


def copy_symbolic_run(tiny_run, wd):
    """The tiny run's symbolic experiment in ``wd``: config, results and Snakemake's metadata,
    file times kept, so that Snakemake sees it up to date.
    """
    wd.mkdir(parents=True, exist_ok=True)
    shutil.copy2(tiny_run / "config.yaml", wd / "config.yaml")
    shutil.copytree(tiny_run / "results" / "tiny", wd / "results" / "tiny", symlinks=True)
    shutil.copytree(tiny_run / ".snakemake" / "metadata", wd / ".snakemake" / "metadata")
    return wd


def token_batch(n=4, length=10, vocab=13):
    """``(tokens, mask, loss_mask)`` int/bool (n, length) of random ids 1..vocab-1: example 1 padded
    after position 6 (id 0), example 2 a query whose first 5 positions are no targets."""
    import numpy as np

    rng = np.random.default_rng(0)
    tokens = rng.integers(1, vocab, size=(n, length))
    mask = np.ones_like(tokens, dtype=bool)
    mask[1, 6:] = False
    tokens[1, 6:] = 0
    loss_mask = np.ones_like(mask)
    loss_mask[2, :5] = False
    return tokens, mask, loss_mask
