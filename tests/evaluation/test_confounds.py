"""Genre and same-piece confounds (docs/spec.md §6-7): planted pools and brute-force references."""

from itertools import combinations

import numpy as np
import pytest

from aria.evaluation.confounds import (
    composition,
    genre_breakdown,
    null_same_piece_share,
    same_piece_share,
    stratified_groups,
    stratified_zscores,
)
from aria.evaluation.homogeneity import channel_homogeneity, homogeneity_table, null_distribution


def _two_genre_pool(n=240, seed=0):
    """Half genre A, half genre B; the 'style' feature separates the genres, 'detail' is
    independent of genre (it is what a retriever beyond genre would match)."""
    rng = np.random.default_rng(seed)
    labels = np.array(["A"] * (n // 2) + ["B"] * (n - n // 2))
    style = np.where(labels == "A", 0.0, 4.0)[:, None] + rng.normal(size=(n, 3))
    detail = rng.normal(size=(n, 2))
    feats = {"style": style, "detail": detail}
    channels = {"style": ["style"], "detail": ["detail"]}
    return labels, feats, channels


def test_genre_only_retriever_is_explained_by_the_stratified_null():
    labels, feats, channels = _two_genre_pool()
    null = null_distribution(feats, channels, ks=[10], n_groups=400, random_state=3)
    rng = np.random.default_rng(9)
    Q = 40
    q_genre = np.array(["A", "B"] * (Q // 2))
    # a genre-only retriever: the query's genre's items get a high score, in random order
    S = rng.random((len(labels), Q)) + (labels[:, None] == q_genre[None, :]) * 10.0
    tab = homogeneity_table(S, feats, channels, null)["by_k"][10]
    plain = tab["summary"]["style"]["mu_z"]
    strat = stratified_zscores(
        feats, channels, null["scales"], tab["groups"], labels, tab["H_c"], n_groups=400, random_state=5
    )
    assert plain > 3.0  # genre homogeneity looks like a strong effect against the plain null
    assert abs(strat["summary"]["style"]["mu_z"]) < 0.4  # and vanishes against the genre mix
    assert abs(strat["summary"]["detail"]["mu_z"]) < 0.4
    assert strat["n_mixes"] == 2  # all-A and all-B groups


def test_a_retriever_beyond_genre_keeps_its_stratified_z():
    labels, feats, channels = _two_genre_pool(seed=1)
    null = null_distribution(feats, channels, ks=[10], n_groups=400, random_state=3)
    Q = 30
    rng = np.random.default_rng(2)
    # queries: a pool item's detail; the retriever ranks same-genre items by detail distance
    anchor = rng.choice(len(labels), size=Q, replace=False)
    d = np.linalg.norm(feats["detail"][:, None, :] - feats["detail"][anchor][None, :, :], axis=2)
    S = -d + 10.0 * (labels[:, None] == labels[anchor][None, :])
    tab = homogeneity_table(S, feats, channels, null)["by_k"][10]
    strat = stratified_zscores(feats, channels, null["scales"], tab["groups"], labels, n_groups=400, random_state=5)
    assert strat["summary"]["detail"]["mu_z"] > 2.0


def test_stratified_z_equals_a_brute_force_recomputation():
    labels, feats, channels = _two_genre_pool(n=60, seed=4)
    null = null_distribution(feats, channels, ks=[5], n_groups=50, random_state=0)
    groups = np.array([[0, 1, 2, 40, 41], [3, 4, 50, 51, 52], [5, 6, 7, 8, 9]])
    res = stratified_zscores(feats, channels, null["scales"], groups, labels, n_groups=300, random_state=11)
    H, _ = channel_homogeneity(feats, channels, groups, null["scales"])
    from aria.seeding import stable_seed

    for q, g in enumerate(groups):
        mix = composition(g, labels)
        rand = stratified_groups(labels, mix, 300, random_state=[11, stable_seed(0, str(mix))])
        Hr, _ = channel_homogeneity(feats, channels, rand, null["scales"])
        for c in channels:
            want = (H[c][q] - Hr[c].mean()) / Hr[c].std()
            assert res["z_c"][c][q] == pytest.approx(want, rel=1e-12)


def test_stratified_groups_keep_the_mix_and_the_seed():
    labels = np.array(list("AAAAABBBBBBBCC"))
    mix = (("A", 2), ("B", 3), ("C", 1))
    g1 = stratified_groups(labels, mix, 200, random_state=7)
    g2 = stratified_groups(labels, mix, 200, random_state=7)
    np.testing.assert_array_equal(g1, g2)
    for row in g1:
        assert len(set(row.tolist())) == 6
        assert composition(row, labels) == mix
    # uniform within a stratum: every B item is used about 3/7 of the time
    counts = np.bincount(g1.ravel(), minlength=len(labels))[5:12]
    assert np.all(np.abs(counts / 200 - 3 / 7) < 0.12)
    with pytest.raises(ValueError, match="needs 3 items of 'C'"):
        stratified_groups(labels, (("C", 3),), 1, random_state=0)


def test_genre_breakdown_matches_numpy():
    rng = np.random.default_rng(5)
    z = rng.normal(size=25)
    z[3] = np.nan
    genres = np.array(["jazz", "folk", "baroque", "folk", "jazz"] * 5)
    out = genre_breakdown(z, genres)
    means = []
    for g in ("baroque", "folk", "jazz"):
        zz = z[genres == g]
        zz_f = zz[np.isfinite(zz)]
        b = out["by_genre"][g]
        assert b["n"] == len(zz)
        assert b["mu_z"] == pytest.approx(zz_f.mean())
        assert b["pos"] == pytest.approx(np.mean(zz_f > 0))
        assert b["sig"] == pytest.approx(np.mean(zz_f > 1.645))
        means.append(zz_f.mean())
    assert out["sd_mu_z"] == pytest.approx(np.std(means))
    assert genre_breakdown(z[:3], ["a", "a", "a"])["sd_mu_z"] is None


def test_same_piece_share_brute_force():
    rng = np.random.default_rng(6)
    pieces = rng.choice(["p1", "p2", "p3", "p4"], size=12)
    groups = np.array([rng.choice(12, size=5, replace=False) for _ in range(20)])
    got = same_piece_share(groups, pieces)
    for q, g in enumerate(groups):
        pairs = list(combinations(g.tolist(), 2))
        assert got[q] == pytest.approx(np.mean([pieces[a] == pieces[b] for a, b in pairs]))


def test_null_same_piece_share_is_the_exact_expectation():
    pieces = np.array(["a", "a", "a", "b", "b", "c", "d", "d", "d", "d"])
    K = 4
    # every K-subset is equally likely under the uniform null: enumerate them all
    shares = same_piece_share(np.array(list(combinations(range(len(pieces)), K))), pieces)
    assert null_same_piece_share(pieces) == pytest.approx(shares.mean(), rel=1e-12)
