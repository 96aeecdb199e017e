"""What glibc malloc's default costs a training job, against the settings every ``aria`` job gets.

Trains the demo's symbolic model (d_model 64, 2 layers, 256-token blocks, batch 32, one
thread) on ``--segments`` random token blocks for ``--epochs`` in a fresh process,
``--repeats`` times per setting, and prints the median wall, user and system seconds and
the ratio of wall times:

reference  glibc's defaults: a large freed block goes back to the kernel (munmap) and the
           next one is mapped and zero-filled again, page by page (system time).
aria       ``aria.runtime.MALLOC_DEFAULTS``, which the ``aria`` supervisor sets for every
           job: freed memory stays in the heap and is reused.

Both settings must give bit-identical weights (checked; the script exits 1 otherwise).

Usage::

    .venv/bin/python bench/bench_malloc.py [--segments 320] [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

CHILD = """
import hashlib, sys, numpy as np, torch
torch.set_num_threads(1)
from aria.models.training import train_model
from aria.models.transformer import ModelConfig
n, epochs = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
tokens = rng.integers(1, 300, size=(n, 256))
out = train_model(tokens, np.ones_like(tokens, dtype=bool), cfg=ModelConfig(), epochs=epochs, lr=2e-3,
                  batch_size=32, n_checkpoints=1, random_state=0)
h = hashlib.sha256()
for v in out["final"].values():
    h.update(v.numpy().tobytes())
print(h.hexdigest())
"""


def run(env_extra: dict, n: int, epochs: int) -> tuple[float, float, float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(epochs)], env=env, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, res.stdout.strip()


def main() -> int:
    from aria.runtime import MALLOC_DEFAULTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rows, digests = {}, {}
    for name, extra in (("reference", {}), ("aria", MALLOC_DEFAULTS)):
        runs = [run(extra, a.segments, a.epochs) for _ in range(a.repeats)]
        rows[name] = [statistics.median(r[i] for r in runs) for i in range(3)]
        digests[name] = {r[3] for r in runs}
    ref = rows["reference"][0]
    print(f"{'setting':10s} {'wall s':>8s} {'user s':>8s} {'sys s':>8s} {'wall / reference':>17s}")
    for name, (wall, user, sys_s) in rows.items():
        print(f"{name:10s} {wall:8.2f} {user:8.2f} {sys_s:8.2f} {wall / ref:17.2f}")
    same = len(digests["reference"] | digests["aria"]) == 1
    print("weights bit-identical across settings and repeats:", same)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
