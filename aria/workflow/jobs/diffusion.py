"""Diffusion jobs: the latent DiT experiment (the unlearning paper's own setting; docs/methods.md).

Training clips and prompts from the audio experiment's corpus (``diffusion-latents``), the DiT
(``diffusion-train``), its generations from the prompts as queries (``diffusion-queries``), the
timestep-averaged Fisher (``diffusion-fisher``), unlearning scores per chunk of queries
(``diffusion-unlearning``, merged by ``aria unlearning-merge``), projected v-loss gradients for
Grad-Cos (``diffusion-gradients``, scored by ``aria score``), audio-encoder embeddings of clips and
queries (``diffusion-embed``), the embedding baselines (``diffusion-baselines``) and the
self-influence grid (``diffusion-selfinfluence``). The comparison and the report reuse
``aria unlearning-compare`` and ``aria diffusion-report``.

Item arrays (the ``.npz`` files these jobs pass on), over N clips or Q queries:
``x0`` float32 (N, C, F) latents zero-padded to F = ``max_frames``; ``mask`` bool (N, F), True on real
frames; ``text`` float (N, S, D) and ``text_mask`` bool (N, S), the encoded caption;
``seconds_start`` (the clip's offset in its track) and ``seconds_total`` (its length), seconds;
``ids`` (item ids: the track id of a training clip, ``q<j>_<track>`` of a query); ``captions``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from aria.runtime import progress
from aria.workflow.jobs.attribution import SelfinfluencePointSettings
from aria.workflow.jobs.base import JobArgs, SettingsArgs, arg, job, opt, torch_setup
from aria.workflow.jobs.settings import UNSET, Settings

log = logging.getLogger("aria")

#: the conditioning of an item (a prompt has only these), then its latents and frame mask
COND_KEYS = ("text", "text_mask", "seconds_start", "seconds_total")
ITEM_KEYS = ("x0", "mask", *COND_KEYS)


def _codec(path):
    """The latent representation a ``diffusion-latents`` job fitted (``codec.npz``)."""
    from aria.audio.latents import FrameDCT, OobleckCodec
    from aria.io.tables import read_npz

    c = read_npz(path)
    if str(c.get("kind", "dct")) == "oobleck":
        return OobleckCodec(path=str(c["path"]))
    return FrameDCT(frame=int(c["frame"]), sr=int(c["sr"]), scale=c["scale"])


def _items(path) -> dict:
    """The item arrays of a ``diffusion-latents`` / ``diffusion-queries`` file, checked for their keys."""
    from aria.io.tables import read_npz

    d = read_npz(path)
    missing = [k for k in (*ITEM_KEYS, "ids") if k not in d]
    if missing:
        raise ValueError(f"{path}: not a diffusion item file (missing {missing}); rerun aria diffusion-latents")
    return d


def _model(path, precision: str = "float32"):
    """The DiT of a checkpoint, on the CPU, in eval mode, in ``precision``."""
    from aria.attribution.unlearning import at_precision
    from aria.io.checkpoints import load_model

    model, _ = load_model(path)
    return at_precision(model.eval(), precision)


def _fisher(path, model):
    """The cached Fisher of ``path``, checked against ``model``'s trainable parameters."""
    from aria.io.tables import load_torch

    F = load_torch(path)["fisher"]
    shapes = {n: tuple(q.shape) for n, q in model.named_parameters() if q.requires_grad}
    bad = [n for n in shapes if n not in F or tuple(F[n].shape) != shapes[n]]
    if bad:
        raise ValueError(f"{path}: no Fisher entry of the right shape for {len(bad)} parameters, e.g. {bad[:3]}")
    dtype = next(model.parameters()).dtype
    return {n: F[n].to(dtype) for n in shapes}


# --------------------------------------------------------------------------------------------- data
class DiffusionLatentsSettings(Settings):
    latents: dict
    min_s: float
    max_s: float
    n_train: int
    n_prompts: int
    text: dict
    seed: int
    root: str | None = UNSET


class DiffusionLatentsArgs(SettingsArgs):
    manifest: str
    out_prompts: str
    out_codec: str


def _describe(meta, y, sr) -> str:
    from aria.audio.text import caption, estimate_key, estimate_tempo, instrument_family

    return caption(
        {
            "genre": str(meta.get("genre", "")).replace("_", " "),
            "instrument": instrument_family(meta["programs"]) if "programs" in meta else "",
            "tempo": estimate_tempo(y, sr),
            "key": estimate_key(y, sr),
        }
    )


@job("diffusion-latents")
def diffusion_latents(a: DiffusionLatentsArgs, p: DiffusionLatentsSettings) -> None:
    """Training clips (seeded variable-length crops of the training tracks, as latents padded to the
    longest clip, with their padding mask and captions) and prompts (captions and lengths of held-out
    tracks) of the diffusion experiment.
    """
    from aria.audio.latents import clip_plan, get_codec, pad_latents
    from aria.audio.text import get_text_encoder
    from aria.io.audio import load_audio
    from aria.io.tables import read_manifest, write_npz

    man = read_manifest(a.manifest, root=p.get("root"))
    rng = np.random.default_rng(p["seed"])
    codec = get_codec(**p["latents"])
    sr = codec.sr
    fps = codec.frames_per_second
    max_frames = int(np.ceil(p["max_s"] * fps))

    def pick(split, n):
        rows = man[man["split"] == split]
        if n and n < len(rows):
            rows = rows.iloc[np.sort(rng.choice(len(rows), n, replace=False))]
        if rows.empty:
            raise ValueError(f"{a.manifest}: no {split} track for the diffusion experiment")
        return rows

    sets = {}
    for name, split, n in (("train", "train", p["n_train"]), ("prompts", "eval", p["n_prompts"])):
        rows = pick(split, n)
        waves = [load_audio(f, sr=sr) for f in progress(list(rows["abspath"]), desc=f"load {name}", unit="file")]
        start, length = clip_plan(
            [len(y) / sr for y in waves],
            min_s=p["min_s"],
            max_s=p["max_s"],
            frames_per_second=fps,
            random_state=[p["seed"], len(sets)],
        )
        clips = [y[int(round(s * sr)) :][: int(round(n_s * sr))] for y, s, n_s in zip(waves, start, length)]
        captions = [_describe(m, c, sr) for (_, m), c in zip(rows.iterrows(), clips)]
        sets[name] = dict(rows=rows, clips=clips, start=start, length=length, captions=captions)
    codec.fit(sets["train"]["clips"])
    enc = get_text_encoder(**p["text"])
    tr = sets["train"]
    x0, mask = pad_latents([codec.encode(c) for c in tr["clips"]], max_frames)
    text, text_mask = enc(tr["captions"])
    write_npz(
        a.out,
        x0=x0,
        mask=mask,
        text=text.astype(np.float32),
        text_mask=text_mask,
        seconds_start=tr["start"],
        seconds_total=tr["length"],
        ids=tr["rows"]["track_id"].to_numpy().astype(str),
        captions=np.asarray(tr["captions"]),
    )
    pr = sets["prompts"]
    ptext, pmask = enc(pr["captions"])
    write_npz(
        a.out_prompts,
        text=ptext.astype(np.float32),
        text_mask=pmask,
        seconds_start=np.zeros(len(pr["length"])),
        seconds_total=pr["length"],
        ids=pr["rows"]["track_id"].to_numpy().astype(str),
        captions=np.asarray(pr["captions"]),
    )
    if p["latents"].get("kind", "dct") == "oobleck":
        write_npz(a.out_codec, kind=np.array("oobleck"), path=np.array(codec.path))
    else:
        write_npz(a.out_codec, kind=np.array("dct"), frame=np.array(codec.frame), sr=np.array(sr), scale=codec.scale)
    log.info(
        "%d training clips (%.1f-%.1f s, padded to %d frames, %.0f%% padding), %d prompts; e.g. %r",
        len(x0), tr["length"].min(), tr["length"].max(), max_frames, 100 * (1 - mask.mean()), len(pr["captions"]),
        tr["captions"][0],
    )  # fmt: skip


# ----------------------------------------------------------------------------------------- the DiT
class DiffusionTrainSettings(Settings):
    pretrained: str = UNSET  # a Stable Audio transformer folder: adopted, not trained
    sizes: dict
    steps: int
    batch_size: int
    lr: float
    n_timesteps: int
    seed: int


class DiffusionTrainArgs(SettingsArgs):
    data: str


@job("diffusion-train")
def diffusion_train(a: DiffusionTrainArgs, p: DiffusionTrainSettings) -> None:
    """Train the latent DiT on the clips with the v-objective, unmasked as Stable Audio trains."""
    from aria.io.checkpoints import write_checkpoint
    from aria.models.diffusion import train_latent_dit

    torch_setup(a.threads)
    data = _items(a.data)
    sizes = {**p["sizes"], "latent_channels": int(data["x0"].shape[1]), "max_frames": int(data["x0"].shape[2])}
    sizes["text_dim"] = int(data["text"].shape[2])
    if p.get("pretrained"):
        _adopt(a, p, data)
        return
    t0 = time.perf_counter()
    recipe = {k: p[k] for k in ("steps", "batch_size", "lr", "n_timesteps")}
    res = train_latent_dit(data, sizes=sizes, random_state=p["seed"], progress=True, **recipe)
    L = res["losses"]
    k = max(1, len(L) // 10)
    log.info(
        "trained %d steps in %.1f s: v-loss %.4f (first %d steps) -> %.4f (last %d)",
        len(L), time.perf_counter() - t0, np.mean(L[:k]), k, np.mean(L[-k:]), k,
    )  # fmt: skip
    state = {n: t.detach().clone() for n, t in res["model"].state_dict().items()}
    write_checkpoint(
        a.out,
        config=res["config"],
        checkpoints=[{"epoch": int(p["steps"]), "lr": float(p["lr"]), "state": state}],
        final=state,
        model_class="aria.models.diffusion:LatentDiT",
        seed=int(p["seed"]),
        losses=L,
    )


def _adopt(a, p, data) -> None:
    """Write a user's Stable-Audio-style transformer (and projection model) as the experiment's checkpoint."""
    from aria.io.checkpoints import write_checkpoint
    from aria.models.diffusion import from_pretrained

    keep = {k: p["sizes"][k] for k in ("max_seconds",) if k in p["sizes"]}
    model = from_pretrained(p["pretrained"], text_dim=int(data["text"].shape[2]), **keep)
    if model.config["latent_channels"] != data["x0"].shape[1]:
        raise ValueError(
            f"{p['pretrained']}: the transformer takes {model.config['latent_channels']}-channel latents, the clips "
            f"have {data['x0'].shape[1]} (set diffusion.latents to the checkpoint's VAE: kind oobleck, path ...)"
        )
    state = {n: t.detach().clone() for n, t in model.state_dict().items()}
    write_checkpoint(
        a.out,
        config=model.config,
        checkpoints=[{"epoch": 0, "lr": 1.0, "state": state}],
        final=state,
        model_class="aria.models.diffusion:LatentDiT",
        pretrained=str(p["pretrained"]),
    )
    log.info("adopted the pretrained transformer of %s", p["pretrained"])


class DiffusionQueriesSettings(Settings):
    steps: int
    seed: int


class DiffusionQueriesArgs(SettingsArgs):
    model: str
    prompts: str
    codec: str
    out_audio: str


def _generate(model, cond: dict, *, steps: int, generator, frames: int | None = None) -> np.ndarray:
    """Latents (B, C, F) float64 generated from the conditioning arrays ``cond``."""
    import torch

    from aria.models.diffusion import sample

    dtype = next(model.parameters()).dtype
    c = {
        "text": torch.as_tensor(np.asarray(cond["text"]), dtype=dtype),
        "text_mask": torch.as_tensor(np.asarray(cond["text_mask"], dtype=bool)),
        "seconds_start": torch.as_tensor(np.asarray(cond["seconds_start"]), dtype=dtype),
        "seconds_total": torch.as_tensor(np.asarray(cond["seconds_total"]), dtype=dtype),
    }
    return sample(model, c, steps=steps, generator=generator, frames=frames).double().numpy()


@job("diffusion-queries")
def diffusion_queries(a: DiffusionQueriesArgs, p: DiffusionQueriesSettings) -> None:
    """One generation per prompt (seeded per prompt), as query items and as audio (``<id>.wav``)."""
    from aria.attribution.unlearning import example_generator
    from aria.io.stores import atomic_dir
    from aria.io.tables import read_npz, write_npz

    torch_setup(a.threads)
    model = _model(a.model)
    codec = _codec(a.codec)
    pr = read_npz(a.prompts)
    F = int(model.config["max_frames"])
    fps = codec.frames_per_second
    frames = np.minimum(np.ceil(np.asarray(pr["seconds_total"]) * fps - 1e-9).astype(int), F)
    ids = np.asarray([f"q{j:03d}_{t}" for j, t in enumerate(pr["ids"])])
    x0 = np.zeros((len(ids), int(model.config["latent_channels"]), F), np.float32)
    mask = np.arange(F)[None, :] < frames[:, None]
    n_samples = np.round(np.asarray(pr["seconds_total"]) * codec.sr).astype(int)
    with atomic_dir(a.out_audio) as tmp:
        for j in progress(range(len(ids)), desc="generate", unit="query"):
            one = {k: pr[k][j : j + 1] for k in COND_KEYS}
            z = _generate(model, one, steps=p["steps"], generator=example_generator(p["seed"], f"query:{ids[j]}"))[0]
            z[:, frames[j] :] = 0.0  # past the asked length: the padding the prompt asked for
            x0[j] = z
            _write_item_wav(Path(tmp) / f"{ids[j]}.wav", codec.decode(z[:, : frames[j]], n_samples[j]), codec.sr)
    cond = {k: pr[k] for k in (*COND_KEYS, "captions")}  # the prompt's, as it was given
    # track_ids: the held-out track each prompt was made from (its genre, for the confounds and cards)
    write_npz(a.out, x0=x0, mask=mask, ids=ids, query_ids=ids, track_ids=np.asarray(pr["ids"]).astype(str), **cond)
    log.info("%d queries generated (%d DDIM steps each)", len(ids), p["steps"])


# ------------------------------------------------------------------------------------- attribution
class DiffusionFisherSettings(Settings):
    mask: str
    timesteps: int
    seed: int


class DiffusionFisherArgs(SettingsArgs):
    model: str
    data: str


@job("diffusion-fisher")
def diffusion_fisher(a: DiffusionFisherArgs, p: DiffusionFisherSettings) -> None:
    """The diagonal Fisher averaged over training clips and T draws of (t, ε) (docs/spec.md §8)."""
    from aria.attribution.unlearning import diagonal_fisher, mask_sides
    from aria.io.tables import save_torch
    from aria.models.diffusion import VLoss, latent_batches

    torch_setup(a.threads)
    model = _model(a.model)
    data = _items(a.data)
    _, use_l = mask_sides(p["mask"])
    batches = latent_batches(data, ids=data["ids"], use_mask=use_l, batch_size=8)
    t0 = time.perf_counter()
    F = diagonal_fisher(model, progress(batches, desc="fisher", unit="batch"), VLoss(p["timesteps"]), seed=p["seed"])
    log.info("Fisher over %d clips x %d draws in %.1f s", len(data["ids"]), p["timesteps"], time.perf_counter() - t0)
    save_torch(a.out, {"fisher": {n: f.cpu() for n, f in F.items()}, "n": len(data["ids"]), "mask": p["mask"]})


class DiffusionUnlearningSettings(Settings):
    lr: float
    steps: int
    group: str
    floor: float
    mask: str
    timesteps: int
    precision: str
    check: int
    seed: int
    n_chunks: int
    chunk: int


class DiffusionUnlearningArgs(SettingsArgs):
    model: str
    data: str
    queries: str
    fisher: str


@job("diffusion-unlearning")
def diffusion_unlearning(a: DiffusionUnlearningArgs, p: DiffusionUnlearningSettings) -> None:
    """τ(ẑ, z) of every training clip for one chunk of queries, the losses in ``precision`` (float64:
    the difference of two nearly equal losses keeps its digits); the first ``check`` queries again in
    float64 and float32 for the round-off estimate (the same file layout as ``aria unlearning-scores``).
    """
    from aria.attribution.unlearning import example_losses, latent_scores, mask_sides
    from aria.models.diffusion import VLoss, latent_batches

    torch_setup(a.threads)
    tr, qu = _items(a.data), _items(a.queries)
    qsel = np.array_split(np.arange(len(qu["ids"])), p["n_chunks"])[p["chunk"]]
    loss = VLoss(p["timesteps"])
    kw = {k: p[k] for k in ("lr", "steps", "group", "floor", "mask", "seed")}
    _, use_l = mask_sides(p["mask"])

    def score(precision, queries, desc):
        model = _model(a.model, precision)
        fisher = _fisher(a.fisher, model)
        dtype = next(model.parameters()).dtype
        before = example_losses(
            model, latent_batches(tr, ids=tr["ids"], use_mask=use_l, dtype=dtype), loss, seed=p["seed"]
        )
        cols = [
            latent_scores(
                model, tr, {k: v[q : q + 1] for k, v in qu.items()}, fisher, loss_fn=loss, before=before, **kw
            )
            for q in progress(queries, desc=desc, unit="query")
        ]
        return np.stack(cols, axis=1) if cols else np.zeros((len(tr["ids"]), 0))

    t0 = time.perf_counter()
    S = score(p["precision"], qsel, f"unlearn ({p['precision']})")
    dt = time.perf_counter() - t0
    log.info("%d queries in %.1f s (%.2f s per query, %s)", len(qsel), dt, dt / max(len(qsel), 1), p["precision"])
    checked = qsel[: min(int(p["check"]), len(qsel))]
    checks = {p["precision"]: S[:, : len(checked)]}
    for name in ("float64", "float32"):
        if name != p["precision"]:
            checks[name] = score(name, checked, f"check ({name})")
    from aria.io.tables import write_npz

    write_npz(
        a.out,
        scores=S,
        query_ids=qu["ids"][qsel],
        train_ids=tr["ids"],
        precision=np.array(p["precision"]),
        **{f"check_{name}": c for name, c in checks.items()},
    )


class DiffusionGradientsSettings(Settings):
    k: int
    mask: str
    timesteps: int
    seed: int


class DiffusionGradientsArgs(SettingsArgs):
    model: str
    data: str
    queries: str


@job("diffusion-gradients")
def diffusion_gradients(a: DiffusionGradientsArgs, p: DiffusionGradientsSettings) -> None:
    """SJLT-projected per-item gradients of the v-loss (T seeded draws per item, the unlearning
    losses' draws; the query side masked as M_U, the training side as M_L), a feature store for
    ``aria score`` (Grad-Cos).
    """
    from aria.attribution.projection import loss_gradient_features, make_projector
    from aria.attribution.unlearning import mask_sides
    from aria.models.diffusion import VLoss, latent_batches
    from aria.workflow.jobs.attribution import _write_projection

    torch_setup(a.threads)
    model = _model(a.model)
    tr, qu = _items(a.data), _items(a.queries)
    n_par = sum(q.numel() for q in model.parameters() if q.requires_grad)
    proj = make_projector(n_par, p["k"], kind="sjlt", seed=p["seed"])
    use_u, use_l = mask_sides(p["mask"])
    loss = VLoss(p["timesteps"])
    ftr, fq = (
        loss_gradient_features(
            model, latent_batches(d, ids=d["ids"], use_mask=m), loss, proj, seed=p["seed"], progress=True, desc=what
        )
        for d, m, what in ((tr, use_l, "train"), (qu, use_u, "queries"))
    )
    _write_projection(a, tr, qu, ftr, fq, {**p, "method": "gradcos", "lr": 1.0, "projection": "sjlt"})


# --------------------------------------------------------------------------------- embeddings
class DiffusionEmbedSettings(Settings):
    encoder: str


class DiffusionEmbedArgs(SettingsArgs):
    data: str
    queries: str
    codec: str


def embed_generations(Z, seconds, *, codec, encoder) -> np.ndarray:
    """The encoder's time-averaged embeddings (g, dim) of generated latents ``Z`` (g, C, F), each
    decoded up to its asked length ``seconds[j]``; all NaN when the model that generated them is
    broken (the latents, or their audio as float32, overflow), which the self-influence grid marks
    as diverged.
    """
    fps = codec.frames_per_second
    audio = [codec.decode(z[:, : int(np.ceil(s * fps - 1e-9))]) for z, s in zip(Z, seconds)]
    with np.errstate(over="ignore", invalid="ignore"):
        finite = all(np.isfinite(np.asarray(y, dtype=np.float32)).all() for y in audio)
    if not finite:
        return np.full((len(audio), encoder.dim), np.nan)
    return np.stack([encoder.embed(y, codec.sr) for y in audio])


def _clip_audio(codec, d, j) -> np.ndarray:
    """Item ``j``'s audio: its latents decoded up to its real frames (exact for a training clip)."""
    n = int(np.asarray(d["mask"][j]).sum())
    return codec.decode(np.asarray(d["x0"][j], dtype=np.float64)[:, :n], int(round(d["seconds_total"][j] * codec.sr)))


@job("diffusion-embed")
def diffusion_embed(a: DiffusionEmbedArgs, p: DiffusionEmbedSettings) -> None:
    """An audio encoder's frame embeddings of every training clip and query (decoded from their latents)."""
    from aria.audio.encoders import get_encoder
    from aria.io.tables import save_torch

    torch_setup(a.threads)
    enc = get_encoder(p["encoder"], n_threads=a.threads)
    codec = _codec(a.codec)
    out = {"encoder": p["encoder"], "frame_rate": float(enc.frame_rate)}
    for name, path in (("train", a.data), ("query", a.queries)):
        d = _items(path)
        out[f"{name}_ids"] = np.asarray(d["ids"]).astype(str)
        out[name] = [
            np.asarray(enc.frames(_clip_audio(codec, d, j), codec.sr), dtype=np.float64)
            for j in progress(range(len(d["ids"])), desc=f"{p['encoder']} {name}", unit="clip")
        ]
    save_torch(a.out, out)


class DiffusionBaselinesSettings(Settings):
    window_s: float
    hop_s: float


class DiffusionBaselinesArgs(SettingsArgs):
    embeddings: str
    out_aaa: str


@job("diffusion-baselines")
def diffusion_baselines(a: DiffusionBaselinesArgs, p: DiffusionBaselinesSettings) -> None:
    """The embedding baselines of the test-to-train comparison: cosine of time-averaged embeddings
    (``--out``), and all-against-all windows (``window_s`` long, ``hop_s`` apart) taking the maximum
    (``--out-aaa``).
    """
    from aria.attribution.embedding import all_against_all_scores, cosine_scores
    from aria.io.stores import ScoreWriter
    from aria.io.tables import load_torch

    e = load_torch(a.embeddings)
    tr, qu = e["train"], e["query"]
    for out, S in (
        (a.out, cosine_scores(np.stack([f.mean(0) for f in tr]), np.stack([f.mean(0) for f in qu]))),
        (
            a.out_aaa,
            all_against_all_scores(tr, qu, frame_rate=e["frame_rate"], window_s=p["window_s"], hop_s=p["hop_s"]),
        ),
    ):
        with ScoreWriter(out, e["train_ids"], e["query_ids"], attrs={"method": e["encoder"]}) as w:
            w.write(0, S)


# ------------------------------------------------------------------------------------- evidence
class DiffusionEvidenceSettings(Settings):
    sr: int
    root: str | None = UNSET


class DiffusionEvidenceArgs(SettingsArgs):
    data: str
    codec: str
    prompts: str
    manifest: str
    out_failures: str
    out_clips: str
    out_manifest: str


def _write_item_wav(path, y, sr: int) -> None:
    """A decoded item's audio as 16-bit PCM, scaled down only where it exceeds full scale."""
    from aria.io.audio import write_wav

    write_wav(path, np.clip(y / max(1.0, np.abs(y).max()), -1, 1), sr)


@job("diffusion-evidence")
def diffusion_evidence(a: DiffusionEvidenceArgs, p: DiffusionEvidenceSettings) -> None:
    """The evidence pool of the diffusion experiment: the audio experiment's channel features
    (docs/spec.md §5) of every training clip as the DiT saw it (its latents decoded), the clips as
    WAV files for the evidence cards' players, and a manifest of them.

    The manifest (``--out-manifest``) lists the clips (split ``train``, path ``clips/<id>.wav``, the
    genre of their track) and the held-out tracks the prompts were made from (split ``eval``, their
    own audio), so that the homogeneity confounds and the cards find each query's genre. A clip whose
    features fail is listed in ``--out-failures`` and left out of the pool.
    """
    import os

    import pandas as pd

    from aria.audio.features import extract_many
    from aria.io.layouts import write_evidence
    from aria.io.stores import atomic_dir
    from aria.io.tables import read_manifest, read_npz, write_csv

    man = read_manifest(a.manifest, root=p.get("root"), check_files=False).set_index("track_id", drop=False)
    d, codec = _items(a.data), _codec(a.codec)
    ids = np.asarray(d["ids"]).astype(str)
    unknown = [t for t in ids if t not in man.index]
    if unknown:
        raise ValueError(f"{a.data}: training clip(s) of tracks not in {a.manifest}: {unknown[:5]}")
    with atomic_dir(a.out_clips) as tmp:
        for j in progress(range(len(ids)), desc="decode clips", unit="clip"):
            _write_item_wav(Path(tmp) / f"{ids[j]}.wav", _clip_audio(codec, d, j), codec.sr)
    paths = [str(Path(a.out_clips) / f"{t}.wav") for t in ids]
    feats, failures = extract_many(paths, sr=p["sr"], progress=True)
    ok = [Path(x).stem for x in feats.pop("paths")]
    write_evidence(a.out, np.array(ok), feats)
    for path, why in failures:
        log.warning("no features for clip %s: %s", path, why)
    write_csv(a.out_failures, pd.DataFrame(failures, columns=["path", "reason"]))

    base = Path(a.out_manifest).parent
    clips = pd.DataFrame(
        {
            "track_id": ids,
            "path": [os.path.relpath(f, base) for f in paths],
            "genre": man.loc[ids, "genre"].to_numpy(),
            "split": "train",
        }
    )
    src = [t for t in np.asarray(read_npz(a.prompts)["ids"]).astype(str) if t in man.index and t not in set(ids)]
    prompts = pd.DataFrame(
        {
            "track_id": src,
            "path": [os.path.relpath(f, base) for f in man.loc[src, "abspath"]],
            "genre": man.loc[src, "genre"].to_numpy(),
            "split": "eval",
        }
    )
    write_csv(a.out_manifest, pd.concat([clips, prompts], ignore_index=True))
    log.info("channel features of %d of %d training clips (%d failed)", len(ok), len(ids), len(failures))


# ---------------------------------------------------------------------------------- self-influence
class DiffusionSelfinfluenceSettings(SelfinfluencePointSettings):
    timesteps: int
    sample_steps: int


class DiffusionSelfinfluenceArgs(SettingsArgs):
    model: str
    data: str
    fisher: str
    prompts: str
    codec: str
    embeddings: str
    encoder: str = opt("aisfx", help="the audio encoder of the Fréchet distance (diffusion.embedding.encoder)")


@job("diffusion-selfinfluence")
def diffusion_selfinfluence(a: DiffusionSelfinfluenceArgs, p: DiffusionSelfinfluenceSettings) -> None:
    """One grid point of the self-influence check on the DiT: R(z_tar), top/bottom-k similarity (the
    audio encoder's time-averaged embeddings) and the Fréchet distance of generations from the same
    prompts and draws before and after unlearning (the same encoder), τ in float64.
    """
    from aria.attribution.unlearning import latent_scores, latent_self_influence
    from aria.audio.encoders import get_encoder
    from aria.evaluation.numerics import score_numerics
    from aria.evaluation.selfinfluence import diverse_targets
    from aria.io.tables import load_torch, read_npz, write_json
    from aria.models.diffusion import VLoss

    torch_setup(a.threads)
    model = _model(a.model, "float64")
    fisher = _fisher(a.fisher, model)
    tr = _items(a.data)
    codec = _codec(a.codec)
    emb = load_torch(a.embeddings)
    if list(emb["train_ids"]) != [str(x) for x in tr["ids"]]:
        raise ValueError(f"{a.embeddings}: its clips differ from {a.data}'s (rerun aria diffusion-embed)")
    E = np.stack([f.mean(0) for f in emb["train"]])
    targets = diverse_targets(E, min(int(p["n_targets"]), len(E)), random_state=p["seed"])
    pr = read_npz(a.prompts)
    g = min(int(p["n_generations"]), len(pr["ids"]))
    enc = get_encoder(a.encoder, n_threads=a.threads) if g >= 2 else None

    def generate(m, generator):
        cond = {k: pr[k][:g] for k in COND_KEYS}
        Z = _generate(m, cond, steps=p["sample_steps"], generator=generator)
        return embed_generations(Z, pr["seconds_total"][:g], codec=codec, encoder=enc)

    loss = VLoss(p["timesteps"])
    step = {k: p[k] for k in ("lr", "steps", "group", "floor", "mask", "top_k", "seed")}
    t0 = time.perf_counter()
    doc = latent_self_influence(
        model,
        tr,
        fisher,
        targets,
        embeddings=E,
        loss_fn=loss,
        generate=generate if enc is not None else None,
        progress=lambda it: progress(it, desc="targets", unit="target"),
        **step,
    )
    dt = time.perf_counter() - t0
    # τ's round-off: the first target scored again in float32 (float64 is the reference)
    t = int(targets[0])
    kw = {k: p[k] for k in ("lr", "steps", "group", "floor", "mask", "seed")}
    one = {k: v[t : t + 1] for k, v in tr.items()}
    c = {}
    for name in ("float64", "float32"):
        m = _model(a.model, name)
        c[name] = latent_scores(m, tr, one, _fisher(a.fisher, m), loss_fn=loss, **kw)[:, None]
    doc["numerics"] = score_numerics(c["float64"], c, precision="float64")
    doc.update(
        stage="dit",
        point={k: p[k] for k in ("lr", "steps", "group", "mask")},
        chosen=bool(p.get("chosen")),
        seconds=dt,
        n_generations=g if enc is not None else 0,
        embedding=a.encoder,
    )
    log.info(
        "%s: median R %.1f, R = 1 for %.0f%% of %d targets, FD %s (%.1f s)",
        doc["point"], doc["median_rank"], 100 * doc["share_rank1"], len(targets),
        "diverged" if doc["diverged"] else "n/a" if doc["frechet"] is None else f"{doc['frechet']:.4g}", dt,
    )  # fmt: skip
    write_json(a.out, doc)


# ------------------------------------------------------------------------------------------ report
class DiffusionReportSettings(Settings):
    experiment: str
    rows: list[str]


class DiffusionReportArgs(JobArgs):
    params: dict = arg(json=True, help="the job's settings: a JSON object, or the path of a .json file")
    selfinfluence: list[str] = arg(nargs="+", help="the grid points' JSON files")
    compare: str = arg(help="aria unlearning-compare's JSON")
    diagnostics: list[str] = arg(nargs="+", help="aria diagnostics' JSON of each row, in the order of rows")
    scores: str = arg(help="the unlearning score store (its numerics)")
    aria: str | None = opt(None, help="the summary.json of the Aria report of these rows (aria report)")
    model: str
    queries: str
    out_md: str
    out_summary: str
    out_figures: str
    out_tables: str


@job("diffusion-report")
def diffusion_report(a: DiffusionReportArgs, p: DiffusionReportSettings) -> None:
    """The diffusion experiment's report: training, the self-influence grid (table and figure), the
    test-to-train comparison (the paper's Fig. 1 analogue), each row's diagnostics and τ's numerics.
    """
    from aria.io.checkpoints import read_checkpoint
    from aria.io.stores import atomic_file, store_attrs
    from aria.io.tables import read_json, write_json, write_report_assets
    from aria.registry import row_label
    from aria.report import render as R
    from aria.report.compose import selfinfluence_reading

    grid = [read_json(f) for f in a.selfinfluence]
    comp = read_json(a.compare)["comparisons"]
    diags = {key: read_json(f) for key, f in zip(p["rows"], a.diagnostics, strict=True)}
    num = store_attrs(a.scores).get("numerics") or {}
    ck = read_checkpoint(a.model)
    losses = np.asarray(ck.get("losses", []), dtype=float)
    qu = _items(a.queries)
    k = max(1, len(losses) // 10)
    si_h, si_rows = R.selfinfluence_table(grid)
    cmp_h, cmp_rows = R.unlearning_compare_table(comp)
    diag_cols = ["r1", "r2_5", "c_bar", "rho_bar"]
    diag_rows = [
        [row_label(key)]
        + [f"{d.get(c, float('nan')):.3f}" for c in diag_cols]
        + [f"{d['replica']['spearman']['q50']:+.2f}" if d.get("replica") else "–"]
        for key, d in diags.items()
    ]
    diag_header = ["row", *diag_cols, "replica ρs"]  # median Spearman against the second DiT's scores
    tables = {
        "Self-influence grid": (si_h, si_rows),
        "Test-to-train comparison": (cmp_h, cmp_rows),
        "Diagnostics": (diag_header, diag_rows),
    }
    figures = {
        "Self-influence grid": R.selfinfluence_figure(grid),
        "Test-to-train comparison": R.unlearning_compare_figure(comp),
    }
    aria = read_json(a.aria) if a.aria else None
    if aria is not None:
        tables["Aria on top"] = _aria_table(aria)
    write_report_assets(a.out_figures, a.out_tables, figures=figures, tables=tables)
    chosen = next((d for d in grid if d.get("chosen")), None)
    lines = [
        f"# Aria report: {p['experiment']} (latent diffusion)",
        "",
        f"A latent DiT (diffusers' StableAudioDiTModel, {sum(v.numel() for v in ck['final'].values()):,} "
        f"parameters) trained {len(losses)} steps with the v-objective: loss {losses[:k].mean():.4f} "
        f"(first {k} steps) to {losses[-k:].mean():.4f} (last {k}). {len(qu['ids'])} queries generated from "
        "held-out tracks' captions.",
        "",
        "## Self-influence grid",
        "",
        selfinfluence_reading(grid),
        "",
        _md_table(si_h, si_rows),
        "",
        "![Self-influence grid](figures/01_self_influence_grid.png)",
        "",
        "## Test-to-train: unlearning against the other methods",
        "",
        _md_table(cmp_h, cmp_rows),
        "",
        "![Test-to-train comparison](figures/02_test_to_train_comparison.png)",
        "",
        "## Reliability diagnostics of each score matrix",
        "",
        "replica ρs: the median over queries of the Spearman correlation between the row's scores and those "
        "of a second DiT trained with another seed (the noise diagnostic; none for the embedding baselines).",
        "",
        _md_table(diag_header, diag_rows),
        "",
        "## Numerics of τ",
        "",
    ]
    tail = []
    if aria is not None:
        K = aria["main_k"]
        tail = [
            "",
            "## Aria on top: homogeneity, residual and verdicts",
            "",
            f"The audio experiment's channels on the training clips as the DiT saw them (their latents decoded), "
            f"at K = {K}: mean z of each row's top-K groups against random groups of clips (Pos: share of queries "
            "with z > 0), and the verdict of each row's diagnostics. The full Aria report of these rows, with the "
            "residual, the alignment and a per-query evidence card with the generation's and the clips' players: "
            "[diffusion/aria/report.html](diffusion/aria/report.html).",
            "",
            _md_table(*_aria_table(aria)),
        ]
    if num.get("error") is not None:
        lines.append(
            f"τ's spread (RMS over queries of its std over clips) is {num['spread']:.3g}; its estimated round-off in "
            f"{num['precision']} is {num['error']:.2g} ({100 * num['ratio']:.2g}% of the spread); float32 alone "
            f"would give {num['float32_error']:.2g} ({100 * num['float32_ratio']:.2g}%)."
        )
    else:
        lines.append("No query was scored twice: τ's round-off is not estimated (methods check: 0).")
    lines += tail
    with atomic_file(a.out_md) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json(
        a.out_summary,
        {
            "experiment": p["experiment"],
            "training": {
                "steps": len(losses),
                "loss_first": float(losses[:k].mean()),
                "loss_last": float(losses[-k:].mean()),
            },
            "selfinfluence": [
                {
                    k2: d[k2]
                    for k2 in (
                        "point",
                        "chosen",
                        "median_rank",
                        "share_rank1",
                        "mean_top_sim",
                        "mean_bottom_sim",
                        "top_k",
                        "frechet",
                        "diverged",
                        "n",
                    )
                }  # fmt: skip
                for d in grid
            ],
            "chosen": None if chosen is None else chosen["point"],
            "compare": [
                {"other": c["other"], "pearson_mean": c["pearson_mean"], "pearson_std": c["pearson_std"]} for c in comp
            ],
            "diagnostics": {
                key: {
                    **{c: d.get(c) for c in diag_cols},
                    "replica_spearman": d["replica"]["spearman"]["q50"] if d.get("replica") else None,
                }
                for key, d in diags.items()
            },
            "numerics": num,
            "aria": None
            if aria is None
            else {
                key: {"verdict": m["verdict"]["verdict"], "homogeneity": m["homogeneity"].get(str(aria["main_k"]))}
                for key, m in aria["methods"].items()
            },
        },
    )


def _aria_table(aria: dict) -> tuple[list, list]:
    """``(header, rows)``: per row of an Aria summary, its verdict and mu_z (Pos) per channel at main K."""
    K = str(aria["main_k"])
    header = ["row", "verdict", *[f"{c} mu_z (Pos)" for c in aria["channels"]]]
    rows = []
    for m in aria["methods"].values():
        h = m["homogeneity"].get(K, {})
        cells = [
            "n/a" if not np.isfinite(h.get(c, {}).get("mu_z", np.nan)) else f"{h[c]['mu_z']:+.2f} ({h[c]['pos']:.2f})"
            for c in aria["channels"]
        ]
        v = m["verdict"]
        rows.append([m["label"], v["verdict"] or f"no verdict ({v.get('flag') or 'see the Aria report'})", *cells])
    return header, rows


def _md_table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(out)
