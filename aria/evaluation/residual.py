"""Residual of a score matrix after its leading axis is removed (docs/spec.md §7, paper §4.4).

``S_res = S - sigma_1 u_1 v_1^T``. Because ``sigma_1 u_1 = S v_1``, this is
``S_res = S (I - v_1 v_1^T)``: every row chunk of S is projected on its own, so
the residual is produced in one streaming pass once v_1 (Q,) is known from the
Gram pass (:func:`aria.evaluation.reliability.leading_axes` computes the same
v_1 and sign). ``u_1 = S v_1 / sigma_1`` (N,) falls out of the same pass; it is
what the axis--channel alignment (:mod:`aria.evaluation.alignment`) reads.

Why: a z-score computed on a collapsed matrix describes the one group that the
rank-1 axis retrieves for every query, not attribution. If a method's per-query
signal is real it survives (and usually sharpens) once that axis is gone; if the
matrix is rank-1 plus noise, the residual's groups are random and z falls to ~0.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from aria.evaluation.reliability import GramStats, _check_shape, _resolve, default_row_chunk, gram_stats
from aria.io.stores import iter_row_chunks

__all__ = ["LeadingAxis", "leading_axis", "residual_blocks"]


class LeadingAxis(NamedTuple):
    """Leading singular triplet of S and the energy it carries.

    sigma : float                 leading singular value
    v     : ndarray, shape (Q,)   right singular vector, signed to a non-negative sum
    r1    : float                 sigma^2 / ||S||_F^2
    """

    sigma: float
    v: np.ndarray
    r1: float


def leading_axis(S: Any, *, stats: GramStats | None = None, row_chunk: int | None = None) -> LeadingAxis:
    """sigma_1 and v_1 from the Gram matrix (one streaming pass unless ``stats`` is given).

    Parameters
    ----------
    S : ndarray, zarr array, str or Path
        Score matrix, shape (N, Q), or a score store path.
    stats : GramStats, optional
        An earlier :func:`~aria.evaluation.reliability.gram_stats` of the same S.
    row_chunk : int, optional
        Rows per chunk for the Gram pass, which runs with float64 products (the
        residual is S minus this axis, to round-off); a ``stats`` given may have
        float32 ones (v_1 then carries their ~1e-7 relative error).

    Returns
    -------
    LeadingAxis
        Sign convention as in :func:`~aria.evaluation.reliability.leading_axes`:
        ``v`` has a non-negative sum (ties: its largest-magnitude entry positive).
    """
    if stats is None:
        stats = gram_stats(S, row_chunk=row_chunk, precision="float64")
    lam, vecs = np.linalg.eigh(stats.gram)
    i = int(np.argmax(lam))
    v = vecs[:, i].copy()
    s = v.sum()
    if abs(s) <= 1e-12 * np.abs(v).sum():
        s = v[np.abs(v).argmax()]
    if s < 0:
        v = -v
    lam1 = max(float(lam[i]), 0.0)
    fro = stats.frobenius_sq
    return LeadingAxis(sigma=float(np.sqrt(lam1)), v=v, r1=lam1 / fro if fro > 0 else 0.0)


def residual_blocks(
    S: Any, v: np.ndarray, *, row_chunk: int | None = None
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Stream ``S_res = S (I - v vᵀ)`` row chunk by row chunk.

    Parameters
    ----------
    S : ndarray, zarr array, str or Path
        Score matrix, shape (N, Q), or a score store path.
    v : ndarray, shape (Q,)
        Unit right singular vector to remove (from :func:`leading_axis`).
    row_chunk : int, optional
        Rows per block; default a whole number of the store's chunks.

    Yields
    ------
    start : int
        First row of the block.
    block : ndarray, shape (rows, Q), float64
        Rows ``start:start+rows`` of S_res.
    proj : ndarray, shape (rows,), float64
        ``S[rows] @ v`` = sigma_1 u_1[rows] (divide by sigma_1 for u_1).
    """
    arr, source = _resolve(S)
    _, q = _check_shape(arr, source)
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.shape != (q,):
        raise ValueError(f"{source}: axis has {v.shape[0]} entries, S has {q} columns")
    if not np.isclose(np.linalg.norm(v), 1.0, rtol=1e-6):
        raise ValueError(f"{source}: the axis to remove must be a unit vector (norm {np.linalg.norm(v):.6g})")
    rows = default_row_chunk(arr) if row_chunk is None else int(row_chunk)
    for start, block in iter_row_chunks(arr, rows=rows):
        x = np.asarray(block, dtype=np.float64)
        proj = x @ v
        yield start, x - np.outer(proj, v), proj
