"""A latent diffusion transformer (Stable Audio's DiT) and its v-objective loss.

The second source paper attributes a Stable-Audio-style text-to-music model: a DiT on VAE
latents, trained with the v-objective, conditioned on a text embedding (cross-attention) and on
timing (the clip's start and total seconds, as cross-attention tokens and as a prepended global
token), variable-length clips zero-padded to the model's length and trained *without* a padding
mask. :class:`LatentDiT` is that model, built from diffusers' own parts
(``StableAudioDiTModel`` and ``StableAudioProjectionModel``, the classes of diffusers'
``StableAudioPipeline``), so a user's Stable Audio transformer loads into it unchanged
(:func:`from_pretrained`).

Conventions (written once, here)
--------------------------------
* Latents ``x0``: float (B, C, F), C channels, F frames; a clip shorter than F frames is zero-padded
  at the end and ``mask`` (B, F) bool marks its real frames.
* Time ``t`` in [0, 1]; ``alpha = cos(πt/2)``, ``sigma = sin(πt/2)``; ``x_t = alpha·x0 + sigma·ε``;
  the network predicts ``v = alpha·ε − sigma·x0`` (Salimans & Ho 2022, stable-audio-tools'
  ``v`` objective). ``t`` enters the network as is (its Gaussian Fourier time embedding).
* Text: a float (B, S, text_dim) sequence from a text encoder (:mod:`aria.audio.text`), ``text_mask``
  (B, S) bool; timing: ``seconds_start`` and ``seconds_total`` (B,) floats in seconds.
* Loss of one item (:class:`VLoss`): the mean over ``n_timesteps`` draws ``(t, ε)`` of the squared
  error of ``v``, averaged over all C·F entries (no mask: the padding counts, as in training) or
  over the C·F_real entries of real frames (mask). Draws come from the caller's
  ``torch.Generator``, so two passes with equally seeded generators see the same noise and
  timesteps (unlearning's before and after; docs/spec.md §8).
* Layer groups of unlearning (the paper's Table 1), regular expressions on parameter names:
  ``all`` (every weight of the transformer blocks), ``self`` (self-attention, ``attn1``),
  ``cross`` (cross-attention, ``attn2``), ``to_kv`` (the cross-attention's ``to_k`` and ``to_v``).
* Precision: diffusers' attention processor rotates queries and keys in float32 whatever the
  model's dtype; :class:`DtypeKeepingAttnProcessor` does the same computation in the model's
  own dtype (identical in float32, tested), so a float64 model is float64 throughout and an
  unlearning score, a difference of two nearly equal losses, keeps its digits.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CLASS_PATH",
    "LAYER_GROUPS",
    "DtypeKeepingAttnProcessor",
    "LatentDiT",
    "VLoss",
    "alpha_sigma",
    "from_pretrained",
    "latent_batches",
    "sample",
    "train_latent_dit",
]

#: ``model_class`` of a :class:`LatentDiT` in the checkpoint contract (:mod:`aria.io.checkpoints`).
CLASS_PATH = "aria.models.diffusion:LatentDiT"

#: Unlearning's layer groups on :class:`LatentDiT` parameter names (the paper's Table 1 targets).
LAYER_GROUPS = {
    "all": r"dit\.transformer_blocks\.\d+\.",
    "self": r"dit\.transformer_blocks\.\d+\.attn1\.",
    "cross": r"dit\.transformer_blocks\.\d+\.attn2\.",
    "to_kv": r"dit\.transformer_blocks\.\d+\.attn2\.to_(k|v)\.",
}


#: LatentDiT's size keywords that are StableAudioDiTModel's own, under diffusers' names.
_DIT_NAMES = {
    "max_frames": "sample_size",
    "num_layers": "num_layers",
    "head_dim": "attention_head_dim",
    "num_heads": "num_attention_heads",
    "kv_heads": "num_key_value_attention_heads",
    "time_proj_dim": "time_proj_dim",
}
#: All of LatentDiT's size keywords (its checkpoint ``config``).
_SIZE_NAMES = (*_DIT_NAMES, "latent_channels", "text_dim", "cond_dim", "max_seconds")


def alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The v-objective's signal and noise scales at time ``t`` (any shape, in [0, 1]).

    Returns
    -------
    alpha, sigma : tensors like ``t``: ``cos(πt/2)`` and ``sin(πt/2)``.
    """
    return torch.cos(t * (math.pi / 2)), torch.sin(t * (math.pi / 2))


class DtypeKeepingAttnProcessor:
    """diffusers' ``StableAudioAttnProcessor2_0`` (rotary positions on part of each head, grouped
    key/value heads, no attention mask) computed in the model's dtype throughout.

    The diffusers processor casts queries and keys to float32 for the rotation; in float32 the two
    agree to the bit, in float64 this one keeps float64 (tests/models/test_diffusion.py).
    """

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        """Diffusers' processor call: (B, L, d) hidden states of one ``Attention`` module to its output."""
        if attention_mask is not None:
            raise ValueError("LatentDiT runs without attention masks (the model is trained on zero-padded clips)")
        from diffusers.models.embeddings import apply_rotary_emb

        b = hidden_states.shape[0]
        cross = encoder_hidden_states is not None
        source = encoder_hidden_states if cross else hidden_states
        q, k, v = attn.to_q(hidden_states), attn.to_k(source), attn.to_v(source)
        hd = q.shape[-1] // attn.heads
        kvh = k.shape[-1] // hd
        q = q.view(b, -1, attn.heads, hd).transpose(1, 2)
        k = k.view(b, -1, kvh, hd).transpose(1, 2)
        v = v.view(b, -1, kvh, hd).transpose(1, 2)
        if kvh != attn.heads:
            k = torch.repeat_interleave(k, attn.heads // kvh, dim=1)
            v = torch.repeat_interleave(v, attn.heads // kvh, dim=1)
        if rotary_emb is not None:
            rot = rotary_emb[0].shape[-1]
            cos_sin = tuple(r.to(q.dtype) for r in rotary_emb)
            q = torch.cat(
                (apply_rotary_emb(q[..., :rot], cos_sin, use_real=True, use_real_unbind_dim=-2), q[..., rot:]), -1
            )
            if not cross:
                k = torch.cat(
                    (apply_rotary_emb(k[..., :rot], cos_sin, use_real=True, use_real_unbind_dim=-2), k[..., rot:]), -1
                )
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(b, -1, attn.heads * hd)
        return attn.to_out[1](attn.to_out[0](out))


class LatentDiT(nn.Module):
    """Stable Audio's latent DiT with its text and timing conditioning, as one module.

    Parameters (keyword-only; the checkpoint contract's ``config``)
    ----------
    latent_channels : int
        C, the latent's channels.
    max_frames : int
        F, the frames every clip is padded to (diffusers' ``sample_size``).
    num_layers, num_heads, head_dim, kv_heads : int
        Transformer blocks, attention heads, width per head, key/value heads of cross-attention.
    text_dim : int
        Width of the text encoder's output sequence.
    cond_dim : int
        Width of the conditioning tokens (text projected, and each timing number).
    time_proj_dim : int
        Width of the Fourier time embedding.
    max_seconds : float
        Upper end of the timing numbers (seconds; larger values are clamped).

    Notes
    -----
    Parameter names: ``dit.*`` (diffusers' ``StableAudioDiTModel``: ``transformer_blocks.<i>.attn1``
    self-attention, ``attn2`` cross-attention with ``to_q``, ``to_k``, ``to_v``, ``to_out.0``,
    ``ff`` feed-forward, ``norm1..3``) and ``cond.*`` (``StableAudioProjectionModel``: the text
    projection and the two number conditioners).
    """

    layer_groups = LAYER_GROUPS
    kv_fused_axis = None

    def __init__(
        self,
        *,
        latent_channels: int = 64,
        max_frames: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        head_dim: int = 32,
        kv_heads: int = 2,
        text_dim: int = 64,
        cond_dim: int = 64,
        time_proj_dim: int = 64,
        max_seconds: float = 60.0,
    ):
        super().__init__()
        from diffusers import StableAudioDiTModel
        from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel

        self.config = {n: (float if n == "max_seconds" else int)(v) for n, v in locals().items() if n in _SIZE_NAMES}
        c = self.config
        self.dit = StableAudioDiTModel(
            in_channels=c["latent_channels"],
            out_channels=c["latent_channels"],
            cross_attention_dim=c["cond_dim"],
            cross_attention_input_dim=c["cond_dim"],
            global_states_input_dim=2 * c["cond_dim"],
            **{theirs: c[ours] for ours, theirs in _DIT_NAMES.items()},
        )
        self.cond = StableAudioProjectionModel(
            text_encoder_dim=c["text_dim"], conditioning_dim=c["cond_dim"], min_value=0, max_value=c["max_seconds"]
        )
        self.dit.set_attn_processor(DtypeKeepingAttnProcessor())

    def forward(self, x_t, t, text, seconds_start, seconds_total, text_mask=None):
        """Predicted ``v`` of noisy latents.

        Parameters
        ----------
        x_t : float (B, C, F)
        t : float (B,), in [0, 1]
        text : float (B, S, text_dim)
        seconds_start, seconds_total : float (B,), seconds
        text_mask : bool (B, S), optional; True = a real text position (padded positions are zeroed
            before projection, so they carry nothing; attention itself is unmasked)

        Returns
        -------
        float (B, C, F)
        """
        from diffusers.models.embeddings import get_1d_rotary_pos_embed

        dtype = x_t.dtype
        if text_mask is not None:
            text = text * text_mask[..., None].to(text.dtype)
        c = self.cond(text.to(dtype), seconds_start.to(dtype), seconds_total.to(dtype))
        cross = torch.cat([c.text_hidden_states, c.seconds_start_hidden_states, c.seconds_end_hidden_states], 1)
        glob = torch.cat([c.seconds_start_hidden_states, c.seconds_end_hidden_states], 2)
        hd = self.config["head_dim"]
        rot = get_1d_rotary_pos_embed(
            hd // 2, x_t.shape[2] + 1, use_real=True, repeat_interleave_real=False, freqs_dtype=torch.float64
        )
        rot = tuple(r.to(device=x_t.device, dtype=dtype) for r in rot)
        kw = dict(encoder_hidden_states=cross, global_hidden_states=glob, rotary_embedding=rot, return_dict=False)
        return self.dit(x_t, t.to(dtype), **kw)[0]


def from_pretrained(folder, **sizes) -> LatentDiT:
    """A :class:`LatentDiT` whose transformer is a ``StableAudioDiTModel.save_pretrained`` folder
    (e.g. the ``transformer`` folder of a Stable Audio checkpoint), read offline.

    ``sizes`` are :class:`LatentDiT` keywords for the conditioning (``text_dim``, ``cond_dim``,
    ``max_seconds``); the transformer's own sizes come from the folder's config. A
    ``projection_model`` folder next to it (the pipeline's layout) supplies the conditioning
    weights; without it they stay as initialised and a message says so.
    """
    from pathlib import Path

    from diffusers import StableAudioDiTModel

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder}: not a StableAudioDiTModel folder (no config.json); save one with save_pretrained"
        )
    dit = StableAudioDiTModel.from_pretrained(folder, local_files_only=True)
    cfg = dit.config
    sizes = (
        {ours: cfg[theirs] for ours, theirs in _DIT_NAMES.items()} | {"cond_dim": cfg.cross_attention_input_dim} | sizes
    )
    model = LatentDiT(latent_channels=cfg.in_channels, **sizes)
    model.dit.load_state_dict(dit.state_dict())
    model.dit.set_attn_processor(DtypeKeepingAttnProcessor())
    proj = folder.parent / "projection_model"
    if (proj / "config.json").is_file():
        from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel

        model.cond.load_state_dict(StableAudioProjectionModel.from_pretrained(proj, local_files_only=True).state_dict())
    return model


class VLoss:
    """Per-item v-objective loss over seeded draws of timesteps and noise: ``loss_fn(model, batch,
    generator) -> (B,)`` of :mod:`aria.attribution.unlearning`.

    Parameters
    ----------
    n_timesteps : int
        T, the draws ``(t, ε)`` per item; the loss is their mean (:meth:`draw_losses` gives each).
    t_range : (float, float)
        Timesteps are uniform on this interval (default (0, 1)).

    The batch holds ``x0`` (B, C, F), ``mask`` (B, F) bool (all True: no mask; the batch builder
    decides, :func:`latent_batches`), ``text`` (B, S, D), ``text_mask`` (B, S), ``seconds_start`` and
    ``seconds_total`` (B,). The draws of an item come from ``generator`` in a fixed order (t, then
    ε, item by item), so a one-item batch and the same item inside a batch see different draws
    only if their generators differ; unlearning gives each item its own generator.
    """

    def __init__(self, n_timesteps: int = 8, *, t_range=(0.0, 1.0)):
        if int(n_timesteps) < 1:
            raise ValueError(f"n_timesteps must be at least 1, got {n_timesteps}")
        self.n_timesteps = int(n_timesteps)
        self.t_range = (float(t_range[0]), float(t_range[1]))

    def draws(self, batch, generator, dtype=torch.float64):
        """Timesteps (B, T) and noise (B, T, C, F), drawn on the CPU from ``generator`` in ``dtype``."""
        x0 = batch["x0"]
        b, T = x0.shape[0], self.n_timesteps
        lo, hi = self.t_range
        t = lo + (hi - lo) * torch.rand((b, T), generator=generator, dtype=torch.float64)
        eps = torch.randn((b, T, *x0.shape[1:]), generator=generator, dtype=torch.float64)
        return t.to(dtype), eps.to(dtype)

    def draw_losses(self, model, batch, generator):
        """The loss of every draw: float (B, T) in the model's dtype."""
        x0 = batch["x0"]
        t, eps = self.draws(batch, generator, dtype=x0.dtype)
        return self.losses_at(model, batch, t.to(x0.device), eps.to(x0.device))

    def losses_at(self, model, batch, t, eps):
        """The losses of given draws, timesteps (B, T') and noise (B, T', C, F): float (B, T').

        :func:`~aria.attribution.unlearning.diagonal_fisher` takes one draw at a time through it
        (T' = 1), so each draw's gradient costs one forward and one backward pass.
        """
        x0 = batch["x0"]
        b, T = t.shape
        alpha, sigma = alpha_sigma(t)
        x0r = x0[:, None].expand_as(eps)
        x_t = alpha[..., None, None] * x0r + sigma[..., None, None] * eps
        v = alpha[..., None, None] * eps - sigma[..., None, None] * x0r

        def rep(a):
            return a[:, None].expand(b, T, *a.shape[1:]).reshape(b * T, *a.shape[1:])

        pred = model(
            x_t.reshape(b * T, *x0.shape[1:]),
            t.reshape(b * T),
            rep(batch["text"]),
            rep(batch["seconds_start"]),
            rep(batch["seconds_total"]),
            text_mask=rep(batch["text_mask"]) if "text_mask" in batch else None,
        ).reshape(eps.shape)
        m = batch["mask"].to(x0.dtype)[:, None, None, :]  # (B, 1, 1, F)
        err = ((pred - v) ** 2 * m).sum((-1, -2))
        return err / (m.sum((-1, -2)) * x0.shape[1]).clamp(min=1.0)

    def __call__(self, model, batch, generator):
        """The loss of every item, the mean over its draws: (B,) in the model's dtype."""
        return self.draw_losses(model, batch, generator).mean(1)


def latent_batches(data, *, ids, use_mask: bool = True, batch_size: int = 8, device="cpu", dtype=torch.float32):
    """Batches of latent items for :class:`VLoss`, in a fixed order.

    ``data`` holds ``x0`` (N, C, F), ``mask`` (N, F) bool, ``text`` (N, S, D), ``text_mask`` (N, S)
    bool, ``seconds_start`` and ``seconds_total`` (N,); ``ids`` (N,). ``use_mask=False`` is the "no
    mask" side of a strategy (every frame, padding included, enters the loss). Yields dicts with
    ``"key"`` (list of str) and tensors on ``device`` (floats in ``dtype``).
    """
    n = len(ids)
    for b in range(0, n, batch_size):
        sl = slice(b, b + batch_size)
        mask = np.asarray(data["mask"][sl], dtype=bool)
        yield {
            "key": [str(x) for x in np.asarray(ids)[sl]],
            "x0": torch.as_tensor(np.asarray(data["x0"][sl]), dtype=dtype, device=device),
            "mask": torch.as_tensor(mask if use_mask else np.ones_like(mask), device=device),
            "text": torch.as_tensor(np.asarray(data["text"][sl]), dtype=dtype, device=device),
            "text_mask": torch.as_tensor(np.asarray(data["text_mask"][sl], dtype=bool), device=device),
            "seconds_start": torch.as_tensor(np.asarray(data["seconds_start"][sl]), dtype=dtype, device=device),
            "seconds_total": torch.as_tensor(np.asarray(data["seconds_total"][sl]), dtype=dtype, device=device),
        }


def sample(model, cond, *, steps: int = 25, generator: torch.Generator, frames: int | None = None):
    """Generate latents by deterministic DDIM steps of the v-objective from seeded noise.

    Parameters
    ----------
    cond : dict of ``text`` (B, S, D), ``text_mask``, ``seconds_start``, ``seconds_total`` (B,) tensors
    steps : int
        Denoising steps from t = 1 to t = 0 (uniform in t).
    generator : torch.Generator
        The initial noise; the same generator state gives the same latents from the same model, so
        two models (before and after unlearning) can be compared draw for draw.
    frames : int, optional
        F of the output (default the model's ``max_frames``).

    Returns
    -------
    float (B, C, F) latents, in the model's dtype.
    """
    p = next(model.parameters())
    b = cond["text"].shape[0]
    frames = int(frames or model.config["max_frames"])
    x = torch.randn((b, model.config["latent_channels"], frames), generator=generator, dtype=torch.float64)
    x = x.to(device=p.device, dtype=p.dtype)
    ts = torch.linspace(1.0, 0.0, int(steps) + 1, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        for t0, t1 in zip(ts[:-1], ts[1:]):
            a0, s0 = alpha_sigma(t0)
            a1, s1 = alpha_sigma(t1)
            tt = torch.full((b,), float(t0), dtype=p.dtype, device=p.device)
            v = model(
                x, tt, cond["text"], cond["seconds_start"], cond["seconds_total"], text_mask=cond.get("text_mask")
            )
            x0 = float(a0) * x - float(s0) * v
            eps = float(s0) * x + float(a0) * v
            x = float(a1) * x0 + float(s1) * eps
    return x


def train_latent_dit(
    data,
    *,
    sizes: dict,
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    min_lr_ratio: float = 0.1,
    n_timesteps: int = 1,
    random_state: int,
    progress: bool = False,
) -> dict:
    """Train a :class:`LatentDiT` with the v-objective, as Stable Audio is trained: no padding mask.

    Parameters
    ----------
    data : dict of arrays over N items (:func:`latent_batches`' keys; ``mask`` is ignored: every
        frame, padding included, enters the training loss)
    sizes : dict
        :class:`LatentDiT` keywords.
    steps : int
        Optimizer steps (AdamW, cosine decay from ``lr`` to ``lr · min_lr_ratio``, gradient norm
        clipped at 1).
    n_timesteps : int
        Draws (t, ε) per item and step.
    random_state : int, keyword-only
        Seeds the initial weights, the data order and every step's draws: the same seed gives the
        same weights, bit for bit, on one machine.

    Returns
    -------
    dict with ``model`` (eval mode, float32), ``losses`` (float per step) and ``config`` (``sizes``).
    """
    from tqdm.auto import tqdm

    from aria.models.training import _lr_at, seed_everything

    if int(steps) < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    gen = seed_everything(random_state)
    model = LatentDiT(**sizes)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    ids = [str(i) for i in range(len(data["x0"]))]
    (full,) = latent_batches(data, ids=ids, use_mask=False, batch_size=len(ids))
    loss_fn = VLoss(n_timesteps)
    losses = []
    model.train()
    for step in tqdm(range(int(steps)), desc="train DiT", disable=not progress, mininterval=2.0):
        idx = torch.randperm(len(ids), generator=gen)[: int(batch_size)]
        batch = {k: ([v[i] for i in idx] if k == "key" else v[idx]) for k, v in full.items()}
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, int(steps), lr, min_lr_ratio)
        loss = loss_fn(model, batch, gen).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    return {"model": model.eval(), "losses": losses, "config": dict(model.config)}
