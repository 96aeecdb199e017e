"""Tests for aria.evaluation.homogeneity against independent references (scipy, brute force)."""

from __future__ import annotations

import itertools
import math
import statistics
import warnings

import numpy as np
import pytest
import zarr
from scipy.spatial.distance import pdist, seuclidean, squareform

from aria.audio.features import chord_root_motion as root_motion
from aria.evaluation.homogeneity import (
    SIG_Z,
    SequenceTable,
    channel_homogeneity,
    feature_scales,
    homogeneity_table,
    lcs_length,
    lcs_similarity,
    mean_pairwise_similarity,
    nested_channel_homogeneity,
    null_distribution,
    pairwise_similarity,
    random_groups,
    summarize,
    top_k_rows,
    zscores,
)
from aria.io.stores import ScoreWriter


# --------------------------------------------------------------------------- #
# Standardized Euclidean similarity
# --------------------------------------------------------------------------- #
def test_feature_scales_population_std_and_constant_dims():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(37, 5))
    X[:, 2] = 0.1  # constant, not exactly representable: naive std is ~1e-17
    s = feature_scales(X)
    ref = X.std(axis=0, ddof=0)
    np.testing.assert_allclose(np.delete(s, 2), np.delete(ref, 2), rtol=1e-12)
    assert s[2] == 0.0
    assert np.array_equal(s > 0, [True, True, False, True, True])
    # 1-D feature behaves as d = 1
    np.testing.assert_allclose(feature_scales(X[:, 0]), [X[:, 0].std()])
    with pytest.raises(ValueError):
        feature_scales(np.array([[1.0, np.nan]]))


def test_pairwise_similarity_matches_scipy_seuclidean():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 6)) * [1, 10, 0.1, 3, 1, 1]
    X[:, 4] = 2.0  # constant -> dropped
    s = feature_scales(X)
    keep = s > 0
    grp = X[rng.choice(200, 12, replace=False)]
    D = squareform(pdist(grp[:, keep], "seuclidean", V=s[keep] ** 2))
    np.testing.assert_allclose(pairwise_similarity(grp, s, keep), 1 / (1 + D), rtol=1e-12)
    np.testing.assert_allclose(pairwise_similarity(grp, s), 1 / (1 + D), rtol=1e-12)
    # one pair via scipy.spatial.distance.seuclidean
    d01 = seuclidean(grp[0, keep], grp[1, keep], s[keep] ** 2)
    assert pairwise_similarity(grp, s)[0, 1] == pytest.approx(1 / (1 + d01), rel=1e-12)


def test_mean_pairwise_similarity_matches_pdist_over_groups():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 9))
    s = feature_scales(X)
    groups = random_groups(300, 7, 40, random_state=3)
    H = mean_pairwise_similarity(X, groups, s, s > 0)
    ref = [np.mean(1 / (1 + pdist(X[g], "seuclidean", V=s**2))) for g in groups]
    assert H.shape == (40,)
    np.testing.assert_allclose(H, ref, rtol=1e-12)
    # duplicated items have distance exactly 0 -> similarity exactly 1
    X2 = np.repeat(X[:1], 3, axis=0)
    assert mean_pairwise_similarity(X2, np.array([[0, 1, 2]]), s)[0] == 1.0


def test_hand_computed_three_items():
    X = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    # unit scales: distances 3, 4, 5
    H = mean_pairwise_similarity(X, np.array([[0, 1, 2]]), np.array([1.0, 1.0]))
    assert H[0] == pytest.approx((1 / 4 + 1 / 5 + 1 / 6) / 3)
    # scales (1, 2): distances 3, 2, sqrt(9 + 4)
    H = mean_pairwise_similarity(X, np.array([[2, 0, 1]]), np.array([1.0, 2.0]))
    assert H[0] == pytest.approx((1 / 4 + 1 / 3 + 1 / (1 + math.sqrt(13))) / 3)
    # dropping dim 1 (keep mask): distances 3, 0, 3
    H = mean_pairwise_similarity(X, np.array([[0, 1, 2]]), np.array([1.0, 1.0]), [True, False])
    assert H[0] == pytest.approx((1 / 4 + 1 + 1 / 4) / 3)


def test_groups_validation():
    X = np.zeros((5, 1))
    s = np.array([1.0])
    with pytest.raises(ValueError):
        mean_pairwise_similarity(X, np.array([[0], [1]]), s)  # K = 1: no pairs
    with pytest.raises(IndexError):
        mean_pairwise_similarity(X, np.array([[0, 5]]), s)


# --------------------------------------------------------------------------- #
# Sequence features
# --------------------------------------------------------------------------- #
def _lcs_dp(a, b):
    L = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            L[i + 1][j + 1] = L[i][j] + 1 if x == y else max(L[i][j + 1], L[i + 1][j])
    return L[-1][-1]


def _lcs_brute(a, b):
    """Longest subsequence of a that is also a subsequence of b (itertools)."""

    def is_subseq(sub, seq):
        it = iter(seq)
        return all(x in it for x in sub)

    for r in range(min(len(a), len(b)), 0, -1):
        if any(is_subseq(c, b) for c in itertools.combinations(a, r)):
            return r
    return 0


def test_lcs_hand_cases():
    A, B = "ABCBDAB", "BDCABA"  # textbook example, LCS = 4 (e.g. BCBA)
    a = [ord(c) for c in A]
    b = [ord(c) for c in B]
    assert lcs_length(a, b) == 4
    assert lcs_similarity(a, b) == pytest.approx(4 / 7)
    assert lcs_similarity([], []) == 0.0
    assert lcs_similarity([1, 2], []) == 0.0
    assert lcs_similarity([7, 2, 8], [7, 2, 8]) == 1.0
    assert lcs_similarity([7, 2, 8], [2, 8, 7]) == pytest.approx(2 / 3)
    assert lcs_similarity([5, 5, 5], [5]) == pytest.approx(1 / 3)
    assert lcs_similarity([1, 2, 3], [4, 5]) == 0.0
    # long sequences (beyond one machine word) against the DP reference
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 4, 150), rng.integers(0, 4, 97)
    assert lcs_length(x, y) == _lcs_dp(x.tolist(), y.tolist())


def test_lcs_vs_brute_force_tiny():
    rng = np.random.default_rng(5)
    for _ in range(300):
        a = rng.integers(0, 3, rng.integers(0, 7)).tolist()
        b = rng.integers(0, 3, rng.integers(0, 7)).tolist()
        ref = _lcs_brute(a, b)
        assert ref == _lcs_dp(a, b)
        assert lcs_length(a, b) == ref
        assert lcs_length(b, a) == ref
        m = max(len(a), len(b))
        assert lcs_similarity(a, b) == (0.0 if m == 0 else ref / m)


@pytest.mark.parametrize("max_len", [6, 64, 65, 200])
def test_sequence_table_batched_lcs_vs_dp(max_len):
    """The vectorized bit-parallel LCS against the textbook DP, for one machine word, exactly
    64 bits, and several words with carries; with empty sequences, repeats and any alphabet."""
    rng = np.random.default_rng(max_len)
    seqs = [rng.integers(-3, 4, rng.integers(0, max_len + 1)) * 7 for _ in range(40)]
    seqs[3] = np.array([], dtype=np.int64)
    seqs[4] = np.full(max_len, 14)  # one symbol repeated: LCS = count of that symbol in the other
    table = SequenceTable(seqs)
    assert table.words == -(-max(len(x) for x in seqs) // 64)
    a, b = np.triu_indices(len(seqs), 0)
    got = table.lcs_lengths(a, b, batch=97)  # batches that cut through length groups
    ref = np.array([_lcs_dp(seqs[i].tolist(), seqs[j].tolist()) for i, j in zip(a, b)])
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(table.lcs_lengths(b, a), ref)  # symmetric
    sims = table.similarities(a, b)
    np.testing.assert_array_equal(sims, [lcs_similarity(seqs[i], seqs[j]) for i, j in zip(a, b)])


def test_sequence_table_falls_back_when_the_table_is_too_big(monkeypatch):
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 500, rng.integers(0, 30)) for _ in range(20)]
    monkeypatch.setattr(SequenceTable, "MAX_BYTES", 1000)
    table = SequenceTable(seqs)
    assert table.match is None
    a, b = np.triu_indices(20, 1)
    np.testing.assert_array_equal(table.similarities(a, b), [lcs_similarity(seqs[i], seqs[j]) for i, j in zip(a, b)])


def test_nested_homogeneity_equals_each_prefix_separately():
    """One pass over the largest groups gives, for each K, what the groups' first K
    members give on their own (vector features via pdist, sequences via the scalar LCS)."""
    rng = np.random.default_rng(6)
    n = 60
    X = rng.normal(size=(n, 3))
    seqs = [rng.integers(1, 12, rng.integers(0, 80)) for _ in range(n)]
    feats = {"x": X, "chords": seqs}
    chans = {"a": ["x"], "b": ["x", "chords"]}
    scales = {"x": feature_scales(X), "chords": None}
    groups = np.stack([rng.choice(n, 9, replace=False) for _ in range(25)])
    groups[1] = groups[0]  # repeated groups share their pairs (deduplicated)
    nested = nested_channel_homogeneity(feats, chans, groups, (2, 5, 9), scales)
    for K in (2, 5, 9):
        ref_x = [np.mean(1 / (1 + pdist(X[g] / scales["x"]))) for g in groups[:, :K]]
        ref_c = [
            np.mean([lcs_similarity(seqs[i], seqs[j]) for i, j in itertools.combinations(g, 2)]) for g in groups[:, :K]
        ]
        H_c, H_f = nested[K]
        np.testing.assert_allclose(H_f["x"], ref_x, rtol=1e-12)
        np.testing.assert_allclose(H_f["chords"], ref_c, rtol=1e-12)
        np.testing.assert_allclose(H_c["b"], (np.array(ref_x) + ref_c) / 2, rtol=1e-12)
    with pytest.raises(ValueError, match="group sizes"):
        nested_channel_homogeneity(feats, chans, groups, (10,), scales)


def test_root_motion():
    assert root_motion([0, 7, 9, 5]).tolist() == [7, 2, 8]  # C G Am F
    # repeats merged, no-chord (negative) dropped
    assert root_motion([0, 0, -1, 7, 7, -1, 9, 5, 5, -1]).tolist() == [7, 2, 8]
    # a no-chord gap inside a sustained chord is not a 0-interval motion
    assert root_motion([0, -1, 0, 5]).tolist() == [5]
    assert root_motion([]).tolist() == []
    assert root_motion([3]).tolist() == []
    assert root_motion([-1, -1]).tolist() == []
    # transposition invariance: same progression up a whole tone
    assert root_motion([2, 9, 11, 7]).tolist() == [7, 2, 8]
    assert root_motion([11, 0]).tolist() == [1] and root_motion([0, 11]).tolist() == [11]


def test_sequence_feature_in_channel_homogeneity():
    seqs = [root_motion(r) for r in ([0, 7, 9, 5], [2, 9, 11, 7], [0, 5, 7, 0], [], [0, 7])]
    groups = np.array([[0, 1, 2], [2, 3, 4]])
    X = np.arange(5.0)[:, None]
    feats = {"chords": seqs, "x": X}
    chans = {"harmonic": ["chords"], "both": ["chords", "x"]}
    H_c, H_f = channel_homogeneity(feats, chans, groups, {"x": feature_scales(X)})
    ref = [np.mean([lcs_similarity(seqs[a], seqs[b]) for a, b in itertools.combinations(g, 2)]) for g in groups]
    np.testing.assert_allclose(H_f["chords"], ref)
    np.testing.assert_allclose(H_c["harmonic"], ref)
    np.testing.assert_allclose(H_c["both"], (H_f["chords"] + H_f["x"]) / 2)
    assert H_f["chords"][0] == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)


# --------------------------------------------------------------------------- #
# Random groups and the null
# --------------------------------------------------------------------------- #
def test_random_groups_reproducible_without_replacement():
    g1 = random_groups(30, 8, 200, random_state=7)
    g2 = random_groups(30, 8, 200, random_state=7)
    g3 = random_groups(30, 8, 200, random_state=8)
    assert g1.shape == (200, 8) and np.issubdtype(g1.dtype, np.integer)
    assert np.array_equal(g1, g2)
    assert not np.array_equal(g1, g3)
    assert g1.min() >= 0 and g1.max() < 30
    assert all(len(set(row)) == 8 for row in g1.tolist())
    # K == n_pool: each group is a permutation of the pool
    full = random_groups(5, 5, 10, random_state=0)
    assert all(sorted(r) == list(range(5)) for r in full.tolist())
    with pytest.raises(ValueError):
        random_groups(5, 6, 1, random_state=0)


def test_random_groups_uniform_marginals():
    n, K, R = 10, 3, 6000
    g = random_groups(n, K, R, random_state=11)
    counts = np.bincount(g.ravel(), minlength=n)
    expected = R * K / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 35.0  # chi2 with 9 dof: P(>35) ~ 6e-5


def _small_pool(seed=0, n=40):
    rng = np.random.default_rng(seed)
    feats = {
        "a": rng.normal(size=(n, 4)),
        "b": rng.exponential(size=(n, 1)),
        "c": np.c_[rng.normal(size=n), np.full(n, 3.0)],  # one constant dim
    }
    chans = {"x": ["a"], "y": ["b", "c"], "z": ["a", "c"]}
    return feats, chans


def test_null_vs_brute_force_loop():
    feats, chans = _small_pool()
    n, R, seed = 40, 50, 123
    null = null_distribution(feats, chans, ks=[3, 6], n_groups=R, random_state=seed)
    assert null["ks"] == (3, 6) and null["n_pool"] == n and null["n_groups"] == R
    for K in (3, 6):
        groups = random_groups(n, K, R, random_state=[seed, K])
        Hf = {f: [] for f in feats}
        for g in groups.tolist():
            for f, X in feats.items():
                s = X.std(axis=0)
                keep = s > 1e-9
                sims = [
                    1 / (1 + seuclidean(X[i, keep], X[j, keep], s[keep] ** 2)) for i, j in itertools.combinations(g, 2)
                ]
                Hf[f].append(sum(sims) / len(sims))
        for f in feats:
            assert null["by_k"][K]["mu_f"][f] == pytest.approx(statistics.fmean(Hf[f]), rel=1e-10)
            assert null["by_k"][K]["sigma_f"][f] == pytest.approx(statistics.pstdev(Hf[f]), rel=1e-8)
        for c, fs in chans.items():
            Hc = [statistics.fmean(Hf[f][r] for f in fs) for r in range(R)]
            assert null["by_k"][K]["mu_c"][c] == pytest.approx(statistics.fmean(Hc), rel=1e-10)
            assert null["by_k"][K]["sigma_c"][c] == pytest.approx(statistics.pstdev(Hc), rel=1e-8)


def test_null_seeds_per_k_are_independent_of_requested_ks():
    feats, chans = _small_pool(1)
    a = null_distribution(feats, chans, ks=[5], n_groups=30, random_state=9)
    b = null_distribution(feats, chans, ks=[10, 5], n_groups=30, random_state=9)
    c = null_distribution(feats, chans, ks=[5], n_groups=30, random_state=10)
    assert a["by_k"][5] == b["by_k"][5]
    assert a["by_k"][5] != c["by_k"][5]


# --------------------------------------------------------------------------- #
# Top-K rows
# --------------------------------------------------------------------------- #
def _ref_topk(S, K):
    # stable sort on -S: descending score, ties by lower row index
    return np.argsort(-S, axis=0, kind="stable")[:K].T


@pytest.mark.parametrize("row_chunk", [None, 1, 7, 13, 50, 1000])
def test_top_k_rows_numpy_vs_argsort(row_chunk):
    rng = np.random.default_rng(6)
    S = rng.normal(size=(50, 9))
    S_ties = rng.integers(0, 4, size=(50, 9)).astype(float)  # heavy ties
    S_ties[:, 0] = 0.0  # all tied
    for M in (S, S_ties):
        for K in (1, 5, 12, 50):
            idx = top_k_rows(M, K, row_chunk=row_chunk)
            assert idx.shape == (9, K)
            np.testing.assert_array_equal(idx, _ref_topk(M, K))
    idx, sc = top_k_rows(S, 5, row_chunk=row_chunk, return_scores=True)
    np.testing.assert_allclose(sc, np.take_along_axis(S, idx.T, 0).T)
    assert np.all(np.diff(sc, axis=1) <= 0)


def test_top_k_rows_zarr_store(tmp_path):
    rng = np.random.default_rng(7)
    N, Q = 103, 11
    S = rng.normal(size=(N, Q)).astype(np.float32)
    S[40:60, 3] = S[10, 3]  # ties in one column
    path = tmp_path / "scores" / "m.zarr"
    with ScoreWriter(
        path, [f"r{i}" for i in range(N)], [f"q{i}" for i in range(Q)], row_chunk=10
    ) as w:  # 10 does not divide 103
        for start in range(0, N, 10):
            w.write(start, S[start : start + 10])
    arr = zarr.open_group(str(path), mode="r")["scores"]
    assert arr.chunks[0] == 10
    for K in (1, 10, 37, N):
        ref = _ref_topk(S.astype(np.float64), K)
        np.testing.assert_array_equal(top_k_rows(arr, K), ref)
        np.testing.assert_array_equal(top_k_rows(arr, K, row_chunk=17), ref)
    # the same through a store path (aria.io.stores.open_scores)
    for K in (1, 37):
        np.testing.assert_array_equal(top_k_rows(path, K), _ref_topk(S.astype(np.float64), K))


def test_top_k_rows_errors():
    with pytest.raises(ValueError):
        top_k_rows(np.zeros((4, 2)), 5)
    with pytest.raises(ValueError):
        top_k_rows(np.zeros((4, 2)), 0)
    bad = np.zeros((4, 2))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="row 2"):
        top_k_rows(bad, 2)


# --------------------------------------------------------------------------- #
# z-scores, summaries, the full table
# --------------------------------------------------------------------------- #
def test_zscores_and_summarize():
    z = zscores([1.0, 2.0, 4.0], 2.0, 2.0)
    np.testing.assert_allclose(z, [-0.5, 0.0, 1.0])
    assert summarize([-1.0, 0.0, 0.5, 2.0]) == {"mu_z": 0.375, "pos": 0.5, "sig": 0.25}
    assert summarize([SIG_Z])["sig"] == 0.0  # strictly greater
    with pytest.warns(RuntimeWarning, match="degenerate"):
        z = zscores([1.0, 1.0], 1.0, 0.0)
    assert np.isnan(z).all()
    assert all(math.isnan(v) for v in summarize(z).values())


def _planted(n_clusters=8, per=50, Q=40, seed=0):
    rng = np.random.default_rng(seed)
    n = n_clusters * per
    lab = np.repeat(np.arange(n_clusters), per)
    centers = rng.normal(scale=3.0, size=(n_clusters, 5))
    feats = {
        "clustered": centers[lab] + rng.normal(size=(n, 5)),  # depends on the cluster
        "noise": rng.normal(size=(n, 3)),  # independent of it
        "flat": np.ones((n, 2)),  # constant -> degenerate
    }
    chans = {"melody": ["clustered"], "rhythm": ["noise"], "dead": ["flat"]}
    qlab = rng.integers(0, n_clusters, Q)
    return feats, chans, lab, qlab


def test_planted_structure_and_random_scores():
    K, R = 10, 1000
    feats, chans, lab, qlab = _planted(Q=400)
    null = null_distribution(feats, chans, ks=[5, K], n_groups=R, random_state=0)
    rng = np.random.default_rng(1)
    n, Q = lab.size, qlab.size

    # planted: a query's top-K are items of its own cluster
    S = (lab[:, None] == qlab[None, :]) + 0.1 * rng.random((n, Q))
    with pytest.warns(RuntimeWarning, match="degenerate"):
        tab = homogeneity_table(S, feats, chans, null, ks=[K])
    res = tab["by_k"][K]
    assert res["groups"].shape == (Q, K)
    assert np.all(lab[res["groups"]] == qlab[:, None])
    assert np.all(res["z_c"]["melody"] > 3)
    assert res["summary"]["melody"]["pos"] == 1.0 and res["summary"]["melody"]["sig"] == 1.0
    assert np.isnan(res["z_c"]["dead"]).all()
    assert math.isnan(res["summary"]["dead"]["mu_z"])

    # random scores: top-K groups are random K-subsets, so z ~ null.
    # mu_z is a mean over Q (near-)independent z's (se 1/sqrt(Q)) shifted by the
    # null-mean estimation error (se 1/sqrt(R)): se = sqrt(1/Q + 1/R) ~ 0.059;
    # allow 4 se. Pos has se 0.5/sqrt(Q) = 0.025 (allow 4 se).
    se = math.sqrt(1 / Q + 1 / R)
    S = rng.normal(size=(n, Q))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tab = homogeneity_table(S, feats, chans, null)
    assert tab["ks"] == (5, K)
    for k in (5, K):
        for ch in ("melody", "rhythm"):
            summ = tab["by_k"][k]["summary"][ch]
            assert abs(summ["mu_z"]) < 4 * se, (k, ch, summ)
            assert abs(summ["pos"] - 0.5) < 0.1, (k, ch, summ)
            assert summ["sig"] < 0.15, (k, ch, summ)
    # the K=5 groups are the prefix of the K=10 groups
    np.testing.assert_array_equal(tab["by_k"][K]["groups"][:, :5], tab["by_k"][5]["groups"])


def test_homogeneity_table_matches_manual_and_store(tmp_path):
    feats, chans, lab, qlab = _planted(n_clusters=4, per=15, Q=6, seed=2)
    del feats["flat"], chans["dead"]
    null = null_distribution(feats, chans, ks=[4], n_groups=200, random_state=5)
    rng = np.random.default_rng(3)
    S = rng.normal(size=(lab.size, qlab.size)).astype(np.float32)
    path = tmp_path / "s.zarr"
    with ScoreWriter(path, range(lab.size), [f"q{i}" for i in range(qlab.size)], row_chunk=7) as w:
        w.write(0, S)
    arr = zarr.open_group(str(path), mode="r")["scores"]
    tab = homogeneity_table(arr, feats, chans, null)
    assert tab["col_ids"] is None
    res = tab["by_k"][4]
    groups = _ref_topk(S.astype(np.float64), 4)
    np.testing.assert_array_equal(res["groups"], groups)
    scales = {f: feature_scales(X) for f, X in feats.items()}
    for c, fs in chans.items():
        Hc = np.mean([mean_pairwise_similarity(feats[f], groups, scales[f]) for f in fs], axis=0)
        z = (Hc - null["by_k"][4]["mu_c"][c]) / null["by_k"][4]["sigma_c"][c]
        np.testing.assert_allclose(res["H_c"][c], Hc)
        np.testing.assert_allclose(res["z_c"][c], z)
        assert res["summary"][c] == summarize(z)
    with pytest.raises(KeyError):
        homogeneity_table(S, feats, chans, null, ks=[5])
    with pytest.raises(ValueError):
        homogeneity_table(S[:-1], feats, chans, null)
    # through the store path: same numbers plus the query ids
    tab_p = homogeneity_table(path, feats, chans, null)
    assert tab_p["col_ids"].tolist() == [f"q{i}" for i in range(qlab.size)]
    for c in chans:
        np.testing.assert_array_equal(tab_p["by_k"][4]["z_c"][c], res["z_c"][c])
