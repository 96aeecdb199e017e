"""Track-level score matrix (docs/spec.md §3, Eq. 1).

Each column of the segment-level score matrix S (N x Q) is normalized per query,
then averaged over the segments of each track:

- ``zscore``: (S[:, q] - mean_q) / std_q (population std; a constant column
  becomes all zeros) -- for TRAK and Grad-Cos;
- ``rank``: rank of S[j, q] within column q, 1 = lowest, ties get their average
  rank -- for LoGra, FactGraSS and unlearning (heavy-tailed scores);
- ``none``: raw scores.

S_bar[t, q] = mean over segments j of track t of the normalized score.
Embedding baselines are track-level already and skip this step.

Memory: the column statistics for ``zscore`` take one streaming pass over row
chunks; ``rank`` needs whole columns, so it reads S in column blocks sized to a
memory budget (each block is one pass over the row chunks).

Two engines (config ``compute.engine``): :func:`track_level` streams with numpy;
:func:`track_level_dask` builds the same matrix as a dask graph over the store's chunks,
so a threaded or ``dask.distributed`` scheduler can run it.
"""

from __future__ import annotations

import numpy as np

from aria.attribution.linalg import rank_columns
from aria.io.stores import iter_row_chunks

__all__ = ["NORMALIZATIONS", "track_index", "track_level", "track_level_dask"]

NORMALIZATIONS = ("zscore", "rank", "none")


def track_index(row_tracks) -> tuple[np.ndarray, np.ndarray]:
    """Map each row to its track: ``(track_ids (T,), row_to_track (N,) int)``.

    Tracks are ordered by first appearance in the rows.
    """
    row_tracks = np.asarray(row_tracks).astype(str)
    _, first, inverse = np.unique(row_tracks, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique ids -> first-appearance order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return row_tracks[np.sort(first)], rank[inverse]


def _checked_index(S, row_tracks, normalize: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`track_index` of ``row_tracks`` after checking ``normalize`` and the row count of S."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    track_ids, r2t = track_index(row_tracks)
    if len(r2t) != S.shape[0]:
        raise ValueError(f"{len(r2t)} row track ids for a matrix of {S.shape[0]} rows")
    return track_ids, r2t


def _column_std(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Population std from a (possibly slightly negative) variance; ``inf`` for a constant
    column (std ~ 0 relative to its scale), which then normalizes to zeros.
    """
    std = np.sqrt(np.maximum(var, 0.0))
    return np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, np.inf)


def _segment_means(block_sum: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return block_sum / counts[:, None]


def track_level(
    S, row_tracks, *, normalize: str, row_chunk: int | None = None, max_bytes: int = 256 * 2**20
) -> tuple[np.ndarray, np.ndarray]:
    """Normalize S per column, then average within tracks.

    Parameters
    ----------
    S : array (N, Q), numpy or zarr (read in row chunks)
    row_tracks : (N,) track id of each row
    normalize : {"zscore", "rank", "none"}, keyword-only
    row_chunk : rows per read; default the store's chunking
    max_bytes : memory budget for the column blocks of ``rank``

    Returns
    -------
    track_ids : (T,) str, in order of first appearance
    S_bar : float64 array (T, Q)
    """
    n, q = S.shape
    track_ids, r2t = _checked_index(S, row_tracks, normalize)
    counts = np.bincount(r2t, minlength=len(track_ids)).astype(np.float64)
    out = np.zeros((len(track_ids), q))

    if normalize == "rank":
        cols = max(1, int(max_bytes // (8 * max(n, 1))))
        for c0 in range(0, q, cols):
            block = np.empty((n, min(cols, q - c0)))
            for start, rows in iter_row_chunks(S, rows=row_chunk):
                block[start : start + len(rows)] = rows[:, c0 : c0 + cols]
            ranks = rank_columns(block)
            np.add.at(out[:, c0 : c0 + cols], r2t, ranks)
        return track_ids, _segment_means(out, counts)

    mean, std = np.zeros(q), np.ones(q)
    if normalize == "zscore":
        # shifted sums (shift = first chunk's column means) avoid cancellation
        s1, s2, shift = np.zeros(q), np.zeros(q), None
        for _, rows in iter_row_chunks(S, rows=row_chunk):
            rows = np.asarray(rows, dtype=np.float64)
            if shift is None:
                shift = rows.mean(0)
            rows = rows - shift
            s1 += rows.sum(0)
            s2 += (rows * rows).sum(0)
        mean = shift + s1 / n
        std = _column_std(mean, s2 / n - (s1 / n) ** 2)
    for start, rows in iter_row_chunks(S, rows=row_chunk):
        z = (np.asarray(rows, dtype=np.float64) - mean) / std
        np.add.at(out, r2t[start : start + len(rows)], z)
    return track_ids, _segment_means(out, counts)


def _track_bounds(r2t: np.ndarray, target: int) -> tuple[int, ...]:
    """Row chunk sizes of about ``target`` rows whose boundaries fall between tracks (r2t sorted)."""
    starts = np.flatnonzero(np.r_[True, r2t[1:] != r2t[:-1]])  # first row of each track
    ends = np.r_[starts[1:], len(r2t)]
    chunks, begin = [], 0
    for end in ends:
        if end - begin >= target:
            chunks.append(int(end - begin))
            begin = int(end)
    if begin < len(r2t):
        chunks.append(int(len(r2t) - begin))
    return tuple(chunks)


def track_level_dask(S, row_tracks, *, normalize: str, row_chunk: int | None = None, col_block: int | None = None):
    """:func:`track_level` as a dask graph over S's chunks (the dask engine).

    For ``zscore`` the column statistics are computed here (one pass, on the active
    scheduler); everything else is returned lazily, to be computed or stored (e.g.
    :meth:`aria.io.stores.ScoreWriter.store`) by the caller. Peak memory: a few row
    chunks per thread, plus N x ``col_block`` for ``rank``.

    Parameters
    ----------
    S : dask array (N, Q), e.g. ``dask.array.from_zarr`` of a score store
    row_tracks : (N,) track id of each row
    normalize : {"zscore", "rank", "none"}, keyword-only
    row_chunk : rows per task of the track sums; default S's row chunk
    col_block : columns per task of ``rank`` (each task holds N x col_block float64);
        default the columns that fit in 256 MiB

    Returns
    -------
    track_ids : (T,) str, in order of first appearance
    S_bar : lazy float64 dask array (T, Q), equal to :func:`track_level` up to round-off
        (the z-score is applied to the track means instead of to every row, which is the
        same affine map). Rows of a track need not be contiguous; if they are not, S is
        reordered by track first (a shuffle of the rows).
    """
    n, q = S.shape
    track_ids, r2t = _checked_index(S, row_tracks, normalize)
    row_chunk = int(row_chunk or S.chunks[0][0])
    S = S.astype(np.float64)
    if np.any(r2t[1:] < r2t[:-1]):  # a track's rows are scattered: group them (stable)
        order = np.argsort(r2t, kind="stable")
        S, r2t = S[order], r2t[order]

    if normalize == "rank":
        cb = int(col_block or max(1, (256 * 2**20) // (8 * max(n, 1))))
        S = S.rechunk((n, cb)).map_blocks(rank_columns, dtype=np.float64)
        center, scale = 0.0, 1.0
    elif normalize == "zscore":
        center, scale = _column_moments_dask(S, row_chunk)
    else:
        center, scale = 0.0, 1.0

    S = S.rechunk((_track_bounds(r2t, row_chunk), q))
    offsets = np.cumsum((0,) + S.chunks[0])
    t_chunks = tuple(int(r2t[e - 1] - r2t[s] + 1) for s, e in zip(offsets[:-1], offsets[1:]))

    def sums(block, block_info=None):
        lo, hi = block_info[0]["array-location"][0]
        t = r2t[lo:hi]
        first = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
        return np.add.reduceat(block, first, axis=0) / np.diff(np.r_[first, len(t)])[:, None]

    means = S.map_blocks(sums, chunks=(t_chunks, (q,)), dtype=np.float64)
    return track_ids, (means - center) / scale


def _column_moments_dask(S, row_chunk: int):
    """Column mean and std (population; ``inf`` for a constant column) of a dask array, computed now.

    The sums are shifted by the first row chunk's column means, as in :func:`track_level`.
    """
    import dask

    n = S.shape[0]
    shift = S[: min(row_chunk, n)].mean(axis=0)
    d = S - shift
    shift, s1, s2 = dask.compute(shift, d.sum(axis=0), (d * d).sum(axis=0))
    mean = shift + s1 / n
    return mean, _column_std(mean, s2 / n - (s1 / n) ** 2)
