"""Reliability diagnostics of a score matrix (SPEC §4), in one streaming pass.

For an N x Q score matrix S (N training rows, Q queries) this module computes
the four numbers of the paper's reliability table, in order

* ``r1``     = sigma_1^2 / ||S||_F^2, energy share of the leading singular axis;
* ``r2_5``   = sum_{i=2..5} sigma_i^2 / ||S||_F^2 (fewer than 5 axes: those
  that exist);
* ``c_bar``  = (1/Q) sum_q (sum_j S[j,q])^2 / (N sum_j S[j,q]^2), the mean share
  of a column's energy carried by its mean;
* ``rho_bar`` = 2/(Q(Q-1)) sum_{a<b} |corr(S[:,a], S[:,b])|, the mean absolute
  Pearson correlation between queries.

All four follow from the Q x Q Gram matrix G = S^T S, the column sums and the
column sums of squares, which :func:`gram_stats` accumulates in a single pass
over row chunks of S; S itself is never held in memory (a score store of
200 000 x 1 000 float32 is 0.8 GB; the statistics are two Q x Q float64
matrices).

Numerics
--------
Score columns often carry a large per-query offset (e.g. 1e4 plus noise of
1e-2). The naive centred Gram ``G - N mu mu^T`` then cancels catastrophically.
Instead each chunk is converted to float64, centred on its own column means,
and its centred Gram is merged into the running one with the pairwise update
of Chan, Golub & LeVeque (1979)::

    delta = mean_b - mean_a
    M2    = M2_a + M2_b + delta delta^T * n_a n_b / (n_a + n_b)
    mean  = mean_a + delta * n_b / (n_a + n_b)

The raw Gram is recovered at the end as ``G = M2 + N mu mu^T`` (a sum of
non-negative-definite terms, no cancellation), and likewise
``colsumsq = diag(M2) + N mu^2``.  The per-chunk product ``X^T X`` is a float64
BLAS call (numpy dispatches ``a.T @ a`` to ``syrk``).

Conventions
-----------
* A *constant column* (zero variance, up to float64 round-off: a column whose
  centred sum of squares is below ``(32 eps)^2`` times its raw sum of squares)
  has all its correlations defined as 0. Its pairs still count in the
  Q(Q-1)/2 pairs averaged by ``rho_bar``.
* An *all-zero column* contributes 0 to ``c_bar`` (its 0/0 term is defined as
  0); it is also a constant column for ``rho_bar``.
* Non-finite values (NaN, +-Inf) anywhere in S raise :class:`ValueError`
  naming the source (the store path, or ``"array"`` for in-memory input) and the
  first bad row.
* ``reliability`` needs N >= 2 and Q >= 2 (correlations are undefined
  otherwise) and a matrix that is not all zero (energy ratios are 0/0).
* Singular vectors from :func:`leading_axes` are sign-normalised so that each
  ``v[:, i]`` has a non-negative sum (ties broken by making its largest-magnitude
  entry positive); ``u[:, i] = S v[:, i] / sigma_i`` then follows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from aria.io.matrices import open_matrix
from aria.io.stores import iter_row_chunks

__all__ = [
    "reading",
    "GramStats",
    "LeadingAxes",
    "gram_stats",
    "gram_stats_dask",
    "reliability",
    "reliability_from_stats",
    "leading_axes",
    "default_row_chunk",
    "v1_constancy",
    "verdict",
    "VERDICT_DEFAULTS",
]

#: Target number of matrix elements per streamed chunk when the caller gives no
#: ``row_chunk`` (4 Mi elements = 32 MiB as float64).
TARGET_CHUNK_ELEMENTS = 1 << 22

# Relative threshold below which a column counts as constant: centred sum of
# squares <= _CONST_RTOL * raw sum of squares.
_CONST_RTOL = (32.0 * np.finfo(np.float64).eps) ** 2


@dataclass(frozen=True, eq=False)
class GramStats:
    """Second-moment statistics of an N x Q matrix S, accumulated in one pass.

    Attributes
    ----------
    n, q : int
        Shape of S.
    mean : ndarray, shape (Q,), float64
        Column means.
    cgram : ndarray, shape (Q, Q), float64
        Centred Gram ``sum_j (S[j] - mean)^T (S[j] - mean)`` (symmetric).
    gram : ndarray, shape (Q, Q), float64
        Raw Gram ``G = S^T S = cgram + n mean mean^T`` (symmetric).
    colsum : ndarray, shape (Q,), float64
        Column sums ``sum_j S[j, q] = n * mean``.
    colsumsq : ndarray, shape (Q,), float64
        Column sums of squares ``sum_j S[j, q]^2 = diag(G)``.
    source : str
        Where S came from: a store path, or ``"array"``.
    row_chunk : int
        Rows per streamed chunk.
    n_chunks : int
        Number of chunks read.
    """

    n: int
    q: int
    mean: np.ndarray
    cgram: np.ndarray
    gram: np.ndarray
    colsum: np.ndarray
    colsumsq: np.ndarray
    source: str
    row_chunk: int
    n_chunks: int

    @property
    def frobenius_sq(self) -> float:
        """``||S||_F^2 = tr G``."""
        return float(self.colsumsq.sum())

    def eigvals(self) -> np.ndarray:
        """Squared singular values of S, descending: shape (Q,), float64.

        Eigenvalues of G from :func:`numpy.linalg.eigvalsh`, round-off
        negatives clipped to 0. Only the first ``min(N, Q)`` can be non-zero.
        """
        lam = np.linalg.eigvalsh(self.gram)[::-1]
        return np.clip(lam, 0.0, None)


class LeadingAxes(NamedTuple):
    """Leading singular triplets of S: ``S ~ u @ diag(sigma) @ v.T``.

    sigma : ndarray, shape (n,)   singular values, descending
    v     : ndarray, shape (Q, n) right singular vectors (query loadings)
    u     : ndarray, shape (N, n) left singular vectors (training-row scores)
    """

    sigma: np.ndarray
    v: np.ndarray
    u: np.ndarray


# --------------------------------------------------------------------------- input


def _array_name(arr: Any) -> str:
    """Best human-readable location of a zarr (or other lazy) array."""
    store = getattr(arr, "store", None)
    root = getattr(store, "root", None)
    if root is not None:
        path = getattr(arr, "path", "") or ""
        return str(Path(str(root)) / path) if path else str(root)
    store_path = getattr(arr, "store_path", None)
    if store_path is not None:
        return str(store_path)
    return "array"


def _resolve(S: Any) -> tuple[Any, str]:
    """Return ``(array_like, source_name)`` for a path (:func:`aria.io.matrices.open_matrix`), zarr array or ndarray."""
    if isinstance(S, GramStats):
        raise TypeError("got GramStats; use reliability_from_stats(stats) instead")
    if isinstance(S, (str, os.PathLike)):  # any format of aria.io.matrices, read lazily
        m = open_matrix(S)
        return m.data, m.source
    if isinstance(S, np.ndarray):
        return S, "array"
    if hasattr(S, "shape") and hasattr(S, "__getitem__"):
        # zarr array or another lazy array: slice it, never load it whole.
        return S, _array_name(S)
    return np.asarray(S), "array"


def _check_shape(arr: Any, source: str) -> tuple[int, int]:
    shape = tuple(arr.shape)
    if len(shape) != 2:
        raise ValueError(f"{source}: score matrix must be 2-D (N, Q), got shape {shape}")
    n, q = (int(s) for s in shape)
    if n == 0 or q == 0:
        raise ValueError(f"{source}: empty score matrix, shape {shape}")
    dtype = np.dtype(getattr(arr, "dtype", np.float64))
    if dtype.kind not in "biuf":
        raise ValueError(f"{source}: score matrix must be real numeric, got dtype {dtype}")
    return n, q


def default_row_chunk(arr: Any) -> int:
    """Rows per streamed chunk when the caller gives none.

    About :data:`TARGET_CHUNK_ELEMENTS` elements per chunk, rounded to a whole
    number of the store's row chunks (at least one), so that every stored
    chunk is decompressed exactly once. In-memory arrays: the target alone.
    """
    n, q = int(arr.shape[0]), int(arr.shape[1])
    target = max(1, TARGET_CHUNK_ELEMENTS // max(q, 1))
    chunks = getattr(arr, "chunks", None)
    if chunks:
        c = max(1, int(chunks[0]))
        rows = c * max(1, target // c)
    else:
        rows = target
    return max(1, min(rows, n))


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="chunk", desc=desc)


def _raise_nonfinite(block: np.ndarray, start: int, source: str) -> None:
    bad_rows = np.flatnonzero(~np.isfinite(block).all(axis=1))
    if bad_rows.size:
        r = int(bad_rows[0])
        c = int(np.flatnonzero(~np.isfinite(block[r]))[0])
        raise ValueError(f"{source}: non-finite score ({block[r, c]}) at row {start + r}, column {c}")
    raise ValueError(f"{source}: score chunk starting at row {start} overflows float64 in its column sums")


# --------------------------------------------------------------------------- pass 1


def gram_stats(
    S: Any,
    *,
    row_chunk: int | None = None,
    progress: bool = False,
    precision: str = "float64",
    prefetch: int = 1,
) -> GramStats:
    """Accumulate G = SᵀS, column sums and sums of squares in one streaming pass.

    Parameters
    ----------
    S : ndarray, zarr array, str or Path
        Score matrix of shape (N, Q), or the path of a score store (see
        :mod:`aria.io.stores`; its ``scores`` array is read).
    row_chunk : int, optional
        Rows per chunk read. Default: :func:`default_row_chunk`, a whole
        number of the store's row chunks. A value that is not a multiple of
        the store chunk makes some stored chunks be decoded twice.
    progress : bool, default False
        Show a tqdm progress bar over chunks.
    precision : {"float64", "float32"}, default "float64"
        Precision of each chunk's centred Gram product (the cost of the pass).
        Means and the merge of chunks are float64 either way. "float64" agrees
        with a float64 brute force to ~1e-12 relative; "float32" halves the
        GEMM time and agrees to ~1e-6 relative (the diagnostics to ~1e-6
        absolute; ``tests/evaluation/test_diagnostics.py`` states the bound).
    prefetch : int, default 1
        Chunks read ahead in a background thread, overlapping decompression
        with the products (0: read in the calling thread).

    Returns
    -------
    GramStats
        ``gram`` (Q, Q), ``cgram`` (Q, Q), ``mean``/``colsum``/``colsumsq``
        (Q,), all float64.

    Raises
    ------
    ValueError
        On a non-2-D, empty or non-numeric matrix, or a non-finite value
        (the message names the source and the first bad row).
    """
    arr, source = _resolve(S)
    return _accumulate(arr, source, row_chunk, progress, precision=precision, prefetch=prefetch)


def _accumulate(
    arr: Any, source: str, row_chunk: int | None, progress: bool, *, precision: str = "float64", prefetch: int = 1
) -> GramStats:
    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}")
    n, q = _check_shape(arr, source)
    rows = default_row_chunk(arr) if row_chunk is None else int(row_chunk)
    if rows < 1:
        raise ValueError(f"row_chunk must be >= 1, got {row_chunk}")
    n_chunks = -(-n // rows)

    acc = None
    bar = _progress(n_chunks, progress, "gram")
    try:
        for start, block in iter_row_chunks(arr, rows=rows, prefetch=prefetch):
            part = _chunk_moments(block, start, source, precision)
            acc = part if acc is None else _merge_moments(acc, part)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    count, mean, m2 = acc
    if count != n:  # pragma: no cover - guards a misbehaving lazy array
        raise ValueError(f"{source}: read {count} rows, expected {n}")
    return _finish(n, q, mean, m2, source=source, rows=rows, n_chunks=n_chunks)


def _chunk_moments(block, start: int, source: str, precision: str) -> tuple[int, np.ndarray, np.ndarray]:
    """``(rows, column means, centred Gram)`` of one chunk, float64 (the Gram product in ``precision``)."""
    x = np.array(block, dtype=np.float64)  # own float64 copy, centred in place
    mb = x.mean(axis=0)
    if not np.isfinite(mb).all():
        _raise_nonfinite(np.asarray(block), start, source)
    x -= mb
    if precision == "float32":
        x32 = x.astype(np.float32)
        return x.shape[0], mb, (x32.T @ x32).astype(np.float64)  # float32 syrk of the centred chunk
    return x.shape[0], mb, x.T @ x  # float64 syrk


def _merge_moments(a, b):
    """Chan et al.'s pairwise merge of two chunks' ``(count, mean, centred Gram)``."""
    (na, ma, m2a), (nb, mb, m2b) = a, b
    tot = na + nb
    delta = mb - ma
    m2 = m2a + m2b
    m2 += np.outer(delta, delta * (na * nb / tot))
    return tot, ma + delta * (nb / tot), m2


def gram_stats_dask(S, *, precision: str = "float64", source: str = "dask array") -> GramStats:
    """:func:`gram_stats` of a dask array (N, Q) as a dask graph: one task per row chunk, merged
    pairwise in a tree, run by the active dask scheduler (:func:`aria.parallel.dask_scheduler`).

    Equal to :func:`gram_stats` to float round-off (the merge order differs). Columns are
    rechunked into one block per row chunk.
    """
    import dask

    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}")
    n, q = _check_shape(S, source)
    S = S.rechunk({1: -1})
    starts = np.concatenate([[0], np.cumsum(S.chunks[0])[:-1]])
    parts = [
        dask.delayed(_chunk_moments)(blk, int(st), source, precision) for blk, st in zip(S.to_delayed().ravel(), starts)
    ]
    while len(parts) > 1:  # a balanced tree of merges
        parts = [
            dask.delayed(_merge_moments)(*parts[i : i + 2]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    count, mean, m2 = dask.compute(parts[0])[0]
    return _finish(n, q, mean, m2, source=source, rows=int(max(S.chunks[0])), n_chunks=len(S.chunks[0]))


def _finish(n, q, mean, m2, *, source, rows, n_chunks) -> GramStats:
    m2 = 0.5 * (m2 + m2.T)
    if not np.isfinite(m2).all():
        raise ValueError(f"{source}: Gram matrix overflows float64 (scores too large)")
    nmu = n * mean
    gram = m2 + np.outer(nmu, mean)
    gram = 0.5 * (gram + gram.T)
    colsumsq = np.diagonal(m2) + nmu * mean
    np.fill_diagonal(gram, colsumsq)
    return GramStats(
        n=n,
        q=q,
        mean=mean,
        cgram=m2,
        gram=gram,
        colsum=nmu,
        colsumsq=colsumsq,
        source=source,
        row_chunk=rows,
        n_chunks=n_chunks,
    )


# --------------------------------------------------------------------------- diagnostics


def reliability_from_stats(stats: GramStats) -> dict[str, float]:
    """The four §4 diagnostics from already accumulated :class:`GramStats`.

    See :func:`reliability` for the definitions and conventions.
    """
    n, q, src = stats.n, stats.q, stats.source
    if q < 2:
        raise ValueError(f"{src}: rho_bar needs at least 2 queries (columns), got Q={q}")
    if n < 2:
        raise ValueError(f"{src}: rho_bar needs at least 2 training rows, got N={n}")
    total = stats.frobenius_sq
    if not total > 0.0:
        raise ValueError(f"{src}: score matrix is all zero; energy ratios are undefined")

    lam = stats.eigvals()
    r1 = lam[0] / total
    r2_5 = lam[1:5].sum() / total

    # c_bar: colsum^2 / (N colsumsq) = N mu^2 / (M2_qq + N mu^2); 0/0 -> 0.
    mean_energy = n * stats.mean**2
    with np.errstate(invalid="ignore", divide="ignore"):
        conc = np.where(stats.colsumsq > 0, mean_energy / stats.colsumsq, 0.0)
    c_bar = float(np.clip(conc, 0.0, 1.0).mean())

    # rho_bar from the centred Gram; constant columns correlate 0 with all.
    var = np.diagonal(stats.cgram)
    const = var <= _CONST_RTOL * stats.colsumsq
    inv = np.zeros(q)
    inv[~const] = 1.0 / np.sqrt(var[~const])
    corr = stats.cgram * inv[:, None]
    corr *= inv[None, :]
    np.clip(corr, -1.0, 1.0, out=corr)
    np.abs(corr, out=corr)
    off = corr.sum() - np.trace(corr)
    rho_bar = off / (q * (q - 1))

    return {
        "r1": float(r1),
        "r2_5": float(r2_5),
        "c_bar": float(c_bar),
        "rho_bar": float(rho_bar),
    }


def reliability(
    S: Any,
    *,
    row_chunk: int | None = None,
    progress: bool = False,
    precision: str = "float64",
    prefetch: int = 1,
) -> dict[str, float]:
    """Reliability diagnostics of a score matrix (SPEC §4), one streaming pass.

    Parameters
    ----------
    S : ndarray, zarr array, str or Path
        Raw (un-normalised) score matrix, shape (N, Q), N training rows by Q
        queries, or the path of a score store.
    row_chunk : int, optional
        Rows per chunk read (default: whole store chunks, ~32 MiB float64).
    progress : bool, default False
        Show a tqdm progress bar.
    precision, prefetch
        See :func:`gram_stats`.

    Returns
    -------
    dict
        ``{"r1", "r2_5", "c_bar", "rho_bar"}`` as python floats:

        * ``r1 = sigma_1^2 / ||S||_F^2``;
        * ``r2_5 = sum_{i=2..5} sigma_i^2 / ||S||_F^2`` (fewer axes: those that
          exist);
        * ``c_bar = mean_q colsum_q^2 / (N colsumsq_q)``, an all-zero column's
          term being 0;
        * ``rho_bar = mean_{a<b} |corr(S[:,a], S[:,b])|``, a constant column's
          correlations being 0.

    Raises
    ------
    ValueError
        Non-finite values (message names the store path, or ``"array"``, and
        the first bad row); Q < 2 or N < 2 (``rho_bar`` undefined); an
        all-zero matrix.
    """
    arr, source = _resolve(S)
    n, q = _check_shape(arr, source)
    # Fail before streaming a large store for a matrix that cannot be scored.
    if q < 2:
        raise ValueError(f"{source}: rho_bar needs at least 2 queries (columns), got Q={q}")
    if n < 2:
        raise ValueError(f"{source}: rho_bar needs at least 2 training rows, got N={n}")
    return reliability_from_stats(_accumulate(arr, source, row_chunk, progress, precision=precision, prefetch=prefetch))


# --------------------------------------------------------------------------- pass 2


def leading_axes(
    S: Any,
    *,
    n: int = 1,
    row_chunk: int | None = None,
    stats: GramStats | None = None,
    progress: bool = False,
) -> LeadingAxes:
    """Leading ``n`` singular triplets of S from its Gram, plus a second pass for u.

    ``sigma_i^2`` and ``v_i`` are the top eigenpairs of G = SᵀS; then
    ``u_i = S v_i / sigma_i`` is computed in a second streaming pass.

    Parameters
    ----------
    S : ndarray, zarr array, str or Path
        Score matrix, shape (N, Q), or a score store path.
    n : int, default 1
        Number of axes, ``1 <= n <= Q``.
    row_chunk : int, optional
        Rows per chunk (default as in :func:`gram_stats`).
    stats : GramStats, optional
        Result of an earlier :func:`gram_stats` on the same S; skips pass 1.
    progress : bool, default False
        Show tqdm progress bars.

    Returns
    -------
    LeadingAxes
        ``sigma`` (n,), ``v`` (Q, n), ``u`` (N, n), float64. Each ``v[:, i]``
        is signed to have a non-negative sum. An axis with ``sigma_i == 0``
        (rank-deficient S) gets ``u[:, i] = 0``.
    """
    arr, source = _resolve(S)
    nrows, q = _check_shape(arr, source)
    n = int(n)
    if not 1 <= n <= q:
        raise ValueError(f"{source}: n must be in [1, Q={q}], got {n}")
    if stats is None:
        stats = _accumulate(arr, source, row_chunk, progress)
    elif (stats.n, stats.q) != (nrows, q):
        raise ValueError(f"{source}: stats are for shape ({stats.n}, {stats.q}), S has shape ({nrows}, {q})")
    lam, vecs = np.linalg.eigh(stats.gram)
    order = np.argsort(lam)[::-1][:n]
    lam = np.clip(lam[order], 0.0, None)
    v = np.ascontiguousarray(vecs[:, order])
    # Sign convention: non-negative column sum; ties -> largest |entry| positive.
    sums = v.sum(axis=0)
    tiny = np.abs(sums) <= 1e-12 * np.abs(v).sum(axis=0)
    piv = v[np.abs(v).argmax(axis=0), np.arange(n)]
    sign = np.where(tiny, np.sign(piv), np.sign(sums))
    sign[sign == 0] = 1.0
    v *= sign

    sigma = np.sqrt(lam)
    scale = np.zeros(n)
    pos = sigma > 0
    scale[pos] = 1.0 / sigma[pos]
    vs = v * scale  # (Q, n)

    rows = default_row_chunk(arr) if row_chunk is None else int(row_chunk)
    u = np.empty((nrows, n), dtype=np.float64)
    bar = _progress(-(-nrows // rows), progress, "u = S v / sigma")
    try:
        for start, block in iter_row_chunks(arr, rows=rows):
            u[start : start + block.shape[0]] = np.asarray(block, dtype=np.float64) @ vs
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return LeadingAxes(sigma=sigma, v=v, u=u)


#: thresholds of :func:`reading` (Aria's heuristics for a one-line summary, not the paper's)
COLLAPSE_R1 = 0.5
COLLAPSE_RHO = 0.5
OFFSET_C = 0.5


def reading(diag: dict) -> str:
    """One-line reading of the four diagnostics (SPEC §4 "Reading").

    ``r1 >= 0.5`` or ``rho_bar >= 0.5`` reads as query-independent collapse (the
    method ranks training items nearly the same for every query); ``c_bar >= 0.5``
    as a per-query offset dominating each column. The cut-offs are Aria's
    heuristics for a quick summary; the values themselves are the evidence.
    """
    r1, rho, c = diag["r1"], diag["rho_bar"], diag["c_bar"]
    parts = []
    high = [f"{k} = {v:.2f}" for k, v, cut in (("r1", r1, COLLAPSE_R1), ("rho_bar", rho, COLLAPSE_RHO)) if v >= cut]
    if high:
        parts.append(
            f"query-independent collapse ({', '.join(high)} >= 0.5): the method ranks training items "
            "nearly the same for every query, so its per-query evidence describes one fixed group"
        )
    if c >= OFFSET_C:
        parts.append(
            f"a per-query offset dominates (c_bar = {c:.2f} >= 0.5): compare scores within a query, not across queries"
        )
    if not parts:
        return (
            f"no sign of query-independent collapse (r1 = {r1:.2f}, rho_bar = {rho:.2f}, "
            f"c_bar = {c:.2f}, all < 0.5): the rankings differ from query to query"
        )
    return "; ".join(parts)


#: thresholds of :func:`verdict` (config ``analysis.verdict``); the reasoning is in its docstring
VERDICT_DEFAULTS = {"r1": 0.5, "v1_constancy": 0.9, "rho_bar": 0.5, "c_bar": 0.5, "min_queries": 10}


def v1_constancy(v: np.ndarray) -> float:
    """|sum(v)| / sqrt(Q) for a unit v (Q,): the cosine between v and the uniform direction.

    1 means the leading axis loads every query equally, i.e. it adds the same training
    ranking to every query; a v concentrated on a few queries gives about sqrt(share / Q).
    """
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    return float(abs(v.sum()) / (np.sqrt(len(v)) * max(np.linalg.norm(v), 1e-300)))


def verdict(diag: dict, *, thresholds: dict | None = None) -> dict:
    """A setting's verdict from its diagnostics (SPEC §4 "Reading", §7).

    One of, in this order of precedence:

    * ``collapsed``: ``r1 >= t["r1"]`` with a near-constant v_1 (``v1_constancy >=
      t["v1_constancy"]``), or ``rho_bar >= t["rho_bar"]``. Half the matrix's energy on one
      axis that loads every query alike means one training ranking is added to every query;
      a mean |correlation| of 0.5 between query columns means their rankings are largely
      shared. Either way a query's top-K is mostly the same group, so its homogeneity z
      describes that group, not attribution: the report marks such z as not interpretable.
      (A high r1 whose v_1 is concentrated on a few queries is a few loud queries, not
      collapse.) A diagnostics document without ``v1_constancy`` (older runs) uses r1 alone.
    * ``offset-dominated``: ``c_bar >= t["c_bar"]``: a per-query constant carries half of
      each column's energy; compare scores within a query, never across queries.
    * ``query-dependent``: none of the above.

    A setting with fewer than ``t["min_queries"]`` queries gets no verdict and the flag
    ``too few queries``: Pos/Sig move in steps of 1/Q, and with Q <= 5 r2_5 = 1 - r1 by
    construction (S has at most Q singular values).

    The cut-offs (0.5, 0.9, 10) are Aria's defaults, not the paper's; the paper reads its
    tables qualitatively (its collapsed rows have r1 >= 0.7 and rho_bar >= 0.6, its
    query-dependent ones r1 <= 0.2). Returns ``{"verdict": str | None, "flag": str | None,
    "sentence": str}``.
    """
    t = {**VERDICT_DEFAULTS, **(thresholds or {})}
    r1, rho, c, q = diag["r1"], diag["rho_bar"], diag["c_bar"], int(diag["q"])
    const = diag.get("v1_constancy")
    if q < t["min_queries"]:
        return {
            "verdict": None,
            "flag": "too few queries",
            "sentence": (
                f"No verdict: only {q} queries (< {t['min_queries']}); Pos and Sig move in steps of "
                f"{100 / q:.0f}%" + (", and r2_5 = 1 - r1 by construction" if q <= 5 else "") + "."
            ),
        }
    why = []
    if r1 >= t["r1"] and (const is None or const >= t["v1_constancy"]):
        why.append(
            f"r1 = {r1:.2f} >= {t['r1']}"
            + (f" with a near-constant v1 (constancy {const:.2f} >= {t['v1_constancy']})" if const is not None else "")
        )
    if rho >= t["rho_bar"]:
        why.append(f"rho_bar = {rho:.2f} >= {t['rho_bar']}")
    if why:
        return {
            "verdict": "collapsed",
            "flag": None,
            "sentence": (
                f"Collapsed ({'; '.join(why)}): the method ranks training items nearly the same for every "
                "query, so its homogeneity z describes one fixed group and is not interpretable as attribution."
            ),
        }
    if c >= t["c_bar"]:
        return {
            "verdict": "offset-dominated",
            "flag": None,
            "sentence": (
                f"Offset-dominated (c_bar = {c:.2f} >= {t['c_bar']}): a per-query constant carries most of "
                "each column; compare its scores within a query, not across queries."
            ),
        }
    return {
        "verdict": "query-dependent",
        "flag": None,
        "sentence": (
            f"Query-dependent (r1 = {r1:.2f}, rho_bar = {rho:.2f}, c_bar = {c:.2f}): the rankings differ "
            "from query to query, so its homogeneity z can be read as per-query evidence."
        ),
    }
