"""Axis-channel alignment (Eq. 8) against numpy/scipy on planted axes."""

import numpy as np
import pytest
from scipy import stats

from aria.evaluation.alignment import channel_alignment, feature_alignment


def _ols_r(u, X):
    A = np.column_stack([np.ones(len(u)), X])
    coef, *_ = np.linalg.lstsq(A, u, rcond=None)
    res = u - A @ coef
    return np.sqrt(1 - res @ res / ((u - u.mean()) @ (u - u.mean())))


def test_single_aligned_dimension_gives_a_max_near_one():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    u = 3.0 * X[:, 2] + 0.01 * rng.normal(size=200)
    r = feature_alignment(u, X)
    ref = max(abs(stats.pearsonr(u, X[:, d]).statistic) for d in range(5))
    assert r["argmax"] == 2 and r["a_max"] == pytest.approx(ref, rel=1e-10) and r["a_max"] > 0.999
    assert r["r"] == pytest.approx(_ols_r(u, X), rel=1e-10)


def test_distributed_alignment_gives_a_r_much_larger_than_a_max():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 16))
    u = X.sum(axis=1) + 0.05 * rng.normal(size=400)
    r = feature_alignment(u, X)
    assert r["a_max"] < 0.45 and r["r"] > 0.99 and r["r"] > 2 * r["a_max"]
    assert r["r"] == pytest.approx(_ols_r(u, X), rel=1e-10)


def test_a_r_at_least_a_max_and_capped_fit_is_forward_selection():
    rng = np.random.default_rng(2)
    for _ in range(20):
        T, d = 30, int(rng.integers(1, 40))
        X = rng.normal(size=(T, d))
        X[:, 0] = 1.0  # a constant column is dropped
        u = rng.normal(size=T)
        m = int(rng.integers(1, 6))
        r = feature_alignment(u, X, max_dims=m)
        assert r["r"] >= r["a_max"] - 1e-12
        assert len(r["dims"]) == min(m, d - 1) and 0 not in r["dims"]
        if d > 1:
            # the fit uses exactly the reported dimensions: compare with lstsq on them
            assert r["r"] == pytest.approx(_ols_r(u, X[:, r["dims"]]), rel=1e-9)
            # the first is the best single dimension
            corr = [abs(np.corrcoef(u, X[:, j])[0, 1]) for j in range(1, d)]
            assert r["dims"][0] == 1 + int(np.argmax(corr))


def test_channel_alignment_caps_dims_with_many_features():
    """With d >= T an OLS fit would interpolate (R = 1 for noise); the cap keeps R honest."""
    rng = np.random.default_rng(3)
    T = 41
    u = rng.normal(size=T)
    feats = {
        "wide": rng.normal(size=(T, 60)),
        "one": rng.normal(size=T),
        "seq": [list(range(i % 3 + 1)) for i in range(T)],
    }
    out = channel_alignment(u, feats, {"c": ["wide", "one", "seq"]}, max_dims_fraction=0.1)
    assert out["_fit"]["max_dims"] == 4
    row = out["c"]
    assert row["skipped"] == ["seq"]
    assert len(row["features"]["wide"]["dims"]) == 4 and row["a_r"] < 0.9
    assert row["a_r"] >= row["a_max"]
    assert _ols_r(u, feats["wide"][:, :40]) > 0.999  # what an uncapped fit would claim
