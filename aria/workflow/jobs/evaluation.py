"""Evaluation jobs: diagnostics, LDS, features, nulls, homogeneity, residual, sweeps, planted retrieval.

The job contract (argument dataclasses, registration, the generated command line): :mod:`.base`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from aria.evaluation.documents import homogeneity_doc
from aria.messages import some
from aria.workflow.jobs.base import EngineArgs, PartsArgs, SettingsArgs, SpecArgs, arg, job, opt
from aria.workflow.jobs.settings import UNSET, Settings

log = logging.getLogger("aria")


class PlantedSettings(Settings):
    ks: list[int]
    main_k: int
    domain: str = UNSET


class PlantedArgs(SettingsArgs):
    scores: str
    queries: str
    segments: str | None = opt(None)
    homogeneity: str


@job("planted")
def planted(a: PlantedArgs, p: PlantedSettings) -> None:
    """One method against the planted truth: precision@K, recall@K and reciprocal rank of each
    query's source segments (or, for a track-level matrix given without ``--segments``, the source
    track), and the rank of the planted channel by homogeneity z.
    """
    from aria.evaluation.planted import channel_ranks, planted_retrieval, planted_summary
    from aria.io.matrices import check_matrix, open_matrix
    from aria.io.tables import read_json, read_npz, write_json
    from aria.symbolic.plant import ASPECTS, AUDIO_ASPECTS

    channel_of = AUDIO_ASPECTS if p.get("domain") == "audio" else ASPECTS
    qu, hom = read_npz(a.queries), read_json(a.homogeneity)
    if "source_tracks" not in qu:
        raise ValueError(f"{a.queries}: no planted sources; the planted benchmark needs queries.kind: planted")
    qids = [str(q) for q in qu["query_ids"]]
    m = open_matrix(a.scores)
    if a.segments:  # segment rows: a source's segments are its rows
        seg = read_npz(a.segments)
        check_matrix(m, row_ids=seg["segment_ids"], col_ids=qids, min_cols=1)  # this run's segments and queries
        tracks = np.asarray(seg["track_ids"]).astype(str)
    else:  # track rows
        if m.row_ids is None:
            raise ValueError(f"{a.scores}: no row ids; a track-level matrix must name its training tracks")
        tracks, _ = check_matrix(m, col_ids=qids, min_cols=1)
        missing = sorted(set(map(str, qu["source_tracks"])) - set(tracks))
        if missing:
            raise ValueError(f"{a.scores}: planted source tracks {missing[:5]} are not among its rows")
    if [str(q) for q in hom["query_ids"]] != qids:
        raise ValueError(f"{a.homogeneity}: its queries are not {a.queries}'s, in order")
    sources = [np.flatnonzero(tracks == str(t)) for t in qu["source_tracks"]]
    ret = planted_retrieval(m.data, sources, ks=p["ks"])
    z_c = hom["by_k"][str(p["main_k"])]["z_c"]
    ranks = channel_ranks(z_c, [channel_of[str(x)] for x in qu["aspects"]])
    summ = planted_summary(ret, [str(x) for x in qu["aspects"]], ranks)
    write_json(
        a.out,
        {
            "scores": a.scores,
            "ks": [int(k) for k in p["ks"]],
            "main_k": int(p["main_k"]),
            **summ,
            "per_query": {
                "query_ids": qids,
                "aspects": [str(x) for x in qu["aspects"]],
                "rank": ret["rank"].tolist(),
                "channel_rank": [None if not np.isfinite(r) else float(r) for r in ranks],
            },
        },
    )
    log.info(
        "planted: MRR %.3f, precision@%d %.3f over %d queries",
        summ["all"]["mrr"],
        max(p["ks"]),
        summ["all"]["precision"][max(int(k) for k in p["ks"])],
        len(qids),
    )


@job("unlearning-compare")
def unlearning_compare(a: SpecArgs) -> None:
    """Unlearning scores against other methods' on the same queries (docs/spec.md §8 test-to-train): the
    other method's normalized scores sorted by the unlearning scores, and the Pearson r per query.
    """
    from aria.attribution.tracklevel import track_level
    from aria.evaluation.selfinfluence import compare_stream
    from aria.io.stores import open_scores
    from aria.io.tables import read_npz, write_json

    spec = a.spec
    out = []
    for st in spec["stages"]:
        U, urows, ucols = open_scores(st["unlearning"])
        if st.get("segments"):  # audio: raw τ averaged over each track's segments (a whole track's loss change)
            seg = read_npz(st["segments"])
            if not np.array_equal(seg["segment_ids"], urows):
                raise ValueError(f"{st['unlearning']}: row ids do not match the segments of {st['segments']}")
            urows, U = track_level(U, seg["track_ids"], normalize="none")
        for other in st["others"]:
            S, srows, scols = open_scores(other["scores"])
            if list(map(str, scols)) != list(map(str, ucols)):
                raise ValueError(f"{other['scores']}: its queries differ from {st['unlearning']}'s")
            pos = {str(r): i for i, r in enumerate(srows)}
            missing = [str(r) for r in urows if str(r) not in pos]
            if missing:
                raise ValueError(f"{other['scores']}: no rows for {len(missing)} items, e.g. {missing[:3]}")
            res = compare_stream(U, S, rows=np.asarray([pos[str(r)] for r in urows]))
            out.append({"stage": st["stage"], "other": other["key"], "label": other["label"], **res})
            log.info(
                "%s vs %s: Pearson r %.3f +- %.3f over %d queries",
                st["stage"],
                other["label"],
                res["pearson_mean"],
                res["pearson_std"],
                len(res["pearson"]),
            )
    write_json(a.out, {"comparisons": out})


class DiagnosticsArgs(EngineArgs):
    scores: str
    out: str
    replica: list[str] | None = opt(None, nargs=2)
    replica_params: dict | None = opt(None, json=True)
    replica_note: str | None = opt(None)


@job("diagnostics")
def diagnostics(a: DiagnosticsArgs) -> None:
    """Reliability diagnostics r1, r2_5, c_bar, rho_bar of a score store, plus its spectrum."""
    from aria.evaluation.reliability import centred_diagnostics, gram_stats, reliability_from_stats, v1_constancy
    from aria.evaluation.residual import leading_axis
    from aria.io.stores import store_attrs
    from aria.io.tables import write_json

    if a.engine == "dask":  # the Gram pass as a dask graph over the store's chunks
        import dask.array as da

        from aria.evaluation.reliability import gram_stats_dask
        from aria.io.stores import open_scores
        from aria.parallel import dask_scheduler

        with dask_scheduler(a.scheduler, threads=a.threads):
            stats = gram_stats_dask(da.from_zarr(open_scores(a.scores)[0]), source=str(a.scores))
    else:
        stats = gram_stats(a.scores, progress=True)
    # with r1 after removing each query's mean, for the verdict (the offsets' r1 is c_bar's case)
    res = {**reliability_from_stats(stats), **centred_diagnostics(stats)}
    energy = stats.eigvals()[: min(stats.n, stats.q, 50)] / stats.frobenius_sq
    const = v1_constancy(leading_axis(a.scores, stats=stats).v)
    log.info("%s: %s, v1 constancy %.3f", a.scores, res, const)
    numerics = store_attrs(a.scores).get("numerics")  # unlearning: τ's round-off against its spread
    extra = {"numerics": numerics} if numerics else {}
    extra.update(_replica_doc(a))
    write_json(a.out, {**res, "n": stats.n, "q": stats.q, "energy": energy, "v1_constancy": const, **extra})


def _replica_doc(a) -> dict:
    """``replica``: the agreement of two replicas (the noise diagnostic), or None with the reason."""
    if not a.replica:
        return {"replica": None, "replica_note": a.replica_note or "no replica"}
    from aria.evaluation.agreement import replica_agreement, spearman_brown
    from aria.io.stores import open_scores

    p = a.replica_params or {}
    A, rows_a, cols_a = open_scores(a.replica[0])
    B, rows_b, cols_b = open_scores(a.replica[1])
    if not (np.array_equal(rows_a, rows_b) and np.array_equal(cols_a, cols_b)):
        raise ValueError(
            f"{a.replica[1]}: row or column ids differ from {a.replica[0]}; the replicas must score the same items"
        )
    rep = replica_agreement(A, B, progress=True, source_a=a.replica[0], source_b=a.replica[1])
    rep["members"] = p.get("members", [0, 1])
    if p.get("ensemble", 1) > 1:  # the scores average M members; the replicas are single members
        rep["ensemble"] = int(p["ensemble"])
        rep["ensemble_spearman"] = spearman_brown(rep["spearman"]["q50"], int(p["ensemble"]))
    log.info(
        "replicas %s: Spearman median %.3f (q10 %.3f, q90 %.3f), Pearson median %.3f, shared energy %.3f",
        " vs ".join(a.replica),
        rep["spearman"]["q50"],
        rep["spearman"]["q10"],
        rep["spearman"]["q90"],
        rep["pearson"]["q50"],
        rep["shared_energy"],
    )
    return {"replica": rep}


def _lds_collections(a) -> tuple:
    """Collection (genre) of each training segment and each query, from the manifest and the
    segments' and queries' ``track_ids``; ``(None, None, why)`` where that is not possible.
    """
    from aria.io.tables import read_manifest, read_npz

    if not (getattr(a, "manifest", None) and getattr(a, "segments", None) and getattr(a, "queries", None)):
        return None, None, "no manifest, segments or queries given"
    man = read_manifest(a.manifest, check_files=False)
    if "genre" not in man:
        return None, None, f"{a.manifest} has no genre column"
    genre = dict(zip(man["track_id"].astype(str), man["genre"].astype(str)))
    seg, qu = read_npz(a.segments), read_npz(a.queries)
    if "track_ids" not in seg or "track_ids" not in qu:
        return None, None, "the segments or queries do not name their source tracks"
    return (
        np.array([genre.get(t, "unknown") for t in np.asarray(seg["track_ids"]).astype(str)]),
        np.array([genre.get(t, "unknown") for t in np.asarray(qu["track_ids"]).astype(str)]),
        None,
    )


class LdsGroundTruthSettings(Settings):
    seed: int
    stage: str = UNSET
    alpha: float
    runs: int = UNSET
    recipe: str
    init: str


class LdsGroundTruthArgs(SettingsArgs):
    subsets: list[str] = arg(nargs="+")
    segments: str | None = opt(None)
    queries: str | None = opt(None)
    manifest: str | None = opt(None)


@job("lds-ground-truth")
def lds_ground_truth(a: LdsGroundTruthArgs, p: LdsGroundTruthSettings) -> None:
    """Gather the retrained subsets of one stage into its ground-truth store, with the seeds and
    steps of every run and, given ``--manifest/--segments/--queries``, each segment's and query's
    collection (genre: the partial LDS's genre-mix control and the reference rows).
    """
    from aria.evaluation.lds import seed_noise_ceiling
    from aria.io.stores import write_ground_truth
    from aria.io.tables import read_npz

    parts = [read_npz(f) for f in a.subsets]
    for f, part in zip(a.subsets[1:], parts[1:]):
        if not (
            np.array_equal(part["segment_ids"], parts[0]["segment_ids"])
            and np.array_equal(part["query_ids"], parts[0]["query_ids"])
        ):
            raise ValueError(f"{f}: segment or query ids differ from {a.subsets[0]}")
    ho = np.stack([x["heldout_loss"] for x in parts])
    masks = np.stack([x["mask"] for x in parts])
    targets = np.stack([x["targets"] for x in parts])
    target_runs = np.stack([x["target_runs"] for x in parts])
    seg_col, q_col, why = _lds_collections(a)
    if why:
        log.info("no collection labels: %s", why)
    elif len(seg_col) != masks.shape[1] or len(q_col) != targets.shape[1]:
        raise ValueError(
            f"{a.segments} / {a.queries}: {len(seg_col)} segments and {len(q_col)} queries, but the subsets "
            f"cover {masks.shape[1]} segments and {targets.shape[1]} queries"
        )
    write_ground_truth(
        a.out,
        masks=masks,
        targets=targets,
        target_runs=target_runs,
        train_loss=np.stack([x["train_loss"] for x in parts]),
        heldout_loss=ho,
        seeds=np.stack([x["seeds"] for x in parts]) if all("seeds" in x for x in parts) else None,
        steps=np.stack([x["steps"] for x in parts]) if all("steps" in x for x in parts) else None,
        segment_collection=seg_col,
        query_collection=q_col,
        row_ids=parts[0]["segment_ids"],
        col_ids=parts[0]["query_ids"],
        attrs={**p, "n_subsets": len(parts), "collections_note": why},
    )
    log.info("%d subsets; held-out loss %.3f +- %.3f", len(parts), ho.mean(), ho.std())
    _log_ceiling(seed_noise_ceiling(target_runs))


def _log_ceiling(ceiling: dict) -> None:
    if not ceiling["available"]:
        log.info("no seed-noise ceiling: %s", ceiling["reason"])
        return
    log.info(
        "targets: subset effect / seed noise %.2f of the R-run mean, %.2f of one run (sd %.4f vs %.4f), "
        "run agreement %+.3f, reliability of the %d-run mean %.3f, LDS ceiling %.3f, common share %.3f",
        ceiling["target_ratio"],
        ceiling["ratio"],
        ceiling["subset_sd"],
        ceiling["seed_sd"],
        ceiling["run_agreement"],
        ceiling["runs"],
        ceiling["split_half"],
        ceiling["lds_ceiling"],
        ceiling["common_share"],
    )


class LdsReferencesSettings(Settings):
    n_boot: int
    seed: int
    stage: str = UNSET


class LdsReferencesArgs(SettingsArgs):
    ground_truth: str


@job("lds-references")
def lds_references(a: LdsReferencesArgs, p: LdsReferencesSettings) -> None:
    """The seed-noise ceiling of one stage's ground truth and the LDS of its reference rows
    (:func:`aria.evaluation.lds.reference_matrices`), for the validation table.
    """
    from aria.evaluation.lds import lds_controls, lds_summary, reference_matrices, seed_noise_ceiling, testability
    from aria.io.stores import read_ground_truth
    from aria.io.tables import write_json

    gt = read_ground_truth(a.ground_truth)
    masks, targets = gt["masks"], gt["targets"]
    ceiling = seed_noise_ceiling(gt["target_runs"])
    if gt["attrs"].get("source") == "published" and not ceiling.get("available"):
        ceiling["reason"] = (
            "the published ground truth has one retrained model per subset, so its seed noise cannot be told "
            "from the subset effect (the benchmark's setting: R = 1)"
        )
    _log_ceiling(ceiling)
    controls = lds_controls(masks, targets, gt["segment_collection"])
    mats, skipped = reference_matrices(
        masks.shape[1],
        targets.shape[1],
        random_state=p["seed"],
        segment_collection=gt["segment_collection"],
        query_collection=gt["query_collection"],
    )
    refs = {}
    for name, S in mats.items():
        refs[name] = lds_summary(
            masks.astype(np.float64) @ S,
            targets,
            n_boot=p["n_boot"],
            random_state=p["seed"],
            covariates=controls["covariates"],
        )
        log.info("reference %s: LDS %.3f, partial LDS %.3f", name, refs[name]["lds"], refs[name]["partial_lds"])
    for name, reason in skipped.items():
        log.info("reference %s skipped: %s", name, reason)
    testable, untestable = testability(ceiling)
    write_json(
        a.out,
        {
            "stage": p.get("stage"),
            "ceiling": ceiling,
            "testable": testable,
            "untestable_reason": untestable or None,
            "references": refs,
            "skipped": skipped,
            "controls": controls["names"],
            "controls_note": controls["note"],
            "recipe": gt["attrs"].get("recipe"),
            "init": gt["attrs"].get("init"),
            "runs": int(gt["target_runs"].shape[1]),
            "n_subsets": int(masks.shape[0]),
        },
    )


class LdsSettings(Settings):
    n_boot: int
    seed: int


class LdsArgs(SettingsArgs):
    scores: str
    ground_truth: str


@job("lds")
def lds(a: LdsArgs, p: LdsSettings) -> None:
    """LDS and partial LDS of one method against its stage's ground truth, streaming the score store."""
    from aria.evaluation.lds import lds_controls, lds_summary, predicted_targets
    from aria.io.stores import iter_row_chunks, open_scores, read_ground_truth
    from aria.io.tables import write_json

    gt = read_ground_truth(a.ground_truth)
    S, rows, cols = open_scores(a.scores)
    if not np.array_equal(rows, gt["row_ids"]):
        raise ValueError(f"{a.scores}: row ids differ from the ground truth's training segments ({a.ground_truth})")
    if not np.array_equal(cols, gt["col_ids"]):
        raise ValueError(f"{a.scores}: column ids differ from the ground truth's queries ({a.ground_truth})")
    G = predicted_targets(iter_row_chunks(S), gt["masks"])
    controls = lds_controls(gt["masks"], gt["targets"], gt.get("segment_collection"))
    res = lds_summary(G, gt["targets"], n_boot=p["n_boot"], random_state=p["seed"], covariates=controls["covariates"])
    log.info(
        "%s: LDS %.3f [%.3f, %.3f], partial LDS %.3f (controls: %s) over %d subsets",
        a.scores,
        res["lds"],
        *res["ci"],
        res["partial_lds"],
        ", ".join(controls["names"]),
        res["n_subsets"],
    )
    source = {"ground_truth": gt["attrs"]["source"]} if "source" in gt["attrs"] else {}  # "published": dattri's
    write_json(a.out, {**res, "partial_controls": controls["names"], "query_ids": cols, **source})


class SymbolicFeaturesSettings(Settings):
    block_tokens: int


class SymbolicFeaturesArgs(SettingsArgs):
    segments: str
    out_tracks: str | None = opt(None)


@job("symbolic-features")
def symbolic_features(a: SymbolicFeaturesArgs, p: SymbolicFeaturesSettings) -> None:
    """docs/spec.md §5 symbolic features of every training segment."""
    from aria.io.tables import read_npz, write_npz
    from aria.symbolic.features import extract_many
    from aria.symbolic.notes import shift_tempo_map
    from aria.symbolic.tokenize import track_segment_notes

    d = read_npz(a.segments)
    notes, tempos, whole = [], [], []
    for _, stream, tempo, segs in track_segment_notes(d, block=p["block_tokens"]):
        for t0, seg in segs:
            notes.append(seg)
            tempos.append(shift_tempo_map(tempo, t0))
        whole.append((stream, tempo))
    if len(notes) != len(d["segment_ids"]):
        raise RuntimeError(f"{a.segments}: {len(notes)} decoded segments, {len(d['segment_ids'])} expected")
    feats = extract_many(notes, tempo_maps=tempos, progress=True)
    write_npz(a.out, segment_ids=d["segment_ids"], **feats)
    log.info("features of %d segments: %s", len(notes), {k: v.shape[1] for k, v in feats.items()})
    if a.out_tracks:  # homogeneity.unit: track -- the same features of each whole piece
        from aria.symbolic.tokenize import data_tokenizer

        tok = data_tokenizer(d)
        pieces = [tok.decode(stream) for stream, _ in whole]
        tfeats = extract_many(pieces, tempo_maps=[t for _, t in whole], progress=True)
        write_npz(a.out_tracks, segment_ids=np.asarray(d["stream_tracks"]).astype(str), **tfeats)
        log.info("features of %d whole pieces -> %s", len(pieces), a.out_tracks)


def _evidence(features, manifest):
    """The homogeneity pool of an evidence bundle: ``(ids, features, channels)``.

    The audio pool is the manifest's training tracks (the symbolic pool: every segment).
    """
    from aria.evaluation.homogeneity import evidence_pool
    from aria.io.layouts import read_evidence
    from aria.io.tables import read_manifest

    pool = None
    if manifest is not None:
        man = read_manifest(manifest, check_files=False)
        pool = man.loc[man["split"] == "train", "track_id"].to_numpy()
    return evidence_pool(read_evidence(features), pool=pool)


class NullSettings(Settings):
    ks: list[int]
    n_groups: int
    seed: int


class NullArgs(SettingsArgs):
    features: str
    manifest: str | None = opt(None)


@job("null")
def null(a: NullArgs, p: NullSettings) -> None:
    """Null mean/std of homogeneity over random groups of the training pool, per K."""
    from aria.evaluation.homogeneity import null_distribution
    from aria.io.layouts import write_null

    ids, feats, channels = _evidence(a.features, a.manifest)
    too_big = [k for k in p["ks"] if k > len(ids)]
    if too_big:  # the pool check ran on the corpus; items can still drop out later (feature extraction)
        raise ValueError(
            f"{a.features}: K = {too_big} (homogeneity.ks) exceeds the {len(ids)} pool items with features; "
            "items whose feature extraction failed are listed in the report's data accounting "
            "(evidence/audio_features/*_skipped.csv); lower homogeneity.ks"
        )
    null = null_distribution(feats, channels, ks=p["ks"], n_groups=p["n_groups"], random_state=p["seed"])
    write_null(a.out, null)
    log.info("null over %d pool items, R=%d, K=%s", null["n_pool"], p["n_groups"], p["ks"])


def _confound_labels(ids, a) -> dict | None:
    """Genre (and piece) of each pool item and the genre of each query, or None without a manifest.

    Pool items are tracks, or segments when ``a.segments`` maps segment ids to their tracks;
    a query's genre is that of the held-out track it was generated from (``a.queries``).
    Tracks without a genre in the manifest are ``"unknown"``.
    """
    from aria.io.tables import read_manifest, read_npz

    if not getattr(a, "manifest", None) or not getattr(a, "queries", None):
        return None
    man = read_manifest(a.manifest, check_files=False)
    genres = man["genre"].astype(str) if "genre" in man else ["unknown"] * len(man)
    genre = dict(zip(man["track_id"].astype(str), genres))
    ids = np.asarray(ids).astype(str)
    pieces = ids
    if getattr(a, "segments", None):
        seg = read_npz(a.segments)
        track_of = dict(zip(np.asarray(seg["segment_ids"]).astype(str), np.asarray(seg["track_ids"]).astype(str)))
        if all(i in track_of for i in ids):  # a segment pool (symbolic, homogeneity.unit: segment)
            pieces = np.array([track_of[i] for i in ids])
    q = read_npz(a.queries)
    q_tracks = np.asarray(q["track_ids"]).astype(str)
    q_genre = dict(zip(np.asarray(q["query_ids"]).astype(str), [genre.get(t, "unknown") for t in q_tracks]))
    return {
        "pool_genres": np.array([genre.get(t, "unknown") for t in pieces]),
        "pieces": pieces if not np.array_equal(pieces, ids) else None,
        "query_genre": q_genre,
    }


class HomogeneitySettings(Settings):
    domain: str
    main_k: int
    n_groups: int
    seed: int
    unit: str = UNSET
    normalize: str = UNSET


class HomogeneityArgs(SettingsArgs):
    scores: str
    features: str
    null: str
    manifest: str | None = opt(None)
    segments: str | None = opt(None)
    queries: str | None = opt(None)


@job("homogeneity")
def homogeneity(a: HomogeneityArgs, p: HomogeneitySettings) -> None:
    """Per-query homogeneity z-scores of one method's top-K groups, for every K."""
    from aria.io.layouts import read_null
    from aria.io.stores import open_scores
    from aria.io.tables import write_json

    if p.get("domain") not in ("symbolic", "audio"):
        raise ValueError(f"--params must name the domain, symbolic or audio; got {p.get('domain')!r}")
    audio = p["domain"] == "audio"
    ids, feats, channels = _evidence(a.features, a.manifest if audio else None)
    S, row_ids, col_ids = open_scores(a.scores)
    if p.get("unit") == "track" and not audio:  # symbolic pool of whole pieces: S made track-level (docs/spec.md §3)
        from aria.attribution.tracklevel import track_level
        from aria.io.tables import read_npz

        seg = read_npz(a.segments)
        if not np.array_equal(seg["segment_ids"], row_ids):
            raise ValueError(f"{a.scores}: row ids do not match the segments of {a.segments}")
        row_ids, S = track_level(S, seg["track_ids"], normalize=p["normalize"])
    labels = _confound_labels(ids, a) if "main_k" in p else None
    doc = homogeneity_doc(S, row_ids, col_ids, ids, feats, channels, read_null(a.null), a.scores, confounds=(labels, p))
    write_json(a.out, {**doc, "unit": p.get("unit", "track" if audio else "segment")})


class AudioFeaturesSettings(Settings):
    shard: int
    n_shards: int
    sr: int
    root: str | None = UNSET
    chords: str = UNSET
    omnizart_checkpoint: str = UNSET


class AudioFeaturesArgs(SettingsArgs):
    manifest: str
    out_failures: str


@job("audio-features")
def audio_features(a: AudioFeaturesArgs, p: AudioFeaturesSettings) -> None:
    """docs/spec.md §5 audio features of one shard of tracks (models loaded once per shard).

    Shard s of n takes manifest rows s, s + n, s + 2n, ...
    """
    import pandas as pd

    from aria.audio.features import build_processors, extract_many
    from aria.io.layouts import write_evidence
    from aria.io.tables import read_manifest, write_csv

    man = read_manifest(a.manifest, root=p.get("root"))
    man = man.iloc[p["shard"] :: p["n_shards"]]
    procs = None
    if p.get("chords", "madmom") != "madmom" and len(man):  # the optional Omnizart back end
        procs = build_processors(chords=p["chords"], omnizart_checkpoint=p.get("omnizart_checkpoint"))
    feats, failures = extract_many(list(man["abspath"]), sr=p["sr"], progress=True, processors=procs)
    ok = {str(Path(x)) for x in feats.pop("paths")}
    ids = [t for t, path in zip(man["track_id"], man["abspath"]) if str(Path(path)) in ok]
    write_evidence(a.out, np.array(ids), feats)
    for path, why in failures:
        log.warning("skipped %s: %s", path, why)
    write_csv(a.out_failures, pd.DataFrame(failures, columns=["path", "reason"]))
    log.info("audio features of %d tracks (%d skipped)", len(ids), len(failures))


@job("merge-audio-features")
def merge_audio_features(a: PartsArgs) -> None:
    """Concatenate the feature shards, in manifest order of the tracks that succeeded."""
    from aria.io.tables import read_npz, write_npz

    parts = [read_npz(f) for f in a.parts]
    keys = [k for k in parts[0] if k not in ("track_ids", "chords", "chord_lengths")]
    out = {k: np.concatenate([q[k] for q in parts]) for k in keys}
    out["track_ids"] = np.concatenate([q["track_ids"] for q in parts])
    out["chords"] = np.concatenate([q["chords"] for q in parts])
    out["chord_lengths"] = np.concatenate([q["chord_lengths"] for q in parts])
    if len(out["track_ids"]) == 0:
        raise ValueError("no track yielded audio features; see the shard logs for the reasons")
    write_npz(a.out, **out)
    log.info("audio features of %d tracks from %d shards", len(out["track_ids"]), len(parts))


class ResidualSettings(Settings):
    max_dims_fraction: float
    normalize: str = UNSET


class ResidualArgs(SettingsArgs):
    scores: str
    features: str | None = opt(None)
    null: str | None = opt(None)
    manifest: str | None = opt(None)
    segments: str | None = opt(None)
    out_homogeneity: str | None = opt(None)
    out_alignment: str | None = opt(None)


@job("residual")
def residual(a: ResidualArgs, p: ResidualSettings) -> None:
    """Residual S_res = S - sigma_1 u_1 v_1^T (docs/spec.md §7), streamed; homogeneity on it, the alignment of u_1.

    Writes the residual score store (u_1 and v_1 stored with it). With ``--features`` and
    ``--null`` also the residual's homogeneity JSON (audio segment-level matrices are made
    track-level first, ``--segments``) and the axis-channel alignment of u_1 (Eq. 8) at the
    pool's unit (a track's u_1 = the mean over its segments).
    """
    from aria.attribution.tracklevel import track_index, track_level
    from aria.evaluation.alignment import channel_alignment
    from aria.evaluation.reliability import gram_stats
    from aria.evaluation.residual import leading_axis, residual_blocks
    from aria.io.layouts import read_null
    from aria.io.stores import ScoreWriter, open_scores, row_dim
    from aria.io.tables import read_npz, write_json

    S, rows, cols = open_scores(a.scores)
    ax = leading_axis(S, stats=gram_stats(S, progress=True))
    u = np.zeros(len(rows))
    attrs = {"source": str(a.scores), "sigma1": ax.sigma, "r1_removed": ax.r1}
    rdim = row_dim(S)
    with ScoreWriter(a.out, rows, cols, attrs=attrs, row_chunk=S.chunks[0], row_dim=rdim) as w:
        for start, block, proj in residual_blocks(S, ax.v):
            w.write(start, block)
            u[start : start + len(proj)] = proj / ax.sigma if ax.sigma > 0 else 0.0
        w.add_array("axis_u", u, dims=(rdim,))
        w.add_array("axis_v", ax.v, dims=("query",))
    log.info("removed the leading axis (sigma_1 = %.4g, r1 = %.3f) of %s -> %s", ax.sigma, ax.r1, a.scores, a.out)
    if not a.out_homogeneity:
        return

    ids, feats, channels = _evidence(a.features, a.manifest)
    R, _, _ = open_scores(a.out)
    if a.segments:  # segment-level audio matrix -> the track level, as for S (docs/spec.md §3)
        seg = read_npz(a.segments)
        if not np.array_equal(seg["segment_ids"], rows):
            raise ValueError(f"{a.scores}: row ids do not match the segments of {a.segments}")
        tids, r2t = track_index(seg["track_ids"])
        _, R = track_level(R, seg["track_ids"], normalize=p["normalize"])
        u = np.bincount(r2t, weights=u, minlength=len(tids)) / np.bincount(r2t, minlength=len(tids))
        rows = tids
    doc = homogeneity_doc(R, rows, cols, ids, feats, channels, read_null(a.null), a.out)
    write_json(a.out_homogeneity, {**doc, "r1_removed": ax.r1})

    where = {r: i for i, r in enumerate(rows)}
    missing = [t for t in ids if t not in where]
    if missing:
        raise ValueError(f"{a.scores}: no row for pool item(s) {some(missing)} of {a.features}")
    u_pool = u[[where[t] for t in ids]]
    align = channel_alignment(u_pool, feats, channels, max_dims_fraction=p["max_dims_fraction"])
    align["_fit"].update(unit="track" if a.manifest or a.segments else "segment", r1=ax.r1)
    write_json(a.out_alignment, align)
    fits = {c: (v["a_max"], v["a_r"]) for c, v in align.items() if c != "_fit" and v["a_max"] is not None}
    log.info("alignment (A_max, A_R) of u_1 over %d units: %s", len(u_pool), fits)


class SweepPointSettings(Settings, open=True):
    # and the method's scoring parameters at the grid point
    row_chunk: int = UNSET
    point: dict
    stage: str = UNSET
    normalize: str = UNSET


class SweepPointArgs(SettingsArgs):
    method: str
    features: list[str] = arg(nargs="+")
    evidence: str
    null: str
    manifest: str | None = opt(None)
    segments: str | None = opt(None)
    replica_a: list[str] | None = opt(None, nargs="+")
    replica_b: list[str] | None = opt(None, nargs="+")


@job("sweep-point")
def sweep_point(a: SweepPointArgs, p: SweepPointSettings) -> None:
    """One sensitivity grid point (docs/spec.md §7): the method's matrix at the point's parameters, its
    reliability diagnostics and its homogeneity, written as one JSON (the matrix is not kept).
    """
    import tempfile

    from aria.attribution.scoring import score_blocks
    from aria.attribution.tracklevel import track_level
    from aria.evaluation.reliability import centred_diagnostics, gram_stats, reliability_from_stats
    from aria.io.layouts import read_null
    from aria.io.stores import ScoreWriter, open_scores, read_features
    from aria.io.tables import read_npz, write_json

    feats = [read_features(f) for f in a.features]
    for f in feats:
        f["lr"] = f["attrs"].get("lr")
    run = {k: v for k, v in p.items() if k not in ("point", "normalize", "row_chunk", "stage")}
    row_chunk = p.get("row_chunk", 4096)
    ids, ev, channels = _evidence(a.evidence, a.manifest)
    with tempfile.TemporaryDirectory(prefix="aria-sweep-") as tmp:
        store = Path(tmp) / "scores.zarr"
        with ScoreWriter(store, feats[0]["train_ids"], feats[0]["query_ids"], row_chunk=row_chunk) as w:
            for start, block in score_blocks(a.method, feats, run, row_chunk=row_chunk):
                w.write(start, block)
        st = gram_stats(store)
        diag = {**reliability_from_stats(st), **centred_diagnostics(st), "n": st.n, "q": st.q}
        if a.replica_a:  # the point's noise diagnostic: the same parameters on the replicas' features
            diag["replica"] = _sweep_replica(a, run, row_chunk, store, Path(tmp))
        S, rows, cols = open_scores(store)
        if a.segments:  # audio stage (or symbolic unit: track): the track-level matrix, as for the main row
            seg = read_npz(a.segments)
            rows, S = track_level(S, seg["track_ids"], normalize=p["normalize"])
        doc = homogeneity_doc(S, rows, cols, ids, ev, channels, read_null(a.null), a.features[0])
    out = {
        "method": a.method,
        "stage": p.get("stage"),
        "point": p["point"],
        "params": run,
        "diagnostics": diag,
        "summary": {K: v["summary"] for K, v in doc["by_k"].items()},
    }
    write_json(a.out, out)
    log.info(
        "%s at %s: %s",
        a.method,
        p["point"],
        {c: round(v["mu_z"], 3) for c, v in next(iter(out["summary"].values())).items()},
    )


def _sweep_replica(a, run: dict, row_chunk: int, store, tmp: Path) -> dict:
    """Agreement of a grid point's scores from two ensemble members (aria.evaluation.agreement)."""
    from aria.attribution.scoring import score_blocks
    from aria.evaluation.agreement import replica_agreement
    from aria.io.stores import ScoreWriter, read_features

    paths = []
    for name, files in (("a", a.replica_a), ("b", a.replica_b)):
        if list(files) == list(a.features):
            paths.append(store)  # the point's own scores
            continue
        feats = [read_features(f) for f in files]
        for f in feats:
            f["lr"] = f["attrs"].get("lr")
        path = tmp / f"replica_{name}.zarr"
        with ScoreWriter(path, feats[0]["train_ids"], feats[0]["query_ids"], row_chunk=row_chunk) as w:
            for start, block in score_blocks(a.method, feats, run, row_chunk=row_chunk):
                w.write(start, block)
        paths.append(path)
    rep = replica_agreement(*paths)
    rep.pop("per_query")  # the grid keeps the summaries
    return rep
