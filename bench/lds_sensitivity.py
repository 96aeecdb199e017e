"""Why do the diagnostics and LDS disagree on the demo? Measurements on a finished run.

Run after ``make validate`` (it reads the stored TRAK features, score stores and
``lds/symbolic/ground_truth.zarr``; it trains nothing and writes nothing)::

    python bench/lds_sensitivity.py                        # results/demo_symbolic
    python bench/lds_sensitivity.py --results results/my_exp --stage symbolic

It prints, side by side:

1. TRAK's damping sweep: the reliability diagnostics (r1, r2:5, c_bar, rho_bar) and
   the LDS of the TRAK matrix recomputed from the stored per-model features at each
   lambda (absolute, and relative to tr(Phi^T Phi)/k of model 0).
2. The noise floor: the same numbers for a seeded Gaussian matrix of the same shape.
3. The shared subset effect: the fraction of the targets' variance over subsets that is
   common to all queries, and each method's LDS with that common part removed from both
   the targets and the predictions ("query-specific LDS").
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from aria.attribution.trak import query_operator  # noqa: E402
from aria.evaluation.lds import lds_per_query  # noqa: E402
from aria.evaluation.reliability import reliability  # noqa: E402
from aria.io.stores import open_scores, read_features, read_ground_truth  # noqa: E402

KEYS = ("r1", "r2_5", "c_bar", "rho_bar")


def _row(name: str, S: np.ndarray, masks: np.ndarray, targets: np.ndarray) -> str:
    d = reliability(S)
    lds = float(np.nanmean(lds_per_query(masks @ S, targets)))
    return f"{name:<28s}" + "".join(f"{d[k]:>9.3f}" for k in KEYS) + f"{lds:>9.3f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/demo_symbolic")
    ap.add_argument("--stage", default="symbolic")
    ap.add_argument("--lambdas", default="0.01,0.1,1,10,100,1000,10000")
    ap.add_argument("--seed", type=int, default=0, help="seed of the Gaussian reference matrix")
    args = ap.parse_args(argv)
    res, stage = args.results, args.stage

    gt = read_ground_truth(os.path.join(res, "lds", stage, "ground_truth.zarr"))
    masks = gt["masks"].astype(np.float64)
    targets = np.asarray(gt["targets"], dtype=np.float64)
    M, N = masks.shape
    print(f"{res} stage {stage}: M = {M} subsets, N = {N} training segments, Q = {targets.shape[1]} queries")
    print(
        f"retrained models: train loss {gt['train_loss'].mean():.3f}, held-out loss "
        f"{gt['heldout_loss'].mean():.3f} +- {gt['heldout_loss'].std():.3f}"
    )
    header = f"{'matrix':<28s}" + "".join(f"{k:>9s}" for k in KEYS) + f"{'LDS':>9s}"

    # 1. TRAK damping sweep from the stored features of the ensemble's last checkpoint.
    summary = json.load(open(os.path.join(res, "summary.json")))
    paths = sorted(glob.glob(os.path.join(res, "features", stage, "m*_c*.zarr")))
    last = {}
    for p in paths:  # m{model}_c{checkpoint}: keep each model's last checkpoint
        m, c = os.path.basename(p)[1:-5].split("_c")
        last[int(m)] = max(last.get(int(m), (0, None)), (int(c), p))
    feats = [read_features(p) for _, p in (last[m] for m in sorted(last))]
    if feats:
        phi0 = np.asarray(feats[0]["train"], dtype=np.float64)
        scale = float(np.sum(phi0**2) / phi0.shape[1])
        print(f"\n1. TRAK damping sweep ({len(feats)} models, k = {phi0.shape[1]}, tr(Phi^T Phi)/k = {scale:.3g})")
        print(header)
        for lam in (float(x) for x in args.lambdas.split(",")):
            S = sum(np.asarray(f["train"], np.float64) @ query_operator(f["train"], f["query"], lam=lam) for f in feats)
            print(_row(f"lambda {lam:g} ({lam / scale:.2g} x tr/k)", S / len(feats), masks, targets))

    # 2. Noise floor, and every method of the run for reference.
    print("\n2. Methods of the run and a Gaussian matrix of the same shape")
    print(header)
    mats = {}
    for name in summary["methods"]:
        store = os.path.join(res, "scores", stage, f"{name}.zarr")
        if os.path.exists(store):
            mats[name] = np.asarray(open_scores(store)[0][:], dtype=np.float64)
            print(_row(name, mats[name], masks, targets))
    rng = np.random.default_rng(args.seed)
    print(_row("Gaussian noise", rng.standard_normal((N, targets.shape[1])), masks, targets))

    # 3. Shared subset effect.
    centred = targets - targets.mean(0)
    common = centred.mean(1, keepdims=True)
    share = float(np.sum(np.broadcast_to(common, centred.shape) ** 2) / np.sum(centred**2))
    print(f"\n3. Share of the targets' variance over subsets common to all queries: {share:.3f}")
    resid_t = targets - targets.mean(1, keepdims=True)
    for name, S in mats.items():
        pred = masks @ S
        qs = float(np.nanmean(lds_per_query(pred - pred.mean(1, keepdims=True), resid_t)))
        rowmean = np.repeat(S.mean(1, keepdims=True), S.shape[1], 1)
        qi = float(np.nanmean(lds_per_query(masks @ rowmean, targets)))
        print(f"{name:<28s} query-specific LDS {qs:6.3f}   LDS of its query-independent part (row means) {qi:6.3f}")


if __name__ == "__main__":
    main()
