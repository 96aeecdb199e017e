"""Score matrices of the gradient methods from cached projected features (docs/spec.md §2).

Each method lives in its own module (``aria.attribution.<name>``, listed in
:mod:`aria.registry`) and returns ``(rows, ops)`` with S = sum_i rows[i] @ ops[i];
:func:`score_blocks` streams S in row blocks so a caller can write them to a store
without holding S in memory.

Conventions: S[j, q] is larger when training segment j is more implicated in
query q; rows are training segments (N), columns queries (Q), float32.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from aria import registry

__all__ = ["score_blocks", "score_dask"]


def _operators(method: str, feats: Sequence[dict], params: Mapping | None):
    names = [m.name for m in registry.gradient_methods()]
    if method not in names:
        raise ValueError(f"unknown method {method!r}; expected one of {tuple(names)}")
    if not feats:
        raise ValueError(f"{method}: no feature stores given")
    n = feats[0]["train"].shape[0]
    for f in feats:
        if f["train"].shape[0] != n or f["query"].shape[0] != feats[0]["query"].shape[0]:
            raise ValueError(f"{method}: feature stores disagree in N or Q")
    return registry.method(method).implementation().operators(feats, dict(params or {}))


def score_dask(method: str, feats: Sequence[dict], params: Mapping | None = None, *, row_chunk: int = 4096):
    """The N x Q score matrix as a lazy float32 dask array (the dask engine).

    Parameters
    ----------
    method, feats, params
        As for :func:`score_blocks`; ``train`` arrays may be dask arrays (e.g.
        :func:`aria.io.stores.read_features` with ``lazy=True``) or numpy arrays.
        Operators that need ``Phi^T Phi`` compute it in one pass over the chunks.
    row_chunk : int, keyword-only
        Rows per chunk of the result (the store's row chunk).

    Returns
    -------
    dask array (N, Q), float32, chunks (row_chunk, Q): the blocks :func:`score_blocks`
    yields, one task each (equal to round-off where an operator sums over chunks).
    """
    import dask.array as da

    rows, ops = _operators(method, feats, params)
    total = None
    for r, op in zip(rows, ops):
        r = r if hasattr(r, "dask") else da.from_array(r, chunks=(row_chunk, -1))
        term = r.astype(np.float64).rechunk((row_chunk, -1)) @ op
        total = term if total is None else total + term
    return total.astype(np.float32)


def score_blocks(
    method: str, feats: Sequence[dict], params: Mapping | None = None, *, row_chunk: int = 4096
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` row blocks of the N x Q score matrix.

    Parameters
    ----------
    method : str
        A registered gradient method (:func:`aria.registry.gradient_methods`).
    feats : sequence of dict
        Feature stores, each with ``train`` (N, k), ``query`` (Q, k) and, for
        TracIn, ``lr`` (the checkpoint's learning rate eta_c). GradDot and
        Grad-Cos take exactly one; TracIn one per checkpoint; TRAK one per model.
    params : mapping, optional
        The method's parameters (e.g. TRAK's ``lambda``).
    row_chunk : int, keyword-only
        Rows per yielded block.
    """
    rows, ops = _operators(method, feats, params)
    n = feats[0]["train"].shape[0]
    for start in range(0, n, row_chunk):
        block = sum(np.asarray(r[start : start + row_chunk], np.float64) @ op for r, op in zip(rows, ops))
        yield start, block.astype(np.float32)
