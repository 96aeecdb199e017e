"""Small dense linear-algebra helpers shared by the scoring methods."""

from __future__ import annotations

import numpy as np

__all__ = ["unit_rows"]


def unit_rows(X) -> np.ndarray:
    """Rows of ``X`` (n, d) scaled to unit L2 norm, in float64; zero rows stay zero."""
    X = np.asarray(X, dtype=np.float64)
    nrm = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, nrm, out=np.zeros_like(X), where=nrm > 0)
