"""What the Aria paper's Table 1 setting (dattri's MAESTRO MusicTransformer benchmark) costs.

The workflow's cost there is the projected per-example gradients: TRAK's ensemble of M models
(the paper: 10) over 5,000 training samples and 178 test samples, each a 257-token window, on the
benchmark's model (6 layers, d = 512, about 13 M parameters; random weights here: the cost does
not depend on them). TracIn, Grad-Cos and GradDot read model 0's store and the noise diagnostic
member 1's, both among TRAK's M. This script times ``project_gradients`` on a few samples and
prints the measured rate and the extrapolated time of the gradient passes, side by side for
the devices given.

Usage: python bench/bench_dattri_table1.py [--device cpu|cuda] [--n 16] [--batch 8] [--k 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from aria.attribution.projection import project_gradients
from aria.models.dattri_mt import BENCHMARK_CONFIG, DattriMusicTransformer

N_TRAIN, N_TEST, ENSEMBLE, L = 5000, 178, 10, 257


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=16, help="samples timed")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--k", type=int, default=512)
    ap.add_argument("--projection", default="sjlt")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = DattriMusicTransformer(**BENCHMARK_CONFIG).eval()
    n_params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 388, size=(a.n, L))
    mask = np.ones_like(tokens, dtype=bool)
    kw = dict(k=a.k, seed=0, projection=a.projection, batch_size=a.batch, device=a.device)
    project_gradients(model, tokens[: a.batch], mask[: a.batch], **kw)  # warm-up: kernels, P's first blocks
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    project_gradients(model, tokens, mask, **kw)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    per = (time.perf_counter() - t0) / a.n
    passes = ENSEMBLE * (N_TRAIN + N_TEST)
    print(f"device {a.device}, threads {torch.get_num_threads()}, model {n_params / 1e6:.1f} M parameters")
    print(f"{'samples timed':>28} {a.n}")
    print(f"{'s per sample':>28} {per:.4f}")
    print(f"{'gradient passes':>28} {passes} ({ENSEMBLE} models x {N_TRAIN + N_TEST} samples)")
    print(f"{'extrapolated gradients':>28} {passes * per / 3600:.2f} h")


if __name__ == "__main__":
    main()
