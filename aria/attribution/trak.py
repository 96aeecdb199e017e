"""TRAK (SPEC §2): S = mean_m Phi_m (Phi_m^T Phi_m + lambda I)^{-1} phi_{q,m}^T over models m."""

from __future__ import annotations

import numpy as np

from aria.attribution.linalg import gram64

__all__ = ["query_operator", "operators"]


def query_operator(train: np.ndarray, query: np.ndarray, *, lam: float) -> np.ndarray:
    """(Phi^T Phi + lam I)^{-1} phi_q^T for one model, shape (k, Q).

    Solved with a Cholesky factorisation in float64; ``lam`` > 0 keeps it
    positive definite.
    """
    if not lam > 0:
        raise ValueError(f"TRAK damping lambda must be > 0, got {lam}")
    K = gram64(train)  # numpy, or one pass over a dask array's chunks
    K[np.diag_indices_from(K)] += lam
    L = np.linalg.cholesky(K)
    y = np.linalg.solve(L, np.asarray(query, dtype=np.float64).T)
    return np.linalg.solve(L.T, y)


def operators(feats, params):
    """``(rows, ops)``: one pair per ensemble model; ``params["lambda"]`` is the damping."""
    if params.get("lambda") is None:
        raise ValueError("trak needs its damping 'lambda'")
    lam = params["lambda"]
    return [f["train"] for f in feats], [query_operator(f["train"], f["query"], lam=lam) / len(feats) for f in feats]
