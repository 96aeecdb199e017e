"""Per-example loss gradients and their seeded random projection.

phi(z) = P^T g(z), with P in R^{p x k} of i.i.d. N(0, 1/k) entries. P is never
materialized: it is generated in row blocks of ``block_rows`` parameters, block b
from a generator seeded with ``(seed, b)``, so any block can be rebuilt on any
device and the projection of a gradient is the sum of its blocks' products.
The same ``seed`` gives the same P for every checkpoint and ensemble member.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from aria.models.transformer import per_example_loss
from aria.runtime import progress as track_progress

__all__ = ["attributed_params", "per_example_grads", "BlockProjector", "iter_batches", "project_gradients"]


def attributed_params(model) -> dict[str, torch.Tensor]:
    """The parameters whose gradients are attributed (all trainable ones), in order."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def per_example_grads(model, params, tokens, mask, loss_mask=None) -> torch.Tensor:
    """Flattened per-example loss gradients.

    Parameters
    ----------
    params : dict name -> tensor (from :func:`attributed_params`)
    tokens : (B, L) int64; mask, loss_mask : (B, L) bool

    Returns
    -------
    (B, p) tensor, p = total number of attributed parameters, concatenated in
    ``params`` order.
    """

    def loss_one(prm, t, m, lm):
        logits = functional_call(model, prm, (t[None],))
        return per_example_loss(logits, t[None], m[None], None if lm is None else lm[None])[0]

    if loss_mask is None:
        g = vmap(grad(lambda prm, t, m: loss_one(prm, t, m, None)), in_dims=(None, 0, 0))(params, tokens, mask)
    else:
        g = vmap(grad(loss_one), in_dims=(None, 0, 0, 0))(params, tokens, mask, loss_mask)
    return torch.cat([g[n].reshape(tokens.shape[0], -1) for n in params], dim=1)


class BlockProjector:
    """Seeded Gaussian projection R^p -> R^k, generated block by block.

    Parameters
    ----------
    p, k : int; seed : int
    block_rows : int, keyword-only
        Rows of P generated at once; peak extra memory is block_rows * k floats.
    device : str or torch.device, keyword-only
    """

    def __init__(self, p: int, k: int, *, seed: int, block_rows: int = 16384, device="cpu"):
        self.p, self.k, self.seed = int(p), int(k), int(seed)
        self.block_rows = int(block_rows)
        self.device = torch.device(device)

    def block(self, b: int) -> torch.Tensor:
        """Rows ``[b*block_rows, (b+1)*block_rows)`` of P, shape (rows, k)."""
        rows = min(self.block_rows, self.p - b * self.block_rows)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + b)  # CPU: device-independent P
        return (torch.randn(rows, self.k, generator=gen) / self.k**0.5).to(self.device)

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        """Project (B, p) gradients to (B, k)."""
        out = torch.zeros(G.shape[0], self.k, device=G.device, dtype=G.dtype)
        for b in range(-(-self.p // self.block_rows)):
            sl = slice(b * self.block_rows, (b + 1) * self.block_rows)
            out += G[:, sl] @ self.block(b).to(G.dtype)
        return out


def iter_batches(tokens, mask, loss_mask, batch_size, device):
    """Yield ``(start, tokens, mask, loss_mask)`` tensors on ``device`` for consecutive batches
    of (N, L) arrays; ``loss_mask`` may be None (then None is yielded).
    """
    for s in range(0, len(tokens), batch_size):
        t = torch.as_tensor(tokens[s : s + batch_size], dtype=torch.long, device=device)
        m = torch.as_tensor(mask[s : s + batch_size], dtype=torch.bool, device=device)
        lm = (
            None
            if loss_mask is None
            else torch.as_tensor(loss_mask[s : s + batch_size], dtype=torch.bool, device=device)
        )
        yield s, t, m, lm


def project_gradients(
    model,
    tokens,
    mask,
    loss_mask=None,
    *,
    k: int,
    seed: int,
    batch_size: int = 64,
    device="cpu",
    block_rows: int = 16384,
    progress: bool = False,
    desc: str = "project",
) -> np.ndarray:
    """Projected per-example gradients of a whole data set.

    Parameters
    ----------
    tokens : int array (N, L); mask, loss_mask : bool arrays (N, L)

    Returns
    -------
    float32 array (N, k)
    """
    device = torch.device(device)
    model = copy.deepcopy(model).to(device).eval()  # leave the caller's model where it was
    params = attributed_params(model)
    p = sum(v.numel() for v in params.values())
    proj = BlockProjector(p, k, seed=seed, block_rows=block_rows, device=device)
    n = len(tokens)
    out = np.empty((n, k), dtype=np.float32)
    for s, t, m, lm in track_progress(
        iter_batches(tokens, mask, loss_mask, batch_size, device),
        desc=desc,
        unit="batch",
        enabled=progress,
        total=-(-n // batch_size),
        name=lambda it: f"segments {it[0]}..{it[0] + len(it[1]) - 1}",
    ):
        out[s : s + len(t)] = proj(per_example_grads(model, params, t, m, lm)).cpu().numpy()
    return out
