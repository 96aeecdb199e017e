"""The noise diagnostic (aria.evaluation.agreement) against numpy/scipy on planted replicas."""

import numpy as np
import pytest
from scipy import stats

from aria.evaluation.agreement import gaussian_reference, replica_agreement, spearman_brown
from aria.evaluation.reliability import reliability, verdict


def _planted(n, q, *, signal_sd, noise_sd, seed, offset=0.0):
    rng = np.random.default_rng(seed)
    S = signal_sd * rng.standard_normal((n, q)) + offset
    return S + noise_sd * rng.standard_normal((n, q)), S + noise_sd * rng.standard_normal((n, q)), S


def _brute(A, B):
    q = A.shape[1]
    sp = np.array([stats.spearmanr(A[:, j], B[:, j]).statistic for j in range(q)])
    pe = np.array([stats.pearsonr(A[:, j], B[:, j]).statistic for j in range(q)])
    energy = 2 * np.sum(A * B) / (np.sum(A * A) + np.sum(B * B))
    return sp, pe, energy


@pytest.mark.parametrize("row_chunk", [None, 37])
def test_matches_scipy_per_query(row_chunk):
    A, B, _ = _planted(300, 12, signal_sd=1.0, noise_sd=1.0, seed=1, offset=5.0)
    r = replica_agreement(A, B, row_chunk=row_chunk, col_block=5)
    sp, pe, energy = _brute(A, B)
    # float64 throughout; the chunked co-moment merge (Chan et al.) is exact up to a few ulps of
    # the per-column sums, so 1e-12 leaves a margin of ~1e3 over the ~1e-15 round-off
    np.testing.assert_allclose(r["per_query"]["spearman"], sp, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["per_query"]["pearson"], pe, rtol=0, atol=1e-12)
    assert r["shared_energy"] == pytest.approx(energy, abs=1e-12)
    assert r["spearman"]["q50"] == pytest.approx(np.median(sp), abs=1e-12)
    assert r["pearson"]["q10"] == pytest.approx(np.quantile(pe, 0.1), abs=1e-12)


def test_identical_replicas_agree_fully_and_shared_part_is_the_matrix():
    A, _, _ = _planted(200, 8, signal_sd=1.0, noise_sd=0.5, seed=2, offset=1.0)
    r = replica_agreement(A, A.copy())
    assert r["spearman"]["q10"] == pytest.approx(1.0, abs=1e-12)
    assert r["shared_energy"] == pytest.approx(1.0, abs=1e-12)
    ref = reliability(A, precision="float64")
    for k in ("r1", "r2_5", "c_bar", "rho_bar"):  # the shared part of two identical replicas is A itself
        assert r["shared"][k] == pytest.approx(ref[k], abs=1e-10)


def test_independent_noise_shares_nothing():
    rng = np.random.default_rng(3)
    n, q = 2000, 30
    A, B = rng.standard_normal((n, q)), rng.standard_normal((n, q))
    r = replica_agreement(A, B)
    # each correlation has sd ~ 1/sqrt(n) = 0.022; their median over 30 queries ~ 0.022 * 1.25 / sqrt(30) = 0.005
    assert abs(r["spearman"]["q50"]) < 5 * 0.022 * 1.25 / np.sqrt(q)
    # tr(A^T B) ~ N(0, n q) against an energy of 2 n q: |shared| ~ 1 / sqrt(n q) = 0.004
    assert abs(r["shared_energy"]) < 5 / np.sqrt(n * q)
    assert verdict({**reliability(A), "q": q, "n": n, "replica": r})["verdict"] == "noisy"


@pytest.mark.parametrize("noise_sd", [0.5, 1.0, 2.0])
def test_shared_signal_plus_noise_recovers_the_signal_share(noise_sd):
    n, q = 4000, 20
    A, B, S = _planted(n, q, signal_sd=1.0, noise_sd=noise_sd, seed=4)
    r = replica_agreement(A, B)
    share = 1.0 / (1.0 + noise_sd**2)  # signal variance over signal + noise
    # the per-query Pearson estimates the share with sd ~ (1 - share^2) / sqrt(n) <= 0.016; the mean over
    # 20 queries and the pooled energy share are within ~0.004: 0.02 is five of those
    assert r["pearson"]["mean"] == pytest.approx(share, abs=0.02)
    assert r["shared_energy"] == pytest.approx(share, abs=0.02)
    # the shared part's Gram estimates S^T S: its diagnostics approach S's own
    ref = reliability(S, precision="float64")
    assert r["shared"]["r1"] == pytest.approx(ref["r1"], abs=0.03)


def test_shared_part_sees_a_common_axis_that_noise_hides():
    """Replicas = one ranking shared by every query + strong independent noise: each replica's own r1 is
    low (noise dominates), the shared part's r1 is high (the common axis is what survives)."""
    rng = np.random.default_rng(5)
    n, q = 3000, 16
    common = rng.standard_normal((n, 1)) @ np.ones((1, q))
    A = common + 3 * rng.standard_normal((n, q))
    B = common + 3 * rng.standard_normal((n, q))
    r = replica_agreement(A, B)
    raw = reliability(A)["r1"]
    # raw: the axis carries n q of 10 n q, r1 ~ 0.1 (+ the noise's own top share); shared: n q against the
    # positive eigenvalues of the noise cross Gram, each ~ 9 sqrt(n q) (8 of 16 positive): r1 ~ 1 / (1 + 72 /
    # sqrt(n q)) = 0.87. Cut-offs halfway to the alternatives.
    assert raw < 0.3
    assert r["shared"]["r1"] > 0.75 > 3 * raw


def test_gaussian_reference_is_noisy_with_the_best_diagnostics():
    ref = gaussian_reference(945, 40, random_state=11)
    v = verdict(ref)
    assert v["verdict"] == "noisy"
    assert ref["r1"] < 0.1 and ref["rho_bar"] < 0.1  # the best diagnostics: that is the point of the row


def test_spearman_brown():
    assert spearman_brown(0.5, 1) == pytest.approx(0.5)
    assert spearman_brown(0.2, 3) == pytest.approx(0.6 / 1.4)


def test_shape_mismatch_names_the_replica():
    with pytest.raises(ValueError, match="replica has shape"):
        replica_agreement(np.ones((5, 3)), np.ones((4, 3)), source_b="replica.npy")


def test_constant_column_is_undefined():
    rng = np.random.default_rng(6)
    A, B = rng.standard_normal((50, 4)), rng.standard_normal((50, 4))
    A[:, 2] = 1.0
    r = replica_agreement(A, B)
    assert r["n_undefined"] == 1
    assert np.isnan(r["per_query"]["spearman"][2])
