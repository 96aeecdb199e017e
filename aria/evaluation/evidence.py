"""Per-query evidence (docs/spec.md §5-6, docs/evidence.md "Per-query evidence cards"): how similar each attributed
training item is to the query along each channel, which aspect dominates the group, and where
each item lies in its source.

Pure computing functions; the cards are written by :mod:`aria.report.cards`.

Conventions
-----------
* Similarities are those of the homogeneity (docs/spec.md §5): ``1 / (1 + d)`` with ``d`` the
  standardized Euclidean distance over the pool's non-zero scales, and LCS of chord root
  motions for sequences; a channel's similarity is the mean over its features. So a query's
  similarity to an item is on the same scale as the within-group similarities behind z.
* "Dominant aspect" of a query's group: the channel with the largest z (SIG_Z = 1.645 is the
  one-sided 5% line of the main table's Sig), leaving out the channels in which the group is
  mostly empty items (:mod:`aria.evaluation.degenerate`): identical emptiness is not evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from aria.evaluation.homogeneity import SIG_Z, _standardize, is_sequence_feature, lcs_similarity

__all__ = ["query_similarity", "dominant_aspect", "degenerate_channels", "best_windows", "rollup"]


def query_similarity(
    query: Mapping, pool: Mapping, items, channels: Mapping[str, Sequence[str]], scales: Mapping
) -> dict[str, np.ndarray]:
    """Per channel, the similarity of one query to each of some pool items.

    Parameters
    ----------
    query : dict feature -> (d,) vector or 1-D sequence
        The query's features (same names and definitions as the pool's).
    pool : dict feature -> (n_pool, d) array or list of sequences
    items : int array (K,)
        Pool indices.
    channels : dict channel -> feature names
    scales : dict feature -> (d,) scales (``None`` for sequences), from the null

    Returns
    -------
    dict channel -> float64 array (K,)
    """
    items = np.asarray(items, dtype=np.intp)
    per_f = {}
    for f in {f for feats in channels.values() for f in feats}:
        if is_sequence_feature(pool[f]):
            per_f[f] = np.array([lcs_similarity(query[f], pool[f][i]) for i in items])
        else:
            X = np.asarray(pool[f])
            X = X.reshape(len(X), -1)[items]
            Z = _standardize(np.vstack([np.asarray(query[f], dtype=np.float64).reshape(1, -1), X]), scales[f], None)
            per_f[f] = 1.0 / (1.0 + np.sqrt(((Z[1:] - Z[0]) ** 2).sum(axis=1)))
    return {c: np.mean([per_f[f] for f in feats], axis=0) for c, feats in channels.items()}


def dominant_aspect(z: Mapping[str, float], *, exclude: Sequence[str] = ()) -> dict:
    """The channel with the largest finite z, and whether it clears the one-sided 5% line.

    Parameters
    ----------
    z : dict channel -> z of the query's group
    exclude : sequence of str, keyword-only
        Channels left out of the choice: those in which the group is mostly empty items
        (:func:`degenerate_channels`), whose high z is identical emptiness, not evidence.

    Returns
    -------
    dict
        ``{"channel", "z", "significant", "left_out"}`` (``channel`` None when no z is finite
        outside ``exclude``; ``left_out`` lists the excluded channels that have a z).
    """
    left_out = [c for c in exclude if c in z]
    finite = {c: float(v) for c, v in z.items() if v is not None and np.isfinite(v) and c not in exclude}
    if not finite:
        return {"channel": None, "z": None, "significant": False, "left_out": left_out}
    c = max(finite, key=finite.get)
    return {"channel": c, "z": finite[c], "significant": finite[c] > SIG_Z, "left_out": left_out}


def degenerate_channels(items, empty: Mapping[str, np.ndarray], *, threshold: float) -> dict[str, float]:
    """Channels in which more than ``threshold`` of a group's items are empty, with that share.

    Parameters
    ----------
    items : int array (K,)
        Pool indices of the group (a query's top-K).
    empty : dict channel -> bool array (n_pool,)
        :func:`aria.evaluation.degenerate.empty_in_channels` of the pool.
    threshold : float, keyword-only
        Share above which the channel is degenerate for this group (the report's
        ``EMPTY_DOMINATES``, 0.5).

    Returns
    -------
    dict channel -> share in (threshold, 1]
    """
    idx = np.asarray(items, dtype=np.intp)
    out = {}
    for c, m in empty.items():
        share = float(np.asarray(m, dtype=bool)[idx].mean()) if idx.size else 0.0
        if share > threshold:
            out[c] = share
    return out


def best_windows(S, row_tracks, queries, tracks) -> np.ndarray:
    """For each (query, track), the row (segment) of the track with the highest score, streaming.

    Parameters
    ----------
    S : (N, Q) score matrix (numpy or zarr; read in its row chunks)
    row_tracks : (N,) track id of each row
    queries : int array (Q',)
        Column indices wanted.
    tracks : sequence of track ids (T')

    Returns
    -------
    rows : int64 array (Q', T')
        ``-1`` where the track has no row. Ties go to the earlier row.
    """
    from aria.io.stores import iter_row_chunks

    row_tracks = np.asarray(row_tracks).astype(str)
    where = {t: j for j, t in enumerate(map(str, tracks))}
    col = np.asarray(queries, dtype=np.intp)
    best = np.full((len(col), len(where)), -np.inf)
    arg = np.full((len(col), len(where)), -1, dtype=np.int64)
    code = np.array([where.get(t, -1) for t in row_tracks])
    for start, block in iter_row_chunks(S):
        block = np.asarray(block, dtype=np.float64)[:, col]  # (n, Q')
        c = code[start : start + len(block)]
        for j in np.unique(c[c >= 0]):
            rows = np.flatnonzero(c == j)
            sub = block[rows]  # (r, Q')
            k = sub.argmax(axis=0)  # first maximum: the earlier row
            val = sub[k, np.arange(sub.shape[1])]
            better = val > best[:, j]
            best[better, j] = val[better]
            arg[better, j] = start + rows[k[better]]
    return arg


def rollup(item_tracks: Sequence[str], scores: Sequence[float]) -> list[dict]:
    """Top-K segments rolled up by their piece: ``[{"track", "n", "best_rank", "sum_score"}]``,
    in order of each piece's best rank (rank 1 = the top item).
    """
    out: dict[str, dict] = {}
    for rank, (t, s) in enumerate(zip(item_tracks, scores), start=1):
        d = out.setdefault(str(t), {"track": str(t), "n": 0, "best_rank": rank, "sum_score": 0.0})
        d["n"] += 1
        d["sum_score"] += float(s)
    return sorted(out.values(), key=lambda d: d["best_rank"])
