"""Fault tolerance of the workflow: a job killed with SIGKILL mid-write (as by the OOM killer or a
pre-emption) leaves nothing that a rerun trusts, and the rerun's stores equal a clean run's byte
for byte; a second snakemake on the same directory is refused by the lock.

The kill is driven by the job itself telling the test where it is (``aria.io.stores.fault_point``:
with ``ARIA_FAULT_PAUSE=<site>:<marker>`` the writer records its pid in the marker once the first
part of the store is on disk, then waits to be killed), not by a guessed sleep.
"""

import filecmp
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import copy_symbolic_run, snakemake_cmd

FEATURES = "results/tiny/features/symbolic/m0_c1.zarr"  # read by TracIn only
SCORES = "results/tiny/scores/symbolic/tracin.zarr"


def _snakemake(wd, *targets, env=None):
    return snakemake_cmd(wd, "--cores", "1", *targets, env=env)


def _start(wd, site, marker):
    cmd, env = _snakemake(wd, FEATURES, SCORES, env={"ARIA_FAULT_PAUSE": f"{site}:{marker}"})
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(marker, proc, timeout=180):
    t0 = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended before the writer paused:\n{proc.stdout.read()[-3000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("the writer never reached its fault point")
        time.sleep(0.1)
    return int(marker.read_text())


def _tree(path):
    return sorted(p.relative_to(path) for p in Path(path).rglob("*") if p.is_file())


def _assert_identical(a, b):
    assert _tree(a) == _tree(b), f"{a} and {b} hold different files"
    for rel in _tree(a):
        assert filecmp.cmp(Path(a) / rel, Path(b) / rel, shallow=False), f"{rel} differs from the clean run's"


@pytest.fixture
def copy_of_tiny(tiny_run, tmp_path):
    """The tiny run's symbolic experiment (results and Snakemake's metadata, times kept)."""
    wd = copy_symbolic_run(tiny_run, tmp_path / "wd")
    for p in (FEATURES, SCORES):
        shutil.rmtree(wd / p)
    return wd


def test_sigkill_mid_write_then_rerun_gives_the_clean_stores(tiny_run, copy_of_tiny, tmp_path):
    wd = copy_of_tiny
    # 1. the projection job, killed once the training features are half on disk
    marker = tmp_path / "features.pid"
    proc = _start(wd, "features", marker)
    pid = _wait_for(marker, proc)
    partial = list((wd / FEATURES).parent.glob(".m0_c1.zarr.tmp-*"))
    assert len(partial) == 1 and (partial[0] / "train").is_dir() and not (wd / FEATURES).exists()

    # while it runs, a second snakemake on the same directory is refused by the lock
    cmd, env = _snakemake(wd, SCORES)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode != 0
    said = second.stdout + second.stderr
    assert "Directory cannot be locked" in said and "no other Snakemake process" in said

    os.kill(pid, signal.SIGKILL)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, out[-2000:]
    assert not (wd / FEATURES).exists()

    # 2. the rerun: the projection completes, then the scoring job is killed after its first row block
    marker = tmp_path / "scores.pid"
    proc = _start(wd, "scores", marker)
    pid = _wait_for(marker, proc)
    assert (wd / FEATURES).is_dir() and not (wd / SCORES).exists()
    assert not list((wd / FEATURES).parent.glob(".m0_c1.zarr.tmp-*"))  # the killed writer's leftovers are gone
    os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0 and not (wd / SCORES).exists()

    # 3. a plain rerun completes; both stores equal the clean run's byte for byte
    cmd, env = _snakemake(wd, FEATURES, SCORES)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_identical(wd / FEATURES, tiny_run / FEATURES)
    _assert_identical(wd / SCORES, tiny_run / SCORES)
    assert not list((wd / SCORES).parent.glob(".*.tmp-*"))
