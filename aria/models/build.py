"""One constructor for every model Aria trains: its own MusicTransformer or a Hugging Face causal LM.

``architecture`` (config ``model.architecture``) is ``"aria"`` (:class:`~aria.models.transformer.MusicTransformer`,
the default), ``"gpt2"`` or ``"llama"`` (:class:`~aria.models.causal_lm.CausalLM` of the same sizes). The
sizes are a :class:`~aria.models.transformer.ModelConfig` either way; training, the LDS retrainings and
the checkpoint contract go through :func:`build_model` and :func:`checkpoint_fields`, so every
architecture is trained by the same recipe and loads the same way.
"""

from __future__ import annotations

from torch import nn

from aria.models.transformer import ModelConfig, MusicTransformer

__all__ = ["ARCHITECTURES", "build_model", "checkpoint_fields"]

#: The architectures a model can be trained as.
ARCHITECTURES = ("aria", "gpt2", "llama")


def build_model(cfg: ModelConfig, architecture: str = "aria") -> nn.Module:
    """A freshly initialised model of the sizes ``cfg`` (weights from torch's global generator).

    Parameters
    ----------
    cfg : ModelConfig
        Width, blocks, heads, feed-forward width, longest sequence (``max_len``) and vocabulary.
    architecture : {"aria", "gpt2", "llama"}
    """
    if architecture == "aria":
        return MusicTransformer(cfg)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"model.architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    from aria.models.causal_lm import CausalLM, hf_config

    sizes = {k: v for k, v in cfg.to_dict().items() if k != "vocab_size"}
    return CausalLM(hf_config=hf_config(architecture, vocab_size=cfg.vocab_size, **sizes))


def checkpoint_fields(model: nn.Module) -> dict:
    """``config`` (and ``model_class`` for a model other than Aria's): the checkpoint contract's
    description of ``model`` (:mod:`aria.io.checkpoints`), from which :func:`~aria.io.checkpoints.load_model`
    builds it again.
    """
    if isinstance(model, MusicTransformer):
        return {"config": model.cfg.to_dict()}
    from aria.models.causal_lm import CLASS_PATH, CausalLM

    if isinstance(model, CausalLM):
        return {"config": model.config_dict(), "model_class": CLASS_PATH}
    from aria.models import dattri_mt

    if isinstance(model, dattri_mt.DattriMusicTransformer):
        return {"config": model.config_dict(), "model_class": dattri_mt.CLASS_PATH}
    raise TypeError(f"no checkpoint description for a {type(model).__name__}")
