"""Within-group homogeneity of attributed training items (docs/spec.md §5 similarity, §6).

For a query q and a group size K, G_K(q) is the set of the K training items
(rows of the score matrix) with the highest score for q. Each feature f gives a
pairwise similarity ``sim_f`` between pool items, and

    H_f(q) = mean of sim_f over the K(K-1)/2 pairs of G_K(q)
    H_c(q) = mean of H_f(q) over the features f of channel c
    z_c(q) = (H_c(q) - mu_c(K)) / sigma_c(K)

where mu_c(K), sigma_c(K) are the mean and standard deviation of H_c over R
random groups of K pool items (the null). The null depends only on the pool and
K, so it is computed once (:func:`null_distribution`) and shared by every
method and query.

Conventions
-----------
* ``features`` is a dict ``name -> value`` over the *training pool*, in the row
  order of the score matrix. A value is either

  - a **vector** feature: a numeric array of shape ``(n_pool, d)`` (a 1-D array
    of shape ``(n_pool,)`` is treated as ``d = 1``). Similarity is
    ``1 / (1 + d)`` with ``d`` the standardized Euclidean distance over the
    dimensions whose pool std is non-zero (see :func:`feature_scales`); or
  - a **sequence** feature: a list (or object array) of ``n_pool`` 1-D integer
    sequences, e.g. chord root motions from :func:`aria.audio.features.chord_root_motion`. Similarity is
    :func:`lcs_similarity`, computed for many pairs at once by
    :class:`SequenceTable` (vectorized bit-parallel LCS, exact).

* ``channels`` is a dict ``channel -> list of feature names``.
* ``scales`` is a dict ``name -> s`` with ``s`` from :func:`feature_scales`
  (``None`` for sequence features), computed once per experiment.
* Standard deviations (feature scales and the null sigma) are *population*
  standard deviations (``ddof = 0``).
* Degenerate null (sigma below ``SIGMA_EPS``, i.e. numerically zero, e.g. a
  channel whose features are constant over the pool): the z-score is ``nan``
  and a :class:`RuntimeWarning` is issued; summaries of all-nan z are ``nan``.
* Ranking ties in the score matrix are broken by the lower row index first.

Everything here is pure numpy; the only I/O is opening a score store path via
:func:`aria.io.matrices.open_matrix`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from aria.io.matrices import open_matrix
from aria.io.stores import DEFAULT_ROW_CHUNK, iter_row_chunks

__all__ = [
    "SIGMA_EPS",
    "SIG_Z",
    "DEFAULT_KS",
    "DEFAULT_N_GROUPS",
    "feature_scales",
    "is_sequence_feature",
    "pairwise_similarity",
    "mean_pairwise_similarity",
    "lcs_length",
    "lcs_similarity",
    "SequenceTable",
    "prepare_features",
    "nested_channel_homogeneity",
    "mean_pairwise_sequence_similarity",
    "channel_homogeneity",
    "random_groups",
    "null_distribution",
    "top_k_rows",
    "zscores",
    "summarize",
    "homogeneity_table",
]

#: A null standard deviation at or below this is treated as zero (H lies in
#: (0, 1], so any real spread over random groups is many orders larger).
SIGMA_EPS = 1e-12
#: One-sided 5 % threshold for the "Sig" summary.
SIG_Z = 1.645
#: Default K-sweep (docs/spec.md §6).
DEFAULT_KS = (5, 10, 20, 50)
#: Default number of random reference groups R (docs/spec.md §6).
DEFAULT_N_GROUPS = 1000

# Work budget (elements of the (groups, pairs, dims) difference tensor) per
# chunk in mean_pairwise_similarity: 2**21 float64 = 16 MiB.
_CHUNK_ELEMS = 1 << 21


# --------------------------------------------------------------------------- #
# Vector features: standardized Euclidean similarity
# --------------------------------------------------------------------------- #
def _as_2d(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"vector feature must be 1-D or 2-D, got shape {X.shape}")
    return X


def is_sequence_feature(value) -> bool:
    """True if a feature value is a sequence feature (list / object array of sequences).

    Numeric numpy arrays are vector features; lists, tuples and object arrays are
    sequence features (one 1-D integer sequence per pool item).
    """
    if isinstance(value, np.ndarray):
        return value.dtype == object
    return isinstance(value, (list, tuple, SequenceTable))


def feature_scales(X) -> np.ndarray:
    """Per-dimension scale of a vector feature over the whole training pool.

    Parameters
    ----------
    X : array_like, shape (n_pool, d) or (n_pool,)
        Feature values of every pool item. Must be finite.

    Returns
    -------
    s : ndarray, shape (d,), float64
        Population standard deviation (``ddof=0``) of each dimension over all
        pool items. Dimensions that are exactly constant over the pool get
        ``s = 0.0`` exactly (not a round-off residue); they are dropped from
        the distance (``keep = s > 0``).

    Notes
    -----
    Compute once per experiment, before any query, and share across queries,
    methods and the null (docs/spec.md §5).
    """
    X = _as_2d(X)
    if X.shape[0] == 0:
        raise ValueError("feature_scales: empty pool")
    if not np.isfinite(X).all():
        raise ValueError("feature_scales: non-finite feature values in the pool")
    s = X.std(axis=0, ddof=0)
    constant = np.all(X == X[:1], axis=0)
    s[constant] = 0.0
    return s


def _resolve_keep(s, keep) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(s, dtype=np.float64).reshape(-1)
    keep = (s > 0) if keep is None else np.asarray(keep, dtype=bool).reshape(-1)
    if keep.shape != s.shape:
        raise ValueError(f"keep mask has shape {keep.shape}, scales {s.shape}")
    if np.any(keep & ~(s > 0)):
        raise ValueError("keep mask selects dimensions with scale <= 0")
    return s, keep


def _standardize(X, s, keep) -> np.ndarray:
    X = _as_2d(X)
    s, keep = _resolve_keep(s, keep)
    if X.shape[1] != s.shape[0]:
        raise ValueError(f"feature has {X.shape[1]} dims, scales {s.shape[0]}")
    return X[:, keep] / s[keep]


def pairwise_similarity(X_group, s, keep=None) -> np.ndarray:
    """Similarity matrix of one group of items for a vector feature.

    Parameters
    ----------
    X_group : array_like, shape (K, d) or (K,)
        Feature values of the K items.
    s : array_like, shape (d,)
        Scales from :func:`feature_scales`.
    keep : array_like of bool, shape (d,), optional
        Dimensions used; default ``s > 0``.

    Returns
    -------
    sim : ndarray, shape (K, K)
        ``1 / (1 + d_ij)`` with ``d_ij = sqrt(sum_i ((x_i - y_i) / s_i)**2)``
        over kept dimensions; the diagonal is 1.
    """
    Z = _standardize(X_group, s, keep)
    diff = Z[:, None, :] - Z[None, :, :]
    d = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    return 1.0 / (1.0 + d)


def _check_groups(groups, n_pool: int) -> np.ndarray:
    groups = np.asarray(groups)
    if groups.ndim != 2:
        raise ValueError(f"groups must have shape (G, K), got {groups.shape}")
    if not np.issubdtype(groups.dtype, np.integer):
        raise TypeError(f"groups must be integer pool indices, got {groups.dtype}")
    if groups.shape[1] < 2:
        raise ValueError(f"groups need K >= 2 items for pairwise similarity, got K={groups.shape[1]}")
    if groups.size and (groups.min() < 0 or groups.max() >= n_pool):
        raise IndexError(f"group indices out of range for a pool of {n_pool} items")
    return groups.astype(np.intp, copy=False)


def mean_pairwise_similarity(X, groups, s, keep=None) -> np.ndarray:
    """Mean pairwise similarity within each of many groups (vector feature).

    Parameters
    ----------
    X : array_like, shape (n_pool, d) or (n_pool,)
        Feature values of the whole pool.
    groups : int array, shape (G, K)
        Pool indices of each group's members (K >= 2).
    s, keep : array_like, shape (d,)
        Scales and kept dimensions, as in :func:`pairwise_similarity`.

    Returns
    -------
    H : ndarray, shape (G,)
        Mean of ``1 / (1 + d)`` over the K(K-1)/2 unordered pairs of each group.

    Notes
    -----
    Distances are computed from explicit differences (not a Gram expansion), so
    identical items have distance exactly 0. Groups are processed in chunks to
    bound memory (~16 MiB of temporaries).
    """
    Z = _standardize(X, s, keep)
    groups = _check_groups(groups, Z.shape[0])
    out = np.empty(groups.shape[0], dtype=np.float64)
    for a, sims in _vector_pair_sims(Z, groups):
        out[a : a + len(sims)] = sims.mean(axis=1)
    return out


def _vector_pair_sims(Z: np.ndarray, groups: np.ndarray):
    """Yield ``(first group, sims)``: ``1 / (1 + d)`` of every pair ``triu_indices(K, 1)`` of
    consecutive chunks of groups, shape (g, K(K-1)/2), ~16 MiB of temporaries per chunk.
    """
    G, K = groups.shape
    iu, ju = np.triu_indices(K, 1)
    step = max(1, _CHUNK_ELEMS // (iu.size * max(Z.shape[1], 1)))
    for a in range(0, G, step):
        Zg = Z[groups[a : a + step]]  # (g, K, d)
        diff = Zg[:, iu, :] - Zg[:, ju, :]  # (g, P, d)
        yield a, 1.0 / (1.0 + np.sqrt(np.einsum("gpk,gpk->gp", diff, diff)))


def _sequence_pair_sims(table: SequenceTable, groups: np.ndarray) -> np.ndarray:
    """:func:`lcs_similarity` of every pair ``triu_indices(K, 1)`` of each group, shape
    (G, K(K-1)/2); each distinct unordered pair is computed once (query groups overlap).
    """
    G, K = groups.shape
    n = len(table.lengths)
    iu, ju = np.triu_indices(K, 1)
    x, y = groups[:, iu], groups[:, ju]
    keys, inverse = np.unique(np.minimum(x, y) * n + np.maximum(x, y), return_inverse=True)
    return table.similarities(keys // n, keys % n)[inverse].reshape(G, iu.size)


# --------------------------------------------------------------------------- #
# Sequence similarity: LCS (of chord root motions, aria.audio.features.chord_root_motion)
# --------------------------------------------------------------------------- #
def lcs_length(a, b) -> int:
    """Length of the longest common subsequence of two integer sequences.

    Bit-parallel algorithm (Allison & Dix 1986; Hyyrö 2004): O(|a|) big-integer
    operations on |b|-bit words.

    Parameters
    ----------
    a, b : int array-likes, any shape (flattened), lengths n_a and n_b
        The sequences (e.g. chord or note codes).

    Returns
    -------
    int
        In 0..min(n_a, n_b); 0 when either is empty.
    """
    a = [int(x) for x in np.asarray(a).reshape(-1)]
    b = [int(x) for x in np.asarray(b).reshape(-1)]
    if not a or not b:
        return 0
    if len(b) > len(a):
        a, b = b, a
    n = len(b)
    mask = (1 << n) - 1
    match: dict[int, int] = {}
    for j, c in enumerate(b):
        match[c] = match.get(c, 0) | (1 << j)
    V = mask
    for c in a:
        U = V & match.get(c, 0)
        V = ((V + U) | (V - U)) & mask
    return n - V.bit_count()


def lcs_similarity(a, b) -> float:
    """``LCS(a, b) / max(|a|, |b|)`` in [0, 1]; 0 when both are empty."""
    la, lb = np.asarray(a).size, np.asarray(b).size
    m = max(la, lb)
    return 0.0 if m == 0 else lcs_length(a, b) / m


class SequenceTable:
    """A pool of integer sequences prepared for batched bit-parallel LCS.

    Symbols are renumbered 0..A-1 (A = distinct symbols in the pool); for every
    item and symbol, the positions where the item holds that symbol are kept as
    a bit mask of W 64-bit words (W = ceil(longest / 64)).

    Attributes
    ----------
    lengths : (n,) int64
    codes : (n, L) int64, symbol codes padded with A (a symbol that matches nothing)
    match : (n, A + 1, W) uint64; ``match[i, c]`` bit t set iff item i holds c at t
    """

    #: Largest ``match`` table built (bytes); bigger pools fall back to pure Python.
    MAX_BYTES = 1 << 30

    def __init__(self, seqs):
        seqs = [np.asarray(x).reshape(-1).astype(np.int64) for x in seqs]
        n = len(seqs)
        self.lengths = np.array([len(x) for x in seqs], dtype=np.int64)
        L = int(self.lengths.max(initial=0))
        self.words = max(1, -(-L // 64))
        symbols = np.unique(np.concatenate(seqs)) if L else np.zeros(0, np.int64)
        self.n_symbols = A = len(symbols)
        self.nbytes = n * (A + 1) * self.words * 8
        self.codes = np.full((n, max(L, 1)), A, dtype=np.int64)
        for i, x in enumerate(seqs):
            self.codes[i, : len(x)] = np.searchsorted(symbols, x)
        if self.nbytes > self.MAX_BYTES:
            self.match = None
            return
        self.match = np.zeros((n, A + 1, self.words), dtype=np.uint64)
        rows = np.repeat(np.arange(n), self.lengths)
        pos = np.concatenate([np.arange(m) for m in self.lengths]) if n else np.zeros(0, np.int64)
        sym = self.codes[rows, pos]
        bits = np.left_shift(np.uint64(1), (pos % 64).astype(np.uint64))
        np.bitwise_or.at(self.match, (rows, sym, pos // 64), bits)

    def lcs_lengths(self, a, b, *, batch: int = 1 << 16) -> np.ndarray:
        """LCS lengths of the pairs ``(a[p], b[p])`` of pool items, shape (P,) int64.

        The bit-parallel recurrence of :func:`lcs_length` (Allison–Dix / Hyyrö) run on
        all pairs of a batch at once: item b's positions are the bits, item a's symbols
        are the steps, words are added with explicit carries. Pairs are grouped by
        a's length, so a batch takes as many steps as its longest a.
        """
        a = np.asarray(a, dtype=np.int64).reshape(-1)
        b = np.asarray(b, dtype=np.int64).reshape(-1)
        out = np.zeros(a.size, dtype=np.int64)
        W = self.words
        order = np.argsort(self.lengths[a], kind="stable")
        one = np.uint64(1)
        for s in range(0, a.size, batch):
            sel = order[s : s + batch]
            ai, bi = a[sel], b[sel]
            steps = int(self.lengths[ai].max(initial=0))
            if steps == 0:
                continue
            nb = self.lengths[bi]
            # V starts as n_b one-bits (positions of b), word by word
            full = np.clip(nb[:, None] - 64 * np.arange(W)[None, :], 0, 64).astype(np.uint64)
            mask = np.where(full == 64, ~np.uint64(0), (one << np.minimum(full, 63)) - one)
            V = mask.copy()
            M = self.match[bi]  # (P, A + 1, W)
            codes = self.codes[ai, :steps]
            rows = np.arange(len(sel))
            for t in range(steps):
                U = V & M[rows, codes[:, t]]  # (P, W)
                D = V & ~U  # V - U without borrow (U is a subset of V)
                if W == 1:
                    V = ((V + U) | D) & mask
                else:
                    carry = np.zeros(len(sel), dtype=np.uint64)
                    S = np.empty_like(V)
                    for w in range(W):
                        x = V[:, w] + U[:, w]
                        c1 = x < V[:, w]
                        x = x + carry
                        c2 = x < carry
                        S[:, w] = x
                        carry = (c1 | c2).astype(np.uint64)
                    V = (S | D) & mask
            out[sel] = nb - np.bitwise_count(V).sum(axis=1)
        return out

    def similarities(self, a, b) -> np.ndarray:
        """:func:`lcs_similarity` of the pairs ``(a[p], b[p])``: LCS / max length (0 if both empty).

        ``a`` and ``b`` are int index arrays of the same size P (rows of the pool, flattened);
        returns a float64 array of shape (P,), values in [0, 1].
        """
        a = np.asarray(a, dtype=np.int64).reshape(-1)
        b = np.asarray(b, dtype=np.int64).reshape(-1)
        m = np.maximum(self.lengths[a], self.lengths[b])
        if self.match is None:  # alphabet x pool too large for the table: the exact scalar path
            lcs = np.array(
                [lcs_length(self.codes[i, : self.lengths[i]], self.codes[j, : self.lengths[j]]) for i, j in zip(a, b)],
                dtype=np.int64,
            )
        else:
            lcs = self.lcs_lengths(a, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(m > 0, lcs / np.maximum(m, 1), 0.0)


def mean_pairwise_sequence_similarity(seqs, groups, *, table: SequenceTable | None = None) -> np.ndarray:
    """Mean pairwise :func:`lcs_similarity` within each group (sequence feature).

    Parameters
    ----------
    seqs : sequence of n_pool 1-D int sequences
    groups : int array, shape (G, K)
    table : SequenceTable, optional
        ``SequenceTable(seqs)``, built once and reused across calls.

    Returns
    -------
    H : ndarray, shape (G,)

    Notes
    -----
    Each distinct unordered pair is computed once (groups overlap: query groups
    share top items), all of them in batches by :meth:`SequenceTable.similarities`.
    """
    table = SequenceTable(seqs) if table is None else table
    return _sequence_pair_sims(table, _check_groups(groups, len(table.lengths))).mean(axis=1)


# --------------------------------------------------------------------------- #
# Channels
# --------------------------------------------------------------------------- #
def _feature_names(channels: Mapping[str, Sequence[str]]) -> list[str]:
    names: list[str] = []
    for ch, feats in channels.items():
        if isinstance(feats, str) or len(feats) == 0:
            raise ValueError(f"channel {ch!r} must list at least one feature name")
        for f in feats:
            if f not in names:
                names.append(f)
    return names


def _n_pool(features: Mapping, names) -> int:
    sizes = {f: len(features[f].lengths) if isinstance(features[f], SequenceTable) else len(features[f]) for f in names}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"features disagree on the pool size: {sizes}")
    return next(iter(sizes.values()))


def _all_scales(features: Mapping, names) -> dict:
    return {f: None if is_sequence_feature(features[f]) else feature_scales(features[f]) for f in names}


def prepare_features(features: Mapping, names) -> dict:
    """``features`` with every sequence feature among ``names`` turned into a
    :class:`SequenceTable` (once, shared by every call that follows).
    """
    out = dict(features)
    for f in names:
        v = out[f]
        if is_sequence_feature(v) and not isinstance(v, SequenceTable):
            out[f] = SequenceTable(v)
    return out


def channel_homogeneity(
    features: Mapping, channels: Mapping[str, Sequence[str]], groups, scales: Mapping
) -> tuple[dict, dict]:
    """Per-channel and per-feature homogeneity of many groups.

    Parameters
    ----------
    features : dict name -> (n_pool, d) array, list of n_pool sequences or :class:`SequenceTable`
    channels : dict channel -> list of feature names
    groups : int array, shape (G, K)
        Pool indices of each group (K >= 2).
    scales : dict name -> (d,) scales from :func:`feature_scales`
        (``None`` or absent for sequence features). Vector features missing
        from ``scales`` raise, so scales are never silently recomputed.

    Returns
    -------
    H_c : dict channel -> ndarray (G,)
        Mean of ``H_f`` over the channel's features.
    H_f : dict feature -> ndarray (G,)
        Mean pairwise similarity of the feature within each group. Each
        feature is computed once even if several channels use it.
    """
    groups = np.asarray(groups)
    K = groups.shape[1] if groups.ndim == 2 else 0
    return nested_channel_homogeneity(features, channels, groups, (K,), scales)[K]


def nested_channel_homogeneity(
    features: Mapping, channels: Mapping[str, Sequence[str]], groups, ks, scales: Mapping
) -> dict:
    """:func:`channel_homogeneity` of the prefixes ``groups[:, :K]`` for every K in ``ks``.

    The pairwise similarities of the full groups are computed once; the group of
    size K uses the pairs among its first K members. Top-K groups of a score
    matrix are nested this way (:func:`top_k_rows`).

    Returns
    -------
    dict K -> (H_c, H_f), as :func:`channel_homogeneity` returns them.
    """
    names = _feature_names(channels)
    missing = [f for f in names if f not in features]
    if missing:
        raise KeyError(f"channels reference unknown features: {missing}")
    ks = tuple(int(k) for k in ks)
    n_pool = _n_pool(features, names)
    groups = _check_groups(groups, n_pool)
    G, Kmax = groups.shape
    if any(not 2 <= k <= Kmax for k in ks):
        raise ValueError(f"group sizes {ks} must lie in 2..{Kmax}")
    _, ju = np.triu_indices(Kmax, 1)
    in_prefix = {k: ju < k for k in ks}  # pair (i < j) belongs to the first k members iff j < k
    H_f: dict[str, dict[int, np.ndarray]] = {}
    for f in names:
        value = features[f]
        out = {k: np.empty(G, dtype=np.float64) for k in ks}
        if is_sequence_feature(value):
            table = value if isinstance(value, SequenceTable) else SequenceTable(value)
            chunks = [(0, _sequence_pair_sims(table, groups))]
        else:
            if scales.get(f) is None:
                raise KeyError(f"no scales for vector feature {f!r}; use feature_scales")
            chunks = _vector_pair_sims(_standardize(value, scales[f], None), groups)
        for a, sims in chunks:
            for k in ks:
                out[k][a : a + len(sims)] = sims[:, in_prefix[k]].mean(axis=1)
        H_f[f] = out
    result = {}
    for k in ks:
        hf = {f: H_f[f][k] for f in names}
        hc = {ch: np.mean([hf[f] for f in feats], axis=0) for ch, feats in channels.items()}
        result[k] = (hc, hf)
    return result


# --------------------------------------------------------------------------- #
# Null distribution
# --------------------------------------------------------------------------- #
def random_groups(n_pool: int, K: int, R: int, *, random_state) -> np.ndarray:
    """R random groups of K distinct pool items.

    Parameters
    ----------
    n_pool, K, R : int
        Pool size, group size, number of groups.
    random_state : int, sequence of int, SeedSequence or Generator
        Passed to :func:`numpy.random.default_rng`; the same seed gives the
        same groups.

    Returns
    -------
    groups : ndarray of int64, shape (R, K)
        Each row is a uniform K-subset of ``range(n_pool)`` drawn without
        replacement (independent across rows), in random order.
    """
    n_pool, K, R = int(n_pool), int(K), int(R)
    if K < 1 or R < 0:
        raise ValueError(f"random_groups: need K >= 1 and R >= 0, got K={K}, R={R}")
    if K > n_pool:
        raise ValueError(f"random_groups: K={K} exceeds the pool size {n_pool}")
    rng = np.random.default_rng(random_state)
    out = np.empty((R, K), dtype=np.int64)
    for r in range(R):
        out[r] = rng.choice(n_pool, size=K, replace=False)
    return out


def null_distribution(
    features: Mapping,
    channels: Mapping[str, Sequence[str]],
    *,
    ks=DEFAULT_KS,
    n_groups: int = DEFAULT_N_GROUPS,
    random_state: int = 0,
    scales: Mapping | None = None,
) -> dict:
    """Null mean/std of homogeneity over random groups, per K (docs/spec.md §6).

    Parameters
    ----------
    features, channels
        See the module docstring.
    ks : iterable of int
        Group sizes (each 2 <= K <= n_pool).
    n_groups : int
        R, random groups per K.
    random_state : int
        Non-negative base seed. The groups for size K are drawn from
        ``default_rng([random_state, K])``: independent streams per K, and the
        groups for a given K do not depend on which other Ks are requested.
    scales : dict, optional
        Precomputed feature scales; computed with :func:`feature_scales` if
        omitted. Either way they are stored in the result for reuse by
        :func:`homogeneity_table`.

    Returns
    -------
    null : dict
        ``{"ks": tuple, "n_pool": int, "n_groups": int, "random_state": int,
        "scales": {feature: (d,) or None},
        "by_k": {K: {"mu_c": {channel: float}, "sigma_c": {channel: float},
        "mu_f": {feature: float}, "sigma_f": {feature: float}}}}``.
        sigma is the population std (``ddof=0``) over the R groups. The same
        groups are used for all features and channels of a given K.
    """
    names = _feature_names(channels)
    n_pool = _n_pool(features, names)
    if scales is None:
        scales = _all_scales(features, names)
    features = prepare_features(features, names)
    random_state = int(random_state)
    if random_state < 0:
        raise ValueError("random_state must be a non-negative int")
    ks = tuple(int(k) for k in ks)
    if int(n_groups) < 2:
        raise ValueError("n_groups must be >= 2")
    by_k = {}
    for K in ks:
        if K < 2:
            raise ValueError(f"K must be >= 2, got {K}")
        groups = random_groups(n_pool, K, n_groups, random_state=[random_state, K])
        H_c, H_f = channel_homogeneity(features, channels, groups, scales)
        by_k[K] = {
            "mu_c": {c: float(h.mean()) for c, h in H_c.items()},
            "sigma_c": {c: float(h.std(ddof=0)) for c, h in H_c.items()},
            "mu_f": {f: float(h.mean()) for f, h in H_f.items()},
            "sigma_f": {f: float(h.std(ddof=0)) for f, h in H_f.items()},
        }
    return {
        "ks": ks,
        "n_pool": n_pool,
        "n_groups": int(n_groups),
        "random_state": random_state,
        "scales": dict(scales),
        "by_k": by_k,
    }


# --------------------------------------------------------------------------- #
# Top-K rows of a score matrix, streaming
# --------------------------------------------------------------------------- #
def _open_matrix(S):
    if isinstance(S, (str, os.PathLike)):  # any format of aria.io.matrices, read lazily
        m = open_matrix(S)
        return m.data, m.col_ids
    if hasattr(S, "shape") and hasattr(S, "chunks") and not isinstance(S, np.ndarray):
        return S, None  # zarr (or zarr-like) array, read lazily
    S = np.asarray(S)
    if S.ndim != 2:
        raise ValueError(f"score matrix must be 2-D, got shape {S.shape}")
    return S, None


def _select_top(vals: np.ndarray, pos: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-K per column of ``vals`` (n, Q): higher value first, ties by lower ``pos``.

    ``pos`` (n, Q) are row indices, used only to order the result; the tie rule
    assumes that, within each column, rows appear in ``vals`` in ascending
    order of ``pos`` among equal values (true for the merge in top_k_rows).
    Returns ``(values, rows)`` of shape (K, Q), sorted.
    """
    n, Q = vals.shape
    if n > K:
        # K-th largest value per column (threshold)
        t = np.partition(vals, n - K, axis=0)[n - K]
        gt = vals > t
        eq = vals == t
        need = K - gt.sum(axis=0)
        sel = gt | (eq & (np.cumsum(eq, axis=0) <= need))
        # exactly K selected per column; gather them column by column
        cols, rows = np.nonzero(sel.T)
        rows = rows.reshape(Q, K).T  # (K, Q)
        cidx = np.arange(Q)[None, :]
        vals = vals[rows, cidx]
        pos = pos[rows, cidx]
    order = np.lexsort((pos, -vals), axis=0)
    cidx = np.arange(Q)[None, :]
    return vals[order, cidx], pos[order, cidx]


def top_k_rows(S, K: int, *, row_chunk: int | None = None, return_scores: bool = False):
    """Indices of the K highest-scoring rows for every column, in one pass.

    Parameters
    ----------
    S : ndarray, zarr array, or path to a score store, shape (N, Q)
        Score matrix (rows = training items, columns = queries). A path is
        opened with :func:`aria.io.matrices.open_matrix`. Scores must be finite.
    K : int
        Group size, 1 <= K <= N.
    row_chunk : int, optional
        Rows read per step. Default: the store's row chunk for zarr arrays,
        ``aria.io.stores.DEFAULT_ROW_CHUNK`` for numpy arrays.
    return_scores : bool
        Also return the selected scores.

    Returns
    -------
    idx : ndarray of int64, shape (Q, K)
        Row indices per query, by descending score; ties are broken by the
        lower row index first (so the result is deterministic and the top-K
        for a smaller K is always a prefix of the top-K for a larger K).
    scores : ndarray of float64, shape (Q, K)
        Only if ``return_scores``.

    Notes
    -----
    Streams over row chunks keeping a running (K, Q) top-K per column, merged
    with each chunk by a partition-based selection; S is never loaded whole.
    """
    arr, _ = _open_matrix(S)
    N, Q = arr.shape
    K = int(K)
    if not 1 <= K <= N:
        raise ValueError(f"top_k_rows: need 1 <= K <= N={N}, got K={K}")
    if row_chunk is None and isinstance(arr, np.ndarray):
        row_chunk = DEFAULT_ROW_CHUNK
    best_v = np.empty((0, Q), dtype=np.float64)
    best_i = np.empty((0, Q), dtype=np.int64)
    for start, block in iter_row_chunks(arr, rows=row_chunk):
        block = np.asarray(block, dtype=np.float64)
        if not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            raise ValueError(f"top_k_rows: non-finite score at row {start + bad[0]}, column {bad[1]}")
        rows = np.broadcast_to(np.arange(start, start + block.shape[0], dtype=np.int64)[:, None], block.shape)
        # running best (sorted, all rows < start) first, then the block in row order
        vals = np.concatenate([best_v, block], axis=0)
        pos = np.concatenate([best_i, rows], axis=0)
        best_v, best_i = _select_top(vals, pos, K)
    idx = np.ascontiguousarray(best_i.T)
    if return_scores:
        return idx, np.ascontiguousarray(best_v.T)
    return idx


# --------------------------------------------------------------------------- #
# z-scores and summaries
# --------------------------------------------------------------------------- #
def zscores(H_query, null_mu, null_sigma) -> np.ndarray:
    """``(H_query - mu) / sigma``, elementwise with broadcasting.

    Where ``sigma <= SIGMA_EPS`` (degenerate null, e.g. a feature constant over
    the pool) or is not finite, the z-score is ``nan`` and a
    :class:`RuntimeWarning` is issued.
    """
    z, degenerate = _zscores(H_query, null_mu, null_sigma)
    if degenerate:
        warnings.warn(
            "degenerate null distribution (sigma ~ 0): z-scores set to nan",
            RuntimeWarning,
            stacklevel=2,
        )
    return z


def _zscores(H_query, null_mu, null_sigma) -> tuple[np.ndarray, bool]:
    H = np.asarray(H_query, dtype=np.float64)
    mu = np.asarray(null_mu, dtype=np.float64)
    sigma = np.asarray(null_sigma, dtype=np.float64)
    bad = ~np.isfinite(sigma) | (sigma <= SIGMA_EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (H - mu) / np.where(bad, 1.0, sigma)
    return np.where(bad, np.nan, z), bool(np.any(bad))


def summarize(z) -> dict:
    """Summaries of z-scores over queries (docs/spec.md §6).

    Returns ``{"mu_z": mean z, "pos": fraction z > 0, "sig": fraction
    z > 1.645}`` as floats, over the finite entries of ``z`` (array-like of shape
    (Q,), one z per query, flattened); all ``nan`` when there are none (e.g. a
    degenerate null).
    """
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    z = z[np.isfinite(z)]
    if z.size == 0:
        return {"mu_z": float("nan"), "pos": float("nan"), "sig": float("nan")}
    return {
        "mu_z": float(z.mean()),
        "pos": float(np.mean(z > 0)),
        "sig": float(np.mean(z > SIG_Z)),
    }


# --------------------------------------------------------------------------- #
# Putting it together
# --------------------------------------------------------------------------- #
def homogeneity_table(
    S,
    features: Mapping,
    channels: Mapping[str, Sequence[str]],
    null: Mapping,
    *,
    ks=None,
    scales: Mapping | None = None,
    row_chunk: int | None = None,
) -> dict:
    """Homogeneity z-scores of every query's top-K group, per K and channel.

    Parameters
    ----------
    S : ndarray, zarr array, or path to a score store, shape (n_pool, Q)
        Score matrix whose rows are the pool items of ``features``, same order.
    features, channels
        See the module docstring.
    null : dict
        From :func:`null_distribution` on the same pool and channels.
    ks : iterable of int, optional
        Group sizes; default ``null["ks"]``. Each must be in ``null["by_k"]``.
    scales : dict, optional
        Feature scales; default ``null["scales"]`` (computed once, shared).
    row_chunk : int, optional
        Passed to :func:`top_k_rows`.

    Returns
    -------
    table : dict
        ``{"ks": tuple, "col_ids": (Q,) str array or None (path input only),
        "by_k": {K: {"groups": (Q, K) int64,
                     "H_c": {channel: (Q,)}, "z_c": {channel: (Q,)},
                     "H_f": {feature: (Q,)}, "z_f": {feature: (Q,)},
                     "summary": {channel: {"mu_z", "pos", "sig"}},
                     "summary_f": {feature: {"mu_z", "pos", "sig"}}}}}``

    Notes
    -----
    One streaming pass over S: the top-max(ks) rows are found once and the
    top-K for each smaller K is its prefix (deterministic tie-breaking makes
    this exact).
    """
    names = _feature_names(channels)
    n_pool = _n_pool(features, names)
    if int(null.get("n_pool", n_pool)) != n_pool:
        raise ValueError(f"null was computed on a pool of {null['n_pool']} items, features have {n_pool}")
    ks = tuple(int(k) for k in (null["ks"] if ks is None else ks))
    missing = [k for k in ks if k not in null["by_k"]]
    if missing:
        raise KeyError(f"null distribution has no entry for K={missing}")
    if scales is None:
        scales = null["scales"]
    arr, col_ids = _open_matrix(S)
    if arr.shape[0] != n_pool:
        raise ValueError(f"score matrix has {arr.shape[0]} rows, feature pool has {n_pool}")
    top = top_k_rows(arr, max(ks), row_chunk=row_chunk)
    nested = nested_channel_homogeneity(prepare_features(features, names), channels, top, ks, scales)
    by_k = {}
    degenerate = []  # one warning for the whole table, not one per (K, channel)
    for K in ks:
        groups = top[:, :K]
        H_c, H_f = nested[K]
        nk = null["by_k"][K]
        z_c, z_f = {}, {}
        for c, h in H_c.items():
            z_c[c], bad = _zscores(h, nk["mu_c"][c], nk["sigma_c"][c])
            if bad:
                degenerate.append((K, c))
        for f, h in H_f.items():
            z_f[f], _ = _zscores(h, nk["mu_f"][f], nk["sigma_f"][f])
        by_k[K] = {
            "groups": groups,
            "H_c": H_c,
            "z_c": z_c,
            "H_f": H_f,
            "z_f": z_f,
            "summary": {c: summarize(z) for c, z in z_c.items()},
            "summary_f": {f: summarize(z) for f, z in z_f.items()},
        }
    if degenerate:
        warnings.warn(
            f"degenerate null (sigma ~ 0) for (K, channel) {degenerate}: z-scores are nan",
            RuntimeWarning,
            stacklevel=2,
        )
    return {"ks": ks, "col_ids": col_ids, "by_k": by_k}


def evidence_pool(bundle: Mapping, *, pool=None) -> tuple[np.ndarray, dict, dict]:
    """The homogeneity pool of an evidence bundle (:func:`aria.io.layouts.read_evidence`).

    Returns ``(ids, features, channels)``. Symbolic bundles are segment-level
    and used whole. Audio bundles are track-level: ``pool`` (training track ids)
    keeps only those, and chord-root sequences become root-motion sequences
    (docs/spec.md §5, :func:`aria.audio.features.chord_root_motion`).
    """
    if bundle["kind"] == "symbolic":
        from aria.symbolic.features import CHANNELS

        return bundle["ids"], dict(bundle["features"]), CHANNELS
    from aria.audio.features import CHANNELS, chord_root_motion

    ids = np.asarray(bundle["ids"])
    keep = np.ones(len(ids), bool) if pool is None else np.isin(ids, np.asarray(pool).astype(str))
    feats = {k: v[keep] for k, v in bundle["features"].items() if k != "chords"}
    feats["chords"] = [chord_root_motion(bundle["features"]["chords"][i]) for i in np.flatnonzero(keep)]
    return ids[keep], feats, CHANNELS
