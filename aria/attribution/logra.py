"""LoGra (docs/spec.md §2), the whole method: projections, features and scores.

Features: per attributed layer, g̃ = P_outᵀ G P_in = Σ_t (P_outᵀ δ_t)(P_inᵀ x̃_t)ᵀ ∈ R^{k_out × k_in},
stored flattened row-major (index o * k_in + i), with G, x̃_t and δ_t as defined in
:mod:`aria.attribution.factored` (the hooks shared with FactGraSS). Scores:
tau = sum_l g_l(q)^T (F_l + lambda_l I)^{-1} g_l(z) over the layer blocks of the feature store,
lambda_l from ``params["damping"]`` (:func:`aria.attribution.linalg.damping_lambda`; the relative
rule: alpha * mean eigenvalue of F_l).

The method's interface (:mod:`aria.registry`, ``Method.module``): :func:`featurizer` prepares the
projection of a model's layers; :func:`operators` attributes from the cached features.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from aria.attribution.factored import layer_dims, top_eigenvectors
from aria.attribution.linalg import factored_operators

__all__ = ["logra_projections", "logra_features", "featurizer", "operators"]


def logra_projections(
    layers: dict[str, nn.Module], *, k_in: int, k_out: int, init: str = "kfac", covariance=None, random_state: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``(P_in, P_out)`` per layer, shapes (in+1, k_in') and (out, k_out'), with
    k' = min(k, dimension).

    ``init="kfac"``: top eigenvectors of the KFAC factors A and S (``covariance`` from
    :func:`kfac_covariance`); ``init="random"``: i.i.d. N(0, 1/k) (the ablation), seeded
    per layer from ``(random_state, layer index)``.
    """
    out = {}
    for i, (n, layer) in enumerate(layers.items()):
        d_in, d_out = layer_dims(layer)
        ki, ko = min(k_in, d_in), min(k_out, d_out)
        if init == "kfac":
            if covariance is None or n not in covariance:
                raise ValueError(f"LoGra init 'kfac' needs the covariance of layer {n}")
            out[n] = (top_eigenvectors(covariance[n]["A"], ki), top_eigenvectors(covariance[n]["S"], ko))
        elif init == "random":
            rng = np.random.default_rng([int(random_state), i])
            out[n] = (rng.normal(0, 1 / math.sqrt(ki), (d_in, ki)), rng.normal(0, 1 / math.sqrt(ko), (d_out, ko)))
        else:
            raise ValueError(f"LoGra init must be 'kfac' or 'random', got {init!r}")
    return out


def logra_features(factors, projections) -> torch.Tensor:
    """(B, Σ k_out·k_in) LoGra features of one batch from :func:`factor_batch` output."""
    cols = []
    for n, (x, d) in factors.items():
        P_in, P_out = (torch.as_tensor(p, dtype=x.dtype, device=x.device) for p in projections[n])
        g = torch.einsum("bto,bti->boi", d @ P_out, x @ P_in)
        cols.append(g.reshape(g.shape[0], -1))
    return torch.cat(cols, dim=1)


def featurizer(layers: dict[str, nn.Module], params: dict, *, covariance=None, seed: int = 0):
    """Prepare LoGra's projection of ``layers``: ``(featurize, widths)``.

    Parameters
    ----------
    layers : dict name -> linear module (:func:`~aria.attribution.factored.select_layers`)
        The attributed layers, in module order.
    params : dict
        ``k_in``, ``k_out`` and ``init`` ("kfac" | "random").
    covariance : dict, optional
        KFAC factors per layer (:func:`aria.attribution.factored.kfac_covariance`), for ``init="kfac"``.
    seed : int
        Seed of the random projections (``init="random"``).

    Returns
    -------
    featurize : callable
        :func:`aria.attribution.factored.factor_batch` output -> (B, Σ k_out·k_in) features.
    widths : dict name -> int
        Each layer's feature columns.
    """
    sel = layers
    proj = logra_projections(
        sel,
        k_in=params["k_in"],
        k_out=params["k_out"],
        init=params.get("init", "kfac"),
        covariance=covariance,
        random_state=seed,
    )
    widths = {n: proj[n][0].shape[1] * proj[n][1].shape[1] for n in sel}

    def featurize(f):
        return logra_features(f, proj)

    return featurize, widths


def operators(feats, params):
    """``(rows, ops)`` from one LoGra feature store; ``params["damping"]`` is its damping."""
    return factored_operators("logra", feats, params)
