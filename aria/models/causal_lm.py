"""Hugging Face causal language models (GPT-2, Llama) behind Aria's token-model interface.

:class:`CausalLM` wraps a ``transformers`` ``GPT2LMHeadModel`` or ``LlamaForCausalLM`` so that
every part of Aria that takes its own :class:`~aria.models.transformer.MusicTransformer` takes it
too: ``forward(tokens)`` maps (B, L) int64 token ids to (B, L, V) logits, with
:func:`~aria.models.transformer.per_example_loss` as the loss. Conventions:

- Attention is the eager implementation (no fused kernel): ``torch.func`` gives exact per-example
  gradients through it, and the numbers do not depend on which kernel a machine picks.
- No attention mask is passed: the models are causal and Aria pads at the end of a segment, so a
  real token never attends to padding (the loss masks padded targets).
- No key/value cache (``use_cache=False``); dropout as configured (attribution runs in eval mode).
- Precision: ``transformers`` computes Llama's RMSNorm and the eager attention softmax in float32
  even in a float64 model, so a float64 Llama keeps float32 round-off there (GPT-2 does not);
  unlearning's numerics check (docs/spec.md §8) measures what that leaves in a score.
- The checkpoint contract (:mod:`aria.io.checkpoints`) stores ``model_class`` =
  ``"aria.models.causal_lm:CausalLM"`` and ``config`` = the keywords of the constructor, so a
  trained or adopted model loads like any other.

Module names, which the layer groups of factored gradients (``attention``, ``mlp``) and of
unlearning (``attention``, ``mlp``, ``kv``) match:

- GPT-2: ``lm.transformer.h.<i>.attn.c_attn`` (``Conv1D``, fused queries, keys and values: out =
  3·d), ``attn.c_proj``, ``mlp.c_fc``, ``mlp.c_proj`` (``Conv1D``, weight (in, out)), ``ln_1``,
  ``ln_2``, ``lm.transformer.ln_f``; ``lm.lm_head`` shares its weight with ``lm.transformer.wte``.
- Llama: ``lm.model.layers.<i>.self_attn.{q,k,v,o}_proj``, ``mlp.{gate,up,down}_proj``
  (``nn.Linear`` without bias), ``input_layernorm``, ``post_attention_layernorm`` (RMSNorm),
  ``lm.model.norm``; rotary positions (no parameters).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "CLASS_PATH", "CausalLM", "hf_config", "from_pretrained"]

#: The architectures a model can be built from sizes.
ARCHITECTURES = ("gpt2", "llama")
#: ``model_class`` of a :class:`CausalLM` in the checkpoint contract.
CLASS_PATH = "aria.models.causal_lm:CausalLM"

#: Unlearning's layer groups (regular expressions on parameter names) per architecture, and the
#: axis of a fused query/key/value parameter along which ``kv`` keeps the last two thirds (None:
#: keys and values are modules of their own).
_GROUPS = {
    "gpt2": (
        {
            "all": r".*",
            "attention": r"lm\.transformer\.h\.\d+\.attn\.(c_attn|c_proj)\.",
            "mlp": r"lm\.transformer\.h\.\d+\.mlp\.(c_fc|c_proj)\.",
            "kv": r"lm\.transformer\.h\.\d+\.attn\.c_attn\.",
        },
        -1,  # Conv1D weight (in, 3d) and bias (3d,): queries, keys, values along the last axis
    ),
    "llama": (
        {
            "all": r".*",
            "attention": r"lm\.model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)\.",
            "mlp": r"lm\.model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)\.",
            "kv": r"lm\.model\.layers\.\d+\.self_attn\.(k_proj|v_proj)\.",
        },
        None,
    ),
}


#: Aria's size names (:class:`~aria.models.transformer.ModelConfig`) -> each architecture's config keys
_SIZE_KEYS = {
    "gpt2": {
        "d_model": "n_embd",
        "n_layers": "n_layer",
        "n_heads": "n_head",
        "d_ff": "n_inner",
        "max_len": "n_positions",
    },
    "llama": {
        "d_model": "hidden_size",
        "n_layers": "num_hidden_layers",
        "n_heads": "num_attention_heads",
        "d_ff": "intermediate_size",
        "max_len": "max_position_embeddings",
    },
}
#: each architecture's dropout keys (Llama has attention dropout only)
_DROPOUT_KEYS = {"gpt2": ("resid_pdrop", "embd_pdrop", "attn_pdrop"), "llama": ("attention_dropout",)}


def hf_config(architecture: str, *, vocab_size: int, dropout: float = 0.0, **sizes) -> dict:
    """A Hugging Face config (as a dict, ``config.to_dict()``) of the given sizes.

    Parameters
    ----------
    architecture : {"gpt2", "llama"}
    vocab_size : int
        Number of token ids V.
    dropout : float
        GPT-2's residual, embedding and attention dropout; Llama's attention dropout.
    **sizes : int
        ``d_model``, ``n_layers``, ``n_heads``, ``d_ff``, ``max_len`` (width, blocks, attention heads,
        feed-forward width, longest sequence in tokens), as in
        :class:`~aria.models.transformer.ModelConfig`, whose defaults fill those not given. Llama
        gets as many key/value heads as query heads; neither architecture gets BOS/EOS ids.
    """
    import transformers as tf

    from aria.models.transformer import ModelConfig

    if architecture not in _SIZE_KEYS:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    size = ModelConfig(**sizes, vocab_size=vocab_size).to_dict()
    kw = {hf: size[ours] for ours, hf in _SIZE_KEYS[architecture].items()}
    kw |= {k: dropout for k in _DROPOUT_KEYS[architecture]}
    if architecture == "llama":
        kw["num_key_value_heads"] = size["n_heads"]
    cfg = tf.AutoConfig.for_model(architecture, vocab_size=vocab_size, bos_token_id=None, eos_token_id=None, **kw)
    return cfg.to_dict()


class CausalLM(nn.Module):
    """A GPT-2 or Llama causal LM mapping (B, L) token ids to (B, L, V) logits.

    Parameters
    ----------
    hf_config : dict, keyword-only
        The Hugging Face config (``model_type`` "gpt2" or "llama"), e.g. from :func:`hf_config`
        or a ``save_pretrained`` folder's ``config.json``. The weights are random until loaded
        (:func:`from_pretrained`, or a checkpoint's state).
    """

    def __init__(self, *, hf_config: dict):
        super().__init__()
        import transformers as tf

        kind = hf_config.get("model_type")
        if kind not in _GROUPS:
            raise ValueError(f"CausalLM takes a GPT-2 or Llama config (model_type 'gpt2' or 'llama'), got {kind!r}")
        cfg = tf.AutoConfig.for_model(**{k: v for k, v in hf_config.items() if k != "model_type"}, model_type=kind)
        cfg._attn_implementation = "eager"
        self.lm = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
        self.architecture = kind
        self.layer_groups, self.kv_fused_axis = _GROUPS[kind]
        d = cfg.n_embd if kind == "gpt2" else cfg.hidden_size
        # what MusicTransformer's cfg offers the code that reads it (model_embeddings' width)
        self.cfg = SimpleNamespace(d_model=int(d), vocab_size=int(cfg.vocab_size))

    @property
    def ln_f(self) -> nn.Module:
        """The final norm (GPT-2 ``ln_f``, Llama ``norm``): its output is the model's embedding of a token."""
        return self.lm.transformer.ln_f if self.architecture == "gpt2" else self.lm.model.norm

    @property
    def head(self) -> nn.Module:
        """The output layer (``lm_head``, no bias): logits = head(hidden)."""
        return self.lm.lm_head

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids → (B, L, d_model) final hidden states (after the final norm, before ``head``)."""
        body = self.lm.transformer if self.architecture == "gpt2" else self.lm.model
        return body(input_ids=tokens, use_cache=False).last_hidden_state

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) int64 token ids → (B, L, V) float logits of the next token at each position."""
        return self.lm(input_ids=tokens, use_cache=False).logits

    def config_dict(self) -> dict:
        """The constructor's keywords (the checkpoint contract's ``config``)."""
        return {"hf_config": self.lm.config.to_dict()}


def from_pretrained(path) -> CausalLM:
    """A :class:`CausalLM` with the weights of a ``save_pretrained`` folder, read offline.

    Raises
    ------
    RuntimeError
        Naming the folder, when it is missing or its files do not load (nothing is downloaded).
    """
    from pathlib import Path

    from aria.models.hf import load_offline

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise RuntimeError(
            f"{folder}: no Hugging Face model folder (config.json missing); give the folder that "
            "`model.save_pretrained(folder)` wrote"
        )

    def load(tf, source, kw):
        lm = tf.AutoModelForCausalLM.from_pretrained(source, attn_implementation="eager", **kw)
        model = CausalLM(hf_config=lm.config.to_dict())
        model.lm.load_state_dict(lm.state_dict())
        return model.eval()

    return load_offline(str(folder), load, model_path=folder)
