"""Attribution jobs: gradient projections, factored projections, unlearning, scores, embeddings, track-level matrices.

The job contract (argument dataclasses, registration, the generated command line): :mod:`.base`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from aria.io.layouts import read_kfac, write_kfac
from aria.runtime import progress
from aria.workflow.jobs.base import (
    EngineArgs,
    ModelJobArgs,
    PartsArgs,
    SettingsArgs,
    arg,
    job,
    load_job_model,
    opt,
    torch_setup,
)
from aria.workflow.jobs.settings import UNSET, Settings

log = logging.getLogger("aria")


class ProjectSettings(Settings):
    checkpoint: int
    seed: int
    device: str
    type: str = UNSET
    k: int
    batch_size: int
    block_rows: int
    sjlt_s: int = UNSET


class ProjectArgs(ModelJobArgs):
    queries: str
    cache_mib: int = opt(
        1024, help="memory for a Gaussian projection's generated blocks (MiB; numbers do not depend on it)"
    )


@job("project")
def project(a: ProjectArgs, p: ProjectSettings) -> None:
    """Projected per-example gradients of training segments and queries for one checkpoint."""
    from aria.attribution.projection import attributed_params, make_projector, project_gradients
    from aria.registry import DEFAULT_PROJECTION

    model, lr, tr, qu = _projection_inputs(a, p["device"], p["checkpoint"])
    kind = p.get("type", DEFAULT_PROJECTION)
    projector = make_projector(
        sum(v.numel() for v in attributed_params(model).values()),
        p["k"],
        kind=kind,
        seed=p["seed"],
        block_rows=p["block_rows"],
        sjlt_s=p.get("sjlt_s", 1),
        device=p["device"],
        cache_bytes=a.cache_mib << 20,
    )
    kw = dict(k=p["k"], seed=p["seed"], batch_size=p["batch_size"], device=p["device"], progress=True)
    # one P for training segments and queries, generated once where it fits
    ftr, fq = _project_both(
        tr, qu, lambda d, desc: project_gradients(model, *d, desc=desc, projector=projector, **kw), what=kind
    )
    attrs = {"k": p["k"], "seed": p["seed"], "projection": kind, "lr": lr, "checkpoint": p["checkpoint"]}
    _write_projection(a, tr, qu, ftr, fq, attrs)


def _projection_inputs(a, device, checkpoint=None):
    """``(model, lr, train, queries)`` of a projection job: checkpoint ``checkpoint`` of ``a.model`` (the
    final weights when None) and the ``a.segments`` and ``a.queries`` tables; torch given the job's
    threads and checked for ``device``.
    """
    from aria.io.tables import read_npz

    model, lr = load_job_model(a, device, checkpoint)
    return model, lr, read_npz(a.segments), read_npz(a.queries)


def _project_both(tr, qu, fn, *, what):
    """``fn(batch, desc)`` of the training segments and of the queries, timed and logged; ``batch`` is
    ``(tokens, mask, loss_mask)`` (N, T) each (a training table may have no loss mask: None).
    """
    t0 = time.perf_counter()
    ftr = fn((tr["tokens"], tr["mask"], tr.get("loss_mask")), "train")
    fq = fn((qu["tokens"], qu["mask"], qu["loss_mask"]), "queries")
    dt = time.perf_counter() - t0
    log.info(
        "%s: %d segments + %d queries projected to k = %d in %.1f s (%.1f rows/s)",
        what, len(ftr), len(fq), ftr.shape[1], dt, (len(ftr) + len(fq)) / dt,
    )  # fmt: skip
    return ftr, fq


def _write_projection(a, tr, qu, ftr, fq, attrs):
    """Write the features of a projection job to ``a.out``, with its ``attrs`` and the model's path;
    ``tr`` and ``qu`` give the row ids (``segment_ids`` / ``query_ids``, or a diffusion item file's ``ids``).
    """
    from aria.io.stores import write_features

    rows, cols = (d.get(k, d.get("ids")) for d, k in ((tr, "segment_ids"), (qu, "query_ids")))
    write_features(a.out, train=ftr, query=fq, train_ids=rows, query_ids=cols, attrs={**attrs, "model": str(a.model)})


def _model_on_device(a, p):
    """The job's model (``a.model``) on its device ``p["device"]``, torch given the job's threads."""
    return load_job_model(a, p["device"])[0].to(p["device"])


class UnlearningFisherSettings(Settings):
    mask: str
    seed: int
    device: str


@job("unlearning-fisher")
def unlearning_fisher(a: ModelJobArgs, p: UnlearningFisherSettings) -> None:
    """Diagonal empirical Fisher of one model over its training segments (docs/spec.md §8).

    Cached per (stage, model).
    """
    from aria.attribution.unlearning import diagonal_fisher, mask_sides, token_batches, token_loss
    from aria.io.tables import read_npz, save_torch
    from aria.models.transformer import fused_attention

    model = _model_on_device(a, p)
    tr = read_npz(a.segments)
    _, use_l = mask_sides(p["mask"])
    batches = token_batches(
        tr["tokens"], tr["mask"], tr.get("loss_mask"), ids=tr["segment_ids"], use_mask=use_l, device=p["device"]
    )
    t0 = time.perf_counter()
    with fused_attention(model):
        F = diagonal_fisher(model, progress(batches, desc="fisher", unit="batch"), token_loss, seed=p["seed"])
    log.info("Fisher over %d segments in %.1f s", len(tr["segment_ids"]), time.perf_counter() - t0)
    save_torch(a.out, {"fisher": {n: f.cpu() for n, f in F.items()}, "n": len(tr["segment_ids"]), "mask": p["mask"]})


def _unlearning_model(a, p):
    """Model 0 on the job's device and its cached Fisher, checked against each other (unlearning jobs)."""
    from aria.io.tables import load_torch

    model = _model_on_device(a, p)
    fisher = load_torch(a.fisher)["fisher"]
    shapes = {n: tuple(q.shape) for n, q in model.named_parameters()}
    bad = [n for n in shapes if n not in fisher or tuple(fisher[n].shape) != shapes[n]]
    if bad:
        raise ValueError(
            f"{a.fisher}: no Fisher entry of the right shape for {len(bad)} parameters of {a.model}, "
            f"e.g. {bad[:3]} (a Fisher of another model?)"
        )
    return model, {n: fisher[n].to(p["device"]) for n in shapes}


class UnlearningScoresSettings(Settings):
    lr: float
    steps: int
    group: str
    floor: float
    mask: str
    precision: str
    check: int
    seed: int
    device: str
    n_chunks: int
    chunk: int


class UnlearningScoresArgs(ModelJobArgs):
    queries: str
    fisher: str


@job("unlearning-scores")
def unlearning_scores(a: UnlearningScoresArgs, p: UnlearningScoresSettings) -> None:
    """τ(ẑ, z) = L(z; θ') − L(z; θ0) of every training segment for one chunk of queries (docs/spec.md §8),
    in ``precision``; the first ``check`` queries of the chunk are scored again in float64 and in
    float32, for the round-off estimate of :func:`~aria.evaluation.numerics.score_numerics`.
    """
    from aria.attribution.unlearning import (
        example_losses,
        mask_sides,
        precision_setup,
        token_batches,
        unlearning_scores,
    )
    from aria.io.tables import read_npz, write_npz
    from aria.models.transformer import fused_attention

    model, fisher = _unlearning_model(a, p)
    tr, qu = read_npz(a.segments), read_npz(a.queries)
    use_u, use_l = mask_sides(p["mask"])
    qsel = np.array_split(np.arange(len(qu["query_ids"])), p["n_chunks"])[p["chunk"]]
    precision = p["precision"]

    def train():
        return token_batches(
            tr["tokens"], tr["mask"], tr.get("loss_mask"), ids=tr["segment_ids"], use_mask=use_l, device=p["device"]
        )

    def query(q):
        (b,) = token_batches(
            qu["tokens"][q : q + 1],
            qu["mask"][q : q + 1],
            qu["loss_mask"][q : q + 1],
            ids=qu["query_ids"][q : q + 1],
            use_mask=use_u,
            device=p["device"],
        )
        return b

    def score(name, queries, desc):
        m, loss = precision_setup(model, name)
        with fused_attention(m):  # many full passes over the training set: the fused kernel
            before = example_losses(m, train(), loss, seed=p["seed"])
            cols = [
                unlearning_scores(m, train, query(q), loss, fisher, before=before, **kw)
                for q in progress(queries, desc=desc, unit="query")
            ]
        return np.stack(cols, axis=1) if cols else np.zeros((len(tr["segment_ids"]), 0))

    kw = {k: p[k] for k in ("lr", "steps", "group", "floor", "seed")}
    t0 = time.perf_counter()
    S = score(precision, qsel, f"unlearn ({precision})")
    dt = time.perf_counter() - t0
    log.info("%d queries in %.1f s (%.2f s per query, %s)", len(qsel), dt, dt / max(len(qsel), 1), precision)
    checked = qsel[: min(int(p["check"]), len(qsel))]
    checks = {precision: S[:, : len(checked)]}
    for name in ("float64", "float32"):
        if name != precision:
            checks[name] = score(name, checked, f"check ({name})")
    write_npz(
        a.out,
        scores=S.astype(np.float32),
        query_ids=qu["query_ids"][qsel],
        train_ids=tr["segment_ids"],
        precision=np.array(precision),
        **{f"check_{name}": c for name, c in checks.items()},
    )


@job("unlearning-merge")
def unlearning_merge(a: PartsArgs) -> None:
    """The chunks of ``aria unlearning-scores`` (in query order) as one N x Q score store, with the
    scores' round-off estimate against their spread in the store's ``numerics`` attribute.
    """
    from aria.evaluation.numerics import ERROR_LIMIT, score_numerics
    from aria.io.stores import ScoreWriter
    from aria.io.tables import read_npz

    parts = [read_npz(f) for f in a.parts]
    rows = parts[0]["train_ids"]
    for f, d in zip(a.parts, parts):
        if not np.array_equal(d["train_ids"], rows):
            raise ValueError(f"{f}: its training items differ from {a.parts[0]}'s (chunks of different runs?)")
    precisions = {str(d["precision"]) if "precision" in d else "float32" for d in parts}
    if len(precisions) > 1:
        raise ValueError(f"{a.parts[0]}: the chunks were computed in different precisions {sorted(precisions)}")
    S = np.concatenate([d["scores"] for d in parts], axis=1)
    cols = np.concatenate([d["query_ids"] for d in parts])
    precision = precisions.pop()
    checks = {
        name: np.concatenate([d.get(f"check_{name}", np.zeros((len(rows), 0))) for d in parts], axis=1)
        for name in {"float64", "float32", precision}
    }
    num = score_numerics(S, checks, precision=precision)
    with ScoreWriter(a.out, rows, cols, attrs={"method": "unlearning", "numerics": num}) as w:
        w.write(0, S)
    log.info("merged %d chunks: %d training items x %d queries", len(parts), *S.shape)
    if num["error"] is None:
        log.info("no query was scored twice: the round-off of tau is not estimated")
        return
    log.info(
        "tau: spread %.3g, estimated round-off %.2g (%.2g%% of the spread, %s); float32 alone: %.2g (%.2g%%)",
        num["spread"], num["error"], 100 * num["ratio"], num["precision"], num["float32_error"],
        100 * num["float32_ratio"],
    )  # fmt: skip
    if not num["ok"]:
        log.warning(
            "WARNING: the unlearning scores of %s carry an estimated round-off of %.2g, %.1f%% of their spread "
            "(more than %g%%): their ranking is partly noise. Raise methods.unlearning.lr, or set precision: float64.",
            a.out, num["error"], 100 * num["ratio"], 100 * ERROR_LIMIT,
        )  # fmt: skip


class SelfinfluencePointSettings(Settings):
    """One point of the self-influence grid (docs/spec.md §8: the unlearning step ``lr`` x
    ``steps`` on layer ``group`` with ``mask``; ``chosen`` marks the scores' own point) and its
    ``n_targets`` diverse training targets, top/bottom-``top_k`` and ``n_generations``; the
    token-model and diffusion jobs add their own settings.
    """

    lr: float
    steps: int
    group: str
    mask: str
    chosen: bool = UNSET
    floor: float
    n_targets: int
    top_k: int
    n_generations: int
    seed: int


class UnlearningSelfinfluenceSettings(SelfinfluencePointSettings):
    precision: str
    stage: str
    device: str


class UnlearningSelfinfluenceArgs(ModelJobArgs):
    queries: str
    fisher: str


@job("unlearning-selfinfluence")
def unlearning_selfinfluence(a: UnlearningSelfinfluenceArgs, p: UnlearningSelfinfluenceSettings) -> None:
    """One grid point of the train-to-train self-influence check (docs/spec.md §8) of one stage."""
    from contextlib import ExitStack

    from aria.attribution.unlearning import model_embeddings, precision_setup, self_influence
    from aria.evaluation.numerics import score_numerics
    from aria.evaluation.selfinfluence import diverse_targets
    from aria.io.tables import read_npz, write_json
    from aria.models.transformer import fused_attention

    model, fisher = _unlearning_model(a, p)
    precision = p["precision"]  # τ as the scores compute it, checked in float64 and float32
    checks = {name: precision_setup(model, name) for name in ("float64", "float32") if name != precision}
    model, loss = precision_setup(model, precision)
    tr, qu = read_npz(a.segments), read_npz(a.queries)
    with ExitStack() as fused:  # many full passes over the training set: the fused kernel
        for m in (model, *(m for m, _ in checks.values())):
            fused.enter_context(fused_attention(m))
        E = model_embeddings(model, tr["tokens"], tr["mask"], device=p["device"])
        n_t = min(int(p["n_targets"]), len(E))
        targets = diverse_targets(E, n_t, random_state=p["seed"])
        g = min(int(p["n_generations"]), len(qu["query_ids"]))
        prompts = {"tokens": qu["tokens"][:g], "loss_mask": qu["loss_mask"][:g]} if g >= 2 else None
        t0 = time.perf_counter()
        doc = self_influence(
            model,
            tr,
            fisher,
            targets,
            embeddings=E,
            prompts=prompts,
            device=p["device"],
            progress=lambda it: progress(it, desc="targets", unit="target"),
            loss_fn=loss,
            checks=checks,
            **{k: p[k] for k in ("lr", "steps", "group", "floor", "mask", "top_k", "seed")},
        )
    dt = time.perf_counter() - t0
    c = {name: np.asarray(t)[:, None] for name, t in doc.pop("check").items()}  # the first target's τ
    c[precision] = c.pop("main")
    doc["numerics"] = score_numerics(c[precision], c, precision=precision)
    doc.update(
        stage=p["stage"],
        point={k: p[k] for k in ("lr", "steps", "group", "mask")},
        chosen=bool(p.get("chosen")),
        seconds=dt,
        n_generations=g,
    )
    log.info(
        "%s %s: median R %.1f, R = 1 for %.0f%% of %d targets, FD %s (%.1f s)",
        p["stage"],
        doc["point"],
        doc["median_rank"],
        100 * doc["share_rank1"],
        n_t,
        "n/a" if doc["frechet"] is None else f"{doc['frechet']:.4g}",
        dt,
    )
    write_json(a.out, doc)


class KfacCovarianceSettings(Settings):
    batch_size: int
    device: str


@job("kfac-covariance")
def kfac_covariance(a: ModelJobArgs, p: KfacCovarianceSettings) -> None:
    """KFAC factors E[x x^T], E[delta delta^T] of every linear layer of one model (LoGra, FactGraSS)."""
    from aria.attribution.factored import kfac_covariance
    from aria.io.tables import read_npz

    model, _ = load_job_model(a)
    tr = read_npz(a.segments)
    t0 = time.perf_counter()
    cov = kfac_covariance(
        model,
        tr["tokens"],
        tr["mask"],
        tr.get("loss_mask"),
        batch_size=p["batch_size"],
        device=p["device"],
        progress=True,
    )
    log.info(
        "covariance of %d layers over %d segments in %.1f s", len(cov), len(tr["tokens"]), time.perf_counter() - t0
    )
    write_kfac(a.out, cov)


class ProjectFactoredSettings(Settings, open=True):
    # and the method's own projection parameters (registry: Method.projection_params)
    seed: int
    device: str
    batch_size: int


class ProjectFactoredArgs(ModelJobArgs):
    method: str
    queries: str
    covariance: str | None = opt(None)


@job("project-factored")
def project_factored(a: ProjectFactoredArgs, p: ProjectFactoredSettings) -> None:
    """LoGra or FactGraSS features of the training segments and queries of one model."""
    from aria.attribution.factored import project_factored

    model, lr, tr, qu = _projection_inputs(a, p["device"])
    cov = read_kfac(a.covariance) if a.covariance else None
    kw = dict(method=a.method, params=p, covariance=cov, batch_size=p["batch_size"], device=p["device"], progress=True)
    layers = []

    def run(batch, desc):
        f, layers[:] = project_factored(model, *batch, desc=desc, **kw)
        return f

    ftr, fq = _project_both(tr, qu, run, what=a.method)
    log.info("%s: %d layers", a.method, len(layers))
    # the config params first, so that the per-layer "k" and the "layers" selection do not
    # overwrite the store's total width and its column blocks
    attrs = {**p, "method": a.method, "k_total": int(ftr.shape[1]), "blocks": layers, "lr": lr}
    _write_projection(a, tr, qu, ftr, fq, attrs)


class ScoreSettings(Settings, open=True):
    # and the method's own scoring parameters (registry: Method.run_params)
    row_chunk: int = UNSET


class ScoreArgs(SettingsArgs, EngineArgs):
    method: str
    features: list[str] = arg(nargs="+")


@job("score")
def score(a: ScoreArgs, p: ScoreSettings) -> None:
    """Score matrix of one method from cached feature stores (numpy streaming or a dask graph)."""
    from aria.attribution.scoring import score_blocks, score_dask
    from aria.io.stores import ScoreWriter, read_features

    row_chunk = p.get("row_chunk", 4096)
    lazy = a.engine == "dask"
    feats = [read_features(f, lazy=lazy, row_chunk=row_chunk) for f in a.features]
    for f, path in zip(feats[1:], a.features[1:]):
        if not (
            np.array_equal(f["train_ids"], feats[0]["train_ids"])
            and np.array_equal(f["query_ids"], feats[0]["query_ids"])
        ):
            raise ValueError(f"{path}: row or column ids differ from {a.features[0]}")
    for f in feats:
        f["lr"] = f["attrs"]["lr"]
    t0 = time.perf_counter()
    with ScoreWriter(
        a.out,
        feats[0]["train_ids"],
        feats[0]["query_ids"],
        attrs={"method": a.method, **p},
        row_chunk=row_chunk,
    ) as w:
        if lazy:
            from aria.parallel import dask_scheduler

            with dask_scheduler(a.scheduler, threads=a.threads):
                w.store(score_dask(a.method, feats, p, row_chunk=row_chunk))
        else:
            for start, block in score_blocks(a.method, feats, p, row_chunk=row_chunk):
                w.write(start, block)
    log.info(
        "%s: wrote %d x %d scores in %.1f s (%s engine)",
        a.method,
        len(feats[0]["train_ids"]),
        len(feats[0]["query_ids"]),
        time.perf_counter() - t0,
        a.engine,
    )


class EmbedCorpusSettings(Settings):
    sr: int
    root: str | None = UNSET


class EmbedCorpusArgs(SettingsArgs):
    encoder: str
    manifest: str


@job("embed-corpus")
def embed_corpus(a: EmbedCorpusArgs, p: EmbedCorpusSettings) -> None:
    """One encoder's frame embeddings of every training track (the costly half of the embedding baseline).

    Its own job, on the corpus alone: it starts as soon as the corpus exists and survives new queries.
    """
    from aria.audio.encoders import get_encoder
    from aria.io.audio import load_audio
    from aria.io.layouts import write_corpus_frames
    from aria.io.tables import read_manifest

    torch_setup(a.threads)
    enc = get_encoder(a.encoder, n_threads=a.threads)
    man = read_manifest(a.manifest, root=p.get("root"))
    man = man[man["split"] == "train"]
    log.info("%s stands in for %s", enc.name, enc.stands_in_for)
    frames = [
        np.asarray(enc.frames(load_audio(f, sr=p["sr"]), p["sr"]))
        for f in progress(list(man["abspath"]), desc=f"{a.encoder} train", unit="file")
    ]
    write_corpus_frames(a.out, man["track_id"].to_numpy(), frames, encoder=a.encoder, sr=p["sr"])
    log.info("%s: %d training tracks, %d frames", a.encoder, len(frames), sum(len(f) for f in frames))


class EmbedBaselineSettings(Settings):
    sr: int
    window_s: float
    hop_s: float


class EmbedBaselineArgs(SettingsArgs):
    encoder: str
    corpus: str
    queries: str
    queries_audio: str
    out_aaa: str


@job("embed-baseline")
def embed_baseline(a: EmbedBaselineArgs, p: EmbedBaselineSettings) -> None:
    """Embedding-similarity baseline (docs/spec.md §2): track-level cosine scores, time-averaged and all-against-all."""
    from aria.attribution.embedding import all_against_all_scores, cosine_scores
    from aria.audio.encoders import get_encoder
    from aria.io.audio import load_audio
    from aria.io.layouts import read_corpus_frames
    from aria.io.stores import ScoreWriter
    from aria.io.tables import read_npz

    torch_setup(a.threads)
    enc = get_encoder(a.encoder, n_threads=a.threads)
    corpus = read_corpus_frames(a.corpus)
    if corpus["encoder"] != a.encoder or corpus["sr"] != p["sr"]:
        raise ValueError(
            f"{a.corpus}: frames of {corpus['encoder']} at {corpus['sr']} Hz, "
            f"expected {a.encoder} at {p['sr']} Hz (rerun aria embed-corpus)"
        )
    qids = read_npz(a.queries)["query_ids"]
    tr = [np.asarray(f, dtype=np.float64) for f in corpus["frames"]]
    qu = [
        np.asarray(enc.frames(load_audio(Path(a.queries_audio) / f"{q}.wav", sr=p["sr"]), p["sr"]), dtype=np.float64)
        for q in progress(qids, desc=f"{a.encoder} queries", unit="file")
    ]
    for out, S in (
        (a.out, cosine_scores(np.stack([f.mean(0) for f in tr]), np.stack([f.mean(0) for f in qu]))),
        (
            a.out_aaa,
            all_against_all_scores(tr, qu, frame_rate=enc.frame_rate, window_s=p["window_s"], hop_s=p["hop_s"]),
        ),
    ):
        with ScoreWriter(
            out,
            corpus["track_ids"],
            qids,
            attrs={"method": a.encoder, "stands_in_for": enc.stands_in_for},
            row_dim="track",
        ) as w:
            w.write(0, S)
    log.info("%s: %d training tracks x %d queries", a.encoder, len(tr), len(qu))


class TracklevelSettings(Settings):
    normalize: str


class TracklevelArgs(SettingsArgs, EngineArgs):
    scores: str
    segments: str


@job("tracklevel")
def tracklevel(a: TracklevelArgs, p: TracklevelSettings) -> None:
    """Track-level matrix (docs/spec.md §3): per-query normalization, then the mean over each track's segments."""
    from aria.attribution.tracklevel import track_level
    from aria.io.stores import ScoreWriter, open_scores
    from aria.io.tables import read_npz

    S, rows, cols = open_scores(a.scores)
    seg = read_npz(a.segments)
    if not np.array_equal(seg["segment_ids"], rows):
        raise ValueError(f"{a.scores}: row ids do not match the segments of {a.segments}")
    attrs = {"normalize": p["normalize"], "source": str(a.scores)}
    if a.engine == "dask":  # a dask graph over the store's chunks, written chunk by chunk
        import dask.array as da

        from aria.attribution.tracklevel import track_level_dask
        from aria.parallel import dask_scheduler

        with dask_scheduler(a.scheduler, threads=a.threads):
            tids, Sb = track_level_dask(da.from_zarr(S), seg["track_ids"], normalize=p["normalize"])
            with ScoreWriter(a.out, tids, cols, attrs=attrs, row_dim="track") as w:
                w.store(Sb)
    else:
        tids, Sb = track_level(S, seg["track_ids"], normalize=p["normalize"])
        with ScoreWriter(a.out, tids, cols, attrs=attrs, row_dim="track") as w:
            w.write(0, Sb)
    log.info("track-level matrix %d x %d (%s, %s engine)", len(tids), len(cols), p["normalize"], a.engine)
