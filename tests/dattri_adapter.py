"""Aria's model as dattri 0.3.0 sees it: the adapter of tests/attribution/test_factored_dattri.py,
which checks Aria's LoGra and FactGraSS against dattri through it; bench/bench_factored.py times
dattri through the same adapter."""

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
