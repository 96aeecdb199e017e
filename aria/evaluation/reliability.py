"""Reliability diagnostics of a score matrix (docs/spec.md §4), in one streaming pass.

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
Instead each chunk is centred on its own column means (computed in float64),
and its centred Gram is merged into the running one with the pairwise update
of Chan, Golub & LeVeque (1979)::

    delta = mean_b - mean_a
    M2    = M2_a + M2_b + delta delta^T * n_a n_b / (n_a + n_b)
    mean  = mean_a + delta * n_b / (n_a + n_b)

The raw Gram is recovered at the end as ``G = M2 + N mu mu^T`` (a sum of
non-negative-definite terms, no cancellation), and likewise
``colsumsq = diag(M2) + N mu^2``.  The per-chunk product ``X^T X`` is one BLAS
``syrk`` (upper triangle only, mirrored at the end), the whole cost of the pass.

Its precision (``precision=``) is float32 by default: a float32 chunk is centred
on its float32-rounded mean ``c`` (one correctly rounded float32 subtraction;
``a = mean - c`` is kept in float64 and ``n a a^T`` taken off the Gram), its
product is computed in float32 on blocks of ``F32_BLOCK_ROWS`` = 1024 rows, and
each block's product is added to a float64 sum; the diagonal (sums of squares)
is computed in float64 outright. Error of one block's entry, relative to
``sqrt(G_ii G_jj)`` (Higham 2002, §3.1; Higham & Mary 2019 for the typical case,
u32 = 2^-24 = 6e-8): at most ``c u32`` = 6.1e-5 for c = 1024 rows, typically
``sqrt(c) u32`` = 1.9e-6, and with the K-blocking of an optimised BLAS a few u32
(measured: 1-7 u32 with OpenBLAS). The float64 merge adds only float64 round-off, and the m
blocks' independent errors add in quadrature, so the totals carry about
``sqrt(c) u32 / sqrt(m)``: <= 1e-6 from m = 4 blocks (N >= 4096 rows) on. The
diagnostics are ratios and averages of these entries (eigenvalues of G over its
trace, averages over Q columns or Q(Q-1)/2 pairs), so their relative error is
no larger, typically smaller: ~1e-7 in ``tests/evaluation/test_diagnostics.py``,
which holds them to 1e-6 relative of a float64 brute force. ``precision="float64"``
(twice the product time) agrees with the brute force to ~1e-12. A chunk whose
float32 products over- or underflow (a float32 diagonal off its float64 value by
more than the worst-case bound, e.g. scores beyond 1e19 or below 1e-19) is
multiplied in float64 instead.

The chunks are read (decompressed) and multiplied by ``workers`` threads at once,
each product on one BLAS thread, so that one chunk's read overlaps another's
product without the decompression and a multi-threaded GEMM competing for the
same cores; chunks are merged in row order, so the result does not depend on the
number of workers (for the same BLAS threads per product: a product on two BLAS
threads and on one can differ in the last bits).

Conventions
-----------
* A *constant column* (zero variance, up to float64 round-off: a column whose
  centred sum of squares is below ``(32 eps)^2`` times its raw sum of squares)
  has all its correlations defined as 0. Its pairs still count in the
  Q(Q-1)/2 pairs averaged by ``rho_bar``. When fewer than two columns vary
  (a constant matrix), no correlation is defined and ``rho_bar`` is NaN.
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
from scipy.linalg import blas as _blas

from aria.config import ANALYSIS_DEFAULTS
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
    "centred_diagnostics",
    "verdict",
    "VERDICT_DEFAULTS",
]

#: Target number of matrix elements per streamed chunk when the caller gives no
#: ``row_chunk`` (4 Mi elements = 32 MiB as float64).
TARGET_CHUNK_ELEMENTS = 1 << 22

#: Rows per float32 product when ``precision="float32"`` (module docstring,
#: "Numerics"): each block's product carries a relative error of about
#: sqrt(F32_BLOCK_ROWS) u32 = 1.9e-6 at most in the usual case (F32_BLOCK_ROWS u32
#: = 6.1e-5 in the worst), and the blocks are merged in float64.
F32_BLOCK_ROWS = 1024

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
    precision: str = "float32",
    workers: int | None = None,
    source: str | None = None,
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
    precision : {"float32", "float64"}, default "float32"
        Precision of each chunk's centred Gram product (the cost of the pass).
        Means, the diagonal and the merge of chunks are float64 either way.
        "float32" halves the product time; its diagnostics agree with a float64
        brute force to ~1e-7 relative, within 1e-6 (module docstring, "Numerics").
        "float64" agrees to ~1e-12.
    source : str, optional
        What error messages call S (e.g. the file a user gave); default: the store path, or "array".
    workers : int, optional
        Threads that read (decompress) and multiply chunks concurrently, so that
        one chunk's product overlaps the next chunk's read. The BLAS pool's threads
        are shared out between them (the process's pool is limited accordingly for
        the duration of the pass): by default one worker per BLAS thread (normally
        one per core), each product on one thread. 0: everything in the calling
        thread, one chunk after the other, with the BLAS pool as configured. Chunks
        are merged in row order whatever the number of workers, so the result does
        not depend on it for the same BLAS threads per product (OpenBLAS's ``ssyrk``
        on two threads and on one can differ in the last bits). Memory: about
        ``workers + 1`` chunks (float32 and their centred copies) and as many Q x Q
        float64 partial Grams.

    Returns
    -------
    GramStats
        ``gram`` (Q, Q), ``cgram`` (Q, Q), ``mean``/``colsum``/``colsumsq``
        (Q,), all float64.

    Raises
    ------
    ValueError
        On a non-2-D, empty or non-numeric matrix, or a non-finite value
        (the message names the source and the first bad row), or a bad
        ``precision``/``workers``/``row_chunk``.
    """
    arr, found = _resolve(S)
    source = source or found
    return _accumulate(arr, source, row_chunk, progress, precision=precision, workers=workers)


def _check_precision(precision: str) -> None:
    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")


def _blas_threads() -> int:
    """Threads of the process's BLAS pool (the smallest, if several BLAS are loaded)."""
    from threadpoolctl import threadpool_info

    counts = [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(1, min(counts)) if counts else max(1, os.cpu_count() or 1)


def _accumulate(
    arr: Any,
    source: str,
    row_chunk: int | None,
    progress: bool,
    *,
    precision: str = "float32",
    workers: int | None = None,
) -> GramStats:
    _check_precision(precision)
    n, q = _check_shape(arr, source)
    rows = default_row_chunk(arr) if row_chunk is None else int(row_chunk)
    if rows < 1:
        raise ValueError(f"row_chunk must be >= 1, got {row_chunk}")
    if workers is not None and int(workers) < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    n_chunks = -(-n // rows)

    acc = None
    bar = _progress(n_chunks, progress, "gram")
    try:
        for part in _chunk_parts(arr, rows, source, precision, workers):
            acc = part if acc is None else _merge_into(acc, part)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    count, mean, m2 = acc
    if count != n:  # pragma: no cover - guards a misbehaving lazy array
        raise ValueError(f"{source}: read {count} rows, expected {n}")
    return _finish(n, q, mean, m2, source=source, rows=rows, n_chunks=n_chunks)


def _chunk_parts(arr: Any, rows: int, source: str, precision: str, workers: int | None):
    """Yield each row chunk's ``(rows, mean, centred Gram)`` in row order.

    With ``workers`` > 0 the chunks are read and multiplied by that many threads
    (at most ``workers + 1`` chunks in flight), each product on one BLAS thread;
    with 0, in the calling thread.
    """
    n = int(arr.shape[0])
    starts = range(0, n, rows)

    def part(start: int):
        block = np.asarray(arr[start : start + rows])
        return _chunk_moments(block, start, source, precision)

    blas = _blas_threads()
    workers = blas if workers is None else int(workers)
    workers = min(workers, len(starts))
    if workers == 0:
        yield from map(part, starts)
        return

    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    from itertools import islice

    from threadpoolctl import threadpool_limits

    todo = iter(starts)
    # the cores the BLAS pool had, shared out between the workers (one each on a full machine)
    with (
        threadpool_limits(limits=max(1, blas // workers), user_api="blas"),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aria-gram") as pool,
    ):
        pending = deque(pool.submit(part, s) for s in islice(todo, workers + 1))
        try:
            while pending:
                item = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(part, nxt))
                yield item
        finally:  # an error or an early stop: drop the chunks not yet started
            for f in pending:
                f.cancel()


def _chunk_moments(block, start: int, source: str, precision: str) -> tuple[int, np.ndarray, np.ndarray]:
    """``(rows, column means, centred Gram)`` of one chunk, all float64.

    The centred Gram, shape (Q, Q) and Fortran-ordered, carries its **upper
    triangle only** (the strict lower one is not maintained); :func:`_finish`
    mirrors it. Its products are ``precision``; see the module docstring.
    """
    x = np.asarray(block)
    rows = x.shape[0]
    mb = x.mean(axis=0, dtype=np.float64)
    if not np.isfinite(mb).all():
        _raise_nonfinite(x, start, source)
    if precision == "float64":
        xc = np.subtract(x, mb, dtype=np.float64)
        return rows, mb, _blas.dsyrk(1.0, xc.T, lower=0)  # upper triangle of xcᵀxc
    # float32: centre on the float32-rounded mean c (for float32 scores x - c is one
    # correctly rounded float32 subtraction); a = mb - c is carried in float64 below.
    if x.dtype == np.float32:
        c = mb.astype(np.float32)
        xc = np.subtract(x, c)
        a = mb - c
    else:
        with np.errstate(over="ignore"):  # beyond float32: inf, caught on the diagonal below
            xc = np.subtract(x, mb, dtype=np.float64).astype(np.float32)
        a = None
    g = np.zeros((x.shape[1], x.shape[1]), order="F")
    for s in range(0, rows, F32_BLOCK_ROWS):  # each block's float32 product merged in float64
        g += _blas.ssyrk(1.0, xc[s : s + F32_BLOCK_ROWS].T, lower=0)
    # The diagonal (sums of squares: positive terms, where float32 accumulation
    # errors grow fastest) exactly in float64; a float32 diagonal that is off by
    # more than the worst-case bound (F32_BLOCK_ROWS u32 < 1e-4) over- or
    # underflowed float32: such a chunk is multiplied in float64 instead.
    d64 = np.einsum("ij,ij->j", xc, xc, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, which fails the test
        fits = np.all(np.abs(np.diagonal(g) - d64) <= 1e-3 * d64)
    if not fits:
        return _chunk_moments(x, start, source, "float64")
    np.fill_diagonal(g, d64)
    if a is not None:  # Gram about c -> about the chunk mean: minus rows * a aᵀ
        g = _blas.dsyr(-float(rows), a, a=g, lower=0, overwrite_a=1)
    return rows, mb, g


def _merge_into(acc, part):
    """Chan et al.'s pairwise merge of ``part`` into ``acc`` (in place on ``acc``'s Gram).

    Both are ``(count, mean, centred Gram)``; the Grams' upper triangles are merged.
    """
    (na, ma, m2a), (nb, mb, m2b) = acc, part
    tot = na + nb
    delta = mb - ma
    m2a += m2b
    m2a = _blas.dsyr(na * nb / tot, delta, a=m2a, lower=0, overwrite_a=1)  # upper triangle of w δδᵀ
    return tot, ma + delta * (nb / tot), m2a


def _merge_moments(a, b):
    """:func:`_merge_into` on a copy of ``a`` (the inputs are left unchanged)."""
    na, ma, m2a = a
    return _merge_into((na, ma, np.array(m2a, dtype=np.float64, order="F")), b)


def gram_stats_dask(S, *, precision: str = "float32", source: str = "dask array") -> GramStats:
    """:func:`gram_stats` of a dask array (N, Q) as a dask graph: one task per row chunk, merged
    pairwise in a tree, run by the active dask scheduler (:func:`aria.parallel.dask_scheduler`).

    Equal to :func:`gram_stats` to float round-off (the merge order differs). Columns are
    rechunked into one block per row chunk.
    """
    import dask

    _check_precision(precision)
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
    m2 = np.triu(m2)
    m2 += np.triu(m2, 1).T  # the symmetric matrix from the accumulated upper triangle
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
    # no pair of non-constant columns: every correlation is undefined, so is their mean
    rho_bar = off / (q * (q - 1)) if (~const).sum() >= 2 else float("nan")

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
    precision: str = "float32",
    workers: int | None = None,
) -> dict[str, float]:
    """Reliability diagnostics of a score matrix (docs/spec.md §4), one streaming pass.

    Parameters
    ----------
    S : ndarray, zarr array, str or Path
        Raw (un-normalised) score matrix, shape (N, Q), N training rows by Q
        queries, or the path of a score store.
    row_chunk : int, optional
        Rows per chunk read (default: whole store chunks, ~32 MiB float64).
    progress : bool, default False
        Show a tqdm progress bar.
    precision, workers
        See :func:`gram_stats` (default float32 products, merged in float64:
        the diagnostics agree with float64 ones to ~1e-7 relative).

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
          correlations being 0; NaN when fewer than two columns vary.

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
    return reliability_from_stats(_accumulate(arr, source, row_chunk, progress, precision=precision, workers=workers))


# --------------------------------------------------------------------------- pass 2


def leading_axes(
    S: Any,
    *,
    n: int = 1,
    row_chunk: int | None = None,
    stats: GramStats | None = None,
    progress: bool = False,
    precision: str = "float32",
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
    precision : {"float32", "float64"}, default "float32"
        Products of pass 1 when ``stats`` is not given (see :func:`gram_stats`).
        Pass 2 is float64.

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
        stats = _accumulate(arr, source, row_chunk, progress, precision=precision)
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


# --------------------------------------------------------------------------- reading


def centred_diagnostics(stats: GramStats) -> dict[str, float]:
    """What is left of S's leading axis once each query's mean is removed, from the same Gram pass.

    ``r1`` counts the per-query offsets: a matrix ``S = 1 mu^T + noise`` (each query a constant plus
    independent noise) has ``r1`` about ``c_bar`` although its rankings are independent from query to
    query. Rankings within a query do not change when the query's mean is subtracted, so the
    collapse that matters for attribution is that of the column-centred matrix
    ``Sc = S - 1 mu^T``, whose Gram ``Sc^T Sc`` is ``stats.cgram`` (no further pass over S).

    Parameters
    ----------
    stats : GramStats
        From :func:`gram_stats` (N x Q matrix S).

    Returns
    -------
    dict
        * ``r1_centred = lambda_1(Sc^T Sc) / ||Sc||_F^2``, the leading axis's share of the
          within-query variation; NaN when every column is constant (``||Sc||_F = 0``).
        * ``v1_constancy_centred``: :func:`v1_constancy` of that axis's query loadings (Q,);
          NaN likewise.
        * ``offset_share = N ||mu||^2 / ||S||_F^2``, the energy of the offsets ``1 mu^T``. By
          Weyl's inequality ``r1 <= offset_share + (1 - offset_share) * r1_centred``: a high r1
          with a low ``r1_centred`` is the offsets' (c_bar's case), not a shared ranking.
        * ``n_constant``: columns with zero variance up to round-off (the ``rho_bar``
          convention), i.e. queries whose scores are all tied.
    """
    var = np.diagonal(stats.cgram)
    n_const = int(np.sum(var <= _CONST_RTOL * stats.colsumsq))
    total = stats.frobenius_sq
    offset = float(stats.n * np.dot(stats.mean, stats.mean) / total) if total > 0 else float("nan")
    ctot = float(np.clip(var, 0.0, None).sum())
    if n_const == stats.q or not ctot > 0.0:
        r1c = const = float("nan")
    else:
        lam, vecs = np.linalg.eigh(stats.cgram)
        r1c = float(np.clip(lam[-1], 0.0, None) / ctot)
        const = v1_constancy(vecs[:, -1])
    return {"r1_centred": r1c, "v1_constancy_centred": const, "offset_share": offset, "n_constant": n_const}


#: thresholds of :func:`verdict`: the defaults of config ``analysis.verdict`` (:data:`aria.config.ANALYSIS_DEFAULTS`,
#: one table); the reasoning is in its docstring
VERDICT_DEFAULTS = dict(ANALYSIS_DEFAULTS["verdict"])


def v1_constancy(v: np.ndarray) -> float:
    """|sum(v)| / sqrt(Q) for a unit v (Q,): the cosine between v and the uniform direction.

    1 means the leading axis loads every query equally, i.e. it adds the same training
    ranking to every query; a v concentrated on a few queries gives about sqrt(share / Q).
    """
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    return float(abs(v.sum()) / (np.sqrt(len(v)) * max(np.linalg.norm(v), 1e-300)))


def _isnan(x) -> bool:
    return x is None or (isinstance(x, float) and np.isnan(x))


def _collapse_reasons(diag: dict, t: dict) -> tuple[list[str], str]:
    """``(reasons for "collapsed", a note on an r1 that the offsets explain)`` at thresholds ``t``."""
    r1, rho, c = diag["r1"], diag["rho_bar"], diag["c_bar"]
    r1c, cc, const = diag.get("r1_centred"), diag.get("v1_constancy_centred"), diag.get("v1_constancy")
    why, note = [], ""
    raw_high = r1 >= t["r1"] and (const is None or const >= t["v1_constancy"])
    if r1c is not None and not _isnan(r1c):
        if r1c >= t["r1"] and cc >= t["v1_constancy"]:
            why.append(
                f"r1 = {r1:.2f}, and {r1c:.2f} with each query's mean removed, >= {t['r1']} on an axis that "
                f"loads every query alike (constancy {cc:.2f} >= {t['v1_constancy']})"
            )
        elif raw_high:
            note = (
                f" Its r1 = {r1:.2f} is the per-query offsets' (they carry "
                f"{diag.get('offset_share', c):.2f} of the energy; with each query's mean removed the leading "
                f"axis carries {r1c:.2f}), not a shared ranking."
            )
    elif raw_high:  # diagnostics without the centred r1 (older runs): r1 is only read when offsets are small
        if c < t["c_bar"]:
            why.append(
                f"r1 = {r1:.2f} >= {t['r1']}"
                + (
                    f" with a near-constant v1 (constancy {const:.2f} >= {t['v1_constancy']})"
                    if const is not None
                    else ""
                )
            )
        else:
            note = (
                f" Its r1 = {r1:.2f} may be the per-query offsets' (c_bar = {c:.2f}); rerun the diagnostics "
                "for r1 with each query's mean removed."
            )
    if not _isnan(rho) and rho >= t["rho_bar"]:
        why.append(f"rho_bar = {rho:.2f} >= {t['rho_bar']}")
    return why, note


def _sure_collapse(diag: dict, t: dict) -> list[str]:
    """Collapse that a few queries already show beyond doubt (see :func:`verdict`)."""
    sure, q = t["collapse_sure"], int(diag["q"])
    why = []
    if not _isnan(diag["rho_bar"]) and diag["rho_bar"] >= sure:
        why.append(f"rho_bar = {diag['rho_bar']:.2f} >= {sure}")
    r1c, cc = diag.get("r1_centred"), diag.get("v1_constancy_centred")
    m = min(q, int(diag.get("n", q + 1)) - 1)  # rank bound of the centred matrix
    if r1c is not None and not _isnan(r1c) and m >= 2:
        excess = (m * r1c - 1.0) / (m - 1.0)
        if excess >= sure and cc >= t["v1_constancy"]:
            why.append(
                f"r1 with each query's mean removed = {r1c:.2f}, {excess:.2f} of the way from its floor 1/{m} "
                f"to 1 (>= {sure}) on an axis that loads every query alike"
            )
    return why


def _noisy(diag: dict, t: dict) -> str | None:
    """The sentence of a ``noisy`` verdict, or None (see :func:`verdict`)."""
    rep = diag.get("replica")
    if not rep:
        return None
    rho = rep["spearman"]["q50"]
    if _isnan(rho) or rho >= t["agreement"]:
        return None
    return (
        f"Noisy: rankings do not survive retraining with another seed (median Spearman {rho:.2f} between the "
        f"scores of two independently trained models, < {t['agreement']}; they share "
        f"{_pct(rep['shared_energy'])}% of the score energy). Most of each query's ranking depends on the "
        "seed of the model it was computed on: its top-K and homogeneity z describe that one trained model, not "
        "what the data teach models trained like it, and its low r1 and rho_bar may only say that this "
        "seed-specific part is query-dependent."
    )


_COLLAPSED = (
    "the method ranks training items nearly the same for every query, so a query's top-K is one fixed "
    "group and its homogeneity z is not interpretable as attribution to that query."
)


def verdict(diag: dict, *, thresholds: dict | None = None) -> dict:
    """A setting's verdict from its diagnostics (docs/spec.md §4 "Reading", §7).

    ``diag`` holds ``r1``, ``c_bar``, ``rho_bar``, ``q`` and, from :func:`centred_diagnostics`,
    ``r1_centred``, ``v1_constancy_centred``, ``offset_share``, ``n_constant`` (older documents
    lack them; see below), optionally ``n`` and ``v1_constancy``. One of, in this order:

    * ``constant``: every query's scores are tied (each column constant): there is no ranking,
      ``rho_bar`` and ``r1_centred`` are undefined (NaN).
    * ``noisy``: the rankings do not survive retraining. ``diag["replica"]`` (from
      :func:`aria.evaluation.agreement.replica_agreement` of the scores of two independently
      trained models) has a median per-query Spearman correlation below ``t["agreement"]``
      (0.25). The Spearman correlation of two replicas estimates the share of a ranking's
      variance that both have in common (its test-retest reliability); below 0.25, a replica's
      ranking correlates with its seed-free part at less than sqrt(0.25) = 0.5. The other
      diagnostics cannot see this: a matrix of independent noise is full-rank and uncorrelated
      between queries, the best r1 and rho_bar there are. Without a replica (embedding
      baselines, a user's single matrix) this outcome is not available and the verdict says so.
    * ``collapsed``: ``r1_centred >= t["r1"]`` on a leading axis that loads every query alike
      (``v1_constancy_centred >= t["v1_constancy"]``), or ``rho_bar >= t["rho_bar"]``. Half the
      within-query variation on one axis shared by all queries, or a mean |correlation| of 0.5
      between query columns, means their rankings are largely one ranking; a query's top-K is
      then mostly the same group, so its homogeneity z describes that group, not attribution:
      the report marks such z as not interpretable. The r1 of docs/spec.md §4 (with ``v1_constancy``) is
      read through its centred version because r1 also counts the per-query offsets
      ``1 mu^T``, which change no ranking: a matrix of i.i.d. scores around a common offset has
      r1 ~ c_bar ~ 0.7 and independent rankings. (A high r1 whose v_1 is concentrated on a few
      queries is a few loud queries, not collapse.) Documents without ``r1_centred`` (older
      runs) read the raw r1 only when ``c_bar < t["c_bar"]``.
    * ``offset-dominated``: ``c_bar >= t["c_bar"]``: a per-query constant carries half of each
      column's energy; compare scores within a query, never across queries.
    * ``query-dependent``: none of the above.

    Fewer than ``t["min_queries"]`` queries: Pos/Sig move in steps of 1/Q, with Q <= 5
    r2_5 = 1 - r1 by construction, and the centred r1 is at least 1/Q whatever the method
    (the centred matrix has rank <= m = min(Q, N - 1)), so the 0.5 cut-offs cannot be
    decided. Such a setting gets no verdict (flag ``too few queries``) *unless* the collapse is
    beyond doubt: ``rho_bar >= t["collapse_sure"]`` (0.9), or the centred r1's excess over its
    floor, ``(m r1_centred - 1) / (m - 1)``, is ``>= t["collapse_sure"]`` on an axis that
    loads every query alike. The excess is 0 for m equally strong independent columns and 1
    for rank one; for Q columns with a common correlation rho it equals rho, so both rules
    read on the rho scale. At a mean |correlation| of 0.9, at least 80% of the measured query
    pairs are individually above the 0.5 cut-off (Markov's inequality on 1 - |corr|), so the
    reading does not rest on a few pairs. Such a setting is ``collapsed`` with the flag
    ``few queries``.

    The cut-offs (0.5, 0.9, 10) are Aria's defaults, not the paper's; the paper reads its
    tables qualitatively (its collapsed rows have r1 >= 0.7 and rho_bar >= 0.6, its
    query-dependent ones r1 <= 0.2). Returns ``{"verdict": str | None, "flag": str | None,
    "sentence": str}``.
    """
    t = {**VERDICT_DEFAULTS, **(thresholds or {})}
    r1, rho, c, q = diag["r1"], diag["rho_bar"], diag["c_bar"], int(diag["q"])
    n_const = diag.get("n_constant")
    if n_const is not None and n_const >= q:
        return {
            "verdict": "constant",
            "flag": None,
            "sentence": (
                f"Constant: each of the {q} queries gives every training item the same score (rho_bar is "
                "undefined), so there is no ranking and its top-K and homogeneity z are arbitrary."
            ),
        }
    tied = (
        f" {n_const} of {q} queries have all scores tied (no ranking)." if n_const else ""
    )  # such columns count as correlation 0 in rho_bar
    why, note = _collapse_reasons(diag, t)
    noisy = _noisy(diag, t)
    if noisy is not None:
        also = f" Its diagnostics alone would read collapsed ({'; '.join(why)})." if why else ""
        return {"verdict": "noisy", "flag": None, "sentence": noisy + also + tied}
    if q < t["min_queries"]:
        sure = _sure_collapse(diag, t)
        if sure:
            return {
                "verdict": "collapsed",
                "flag": "few queries",
                "sentence": f"Collapsed even with only {q} queries ({'; '.join(sure)}): " + _COLLAPSED + tied,
            }
        return {
            "verdict": None,
            "flag": "too few queries",
            "sentence": (
                f"No verdict: only {q} queries (< {t['min_queries']}); Pos and Sig move in steps of "
                f"{100 / q:.0f}%" + (", r2_5 = 1 - r1 by construction" if q <= 5 else "") + ", and no "
                f"collapse is beyond doubt (rho_bar = {_num(rho)} < {t['collapse_sure']})." + note + tied
            ),
        }
    if why:
        also = f" A per-query offset also dominates (c_bar = {c:.2f})." if c >= t["c_bar"] else ""
        return {
            "verdict": "collapsed",
            "flag": None,
            "sentence": f"Collapsed ({'; '.join(why)}): " + _COLLAPSED + also + tied,
        }
    if c >= t["c_bar"]:
        return {
            "verdict": "offset-dominated",
            "flag": None,
            "sentence": (
                f"Offset-dominated (c_bar = {c:.2f} >= {t['c_bar']}): a per-query constant carries most of "
                "each column; compare its scores within a query, not across queries." + note + tied
            ),
        }
    return {
        "verdict": "query-dependent",
        "flag": None,
        "sentence": (
            f"Query-dependent (r1 = {r1:.2f}, rho_bar = {_num(rho)}, c_bar = {c:.2f}): the rankings differ "
            "from query to query, so its homogeneity z can be read as per-query evidence."
            + note
            + tied
            + _replica_note(diag)
        ),
    }


def _replica_note(diag: dict) -> str:
    """How a verdict that is not ``noisy`` stands on retraining (one sentence, or a caveat)."""
    rep = diag.get("replica")
    if not rep:
        return (
            " No replica from an independently trained model: whether these rankings survive retraining "
            "(the noisy verdict) was not measured."
        )
    return (
        f" Its rankings survive retraining with another seed (median Spearman {rep['spearman']['q50']:.2f} between "
        f"two independently trained models; {_pct(rep['shared_energy'])}% of the score energy shared)."
    )


def _pct(x: float) -> str:
    """A share in whole percent, without a negative zero (a shared energy of -0.3% estimates 0)."""
    return f"{int(round(100 * x))}"


def _num(x, spec: str = ".2f") -> str:
    return "undefined" if _isnan(x) else format(x, spec)


def reading(diag: dict, *, thresholds: dict | None = None) -> str:
    """One-line reading of the diagnostics (docs/spec.md §4 "Reading"): :func:`verdict`'s sentence.

    ``diag`` as for :func:`verdict` (``aria diagnose`` passes :func:`reliability_from_stats`
    and :func:`centred_diagnostics` of the same pass, with ``q`` and ``n``). The cut-offs are
    Aria's heuristics for a quick summary; the values themselves are the evidence.
    """
    return verdict(diag, thresholds=thresholds)["sentence"]
