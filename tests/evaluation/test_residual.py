"""Residual after the leading axis (docs/spec.md §7): brute-force SVD and planted z behaviour."""

import numpy as np
import pytest
import zarr

from aria.evaluation.homogeneity import homogeneity_table, null_distribution
from aria.evaluation.residual import leading_axis, residual_blocks


def _residual(S, **kw):
    ax = leading_axis(S, **kw)
    blocks = list(residual_blocks(S, ax.v, row_chunk=kw.get("row_chunk")))
    R = np.concatenate([b for _, b, _ in blocks])
    proj = np.concatenate([p for _, _, p in blocks])
    return ax, R, proj


@pytest.mark.parametrize("row_chunk", [7, 64, None])
def test_residual_equals_numpy_svd(row_chunk):
    rng = np.random.default_rng(0)
    S = 5.0 * np.outer(rng.normal(size=120), rng.normal(size=9) + 1.0) + rng.normal(size=(120, 9))
    U, s, Vt = np.linalg.svd(S, full_matrices=False)
    ax, R, proj = _residual(S, row_chunk=row_chunk)
    np.testing.assert_allclose(ax.sigma, s[0], rtol=1e-10)
    np.testing.assert_allclose(ax.r1, s[0] ** 2 / (s**2).sum(), rtol=1e-10)
    np.testing.assert_allclose(R, S - s[0] * np.outer(U[:, 0], Vt[0]), atol=1e-9)
    # u1 = S v1 / sigma1 up to the sign convention (v has a non-negative sum)
    sign = np.sign(Vt[0].sum())
    np.testing.assert_allclose(proj / ax.sigma, sign * U[:, 0], atol=1e-10)
    # what is left has the remaining singular values
    np.testing.assert_allclose(np.linalg.svd(R, compute_uv=False)[:8], s[1:], rtol=1e-8, atol=1e-9)


def test_residual_streams_a_zarr_store(tmp_path):
    rng = np.random.default_rng(1)
    S = rng.normal(size=(50, 6)).astype(np.float32)
    z = zarr.open_array(str(tmp_path / "s.zarr"), mode="w", shape=S.shape, chunks=(8, 6), dtype="float32")
    z[:] = S
    ax, R, _ = _residual(z)
    S64 = S.astype(np.float64)
    _, s, Vt = np.linalg.svd(S64, full_matrices=False)
    np.testing.assert_allclose(R, S64 - np.outer(S64 @ Vt[0], Vt[0]), atol=1e-6)


def test_bad_axis_is_rejected():
    S = np.ones((4, 3))
    with pytest.raises(ValueError, match="unit vector"):
        next(residual_blocks(S, np.ones(3)))
    with pytest.raises(ValueError, match="3 columns"):
        next(residual_blocks(S, np.ones(2) / np.sqrt(2)))


def _pool(rng, n_clusters=10, per=30):
    """A pool whose one feature clusters: items of a cluster are near-identical."""
    labels = np.repeat(np.arange(n_clusters), per)
    centers = rng.normal(size=(n_clusters, 3)) * 3
    X = centers[labels] + 0.05 * rng.normal(size=(len(labels), 3))
    return labels, {"f": X}, {"c": ["f"]}


def test_planted_signal_rises_and_pure_rank1_falls_after_removal():
    rng = np.random.default_rng(2)
    labels, feats, chans = _pool(rng)
    N, K = len(labels), 10
    null = null_distribution(feats, chans, ks=(K,), n_groups=300, random_state=0)
    q_lab = np.arange(10).repeat(2)  # 20 queries, two per cluster
    signal = (labels[:, None] == q_lab[None, :]).astype(float)

    def mu_z(S):
        return homogeneity_table(S, feats, chans, null)["by_k"][K]["summary"]["c"]["mu_z"]

    def residual(S):
        return _residual(S)[1]

    # rank-1 axis unrelated to the features dominates every query's top-K, plus a per-query signal
    w = rng.normal(size=N)
    S = 20.0 * np.outer(np.abs(w) ** 3, np.ones(len(q_lab))) + signal + 0.01 * rng.normal(size=signal.shape)
    before, after = mu_z(S), mu_z(residual(S))
    assert after > before + 3 and after > 5  # the per-query groups are the clusters again

    # pure rank-1 matrix whose axis follows the feature: a large z before, ~0 after
    axis = feats["f"][:, 0]
    S1 = np.outer(axis - axis.min() + 1.0, rng.uniform(1, 2, size=len(q_lab))) + 1e-6 * rng.normal(size=signal.shape)
    before1, after1 = mu_z(S1), mu_z(residual(S1))
    assert before1 > 3
    assert abs(after1) < 1.0
