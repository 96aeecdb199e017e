"""The interface every attribution method's module follows, in the spirit of dattri's ``BaseAttributor``.

A method is one module (``Method.module`` in :mod:`aria.registry`) holding the whole method. The
workflow runs it in two steps, each its own cached job:

1. **prepare**: the features the method scores from. Dense gradient methods share the projected
   per-example gradients of :mod:`aria.attribution.projection`; a factored method prepares its own
   projection of each layer (:meth:`FactoredMethod.featurizer`, applied by
   :func:`aria.attribution.factored.project_factored`); unlearning prepares a Fisher
   (:func:`aria.attribution.unlearning.diagonal_fisher`).
2. **attribute**: scores from the cached features. Gradient methods return operators ``(rows, ops)``
   with the N x Q score matrix S = sum_i rows[i] @ ops[i], which
   :func:`aria.attribution.scoring.score_blocks` streams in row blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

__all__ = ["GradientMethod", "FactoredMethod"]


@runtime_checkable
class GradientMethod(Protocol):
    """A method that scores from cached projected features (families ``gradient-*``)."""

    def operators(self, feats: Sequence[Mapping], params: Mapping) -> tuple[list, list]:
        """``(rows, ops)``: rows[i] (N, k_i) and ops[i] (k_i, Q) with S = sum_i rows[i] @ ops[i].

        ``feats`` are the stores the method reads (``Method.reads``), each with ``train`` (N, k)
        and ``query`` (Q, k); ``params`` are the method's ``run_params`` (e.g. its damping).
        """
        ...


@runtime_checkable
class FactoredMethod(GradientMethod, Protocol):
    """A gradient method with its own per-layer projection (family ``gradient-factored``)."""

    def featurizer(
        self, layers: Mapping, params: Mapping, *, covariance=None, seed: int = 0
    ) -> tuple[Callable, dict[str, int]]:
        """``(featurize, widths)``: per-batch factors -> (B, sum of widths) features, and each layer's width."""
        ...
