"""Embedding-similarity scores (docs/spec.md §2 "Embedding baselines", §8 test-to-train).

Two scores compare every training track t with every query q:

- **average**: ``S[t, q] = cos(e(t), e(q))`` with ``e`` = an encoder's frame-level
  output averaged over time (:func:`cosine_scores`).
- **all-against-all**: ``S[t, q] = max_{a, b} cos(w_a(t), w_b(q))`` over all pairs of
  window embeddings, each window the mean of the frames in 10 s with a 1 s hop
  (:func:`window_embeddings`, :func:`all_against_all_scores`).

Both are track-level T x Q matrices with rows = training tracks and columns = queries,
like Aria's N x Q score matrices. Zero-norm vectors get cosine 0. The encoders are in
:mod:`aria.audio.encoders`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aria.attribution.linalg import unit_rows as _unit_rows

__all__ = ["cosine_scores", "window_embeddings", "all_against_all_scores"]


def _as_2d(X, what: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D (rows, dim), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return X


def cosine_scores(train_emb: np.ndarray, query_emb: np.ndarray) -> np.ndarray:
    """Cosine similarity between every training and every query embedding.

    Parameters
    ----------
    train_emb : ndarray, shape (T, d)
        One embedding per training track (e.g. :meth:`Encoder.embed`).
    query_emb : ndarray, shape (Q, d)
        One embedding per query.

    Returns
    -------
    ndarray, shape (T, Q), float64
        ``S[t, q] = <e_t, e_q> / (|e_t| |e_q|)`` in [-1, 1]; 0 where either vector is
        zero.
    """
    A = _as_2d(train_emb, "train_emb")
    B = _as_2d(query_emb, "query_emb")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"embedding dims differ: train {A.shape[1]} vs query {B.shape[1]}")
    return np.clip(_unit_rows(A) @ _unit_rows(B).T, -1.0, 1.0)


def window_embeddings(
    frames: np.ndarray,
    frame_rate: float,
    *,
    window_s: float = 10.0,
    hop_s: float = 1.0,
) -> np.ndarray:
    """Mean of the frame embeddings in each sliding window.

    A window spans ``L = max(1, round(window_s * frame_rate))`` frames and windows
    start every ``H = max(1, round(hop_s * frame_rate))`` frames: starts
    ``0, H, 2H, ...`` while the window fits (``start + L <= n``), so fewer than ``H``
    trailing frames (< ``hop_s``) may fall in no window. A track with ``n <= L``
    frames (shorter than one window) gives exactly one window, the mean of all its
    frames.

    Parameters
    ----------
    frames : ndarray, shape (n, d)
        Frame-level embeddings of one track, frame ``i`` at time ``i / frame_rate`` s.
    frame_rate : float
        Frames per second (Hz), e.g. :attr:`Encoder.frame_rate`.
    window_s, hop_s : float
        Window length and hop, seconds (docs/spec.md §8: 10 s, 1 s).

    Returns
    -------
    ndarray, shape (n_windows, d), float64
        ``n_windows = 1 + (n - L) // H`` when ``n > L``, else 1.
    """
    F = _as_2d(frames, "frames")
    n = F.shape[0]
    if n == 0:
        raise ValueError("frames is empty: a track needs at least one frame")
    if not (frame_rate > 0 and window_s > 0 and hop_s > 0):
        raise ValueError(f"frame_rate, window_s, hop_s must be > 0, got {frame_rate}, {window_s}, {hop_s}")
    L = max(1, int(round(window_s * frame_rate)))
    H = max(1, int(round(hop_s * frame_rate)))
    if n <= L:
        return F.mean(axis=0, keepdims=True)
    starts = np.arange(0, n - L + 1, H)
    cs = np.concatenate([np.zeros((1, F.shape[1])), np.cumsum(F, axis=0)], axis=0)
    return (cs[starts + L] - cs[starts]) / L


def _groups(lengths: np.ndarray, cap: int) -> list[tuple[int, int]]:
    """Split consecutive items into [i, j) groups whose summed length is <= cap
    (a single item longer than cap gets a group of its own).
    """
    out, i, n = [], 0, len(lengths)
    while i < n:
        j, tot = i, 0
        while j < n and (j == i or tot + lengths[j] <= cap):
            tot += int(lengths[j])
            j += 1
        out.append((i, j))
        i = j
    return out


def all_against_all_scores(
    train_frames: Sequence[np.ndarray],
    query_frames: Sequence[np.ndarray],
    *,
    frame_rate: float,
    window_s: float = 10.0,
    hop_s: float = 1.0,
    block_rows: int = 8192,
    block_cols: int = 2048,
) -> np.ndarray:
    """Max cosine similarity over all window pairs of each (train, query) track pair.

    ``S[t, q] = max_{a, b} cos(W_t[a], V_q[b])`` with ``W_t = window_embeddings(
    train_frames[t], ...)`` and ``V_q = window_embeddings(query_frames[q], ...)``
    (docs/spec.md §8 "all-against-all").

    Every window embedding is normalized once; the work is one matrix product per
    (train block, query block) of at most ``block_rows`` x ``block_cols`` windows,
    reduced with segment-wise maxima, so memory stays O(block_rows * block_cols).

    Parameters
    ----------
    train_frames : sequence of T arrays, each shape (n_t, d)
        Frame-level embeddings of each training track.
    query_frames : sequence of Q arrays, each shape (m_q, d)
        Frame-level embeddings of each query.
    frame_rate : float
        Frames per second (Hz) of both inputs (same encoder).
    window_s, hop_s : float
        Window length and hop, seconds.
    block_rows, block_cols : int
        Soft caps on the number of train / query windows per matrix block (a track
        is never split).

    Returns
    -------
    ndarray, shape (T, Q), float64
        Scores in [-1, 1].
    """
    if len(train_frames) == 0 or len(query_frames) == 0:
        return np.zeros((len(train_frames), len(query_frames)))
    kw = dict(window_s=window_s, hop_s=hop_s)
    W = [_unit_rows(window_embeddings(f, frame_rate, **kw)) for f in train_frames]
    V = [_unit_rows(window_embeddings(f, frame_rate, **kw)) for f in query_frames]
    d = W[0].shape[1]
    for X in W + V:
        if X.shape[1] != d:
            raise ValueError(f"embedding dims differ: {X.shape[1]} vs {d}")
    nW = np.array([w.shape[0] for w in W])
    nV = np.array([v.shape[0] for v in V])
    S = np.empty((len(W), len(V)))
    row_groups = _groups(nW, block_rows)
    col_groups = _groups(nV, block_cols)
    for c0, c1 in col_groups:
        Vb = np.concatenate(V[c0:c1], axis=0)  # (cols, d)
        c_off = np.concatenate([[0], np.cumsum(nV[c0:c1])[:-1]])
        for r0, r1 in row_groups:
            Wb = np.concatenate(W[r0:r1], axis=0)  # (rows, d)
            r_off = np.concatenate([[0], np.cumsum(nW[r0:r1])[:-1]])
            G = Wb @ Vb.T
            G = np.maximum.reduceat(G, r_off, axis=0)
            S[r0:r1, c0:c1] = np.maximum.reduceat(G, c_off, axis=1)
    return np.clip(S, -1.0, 1.0)


# ---------------------------------------------------------------------------
