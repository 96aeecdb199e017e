"""Unlearning-based attribution (docs/spec.md §8; the second source paper, after Wang et al. 2024).

To attribute a generated item ẑ, *unlearn* it and measure which training items' losses rise:

    θ′ = θ₀ + η F⁻¹ ∇θ L(ẑ; θ)          (one step; ``steps`` repeats it from the new θ)
    τ(ẑ, z_i) = L(z_i; θ′) − L(z_i; θ₀)   (higher = more influenced)

restricted to a target group of parameters (the rest stays at θ₀). F is the *diagonal
empirical Fisher*: the mean over training items of the squared per-example loss gradient,
``F_j = (1/N) Σ_i (∂L(z_i)/∂θ_j)²`` -- never the square of a batch gradient, which is a
different (much smaller) quantity. The paper's step size is η = 1/N (its Eq. 2); Aria's ``lr``
is η.

Conventions
-----------
* Floor: F is used as ``max(F, floor · mean(F over the target group))``; a parameter that no
  training item moves (F = 0, e.g. an unused embedding row) would otherwise get an infinite
  step. ``floor`` is relative, so it does not depend on the loss scale (default 1e-3).
* Loss interface: ``loss_fn(model, batch, generator) -> (B,) per-example losses``. A
  stochastic loss (a diffusion model's loss over sampled timesteps and noise) draws from
  ``generator``; every pass that is compared (before and after unlearning, and each Fisher
  example) gets a generator seeded the same way (:func:`example_generator`), so the same
  noise and timesteps serve both sides of τ.
* Masks (docs/spec.md §8): ``M_U`` masks padding/silence in the loss of ẑ while unlearning, ``M_L``
  in the training losses while scoring. Strategies: ``none`` (neither), ``both``, ``mixed``
  (M_U only, the paper's choice). The batch-level switch is the caller's: the loss
  functions here take a ``use_mask`` flag.
* The model is put in eval mode (dropout off) for every pass.
* Precision: τ is a difference of two nearly equal losses, so in float32 it keeps only a few
  significant digits, fewer as η shrinks. :func:`precision_setup` gives the model and loss of a
  format (float64, ``mixed``: float64 output layer and softmax, or float32); the workflow measures
  the round-off that remains against τ's spread (:func:`aria.evaluation.numerics.score_numerics`).
  Every function here works in the model's own dtype.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager

import numpy as np
import torch

from aria.evaluation.numerics import PRECISIONS, UNIT_ROUNDOFF
from aria.seeding import stable_seed

__all__ = [
    "LAYER_GROUPS",
    "MASK_STRATEGIES",
    "mask_sides",
    "target_masks",
    "example_generator",
    "diagonal_fisher",
    "unlearn",
    "example_losses",
    "unlearning_scores",
    "token_batches",
    "token_loss",
    "model_embeddings",
    "sample_positions",
    "self_influence",
    "at_precision",
    "precision_setup",
    "mixed_token_loss",
    "latent_scores",
]

#: Parameter-name patterns of the target layer groups of :class:`aria.models.transformer.MusicTransformer`
#: (any model whose names follow them works; "kv" keeps the key and value thirds of a fused qkv).
LAYER_GROUPS = {
    "all": r".*",
    "attention": r"blocks\.\d+\.(qkv|proj)\.",
    "mlp": r"blocks\.\d+\.(ff1|ff2)\.",
    "kv": r"blocks\.\d+\.qkv\.",
}
MASK_STRATEGIES = ("none", "both", "mixed")


def mask_sides(strategy: str) -> tuple[bool, bool]:
    """Which losses a padding-mask strategy masks (docs/spec.md §8).

    Parameters
    ----------
    strategy : {"none", "both", "mixed"}
        ``none``: no mask anywhere; ``both``: the unlearning loss and the loss measured before and
        after; ``mixed``: the unlearning loss only (the paper's mixed strategy).

    Returns
    -------
    (bool, bool)
        ``(M_U, M_L)``: whether the unlearning step's loss and the measured loss are masked.
    """
    if strategy not in MASK_STRATEGIES:
        raise ValueError(f"mask strategy must be one of {MASK_STRATEGIES}, got {strategy!r}")
    return strategy in ("both", "mixed"), strategy == "both"


LossFn = Callable[[torch.nn.Module, Mapping, torch.Generator], torch.Tensor]


def target_masks(model: torch.nn.Module, group: str) -> dict[str, torch.Tensor]:
    """0/1 masks of the parameters a layer group updates: ``{name: tensor like the parameter}``.

    ``group`` is a key of the model's layer groups or a regular expression on parameter names.
    The groups are the model's ``layer_groups`` where it has them (:class:`aria.models.causal_lm.CausalLM`:
    GPT-2, Llama), else :data:`LAYER_GROUPS` (Aria's MusicTransformer). ``kv`` keeps the last two
    thirds of a fused query/key/value weight and bias along the model's ``kv_fused_axis`` (keys and
    values, not queries: rows ``[d, 3d)`` of Aria's ``qkv``, axis 0; columns of GPT-2's ``c_attn``,
    axis -1); a model whose keys and values are modules of their own (Llama) sets it to None.
    """
    groups = getattr(model, "layer_groups", LAYER_GROUPS)
    axis = getattr(model, "kv_fused_axis", 0)
    pattern = re.compile(groups.get(group, group))
    out = {}
    for name, p in model.named_parameters():
        if not pattern.match(name) or not p.requires_grad:
            continue
        m = torch.ones_like(p)
        if group == "kv" and axis is not None:
            m.narrow(axis, 0, p.shape[axis] // 3).zero_()
        out[name] = m
    if not out:
        raise ValueError(f"layer group {group!r} selects no parameter of {type(model).__name__}")
    return out


def at_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """``model`` with its parameters and buffers in ``precision`` (``float64`` or ``float32``):
    the model itself when it already is, else a converted deep copy (``model`` is left as it is).
    """
    if precision not in UNIT_ROUNDOFF:
        raise ValueError(f"precision must be one of {tuple(UNIT_ROUNDOFF)}, got {precision!r}")
    dtype = getattr(torch, precision)
    if all(p.dtype == dtype for p in model.parameters()):
        return model
    return copy.deepcopy(model).to(dtype)


def example_generator(seed: int, key: str, device="cpu") -> torch.Generator:
    """The generator of one compared pass: the same ``(seed, key)`` gives the same noise."""
    g = torch.Generator(device=device)
    g.manual_seed(stable_seed(seed, key))
    return g


def _grads(model, loss: torch.Tensor, names) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    live = [n for n in names if params[n].requires_grad]  # frozen ones (a fixed Fourier basis) get zeros
    gs = torch.autograd.grad(loss, [params[n] for n in live], allow_unused=True)
    gs = dict(zip(live, gs))
    return {n: (torch.zeros_like(params[n]) if gs.get(n) is None else gs[n]) for n in names}


def diagonal_fisher(
    model: torch.nn.Module,
    batches: Iterable[Mapping],
    loss_fn: LossFn,
    *,
    names=None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Mean over training items of the squared per-example loss gradient.

    A stochastic loss over T draws with ``draws(batch, generator, dtype)`` and ``losses_at(model,
    batch, t, eps)`` methods (a diffusion loss over timestep and noise draws,
    :class:`aria.models.diffusion.VLoss`) is differentiated and squared draw by draw, one forward
    and one backward pass each: ``F_j = (1/N) Σ_i (1/T) Σ_t (∂L_t(z_i)/∂θ_j)²`` (the second paper's §2.2),
    never the square of the draws' mean gradient.

    Parameters
    ----------
    model : torch.nn.Module
    batches : iterable of batches
        Each ``{"key": [item ids], ...}`` plus whatever ``loss_fn`` reads; items are
        differentiated one at a time (a per-example gradient, never a batch gradient).
    loss_fn : callable ``(model, batch, generator) -> (B,)``
    names : iterable of str, optional
        Parameters to compute it for (default: all).
    seed : int, keyword-only
        Base seed of each item's generator (stochastic losses).

    Returns
    -------
    dict name -> tensor like the parameter, float32 (the diagonal of F).
    """
    model.eval()
    params = dict(model.named_parameters())
    names = list(params) if names is None else list(names)
    acc = {n: torch.zeros_like(params[n]) for n in names}
    n_items = 0
    for batch in batches:
        for i, key in enumerate(batch["key"]):
            one = {k: (v[i : i + 1] if isinstance(v, torch.Tensor) else [v[i]]) for k, v in batch.items()}
            gen = example_generator(seed, str(key))
            if hasattr(loss_fn, "losses_at"):
                ref = next(iter(params.values()))
                t, eps = (d.to(ref.device) for d in loss_fn.draws(one, gen, dtype=ref.dtype))
                for j in range(t.shape[1]):
                    lj = loss_fn.losses_at(model, one, t[:, j : j + 1], eps[:, j : j + 1])[0, 0]
                    for n, g in _grads(model, lj, names).items():
                        acc[n] += g.detach() ** 2 / t.shape[1]
            else:
                for n, g in _grads(model, loss_fn(model, one, gen)[0], names).items():
                    acc[n] += g.detach() ** 2
            n_items += 1
    if n_items == 0:
        raise ValueError("diagonal_fisher: no training items")
    return {n: a / n_items for n, a in acc.items()}


@contextmanager
def parameters(model: torch.nn.Module, state: Mapping[str, torch.Tensor] | None = None):
    """``model`` with the parameters ``state`` (name -> tensor, all of them; None: its own, to be
    changed inside the block) inside the block; its own parameters are back after it, whatever
    happens inside.
    """
    own = {n: p.detach().clone() for n, p in model.named_parameters()}
    try:
        if state is not None:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(state[n])
        yield model
    finally:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(own[n])


def unlearn(
    model: torch.nn.Module,
    query: Mapping,
    loss_fn: LossFn,
    fisher: Mapping[str, torch.Tensor],
    *,
    lr: float,
    steps: int = 1,
    group: str = "all",
    floor: float = 1e-3,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """θ′ after ``steps`` Fisher-preconditioned ascent steps on the query's loss.

    Parameters
    ----------
    model : the model at θ₀ (left unchanged)
    query : one-item batch ``{"key": [id], ...}`` (the loss of ẑ, with M_U already chosen)
    loss_fn, fisher : see :func:`diagonal_fisher`
    lr : float
        η (the paper: 1/N-scale, 1e-6 for its model).
    steps : int
        1-4 in the paper.
    group : str
        Target layer group (:data:`LAYER_GROUPS` or a regex).
    floor : float
        Relative Fisher floor (module docstring).
    seed : int
        Base seed of the query's generator (the same at every step).

    Returns
    -------
    state : dict name -> tensor, the full parameter set θ′ (untouched outside the group).
    """
    masks = target_masks(model, group)
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    # the floor is relative to the mean Fisher entry over the whole target group
    total = sum(float((fisher[n].to(masks[n].dtype) * masks[n]).sum()) for n in masks)
    ref = total / max(sum(float(m.sum()) for m in masks.values()), 1.0)
    F = {}
    for n in masks:
        f = fisher[n].to(dtypes[n])
        F[n] = torch.clamp(f, min=max(floor * ref, torch.finfo(f.dtype).tiny))
    model.eval()
    with parameters(model):  # the steps change the model; θ₀ is back after
        for _ in range(int(steps)):
            loss = loss_fn(model, query, example_generator(seed, str(query["key"][0])))[0]
            g = _grads(model, loss, list(masks))
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in masks:
                        p.add_(float(lr) * masks[n] * g[n] / F[n])
        return {n: p.detach().clone() for n, p in model.named_parameters()}


def example_losses(model: torch.nn.Module, batches: Iterable[Mapping], loss_fn: LossFn, *, seed: int = 0) -> np.ndarray:
    """Per-example losses in eval mode, each item with its own seeded generator; float64 (N,).

    A loss marked ``loss_fn.deterministic = True`` (it draws no noise, e.g. :func:`token_loss`)
    is evaluated a whole batch at a time; the before and after passes of τ then see the same
    batches, so their round-off matches too. A loss with per-draw methods (``draws``, ``losses_at``:
    :class:`aria.models.diffusion.VLoss`) draws each item's noise from its own generator, then
    evaluates the whole batch in one forward pass: the same draws as item by item, B times fewer passes.
    """
    model.eval()
    out = []
    per_draw = hasattr(loss_fn, "draws") and hasattr(loss_fn, "losses_at")
    with torch.no_grad():
        for batch in batches:
            if getattr(loss_fn, "deterministic", False):
                out.extend(loss_fn(model, batch, None).double().cpu().tolist())
                continue
            if per_draw:
                x0 = batch["x0"]
                drawn = [
                    loss_fn.draws({"x0": x0[i : i + 1]}, example_generator(seed, str(key)), dtype=x0.dtype)
                    for i, key in enumerate(batch["key"])
                ]
                t = torch.cat([d[0] for d in drawn]).to(x0.device)
                eps = torch.cat([d[1] for d in drawn]).to(x0.device)
                out.extend(loss_fn.losses_at(model, batch, t, eps).mean(1).double().cpu().tolist())
                continue
            for i, key in enumerate(batch["key"]):
                one = {k: (v[i : i + 1] if isinstance(v, torch.Tensor) else [v[i]]) for k, v in batch.items()}
                out.append(float(loss_fn(model, one, example_generator(seed, str(key)))[0]))
    return np.asarray(out, dtype=np.float64)


def unlearning_scores(
    model: torch.nn.Module,
    train_batches: Callable[[], Iterable[Mapping]],
    query: Mapping,
    loss_fn: LossFn,
    fisher: Mapping[str, torch.Tensor],
    *,
    before: np.ndarray | None = None,
    **step,
) -> np.ndarray:
    """τ(ẑ, z_i) = L(z_i; θ′) − L(z_i; θ₀) for every training item, float64 (N,).

    ``train_batches()`` yields the training items in a fixed order (called once or twice);
    ``before`` (the losses at θ₀, from :func:`example_losses` with the same ``seed``) can be
    passed to share them between queries. Both passes give every item the same generator.
    ``step`` is the unlearning step of :func:`unlearn` (``lr``, and ``steps``, ``group``, ``floor``,
    ``seed``); its ``seed`` also seeds the losses.
    """
    seed = step.get("seed", 0)
    if before is None:
        before = example_losses(model, train_batches(), loss_fn, seed=seed)
    with parameters(model, unlearn(model, query, loss_fn, fisher, **step)):
        after = example_losses(model, train_batches(), loss_fn, seed=seed)
    return after - before


# --------------------------------------------------------------------------- token models (Aria's own)
def token_batches(tokens, mask, loss_mask=None, *, ids, use_mask: bool = True, batch_size: int = 32, device="cpu"):
    """Batches of a token model's items for :func:`token_loss`, in a fixed order.

    ``mask`` marks real tokens (False = padding: the tail of a short block, silent frames);
    ``use_mask=False`` is the "no mask" side of a strategy (padding enters the loss).
    ``loss_mask`` (a query's generated tokens; the prompt excluded) always applies.

    ``tokens`` is an int (N, L) array, ``mask`` and ``loss_mask`` bool (N, L), ``ids`` (N,) item
    ids. Yields dicts ``{"key": list of str (B,), "tokens": int64 (B, L), "mask": bool (B, L)}``
    (and ``"loss_mask"``: bool (B, L)) of tensors on ``device``, B <= ``batch_size``.
    """
    tokens = np.asarray(tokens)
    mask = np.ones(tokens.shape, bool) if not use_mask else np.asarray(mask, dtype=bool)
    for b in range(0, len(tokens), batch_size):
        sl = slice(b, b + batch_size)
        batch = {
            "key": [str(x) for x in np.asarray(ids)[sl]],
            "tokens": torch.as_tensor(tokens[sl], dtype=torch.long, device=device),
            "mask": torch.as_tensor(mask[sl], dtype=torch.bool, device=device),
        }
        if loss_mask is not None:
            batch["loss_mask"] = torch.as_tensor(np.asarray(loss_mask)[sl], dtype=torch.bool, device=device)
        yield batch


def mixed_token_loss(model, batch, generator=None):
    """:func:`token_loss` with the output layer, the softmax and the per-item averages in float64,
    the hidden states in the model's own dtype (``precision: mixed``).

    On Aria's token models nearly all of τ's float32 round-off comes from there (the logits'
    log-sum-exp over the vocabulary and the average over positions): measured on a demo-sized model,
    this cut it 150-200-fold for 1.2x the time of a float32 pass, where a float64 pass costs 3-4x.
    """
    from aria.models.transformer import per_example_loss, target_example_loss

    tokens, mask, lm = batch["tokens"], batch["mask"], batch.get("loss_mask")
    if hasattr(model, "hidden") and hasattr(model, "head"):
        return target_example_loss(model, tokens, mask, lm, dtype=torch.float64)
    return per_example_loss(model(tokens).double(), tokens, mask, lm)


mixed_token_loss.deterministic = True


def precision_setup(model: torch.nn.Module, precision: str):
    """``(model, loss_fn)`` of a token model's unlearning passes in ``precision``: ``float64`` (a
    float64 copy of the model, :func:`token_loss`), ``mixed`` (the model as it is,
    :func:`mixed_token_loss`) or ``float32`` (the model as it is, :func:`token_loss`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "mixed":
        return at_precision(model, "float32"), mixed_token_loss
    return at_precision(model, precision), token_loss


def token_loss(model, batch, generator=None):
    """Mean next-token cross-entropy per item (:func:`aria.models.transformer.per_example_loss`;
    :func:`~aria.models.transformer.target_example_loss`, the same on target positions only, for a
    model with ``hidden`` and ``head``); deterministic, so ``generator`` is unused.
    """
    from aria.models.transformer import per_example_loss, target_example_loss

    tokens, mask, lm = batch["tokens"], batch["mask"], batch.get("loss_mask")
    if hasattr(model, "hidden") and hasattr(model, "head"):
        return target_example_loss(model, tokens, mask, lm)
    return per_example_loss(model(tokens), tokens, mask, lm)


token_loss.deterministic = True


def model_embeddings(model, tokens, mask, *, batch_size: int = 32, device="cpu") -> np.ndarray:
    """The model's own embedding of each item: its final hidden state (after ``ln_f``) averaged
    over the item's real tokens; float64 (N, d_model).

    Used by the self-influence check for target selection, top-/bottom-k similarity and the
    Fréchet distance (the paper uses CLAP/OpenL3 audio embeddings; Aria's token models are
    compared in the representation of the original model θ₀, docs/methods.md "Unlearning").
    """
    captured = []
    hook = model.ln_f.register_forward_hook(lambda mod, inp, out: captured.append(out.detach()))
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for b in range(0, len(tokens), batch_size):
                t = torch.as_tensor(np.asarray(tokens[b : b + batch_size]), dtype=torch.long, device=device)
                m = torch.as_tensor(np.asarray(mask[b : b + batch_size]), dtype=torch.float32, device=device)
                captured.clear()
                model(t)
                h = captured[0]
                out.append(((h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)).double().cpu().numpy())
    finally:
        hook.remove()
    return np.concatenate(out) if out else np.zeros((0, model.cfg.d_model))


def sample_positions(model, tokens, sample_mask, *, generator: torch.Generator, temperature: float = 1.0):
    """Resample the positions ``sample_mask`` marks, left to right, each from the model given
    everything before it (the rest is kept: the prompt, conditioning tokens); int64 (B, L).

    Tokens never seen at a resampled position in ``tokens`` (e.g. another stage's token block,
    padding) stay possible only if the model gives them mass; a fixed ``generator`` makes two
    models' samples comparable draw for draw.
    """
    x = torch.as_tensor(np.asarray(tokens), dtype=torch.long).clone()
    sm = np.asarray(sample_mask, dtype=bool)
    model.eval()
    with torch.no_grad():
        for t in np.flatnonzero(sm.any(0)):
            if t == 0:
                continue
            logits = model(x[:, :t])[:, -1, :] / float(temperature)
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
            rows = torch.as_tensor(sm[:, t])
            x[rows, t] = nxt[rows]
    return x.numpy()


def self_influence(
    model,
    train: Mapping,
    fisher: Mapping[str, torch.Tensor],
    targets,
    *,
    lr: float,
    steps: int = 1,
    group: str = "all",
    floor: float = 1e-3,
    mask: str = "mixed",
    top_k: int = 100,
    prompts: Mapping | None = None,
    seed: int = 0,
    batch_size: int = 32,
    device="cpu",
    embeddings: np.ndarray | None = None,
    progress=None,
    loss_fn: LossFn | None = None,
    checks: Mapping | None = None,
) -> dict:
    """Train-to-train self-influence of one setting (docs/spec.md §8; the paper's §3.2) on a token model.

    Each target is unlearned like a query (its own padding masked by M_U under ``mixed`` and
    ``both``) and every training item is scored (M_L under ``both``).

    Parameters
    ----------
    train : ``{"tokens": (N, L), "mask": (N, L), "segment_ids": (N,)}`` (the stage's train.npz), and
        ``"loss_mask": (N, L)`` where the stage's loss covers only a target block (audio coarse/fine)
    targets : int array (T,), row indices of the targets (:func:`~aria.evaluation.selfinfluence.diverse_targets`)
    prompts : ``{"tokens": (G, L'), "loss_mask": (G, L')}``, optional
        Items whose ``loss_mask`` positions both models resample (:func:`sample_positions`) for
        the Fréchet distance; ``None`` skips it.
    seed : int, keyword-only
        Base seed of every item's generator (:func:`example_generator`: stochastic losses, and the
        resampling of ``prompts`` under key ``generation:<j>``): the same seed gives the same scores.
    embeddings : (N, d), optional; default :func:`model_embeddings` at θ₀.
    loss_fn : callable, optional
        The token loss (default :func:`token_loss`; :func:`precision_setup` gives the one of a precision).
    checks : dict, optional
        ``{name: (model, loss_fn)}``: the same model in other precisions (:func:`precision_setup`); the
        first target's τ is computed again with each, from θ₀ on, for
        :func:`~aria.evaluation.numerics.score_numerics` (``check`` in the result).

    Returns
    -------
    dict with per-target ``rank`` (R, 1 = best), ``top_sim`` and ``bottom_sim`` (k = min(top_k, N − 1)),
    and ``frechet`` (generations of every θ′ pooled over targets vs θ₀'s with the same draws);
    with ``checks``, ``check = {"main": (N,), name: (N,) ...}``: the first target's τ in every precision.
    """
    from aria.evaluation.selfinfluence import frechet_distance

    use_u, use_l = mask in ("both", "mixed"), mask == "both"
    tokens, tmask, ids = train["tokens"], train["mask"], np.asarray(train["segment_ids"]).astype(str)
    lmask = train.get("loss_mask")  # staged audio models: only the target block enters the loss
    E = (
        model_embeddings(model, tokens, tmask, batch_size=batch_size, device=device)
        if embeddings is None
        else embeddings
    )

    def batches():
        return token_batches(tokens, tmask, lmask, ids=ids, use_mask=use_l, batch_size=batch_size, device=device)

    loss_fn = token_loss if loss_fn is None else loss_fn
    before = example_losses(model, batches(), loss_fn, seed=seed)
    out = {"targets": [str(ids[t]) for t in targets], "rank": [], "top_sim": [], "bottom_sim": [], "tau_target": []}
    gen_after, gen_before = [], []
    step = dict(lr=lr, steps=steps, group=group, floor=floor, seed=seed)
    for j, t in enumerate(progress(targets) if progress else targets):
        (query,) = token_batches(
            tokens[t : t + 1],
            tmask[t : t + 1],
            None if lmask is None else lmask[t : t + 1],
            ids=ids[t : t + 1],
            use_mask=use_u,
            device=device,
        )
        with parameters(model, unlearn(model, query, loss_fn, fisher, **step)):
            tau = example_losses(model, batches(), loss_fn, seed=seed) - before
            if prompts is not None:
                g = example_generator(seed, f"generation:{j}")
                gen_after.append(sample_positions(model, prompts["tokens"], prompts["loss_mask"], generator=g))
        if prompts is not None:
            g = example_generator(seed, f"generation:{j}")
            gen_before.append(sample_positions(model, prompts["tokens"], prompts["loss_mask"], generator=g))
        if checks and j == 0:
            out["check"] = {"main": tau} | {
                name: unlearning_scores(m, batches, query, lf, fisher, **step) for name, (m, lf) in checks.items()
            }
        _record_target(out, tau, t, E, top_k)
    out["frechet"] = None
    if prompts is not None:
        gm = np.ones(np.concatenate(gen_after).shape, bool)
        Ea = model_embeddings(model, np.concatenate(gen_after), gm, batch_size=batch_size, device=device)
        Eb = model_embeddings(model, np.concatenate(gen_before), gm, batch_size=batch_size, device=device)
        out["frechet"] = frechet_distance(Ea, Eb)
    return _summarize_targets(out, len(ids), top_k)


def _record_target(out: dict, tau: np.ndarray, t: int, E: np.ndarray, top_k: int) -> None:
    """Append target ``t``'s R, top/bottom-k similarity and own τ to the self-influence record ``out``."""
    from aria.evaluation.selfinfluence import target_rank, topk_similarity

    out["rank"].append(target_rank(tau, t))
    out["top_sim"].append(topk_similarity(E, tau, t, k=top_k))
    out["bottom_sim"].append(topk_similarity(E, tau, t, k=top_k, bottom=True))
    out["tau_target"].append(float(tau[t]))


def _summarize_targets(out: dict, n: int, top_k: int) -> dict:
    """The self-influence record ``out`` with its summary over targets (median R, share of R = 1, mean similarities)."""
    r = np.asarray(out["rank"])
    out.update(
        n=int(n),
        top_k=int(min(top_k, n - 1)),
        median_rank=float(np.median(r)),
        share_rank1=float(np.mean(r == 1)),
        mean_top_sim=float(np.mean(out["top_sim"])),
        mean_bottom_sim=float(np.mean(out["bottom_sim"])),
    )
    return out


# --------------------------------------------------------------------------- latent diffusion models
def latent_scores(
    model: torch.nn.Module,
    train: Mapping,
    query: Mapping,
    fisher: Mapping[str, torch.Tensor],
    *,
    lr: float,
    mask: str = "mixed",
    loss_fn: LossFn | None = None,
    steps: int = 1,
    group: str = "all",
    floor: float = 1e-3,
    seed: int = 0,
    batch_size: int = 8,
    before: np.ndarray | None = None,
) -> np.ndarray:
    """τ(ẑ, z_i) of one query against every training item of a latent diffusion model, float64 (N,).

    Parameters
    ----------
    model : :class:`aria.models.diffusion.LatentDiT` (or a model with its forward), at θ₀
    train : dict of arrays over N items: ``x0`` (N, C, F), ``mask`` (N, F) bool (real frames),
        ``text`` (N, S, D), ``text_mask`` (N, S), ``seconds_start``, ``seconds_total`` (N,), ``ids`` (N,)
    query : the same keys over one item (``ids`` of length 1)
    mask : {"none", "both", "mixed"}
        The padding-mask strategy (:func:`mask_sides`): M_U masks the query's padded frames in the
        unlearning step, M_L the training items' padded frames in the measured losses.
    loss_fn : default :class:`aria.models.diffusion.VLoss` with 8 draws
    lr, steps, group, floor, seed : the unlearning step (:func:`unlearn`); ``seed`` also seeds the
        draws of every measured loss, the same before and after
    before : (N,), optional
        The training losses at θ₀ under this strategy's M_L and ``seed`` (shared between queries).
    """
    from aria.models.diffusion import VLoss, latent_batches

    use_u, use_l = mask_sides(mask)
    loss_fn = VLoss() if loss_fn is None else loss_fn
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    opts = dict(batch_size=batch_size, device=device, dtype=dtype)

    def batches():
        return latent_batches(train, ids=train["ids"], use_mask=use_l, **opts)

    (q,) = latent_batches(query, ids=query["ids"], use_mask=use_u, **opts)
    step = dict(lr=lr, steps=steps, group=group, floor=floor, seed=seed)
    return unlearning_scores(model, batches, q, loss_fn, fisher, before=before, **step)


def latent_self_influence(
    model: torch.nn.Module,
    train: Mapping,
    fisher: Mapping[str, torch.Tensor],
    targets,
    *,
    embeddings: np.ndarray,
    mask: str = "mixed",
    top_k: int = 100,
    loss_fn: LossFn | None = None,
    generate: Callable[[torch.nn.Module, torch.Generator], np.ndarray] | None = None,
    batch_size: int = 8,
    progress=None,
    **step,
) -> dict:
    """Train-to-train self-influence of one setting on a latent diffusion model (the paper's §3.2).

    Each target is unlearned like a query (:func:`latent_scores`: its padded frames masked by M_U
    under ``mixed`` and ``both``) and every training item scored (M_L under ``both``).

    Parameters
    ----------
    train : dict over N items (:func:`latent_scores`' keys, with ``ids``)
    targets : int array (T,), row indices of the targets
    embeddings : (N, d)
        The training items' embeddings for the top/bottom-k similarity (an audio encoder's, offline).
    generate : callable, optional
        ``generate(model, generator) -> (G, d)``: embeddings of G generations from fixed prompts with
        the given draws. For target j it runs after unlearning and at θ₀ with the generator of key
        ``generation:<j>``, and the Fréchet distance compares the two pools; ``None`` skips it.
    mask, top_k, loss_fn, batch_size : as :func:`latent_scores` and :func:`self_influence`
    **step
        The unlearning step of :func:`unlearn`: ``lr``, and ``steps``, ``group``, ``floor``, ``seed``
        (``seed`` also seeds every measured loss, the same before and after).

    Returns
    -------
    dict as :func:`self_influence`'s.
    """
    from aria.evaluation.selfinfluence import frechet_distance
    from aria.models.diffusion import VLoss, latent_batches

    use_u, use_l = mask_sides(mask)
    loss_fn = VLoss() if loss_fn is None else loss_fn
    p0 = next(model.parameters())
    opts = dict(batch_size=batch_size, device=p0.device, dtype=p0.dtype)
    ids = np.asarray(train["ids"]).astype(str)

    def batches():
        return latent_batches(train, ids=ids, use_mask=use_l, **opts)

    seed = step.get("seed", 0)
    before = example_losses(model, batches(), loss_fn, seed=seed)
    out = {"targets": [str(ids[t]) for t in targets], "rank": [], "top_sim": [], "bottom_sim": [], "tau_target": []}
    gen_after, gen_before = [], []
    for j, t in enumerate(progress(targets) if progress else targets):
        one = {k: np.asarray(v)[t : t + 1] for k, v in train.items()}
        (query,) = latent_batches(one, ids=ids[t : t + 1], use_mask=use_u, **opts)
        with parameters(model, unlearn(model, query, loss_fn, fisher, **step)):
            tau = example_losses(model, batches(), loss_fn, seed=seed) - before
            if generate is not None:
                gen_after.append(generate(model, example_generator(seed, f"generation:{j}")))
        if generate is not None:
            gen_before.append(generate(model, example_generator(seed, f"generation:{j}")))
        _record_target(out, tau, t, embeddings, top_k)
    out["frechet"] = None
    # a step that breaks the model (its generations overflow) has no Fréchet distance: marked instead
    out["diverged"] = bool(generate is not None and not all(np.isfinite(g).all() for g in gen_after))
    if generate is not None and not out["diverged"]:
        out["frechet"] = frechet_distance(np.concatenate(gen_after), np.concatenate(gen_before))
    return _summarize_targets(out, len(ids), top_k)
