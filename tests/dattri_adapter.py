"""Aria's model as dattri 0.3.0 sees it: the adapter of tests/attribution/test_factored_dattri.py,
which checks Aria's LoGra and FactGraSS against dattri through it; bench/bench_factored.py times
dattri through the same adapter. Also dattri's own Gaussian projection as a matrix (:func:`dattri_P`)."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class DattriView(nn.Module):
    """Aria's model seen by dattri: logits of tokens 1..L-1 as (B, V, L-1)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        single = x.dim() == 1
        out = self.inner(x[None] if single else x)[:, :-1].transpose(1, 2)
        return out[0] if single else out


def dattri_loss(model, batch, device):
    """dattri's ``loss_func`` for batches ``(x, x[:, 1:])``: plain cross-entropy of the next tokens."""
    x, y = batch
    return F.cross_entropy(model(x.to(device)), y.to(device))


def dattri_P(p, k, ensemble_id, proj_seed=0, chunk=4096) -> np.ndarray:
    """dattri's own CPU 'normal' projection matrix, materialized by projecting e_i."""
    from dattri.func.projection import random_project

    rows = []
    for s in range(0, p, chunk):
        eye = torch.zeros(min(chunk, p - s), p)
        eye[:, s:].fill_diagonal_(1.0)  # rows e_s .. e_{s+chunk-1}
        f = random_project(
            eye, eye.shape[0], proj_dim=k, proj_max_batch_size=32, proj_seed=proj_seed, proj_type="normal", device="cpu"
        )
        rows.append(f(eye, ensemble_id=ensemble_id).double().numpy())
    return np.concatenate(rows)
