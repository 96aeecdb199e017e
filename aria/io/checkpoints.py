"""The model checkpoint contract (one ``.pt`` file per trained or adopted model).

Layout (a dict saved with ``torch.save``)::

    config        dict    constructor keywords of the model class
    checkpoints   list    one dict per saved TracIn checkpoint c = 1..C:
                          {"epoch": int, "lr": float (eta_c), "state": state_dict}
    final         dict    state_dict of the trained model
    model_class   str     optional "module:Class" of your own stage model, built as
                          Class(**config); default Aria's MusicTransformer
    seed, losses          optional, written by ``aria train``

docs/audio.md, "Stage-model adapter", says how to bring your own checkpoints.
"""

from __future__ import annotations

import importlib

from aria.io.tables import load_torch, save_torch

__all__ = ["CHECKPOINT_KEYS", "model_class", "load_model", "read_checkpoint", "write_checkpoint"]

CHECKPOINT_KEYS = ("config", "checkpoints", "final")


def model_class(blob: dict):
    """The model constructor of a checkpoint: ``blob["model_class"]`` or Aria's MusicTransformer."""
    name = blob.get("model_class")
    if not name:
        from aria.models.transformer import ModelConfig, MusicTransformer

        return lambda **cfg: MusicTransformer(ModelConfig(**cfg))
    module, _, cls = name.partition(":")
    return getattr(importlib.import_module(module), cls)


def read_checkpoint(path) -> dict:
    """The checkpoint dict, checked for the contract's keys (ValueError naming the file)."""
    blob = load_torch(path)
    missing = [k for k in CHECKPOINT_KEYS if k not in blob]
    if missing:
        raise ValueError(
            f"{path}: not an Aria model checkpoint (missing {missing}); see docs/audio.md 'Stage-model adapter'"
        )
    return blob


def load_model(path, checkpoint: int | None = None):
    """``(model, lr)``: the model with the final weights (``checkpoint=None``) or those of
    TracIn checkpoint ``checkpoint`` (1-based), and that checkpoint's learning rate.
    """
    blob = read_checkpoint(path)
    try:
        model = model_class(blob)(**blob["config"])
    except (ImportError, AttributeError, TypeError) as e:
        raise ValueError(
            f"{path}: cannot build the model this checkpoint names ({blob.get('model_class') or 'MusicTransformer'} "
            f"with config {blob['config']}): {type(e).__name__}: {e}"
        ) from e
    if checkpoint is None:
        state, lr = blob["final"], blob["checkpoints"][-1]["lr"]
    else:
        if not 1 <= checkpoint <= len(blob["checkpoints"]):
            raise ValueError(f"{path}: checkpoint {checkpoint} not in 1..{len(blob['checkpoints'])}")
        ck = blob["checkpoints"][checkpoint - 1]
        state, lr = ck["state"], ck["lr"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # torch lists every mismatch; the first lines say enough
        detail = " ".join(str(e).split("\n")[:3]).strip()
        raise ValueError(
            f"{path}: the weights do not fit the architecture of its config {blob['config']} "
            f"(a checkpoint of another model?): {detail[:400]}"
        ) from e
    return model, lr


def write_checkpoint(path, *, config: dict, checkpoints: list[dict], final: dict, **extra) -> None:
    """Save a checkpoint in the contract's layout, atomically."""
    save_torch(
        path,
        {
            "config": config,
            **extra,
            "checkpoints": [{k: c[k] for k in ("epoch", "lr", "state")} for c in checkpoints],
            "final": final,
        },
    )
