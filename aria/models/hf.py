"""The one offline loader for Hugging Face models (MERT, CLAP, EnCodec).

Nothing is ever downloaded: :func:`load_offline` sets ``HF_HUB_OFFLINE=1`` when
the caller has not chosen, and passes ``local_files_only=True`` to every
``from_pretrained`` call. A missing ``transformers`` package or missing weights
raise a ``RuntimeError`` that names the model, where it was looked for, and how
to put it there.
"""

from __future__ import annotations

import os

__all__ = ["HOWTO", "load_offline", "cache_location"]

HOWTO = (
    "This code never downloads. On a machine with network access run "
    '`huggingface-cli download {model_id}` (or `python -c "from huggingface_hub import '
    "snapshot_download; snapshot_download('{model_id}')\"`), then copy the cache "
    "(~/.cache/huggingface/hub, or the directory named by HF_HOME / HF_HUB_CACHE) to this "
    "machine, or pass cache_dir= pointing at it."
)


def cache_location(cache_dir=None, model_path=None) -> str:
    """Human-readable place the weights are looked up in."""
    if model_path is not None:
        return f"local directory {model_path}"
    where = cache_dir or os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
    return f"the local Hugging Face cache ({where})"


def load_offline(model_id: str, loader, *, cache_dir=None, model_path=None, extra: str = ""):
    """Run ``loader(transformers, source, kwargs)`` with local files only.

    Parameters
    ----------
    model_id : str
        Hub id (used in messages, and as ``source`` unless ``model_path`` is given).
    loader : callable
        ``loader(transformers_module, source, kwargs)``; ``kwargs`` holds
        ``local_files_only=True`` and ``cache_dir`` and must be passed to every
        ``from_pretrained`` call.
    cache_dir, model_path : path or None, keyword-only
        Hugging Face cache directory; or a local model directory.
    extra : str, keyword-only
        Extra pip requirements named in the message when ``transformers`` is absent.

    Raises
    ------
    RuntimeError
        ``transformers`` is not installed, or the weights are not in the cache.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ImportError as exc:
        raise RuntimeError(
            f"Model {model_id!r} needs the Python package `transformers`, which is not installed "
            f"(pip install transformers{extra}). " + HOWTO.format(model_id=model_id)
        ) from exc
    kwargs = {"local_files_only": True, "cache_dir": None if cache_dir is None else str(cache_dir)}
    source = str(model_path) if model_path is not None else model_id
    try:
        return loader(transformers, source, kwargs)
    except Exception as exc:  # missing files surface as OSError/ValueError/EnvironmentError
        raise RuntimeError(
            f"Model {model_id!r} could not be loaded from {cache_location(cache_dir, model_path)}: "
            f"the weights are missing or unreadable (offline, local_files_only=True, nothing is "
            f"downloaded; {type(exc).__name__}: {exc}). " + HOWTO.format(model_id=model_id)
        ) from exc


def mert_hidden_states(model, processor, y, *, sr: int, layer: int | None, chunk_samples: int | None = None):
    """MERT hidden states of a mono waveform at MERT's rate, float32 (T, D).

    ``layer`` picks ``hidden_states[layer]`` (0 = CNN features); ``None`` takes
    the mean over the transformer layers 1..L. ``chunk_samples`` encodes the
    waveform in consecutive chunks of that many samples (None: in one pass).
    The one MERT forward pass of Aria: the semantic tokenizer
    (:class:`aria.audio.tokenizers.MertSemantic`) and the MERT embedding baseline
    (:class:`aria.audio.encoders.HFEncoder`) both call it.
    """
    import numpy as np
    import torch

    step = len(y) if not chunk_samples else int(chunk_samples)
    out = []
    with torch.no_grad():
        for s in range(0, max(len(y), 1), max(step, 1)):
            inputs = processor(y[s : s + step], sampling_rate=int(sr), return_tensors="pt")
            hs = model(**inputs, output_hidden_states=True).hidden_states
            h = torch.stack(hs[1:]).mean(0) if layer is None else hs[layer]
            out.append(h[0].float().cpu().numpy())
    return np.concatenate(out, axis=0).astype(np.float32)
