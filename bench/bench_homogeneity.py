"""Benchmark homogeneity at scale: the null and the per-query table for a large track pool.

A synthetic pool of T tracks with the audio experiment's three channels and features
(:data:`aria.audio.features.CHANNELS`, :data:`~aria.audio.features.FEATURE_DIMS`:
rhythmic = two 16-bin histograms, harmonic = chroma 12 + tonnetz 6 + chord root
motions, timbral = MFCC + CQT), chord-motion sequences of Poisson(20) symbols in
1..11. The Q query groups are top-K-like: nested (the group of size K is the first K
of the group of size 50) and overlapping (members drawn mostly from 2,000 "popular"
tracks, as the top rows of a real score matrix are). Times, in one run:

* aria      - :func:`null_distribution` (R random groups per K) plus
              :func:`nested_channel_homogeneity` of the Q groups for every K: what
              the workflow's null and homogeneity jobs compute (the top-K selection
              from the score store is timed separately by ``--topk``);
* reference - the straightforward computation Aria used before issue 12: per K and
              group, vector similarities per group and the chord LCS pair by pair
              in Python (pairs cached), on a subset of ``--ref-q`` queries and
              ``--ref-r`` null groups, extrapolated linearly to Q and R (it is linear
              in both) and checked equal to the new path on that subset.

Usage::

    python bench/bench_homogeneity.py                      # T=100000, Q=4000, R=1000
    python bench/bench_homogeneity.py --tracks 20000 --q 500 --r 200
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import numpy as np

from aria.audio.features import CHANNELS, FEATURE_DIMS
from aria.evaluation.homogeneity import (
    feature_scales,
    lcs_similarity,
    nested_channel_homogeneity,
    null_distribution,
    prepare_features,
    random_groups,
)

KS = (5, 10, 20, 50)


def make_pool(T: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    feats = {f: rng.gamma(2.0, 1.0, size=(T, d)) for f, d in FEATURE_DIMS.items()}
    feats["chords"] = [rng.integers(1, 12, n) for n in rng.poisson(20, T)]
    return feats


def make_groups(T: int, Q: int, K: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    popular = rng.choice(T, min(2000, T), replace=False)
    out = np.empty((Q, K), dtype=np.int64)
    for q in range(Q):
        cand = np.concatenate([rng.choice(popular, 3 * K, replace=False), rng.choice(T, K, replace=False)])
        _, first = np.unique(cand, return_index=True)
        out[q] = cand[np.sort(first)][:K]  # the first K distinct, in draw order
    return out


def reference(feats: dict, groups: np.ndarray, scales: dict, ks=KS) -> dict:
    """The pre-issue-12 computation: per K, per group; the LCS pair by pair (cached)."""
    cache: dict = {}
    out = {}
    for K in ks:
        H_f = {}
        for f, X in feats.items():
            H = np.empty(len(groups))
            for g, members in enumerate(groups[:, :K].tolist()):
                pairs = list(itertools.combinations(members, 2))
                if f == "chords":
                    vals = []
                    for a, b in pairs:
                        key = (min(a, b), max(a, b))
                        if key not in cache:
                            cache[key] = lcs_similarity(X[key[0]], X[key[1]])
                        vals.append(cache[key])
                    H[g] = np.mean(vals)
                else:
                    s = scales[f]
                    Z = X[members] / s
                    i, j = np.triu_indices(K, 1)
                    H[g] = np.mean(1.0 / (1.0 + np.sqrt(((Z[i] - Z[j]) ** 2).sum(1))))
            H_f[f] = H
        out[K] = H_f
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=100_000, help="pool size T (default 100000)")
    ap.add_argument("--q", type=int, default=4000, help="queries Q (default 4000)")
    ap.add_argument("--r", type=int, default=1000, help="null groups R per K (default 1000)")
    ap.add_argument("--ref-q", type=int, default=40, help="queries of the reference run (default 40)")
    ap.add_argument("--ref-r", type=int, default=10, help="null groups per K of the reference run (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    T, Q, R = a.tracks, a.q, a.r
    print(
        f"T={T} tracks, Q={Q} queries, R={R} null groups per K, K={KS}, "
        f"channels {list(CHANNELS)}; {os.cpu_count()} CPUs"
    )
    feats = make_pool(T, a.seed)
    groups = make_groups(T, Q, max(KS), a.seed)

    t0 = time.perf_counter()
    scales = {f: None if f == "chords" else feature_scales(v) for f, v in feats.items()}
    prepared = prepare_features(feats, list(feats))
    t_prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    null = null_distribution(prepared, CHANNELS, ks=KS, n_groups=R, random_state=a.seed, scales=scales)
    t_null = time.perf_counter() - t0
    t0 = time.perf_counter()
    nested_channel_homogeneity(prepared, CHANNELS, groups, KS, scales)
    t_table = time.perf_counter() - t0
    total = t_prep + t_null + t_table

    # reference on a subset, extrapolated; and equality on that subset
    sub = groups[: a.ref_q]
    t0 = time.perf_counter()
    ref = reference(feats, sub, scales)
    t_ref_q = time.perf_counter() - t0
    t0 = time.perf_counter()
    for K in KS:  # the null's groups: independent per K
        reference(feats, random_groups(T, K, a.ref_r, random_state=[a.seed, K]), scales, ks=(K,))
    t_ref_r = time.perf_counter() - t0
    new_sub = nested_channel_homogeneity(prepared, CHANNELS, sub, KS, scales)
    diff = max(float(np.abs(new_sub[K][1][f] - ref[K][f]).max()) for K in KS for f in feats)
    est_ref = t_ref_q * Q / a.ref_q + t_ref_r * R / a.ref_r
    print()
    print(f"{'step':<44}{'seconds':>10}")
    print(f"{'prepare (scales, sequence table)':<44}{t_prep:>10.2f}")
    print(f"{'null_distribution, 4 Ks x R groups':<44}{t_null:>10.2f}")
    print(f"{'nested homogeneity, Q groups, 4 Ks':<44}{t_table:>10.2f}")
    print(f"{'aria total':<44}{total:>10.2f}")
    print(f"{'reference, ' + str(a.ref_q) + ' queries (all Ks)':<44}{t_ref_q:>10.2f}")
    print(f"{'reference extrapolated to Q and R':<44}{est_ref:>10.0f}")
    print(f"ratio reference / aria = {est_ref / total:.0f}; max |difference| on the subset = {diff:.1e}")
    print("null mu_c at K=10: " + ", ".join(f"{c} {v:.4f}" for c, v in null["by_k"][10]["mu_c"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
