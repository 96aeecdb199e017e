"""Gradient-based attribution scores from cached projected features (SPEC §2).

Every method is a function of projected features phi (train: N x k, query:
Q x k) and yields the N x Q score matrix in row blocks, so a caller can stream
blocks into a store without holding S in memory:

- ``graddot``:  S = Phi phi_q^T                                   (one checkpoint)
- ``gradcos``:  S[j, q] = phi(z_j) . phi(q) / (|phi(z_j)| |phi(q)|)
- ``tracin``:   S = sum_c eta_c Phi_c phi_{q,c}^T                 (checkpoints c)
- ``trak``:     S = mean_m Phi_m (Phi_m^T Phi_m + lambda I)^{-1} phi_{q,m}^T  (models m)

Conventions: S[j, q] is larger when training segment j is more implicated in
query q. Zero-norm feature rows give Grad-Cos score 0.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

__all__ = ["METHODS", "trak_query_operator", "score_blocks"]

METHODS = ("trak", "tracin", "gradcos", "graddot")


def _unit_rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    nrm = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, nrm, out=np.zeros_like(X), where=nrm > 0)


def trak_query_operator(train: np.ndarray, query: np.ndarray, *, lam: float) -> np.ndarray:
    """(Phi^T Phi + lam I)^{-1} phi_q^T for one model, shape (k, Q).

    Solved with a Cholesky factorisation in float64; ``lam`` > 0 keeps it
    positive definite.
    """
    if not lam > 0:
        raise ValueError(f"TRAK damping lambda must be > 0, got {lam}")
    train = np.asarray(train, dtype=np.float64)
    K = train.T @ train
    K[np.diag_indices_from(K)] += lam
    L = np.linalg.cholesky(K)
    y = np.linalg.solve(L, np.asarray(query, dtype=np.float64).T)
    return np.linalg.solve(L.T, y)


def score_blocks(method: str, feats: Sequence[dict], *, lam: float | None = None,
                 row_chunk: int = 4096) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` row blocks of the N x Q score matrix.

    Parameters
    ----------
    method : one of :data:`METHODS`
    feats : sequence of dicts with ``train`` (N, k), ``query`` (Q, k) and, for
        TracIn, ``lr`` (the checkpoint's learning rate eta_c). GradDot and
        Grad-Cos take exactly one; TracIn one per checkpoint; TRAK one per model.
    lam : float, TRAK damping (required for TRAK)
    row_chunk : rows per yielded block
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if method in ("graddot", "gradcos") and len(feats) != 1:
        raise ValueError(f"{method} uses exactly one checkpoint, got {len(feats)}")
    if not feats:
        raise ValueError(f"{method}: no feature stores given")
    n = feats[0]["train"].shape[0]
    for f in feats:
        if f["train"].shape[0] != n or f["query"].shape[0] != feats[0]["query"].shape[0]:
            raise ValueError(f"{method}: feature stores disagree in N or Q")

    if method == "graddot":
        rows, ops = [feats[0]["train"]], [np.asarray(feats[0]["query"], np.float64).T]
    elif method == "gradcos":
        rows, ops = [_unit_rows(feats[0]["train"])], [_unit_rows(feats[0]["query"]).T]
    elif method == "tracin":
        rows = [f["train"] for f in feats]
        ops = [float(f["lr"]) * np.asarray(f["query"], np.float64).T for f in feats]
    else:
        if lam is None:
            raise ValueError("trak needs lam")
        rows = [f["train"] for f in feats]
        ops = [trak_query_operator(f["train"], f["query"], lam=lam) / len(feats) for f in feats]

    for start in range(0, n, row_chunk):
        block = sum(np.asarray(r[start:start + row_chunk], np.float64) @ op
                    for r, op in zip(rows, ops))
        yield start, block.astype(np.float32)
