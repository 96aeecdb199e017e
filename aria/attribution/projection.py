"""Per-example loss gradients and their seeded random projection.

phi(z) = P^T g(z) with a seeded random P in R^{p x k}, of one of two types
(``projection.type`` in config; a change of type changes every number downstream):

``gaussian`` (:class:`BlockProjector`)
    i.i.d. N(0, 1/k) entries. P is generated in row blocks of ``block_rows``
    parameters, block b from a CPU generator seeded with ``(seed, b)``, so any
    block can be rebuilt on any device. Blocks are kept in memory up to
    ``cache_bytes`` (generated once per job instead of once per batch); those
    beyond the budget are regenerated for every batch. The cache never changes a
    number: the same blocks are summed in the same order.
``sjlt`` (:class:`SJLTProjector`)
    a sparse Johnson–Lindenstrauss transform: parameter i goes to ``s`` output
    coordinates (distinct, uniformly drawn) with independent random signs
    ±1/sqrt(s), so E[P Pᵀ] = I and ‖Pᵀg‖² is unbiased for ‖g‖². Costs O(p·s) per
    gradient instead of the Gaussian's O(p·k); indices and signs come from numpy's
    seeded generator, identical on every device.

The same ``seed`` gives the same P for every checkpoint and ensemble member.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from aria.models.transformer import per_example_loss
from aria.registry import PROJECTION_TYPES  # the types of projection.type, and registry.DEFAULT_PROJECTION
from aria.runtime import progress as track_progress

__all__ = [
    "PROJECTION_TYPES",
    "DEFAULT_CACHE_BYTES",
    "attributed_params",
    "per_example_grads",
    "BlockProjector",
    "SJLTProjector",
    "make_projector",
    "iter_batches",
    "project_gradients",
    "loss_gradient_features",
]

#: Memory a Gaussian projector may keep its generated blocks in (bytes).
DEFAULT_CACHE_BYTES = 1 << 30


def attributed_params(model) -> dict[str, torch.Tensor]:
    """The parameters whose gradients are attributed (all trainable ones), in order.

    Returns
    -------
    dict name -> tensor
        Detached views of ``model.named_parameters()`` with ``requires_grad``, each of its own
        shape; ``p`` (the gradient dimension) is the sum of their sizes.
    """
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def per_example_grads(model, params, tokens, mask, loss_mask=None) -> torch.Tensor:
    """Flattened per-example loss gradients.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (B, L) tokens to (B, L, V) logits.
    params : dict name -> tensor (from :func:`attributed_params`)
    tokens : int64 tensor, shape (B, L)
    mask : bool tensor, shape (B, L)
        True at real tokens.
    loss_mask : bool tensor, shape (B, L), optional
        Target positions of the loss (default: every real one).

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
    p : int
        Input dimension (number of attributed parameters).
    k : int
        Output dimension (projected feature size).
    seed : int, keyword-only
        Seeds P: block ``b`` comes from a CPU ``torch.Generator`` seeded with
        ``seed * 1_000_003 + b``, so a seed gives the same P on every device.
    block_rows : int, keyword-only
        Rows of P generated at once; peak extra memory is block_rows * k floats
        beyond the cache.
    device : str or torch.device, keyword-only
    cache_bytes : int, keyword-only
        Memory for generated blocks (float32, on ``device``): the first
        ``cache_bytes // (4 * block_rows * k)`` blocks are generated once and
        kept; 0 regenerates every block on every call.
    """

    kind = "gaussian"

    def __init__(
        self,
        p: int,
        k: int,
        *,
        seed: int,
        block_rows: int = 16384,
        device="cpu",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        self.p, self.k, self.seed = int(p), int(k), int(seed)
        self.block_rows = int(block_rows)
        self.device = torch.device(device)
        self.n_blocks = -(-self.p // self.block_rows)
        self.n_cached = min(self.n_blocks, max(0, int(cache_bytes)) // (4 * self.block_rows * self.k))
        self._cache: dict[int, torch.Tensor] = {}

    def _generate(self, b: int) -> torch.Tensor:
        rows = min(self.block_rows, self.p - b * self.block_rows)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + b)  # CPU: device-independent P
        return (torch.randn(rows, self.k, generator=gen) / self.k**0.5).to(self.device)

    def block(self, b: int) -> torch.Tensor:
        """Rows ``[b*block_rows, (b+1)*block_rows)`` of P, shape (rows, k), float32."""
        blk = self._cache.get(b)
        if blk is None:
            blk = self._generate(b)
            if b < self.n_cached:
                self._cache[b] = blk
        return blk

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        """Project (B, p) gradients to (B, k)."""
        out = torch.zeros(G.shape[0], self.k, device=G.device, dtype=G.dtype)
        for b in range(self.n_blocks):
            sl = slice(b * self.block_rows, (b + 1) * self.block_rows)
            out += G[:, sl] @ self.block(b).to(G.dtype)
        return out


class SJLTProjector:
    """Seeded sparse Johnson–Lindenstrauss transform R^p -> R^k.

    Parameter i is sent to ``s`` distinct output coordinates ``index[i]``, one
    uniformly drawn in each of s contiguous blocks of the k outputs, with random
    signs ``±1/sqrt(s)``: every row of P has squared norm 1 and E[P Pᵀ] = I.

    Parameters
    ----------
    p, k : int
        Input and output dimensions, as in :class:`BlockProjector`.
    seed : int, keyword-only
        Seeds numpy's generator (``default_rng([seed, 0x534A4C54])``) that draws the
        indices and signs: a seed gives the same P on every device.
    s : int, keyword-only
        Nonzeros per parameter (1 <= s <= k); 1 is the classic CountSketch.
    device : str or torch.device, keyword-only

    Attributes
    ----------
    index : int64 tensor, shape (p, s), on ``device``
        Output coordinates of each parameter.
    sign : float32 tensor, shape (p, s), on ``device``
        Their weights, ±1/sqrt(s).
    """

    kind = "sjlt"

    def __init__(self, p: int, k: int, *, seed: int, s: int = 1, device="cpu"):
        self.p, self.k, self.seed, self.s = int(p), int(k), int(seed), int(s)
        if not 1 <= self.s <= self.k:
            raise ValueError(f"SJLT needs 1 <= s <= k, got s={s}, k={k}")
        self.device = torch.device(device)
        rng = np.random.default_rng([self.seed, 0x534A4C54])  # "SJLT": another stream than the Gaussian's
        # block construction (Kane & Nelson): output coordinates split into s contiguous
        # blocks, one uniform coordinate per block, so a parameter's s coordinates are distinct
        edges = np.arange(self.s + 1) * self.k // self.s
        index = edges[:-1] + rng.integers(0, np.diff(edges), size=(self.p, self.s))
        sign = rng.integers(0, 2, size=(self.p, self.s)) * 2.0 - 1.0
        self.index = torch.as_tensor(np.ascontiguousarray(index, dtype=np.int64), device=self.device)
        self.sign = torch.as_tensor(sign / self.s**0.5, dtype=torch.float32, device=self.device)
        self._flat_index = self.index.reshape(-1)

    def matrix(self) -> np.ndarray:
        """The dense (p, k) matrix P (tests and small cases only)."""
        P = np.zeros((self.p, self.k))
        rows = np.repeat(np.arange(self.p), self.s)
        np.add.at(P, (rows, self.index.cpu().numpy().reshape(-1)), self.sign.cpu().double().numpy().reshape(-1))
        return P

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        """Project (B, p) gradients to (B, k)."""
        out = torch.zeros(G.shape[0], self.k, device=G.device, dtype=G.dtype)
        sgn = self.sign.to(G.dtype)
        if self.s == 1:
            return out.index_add_(1, self._flat_index, G * sgn[:, 0])
        src = (G[:, :, None] * sgn).reshape(G.shape[0], -1)
        return out.index_add_(1, self._flat_index, src)


def make_projector(
    p: int,
    k: int,
    *,
    kind: str = "gaussian",
    seed: int,
    block_rows: int = 16384,
    sjlt_s: int = 1,
    device="cpu",
    cache_bytes: int = DEFAULT_CACHE_BYTES,
):
    """The projector of ``projection.type`` ``kind`` (one of :data:`PROJECTION_TYPES`).

    Parameters
    ----------
    p, k : int
        Input dimension (number of attributed parameters) and output dimension (projected feature size).
    kind : {"gaussian", "sjlt"}, keyword-only
        :class:`BlockProjector` or :class:`SJLTProjector`.
    seed : int, keyword-only
        Seeds P (same seed, same P on every device and for every checkpoint).
    block_rows, cache_bytes : int, keyword-only
        Gaussian only: rows of P generated at once, and memory (bytes) for cached blocks.
    sjlt_s : int, keyword-only
        SJLT only: nonzeros per parameter.
    device : str or torch.device, keyword-only

    Returns
    -------
    BlockProjector or SJLTProjector
        Callable mapping (B, p) gradients to (B, k) features.
    """
    if kind == "gaussian":
        return BlockProjector(p, k, seed=seed, block_rows=block_rows, device=device, cache_bytes=cache_bytes)
    if kind == "sjlt":
        return SJLTProjector(p, k, seed=seed, s=sjlt_s, device=device)
    raise ValueError(f"unknown projection type {kind!r}; expected one of {PROJECTION_TYPES}")


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
    projection: str = "gaussian",
    batch_size: int = 64,
    device="cpu",
    block_rows: int = 16384,
    sjlt_s: int = 1,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    projector=None,
    progress: bool = False,
    desc: str = "project",
) -> np.ndarray:
    """Projected per-example gradients of a whole data set.

    Parameters
    ----------
    tokens : int array, shape (N, L)
    mask : bool array, shape (N, L)
        True at real tokens.
    loss_mask : bool array, shape (N, L), optional
        Target positions of the loss (default: every real one).
    k, seed, projection, block_rows, sjlt_s, cache_bytes : keyword-only
        The projection (:func:`make_projector`): ``k`` output features, ``seed`` (int) seeds P.
    projector : optional
        An already built projector of the model's parameter count (reused across
        calls, e.g. training segments then queries, so a cached P is generated once);
        it overrides the other projection options.

    Returns
    -------
    float32 array (N, k)
    """
    device = torch.device(device)
    model = copy.deepcopy(model).to(device).eval()  # leave the caller's model where it was
    params = attributed_params(model)
    p = sum(v.numel() for v in params.values())
    if projector is None:
        projector = make_projector(
            p,
            k,
            kind=projection,
            seed=seed,
            block_rows=block_rows,
            sjlt_s=sjlt_s,
            device=device,
            cache_bytes=cache_bytes,
        )
    elif (projector.p, projector.k) != (p, k):
        raise ValueError(f"projector maps {projector.p} -> {projector.k}, the model needs {p} -> {k}")
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
        out[s : s + len(t)] = projector(per_example_grads(model, params, t, m, lm)).cpu().numpy()
    return out


def loss_gradient_features(model, batches, loss_fn, projector, *, seed: int, progress: bool = False, desc="project"):
    """Projected per-example gradients of any per-item loss (e.g. the diffusion v-loss), one item at a time.

    Parameters
    ----------
    batches : iterable of dicts with ``"key"`` (list of str) and tensors with the item axis first
        (:func:`aria.models.diffusion.latent_batches`)
    loss_fn : ``loss_fn(model, batch, generator) -> (B,)`` (:data:`aria.attribution.unlearning.LossFn`)
    projector : a projector of the model's parameter count (:func:`make_projector`)
    seed : int, keyword-only
        Each item's loss draws its noise from the generator of ``(seed, key)``
        (:func:`aria.attribution.unlearning.example_generator`): the same draws as its unlearning losses.

    Returns
    -------
    float32 array (N, k), in the order of ``batches``.
    """
    from aria.attribution.unlearning import example_generator

    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    n_par = sum(p.numel() for p in params)
    if projector.p != n_par:
        raise ValueError(f"projector maps {projector.p} -> {projector.k}, the model has {n_par} parameters")
    rows = []
    for batch in track_progress(batches, desc=desc, unit="batch", enabled=progress):
        for i, key in enumerate(batch["key"]):
            one = {k: (v[i : i + 1] if isinstance(v, torch.Tensor) else [v[i]]) for k, v in batch.items()}
            loss = loss_fn(model, one, example_generator(seed, str(key)))[0]
            g = torch.autograd.grad(loss, params)
            flat = torch.cat([x.reshape(-1) for x in g]).to(torch.float32)
            rows.append(projector(flat[None]).detach().cpu().numpy()[0])
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), projector.k)
