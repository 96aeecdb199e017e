"""Training of the symbolic model and autoregressive generation of queries.

Pure in-memory functions: arrays in, state dicts and arrays out. Saving and
loading checkpoints is :mod:`aria.io.checkpoints`' job.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from aria.models.build import build_model, checkpoint_fields
from aria.models.transformer import ModelConfig, MusicTransformer, batch_loss, per_example_loss

__all__ = ["seed_everything", "train_model", "example_losses", "generate"]


def seed_everything(random_state: int) -> torch.Generator:
    """Seed torch's global RNG (weight init) and return a data-order generator.

    ``random_state`` (int) seeds both ``torch.manual_seed`` and the returned CPU
    ``torch.Generator``.
    """
    torch.manual_seed(int(random_state))
    return torch.Generator().manual_seed(int(random_state))


def _lr_at(step: int, total: int, lr: float, min_ratio: float) -> float:
    """Cosine decay from ``lr`` to ``lr * min_ratio`` over ``total`` steps."""
    frac = step / max(total, 1)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def train_model(
    tokens: np.ndarray,
    mask: np.ndarray,
    *,
    cfg: ModelConfig,
    epochs: int,
    lr: float,
    batch_size: int,
    n_checkpoints: int,
    random_state: int,
    loss_mask: np.ndarray | None = None,
    weight_decay: float = 0.01,
    min_lr_ratio: float = 0.1,
    progress: bool = False,
    desc: str = "train",
    total_steps: int | None = None,
    init_state: int | None = None,
    fused: bool = False,
    architecture: str = "aria",
) -> dict:
    """Train a model of ``architecture`` (:func:`~aria.models.build.build_model`) on token blocks with AdamW.

    Parameters
    ----------
    tokens : int array, shape (N, L)
    mask : bool array, shape (N, L)
        True at real tokens.
    loss_mask : bool array (N, L), optional
        Positions whose prediction is trained (a stage's target block); default all.
    cfg : ModelConfig
        The model's sizes.
    architecture : {"aria", "gpt2", "llama"}, keyword-only
        Aria's MusicTransformer, or a Hugging Face GPT-2 / Llama of the sizes ``cfg``
        (:mod:`aria.models.causal_lm`), trained by the same recipe.
    epochs, batch_size : int
    lr : float
        Peak learning rate.
    n_checkpoints : int
        Checkpoints saved at evenly spaced epochs, the last one after the final
        epoch (TracIn's checkpoints).
    random_state : int
        Seeds the data order and, unless ``init_state`` is given, the weight initialisation.
    init_state : int, optional, keyword-only
        Seeds the weight initialisation alone (default: ``random_state``). The LDS retrainings
        with ``lds.init: shared`` pass member 0's seed: every retraining then starts from the
        attributed model's initial weights, and only the data and their order differ.
    fused : bool, keyword-only
        Train with the fused causal attention kernel (:func:`~aria.models.transformer.fused_attention`):
        the same model up to float32 round-off, about 2.8x faster on CPU. The ensemble members keep
        the explicit form (their stored results stay bit-identical); the LDS retrainings use it.
        Aria's architecture only (a Hugging Face model keeps its eager attention).
    total_steps : int, optional, keyword-only
        Optimizer steps to take, and the length of the learning-rate schedule. Default
        (None): ``epochs * ceil(N / batch_size)``, i.e. ``epochs`` passes. Otherwise training
        runs over as many freshly shuffled epochs as it takes, the last one cut short at
        ``total_steps`` (``epochs`` is then ignored): the LDS retrainings use it to give a model
        trained on a subset as many steps as ensemble member 0 took on all segments. The
        epochs run, E, replace ``epochs`` for the checkpoints (evenly spaced over the E epochs,
        the last one after the final, possibly partial, epoch).

    Returns
    -------
    dict with ``final`` (state dict), ``checkpoints`` (list of dicts with
    ``epoch``, ``lr`` — the learning rate in force when it was saved — and
    ``state``), ``losses`` (mean training loss per epoch, over the examples the epoch
    used), ``steps`` (optimizer steps taken) and ``model`` (the checkpoint contract's
    ``config`` and, but for Aria's architecture, ``model_class``:
    :func:`~aria.models.build.checkpoint_fields`).
    """
    n = len(tokens)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    if total_steps is None:
        total = epochs * steps_per_epoch
    elif int(total_steps) < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    else:
        total = int(total_steps)
        epochs = math.ceil(total / steps_per_epoch)
    if n_checkpoints < 1 or n_checkpoints > epochs:
        raise ValueError(f"n_checkpoints must be in 1..epochs ({epochs}), got {n_checkpoints}")
    gen = seed_everything(random_state)
    if init_state is not None:
        torch.manual_seed(int(init_state))
    model = build_model(cfg, architecture)
    if fused and architecture == "aria":
        for blk in model.blocks:
            blk.fused = True
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    X = torch.as_tensor(tokens, dtype=torch.long)
    M = torch.as_tensor(mask, dtype=torch.bool)
    LM = None if loss_mask is None else torch.as_tensor(loss_mask, dtype=torch.bool)
    ckpt_epochs = sorted({round(epochs * (i + 1) / n_checkpoints) for i in range(n_checkpoints)})
    out = {"checkpoints": [], "losses": []}
    step = 0
    bar = tqdm(total=total, desc=desc, disable=not progress, mininterval=2.0)
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot = 0.0
        seen = 0
        for b in range(min(steps_per_epoch, total - step)):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            cur_lr = _lr_at(step, total, lr, min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = cur_lr
            loss = batch_loss(model, X[idx], M[idx], None if LM is None else LM[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot += float(loss.detach()) * len(idx)
            seen += len(idx)
            step += 1
            bar.update(1)
        out["losses"].append(tot / seen)  # seen == n but in a cut-short last epoch
        bar.set_postfix(loss=f"{tot / seen:.3f}")
        if epoch in ckpt_epochs:
            out["checkpoints"].append(
                {
                    "epoch": epoch,
                    "lr": _lr_at(step - 1, total, lr, min_lr_ratio),
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
                }
            )
    bar.close()
    out["final"] = out["checkpoints"][-1]["state"]
    out["steps"] = step
    out["model"] = checkpoint_fields(model)
    return out


@torch.no_grad()
def example_losses(
    model: torch.nn.Module,
    tokens: np.ndarray,
    mask: np.ndarray,
    loss_mask: np.ndarray | None = None,
    *,
    batch_size: int = 64,
) -> np.ndarray:
    """Per-example loss of every sequence under ``model``, in eval mode.

    The same loss as the attribution gradients
    (:func:`aria.models.transformer.per_example_loss`, mean next-token cross-entropy over
    the target positions of ``loss_mask``).

    Parameters
    ----------
    model : MusicTransformer
        Switched to eval mode.
    tokens : int array, shape (N, L)
    mask : bool array, shape (N, L)
        True at real tokens.
    loss_mask : bool array, shape (N, L), optional
        Target positions (default: every real one).
    batch_size : int, keyword-only

    Returns
    -------
    float64 array (N,), in nats per target token.
    """
    model.eval()
    out = np.empty(len(tokens), dtype=np.float64)
    for b in range(0, len(tokens), batch_size):
        sl = slice(b, b + batch_size)
        t = torch.as_tensor(tokens[sl], dtype=torch.long)
        lm = None if loss_mask is None else torch.as_tensor(loss_mask[sl], dtype=torch.bool)
        out[sl] = per_example_loss(model(t), t, torch.as_tensor(mask[sl], dtype=torch.bool), lm).double().numpy()
    return out


@torch.no_grad()
def generate(
    model: MusicTransformer,
    prompts: np.ndarray,
    *,
    length: int,
    temperature: float,
    random_state: int,
    top_k: int = 0,
    pad: int | None = None,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """Sample continuations of equal-length prompts.

    Parameters
    ----------
    model : MusicTransformer
        Any module mapping (B, L) tokens to (B, L, V) logits; it is switched to eval mode.
    prompts : int array, shape (Q, P)
        Q prompts of P tokens each.
    length : int, keyword-only
        Total tokens per output (> P).
    temperature : float > 0, keyword-only
        Logits are divided by it before the softmax.
    random_state : int, keyword-only
        Seeds the CPU ``torch.Generator`` of the sampler (same seed, same samples).
    top_k : int, keyword-only
        Sample among the ``top_k`` most likely ids; 0 = the full distribution.
    pad : int, optional, keyword-only
        The PAD id, never sampled (default: the symbolic tokenizer's).
    allowed : bool array (length, V), optional
        Ids that may be sampled at each position (e.g. a stage's token blocks,
        :meth:`aria.audio.stages.AudioVocab.allowed_tokens`).

    Returns
    -------
    int64 array (Q, length): prompt followed by the sampled tokens.
    """
    from aria.symbolic.tokenize import PAD

    pad = PAD if pad is None else pad
    model.eval()
    gen = torch.Generator().manual_seed(int(random_state))
    x = torch.as_tensor(prompts, dtype=torch.long)
    if x.shape[1] >= length:
        raise ValueError(f"prompt length {x.shape[1]} must be shorter than length {length}")
    while x.shape[1] < length:
        logits = model(x)[:, -1, :] / float(temperature)
        logits[:, pad] = float("-inf")
        if allowed is not None:
            logits[:, ~torch.as_tensor(allowed[x.shape[1]])] = float("-inf")
        if top_k:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen)
        x = torch.cat([x, nxt], dim=1)
    return x.numpy()
