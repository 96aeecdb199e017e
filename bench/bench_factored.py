"""Projection throughput and peak memory: dense Gaussian path, LoGra, FactGraSS, and
dattri 0.3.0's LoGraAttributor / FactGraSSAttributor, side by side (issue 9).

Every (model, method) runs in a fresh process so that its peak resident memory
(``ru_maxrss``) is its own. Each process projects ``--segments`` random training
sequences of the model's length with batch size 16, then twice as many (after a warm-up
on 8), and reports the marginal segments per second n / (t(2n) - t(n)), which leaves out
fixed costs, and the end-to-end rate 2n / t(2n), which includes them.
LoGra's KFAC covariance pass (once per model in the workflow) is timed separately.
All paths use k = 4096: per layer for the factored methods (LoGra 64 x 64; FactGraSS
SJLT to 4096, blowup 4), and for the dense path (one Gaussian P over all parameters, generated in blocks, never stored).

dattri runs eagerly (TORCHDYNAMO_DISABLE=1: its compressor is wrapped in torch.compile,
which costs ~30 s of compilation per process on CPU and gives the same numbers); its
FactGraSS on CPU uses a dense Gaussian instead of the SJLT. dattri's time is that of
``cache()`` (projection of every training gradient plus the per-layer Hessian, which
is small next to it at this N).

Models: ``demo`` = the demo's symbolic model (d 64, 2 layers); ``large`` = the same
family at ~3M parameters (d 256, 4 layers, d_ff 1024).

Usage::

    .venv/bin/python bench/bench_factored.py [--segments 64] [--dense-segments 16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MODELS = {
    "demo": dict(d_model=64, n_layers=2, n_heads=4, d_ff=256, max_len=256),
    "large": dict(d_model=256, n_layers=4, n_heads=4, d_ff=1024, max_len=256),
}
METHODS = ("dense", "logra", "factgrass", "dattri_logra", "dattri_factgrass")
K = 4096


def _data(n, cfg, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    from aria.symbolic.tokenize import VOCAB_SIZE

    tokens = rng.integers(1, VOCAB_SIZE, size=(n, cfg["max_len"]))
    return tokens, np.ones_like(tokens, dtype=bool)


def run_one(model_name: str, method: str, n: int) -> dict:
    """Project n and then 2n segments; the marginal rate n / (t(2n) - t(n)) excludes fixed
    costs (dattri builds its projectors and per-layer Hessians in every ``cache()``)."""
    import torch

    from aria.models.transformer import ModelConfig, MusicTransformer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = MODELS[model_name]
    model = MusicTransformer(ModelConfig(**cfg)).eval()
    n_params = sum(p.numel() for p in model.parameters())
    out = {"model": model_name, "method": method, "params": n_params, "segments": n}
    project = _projector(model, method, out)
    # warm-up on a few segments: one-time costs (lazy initialisation, allocator growth,
    # dattri's first-call set-up) must not land in t(n) only, or t(2n) - t(n) is meaningless
    tokens, mask = _data(min(8, n), cfg, seed=1)
    project(tokens, mask)
    times = []
    for m in (n, 2 * n):
        tokens, mask = _data(m, cfg)
        t0 = time.perf_counter()
        project(tokens, mask)
        times.append(time.perf_counter() - t0)
    out["seconds"] = times
    out["segments_per_s"] = n / max(times[1] - times[0], 1e-9)  # marginal: fixed costs left out
    out["end_to_end_per_s"] = 2 * n / times[1]  # everything a call costs, fixed costs included
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _projector(model, method, out):
    if method == "dense":
        from aria.attribution.projection import project_gradients

        return lambda tokens, mask: project_gradients(model, tokens, mask, k=K, seed=0, batch_size=16)
    if method in ("logra", "factgrass"):
        from aria.attribution.factored import kfac_covariance, project_factored

        if method == "logra":
            params = dict(k_in=64, k_out=64, init="kfac")
        else:
            params = dict(k=K, blowup=4, mask="random")

        cov = {}

        def ours(tokens, mask):
            # the covariance pass runs once per model in the workflow (rule kfac_covariance), so
            # it is computed on the first call (the warm-up), timed on its own, and reused
            if method == "logra" and not cov:
                t0 = time.perf_counter()
                cov.update(kfac_covariance(model, tokens, mask, batch_size=16))
                out["covariance_seconds"] = time.perf_counter() - t0
                out["covariance_segments"] = len(tokens)
            feats, _ = project_factored(
                model, tokens, mask, method=method, params=params, covariance=cov or None, batch_size=16
            )
            out["k_total"] = int(feats.shape[1])
            return feats

        return ours
    import tempfile

    import torch
    from dattri.algorithm import FactGraSSAttributor, LoGraAttributor
    from dattri.task import AttributionTask
    from torch.utils.data import DataLoader, TensorDataset

    # the adapter that tests/attribution/test_factored_dattri.py checks dattri's scores through
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from dattri_adapter import DattriView, dattri_loss

    wrapped = DattriView(model).eval()

    def theirs(tokens, mask):
        X = torch.as_tensor(tokens)
        dl = DataLoader(TensorDataset(X, X[:, 1:]), batch_size=16, shuffle=False)
        task = AttributionTask(loss_func=dattri_loss, model=wrapped, checkpoints=wrapped.state_dict())
        with tempfile.TemporaryDirectory() as tmp:
            kw = dict(device="cpu", proj_dim=K, offload="cpu", cache_dir=tmp)
            if method == "dattri_logra":
                attr = LoGraAttributor(task, **kw)
            else:
                attr = FactGraSSAttributor(task, blowup_factor=4, **kw)
            attr.cache(dl)

    return theirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=int, default=64)
    ap.add_argument("--dense-segments", type=int, default=16, help="the dense path is slow at 3M parameters")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--_one", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:
        print(json.dumps(run_one(a._one[0], a._one[1], int(a._one[2]))))
        return
    env = dict(os.environ, TORCHDYNAMO_DISABLE="1", OMP_NUM_THREADS="1")
    rows = []
    for m in a.models:
        for meth in a.methods:
            n = a.dense_segments if meth == "dense" else a.segments
            res = subprocess.run(
                [sys.executable, __file__, "--_one", m, meth, str(n)], env=env, capture_output=True, text=True
            )
            if res.returncode != 0:
                print(f"{m} {meth}: failed\n{res.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(
                f"{m:6s} {meth:17s} {r['params'] / 1e6:5.2f}M params  {r['segments_per_s']:8.2f} seg/s  "
                f"peak {r['peak_rss_mb']:7.0f} MB"
                + (
                    f"  (covariance on {r['covariance_segments']} segments {r['covariance_seconds']:.1f} s, once)"
                    if "covariance_seconds" in r
                    else ""
                )
                + f"  t(n), t(2n) = {r['seconds'][0]:.1f}, {r['seconds'][1]:.1f} s"
                + f"  end-to-end {r['end_to_end_per_s']:.2f} seg/s",
                flush=True,
            )
    print("\nratios of marginal segments per second (one thread each):")
    for m in a.models:
        by = {r["method"]: r for r in rows if r["model"] == m}
        if "dense" in by:
            for meth in ("logra", "factgrass", "dattri_logra", "dattri_factgrass"):
                if meth in by:
                    ratio = by[meth]["segments_per_s"] / by["dense"]["segments_per_s"]
                    print(f"  {m:6s} {meth:17s} / dense            = {ratio:8.1f}x")
        for ours, theirs in (("logra", "dattri_logra"), ("factgrass", "dattri_factgrass")):
            if ours in by and theirs in by:
                ratio = by[ours]["segments_per_s"] / by[theirs]["segments_per_s"]
                print(f"  {m:6s} {ours:17s} / {theirs:16s} = {ratio:8.2f}x")


if __name__ == "__main__":
    main()
