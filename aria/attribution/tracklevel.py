"""Track-level score matrix (SPEC §3, Eq. 1).

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
"""

from __future__ import annotations

import numpy as np

from aria.io.stores import iter_row_chunks

__all__ = ["NORMALIZATIONS", "track_index", "track_level"]

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
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    n, q = S.shape
    track_ids, r2t = track_index(row_tracks)
    if len(r2t) != n:
        raise ValueError(f"{len(r2t)} row track ids for a matrix of {n} rows")
    counts = np.bincount(r2t, minlength=len(track_ids)).astype(np.float64)
    out = np.zeros((len(track_ids), q))

    if normalize == "rank":
        from scipy.stats import rankdata  # lazily: importing scipy.stats costs every job ~0.5 s

        cols = max(1, int(max_bytes // (8 * max(n, 1))))
        for c0 in range(0, q, cols):
            block = np.empty((n, min(cols, q - c0)))
            for start, rows in iter_row_chunks(S, rows=row_chunk):
                block[start : start + len(rows)] = rows[:, c0 : c0 + cols]
            ranks = rankdata(block, axis=0, method="average")
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
        var = np.maximum(s2 / n - (s1 / n) ** 2, 0.0)
        std = np.sqrt(var)
        # a constant column (std ~ 0 relative to its scale) normalizes to zeros
        std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, np.inf)
    for start, rows in iter_row_chunks(S, rows=row_chunk):
        z = (np.asarray(rows, dtype=np.float64) - mean) / std
        np.add.at(out, r2t[start : start + len(rows)], z)
    return track_ids, _segment_means(out, counts)
