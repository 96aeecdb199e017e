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
    if "-n" in args or "--report" in args:
        # read-only runs take no lock: two test workers may plan in the shared tiny run at once
        args = ("--nolock", *args)
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def _build_tiny(wd):
    shutil.copy(REPO / "tests" / "data" / "config_tiny.yaml", wd / "config.yaml")
    run_snakemake(wd, "--cores", "2")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole workflow on the tiny configuration, run once per test session.

    Under pytest-xdist (``make test`` runs two workers) the workers share one run: the first
    to need it builds it under a file lock, the others wait and read it; a failed build is
    reported to every worker instead of being retried. Tests treat it as read-only: they copy
    what they change, and their dry runs take no lock (:func:`run_snakemake`).
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        wd = tmp_path_factory.mktemp("tiny")
        _build_tiny(wd)
        return wd
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # shared by this session's workers
    wd, done, failed = root / "tiny", root / "tiny.done", root / "tiny.failed"
    with FileLock(str(root / "tiny.lock")):
        if failed.exists():
            pytest.fail(f"the tiny run failed in another worker:\n{failed.read_text()}")
        if not done.exists():
            shutil.rmtree(wd, ignore_errors=True)
            wd.mkdir()
            try:
                _build_tiny(wd)
            except BaseException as e:
                failed.write_text(str(e))
                raise
            done.touch()
    return wd


# Longest first, so that xdist's two workers finish together: the tests that need the tiny run
# (the first of them builds it, using both cores), these modules leading, then everything else.
_HEAVY_FIRST = ("test_slurm.py", "test_faults.py", "test_extending.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Order the tests for two workers (above) and keep module-scoped fixtures on one worker.

    ``make test`` runs ``pytest -n 2 --dist loadgroup --no-loadscope-reorder``: a test with no
    ``xdist_group`` is a unit of its own, so every module with a module-scoped fixture is made
    one group (its fixture is then built once, on one worker). Without xdist the marks do nothing.
    """

    def key(item):
        uses_tiny = "tiny_run" in getattr(item, "fixturenames", ())
        name = item.path.name
        rank = _HEAVY_FIRST.index(name) if name in _HEAVY_FIRST else len(_HEAVY_FIRST)
        return (not uses_tiny, rank)

    items.sort(key=key)  # stable: the collection order within each rank
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and getattr(module, "__dict__", None) is not None and _has_module_fixture(module):
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


def _has_module_fixture(module):
    cached = module.__dict__.get("_aria_module_fixture")
    if cached is None:
        import inspect

        cached = 'scope="module"' in inspect.getsource(module)
        module._aria_module_fixture = cached
    return cached


def copy_symbolic_run(tiny_run, wd):
    """The tiny run's symbolic experiment in ``wd``: config, results and Snakemake's metadata,
    file times kept, so that Snakemake sees it up to date.
    """
    wd.mkdir(parents=True, exist_ok=True)
    shutil.copy2(tiny_run / "config.yaml", wd / "config.yaml")
    shutil.copytree(tiny_run / "results" / "tiny", wd / "results" / "tiny", symlinks=True)
    shutil.copytree(tiny_run / ".snakemake" / "metadata", wd / ".snakemake" / "metadata")
    return wd
