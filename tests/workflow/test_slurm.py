"""The workflow through ``profiles/slurm`` on a real single-node SLURM (``.ci/local-slurm.sh``).

Debian's slurm-wlm with munge, slurmctld and slurmd on localhost, submitted to by the pinned
snakemake-executor-plugin-slurm. To stay within the suite's time budget the test takes the tiny
run's symbolic experiment, removes the projection that only TracIn reads, and has SLURM rebuild
TracIn's diagnostics from it: the GPU-resourced projection, the scoring and the diagnostics, each
through sbatch. The rebuilt score store must equal the local run's bit for bit, and the
diagnostics its JSON. The whole tiny run under SLURM was timed by hand (docs/cluster.md).

Skipped, with the reason, when not root (starting the daemons needs it), when SLURM is not
installed or does not come up, or when the plugin is missing.
"""

import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
import zarr
from conftest import REPO, copy_symbolic_run, snakemake_cmd

FEATURES = "results/tiny/features/symbolic/m0_c1.zarr"  # read by TracIn only
SCORES = "results/tiny/scores/symbolic/tracin.zarr"
DIAGNOSTICS = "results/tiny/diagnostics/symbolic/tracin.json"


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0:
        pytest.skip("the local SLURM needs root to start munged, slurmctld and slurmd")
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="snakemake-executor-plugin-slurm is not installed")
    res = subprocess.run([str(REPO / ".ci" / "local-slurm.sh"), "start"], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        pytest.skip(f"local SLURM did not start: {(res.stderr or res.stdout).strip()}")
    return True


def test_tiny_workflow_under_slurm_equals_the_local_run(slurm, tiny_run, tmp_path):
    wd = copy_symbolic_run(tiny_run, tmp_path / "wd")
    shutil.rmtree(wd / FEATURES)
    (wd / DIAGNOSTICS).unlink()

    cmd, env = snakemake_cmd(
        wd,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        # this cluster keeps no accounting database: job states come from squeue (MinJobAge 300 s)
        "--slurm-status-command",
        "squeue",
        # a laptop-sized node: the profile's 16 GB for projections would never be scheduled here
        "--default-resources",
        "mem_mb=1000",
        "runtime=30",
        "--set-resources",
        "project_gradients:mem_mb=1000",
        "train_model:mem_mb=1000",
        # poll fast: the defaults (40 s before the first check) suit a busy cluster, not a test
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "5",
        # rebuild the removed projection, TracIn's scores and diagnostics (3 jobs); Snakemake would
        # otherwise treat the missing intermediate store as not needed
        "--rerun-triggers",
        "mtime",
        "--forcerun",
        FEATURES,
        "--",
        DIAGNOSTICS,
    )
    t0 = time.monotonic()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    took = time.monotonic() - t0
    said = res.stdout + res.stderr
    assert res.returncode == 0, said[-4000:]

    # every job went through sbatch (the plugin deletes the logs of jobs that succeeded)
    submitted = said.count("has been submitted with SLURM jobid")
    assert submitted == 3 and "rule project_gradients:" in said and "rule score:" in said, said[-2000:]
    assert "localrule project_gradients" not in said and "localrule score" not in said
    print(f"SLURM: {submitted} jobs in {took:.0f} s")

    local, under_slurm = zarr.open(tiny_run / SCORES, mode="r"), zarr.open(wd / SCORES, mode="r")
    assert sorted(under_slurm.array_keys()) == sorted(local.array_keys())
    for k in local.array_keys():
        assert np.array_equal(under_slurm[k][:], local[k][:]), k
    assert json.loads((wd / DIAGNOSTICS).read_text()) == json.loads((tiny_run / DIAGNOSTICS).read_text())
