"""TRAK (docs/spec.md §2): S = mean_m Phi_m (Phi_m^T Phi_m + lambda_m I)^{-1} phi_{q,m}^T over models m.

The damping lambda_m follows config ``methods.trak.damping``
(:func:`aria.attribution.linalg.damping_lambda`): by default relative to the spectrum,
lambda_m = alpha * tr(Phi_m^T Phi_m) / k (alpha times the mean eigenvalue), so that it damps the
same share of every model's spectrum; ``{"rule": "absolute", "lambda": l}`` fixes it.
"""

from __future__ import annotations

import logging

import numpy as np

from aria.attribution.linalg import damping_lambda, gram64

__all__ = ["query_operator", "operators", "spectrum_note"]

log = logging.getLogger(__name__)


def spectrum_note(K: np.ndarray, lam: float) -> tuple[str, bool]:
    """``(one log line on K's eigenvalue range and lam, whether lam is below its smallest eigenvalue)``.

    ``K`` is the symmetric (k, k) Gram matrix ``Phi^T Phi`` of the projected features and ``lam``
    the damping added to its diagonal.
    """
    ev = np.linalg.eigvalsh(K)
    lo, hi, mean = float(ev[0]), float(ev[-1]), float(np.trace(K) / len(K))
    below = lam < lo
    line = (
        f"Phi^T Phi eigenvalues {lo:.3g} .. {hi:.3g} (mean {mean:.3g}); damping lambda = {lam:.3g} "
        f"({lam / mean:.3g} x the mean eigenvalue)"
    )
    return line, below


def query_operator(
    train: np.ndarray, query: np.ndarray, *, lam: float | None = None, damping: dict | None = None
) -> np.ndarray:
    """(Phi^T Phi + lambda I)^{-1} phi_q^T for one model, shape (k, Q).

    Give either ``lam`` (> 0) or ``damping`` (:func:`aria.attribution.linalg.damping_lambda`).
    Solved with a Cholesky factorisation in float64. The eigenvalue range of Phi^T Phi and lambda
    are logged; a lambda below the smallest eigenvalue (which damps nothing: the solve then
    amplifies the directions the training gradients barely span, seed noise) logs a warning.
    """
    K = gram64(train)  # numpy, or one pass over a dask array's chunks
    if damping is not None:
        lam = damping_lambda(damping, K)
    if lam is None or not lam > 0:
        raise ValueError(f"TRAK damping lambda must be > 0, got {lam}")
    line, below = spectrum_note(K, lam)
    if below:
        log.warning(
            "%s: lambda is below the smallest eigenvalue, so it damps nothing and the scores are dominated by the "
            "directions the training gradients barely span (seed noise); use damping {rule: relative, alpha: ...}",
            line,
        )
    else:
        log.info("%s", line)
    K[np.diag_indices_from(K)] += lam
    L = np.linalg.cholesky(K)
    y = np.linalg.solve(L, np.asarray(query, dtype=np.float64).T)
    return np.linalg.solve(L.T, y)


def operators(feats, params):
    """``(rows, ops)``: one pair per ensemble model; ``params["damping"]`` is the damping."""
    if not params.get("damping"):
        raise ValueError("trak needs its 'damping' ({rule: relative, alpha: ...} or {rule: absolute, lambda: ...})")
    ops = [query_operator(f["train"], f["query"], damping=params["damping"]) / len(feats) for f in feats]
    return [f["train"] for f in feats], ops
