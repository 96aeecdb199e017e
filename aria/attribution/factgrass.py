"""FactGraSS (docs/spec.md §2), the whole method: masks, SJLT, features and scores.

Features: each factor of a layer is restricted to a fixed set of coordinates (m_in of x̃, m_out of
δ, m ≈ √(blowup · k)), the outer product Σ_t δ_t[O] x̃_t[I]ᵀ is flattened row-major and mapped to
k coordinates by a seeded SJLT (:class:`SJLT`); x̃_t and δ_t as defined in
:mod:`aria.attribution.factored` (the hooks shared with LoGra). Scores:
tau = sum_l g_l(q)^T (F_l + lambda_l I)^{-1} g_l(z) over the layer blocks of the feature store,
lambda_l from ``params["damping"]`` (:func:`aria.attribution.linalg.damping_lambda`; the relative
rule: alpha * mean eigenvalue of F_l).

The method's interface (:mod:`aria.registry`, ``Method.module``): :func:`featurizer` prepares the
masks and SJLTs of a model's layers; :func:`operators` attributes from the cached features.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from aria.attribution.factored import layer_dims
from aria.attribution.linalg import factored_operators

__all__ = ["factgrass_masks", "SJLT", "factgrass_features", "featurizer", "operators"]


def factgrass_masks(
    layers: dict[str, nn.Module],
    *,
    k: int,
    blowup: int = 4,
    mask: str = "random",
    covariance=None,
    random_state: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Coordinates kept of each factor: ``(I_in, O_out)`` index arrays, each of
    m = min(ceil(√(blowup · k)), dimension) coordinates, sorted.

    ``mask="random"``: seeded per layer; ``mask="magnitude"``: the coordinates with the
    largest second moment (diagonals of the KFAC factors A and S), the same for every example.

    Parameters
    ----------
    layers : dict name -> linear module (:func:`~aria.attribution.factored.select_layers`)
        The attributed layers, in order (the order fixes each layer's seed).
    k : int, keyword-only
        Target feature size; ``blowup`` (int) times it sets ``m`` as above.
    mask : {"random", "magnitude"}, keyword-only
    covariance : dict name -> {"A": (in+1, in+1), "S": (out, out)}, keyword-only
        From :func:`kfac_covariance`; needed for ``mask="magnitude"`` only.
    random_state : int, keyword-only
        ``mask="random"``: layer ``i`` draws from ``default_rng([random_state, i, 1])``.

    Returns
    -------
    dict name -> (I_in, O_out)
        Sorted int64 index arrays of shapes (min(m, in+1),) and (min(m, out),), ``in+1``
        counting the bias column when the layer has one.
    """
    out = {}
    m = math.ceil(math.sqrt(blowup * k))
    for i, (n, layer) in enumerate(layers.items()):
        d_in, d_out = layer_dims(layer)
        mi, mo = min(m, d_in), min(m, d_out)
        if mask == "random":
            rng = np.random.default_rng([int(random_state), i, 1])
            out[n] = (np.sort(rng.choice(d_in, mi, replace=False)), np.sort(rng.choice(d_out, mo, replace=False)))
        elif mask == "magnitude":
            if covariance is None or n not in covariance:
                raise ValueError(f"FactGraSS mask 'magnitude' needs the covariance of layer {n}")
            a, s = np.diag(covariance[n]["A"]), np.diag(covariance[n]["S"])
            out[n] = (np.sort(np.argsort(-a, kind="stable")[:mi]), np.sort(np.argsort(-s, kind="stable")[:mo]))
        else:
            raise ValueError(f"FactGraSS mask must be 'random' or 'magnitude', got {mask!r}")
    return out


class SJLT:
    """Sparse Johnson–Lindenstrauss transform R^d -> R^k.

    Input coordinate i goes to output ``index[i]`` with sign ``sign[i]`` (±1): one
    nonzero per column, so ‖Sv‖² = ‖v‖² in expectation. Seeded; applied as a
    scatter-add (``index_add_``) that runs unchanged on CPU and CUDA.
    """

    def __init__(self, d: int, k: int, *, random_state: int):
        rng = np.random.default_rng(int(random_state))
        self.d, self.k = int(d), int(k)
        self.index = rng.integers(0, self.k, size=self.d)
        self.sign = rng.choice(np.array([-1.0, 1.0]), size=self.d)

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        """Project (B, d) to (B, k)."""
        idx = torch.as_tensor(self.index, device=V.device)
        sgn = torch.as_tensor(self.sign, dtype=V.dtype, device=V.device)
        out = torch.zeros(V.shape[0], self.k, dtype=V.dtype, device=V.device)
        return out.index_add_(1, idx, V * sgn)

    def matrix(self) -> np.ndarray:
        """The dense (d, k) matrix (tests and small cases only)."""
        M = np.zeros((self.d, self.k))
        M[np.arange(self.d), self.index] = self.sign
        return M


def factgrass_features(factors, masks, sjlts) -> torch.Tensor:
    """(B, Σ k) FactGraSS features of one batch: mask, outer product, SJLT per layer."""
    cols = []
    for n, (x, d) in factors.items():
        keep_in, keep_out = (torch.as_tensor(i, device=x.device) for i in masks[n])
        g = torch.einsum("bto,bti->boi", d[..., keep_out], x[..., keep_in])
        cols.append(sjlts[n](g.reshape(g.shape[0], -1)))
    return torch.cat(cols, dim=1)


def featurizer(layers: dict[str, nn.Module], params: dict, *, covariance=None, seed: int = 0):
    """Prepare FactGraSS's masks and SJLTs for ``layers``: ``(featurize, widths)``.

    Parameters
    ----------
    layers : dict name -> linear module (:func:`~aria.attribution.factored.select_layers`)
        The attributed layers, in module order (the order fixes each layer's seeds).
    params : dict
        ``k`` (per layer), ``blowup`` and ``mask`` ("random" | "magnitude").
    covariance : dict, optional
        KFAC factors per layer, for ``mask="magnitude"``.
    seed : int
        Seed of the masks and of layer j's SJLT (``seed * 1_000_003 + j``).

    Returns
    -------
    featurize : callable
        :func:`aria.attribution.factored.factor_batch` output -> (B, Σ k) features.
    widths : dict name -> int
        Each layer's feature columns (``k``).
    """
    sel = layers
    masks = factgrass_masks(
        sel,
        k=params["k"],
        blowup=params.get("blowup", 4),
        mask=params.get("mask", "random"),
        covariance=covariance,
        random_state=seed,
    )
    sjlts = {
        n: SJLT(len(i) * len(o), params["k"], random_state=seed * 1_000_003 + j)
        for j, (n, (i, o)) in enumerate(masks.items())
    }
    widths = {n: params["k"] for n in sel}

    def featurize(f):
        return factgrass_features(f, masks, sjlts)

    return featurize, widths


def operators(feats, params):
    """``(rows, ops)`` from one FactGraSS feature store; ``params["damping"]`` is its damping."""
    return factored_operators("factgrass", feats, params)
