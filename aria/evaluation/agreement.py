"""Do a method's rankings survive retraining? Agreement of two replica score matrices.

A *replica* is the same method's score matrix computed from an independently trained model
(ensemble member 1 instead of member 0: another initialisation and data order, the same data
and recipe). Write the two replicas' columns for query q as ``a = s + e_a`` and ``b = s + e_b``,
where ``s`` is what the method measures about the training data and ``e_a``, ``e_b`` the part
that depends on the seed. If the seed parts are independent and alike,

* ``<a, b> ~ ||s||^2`` while ``(||a||^2 + ||b||^2) / 2 ~ ||s||^2 + ||e||^2``, so
  ``shared = 2 <a, b> / (||a||^2 + ||b||^2)`` estimates the share of a column's energy that
  the replicas have in common (1: identical, 0: independent noise);
* the Pearson correlation of ``a`` and ``b`` estimates the same share of the within-query
  variance (the scores' test-retest reliability), and the Spearman correlation that of the
  rankings, which is what a top-K reads;
* the cross Gram ``(A^T B + B^T A) / 2`` estimates ``S^T S`` of the shared part ``S`` without
  the noise's contribution (the seed parts cancel in expectation), so the reliability
  diagnostics r1, r2:5, c_bar, rho_bar of the shared part follow from it
  (:func:`shared_stats`). A Gaussian matrix has high rank and small correlations between
  queries, i.e. the best diagnostics of all; its shared part is empty.

Conventions
-----------
* A and B are (N, Q) with the same rows (training items) and columns (queries), as every
  score matrix (:mod:`aria.evaluation.reliability`).
* A column that is constant in either replica has no correlation: it is left out of the
  quantiles and counted in ``n_undefined``.
* The shared part's Gram is the nearest positive semi-definite matrix to the symmetrised cross
  Gram (negative eigenvalues, which noise produces, set to 0); its diagnostics are NaN when
  nothing is shared (every eigenvalue <= 0).
* An ensemble of M members averages M replicas: if one member's scores agree with another's at
  ``rho``, two M-member ensembles agree at about ``M rho / (1 + (M - 1) rho)`` (Spearman-Brown;
  :func:`spearman_brown`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aria.attribution.linalg import rank_columns
from aria.evaluation.reliability import (
    GramStats,
    _check_shape,
    _raise_nonfinite,
    _resolve,
    centred_diagnostics,
    default_row_chunk,
    reliability_from_stats,
)

__all__ = ["replica_agreement", "cross_moments", "shared_stats", "spearman_brown", "gaussian_reference", "QUANTILES"]

#: rows of the Gaussian reference at most (its diagnostics depend on the shape only through Q / N)
REFERENCE_MAX_ROWS = 100_000

#: quantiles over queries reported for each per-query agreement (besides the mean)
QUANTILES = {"q10": 0.1, "q50": 0.5, "q90": 0.9}

#: memory for the column blocks of the rank pass (both replicas, data and ranks, float64)
RANK_BLOCK_BYTES = 256 << 20


def spearman_brown(rho: float, m: int) -> float:
    """Agreement of two M-member averages whose members agree at ``rho``: ``M rho / (1 + (M - 1) rho)``."""
    rho = float(rho)
    return float("nan") if not np.isfinite(rho) else m * rho / (1.0 + (m - 1) * rho)


def _blocks(arr, rows: int):
    n = int(arr.shape[0])
    for start in range(0, n, rows):
        yield start, np.asarray(arr[start : start + rows], dtype=np.float64)


def cross_moments(
    A: Any, B: Any, *, row_chunk: int | None = None, source_a: str | None = None, source_b: str | None = None
) -> dict:
    """One streaming pass over the row chunks of two replicas: their first and cross moments.

    Parameters
    ----------
    A, B : ndarray, zarr array, str or Path
        Replica score matrices of the same shape (N, Q), or score store paths.
    row_chunk : int, optional
        Rows read at once (default: whole store chunks of A, about 32 MiB).
    source_a, source_b : str, optional
        What error messages call A and B (default: the store paths, or "array").

    Returns
    -------
    dict of float64 arrays: ``n`` (int), ``mean_a``, ``mean_b`` (Q,), ``cross`` = A^T B (Q, Q),
    ``ccross`` = (A - 1 mean_a^T)^T (B - 1 mean_b^T) (Q, Q), ``ss_a``, ``ss_b`` (Q,) raw sums of
    squares, ``css_a``, ``css_b`` (Q,) centred sums of squares. Chunks are centred on their own
    means and merged with the pairwise update of Chan, Golub & LeVeque (as the Gram pass of
    :mod:`aria.evaluation.reliability`), so large per-query offsets do not cancel catastrophically.
    """
    a, sa = _resolve(A)
    b, sb = _resolve(B)
    sa, sb = source_a or sa, source_b or sb
    na, qa = _check_shape(a, sa)
    nb, qb = _check_shape(b, sb)
    if (na, qa) != (nb, qb):
        raise ValueError(f"{sb}: replica has shape ({nb}, {qb}), {sa} has ({na}, {qa}); they must match")
    rows = default_row_chunk(a) if row_chunk is None else int(row_chunk)
    n = 0
    mu_a = np.zeros(qa)
    mu_b = np.zeros(qa)
    cc = np.zeros((qa, qa))
    ca = np.zeros(qa)
    cb = np.zeros(qa)
    for (start, x), (_, y) in zip(_blocks(a, rows), _blocks(b, rows)):
        for blk, src in ((x, sa), (y, sb)):
            if not np.isfinite(blk).all():
                _raise_nonfinite(blk, start, src)
        m = x.shape[0]
        mx, my = x.mean(0), y.mean(0)
        xc, yc = x - mx, y - my
        c_chunk = xc.T @ yc
        if n == 0:
            mu_a, mu_b, cc = mx, my, c_chunk
            ca, cb = np.einsum("ij,ij->j", xc, xc), np.einsum("ij,ij->j", yc, yc)
        else:
            tot = n + m
            da, db = mx - mu_a, my - mu_b
            w = n * m / tot
            cc = cc + c_chunk + w * np.outer(da, db)
            ca = ca + np.einsum("ij,ij->j", xc, xc) + w * da * da
            cb = cb + np.einsum("ij,ij->j", yc, yc) + w * db * db
            mu_a = mu_a + da * m / tot
            mu_b = mu_b + db * m / tot
        n += m
    if n != na:  # pragma: no cover - guards a misbehaving lazy array
        raise ValueError(f"{sa}: read {n} rows, expected {na}")
    return {
        "n": n,
        "mean_a": mu_a,
        "mean_b": mu_b,
        "cross": cc + n * np.outer(mu_a, mu_b),
        "ccross": cc,
        "ss_a": ca + n * mu_a**2,
        "ss_b": cb + n * mu_b**2,
        "css_a": ca,
        "css_b": cb,
        "source": f"shared part of {sa} and {sb}",
    }


def _psd(M: np.ndarray) -> np.ndarray:
    """Nearest positive semi-definite matrix (Frobenius) to the symmetric part of ``M``."""
    S = 0.5 * (M + M.T)
    lam, V = np.linalg.eigh(S)
    return (V * np.clip(lam, 0.0, None)) @ V.T


def shared_stats(mom: dict) -> GramStats | None:
    """:class:`GramStats` of the replicas' shared part, from :func:`cross_moments`.

    ``gram`` and ``cgram`` are the PSD projections of the symmetrised raw and centred cross
    Grams; the shared per-query mean is ``sqrt(max(mean_a mean_b, 0))`` (an offset that the two
    replicas give opposite signs is not shared). None when nothing is shared (zero trace).
    """
    n, q = int(mom["n"]), len(mom["mean_a"])
    gram = _psd(mom["cross"])
    cgram = _psd(mom["ccross"])
    colsumsq = np.clip(np.diagonal(gram).copy(), 0.0, None)
    if not colsumsq.sum() > 0:
        return None
    mean = np.sqrt(np.clip(mom["mean_a"] * mom["mean_b"], 0.0, None))
    return GramStats(
        n=n,
        q=q,
        mean=mean,
        cgram=cgram,
        gram=gram,
        colsum=n * mean,
        colsumsq=colsumsq,
        source=mom["source"],
        row_chunk=0,
        n_chunks=0,
    )


def _summary(x: np.ndarray) -> dict:
    ok = x[np.isfinite(x)]
    if ok.size == 0:
        return {"mean": float("nan"), **{k: float("nan") for k in QUANTILES}}
    return {"mean": float(ok.mean()), **{k: float(np.quantile(ok, p)) for k, p in QUANTILES.items()}}


def _spearman_columns(a, b, *, n: int, q: int, col_block: int | None, progress: bool) -> np.ndarray:
    """Per-column Spearman correlation of a and b, in column blocks (each a full read of its rows)."""
    block = col_block or max(1, RANK_BLOCK_BYTES // max(1, 4 * 8 * n))
    out = np.full(q, np.nan)
    starts = range(0, q, block)
    bar = None
    if progress and len(starts) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(starts), unit="block", desc="rank agreement")
    for c0 in starts:
        c1 = min(q, c0 + block)
        ra = rank_columns(np.asarray(a[:, c0:c1], dtype=np.float64))
        rb = rank_columns(np.asarray(b[:, c0:c1], dtype=np.float64))
        ra -= ra.mean(0)
        rb -= rb.mean(0)
        den = np.sqrt((ra * ra).sum(0) * (rb * rb).sum(0))
        num = (ra * rb).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[c0:c1] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


def replica_agreement(
    A: Any,
    B: Any,
    *,
    row_chunk: int | None = None,
    col_block: int | None = None,
    progress: bool = False,
    source_a: str | None = None,
    source_b: str | None = None,
) -> dict:
    """How much of a score matrix survives retraining: agreement of two replicas A and B.

    Parameters
    ----------
    A, B : ndarray, zarr array, str or Path
        The same method's score matrices (N training rows, Q queries) from two independently
        trained models, or their score store paths.
    row_chunk : int, optional
        Rows per chunk of the moment pass (:func:`cross_moments`).
    col_block : int, optional
        Columns ranked at once in the Spearman pass (default: as many as fit in
        :data:`RANK_BLOCK_BYTES`; a matrix of N rows takes ``Q / col_block`` reads of both).
    progress : bool, default False
        A progress bar over the rank pass's column blocks (when there are several).
    source_a, source_b : str, optional
        Names of A and B in error messages.

    Returns
    -------
    dict
        * ``spearman``, ``pearson``, ``shared_q``: ``{"mean", "q10", "q50", "q90"}`` over
          queries of the per-query Spearman and Pearson correlations of the replicas' columns
          and of ``2 <a, b> / (||a||^2 + ||b||^2)`` (module docstring);
        * ``shared_energy = 2 tr(A^T B) / (||A||_F^2 + ||B||_F^2)``, the share of the total score
          energy the replicas have in common;
        * ``shared``: r1, r2_5, c_bar, rho_bar (:func:`aria.evaluation.reliability.reliability_from_stats`)
          and r1_centred, v1_constancy_centred, offset_share (:func:`centred_diagnostics`) of the
          shared part (:func:`shared_stats`), or NaN when nothing is shared;
        * ``per_query``: ``{"spearman", "pearson", "shared"}`` lists (Q,) (NaN: undefined);
        * ``n``, ``q``, ``n_undefined`` (queries whose correlation is undefined: a constant column).
    """
    a, sa = _resolve(A)
    b, sb = _resolve(B)
    sa, sb = source_a or sa, source_b or sb
    mom = cross_moments(a, b, row_chunk=row_chunk, source_a=sa, source_b=sb)
    n, q = mom["n"], len(mom["mean_a"])
    den = np.sqrt(mom["css_a"] * mom["css_b"])
    tiny = 1e-24 * np.sqrt(mom["ss_a"] * mom["ss_b"])  # a constant column, up to round-off
    ok = den > np.maximum(tiny, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pearson = np.where(ok, np.diagonal(mom["ccross"]) / np.where(ok, den, 1.0), np.nan)
        energy = mom["ss_a"] + mom["ss_b"]
        shared_q = np.where(energy > 0, 2.0 * np.diagonal(mom["cross"]) / np.where(energy > 0, energy, 1.0), np.nan)
    pearson = np.clip(pearson, -1.0, 1.0)
    spearman = _spearman_columns(a, b, n=n, q=q, col_block=col_block, progress=progress)
    spearman[~ok] = np.nan
    total = float(mom["ss_a"].sum() + mom["ss_b"].sum())
    shared_energy = 2.0 * float(np.trace(mom["cross"])) / total if total > 0 else float("nan")
    nan4 = {k: float("nan") for k in ("r1", "r2_5", "c_bar", "rho_bar")}
    st = shared_stats(mom)
    if st is None or q < 2 or n < 2:
        shared = {
            **nan4,
            "r1_centred": float("nan"),
            "v1_constancy_centred": float("nan"),
            "offset_share": float("nan"),
        }
    else:
        cd = centred_diagnostics(st)
        shared = {
            **reliability_from_stats(st),
            **{k: cd[k] for k in ("r1_centred", "v1_constancy_centred", "offset_share")},
        }
    return {
        "spearman": _summary(spearman),
        "pearson": _summary(pearson),
        "shared_q": _summary(shared_q),
        "shared_energy": shared_energy,
        "shared": shared,
        "per_query": {
            "spearman": [float(x) for x in spearman],
            "pearson": [float(x) for x in pearson],
            "shared": [float(x) for x in shared_q],
        },
        "n": int(n),
        "q": int(q),
        "n_undefined": int(np.sum(~np.isfinite(spearman))),
    }


def gaussian_reference(n: int, q: int, *, random_state: int) -> dict:
    """Diagnostics and replica agreement of i.i.d. N(0, 1) matrices of shape (n, q): the reference row.

    Two independent draws stand for two replicas, so the agreement is that of pure noise. Rows are
    capped at :data:`REFERENCE_MAX_ROWS`. Returns the keys of a diagnostics document (r1, r2_5,
    c_bar, rho_bar, the centred diagnostics, ``n``, ``q``, ``replica``) and ``n_used``.
    ``random_state`` (int) seeds both draws (``default_rng([random_state, 29])``).
    """
    from aria.evaluation.reliability import gram_stats

    rows = int(min(n, REFERENCE_MAX_ROWS))
    rng = np.random.default_rng([int(random_state), 29])
    A = rng.standard_normal((rows, q))
    B = rng.standard_normal((rows, q))
    st = gram_stats(A, precision="float64", workers=0)
    rep = replica_agreement(A, B)
    rep.pop("per_query")
    return {
        **reliability_from_stats(st),
        **centred_diagnostics(st),
        "n": rows,
        "q": int(q),
        "n_used": rows,
        "replica": rep,
    }
