"""Self-influence metrics and the test-to-train comparison (docs/spec.md §8), against independent references."""

import numpy as np
import pytest
from scipy.stats import pearsonr

from aria.evaluation.selfinfluence import (
    diverse_targets,
    frechet_distance,
    normalize_scores,
    pearson_per_query,
    sorted_profiles,
    target_rank,
    topk_similarity,
)


def test_target_rank_is_pessimistic_about_ties():
    tau = np.array([0.1, 0.9, 0.3, 0.9])
    assert target_rank(tau, 1) == 2  # item 3 ties it
    assert target_rank(tau, 2) == 3
    assert target_rank(np.array([5.0, 1.0, 2.0]), 0) == 1
    assert target_rank(np.zeros(7), 4) == 7  # a setting that moves nothing is ranked last


def test_topk_similarity_brute_force():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(30, 5))
    tau = rng.normal(size=30)
    t = 7
    cos = E @ E[t] / (np.linalg.norm(E, axis=1) * np.linalg.norm(E[t]))
    others = [i for i in np.argsort(-tau) if i != t]
    assert topk_similarity(E, tau, t, k=5) == pytest.approx(cos[others[:5]].mean())
    assert topk_similarity(E, tau, t, k=5, bottom=True) == pytest.approx(cos[others[::-1][:5]].mean())
    assert topk_similarity(E, tau, t, k=100) == pytest.approx(cos[others].mean())  # capped at N - 1


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 3))
    assert frechet_distance(X, X) == pytest.approx(0.0, abs=1e-8)
    # a pure shift: ‖Δμ‖²
    assert frechet_distance(X, X + np.array([1.0, 2.0, 0.0])) == pytest.approx(5.0, rel=1e-6)
    # diagonal covariances: Σ (σ_x − σ_y)² + ‖Δμ‖², checked with the sample moments
    Y = rng.normal(size=(4000, 3)) * np.array([2.0, 1.0, 0.5]) + 1.0
    sx, sy = X.std(0, ddof=1), Y.std(0, ddof=1)
    want = ((X.mean(0) - Y.mean(0)) ** 2).sum() + ((sx - sy) ** 2).sum()
    assert frechet_distance(X, Y) == pytest.approx(want, rel=0.02)  # off-diagonal sample noise
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(X[:1], Y)


def test_diverse_targets_pick_one_item_per_cluster():
    rng = np.random.default_rng(2)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    E = np.concatenate([c + rng.normal(scale=0.3, size=(25, 2)) for c in centres])
    t = diverse_targets(E, 4, random_state=0)
    assert sorted(set(t // 25)) == [0, 1, 2, 3]  # one from each cluster
    np.testing.assert_array_equal(t, diverse_targets(E, 4, random_state=0))
    with pytest.raises(ValueError):
        diverse_targets(E, 0, random_state=0)


def test_normalizations_and_profiles():
    rng = np.random.default_rng(3)
    U, B = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    mm = normalize_scores(B, "minmax")
    assert np.allclose(mm.min(0), 0) and np.allclose(mm.max(0), 1)
    sm = normalize_scores(B, "softmax")
    np.testing.assert_allclose(sm.sum(0), 1.0)
    mean, std = sorted_profiles(U, B, how="minmax")
    rows = np.stack([mm[np.argsort(-U[:, q]), q] for q in range(6)], axis=1)
    np.testing.assert_allclose(mean, rows.mean(1))
    np.testing.assert_allclose(std, rows.std(1))
    own, _ = sorted_profiles(U, U, how="softmax")
    assert np.all(np.diff(own) <= 1e-15)  # the unlearning scores themselves decrease along their order


def test_pearson_per_query_matches_scipy():
    rng = np.random.default_rng(4)
    A = rng.normal(size=(40, 5))
    B = 0.5 * A + rng.normal(size=(40, 5))
    B[:, 4] = 1.0
    r = pearson_per_query(A, B)
    for q in range(4):
        assert r[q] == pytest.approx(pearsonr(A[:, q], B[:, q])[0])
    assert np.isnan(r[4])


def test_compare_stream_equals_the_in_memory_profiles_and_pearson():
    """Reading a few queries at a time, with the other matrix's rows in another order, gives
    sorted_profiles and pearson_per_query of the aligned full matrices."""
    from aria.evaluation.selfinfluence import compare_stream

    rng = np.random.default_rng(4)
    U = rng.normal(size=(30, 7))
    S = 0.5 * U + rng.normal(size=(30, 7))
    S[:, 3] = 1.0  # a constant column: Pearson undefined there
    perm = rng.permutation(30)
    S_shuffled = np.empty_like(S)
    S_shuffled[perm] = S  # row i of U is row perm[i] of the stored matrix
    res = compare_stream(U, S_shuffled, rows=perm, block_cols=2)
    for how in ("minmax", "softmax"):
        for which, M in (("unlearning", U), ("other", S)):
            m, sd = sorted_profiles(U, M, how=how)
            np.testing.assert_allclose(res["profiles"][how][which]["mean"], m, atol=1e-12)
            np.testing.assert_allclose(res["profiles"][how][which]["std"], sd, atol=1e-7)
    r = pearson_per_query(U, S)
    assert res["pearson"][3] is None and np.isnan(r[3])
    ok = np.delete(r, 3)
    np.testing.assert_allclose([x for x in res["pearson"] if x is not None], ok, atol=1e-12)
    assert res["pearson_mean"] == pytest.approx(ok.mean()) and res["pearson_std"] == pytest.approx(ok.std())
