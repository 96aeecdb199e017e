"""Model jobs: training the demo model and the LDS retrainings (docs/spec.md §9).

The job contract (argument dataclasses, registration, the generated command line): :mod:`.base`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from aria.io.checkpoints import load_model, write_checkpoint
from aria.workflow.jobs.base import SettingsArgs, job, torch_setup
from aria.workflow.jobs.settings import UNSET, Settings

log = logging.getLogger("aria")


def _model_cfg(p, data=None):
    """The sizes of a model to train; the vocabulary: an audio stage's ``vocab_size``, else the
    tokenizer's of the segments file ``data`` (Aria's vocabulary by default).
    """
    from aria.models.transformer import ModelConfig
    from aria.symbolic.tokenize import VOCAB_SIZE, data_tokenizer

    return ModelConfig(
        **{k: p[k] for k in ("d_model", "n_layers", "n_heads", "d_ff")},
        max_len=p["block_tokens"],
        vocab_size=p.get("vocab_size", VOCAB_SIZE if data is None else data_tokenizer(data).vocab_size),
    )


class TrainSettings(Settings):
    pretrained: str = UNSET  # the user's checkpoint of this member (then nothing else)
    seed: int = UNSET
    n_checkpoints: int = UNSET
    block_tokens: int = UNSET
    d_model: int = UNSET
    n_layers: int = UNSET
    n_heads: int = UNSET
    d_ff: int = UNSET
    epochs: int = UNSET
    batch_size: int = UNSET
    lr: float = UNSET
    checkpoints: int = UNSET
    vocab_size: int = UNSET  # an audio stage's vocabulary
    architecture: str = UNSET  # aria (default) | gpt2 | llama (aria.models.build)


class TrainArgs(SettingsArgs):
    segments: str


@job("train")
def train(a: TrainArgs, p: TrainSettings) -> None:
    """Train one model of the ensemble (member ``seed``) and save its checkpoints."""
    import torch

    from aria.io.tables import load_torch, read_npz, save_torch
    from aria.models.training import train_model

    torch_setup(a.threads)
    if p.get("pretrained"):
        # bring-your-own checkpoint: check that it loads and scores the stage's sequences, then adopt it
        src = Path(p["pretrained"])
        if src.is_dir():  # a Hugging Face save_pretrained folder (model.path), read offline
            from aria.models.causal_lm import CLASS_PATH, from_pretrained

            model = from_pretrained(src)
            state = model.state_dict()
            blob = dict(config=model.config_dict(), model_class=CLASS_PATH, source=str(src))
            blob.update(checkpoints=[dict(epoch=0, lr=1.0, state=state)], final=state)
        else:
            model, _ = load_model(src)
            blob = None
        data = read_npz(a.segments)
        top = int(data["tokens"].max())
        vocab = getattr(getattr(model, "cfg", None), "vocab_size", None)  # known without a forward pass
        if vocab is None or vocab > top:
            with torch.no_grad():
                vocab = model(torch.as_tensor(data["tokens"][:2])).shape[-1]
        if vocab <= top:
            raise ValueError(
                f"{p['pretrained']}: model vocabulary ({vocab}) is smaller than the stage's token ids (max {top})"
            )
        if blob is None:
            save_torch(a.out, load_torch(src))
        else:  # one saved state: TracIn reads it as its only checkpoint, learning rate 1
            write_checkpoint(a.out, **blob)
        log.info("adopted pretrained %s %s", "folder" if blob else "checkpoint", src)
        return
    data = read_npz(a.segments)
    cfg = _model_cfg(p, data)
    res = train_model(
        data["tokens"],
        data["mask"],
        loss_mask=data.get("loss_mask"),
        cfg=cfg,
        epochs=p["epochs"],
        lr=p["lr"],
        batch_size=p["batch_size"],
        n_checkpoints=p["n_checkpoints"],
        random_state=p["seed"],
        progress=True,
        desc=Path(a.out).stem,
        architecture=p.get("architecture", "aria"),
    )
    log.info("training loss per epoch: %s", ", ".join(f"{x:.3f}" for x in res["losses"]))
    write_checkpoint(
        a.out,
        **res["model"],
        seed=p["seed"],
        losses=res["losses"],
        checkpoints=res["checkpoints"],
        final=res["final"],
    )


class LdsRetrainSettings(Settings):
    subset: int
    alpha: float
    seed: int
    runs: int
    recipe: str
    init: str = UNSET
    base_seed: int
    member_seed: int
    model: dict


class LdsRetrainArgs(SettingsArgs):
    segments: str
    queries: str


@job("lds-retrain")
def lds_retrain(a: LdsRetrainArgs, p: LdsRetrainSettings) -> None:
    """Retrain on one random subset of a stage's training segments; targets f_q = -loss (docs/spec.md §9).

    Run r of subset m trains with seed ``base_seed + m * runs + r`` (:func:`retrain_seeds`).
    Recipe ``steps``: every run takes as many optimizer steps as ensemble member 0 took on all
    N segments (``epochs * ceil(N / batch_size)``, the same learning-rate schedule length);
    ``epochs``: ``epochs`` passes over the subset (about alpha times the steps). Init ``shared``:
    every run starts from member 0's initial weights (seed ``member_seed``) and its own seed
    draws the data order; ``fresh``: its own seed draws the initial weights too.
    """
    import math

    from aria.evaluation.lds import counterfactual_targets, retrain_seeds, subset_mask
    from aria.io.tables import read_npz, write_npz

    torch_setup(a.threads)
    tr, qu = read_npz(a.segments), read_npz(a.queries)
    keep = subset_mask(len(tr["tokens"]), p["subset"], alpha=p["alpha"], random_state=p["seed"])
    recipe, model = p["recipe"], p["model"]
    if recipe not in ("steps", "epochs"):
        raise ValueError(f"lds.recipe must be 'steps' or 'epochs', got {recipe!r}")
    total_steps = model["epochs"] * math.ceil(len(keep) / model["batch_size"]) if recipe == "steps" else None
    seeds = retrain_seeds(p["base_seed"], p["subset"], p["runs"])
    init = p.get("init", "fresh")
    if init not in ("shared", "fresh"):
        raise ValueError(f"lds.init must be 'shared' or 'fresh', got {init!r}")
    t0 = time.perf_counter()
    res = counterfactual_targets(
        tr,
        qu,
        keep,
        model_cfg=_model_cfg(model, tr),
        seeds=seeds,
        **{k: model[k] for k in ("epochs", "lr", "batch_size")},  # the training recipe
        progress=True,
        total_steps=total_steps,
        init_state=p["member_seed"] if init == "shared" else None,
        architecture=model.get("architecture", "aria"),
    )
    log.info(
        "subset %d: %d of %d segments; recipe %s, init %s, seeds %s, steps %s; train loss %s, held-out loss %s; %.1f s",
        p["subset"],
        keep.sum(),
        len(keep),
        recipe,
        init,
        seeds,
        res["steps"].tolist(),
        np.round(res["train_loss"], 3).tolist(),
        np.round(res["heldout_loss"], 3).tolist(),
        time.perf_counter() - t0,
    )
    write_npz(a.out, mask=keep, segment_ids=tr["segment_ids"], query_ids=qu["query_ids"], **res)
