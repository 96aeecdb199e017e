"""dattri's MAESTRO MusicTransformer behind Aria's token-model interface.

The model of dattri's benchmark ``maestro_musictransformer`` (and of the Aria paper's Table 1) is
``dattri.benchmark.models.MusicTransformer.music_transformer.MusicTransformer``: Huang et al.'s
relative-attention transformer, 6 layers, 8 heads, d = 512, feed-forward 1024, 256 positions,
vocabulary 390 (:mod:`aria.symbolic.tokenize`'s event ids 0..387, END = 388, PAD = 389).
:class:`DattriMusicTransformer` holds that module (as ``mt``, so a benchmark state dict loads
into ``model.mt``) and runs it as Aria's other token models run:

- ``forward(tokens)`` maps (B, L) int64 ids to (B, L, V) logits, position t predicting t + 1. A
  benchmark segment is dattri's ``(x, tgt)`` pair written as one row of L = 257 tokens
  (``x = row[:-1]``, ``tgt = row[1:]``), so the module sees the 256 tokens of ``x`` and the row's
  last position, which predicts nothing, gets zero logits (:func:`~aria.models.transformer.per_example_loss`
  never reads it).
- The causal mask is built on the tokens' device (dattri's own forward builds it on the device
  given at construction).
- Dropout as configured; attribution runs in eval mode, as dattri's benchmark does.

Module names, which the layer groups of factored gradients and of unlearning match:
``mt.transformer.encoder.layers.<i>.self_attn`` (``in_proj_weight`` (3d, d): queries, keys and
values fused along axis 0, not a module; ``out_proj`` (``nn.Linear``); ``Er``, the relative
position embeddings), ``linear1``/``linear2`` (the MLP), ``norm1``/``norm2``,
``mt.transformer.encoder.norm`` (the final norm), ``mt.embedding``, ``mt.Wout`` (the head).
The factored methods (LoGra, FactGraSS) hook ``linear1``, ``linear2`` and ``Wout``: the fused
``in_proj`` is no module, and attention applies ``out_proj``'s weight with ``F.linear`` without
calling the module, so no hook would see it (``functional_linear``; the log names both as skipped).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

__all__ = ["CLASS_PATH", "BENCHMARK_CONFIG", "DattriMusicTransformer"]

#: ``model_class`` of a :class:`DattriMusicTransformer` in the checkpoint contract.
CLASS_PATH = "aria.models.dattri_mt:DattriMusicTransformer"

#: The benchmark's sizes (dattri ``create_musictransformer_model``).
BENCHMARK_CONFIG = dict(
    n_layers=6, num_heads=8, d_model=512, dim_feedforward=1024, max_sequence=256, rpr=True, dropout=0.1
)

#: Unlearning's layer groups (regular expressions on parameter names); the fused ``in_proj``
#: weight keeps its keys and values in the last two thirds of axis 0 (``kv_fused_axis``).
_LAYERS = r"mt\.transformer\.encoder\.layers\.\d+\."
LAYER_GROUPS = {
    "all": r".*",
    "attention": _LAYERS + r"self_attn\.",
    "mlp": _LAYERS + r"linear[12]\.",
    "kv": _LAYERS + r"self_attn\.in_proj_",
}


class DattriMusicTransformer(nn.Module):
    """dattri's benchmark MusicTransformer (see the module docstring).

    Parameters
    ----------
    n_layers, num_heads, d_model, dim_feedforward, max_sequence : int, keyword-only
        dattri's sizes; ``max_sequence`` is the longest input ``x`` (a row holds one token more).
    rpr : bool, keyword-only
        Relative position representations (the benchmark's True).
    dropout : float, keyword-only
    """

    def __init__(
        self,
        *,
        n_layers: int,
        num_heads: int,
        d_model: int,
        dim_feedforward: int,
        max_sequence: int,
        rpr: bool = True,
        dropout: float = 0.1,
    ):
        super().__init__()
        try:
            from dattri.benchmark.models.MusicTransformer.music_transformer import MusicTransformer
            from dattri.benchmark.models.MusicTransformer.utilities.constants import VOCAB_SIZE
        except ImportError as e:  # pragma: no cover - dattri is a dependency of this model
            raise ImportError("the dattri MusicTransformer needs the package dattri (pip install dattri==0.3.0)") from e
        self._config = dict(
            n_layers=int(n_layers),
            num_heads=int(num_heads),
            d_model=int(d_model),
            dim_feedforward=int(dim_feedforward),
            max_sequence=int(max_sequence),
            rpr=bool(rpr),
            dropout=float(dropout),
        )
        self.mt = MusicTransformer(device="cpu", **self._config)
        self.layer_groups, self.kv_fused_axis = LAYER_GROUPS, 0
        # attention calls F.linear on out_proj's weight: no forward hook of its module ever runs
        self.functional_linear = r"\.self_attn\.out_proj$"
        self.cfg = SimpleNamespace(d_model=int(d_model), vocab_size=int(VOCAB_SIZE), max_len=int(max_sequence) + 1)

    @property
    def ln_f(self) -> nn.Module:
        """The final norm (its output is :meth:`hidden`)."""
        return self.mt.transformer.encoder.norm

    @property
    def head(self) -> nn.Module:
        """The output layer ``Wout``."""
        return self.mt.Wout

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states, float (B, L, d); the row's last position (no input) is zeros."""
        x = tokens[:, :-1]
        n = x.shape[1]
        if n > self._config["max_sequence"]:
            raise ValueError(f"rows of {n + 1} tokens; this model takes at most {self._config['max_sequence'] + 1}")
        mask = torch.triu(torch.full((n, n), float("-inf"), device=tokens.device), diagonal=1)
        h = self.mt.positional_encoding(self.mt.embedding(x).permute(1, 0, 2))
        h = self.mt.transformer.encoder(h, mask=mask).permute(1, 0, 2)
        return torch.cat([h, h.new_zeros(h.shape[0], 1, h.shape[2])], dim=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) int64 token ids → (B, L, V) next-token logits (the last position: zeros)."""
        logits = self.head(self.hidden(tokens)[:, :-1])
        return torch.cat([logits, logits.new_zeros(logits.shape[0], 1, logits.shape[2])], dim=1)

    def config_dict(self) -> dict:
        """The constructor's keywords (the checkpoint contract's ``config``)."""
        return dict(self._config)
