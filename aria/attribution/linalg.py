"""Small dense linear-algebra helpers shared by the scoring methods, and column ranks.

Row-side arrays (the N training rows) may be numpy arrays or dask arrays (the
dask engine, :func:`aria.attribution.scoring.score_dask`): :func:`gram64` and
:func:`unit_rows` keep dask arrays lazy, chunk by chunk, and return what numpy
would to float round-off.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "rank_columns",
    "is_lazy",
    "as_float64",
    "gram64",
    "unit_rows",
    "layerwise_influence_operators",
    "factored_operators",
    "DAMPING_RULES",
    "damping_lambda",
]

#: damping rules of TRAK, LoGra and FactGraSS (config ``methods.<name>.damping``)
DAMPING_RULES = ("relative", "absolute")


def damping_lambda(damping: dict, matrix: np.ndarray) -> float:
    """The damping lambda added to the diagonal of a symmetric PSD ``matrix`` (k, k).

    One vocabulary for TRAK, LoGra and FactGraSS (config ``methods.<name>.damping``):

    * ``{"rule": "relative", "alpha": a}``: ``lambda = a * tr(matrix) / k``, i.e. ``a`` times
      the matrix's mean eigenvalue. The damping then scales with the gradients (a model's loss
      scale, k, N), so one alpha means the same regularisation on every model and stage.
    * ``{"rule": "absolute", "lambda": l}``: ``lambda = l`` whatever the spectrum (TRAK's
      only setting before the relative rule; an l below the smallest eigenvalue damps nothing).

    The matrix is TRAK's ``Phi^T Phi`` (not divided by N) and LoGra/FactGraSS's per-layer
    ``F_l = Phi_l^T Phi_l / N``: each method's alpha is relative to the matrix it inverts.
    """
    rule = damping.get("rule", "relative")
    if rule == "relative":
        a = damping.get("alpha")
        if a is None or not a > 0:
            raise ValueError(f"relative damping needs alpha > 0, got {a}")
        return float(a) * float(np.trace(matrix)) / matrix.shape[0]
    if rule == "absolute":
        lam = damping.get("lambda")
        if lam is None or not lam > 0:
            raise ValueError(f"absolute damping needs lambda > 0, got {lam}")
        return float(lam)
    raise ValueError(f"damping rule must be one of {DAMPING_RULES}, got {rule!r}")


def rank_columns(X) -> np.ndarray:
    """Ranks within each column, ties given their average rank: ``scipy.stats.rankdata(X, axis=0)``.

    Parameters
    ----------
    X : array (n, q)

    Returns
    -------
    float64 array (n, q): ranks 1..n per column; a column holding a NaN is all NaN (as scipy's
    default ``nan_policy="propagate"``).

    Notes
    -----
    numpy only: importing ``scipy.stats`` costs a short workflow job about 0.5 s, more than
    the ranking itself (the track-level matrix and LDS rank on every job).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"rank_columns takes a 2-D array, got shape {X.shape}")
    n, q = X.shape
    out = np.empty((n, q))
    if n == 0:
        return out
    order = np.argsort(X, axis=0, kind="stable")
    xs = np.take_along_axis(X, order, axis=0)
    idx = np.arange(n, dtype=np.float64)[:, None]
    starts = np.ones((n, q), dtype=bool)
    starts[1:] = xs[1:] != xs[:-1]  # the first of each run of equal values
    ends = np.ones((n, q), dtype=bool)
    ends[:-1] = starts[1:]  # the last of each run
    first = np.maximum.accumulate(np.where(starts, idx, 0.0), axis=0)
    last = np.minimum.accumulate(np.where(ends, idx, float(n - 1))[::-1], axis=0)[::-1]
    np.put_along_axis(out, order, (first + last) / 2.0 + 1.0, axis=0)
    out[:, np.isnan(X).any(axis=0)] = np.nan
    return out


def is_lazy(X) -> bool:
    """True for a dask array (duck-typed: dask is imported only where it is used)."""
    return hasattr(X, "dask") and hasattr(X, "chunks") and hasattr(X, "compute")


def as_float64(X):
    """``X`` as float64: a numpy array, or a lazy dask array for a dask input."""
    return X.astype(np.float64) if is_lazy(X) else np.asarray(X, dtype=np.float64)


def gram64(X) -> np.ndarray:
    """``X^T X`` in float64, shape (d, d), for X (n, d); for dask, one pass over its row chunks."""
    X = as_float64(X)
    G = X.T @ X
    return np.asarray(G.compute() if is_lazy(G) else G)


def _unit_rows_np(X: np.ndarray) -> np.ndarray:
    nrm = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, nrm, out=np.zeros_like(X), where=nrm > 0)


def unit_rows(X) -> np.ndarray:
    """Rows of ``X`` (n, d) scaled to unit L2 norm, in float64; zero rows stay zero (dask: lazy)."""
    if is_lazy(X):
        return as_float64(X).rechunk({1: -1}).map_blocks(_unit_rows_np, dtype=np.float64)
    return _unit_rows_np(np.asarray(X, dtype=np.float64))


def layerwise_influence_operators(train, query, layers, *, damping: dict):
    """``(rows, ops)`` of a block-diagonal influence score (LoGra, FactGraSS; docs/spec.md §2).

    S = sum_l Phi_l (F_l + lambda_l I)^{-1} phi_l(q)^T with, per layer block l (columns
    ``start:stop`` of the features), F_l = Phi_l^T Phi_l / N (the mean outer product over
    the N training rows) and lambda_l from ``damping`` (:func:`damping_lambda`: with the
    relative rule alpha * tr(F_l) / k_l, alpha times the mean eigenvalue of F_l). Solved by
    Cholesky in float64.

    Parameters
    ----------
    train : array, shape (N, K)
        Training features (numpy or dask).
    query : array, shape (Q, K)
        Query features.
    layers : list of dict with ``start`` and ``stop`` (the feature store's ``layers``)
    damping : dict, keyword-only
        ``{"rule": "relative", "alpha": a}`` or ``{"rule": "absolute", "lambda": l}``.
    """
    damping_lambda(damping, np.eye(1))  # a bad damping fails before any layer is read
    rows, ops = [], []
    for sl in layers:
        P = as_float64(train[:, sl["start"] : sl["stop"]])
        Fm = gram64(P) / P.shape[0]
        if not np.trace(Fm) > 0:  # a layer whose gradients are all zero contributes nothing
            continue
        Fm[np.diag_indices_from(Fm)] += damping_lambda(damping, Fm)
        L = np.linalg.cholesky(Fm)
        q = np.asarray(query[:, sl["start"] : sl["stop"]], dtype=np.float64).T
        rows.append(P)
        ops.append(np.linalg.solve(L.T, np.linalg.solve(L, q)))
    if not rows:
        raise ValueError("every layer block has zero gradients")
    return rows, ops


def factored_operators(method: str, feats, params):
    """``(rows, ops)`` of LoGra or FactGraSS from its one feature store: the block-diagonal
    score above over the store's ``blocks`` attribute, ``params["damping"]`` its damping.
    """
    if len(feats) != 1:
        raise ValueError(f"{method} uses exactly one feature store, got {len(feats)}")
    f = feats[0]
    layers = f["attrs"].get("blocks")
    if not layers:
        raise ValueError(f"{method}: the feature store has no 'blocks' attribute (not a {method} store)")
    return layerwise_influence_operators(f["train"], f["query"], layers, damping=params["damping"])
