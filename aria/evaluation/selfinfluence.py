"""Checks of unlearning-based attribution (docs/spec.md §8; the second paper's §3.2-3.3).

Train-to-train self-influence: unlearn a training target z_tar and score every training item;
a working setting ranks the target first and attributes items similar to it.

* :func:`target_rank` -- R(z_tar), the target's rank among all items (1 = best).
* :func:`topk_similarity` -- mean embedding cosine similarity between the target and its
  top-k (or bottom-k) attributed items (the paper's CLAP_topk / CLAP_botk, k = 100).
* :func:`frechet_distance` -- between two embedding sets (the unlearned model's generations
  vs the original's; the paper's FD_openl3), for model quality after unlearning.
* :func:`diverse_targets` -- targets spread over the corpus: the item nearest each k-means
  centroid of the embeddings.

Test-to-train comparison with similarity attribution:

* :func:`sorted_profiles` -- another method's scores in the order of the unlearning scores,
  after min-max or softmax normalization per query, as mean and std over queries (Fig. 1).
* :func:`pearson_per_query` -- the Pearson correlation of two score matrices, per query.
* :func:`compare_stream` -- both, reading the two matrices a block of queries at a time.

Shapes: scores are ``(N,)`` for one target or ``(N, Q)`` for Q queries; embeddings ``(N, d)``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "target_rank",
    "topk_similarity",
    "frechet_distance",
    "diverse_targets",
    "normalize_scores",
    "sorted_profiles",
    "pearson_per_query",
    "compare_stream",
]


def target_rank(tau, target: int) -> int:
    """R(z_tar): 1 + the number of *other* items scored at least as high as the target.

    Ties count against the target (pessimistic), so a setting that moves nothing (all τ = 0)
    gets the worst rank N, not 1.

    Parameters
    ----------
    tau : float array, shape (N,)
        Self-influence scores of the N training items after unlearning the target.
    target : int
        Row index of the target in ``tau``.

    Returns
    -------
    int
        Rank in 1..N (1 = the target scored highest).
    """
    tau = np.asarray(tau, dtype=np.float64).reshape(-1)
    others = np.delete(tau, int(target))
    return int(1 + np.sum(others >= tau[int(target)]))


def _unit(E):
    E = np.asarray(E, dtype=np.float64)
    n = np.linalg.norm(E, axis=1, keepdims=True)
    return E / np.where(n > 0, n, 1.0)


def topk_similarity(embeddings, tau, target: int, *, k: int = 100, bottom: bool = False) -> float:
    """Mean cosine similarity between the target's embedding and its top-k (or bottom-k) items.

    The target itself is left out of the k items; k is capped by N − 1. Ties in τ are broken by
    the lower index.

    Parameters
    ----------
    embeddings : float array, shape (N, d)
        Item embeddings (L2-normalized here).
    tau : float array, shape (N,)
        Scores that order the items (highest first; lowest first with ``bottom``).
    target : int
        Row index of the target.
    k : int, keyword-only
        Number of items averaged.
    bottom : bool, keyword-only
        Average over the k lowest-scored items instead.

    Returns
    -------
    float
        Mean cosine similarity, in [-1, 1].
    """
    tau = np.asarray(tau, dtype=np.float64).reshape(-1)
    U = _unit(embeddings)
    order = np.argsort(tau if bottom else -tau, kind="stable")
    order = order[order != int(target)][: max(1, min(int(k), len(tau) - 1))]
    return float((U[order] @ U[int(target)]).mean())


def frechet_distance(X, Y) -> float:
    """‖μ_X − μ_Y‖² + Tr(Σ_X + Σ_Y − 2 (Σ_X Σ_Y)^{1/2}) between two sets of embeddings (rows).

    Covariances with ``ddof = 1``; the matrix square root by :func:`scipy.linalg.sqrtm`, its
    imaginary round-off dropped; a round-off below 0 (near-identical sets, a rank-deficient
    covariance) is clipped to 0. Needs at least 2 rows per set.
    """
    from scipy.linalg import sqrtm

    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if len(X) < 2 or len(Y) < 2:
        raise ValueError("frechet_distance needs at least 2 embeddings per set")
    mx, my = X.mean(0), Y.mean(0)
    cx, cy = np.atleast_2d(np.cov(X, rowvar=False)), np.atleast_2d(np.cov(Y, rowvar=False))
    covmean = sqrtm(cx @ cy)
    covmean = np.real(covmean)
    return max(0.0, float(((mx - my) ** 2).sum() + np.trace(cx + cy - 2.0 * covmean)))


def diverse_targets(embeddings, n: int, *, random_state) -> np.ndarray:
    """Indices of ``n`` items spread over the corpus: the item nearest each k-means centroid
    (scikit-learn KMeans, ``n_init=10``, seeded), distinct and sorted.

    Parameters
    ----------
    embeddings : float array, shape (N, d)
        One embedding per item.
    n : int
        Number of targets, 1 <= n <= N.
    random_state : int, numpy RandomState or None, keyword-only
        Passed to scikit-learn's ``KMeans`` (seeds its k-means++ initializations).

    Returns
    -------
    int64 array, shape (n,)
        Row indices into ``embeddings``, ascending.
    """
    from sklearn.cluster import KMeans

    E = np.asarray(embeddings, dtype=np.float64)
    n = int(n)
    if not 1 <= n <= len(E):
        raise ValueError(f"diverse_targets: n = {n} for {len(E)} items")
    km = KMeans(n_clusters=n, n_init=10, random_state=random_state).fit(E)
    picked: list[int] = []
    for c in km.cluster_centers_:
        d = np.linalg.norm(E - c, axis=1)
        d[picked] = np.inf  # distinct items even if two centroids share a nearest item
        picked.append(int(np.argmin(d)))
    return np.sort(np.asarray(picked, dtype=np.int64))


def normalize_scores(S, how: str) -> np.ndarray:
    """Per-query (column) normalization: ``minmax`` to [0, 1] (a constant column → 0) or
    ``softmax`` (columns sum to 1).

    Parameters
    ----------
    S : float array, shape (N, Q) or (N,)
        Scores, rows = training items, columns = queries; a 1-D array is one query.
    how : {"minmax", "softmax"}

    Returns
    -------
    float64 array, shape (N, Q)
        (N, 1) for a 1-D ``S``.
    """
    S = np.asarray(S, dtype=np.float64)
    S = S[:, None] if S.ndim == 1 else S
    if how == "minmax":
        lo, hi = S.min(0), S.max(0)
        return (S - lo) / np.where(hi > lo, hi - lo, np.inf)
    if how == "softmax":
        E = np.exp(S - S.max(0))
        return E / E.sum(0)
    raise ValueError(f"normalization must be 'minmax' or 'softmax', got {how!r}")


def sorted_profiles(order_by, S, *, how: str) -> tuple[np.ndarray, np.ndarray]:
    """``S``'s normalized scores in descending order of ``order_by``, per query: (mean, std) over queries.

    Parameters
    ----------
    order_by : (N, Q) the unlearning scores (their descending order defines the x axis)
    S : (N, Q) the scores to plot in that order (the unlearning scores themselves, or a baseline's)
    how : {"minmax", "softmax"}

    Returns
    -------
    mean, std : float64 arrays (N,), population std over the Q queries.
    """
    A = np.asarray(order_by, dtype=np.float64)
    B = normalize_scores(S, how)
    A = A[:, None] if A.ndim == 1 else A
    if A.shape != B.shape:
        raise ValueError(f"score matrices differ in shape: {A.shape} vs {B.shape}")
    idx = np.argsort(-A, axis=0, kind="stable")
    R = np.take_along_axis(B, idx, axis=0)
    return R.mean(1), R.std(1)


def pearson_per_query(A, B) -> np.ndarray:
    """Pearson correlation of columns ``A[:, q]`` and ``B[:, q]``; ``nan`` for a constant column.

    ``A`` and ``B`` are score matrices of the same shape (N, Q) (a 1-D (N,) array is one query);
    returns a float64 array of shape (Q,).
    """
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    A = A[:, None] if A.ndim == 1 else A
    B = B[:, None] if B.ndim == 1 else B
    if A.shape != B.shape:
        raise ValueError(f"score matrices differ in shape: {A.shape} vs {B.shape}")
    a, b = A - A.mean(0), B - B.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(0) / den, np.nan)


def compare_stream(U, S, *, rows=None, block_cols: int | None = None, max_bytes: int = 256 * 2**20) -> dict:
    """:func:`sorted_profiles` (both normalizations, of ``U`` itself and of ``S``) and
    :func:`pearson_per_query` of two (N, Q) matrices, reading a block of queries at a time.

    Parameters
    ----------
    U : (N, Q) array-like (numpy or zarr), the unlearning scores (they order the x axis)
    S : (N', Q) array-like, the other method's scores
    rows : int array (N,), optional
        Row of ``S`` for each row of ``U`` (aligning two stores' row orders); default identity.
    block_cols, max_bytes : queries per read (default: as many as fit ``max_bytes`` per matrix)

    Returns
    -------
    dict: ``profiles[how][which] = {"mean": (N,), "std": (N,)}`` for how in minmax/softmax and
    which in unlearning/other (population std over queries); ``pearson`` (Q,) and its
    ``pearson_mean`` / ``pearson_std`` over the queries where it is defined.
    """
    n, q = U.shape
    if block_cols is None:
        block_cols = max(1, int(max_bytes // (8 * max(n, 1))))
    acc = {h: {w: [np.zeros(n), np.zeros(n)] for w in ("unlearning", "other")} for h in ("minmax", "softmax")}
    r = []
    for c0 in range(0, q, block_cols):
        cs = slice(c0, min(q, c0 + block_cols))
        A = np.asarray(U[:, cs], dtype=np.float64)
        B = np.asarray(S[:, cs], dtype=np.float64)
        if rows is not None:
            B = B[np.asarray(rows)]
        if A.shape != B.shape:
            raise ValueError(f"score matrices differ in shape: {A.shape} vs {B.shape}")
        idx = np.argsort(-A, axis=0, kind="stable")
        for how in acc:
            for which, M in (("unlearning", A), ("other", B)):
                V = np.take_along_axis(normalize_scores(M, how), idx, axis=0)
                acc[how][which][0] += V.sum(1)
                acc[how][which][1] += (V * V).sum(1)
        r.append(pearson_per_query(A, B))
    pr = np.concatenate(r) if r else np.zeros(0)
    prof = {}
    for how, d in acc.items():
        prof[how] = {}
        for which, (s1, s2) in d.items():
            m = s1 / q
            prof[how][which] = {"mean": m.tolist(), "std": np.sqrt(np.maximum(s2 / q - m * m, 0.0)).tolist()}
    ok = pr[np.isfinite(pr)]
    return {
        "profiles": prof,
        "pearson": [None if not np.isfinite(x) else float(x) for x in pr],
        "pearson_mean": float(ok.mean()) if len(ok) else float("nan"),
        "pearson_std": float(ok.std()) if len(ok) else float("nan"),
        "n_items": int(n),
    }
