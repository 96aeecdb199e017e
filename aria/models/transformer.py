"""A small MusicTransformer-style decoder and its per-example loss.

The model is written without fused attention kernels so that ``torch.func``
transforms (``vmap`` over ``grad``) give exact per-example gradients; passes that
need no such transform may switch to the fused kernel (:func:`fused_attention`).

Shapes: ``tokens`` (B, L) int64, ``mask`` (B, L) bool, True where a token is
real. The loss of one example is the mean next-token cross-entropy over target
positions t = 1..L-1 whose target token is real and, when a ``loss_mask`` is
given, selected by it (queries use it to score only the generated part). Which
tokens are real is said by ``mask`` alone, so the same code serves vocabularies
whose PAD id differs (symbolic: ``aria.symbolic.tokenize.PAD``; audio:
``aria.audio.stages.AudioVocab.pad``).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from aria.symbolic.tokenize import VOCAB_SIZE

__all__ = ["ModelConfig", "MusicTransformer", "per_example_loss", "batch_loss", "fused_attention"]


@dataclass(frozen=True)
class ModelConfig:
    """Size of a :class:`MusicTransformer`.

    Attributes
    ----------
    d_model : int
        Width of the token embeddings and hidden states.
    n_layers : int
        Number of transformer blocks.
    n_heads : int
        Attention heads per block (``d_model`` must be divisible by it).
    d_ff : int
        Hidden width of each block's feed-forward layer.
    max_len : int
        Longest sequence ``L`` in tokens (size of the learned position embedding).
    vocab_size : int
        Number of token ids ``V`` (default: the symbolic vocabulary,
        ``aria.symbolic.tokenize.VOCAB_SIZE``).
    """

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    max_len: int = 256
    vocab_size: int = VOCAB_SIZE

    def to_dict(self) -> dict:
        """The fields as a plain dict (``ModelConfig(**d)`` rebuilds it)."""
        return asdict(self)


class _Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.ff2 = nn.Linear(cfg.d_ff, cfg.d_model)
        self.fused = False  # see fused_attention()

    def forward(self, x):
        B, L, D = x.shape
        h = self.n_heads
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q = q.reshape(B, L, h, D // h).transpose(1, 2)
        k = k.reshape(B, L, h, D // h).transpose(1, 2)
        v = v.reshape(B, L, h, D // h).transpose(1, 2)
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-1, -2)) / math.sqrt(D // h)
            causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
            y = att @ v
        y = y.transpose(1, 2).reshape(B, L, D)
        x = x + self.proj(y)
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class MusicTransformer(nn.Module):
    """Decoder-only transformer over performance-event tokens.

    ``forward(tokens)`` maps (B, L) token ids to (B, L, vocab) logits.
    """

    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList([_Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)

    def hidden(self, tokens):
        """(B, L) token ids → (B, L, d_model) final hidden states (after ``ln_f``, before ``head``)."""
        L = tokens.shape[-1]
        x = self.embed(tokens) + self.pos(torch.arange(L, device=tokens.device))
        for blk in self.blocks:
            x = blk(x)
        return self.ln_f(x)

    def forward(self, tokens):
        """(B, L) int64 token ids → (B, L, vocab_size) float logits of the next token at each position."""
        return self.head(self.hidden(tokens))


@contextmanager
def fused_attention(model: nn.Module, on: bool = True):
    """Within the block, attention uses PyTorch's fused causal kernel
    (``scaled_dot_product_attention``), several times faster on CPU at L = 256, equal to the
    explicit softmax up to float32 round-off (tests/models). Training and the gradient projections
    keep the explicit form (their stored results stay bit-identical); the unlearning passes, which
    run many full forward passes over the training set, use this.
    """
    blocks = [m for m in model.modules() if isinstance(m, _Block)]
    old = [b.fused for b in blocks]
    for b in blocks:
        b.fused = on
    try:
        yield model
    finally:
        for b, o in zip(blocks, old):
            b.fused = o


def _target_weights(mask, loss_mask):
    w = mask[..., 1:]
    if loss_mask is not None:
        w = w & loss_mask[..., 1:]
    return w.to(torch.float32)


def per_example_loss(logits, tokens, mask, loss_mask=None):
    """Mean next-token cross-entropy per example.

    Parameters
    ----------
    logits : float tensor, shape (B, L, V)
        Next-token logits (position t predicts token t + 1).
    tokens : int64 tensor, shape (B, L)
    mask : bool tensor, shape (B, L)
        True at real tokens.
    loss_mask : bool tensor, shape (B, L), optional
        Target positions scored (default: every real one).

    Returns
    -------
    loss : float tensor, shape (B,)
        In nats per target token. An example with no target position has loss 0.
    """
    ce = F.cross_entropy(logits[..., :-1, :].transpose(-1, -2), tokens[..., 1:], reduction="none")
    w = _target_weights(mask, loss_mask)
    return (ce * w).sum(-1) / w.sum(-1).clamp(min=1.0)


def target_example_loss(model, tokens, mask, loss_mask=None, *, dtype=None):
    """:func:`per_example_loss` of ``model(tokens)``, with the output layer and the softmax
    evaluated only at the target positions (equal up to float32 round-off; differentiable).
    ``dtype`` (e.g. ``torch.float64``) evaluates the output layer, the softmax and the averages in
    that format, the hidden states staying in the model's own.

    About 1.7× faster than the full logits on CPU (no (B, L, V) tensor, no transposed copy, no
    work on padding or, in a staged audio model, on the conditioning block); the unlearning
    passes use it. ``model`` needs ``hidden`` and ``head`` (:class:`MusicTransformer`).
    """
    w = _target_weights(mask, loss_mask)
    sel = w > 0
    h = model.hidden(tokens)[..., :-1, :][sel]
    if dtype is None:
        logits = model.head(h)
    else:
        head = model.head
        logits = F.linear(h.to(dtype), head.weight.to(dtype), None if head.bias is None else head.bias.to(dtype))
    target = tokens[..., 1:][sel]
    ce = torch.logsumexp(logits, -1) - logits.gather(-1, target[:, None])[:, 0]
    total = torch.zeros(tokens.shape[0], dtype=ce.dtype, device=ce.device).index_add(0, sel.nonzero()[:, 0], ce)
    return total / w.sum(-1).clamp(min=1.0)


def batch_loss(model, tokens, mask, loss_mask=None):
    """Mean of :func:`per_example_loss` over the batch (the training objective)."""
    return per_example_loss(model(tokens), tokens, mask, loss_mask).mean()
