"""FactGraSS scoring (SPEC §2): tau = sum_l g_l(q)^T (F_l + lambda_l I)^{-1} g_l(z) over the
layer blocks of the FactGraSS feature store (:mod:`aria.attribution.factored`),
lambda_l = alpha * mean eigenvalue of F_l.
"""

from __future__ import annotations

from aria.attribution.linalg import layerwise_influence_operators


def operators(feats, params):
    """``(rows, ops)`` from one FactGraSS feature store; ``params["alpha"]`` is the relative damping."""
    if len(feats) != 1:
        raise ValueError(f"factgrass uses exactly one feature store, got {len(feats)}")
    f = feats[0]
    layers = f["attrs"].get("blocks")
    if not layers:
        raise ValueError("factgrass: the feature store has no 'blocks' attribute (not a FactGraSS store)")
    return layerwise_influence_operators(f["train"], f["query"], layers, alpha=params.get("alpha", 0.1))
