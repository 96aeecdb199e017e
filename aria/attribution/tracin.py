"""TracIn (docs/spec.md §2): S = sum_c eta_c Phi_c phi_{q,c}^T over checkpoints c of model 0."""

from __future__ import annotations

import numpy as np


def operators(feats, params):
    """``(rows, ops)``: one pair per checkpoint; each store carries its learning rate ``lr`` (eta_c)."""
    return [f["train"] for f in feats], [float(f["lr"]) * np.asarray(f["query"], np.float64).T for f in feats]
