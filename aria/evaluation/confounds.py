"""Confounds that inflate homogeneity without attribution (docs/spec.md §6-7, paper App. B.6).

Two things make a top-K group look homogeneous for reasons that have nothing to do with
what the model learned from its training data:

Genre
    A retriever that only finds "the query's genre" produces groups that are homogeneous
    along every aspect that differs between genres. Two checks:

    * :func:`genre_breakdown`: n, mean z, Pos and Sig per *query genre*, and the SD of the
      mean z across genres (a method that works for one genre only shows a large SD).
    * :func:`stratified_zscores`: a *genre-stratified null*. For each query, random groups
      are drawn with the same genre mix as its G_K(q) (``c_g`` items of genre ``g``,
      uniformly without replacement within each genre), and ``z_strat = (H - mu_strat) /
      sigma_strat``. A genre-only retriever has a large plain z and z_strat about 0; a
      retriever that finds similarity beyond genre keeps z_strat > 0.

Same piece
    In the symbolic experiment the pool items are segments (about three per piece); two
    segments of one piece are similar by construction. :func:`same_piece_share` is the share
    of G_K's K(K-1)/2 pairs that come from one piece, and :func:`null_same_piece_share`
    its exact expectation for a uniform random K-subset of the pool,
    ``sum_p n_p (n_p - 1) / (N (N - 1))`` (independent of K).

Conventions: ``groups`` is ``(Q, K)`` pool indices (as from
:func:`aria.evaluation.homogeneity.top_k_rows`); ``labels`` / ``pieces`` are ``(n_pool,)``
strings in pool order. Standard deviations are population (``ddof = 0``), as in the null.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from aria.evaluation.homogeneity import _zscores, channel_homogeneity, prepare_features, summarize
from aria.seeding import stable_seed

__all__ = [
    "genre_breakdown",
    "composition",
    "stratified_groups",
    "stratified_zscores",
    "same_piece_share",
    "null_same_piece_share",
]


def genre_breakdown(z, genres) -> dict:
    """Per-query-genre summaries of one channel's z-scores.

    Parameters
    ----------
    z : array (Q,)
        z-scores (``nan`` entries are ignored, as in :func:`summarize`).
    genres : sequence of str, length Q
        Genre of each query (of the held-out piece it was generated from).

    Returns
    -------
    dict
        ``{"by_genre": {genre: {"n", "mu_z", "pos", "sig"}}, "sd_mu_z": float or None}``.
        ``n`` counts the queries of the genre (finite z or not); ``sd_mu_z`` is the
        population SD of the genres' mean z over genres with a finite mean, ``None`` when
        fewer than two genres have one.
    """
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    genres = np.asarray(genres).astype(str)
    if len(genres) != len(z):
        raise ValueError(f"{len(genres)} query genres for {len(z)} z-scores")
    by = {}
    for g in sorted(set(genres.tolist())):
        sel = genres == g
        by[g] = {"n": int(sel.sum()), **summarize(z[sel])}
    means = [v["mu_z"] for v in by.values() if np.isfinite(v["mu_z"])]
    return {"by_genre": by, "sd_mu_z": float(np.std(means)) if len(means) >= 2 else None}


def composition(group, labels) -> tuple[tuple[str, int], ...]:
    """The label mix of one group: sorted ``((label, count), ...)``."""
    labels = np.asarray(labels)
    return tuple(sorted(Counter(labels[np.asarray(group)].astype(str).tolist()).items()))


def stratified_groups(labels, comp, n_groups: int, *, random_state) -> np.ndarray:
    """Random groups with a fixed label mix.

    Parameters
    ----------
    labels : (n_pool,) str
    comp : sequence of ``(label, count)``
        From :func:`composition`; the group size is the sum of the counts.
    n_groups : int
    random_state : int, sequence of int, SeedSequence or Generator

    Returns
    -------
    groups : int64 array (n_groups, K)
        Each row holds ``count`` distinct items of each ``label``, drawn uniformly without
        replacement among the pool items of that label, independently per row.
    """
    labels = np.asarray(labels).astype(str)
    rng = np.random.default_rng(random_state)
    members = {g: np.flatnonzero(labels == g) for g, _ in comp}
    for g, c in comp:
        if c > len(members[g]):
            raise ValueError(f"stratified group needs {c} items of {g!r}, the pool has {len(members[g])}")
    K = sum(c for _, c in comp)
    out = np.empty((int(n_groups), K), dtype=np.int64)
    for r in range(int(n_groups)):
        out[r] = np.concatenate([rng.choice(members[g], size=c, replace=False) for g, c in comp])
    return out


def stratified_zscores(
    features: Mapping,
    channels: Mapping[str, Sequence[str]],
    scales: Mapping,
    groups,
    labels,
    H_c: Mapping | None = None,
    *,
    n_groups: int,
    random_state: int,
) -> dict:
    """z-scores of each query's group against a null with the group's own label mix.

    Parameters
    ----------
    features, channels, scales
        As in :func:`aria.evaluation.homogeneity.channel_homogeneity`.
    groups : int array (Q, K)
        Each query's G_K(q).
    labels : (n_pool,) str
        Genre (or any stratum) of each pool item.
    H_c : dict channel -> (Q,), optional
        The groups' homogeneity if already computed.
    n_groups : int
        Random groups per distinct label mix (keyword-only).
    random_state : int
        Base seed; the groups of a mix are drawn from
        ``default_rng([random_state, stable_seed(0, str(mix))])``, so they do not depend on
        which other mixes occur or on query order.

    Returns
    -------
    dict
        ``{"z_c": {channel: (Q,)}, "summary": {channel: {"mu_z", "pos", "sig"}},
        "n_mixes": int, "n_groups": int}``. A mix with a single possible group (every
        item of the pool's labels used) has sigma 0 and gives ``nan``.
    """
    groups = np.asarray(groups, dtype=np.int64)
    features = prepare_features(features, [f for fs in channels.values() for f in fs])  # sequences: once
    if H_c is None:
        H_c, _ = channel_homogeneity(features, channels, groups, scales)
    mixes = [composition(g, labels) for g in groups]
    stats = {}
    for mix in sorted(set(mixes)):
        rand = stratified_groups(labels, mix, n_groups, random_state=[int(random_state), stable_seed(0, str(mix))])
        Hr, _ = channel_homogeneity(features, channels, rand, scales)
        stats[mix] = {c: (float(h.mean()), float(h.std(ddof=0))) for c, h in Hr.items()}
    z_c = {}
    for c in channels:
        mu = np.array([stats[m][c][0] for m in mixes])
        sd = np.array([stats[m][c][1] for m in mixes])
        z_c[c], _ = _zscores(np.asarray(H_c[c], dtype=np.float64), mu, sd)
    return {
        "z_c": z_c,
        "summary": {c: summarize(z) for c, z in z_c.items()},
        "n_mixes": len(stats),
        "n_groups": int(n_groups),
    }


def same_piece_share(groups, pieces) -> np.ndarray:
    """Share of each group's K(K-1)/2 pairs whose two items come from one piece.

    Parameters
    ----------
    groups : int array (Q, K), K >= 2
    pieces : (n_pool,) piece (track) id of each pool item

    Returns
    -------
    share : float64 array (Q,)
    """
    groups = np.asarray(groups, dtype=np.int64)
    _, code = np.unique(np.asarray(pieces).astype(str), return_inverse=True)
    g = code[groups]  # (Q, K)
    K = g.shape[1]
    if K < 2:
        raise ValueError("same_piece_share needs K >= 2")
    same = (g[:, :, None] == g[:, None, :]).sum(axis=(1, 2)) - K  # ordered pairs, diagonal removed
    return same / (K * (K - 1))


def null_same_piece_share(pieces) -> float:
    """Expected same-piece share of a uniform random group: ``sum_p n_p(n_p-1) / (N(N-1))``.

    ``pieces`` is an array-like of shape (N,): the piece (track id) of each item of the pool,
    ``n_p`` the count of piece ``p``; N >= 2.
    """
    _, counts = np.unique(np.asarray(pieces).astype(str), return_counts=True)
    N = counts.sum()
    if N < 2:
        raise ValueError("null_same_piece_share needs a pool of at least 2 items")
    return float((counts * (counts - 1)).sum() / (N * (N - 1)))
