"""LoGra scoring (docs/spec.md §2): tau = sum_l g_l(q)^T (F_l + lambda_l I)^{-1} g_l(z) over the
layer blocks of the LoGra feature store (:mod:`aria.attribution.factored`),
lambda_l from ``params["damping"]`` (:func:`aria.attribution.linalg.damping_lambda`; the relative
rule: alpha * mean eigenvalue of F_l).
"""

from __future__ import annotations

from aria.attribution.linalg import factored_operators


def operators(feats, params):
    """``(rows, ops)`` from one LoGra feature store; ``params["damping"]`` is its damping."""
    return factored_operators("logra", feats, params)
