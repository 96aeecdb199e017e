"""Factored per-example gradient projections for LoGra and FactGraSS (docs/spec.md §2).

The full per-example gradient is never formed. Forward and backward hooks on the
selected linear layers (``nn.Linear``, and the ``Conv1D`` of Hugging Face's GPT-2) capture,
for each example, the layer's inputs x_t and the gradients δ_t = ∂L/∂y_t of that example's
own loss with respect to the layer's outputs y_t (t runs over the positions of the sequence), and reduce them at once.

Conventions, stated once:

- A linear layer computes y = x Wᵀ + b with W of shape (out, in). Its per-example
  weight gradient, **with the bias as a ones column on the input**, is
  G = Σ_t δ_t x̃_tᵀ ∈ R^{out × (in+1)}, x̃_t = [x_t, 1]; the last column of G is the
  bias gradient. A layer without bias has no ones column. A ``Conv1D`` computes
  y = x W + b with its weight stored transposed, (in, out): the same map, so the same
  G (its weight's gradient is G[:, :in]ᵀ); GPT-2's fused ``c_attn`` is one layer with
  out = 3·d (queries, keys, values).
- The loss is :func:`aria.models.transformer.per_example_loss` with the same ``mask``
  and query ``loss_mask`` as the dense path (:mod:`aria.attribution.projection`);
  models run in eval mode.
- LoGra: g̃ = P_outᵀ G P_in = Σ_t (P_outᵀ δ_t)(P_inᵀ x̃_t)ᵀ ∈ R^{k_out × k_in}, stored
  flattened row-major (index o * k_in + i).
- FactGraSS: each factor is restricted to a fixed set of coordinates (m_in of x̃,
  m_out of δ, m ≈ √(blowup · k)), the outer product Σ_t δ_t[O] x̃_t[I]ᵀ is flattened
  row-major and mapped to k coordinates by a seeded SJLT (:class:`SJLT`).
- Feature rows of a model concatenate the layers in module order; the store's
  ``layers`` attribute gives each layer's name and column slice.
"""

from __future__ import annotations

import copy
import logging
import math
import re

import numpy as np
import torch
from torch import nn

from aria.attribution.projection import iter_batches
from aria.models.transformer import per_example_loss
from aria.runtime import progress as track_progress

__all__ = [
    "LAYER_SETS",
    "is_linear",
    "select_layers",
    "factor_batch",
    "kfac_covariance",
    "top_eigenvectors",
    "layer_dims",
    "project_factored",
]

log = logging.getLogger("aria")

#: layer selections of config ``layers``: name patterns of the linear modules kept (Aria's
#: MusicTransformer: qkv, proj, ff1, ff2; GPT-2: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj;
#: Llama: self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj)
LAYER_SETS = {
    "all": None,
    "attention": re.compile(r"(attn|attention|qkv|q_proj|k_proj|v_proj|o_proj|out_proj|(^|\.)proj$)"),
    "mlp": re.compile(r"(mlp|ffn|feed_forward|(^|\.)ff\d*$|(^|\.)fc\d*$|(^|\.)ff\d+)"),
}


def is_linear(mod: nn.Module) -> bool:
    """Whether ``mod`` is a linear layer the factored hooks support: ``nn.Linear`` (weight (out, in))
    or Hugging Face's ``Conv1D`` (GPT-2; weight (in, out)), recognised without importing transformers.
    """
    if isinstance(mod, nn.Linear):
        return True
    return type(mod).__name__ == "Conv1D" and hasattr(mod, "nf") and getattr(mod, "weight", None) is not None


def select_layers(model: nn.Module, which: str = "all") -> dict[str, nn.Module]:
    """The linear modules (:func:`is_linear`) to hook, by name, in module order.

    Parameters
    ----------
    which : {"all", "attention", "mlp"}
        ``attention`` keeps layers whose name looks like an attention projection
        (``qkv``, ``q_proj``, ``attn``, ``proj`` ...), ``mlp`` the feed-forward ones
        (``ff1``, ``fc``, ``mlp`` ...).

    Modules that own parameters but are not linear (embeddings, norms, a user's own layer
    types) are never hooked; the log names each of them as skipped. So are linear modules whose
    weight the parent module uses directly, so that a hook would never see them run: a model names
    them in its attribute ``functional_linear``, a regular expression on module names
    (:class:`aria.models.dattri_mt.DattriMusicTransformer`: attention's ``out_proj``).
    """
    if which not in LAYER_SETS:
        raise ValueError(f"layers must be one of {sorted(LAYER_SETS)}, got {which!r}")
    pat = LAYER_SETS[which]
    functional = re.compile(getattr(model, "functional_linear", None) or "^$")
    out, skipped = {}, []
    for name, mod in model.named_modules():
        if is_linear(mod) and functional.search(name):
            skipped.append(f"{name} (its weight is used by its parent, not called as a module)")
        elif is_linear(mod):
            if pat is None or pat.search(name):
                out[name] = mod
        elif any(p.requires_grad for p in mod.parameters(recurse=False)):
            skipped.append(name or type(mod).__name__)
    if skipped:
        log.info(
            "factored gradients skip parameterised modules they cannot hook (not linear, or not called as modules): %s",
            ", ".join(skipped),
        )
    if not out:
        raise ValueError(f"no linear layer (nn.Linear, Conv1D) matches layers={which!r} in {type(model).__name__}")
    return out


def _with_bias_column(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    if layer.bias is None:
        return x
    return torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)], dim=-1)


def factor_batch(model: nn.Module, layers: dict[str, nn.Module], tokens, mask, loss_mask=None):
    """Per-example factors of every hooked layer for one batch.

    Parameters
    ----------
    model : nn.Module
        The token model the ``layers`` belong to.
    layers : dict name -> linear module (:func:`select_layers`)
        The hooked layers (each must run once per forward pass).
    tokens, mask, loss_mask : tensors, shape (B, L)
        The batch, as :func:`aria.attribution.projection.per_example_grads` takes it.

    Returns
    -------
    dict name -> (x̃, δ): x̃ (B, T, in+1) inputs with the bias column, δ (B, T, out)
    gradients of each example's own loss w.r.t. the layer output (T = positions).
    Because the batch loss is the *sum* of per-example losses and examples do not
    interact, δ[b] is exactly ∂L_b/∂y_b.
    """
    inputs, outputs = {}, {}

    def hook(name):
        def fn(mod, inp, out):
            if name in inputs:
                raise RuntimeError(
                    f"layer {name} runs more than once per forward pass; factored gradients need one call "
                    "per linear module (exclude it with 'layers', or give each use its own module)"
                )
            inputs[name] = inp[0].detach()
            outputs[name] = out

        return fn

    handles = [mod.register_forward_hook(hook(n)) for n, mod in layers.items()]
    try:
        with torch.enable_grad():
            logits = model(tokens)
            loss = per_example_loss(logits, tokens, mask, loss_mask).sum()
            names = list(layers)
            missing = [n for n in names if n not in outputs]
            if missing:
                raise RuntimeError(f"hooked layers never ran in the forward pass: {missing}")
            grads = torch.autograd.grad(loss, [outputs[n] for n in names])
    finally:
        for h in handles:
            h.remove()
    B = tokens.shape[0]
    out = {}
    for n, g in zip(names, grads):
        x = _with_bias_column(inputs[n], layers[n]).reshape(B, -1, inputs[n].shape[-1] + (layers[n].bias is not None))
        out[n] = (x, g.detach().reshape(B, -1, g.shape[-1]))
    return out


def kfac_covariance(
    model, tokens, mask, loss_mask=None, *, layers: str = "all", batch_size: int = 32, device="cpu", progress=False
) -> dict[str, dict[str, np.ndarray]]:
    """KFAC factors of every selected layer from one pass over the training segments.

    Returns
    -------
    dict name -> {"A": E[x̃ x̃ᵀ] (in+1, in+1), "S": E[δ δᵀ] (out, out)}, float64, the
    expectations over the real tokens (``mask``) of all segments; δ is the gradient of
    the segment's own loss (zero at padding).
    """
    device = torch.device(device)
    model = copy.deepcopy(model).to(device).eval()
    sel = select_layers(model, layers)
    acc = {n: [0.0, 0.0] for n in sel}
    count = 0
    for _s, t, m, lm in track_progress(
        iter_batches(tokens, mask, loss_mask, batch_size, device),
        desc="covariance",
        unit="batch",
        enabled=progress,
        total=math.ceil(len(tokens) / batch_size),
        name=lambda it: f"segments {it[0]}..{it[0] + len(it[1]) - 1}",
    ):
        fac = factor_batch(model, sel, t, m, lm)
        w = m.reshape(m.shape[0], -1).to(torch.float64)
        count += float(w.sum())
        for n, (x, d) in fac.items():
            if x.shape[1] == w.shape[1]:
                xw = x.double() * w[..., None].sqrt()
            else:  # a layer applied once per example (no positions)
                xw = x.double()
            acc[n][0] = acc[n][0] + torch.einsum("bti,btj->ij", xw, xw)
            acc[n][1] = acc[n][1] + torch.einsum("bti,btj->ij", d.double(), d.double())
    if count == 0:
        raise ValueError("no real tokens for the covariance pass")
    return {n: {"A": (a / count).cpu().numpy(), "S": (b / count).cpu().numpy()} for n, (a, b) in acc.items()}


def top_eigenvectors(C: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` leading eigenvectors of a symmetric matrix, as columns (d, k), each with
    its largest-magnitude entry positive (a deterministic sign).
    """
    w, V = np.linalg.eigh(np.asarray(C, dtype=np.float64))
    V = V[:, np.argsort(w)[::-1][:k]]
    idx = np.abs(V).argmax(0)
    return V * np.sign(V[idx, np.arange(V.shape[1])])


def layer_dims(layer: nn.Module) -> tuple[int, int]:
    """``(in + 1 with a bias column, out)``: the dimensions of a layer's factors x̃ and δ."""
    if isinstance(layer, nn.Linear):
        d_in, d_out = layer.in_features, layer.out_features
    else:  # Conv1D: weight (in, out)
        d_in, d_out = layer.weight.shape
    return int(d_in) + (layer.bias is not None), int(d_out)


def project_factored(
    model,
    tokens,
    mask,
    loss_mask=None,
    *,
    method: str,
    params: dict,
    covariance=None,
    batch_size: int = 32,
    device="cpu",
    progress: bool = False,
    desc: str = "project",
) -> tuple[np.ndarray, list[dict]]:
    """LoGra or FactGraSS features of a whole data set.

    Parameters
    ----------
    tokens, mask, loss_mask : arrays, shape (N, L)
        The data set, as :func:`aria.attribution.projection.project_gradients` takes it.
    method : {"logra", "factgrass"}
    params : dict
        ``layers`` ("all" | "attention" | "mlp"), ``seed``, and for LoGra ``k_in``,
        ``k_out``, ``init`` ("kfac" | "random"); for FactGraSS ``k`` (per layer),
        ``blowup``, ``mask`` ("random" | "magnitude").
    covariance : output of :func:`kfac_covariance` (LoGra kfac, FactGraSS magnitude)

    Returns
    -------
    (features float32 (N, K), layers): ``layers`` lists ``{"name", "start", "stop"}``
    column slices per layer, K = total projected dimension.
    """
    from aria import registry

    m = registry.METHODS.get(method)
    impl = m.implementation() if m is not None else None
    if not hasattr(impl, "featurizer"):  # checked before the model is copied
        raise ValueError(f"unknown factored method {method!r}")
    device = torch.device(device)
    model = copy.deepcopy(model).to(device).eval()
    sel = select_layers(model, params.get("layers", "all"))
    seed = int(params.get("seed", 0))
    featurize, widths = impl.featurizer(sel, params, covariance=covariance, seed=seed)
    layout, start = [], 0
    for n in sel:
        layout.append({"name": n, "start": start, "stop": start + widths[n]})
        start += widths[n]
    out = np.empty((len(tokens), start), dtype=np.float32)
    for s, t, m, lm in track_progress(
        iter_batches(tokens, mask, loss_mask, batch_size, device),
        desc=desc,
        unit="batch",
        enabled=progress,
        total=math.ceil(len(tokens) / batch_size),
        name=lambda it: f"segments {it[0]}..{it[0] + len(it[1]) - 1}",
    ):
        out[s : s + len(t)] = featurize(factor_batch(model, sel, t, m, lm)).float().cpu().numpy()
    return out, layout
