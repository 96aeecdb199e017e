"""Retrieval of planted sources: precision@K and reciprocal rank, streaming over a score matrix.

In the planted-influence benchmark every query q was built from a known training piece (its
*source*, :mod:`aria.symbolic.plant`), so the right answer is the set of training rows that
belong to that piece. A method is scored by where those rows land in its ranking of q's
column: ``precision@K`` (share of the top K rows that are source rows), ``recall@K`` (share of
the source rows in the top K) and the reciprocal rank of the best-ranked source row. Rankings
follow :func:`aria.evaluation.homogeneity.top_k_rows`: higher score first, ties broken by the
lower row index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aria.evaluation.homogeneity import _open_matrix, top_k_rows
from aria.io.stores import DEFAULT_ROW_CHUNK, iter_row_chunks

__all__ = ["planted_retrieval", "channel_ranks", "planted_summary"]


def _source_lists(sources, N: int, Q: int) -> list[np.ndarray]:
    if len(sources) != Q:
        raise ValueError(f"sources: need one list of source rows per query ({Q}), got {len(sources)}")
    out = []
    for q, rows in enumerate(sources):
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if rows.size == 0:
            raise ValueError(f"sources: query {q} has no source row")
        if rows.min() < 0 or rows.max() >= N:
            raise ValueError(f"sources: query {q} names row {int(rows.max())}, outside 0..{N - 1}")
        out.append(rows)
    return out


def planted_retrieval(S, sources: Sequence, *, ks: Sequence[int] = (1, 5, 10), row_chunk: int | None = None) -> dict:
    """How high each query's planted source rows rank in its score column.

    Parameters
    ----------
    S : ndarray, zarr array, or path to a score store, shape (N, Q)
        Rows = training items, columns = queries; finite scores.
    sources : sequence of Q int arrays
        The source rows of each query (its source piece's training segments).
    ks : sequence of int, keyword-only
        The K of precision@K and recall@K (each in 1..N).
    row_chunk : int, optional, keyword-only
        Rows read per step (default: the store's chunk, or ``DEFAULT_ROW_CHUNK``).

    Returns
    -------
    dict with, per query (float arrays of shape (Q,)): ``rank`` (1-based rank of the best
    source row), ``reciprocal_rank``, ``precision`` and ``recall`` (dicts K -> (Q,)); and
    their means over queries: ``mrr``, ``mean_precision`` and ``mean_recall`` (dicts K -> float).

    Notes
    -----
    Three passes over row chunks (the source rows' best score, the rows above it, the top
    max(ks) rows); the matrix is never loaded whole.
    """
    arr, _ = _open_matrix(S)
    N, Q = arr.shape
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1 or ks[-1] > N:
        raise ValueError(f"ks must lie in 1..N={N}, got {ks}")
    src = _source_lists(sources, N, Q)
    if row_chunk is None and isinstance(arr, np.ndarray):
        row_chunk = DEFAULT_ROW_CHUNK
    # pass 1: each query's best source row (highest score, lowest row among equals)
    best_v = np.full(Q, -np.inf)
    best_r = np.full(Q, N, dtype=np.int64)
    for start, block in iter_row_chunks(arr, rows=row_chunk):
        block = np.asarray(block, dtype=np.float64)
        stop = start + block.shape[0]
        for q, rows in enumerate(src):
            inside = rows[(rows >= start) & (rows < stop)]
            if inside.size == 0:
                continue
            v = block[inside - start, q]
            i = int(np.argmax(v))  # first maximum: the lowest row among equals
            if v[i] > best_v[q]:
                best_v[q], best_r[q] = v[i], inside[i]
    if not np.isfinite(best_v).all():
        q = int(np.flatnonzero(~np.isfinite(best_v))[0])
        raise ValueError(f"planted_retrieval: non-finite score of a source row of query {q}")
    # pass 2: rows ranked above it (higher score, or equal score and a lower row)
    above = np.zeros(Q, dtype=np.int64)
    for start, block in iter_row_chunks(arr, rows=row_chunk):
        block = np.asarray(block, dtype=np.float64)
        rows = np.arange(start, start + block.shape[0])[:, None]
        above += ((block > best_v) | ((block == best_v) & (rows < best_r))).sum(0)
    rank = above + 1
    # pass 3: the top max(ks) rows
    top = top_k_rows(arr, ks[-1], row_chunk=row_chunk)  # (Q, Kmax)
    precision, recall = {}, {}
    for k in ks:
        hits = np.array([np.isin(top[q, :k], src[q]).sum() for q in range(Q)], dtype=np.float64)
        precision[k] = hits / k
        recall[k] = hits / np.array([len(s) for s in src], dtype=np.float64)
    rr = 1.0 / rank
    return {
        "rank": rank.astype(np.float64),
        "reciprocal_rank": rr,
        "precision": precision,
        "recall": recall,
        "mrr": float(rr.mean()),
        "mean_precision": {k: float(v.mean()) for k, v in precision.items()},
        "mean_recall": {k: float(v.mean()) for k, v in recall.items()},
    }


def channel_ranks(z_c: dict, planted: Sequence) -> np.ndarray:
    """Rank of each query's planted channel among the channels by homogeneity z (1 = largest).

    Parameters
    ----------
    z_c : dict channel -> float array (Q,)
        The channels' z at the report's K (homogeneity JSON ``by_k[K].z_c``).
    planted : sequence of Q channel names, or None where the query planted no single channel
        (a full copy).

    Returns
    -------
    float array (Q,): the rank, ties counted in the channel's favour (rank 1 + the number of
    channels with a strictly larger z); NaN where ``planted`` is None. A NaN z (degenerate null)
    ranks last.
    """
    names = list(z_c)
    Z = np.array([np.asarray(z_c[c], dtype=np.float64) for c in names])  # (C, Q)
    Z = np.where(np.isfinite(Z), Z, -np.inf)
    out = np.full(Z.shape[1], np.nan)
    for q, ch in enumerate(planted):
        if ch is None:
            continue
        if ch not in z_c:
            raise ValueError(f"planted channel {ch!r} of query {q} is not one of the channels {names}")
        zq = Z[names.index(ch), q]
        out[q] = 1 + int((Z[:, q] > zq).sum()) if np.isfinite(zq) else len(names)
    return out


def planted_summary(retrieval: dict, aspects: Sequence[str], ranks: np.ndarray | None = None) -> dict:
    """Means of :func:`planted_retrieval` (and of :func:`channel_ranks`) over all queries and per aspect.

    Returns
    -------
    dict with ``all`` and ``by_aspect`` (aspect -> the same), each: ``n``, ``mrr``, ``precision``
    and ``recall`` (K -> mean), and, where ranks are given and the aspect plants one channel,
    ``channel_rank`` (mean rank of the planted channel) and ``channel_first`` (share of queries
    where it has the largest z).
    """
    aspects = np.asarray(aspects)

    def block(sel):
        d = {
            "n": int(sel.sum()),
            "mrr": float(retrieval["reciprocal_rank"][sel].mean()),
            "precision": {int(k): float(v[sel].mean()) for k, v in retrieval["precision"].items()},
            "recall": {int(k): float(v[sel].mean()) for k, v in retrieval["recall"].items()},
        }
        if ranks is not None:
            r = np.asarray(ranks, dtype=np.float64)[sel]
            r = r[np.isfinite(r)]
            d["channel_rank"] = float(r.mean()) if r.size else None
            d["channel_first"] = float((r == 1).mean()) if r.size else None
        return d

    return {
        "all": block(np.ones(len(aspects), dtype=bool)),
        "by_aspect": {a: block(aspects == a) for a in dict.fromkeys(aspects.tolist())},
    }
