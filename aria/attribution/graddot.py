"""GradDot (docs/spec.md §2): S = Phi phi_q^T, one checkpoint (model 0, final)."""

from __future__ import annotations

import numpy as np


def operators(feats, params):
    """``(rows, ops)`` with S = rows[0] @ ops[0]; ``feats`` is one store (``train`` N x k, ``query`` Q x k)."""
    if len(feats) != 1:
        raise ValueError(f"graddot uses exactly one checkpoint, got {len(feats)}")
    return [feats[0]["train"]], [np.asarray(feats[0]["query"], np.float64).T]
