"""Workflow commands: one thin command per Snakemake rule.

Each command reads its inputs through :mod:`aria.io`, calls the library, and
writes its outputs atomically. ``aria --help`` lists the commands.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from aria.io.checkpoints import load_model, write_checkpoint
from aria.io.layouts import ragged_item
from aria.messages import some
from aria.runtime import progress
from aria.seeding import stable_seed

log = logging.getLogger("aria")


# --------------------------------------------------------------------------- corpus
def _stable_reason(text: str) -> str:
    """An error message without the memory addresses some libraries print (music21: ``id()=1399…``,
    ``0x7f4f…``), so that the dropped-items tables are identical from run to run.
    """
    import re

    return re.sub(r"0x[0-9a-fA-F]+", "0x…", re.sub(r"id\(\)=\d+", "id()=…", str(text)))


def cmd_demo_collection(a) -> None:
    """Build one collection's share of the embedded demo corpus (MIDI files + part manifest)."""
    import pandas as pd

    from aria.io.midi import write_midi
    from aria.io.music21_corpus import iter_pieces
    from aria.io.stores import atomic_dir
    from aria.io.tables import write_csv
    from aria.symbolic.corpus import synthetic_dynamics, truncate_notes
    from aria.symbolic.notes import seconds_to_beats

    p = json.loads(a.params)
    col, n_want, n_eval = p["collection"], p["n_pieces"], p["n_eval"]
    rows, skipped = [], []
    with atomic_dir(a.out_dir) as tmp:
        tmp.mkdir(parents=True)
        # 4 quarter notes per second (240 bpm) bounds any tempo in these collections
        max_quarters = 4.0 * p["max_duration_s"]
        for src, load in iter_pieces(col, random_state=stable_seed(p["seed"], col), max_quarters=max_quarters):
            if len(rows) >= n_want:
                break
            try:
                notes, tempo = load()
                notes = truncate_notes(notes, p["max_duration_s"])
                if len(notes) < 8:
                    raise ValueError(f"only {len(notes)} notes")
            except Exception as e:  # noqa: BLE001 - any music21 failure skips the piece
                skipped.append((col, src, _stable_reason(f"{type(e).__name__}: {e}")))
                log.warning("skipped %s: %s: %s", src, type(e).__name__, e)
                continue
            if len(np.unique(notes["velocity"])) <= 1:
                notes = synthetic_dynamics(
                    notes,
                    beats=seconds_to_beats(notes["onset"], tempo),
                    random_state=[stable_seed(p["seed"], col), len(rows)],
                )
            track_id = f"{col}-{len(rows):04d}"
            write_midi(tmp / f"{track_id}.mid", notes, tempo_map=tempo)
            rows.append(
                dict(
                    track_id=track_id,
                    path=f"{col}/{track_id}.mid",
                    genre=col,
                    collection=col,
                    source=src,
                    split="eval" if len(rows) < n_eval else "train",
                    duration_s=round(float(notes["offset"].max()), 3),
                )
            )
        if len(rows) < n_want:
            raise RuntimeError(f"collection {col}: only {len(rows)} usable pieces, {n_want} requested")
        write_csv(tmp / "part.csv", pd.DataFrame(rows))
        write_csv(tmp / "skipped.csv", pd.DataFrame(skipped, columns=["collection", "source", "reason"]))
    log.info("%s: %d pieces (%d eval), %d skipped", col, len(rows), n_eval, len(skipped))


def cmd_merge_manifests(a) -> None:
    """Concatenate the demo collections' part manifests into the corpus manifest."""
    import pandas as pd

    from aria.io.tables import read_csv, write_csv, write_dropped

    parts = [read_csv(Path(d) / "part.csv") for d in a.parts]
    skipped = [read_csv(Path(d) / "skipped.csv") for d in a.parts]
    man = pd.concat(parts, ignore_index=True)
    write_csv(a.out, man)
    if a.out_dropped:
        write_dropped(
            a.out_dropped,
            [
                (r.source, "", "corpus", _stable_reason(f"{r.collection}: {r.reason}"), np.nan)
                for sk in skipped
                for r in sk.itertuples()
            ],
        )
    for sk in skipped:
        for r in sk.itertuples():
            log.info("skipped %s (%s): %s", r.source, r.collection, r.reason)
    log.info(
        "demo corpus: %d train, %d eval tracks; %d pieces skipped",
        (man["split"] == "train").sum(),
        (man["split"] == "eval").sum(),
        sum(map(len, skipped)),
    )


def cmd_symbolic_segments(a) -> None:
    """Tokenize every track; cut training tracks into blocks; take eval prompts."""
    import pandas as pd

    from aria.io.midi import read_midi
    from aria.io.tables import read_manifest, write_csv, write_npz
    from aria.symbolic.tokenize import encode, split_blocks

    p = json.loads(a.params)
    block, prompt = p["block_tokens"], p["prompt_tokens"]
    man = read_manifest(a.manifest, root=p.get("root"))
    tr_tok, tr_mask, seg_rows = [], [], []
    streams, stream_tracks, tempos = [], [], []
    ev_prompts, ev_ids, dropped = [], [], []
    parsed, bad = {}, []
    for row in man.itertuples():  # every unreadable file is named in one pass, not just the first
        try:
            parsed[row.track_id] = read_midi(row.abspath)
        except ValueError as e:  # corrupt, empty, drums only: the message starts with the path
            bad.append(str(e))
    if bad:
        raise ValueError(
            f"{a.manifest}: {len(bad)} of {len(man)} MIDI file(s) cannot be used; fix or remove them "
            "from the manifest:\n  " + "\n  ".join(bad)
        )
    for row in man.itertuples():
        notes, tempo = parsed[row.track_id]
        toks = encode(notes)
        if row.split == "train":
            blocks, mask, starts = split_blocks(toks, block=block)
            for b in range(len(blocks)):
                seg_rows.append(
                    dict(
                        segment_id=f"{row.track_id}:{b:03d}",
                        track_id=row.track_id,
                        genre=row.genre,
                        block=b,
                        start_token=int(starts[b]),
                        n_tokens=int(mask[b].sum()),
                    )
                )
            tr_tok.append(blocks)
            tr_mask.append(mask)
            streams.append(toks)
            stream_tracks.append(row.track_id)
            tempos.append(np.asarray(tempo, dtype=float))
        elif len(toks) > prompt:
            ev_prompts.append(toks[:prompt])
            ev_ids.append(row.track_id)
        else:
            log.warning(
                "eval track %s has %d tokens, fewer than the %d-token prompt: no query", row.track_id, len(toks), prompt
            )
            dropped.append(
                (row.track_id, "eval", "segments", f"no query: fewer tokens than the {prompt}-token prompt", len(toks))
            )
    if not seg_rows:
        raise ValueError(f"{a.manifest}: no training segments (no train tracks with notes)")
    if not ev_ids:
        raise ValueError(f"{a.manifest}: no eval track long enough to prompt a query")
    offs = np.cumsum([0] + [len(s) for s in streams])
    toffs = np.cumsum([0] + [len(t) for t in tempos])
    write_npz(
        a.out_train,
        tokens=np.concatenate(tr_tok),
        mask=np.concatenate(tr_mask),
        segment_ids=np.array([r["segment_id"] for r in seg_rows]),
        track_ids=np.array([r["track_id"] for r in seg_rows]),
        streams=np.concatenate(streams),
        stream_offsets=offs,
        stream_tracks=np.array(stream_tracks),
        tempo_maps=np.concatenate(tempos),
        tempo_offsets=toffs,
    )
    write_npz(a.out_eval, prompts=np.stack(ev_prompts), track_ids=np.array(ev_ids))
    write_csv(a.out_csv, pd.DataFrame(seg_rows))
    if a.out_dropped:
        from aria.io.tables import write_dropped

        write_dropped(a.out_dropped, dropped)
    log.info("%d training segments from %d tracks; %d eval prompts", len(seg_rows), len(streams), len(ev_ids))


# --------------------------------------------------------------------------- model
def _model_cfg(p):
    from aria.models.transformer import ModelConfig
    from aria.symbolic.tokenize import VOCAB_SIZE

    return ModelConfig(
        d_model=p["d_model"],
        n_layers=p["n_layers"],
        n_heads=p["n_heads"],
        d_ff=p["d_ff"],
        max_len=p["block_tokens"],
        vocab_size=p.get("vocab_size", VOCAB_SIZE),
    )


def cmd_train(a) -> None:
    """Train one model of the ensemble (member ``seed``) and save its checkpoints."""
    import torch

    from aria.io.tables import load_torch, read_npz, save_torch
    from aria.models.training import train_model

    p = json.loads(a.params)
    torch.set_num_threads(a.threads)
    if p.get("pretrained"):
        # bring-your-own checkpoint: check that it loads and scores the stage's sequences, then adopt it
        model, _ = load_model(p["pretrained"])
        data = read_npz(a.segments)
        with torch.no_grad():
            logits = model(torch.as_tensor(data["tokens"][:2]))
        if logits.shape[-1] <= int(data["tokens"].max()):
            raise ValueError(
                f"{p['pretrained']}: model vocabulary ({logits.shape[-1]}) is smaller than "
                f"the stage's token ids (max {int(data['tokens'].max())})"
            )
        save_torch(a.out, load_torch(p["pretrained"]))
        log.info("adopted pretrained checkpoint %s", p["pretrained"])
        return
    data = read_npz(a.segments)
    cfg = _model_cfg(p)
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
    )
    log.info("training loss per epoch: %s", ", ".join(f"{x:.3f}" for x in res["losses"]))
    write_checkpoint(
        a.out,
        config=cfg.to_dict(),
        seed=p["seed"],
        losses=res["losses"],
        checkpoints=res["checkpoints"],
        final=res["final"],
    )


def cmd_symbolic_queries(a) -> None:
    """Generate one query per eval prompt with the main model; save tokens and MIDI."""
    import torch

    from aria.io.tables import read_npz, write_npz
    from aria.models.training import generate
    from aria.symbolic.tokenize import PAD

    p = json.loads(a.params)
    torch.set_num_threads(a.threads)
    model, _ = load_model(a.model)
    ev = read_npz(a.eval)
    toks = generate(
        model,
        ev["prompts"],
        length=p["block_tokens"],
        temperature=p["temperature"],
        top_k=p["top_k"],
        random_state=p["seed"],
    )
    ids = np.array([f"q-{t}" for t in ev["track_ids"]])
    loss_mask = np.zeros(toks.shape, dtype=bool)
    loss_mask[:, ev["prompts"].shape[1] :] = True  # score only the generated part
    write_npz(a.out, tokens=toks, mask=toks != PAD, loss_mask=loss_mask, query_ids=ids, track_ids=ev["track_ids"])
    _write_query_midi(a.out_midi, ids, toks)
    log.info("generated %d queries of %d tokens", len(ids), toks.shape[1])


def _write_query_midi(folder, query_ids, tokens) -> None:
    """One MIDI file per query with notes, ``<query_id>.mid``, into ``folder`` (written whole or not at all)."""
    from aria.io.midi import write_midi
    from aria.io.stores import atomic_dir
    from aria.symbolic.tokenize import decode

    with atomic_dir(folder) as tmp:
        for qid, t in zip(query_ids, tokens):
            notes = decode(t)
            if len(notes):
                write_midi(Path(tmp) / f"{qid}.mid", notes)


def cmd_symbolic_planted_queries(a) -> None:
    """Planted-influence queries: training pieces' first segments copied, one aspect each, onto
    held-out pieces (aria.symbolic.plant); save tokens, sources, aspects and MIDI.
    """
    from aria.io.midi import read_midi
    from aria.io.tables import read_manifest, read_npz, write_npz
    from aria.symbolic.plant import planted_queries

    p = json.loads(a.params)
    tr = read_npz(a.segments)
    streams = {str(t): ragged_item(tr["streams"], tr["stream_offsets"], i) for i, t in enumerate(tr["stream_tracks"])}
    man = read_manifest(a.manifest, root=p.get("root"))
    hosts = {row.track_id: read_midi(row.abspath)[0] for row in man.itertuples() if row.split == "eval"}
    pl = p["planted"]
    out = planted_queries(
        streams,
        hosts,
        n_sources=pl["n_sources"],
        aspects=pl["aspects"],
        block=p["block_tokens"],
        random_state=p["seed"],
    )
    write_npz(a.out, **out)
    _write_query_midi(a.out_midi, out["query_ids"], out["tokens"])
    log.info(
        "planted %d queries: %d sources x aspects %s, on %d held-out hosts",
        len(out["query_ids"]),
        pl["n_sources"],
        list(pl["aspects"]),
        len(hosts),
    )


def cmd_audio_planted_queries(a) -> None:
    """Planted-influence queries of the audio experiment: the symbolic plants rendered to audio
    (aria.audio.plant) on held-out tracks, tokenized into each stage's first window; save each
    stage's queries with their sources and aspects, and the query audio.
    """
    from aria.audio.corpus import select_excerpt
    from aria.audio.plant import planted_audio, query_sequences
    from aria.audio.stages import ConditioningRVQ
    from aria.audio.tokenizers import MelRVQ, SemanticKMeans
    from aria.io.audio import load_audio, write_wav
    from aria.io.midi import read_midi
    from aria.io.stores import atomic_dir
    from aria.io.tables import read_manifest, read_npz, write_npz
    from aria.symbolic.plant import plant_assignments

    p = json.loads(a.params)
    vocab, pl, sr = _audio_vocab(p), p["planted"], p["sr"]
    window = max(p["windows"].values())
    man = read_manifest(a.manifest, root=p.get("root"))
    midi = read_manifest(a.midi_manifest, root=p.get("midi_root")).set_index("track_id")["abspath"]
    if "programs" not in man.columns:
        raise ValueError(f"{a.manifest}: no 'programs' column; planted audio queries need the rendered demo corpus")
    missing = sorted(set(man["track_id"]) - set(midi.index))
    if missing:
        raise ValueError(f"{a.midi_manifest}: no MIDI for audio tracks {missing[:5]}")

    def notes(tid):
        return select_excerpt(read_midi(midi[tid])[0], duration_s=window)

    train, ev = man[man["split"] == "train"], man[man["split"] == "eval"]
    src_notes = {t: notes(t) for t in progress(list(train["track_id"]), desc="source notes", unit="piece")}
    candidates = sorted(t for t, n in src_notes.items() if len(np.unique(n["onset"])) >= pl.get("min_onsets", 4))
    try:
        plan = plant_assignments(candidates, sorted(ev["track_id"]), pl["n_sources"], pl["aspects"], p["seed"])
    except ValueError as e:
        raise ValueError(
            f"{a.manifest}: {e} (a candidate has at least {pl.get('min_onsets', 4)} distinct onsets in its "
            f"first {window:g} s)"
        ) from e
    paths = dict(zip(man["track_id"], man["abspath"]))
    programs = dict(zip(man["track_id"], man["programs"].astype(str)))
    sources = {s: {"audio": load_audio(paths[s], sr=sr), "notes": src_notes[s]} for s in {x[0] for x in plan}}
    hosts = {h: {"notes": notes(h), "program": int(programs[h].split()[0])} for h in {x[2] for x in plan}}
    ys = planted_audio(sources, hosts, plan, window_s=window, sr=sr)
    # a full copy keeps its training track's conditioning codes (the embedding of the whole
    # recording), so that its every stage window is the training segment's
    tok = read_npz(a.tokens)
    row = {str(t): i for i, t in enumerate(tok["track_ids"])}
    cond_of = [tok["cond"][row[s]] if asp == "full" else None for s, asp, _, _ in plan]
    tk = read_npz(a.tokenizers)
    sem = SemanticKMeans.from_state_dict({k[4:]: v for k, v in tk.items() if k.startswith("sem_")})
    ac = MelRVQ.from_state_dict({k[3:]: v for k, v in tk.items() if k.startswith("ac_")})
    cond = ConditioningRVQ(n_cond=p["cond"]["n_cond"], cond_size=p["cond"]["cond_size"])
    cond.codebooks = tk["cond_codebooks"]
    seqs = query_sequences(
        ys, vocab=vocab, semantic=sem, acoustic=ac, cond=cond, stages=list(p["windows"]), cond_codes=cond_of
    )
    ids = np.array([f"p-{asp}-{s}" for s, asp, _, _ in plan])
    meta = {
        "query_ids": ids,
        "track_ids": np.array([h for _, _, h, _ in plan]),
        "source_tracks": np.array([s for s, _, _, _ in plan]),
        "aspects": np.array([asp for _, asp, _, _ in plan]),
    }
    for stage, q in seqs.items():
        write_npz(Path(a.out_dir) / stage / "queries.npz", **q, **meta)
    with atomic_dir(a.out_audio) as tmp:
        for qid, y in zip(ids, ys):
            write_wav(Path(tmp) / f"{qid}.wav", y, sr)
    log.info(
        "planted %d audio queries of %.0f s: %d sources x aspects %s, on %d held-out hosts",
        len(ids),
        window,
        pl["n_sources"],
        list(pl["aspects"]),
        len(hosts),
    )


def cmd_planted(a) -> None:
    """One method against the planted truth: precision@K, recall@K and reciprocal rank of each
    query's source segments (or, for a track-level matrix given without ``--segments``, the source
    track), and the rank of the planted channel by homogeneity z.
    """
    from aria.evaluation.planted import channel_ranks, planted_retrieval, planted_summary
    from aria.io.matrices import check_matrix, open_matrix
    from aria.io.tables import read_json, read_npz, write_json
    from aria.symbolic.plant import ASPECTS, AUDIO_ASPECTS

    p = json.loads(a.params)
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


def cmd_project(a) -> None:
    """Projected per-example gradients of training segments and queries for one checkpoint."""
    import torch

    from aria.attribution.projection import attributed_params, make_projector, project_gradients
    from aria.io.stores import write_features
    from aria.io.tables import read_npz
    from aria.registry import DEFAULT_PROJECTION

    p = json.loads(a.params)
    torch.set_num_threads(a.threads)
    if p["device"] == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config device is 'cuda' but torch sees no CUDA device")
    model, lr = load_model(a.model, p["checkpoint"])
    tr, qu = read_npz(a.segments), read_npz(a.queries)
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
    kw = dict(
        k=p["k"],
        seed=p["seed"],
        batch_size=p["batch_size"],
        device=p["device"],
        projector=projector,  # one P for training segments and queries, generated once where it fits
        progress=True,
    )
    t0 = time.perf_counter()
    ftr = project_gradients(model, tr["tokens"], tr["mask"], tr.get("loss_mask"), desc="train", **kw)
    fq = project_gradients(model, qu["tokens"], qu["mask"], qu["loss_mask"], desc="queries", **kw)
    dt = time.perf_counter() - t0
    log.info(
        "projected %d segments + %d queries to k=%d (%s) in %.1f s (%.1f rows/s)",
        len(ftr),
        len(fq),
        p["k"],
        kind,
        dt,
        (len(ftr) + len(fq)) / dt,
    )
    write_features(
        a.out,
        train=ftr,
        query=fq,
        train_ids=tr["segment_ids"],
        query_ids=qu["query_ids"],
        attrs={
            "k": p["k"],
            "seed": p["seed"],
            "projection": kind,
            "lr": lr,
            "checkpoint": p["checkpoint"],
            "model": str(a.model),
        },
    )


def _mask_sides(strategy: str) -> tuple[bool, bool]:
    """``(M_U, M_L)`` of a mask strategy (SPEC §8): none, both, or mixed (M_U only)."""
    from aria.attribution.unlearning import MASK_STRATEGIES

    if strategy not in MASK_STRATEGIES:
        raise ValueError(f"mask strategy must be one of {MASK_STRATEGIES}, got {strategy!r}")
    return strategy in ("both", "mixed"), strategy == "both"


def cmd_unlearning_fisher(a) -> None:
    """Diagonal empirical Fisher of one model over its training segments (SPEC §8), cached per (stage, model)."""
    import torch

    from aria.attribution.unlearning import diagonal_fisher, token_batches, token_loss
    from aria.io.tables import read_npz, save_torch
    from aria.models.transformer import fused_attention

    p = json.loads(a.params)
    torch.set_num_threads(a.threads)
    model, _ = load_model(a.model)
    model.to(p["device"])
    tr = read_npz(a.segments)
    _, use_l = _mask_sides(p["mask"])
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
    import torch

    from aria.io.tables import load_torch

    torch.set_num_threads(a.threads)
    model, _ = load_model(a.model)
    model.to(p["device"])
    fisher = load_torch(a.fisher)["fisher"]
    shapes = {n: tuple(q.shape) for n, q in model.named_parameters()}
    bad = [n for n in shapes if n not in fisher or tuple(fisher[n].shape) != shapes[n]]
    if bad:
        raise ValueError(
            f"{a.fisher}: no Fisher entry of the right shape for {len(bad)} parameters of {a.model}, "
            f"e.g. {bad[:3]} (a Fisher of another model?)"
        )
    return model, {n: fisher[n].to(p["device"]) for n in shapes}


def cmd_unlearning_scores(a) -> None:
    """τ(ẑ, z) = L(z; θ') − L(z; θ0) of every training segment for one chunk of queries (SPEC §8),
    in ``precision``; the first ``check`` queries of the chunk are scored again in float64 and in
    float32, for the round-off estimate of :func:`~aria.evaluation.numerics.score_numerics`.
    """
    from aria.attribution.unlearning import example_losses, precision_setup, token_batches, unlearning_scores
    from aria.io.tables import read_npz, write_npz
    from aria.models.transformer import fused_attention

    p = json.loads(a.params)
    model, fisher = _unlearning_model(a, p)
    tr, qu = read_npz(a.segments), read_npz(a.queries)
    use_u, use_l = _mask_sides(p["mask"])
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


def cmd_unlearning_merge(a) -> None:
    """The chunks of ``aria unlearning-scores`` (in query order) as one N x Q score store, with the
    scores' round-off estimate against their spread in the store's ``numerics`` attribute.
    """
    from aria.evaluation.numerics import ERROR_LIMIT, score_numerics
    from aria.io.stores import ScoreWriter
    from aria.io.tables import read_npz

    parts = [read_npz(f) for f in a.chunks]
    rows = parts[0]["train_ids"]
    for f, d in zip(a.chunks, parts):
        if not np.array_equal(d["train_ids"], rows):
            raise ValueError(f"{f}: its training items differ from {a.chunks[0]}'s (chunks of different runs?)")
    precisions = {str(d["precision"]) if "precision" in d else "float32" for d in parts}
    if len(precisions) > 1:
        raise ValueError(f"{a.chunks[0]}: the chunks were computed in different precisions {sorted(precisions)}")
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


def cmd_unlearning_selfinfluence(a) -> None:
    """One grid point of the train-to-train self-influence check (SPEC §8) of one stage."""
    from contextlib import ExitStack

    from aria.attribution.unlearning import model_embeddings, precision_setup, self_influence
    from aria.evaluation.numerics import score_numerics
    from aria.evaluation.selfinfluence import diverse_targets
    from aria.io.tables import read_npz, write_json
    from aria.models.transformer import fused_attention

    p = json.loads(a.params)
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


def cmd_unlearning_compare(a) -> None:
    """Unlearning scores against other methods' on the same queries (SPEC §8 test-to-train): the
    other method's normalized scores sorted by the unlearning scores, and the Pearson r per query.
    """
    from aria.attribution.tracklevel import track_level
    from aria.evaluation.selfinfluence import compare_stream
    from aria.io.stores import open_scores
    from aria.io.tables import read_npz, write_json

    spec = json.loads(a.spec)
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


def cmd_kfac_covariance(a) -> None:
    """KFAC factors E[x x^T], E[delta delta^T] of every nn.Linear layer of one model (LoGra, FactGraSS)."""
    import torch

    from aria.attribution.factored import kfac_covariance
    from aria.io.tables import read_npz, write_npz

    p = json.loads(a.params)
    torch.set_num_threads(a.threads)
    model, _ = load_model(a.model)
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
    write_npz(a.out, **{f"{n}|{f}": v for n, c in cov.items() for f, v in c.items()})


def cmd_project_factored(a) -> None:
    """LoGra or FactGraSS features of the training segments and queries of one model."""
    import torch

    from aria.attribution.factored import project_factored
    from aria.io.stores import write_features
    from aria.io.tables import read_npz

    p = json.loads(a.params)
    torch.set_num_threads(a.threads)
    if p["device"] == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config device is 'cuda' but torch sees no CUDA device")
    model, lr = load_model(a.model)
    tr, qu = read_npz(a.segments), read_npz(a.queries)
    cov = None
    if a.covariance:
        cov = {}
        for key, v in read_npz(a.covariance).items():
            name, _, f = key.partition("|")
            cov.setdefault(name, {})[f] = v
    kw = dict(method=a.method, params=p, covariance=cov, batch_size=p["batch_size"], device=p["device"], progress=True)
    t0 = time.perf_counter()
    ftr, layers = project_factored(model, tr["tokens"], tr["mask"], tr.get("loss_mask"), desc="train", **kw)
    fq, _ = project_factored(model, qu["tokens"], qu["mask"], qu["loss_mask"], desc="queries", **kw)
    dt = time.perf_counter() - t0
    log.info(
        "%s: %d segments + %d queries, %d layers, total k = %d, in %.1f s (%.1f rows/s)",
        a.method,
        len(ftr),
        len(fq),
        len(layers),
        ftr.shape[1],
        dt,
        (len(ftr) + len(fq)) / dt,
    )
    write_features(
        a.out,
        train=ftr,
        query=fq,
        train_ids=tr["segment_ids"],
        query_ids=qu["query_ids"],
        # the config params first, so that the per-layer "k" and the "layers" selection do not
        # overwrite the store's total width and its column blocks
        attrs={
            **p,
            "method": a.method,
            "k_total": int(ftr.shape[1]),
            "blocks": layers,
            "lr": lr,
            "model": str(a.model),
        },
    )


# --------------------------------------------------------------------------- scores
def cmd_score(a) -> None:
    """Score matrix of one method from cached feature stores (numpy streaming or a dask graph)."""
    from aria.attribution.scoring import score_blocks, score_dask
    from aria.io.stores import ScoreWriter, read_features

    p = json.loads(a.params)
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


def cmd_diagnostics(a) -> None:
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

    p = json.loads(a.replica_params or "{}")
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


# --------------------------------------------------------------------------- ground truth (LDS)
def cmd_lds_retrain(a) -> None:
    """Retrain on one random subset of a stage's training segments; targets f_q = -loss (SPEC §9).

    Run r of subset m trains with seed ``base_seed + m * runs + r`` (:func:`retrain_seeds`).
    Recipe ``steps``: every run takes as many optimizer steps as ensemble member 0 took on all
    N segments (``epochs * ceil(N / batch_size)``, the same learning-rate schedule length);
    ``epochs``: ``epochs`` passes over the subset (about alpha times the steps). Init ``shared``:
    every run starts from member 0's initial weights (seed ``member_seed``) and its own seed
    draws the data order; ``fresh``: its own seed draws the initial weights too.
    """
    import math

    import torch

    from aria.evaluation.lds import counterfactual_targets, retrain_seeds, subset_mask
    from aria.io.tables import read_npz, write_npz

    p = json.loads(a.params)
    torch.set_num_threads(a.threads)
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
        model_cfg=_model_cfg(model),
        epochs=model["epochs"],
        lr=model["lr"],
        batch_size=model["batch_size"],
        seeds=seeds,
        progress=True,
        total_steps=total_steps,
        init_state=p["member_seed"] if init == "shared" else None,
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


def cmd_lds_ground_truth(a) -> None:
    """Gather the retrained subsets of one stage into its ground-truth store, with the seeds and
    steps of every run and, given ``--manifest/--segments/--queries``, each segment's and query's
    collection (genre: the partial LDS's genre-mix control and the reference rows).
    """
    from aria.evaluation.lds import seed_noise_ceiling
    from aria.io.stores import write_ground_truth
    from aria.io.tables import read_npz

    p = json.loads(a.params)
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


def cmd_lds_references(a) -> None:
    """The seed-noise ceiling of one stage's ground truth and the LDS of its reference rows
    (:func:`aria.evaluation.lds.reference_matrices`), for the validation table.
    """
    from aria.evaluation.lds import lds_controls, lds_summary, reference_matrices, seed_noise_ceiling, testability
    from aria.io.stores import read_ground_truth
    from aria.io.tables import write_json

    p = json.loads(a.params)
    gt = read_ground_truth(a.ground_truth)
    masks, targets = gt["masks"], gt["targets"]
    ceiling = seed_noise_ceiling(gt["target_runs"])
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


def cmd_lds(a) -> None:
    """LDS and partial LDS of one method against its stage's ground truth, streaming the score store."""
    from aria.evaluation.lds import lds_controls, lds_summary, predicted_targets
    from aria.io.stores import iter_row_chunks, open_scores, read_ground_truth
    from aria.io.tables import write_json

    p = json.loads(a.params)
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
    write_json(a.out, {**res, "partial_controls": controls["names"], "query_ids": cols})


# --------------------------------------------------------------------------- features
def cmd_symbolic_features(a) -> None:
    """SPEC §5 symbolic features of every training segment."""
    from aria.io.tables import read_npz, write_npz
    from aria.symbolic.features import extract_many
    from aria.symbolic.notes import shift_tempo_map
    from aria.symbolic.tokenize import segment_notes

    p = json.loads(a.params)
    d = read_npz(a.segments)
    notes, tempos = [], []
    for i in range(len(d["stream_tracks"])):
        stream = d["streams"][d["stream_offsets"][i] : d["stream_offsets"][i + 1]]
        tempo = d["tempo_maps"][d["tempo_offsets"][i] : d["tempo_offsets"][i + 1]]
        for t0, seg in segment_notes(stream, block=p["block_tokens"]):
            notes.append(seg)
            tempos.append(shift_tempo_map(tempo, t0))
    if len(notes) != len(d["segment_ids"]):
        raise RuntimeError(f"{a.segments}: {len(notes)} decoded segments, {len(d['segment_ids'])} expected")
    feats = extract_many(notes, tempo_maps=tempos, progress=True)
    write_npz(a.out, segment_ids=d["segment_ids"], **feats)
    log.info("features of %d segments: %s", len(notes), {k: v.shape[1] for k, v in feats.items()})
    if a.out_tracks:  # homogeneity.unit: track -- the same features of each whole piece
        from aria.symbolic.tokenize import decode

        whole, whole_tempos = [], []
        for i in range(len(d["stream_tracks"])):
            whole.append(decode(d["streams"][d["stream_offsets"][i] : d["stream_offsets"][i + 1]]))
            whole_tempos.append(d["tempo_maps"][d["tempo_offsets"][i] : d["tempo_offsets"][i + 1]])
        tfeats = extract_many(whole, tempo_maps=whole_tempos, progress=True)
        write_npz(a.out_tracks, segment_ids=np.asarray(d["stream_tracks"]).astype(str), **tfeats)
        log.info("features of %d whole pieces -> %s", len(whole), a.out_tracks)


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


def cmd_null(a) -> None:
    """Null mean/std of homogeneity over random groups of the training pool, per K."""
    from aria.evaluation.homogeneity import null_distribution
    from aria.io.layouts import write_null

    p = json.loads(a.params)
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


def _confounds_doc(tab, K, col_ids, feats, channels, null, labels, p) -> dict:
    """Genre breakdown, genre-stratified null and same-piece share at K (SPEC §7)."""
    from aria.evaluation.confounds import (
        genre_breakdown,
        null_same_piece_share,
        same_piece_share,
        stratified_zscores,
    )

    t = tab["by_k"][K]
    q_genres = [labels["query_genre"].get(str(q), "unknown") for q in col_ids]
    pool_counts = dict(zip(*np.unique(labels["pool_genres"], return_counts=True)))
    strat = stratified_zscores(
        feats,
        channels,
        null["scales"],
        t["groups"],
        labels["pool_genres"],
        t["H_c"],
        n_groups=p["n_groups"],
        random_state=p["seed"],
    )
    doc = {
        "k": int(K),
        "query_genres": q_genres,
        "pool_genres": {str(g): int(n) for g, n in pool_counts.items()},
        "genre": {c: genre_breakdown(t["z_c"][c], q_genres) for c in channels},
        "stratified": {
            "z_c": {c: np.asarray(z).tolist() for c, z in strat["z_c"].items()},
            "summary": strat["summary"],
            "n_mixes": strat["n_mixes"],
            "n_groups": strat["n_groups"],
        },
    }
    if labels["pieces"] is not None:
        share = same_piece_share(t["groups"], labels["pieces"])
        doc["same_piece"] = {
            "share": share.tolist(),
            "mean_share": float(share.mean()),
            "null_share": null_same_piece_share(labels["pieces"]),
        }
    log.info(
        "K=%d confounds: stratified mu_z %s; genre SD %s%s",
        K,
        {c: round(s["mu_z"], 3) for c, s in strat["summary"].items()},
        {c: None if v["sd_mu_z"] is None else round(v["sd_mu_z"], 3) for c, v in doc["genre"].items()},
        f"; same-piece share {doc['same_piece']['mean_share']:.3f} (null {doc['same_piece']['null_share']:.3f})"
        if "same_piece" in doc
        else "",
    )
    return doc


def _homogeneity_doc(S, row_ids, col_ids, ids, feats, channels, null, source, *, confounds=None) -> dict:
    """The homogeneity JSON of one score matrix whose rows are ``row_ids`` (pool items ``ids``).

    ``confounds = (labels, params)`` from :func:`_confound_labels` and the job's params
    (``main_k``, ``n_groups``, ``seed``) adds the genre and same-piece checks at main_k.
    """
    from aria.evaluation.homogeneity import homogeneity_table

    if np.array_equal(row_ids, ids):
        tab = homogeneity_table(S, feats, channels, null)
    else:
        # track-level audio matrix: rows are the training tracks with segments; the pool
        # is those with features (a track whose audio features failed is left out)
        where = {r: i for i, r in enumerate(row_ids)}
        missing = [t for t in ids if t not in where]
        if missing:
            raise ValueError(f"{source}: no score row for pool track(s) {some(missing)}")
        sel = np.array([where[t] for t in ids])
        if len(sel) < len(row_ids):
            log.warning("%d score rows have no features and are left out of the pool", len(row_ids) - len(sel))
        tab = homogeneity_table(np.asarray(S[:])[sel], feats, channels, null)
        row_ids = np.asarray(row_ids)[sel]
    out = {
        "scores": str(source),
        "channels": list(channels),
        "query_ids": np.asarray(col_ids).tolist(),
        "ks": list(tab["ks"]),
        "by_k": {},
    }
    for K, t in tab["by_k"].items():
        out["by_k"][str(K)] = {
            "summary": t["summary"],
            "summary_f": t["summary_f"],
            "z_c": {c: np.asarray(z).tolist() for c, z in t["z_c"].items()},
            "top_ids": np.asarray(row_ids)[t["groups"]].tolist(),
        }
        log.info("K=%d: %s", K, {c: round(s["mu_z"], 3) for c, s in t["summary"].items()})
    if confounds is not None and confounds[0] is not None:
        labels, p = confounds
        out["confounds"] = _confounds_doc(tab, int(p["main_k"]), col_ids, feats, channels, null, labels, p)
        out["empty"] = _empty_doc(tab, int(p["main_k"]), ids, feats, channels, source)
    return out


EMPTY_DOMINATES = 0.5  # a G_K whose items are on average more than half empty in a channel gets a warning
#: what an empty channel usually means, for the cards' warnings (aria.evaluation.degenerate)
EMPTY_EXAMPLES = {
    "dynamic": "one velocity throughout, as in MIDI without dynamics",
    "harmony": "no vertical interval in a single line",
    "harmonic": "no chord change found",
    "rhythmic": "no beat found",
}


def _num2(x) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:+.2f}"


def _empty_doc(tab, K, ids, feats, channels, source) -> dict:
    """Pool items with empty features per channel and feature, and their mean share of G_K (SPEC §5)."""
    from aria.evaluation.degenerate import empty_features, empty_in_channels, group_empty_share

    per_f = empty_features(feats)
    per_c = empty_in_channels(feats, channels)
    share = {c: float(group_empty_share(tab["by_k"][K]["groups"], m).mean()) for c, m in per_c.items()}
    dominated = [c for c, v in share.items() if v > EMPTY_DOMINATES]
    for c, m in per_c.items():
        if m.any():
            log.info(
                "%d of %d pool items have an empty %s feature, e.g. %s",
                m.sum(),
                len(m),
                c,
                some(np.asarray(ids)[m]),
            )
    if dominated:
        log.warning(
            "%s: at K=%d the top-K groups are on average more than half items with empty %s features",
            source,
            K,
            ", ".join(dominated),
        )
    return {
        "k": int(K),
        "n_pool": len(ids),
        "pool_count": {c: int(m.sum()) for c, m in per_c.items()},
        "pool_count_f": {f: int(m.sum()) for f, m in per_f.items()},
        "group_share": share,
        "dominated": dominated,
    }


def cmd_homogeneity(a) -> None:
    """Per-query homogeneity z-scores of one method's top-K groups, for every K."""
    from aria.io.layouts import read_null
    from aria.io.stores import open_scores
    from aria.io.tables import write_json

    p = json.loads(a.params) if a.params else {}
    audio = p.get("domain", "audio" if a.manifest and not a.segments else "symbolic") == "audio"
    ids, feats, channels = _evidence(a.features, a.manifest if audio else None)
    S, row_ids, col_ids = open_scores(a.scores)
    if p.get("unit") == "track" and not audio:  # symbolic pool of whole pieces: S made track-level (SPEC §3)
        from aria.attribution.tracklevel import track_level
        from aria.io.tables import read_npz

        seg = read_npz(a.segments)
        if not np.array_equal(seg["segment_ids"], row_ids):
            raise ValueError(f"{a.scores}: row ids do not match the segments of {a.segments}")
        row_ids, S = track_level(S, seg["track_ids"], normalize=p["normalize"])
    labels = _confound_labels(ids, a) if "main_k" in p else None
    doc = _homogeneity_doc(
        S, row_ids, col_ids, ids, feats, channels, read_null(a.null), a.scores, confounds=(labels, p)
    )
    write_json(a.out, {**doc, "unit": p.get("unit", "track" if audio else "segment")})


def _row_costs(spec: str, device: str) -> dict:
    """Each report row's cost from its jobs' benchmark files and its stores' bytes (SPEC §7)."""
    from aria.evaluation.cost import row_cost
    from aria.io.tables import disk_usage, read_benchmark

    out = {}
    for key, files in json.loads(spec).items():
        if not files:  # an external matrix: computed elsewhere
            continue
        out[key] = row_cost(
            [read_benchmark(f) for f in files.get("attribution", [])],
            [read_benchmark(f) for f in files.get("training", [])],
            store_bytes=sum(disk_usage(f) for f in files.get("stores", [])),
            device=device,
        )
        if out[key]["n_missing"]:
            log.warning("%s: %d benchmark file(s) missing, its cost is a lower bound", key, out[key]["n_missing"])
    return out


def cmd_check_pool(a) -> None:
    """Every K against the homogeneity pool left after the filters, and the surviving queries (before training)."""
    from aria.evaluation.accounting import pool_check
    from aria.io.tables import read_csv, read_manifest, read_npz, write_json

    p = json.loads(a.params)
    if a.manifest:  # audio: the pool is the training tracks the corpus step kept
        man = read_manifest(a.manifest, check_files=False)
        n_pool, n_q = int((man["split"] == "train").sum()), int((man["split"] == "eval").sum())
        n_q = int(p.get("n_queries", n_q))  # planted queries: n_sources x aspects
        pool = f"training tracks left after the corpus filters ({a.manifest})"
        fix = "lower homogeneity.ks or relax the corpus filters (audio.corpus)"
        more = "add eval tracks to the audio manifest (split eval; each is one query) or relax audio.corpus.filters"
    else:  # symbolic: segments, or whole pieces with homogeneity.unit: track
        seg = read_csv(a.segments)
        unit = p.get("unit", "segment")
        n_pool = int(seg["track_id"].nunique() if unit == "track" else len(seg))
        n_q = len(read_npz(a.queries)["track_ids"])
        pool = f"training {'pieces' if unit == 'track' else 'segments'} ({a.segments})"
        fix = "lower homogeneity.ks or use a larger corpus"
        more = "hold out more pieces: split eval rows in the manifest (corpus.demo.n_eval for the demo corpus)"
    res = pool_check(n_pool, n_q, p["ks"], min_queries=p["min_queries"], pool=pool, fix=fix, add_queries=more)
    for w in res["warnings"]:
        log.warning("%s", w)
    if res["errors"]:
        raise ValueError("; ".join(res["errors"]))
    write_json(a.out, res)
    log.info("pool of %d items, %d queries: every K in %s fits", n_pool, n_q, p["ks"])


def _accounting(a, p) -> dict | None:
    """What each step kept and dropped (report section "Data accounting")."""
    import pandas as pd

    from aria.io.tables import read_csv, read_dropped, read_json, read_manifest, read_npz

    if not a.pool:
        return None
    dropped = read_dropped(a.dropped or [])
    man = read_manifest(a.manifest, root=p.get("root"), check_files=False) if a.manifest else None
    if a.feature_failures:  # audio feature extraction: (absolute path, reason) per shard
        by_path = {} if man is None else dict(zip(man["abspath"].astype(str), zip(man["track_id"], man["split"])))
        rows = []
        for f in a.feature_failures:
            for r in read_csv(f).itertuples():
                tid, split = by_path.get(str(r.path), (str(r.path), ""))
                rows.append(dict(track_id=tid, split=split, step="features", reason=r.reason, value=np.nan))
        dropped = pd.concat([dropped, pd.DataFrame(rows, columns=dropped.columns)], ignore_index=True)
    counts = []
    for stage, seg_csv, q in zip(p["stages"], a.segments_csv or [], a.queries or [], strict=True):
        seg = read_csv(seg_csv)
        row = {
            "stage": stage,
            "training segments": len(seg),
            "training tracks with segments": seg["track_id"].nunique(),
        }
        if man is not None:
            row["training tracks"] = int((man["split"] == "train").sum())
            row["held-out tracks"] = int((man["split"] == "eval").sum())
        row["queries"] = len(read_npz(q)["query_ids"])
        counts.append(row)
    return {"dropped": dropped.to_dict("records"), "counts": counts, "pool": read_json(a.pool)}


def _unlearning_docs(a, p) -> dict | None:
    """The self-influence grid points and the comparison of a report, or None when neither ran."""
    from aria.io.tables import read_json

    grid = [read_json(f) for f in a.selfinfluence or []]
    comp = [c for f in a.unlearning_compare or [] for c in read_json(f)["comparisons"]]
    if not grid and not comp:
        return None
    return {"grid": grid, "compare": comp, "reason": p.get("selfinfluence_reason", "")}


def cmd_report(a) -> None:
    """report.html, report.md and summary.json from diagnostics and homogeneity."""
    import os

    from aria.io.stores import atomic_file
    from aria.io.tables import read_json, read_manifest, write_json, write_report_assets
    from aria.report import compose

    p = json.loads(a.params)
    keys = p["rows"]
    diags = [read_json(f) for f in a.diagnostics]
    homs = [read_json(f) for f in a.homogeneity]
    media = cards = None
    if a.cards:  # the per-query section links to the evidence cards (paths relative to report.html)
        rel = os.path.relpath(a.cards, os.path.dirname(os.path.abspath(a.out_html)))
        cards = [
            {**e, **{k: f"{rel}/{e[k]}" for k in ("card", "player", "midi") if e.get(k)}}
            for e in read_json(Path(a.cards) / "index.json")
        ]
    elif p.get("domain") == "audio":
        report_dir = os.path.dirname(os.path.abspath(a.out_html))
        man = read_manifest(a.manifest, root=p.get("root"))
        media = {
            "tracks": {t: os.path.relpath(f, report_dir) for t, f in zip(man["track_id"], man["abspath"])},
            "queries": os.path.relpath(a.queries_audio, report_dir),
        }
    assets = {}
    html, md, summary = compose(
        keys,
        diags,
        homs,
        experiment=p["experiment"],
        main_k=p["main_k"],
        domain=p.get("domain", "symbolic"),
        labels=p.get("labels"),
        media=media,
        cards=cards,
        lds=dict(zip(p["lds_rows"], [read_json(f) for f in a.lds], strict=True)) if a.lds else None,
        lds_references={d["stage"]: d for d in map(read_json, a.lds_references)} if a.lds_references else None,
        residual=[read_json(f) for f in a.homogeneity_residual] if a.homogeneity_residual else None,
        alignment=[read_json(f) for f in a.alignment] if a.alignment else None,
        verdict_thresholds=p.get("verdict"),
        reference_seed=p.get("reference_seed"),
        cost=_row_costs(a.cost, p.get("device", "cpu")) if a.cost else None,
        accounting=_accounting(a, p),
        sensitivity=[read_json(f) for f in a.sensitivity] if a.sensitivity else None,
        unlearning=_unlearning_docs(a, p),
        assets=assets,
        planted=dict(zip(keys, [read_json(f) for f in a.planted], strict=True)) if a.planted else None,
    )
    if a.out_figures or a.out_tables:  # the pieces snakemake --report shows (rules/report.smk)
        write_report_assets(a.out_figures, a.out_tables, figures=assets["figures"], tables=assets["tables"])
    with atomic_file(a.out_html) as tmp:
        tmp.write_text(html, encoding="utf-8")
    with atomic_file(a.out_md) as tmp:
        tmp.write_text(md, encoding="utf-8")
    write_json(a.out_summary, summary)
    log.info("report for %d rows -> %s", len(keys), a.out_html)


# --------------------------------------------------------------------------- audio
def cmd_audio_demo_corpus(a) -> None:
    """Render the symbolic demo's MIDI pieces to audio with varied General MIDI instruments."""
    import pandas as pd

    from aria.audio.corpus import assign_programs, select_excerpt, stable_seed
    from aria.audio.render import render_midi
    from aria.io.audio import silence_fraction, write_wav
    from aria.io.midi import read_midi
    from aria.io.stores import atomic_dir
    from aria.io.tables import read_manifest, write_csv, write_dropped

    p = json.loads(a.params)
    man = read_manifest(a.midi_manifest)
    rows, skipped = [], []
    want = {"train": p["n_train"], "eval": p["n_eval"]}
    got = {"train": 0, "eval": 0}
    rng = np.random.default_rng(p["seed"])
    order = rng.permutation(len(man))
    with atomic_dir(a.out_dir) as tmp:
        (tmp / "audio").mkdir(parents=True)
        for i in progress(order, desc="render", unit="piece", name=lambda i: man["abspath"].iloc[i]):
            row = man.iloc[i]
            if got[row["split"]] >= want[row["split"]]:
                continue
            notes, _ = read_midi(row["abspath"])
            notes = select_excerpt(notes, duration_s=p["duration_s"])
            if notes.size == 0 or notes["offset"].max() < p["min_duration_s"]:
                dur = float(notes["offset"].max()) if notes.size else 0.0
                skipped.append((row["track_id"], row["split"], "render", f"shorter than {p['min_duration_s']} s", dur))
                continue
            tracks = np.unique(notes["track"])
            programs = dict(
                zip(tracks.tolist(), assign_programs(len(tracks), random_state=stable_seed(p["seed"], row["track_id"])))
            )
            y = render_midi(
                notes,
                programs=programs,
                sr=p["sr"],
                duration_s=min(p["duration_s"], float(notes["offset"].max()) + 1.0),
            )
            share = silence_fraction(y, sr=p["sr"])
            if share > p["max_silence_share"]:
                skipped.append(
                    (row["track_id"], row["split"], "render", f"silence share > {p['max_silence_share']}", share)
                )
                continue
            write_wav(tmp / "audio" / f"{row['track_id']}.wav", y, p["sr"])
            rows.append(
                dict(
                    track_id=row["track_id"],
                    path=f"audio/{row['track_id']}.wav",
                    genre=row["genre"],
                    split=row["split"],
                    duration_s=round(len(y) / p["sr"], 3),
                    silence_share=round(share, 4),
                    programs=" ".join(map(str, programs.values())),
                )
            )
            got[row["split"]] += 1
        for split in want:
            if got[split] < want[split]:
                raise RuntimeError(
                    f"{a.midi_manifest}: only {got[split]} usable {split} pieces, {want[split]} requested"
                )
        write_csv(tmp / "manifest.csv", pd.DataFrame(rows))
        write_dropped(tmp / "dropped.csv", skipped)
    for tid, _, _, why, value in skipped:
        log.info("skipped %s: %s (%.3g)", tid, why, value)
    log.info("audio demo corpus: %d train, %d eval tracks at %d Hz", got["train"], got["eval"], p["sr"])


def _empty_split_message(source, empty, listed, kept, lost, dropped_path) -> str:
    """Why the import left a split without tracks.

    Per empty split: what the manifest listed and what left each track out (the steps of ``lost``,
    with the first track's reason as an example); then the counts kept of each split.
    """
    from collections import Counter

    parts = []
    for split in empty:
        rows = [r for r in lost if r[1] == split]
        if not listed[split]:
            parts.append(f"no row of the manifest has split {split}")
            continue
        kinds = Counter(
            "unreadable" if r[3].startswith("unreadable") else r[3] if r[2] == "import" else f"filtered: {r[3]}"
            for r in rows
        )
        why = ", ".join(f"{n} {k}" for k, n in kinds.items())
        eg = f"; e.g. {rows[0][0]}: {rows[0][3].rstrip('.')}" if rows else ""
        parts.append(
            f"the {split} split is empty: all {listed[split]} {split} track(s) were left out ({why}){eg}; fix or "
            f"replace those files, relax audio.corpus.filters or list more {split} tracks"
        )
    kept_n = {s: int((kept["split"] == s).sum()) for s in ("train", "eval")}
    msg = (
        f"{source}: " + "; ".join(parts) + ". The audio experiment needs train tracks (the training pool) and "
        f"eval tracks (the queries); kept {kept_n['train']} of {listed['train']} train and "
        f"{kept_n['eval']} of {listed['eval']} eval tracks ({listed['train'] + listed['eval']} listed)"
    )
    return msg + (f". Every track left out, with its reason: {dropped_path}" if dropped_path else "")


def cmd_audio_import(a) -> None:
    """Import a user audio corpus (manifest or FMA metadata), apply the quality filters, write the manifest."""
    import pandas as pd

    from aria.audio.corpus import filter_tracks
    from aria.io.audio import load_audio, silence_fraction
    from aria.io.fma import fma_audio_path, read_audio_manifest, read_fma_tracks
    from aria.io.tables import write_csv, write_dropped

    p = json.loads(a.params)
    lost = []  # (track_id, split, step, reason, value) of every track left out
    if p["kind"] == "fma":
        source = p["fma"]["tracks_csv"]
        df = read_fma_tracks(source, subset=p["fma"].get("subset"))
        df["abspath"] = [str(fma_audio_path(p["fma"]["audio_dir"], t)) for t in df["track_id"]]
        exists = np.array([Path(x).is_file() for x in df["abspath"]])
        for t, sp in zip(df.loc[~exists, "track_id"], df.loc[~exists, "split"]):
            log.warning("skipped %s: no audio file", t)
            lost.append((t, sp, "import", "no audio file", np.nan))
        df = df[exists]
    else:
        source = p["audio_folder"]["manifest"]
        df = read_audio_manifest(source, root=p["audio_folder"]["root"])
    # tracks per split as listed, before any is left out (FMA's missing files are already in lost)
    listed = {s: int((df["split"] == s).sum()) + sum(r[1] == s for r in lost) for s in ("train", "eval")}
    flt = p.get("filters", {})
    min_dur = float(flt.get("min_duration_s", 1.0))
    shares, bad = [], []
    rows = list(zip(df["track_id"], df["abspath"], df["split"]))
    for t, f, split in progress(rows, desc="import", unit="file", name=lambda r: r[1]):
        try:
            y = load_audio(f, sr=p["sr"])
        except (ValueError, OSError) as e:  # corrupt, truncated, empty, not audio: skipped with the reason
            log.warning("skipped %s: %s", t, e)
            bad.append(t)
            shares.append(np.nan)
            lost.append((t, split, "import", f"unreadable: {e}", np.nan))
            continue
        if len(y) < min_dur * p["sr"]:  # a clip too short to tokenize, train on or analyse
            log.warning("skipped %s: %s lasts %.3f s < filters.min_duration_s = %g", t, f, len(y) / p["sr"], min_dur)
            bad.append(t)
            shares.append(np.nan)
            lost.append((t, split, "filter", f"shorter than {min_dur:g} s (filters.min_duration_s)", len(y) / p["sr"]))
            continue
        shares.append(silence_fraction(y, sr=p["sr"]))
    df = df.assign(silence_share=shares)
    df = df[~df["track_id"].isin(bad)]
    kept, dropped = filter_tracks(
        df,
        max_silence_share=flt.get("max_silence_share"),
        drop_genre=flt.get("drop_genre"),
        min_listens=flt.get("min_listens"),
        min_favorites=flt.get("min_favorites"),
    )
    for r in dropped.itertuples():
        log.info("filtered out %s: %s", r.track_id, r.reason)
        codes = r.reason.split(";")
        why = {
            "silence": f"silence share > {flt.get('max_silence_share')}",
            "low_engagement": f"{flt.get('drop_genre')}: listens < {flt.get('min_listens')} "
            f"or favorites < {flt.get('min_favorites')}",
            "genre": f"genre {flt.get('drop_genre')!r} dropped",
        }
        value = r.silence_share if "silence" in codes else getattr(r, "listens", np.nan)
        lost.append((r.track_id, r.split, "filter", "; ".join(why.get(c, c) for c in codes), value))
    if a.out_dropped:  # first: when the import is refused below, the table says why
        write_dropped(a.out_dropped, lost)
    empty = [s for s in ("train", "eval") if not (kept["split"] == s).any()]
    if empty:
        raise ValueError(_empty_split_message(source, empty, listed, kept, lost, a.out_dropped))
    out = kept.assign(path=kept["abspath"])[["track_id", "path", "genre", "split", "silence_share"]]
    write_csv(a.out, pd.DataFrame(out))
    log.info("audio corpus: %d tracks kept, %d filtered, %d unreadable", len(kept), len(dropped), len(bad))


def cmd_audio_features(a) -> None:
    """SPEC §5 audio features of one shard of tracks (models loaded once per shard).

    Shard s of n takes manifest rows s, s + n, s + 2n, ...
    """
    import pandas as pd

    from aria.audio.features import build_processors, extract_many
    from aria.io.tables import read_manifest, write_csv, write_npz

    p = json.loads(a.params)
    man = read_manifest(a.manifest, root=p.get("root"))
    man = man.iloc[p["shard"] :: p["n_shards"]]
    procs = None
    if p.get("chords", "madmom") != "madmom" and len(man):  # the optional Omnizart back end
        procs = build_processors(chords=p["chords"], omnizart_checkpoint=p.get("omnizart_checkpoint"))
    feats, failures = extract_many(list(man["abspath"]), sr=p["sr"], progress=True, processors=procs)
    ok = {str(Path(x)) for x in feats.pop("paths")}
    ids = [t for t, path in zip(man["track_id"], man["abspath"]) if str(Path(path)) in ok]
    chords = feats.pop("chords")
    lengths = np.array([len(c) for c in chords], dtype=np.int64)
    write_npz(
        a.out,
        track_ids=np.array(ids),
        chords=np.concatenate(chords) if chords else np.zeros(0, int),
        chord_lengths=lengths,
        **feats,
    )
    for path, why in failures:
        log.warning("skipped %s: %s", path, why)
    write_csv(a.out_failures, pd.DataFrame(failures, columns=["path", "reason"]))
    log.info("audio features of %d tracks (%d skipped)", len(ids), len(failures))


def cmd_merge_audio_features(a) -> None:
    """Concatenate the feature shards, in manifest order of the tracks that succeeded."""
    from aria.io.tables import read_npz, write_npz

    parts = [read_npz(f) for f in a.shards]
    keys = [k for k in parts[0] if k not in ("track_ids", "chords", "chord_lengths")]
    out = {k: np.concatenate([q[k] for q in parts]) for k in keys}
    out["track_ids"] = np.concatenate([q["track_ids"] for q in parts])
    out["chords"] = np.concatenate([q["chords"] for q in parts])
    out["chord_lengths"] = np.concatenate([q["chord_lengths"] for q in parts])
    if len(out["track_ids"]) == 0:
        raise ValueError("no track yielded audio features; see the shard logs for the reasons")
    write_npz(a.out, **out)
    log.info("audio features of %d tracks from %d shards", len(out["track_ids"]), len(parts))


# --------------------------------------------------------------------------- audio model
def _audio_vocab(p):
    from aria.audio.stages import AudioVocab

    return AudioVocab.from_config(p, sr=p["sr"], windows=p["windows"])


FIT_TRACKS = 500  # tokenizers are fitted on at most this many training tracks


def cmd_audio_tokenize(a) -> None:
    """Fit the semantic, acoustic and conditioning tokenizers on training tracks; encode every track."""
    from aria.audio.stages import ConditioningRVQ
    from aria.audio.tokenizers import MelRVQ, SemanticKMeans
    from aria.io.audio import load_audio
    from aria.io.tables import read_manifest, write_npz

    p = json.loads(a.params)
    man = read_manifest(a.manifest, root=p.get("root"))
    is_train = (man["split"] == "train").to_numpy()
    # fit on at most FIT_TRACKS training tracks (a seeded subset of a large corpus), then
    # encode track by track, so a corpus never has to fit in memory
    fit_idx = np.flatnonzero(is_train)
    if len(fit_idx) > FIT_TRACKS:
        fit_idx = np.sort(np.random.default_rng(p["seed"]).choice(fit_idx, FIT_TRACKS, replace=False))
    train = [load_audio(f, sr=p["sr"]) for f in progress(list(man["abspath"].iloc[fit_idx]), desc="load", unit="file")]
    sem = SemanticKMeans(sr=p["sr"], hop_s=p["semantic"]["hop_s"], n_codes=p["semantic"]["n_codes"])
    sem.fit(train, random_state=[p["seed"], 0])
    ac = MelRVQ(sr=p["sr"], hop_length=p["acoustic"]["hop_length"], n_codes=p["acoustic"]["n_codes"])
    ac.fit(train, random_state=[p["seed"], 1])
    del train
    emb, sems, codes, n_samples = [], [], [], []
    for f in progress(list(man["abspath"]), desc="tokenize", unit="file"):
        y = load_audio(f, sr=p["sr"])
        tokens, e = sem.encode_and_embed(y)
        emb.append(e)
        sems.append(tokens)
        codes.append(ac.encode(y))
        n_samples.append(len(y))
    emb = np.stack(emb)
    cond = ConditioningRVQ(n_cond=p["cond"]["n_cond"], cond_size=p["cond"]["cond_size"])
    cond.fit(emb[is_train], random_state=p["seed"])
    state = {f"sem_{k}": v for k, v in sem.state_dict().items()}
    state |= {f"ac_{k}": v for k, v in ac.state_dict().items()}
    state["cond_codebooks"] = cond.codebooks
    write_npz(a.out_tokenizers, **state)
    write_npz(
        a.out,
        track_ids=man["track_id"].to_numpy().astype(str),
        splits=man["split"].to_numpy().astype(str),
        n_samples=np.array(n_samples),
        cond=cond.encode(emb),
        sem=np.concatenate(sems),
        sem_offsets=np.cumsum([0] + [len(x) for x in sems]),
        codes=np.concatenate(codes),
        code_offsets=np.cumsum([0] + [len(x) for x in codes]),
    )
    log.info(
        "tokenized %d tracks (%d train, %d used for fitting): %d semantic tokens, %d acoustic frames",
        len(man),
        int(is_train.sum()),
        len(fit_idx),
        sum(map(len, sems)),
        sum(map(len, codes)),
    )


def cmd_audio_segments(a) -> None:
    """Stage sequences (SPEC §1 windows) of every training track for one stage."""
    import pandas as pd

    from aria.audio.tokenizers import stage_windows
    from aria.io.tables import read_npz, write_csv, write_npz

    p = json.loads(a.params)
    vocab, stage = _audio_vocab(p), a.stage
    d = read_npz(a.tokens)
    toks, masks, lmasks, seg_rows = [], [], [], []
    for i, (tid, split) in enumerate(zip(d["track_ids"], d["splits"])):
        if split != "train":
            continue
        win = stage_windows(int(d["n_samples"][i]), sr=p["sr"], window_s=vocab.window(stage))
        for w, start in enumerate(win.starts):
            t, m, lm = vocab.stage_sequence(
                stage,
                cond=d["cond"][i],
                sem=ragged_item(d["sem"], d["sem_offsets"], i),
                codes=ragged_item(d["codes"], d["code_offsets"], i),
                t0=start / p["sr"],
            )
            toks.append(t)
            masks.append(m)
            lmasks.append(lm)
            seg_rows.append(dict(segment_id=f"{tid}:{stage}:{w:03d}", track_id=tid, start_s=start / p["sr"]))
    write_npz(
        a.out,
        tokens=np.stack(toks),
        mask=np.stack(masks),
        loss_mask=np.stack(lmasks),
        segment_ids=np.array([r["segment_id"] for r in seg_rows]),
        track_ids=np.array([r["track_id"] for r in seg_rows]),
    )
    write_csv(a.out_csv, pd.DataFrame(seg_rows))
    log.info("%s: %d training segments of %d tokens", stage, len(toks), vocab.seq_len(stage))


def cmd_audio_queries(a) -> None:
    """Hierarchical generation for each held-out track: semantic, then coarse, then fine;
    one query per stage, and the generated codes decoded to audio.
    """
    import torch

    from aria.audio.generation import generate_queries
    from aria.audio.tokenizers import MelRVQ
    from aria.io.audio import write_wav
    from aria.io.stores import atomic_dir
    from aria.io.tables import read_npz, write_npz

    p = json.loads(a.params)
    torch.set_num_threads(a.threads)
    vocab = _audio_vocab(p)
    d = read_npz(a.tokens)
    models = {st: load_model(path)[0] for st, path in zip(("semantic", "coarse", "fine"), a.models)}
    ev = [i for i, s in enumerate(d["splits"]) if s == "eval"]
    ids = np.array([f"q-{d['track_ids'][i]}" for i in ev])
    tracks = [
        {
            "cond": d["cond"][i],
            "sem": ragged_item(d["sem"], d["sem_offsets"], i),
            "codes": ragged_item(d["codes"], d["code_offsets"], i),
        }
        for i in ev
    ]
    queries, codes = generate_queries(
        models, vocab, tracks, prompt_s=p["prompt_s"], temperature=p["temperature"], seed=p["seed"]
    )
    for stage, q in queries.items():
        write_npz(Path(a.out_dir) / stage / "queries.npz", **q, query_ids=ids, track_ids=d["track_ids"][ev])
    tk = read_npz(a.tokenizers)
    ac = MelRVQ.from_state_dict({k[3:]: v for k, v in tk.items() if k.startswith("ac_")})
    with atomic_dir(a.out_audio) as tmp:
        for qid, c in zip(ids, codes):
            write_wav(Path(tmp) / f"{qid}.wav", ac.decode(c, random_state=p["seed"]), p["sr"])
    log.info("generated %d queries per stage; decoded %.1f s of audio each", len(ids), len(codes[-1]) / vocab.ac_rate)


def cmd_embed_corpus(a) -> None:
    """One encoder's frame embeddings of every training track (the costly half of the embedding baseline).

    Its own job, on the corpus alone: it starts as soon as the corpus exists and survives new queries.
    """
    import torch

    from aria.audio.encoders import get_encoder
    from aria.io.audio import load_audio
    from aria.io.layouts import write_corpus_frames
    from aria.io.tables import read_manifest

    p = json.loads(a.params)
    torch.set_num_threads(a.threads)
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


def cmd_embed_baseline(a) -> None:
    """Embedding-similarity baseline (SPEC §2): track-level cosine scores, time-averaged and all-against-all."""
    import torch

    from aria.attribution.embedding import all_against_all_scores, cosine_scores
    from aria.audio.encoders import get_encoder
    from aria.io.audio import load_audio
    from aria.io.layouts import read_corpus_frames
    from aria.io.stores import ScoreWriter
    from aria.io.tables import read_npz

    p = json.loads(a.params)
    torch.set_num_threads(a.threads)
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


def cmd_tracklevel(a) -> None:
    """Track-level matrix (SPEC §3): per-query normalization, then the mean over each track's segments."""
    from aria.attribution.tracklevel import track_level
    from aria.io.stores import ScoreWriter, open_scores
    from aria.io.tables import read_npz

    p = json.loads(a.params)
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


def cmd_residual(a) -> None:
    """Residual S_res = S - sigma_1 u_1 v_1^T (SPEC §7), streamed, with homogeneity on it and the alignment of u_1.

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

    p = json.loads(a.params) if a.params else {}
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
    if a.segments:  # segment-level audio matrix -> the track level, as for S (SPEC §3)
        seg = read_npz(a.segments)
        if not np.array_equal(seg["segment_ids"], rows):
            raise ValueError(f"{a.scores}: row ids do not match the segments of {a.segments}")
        tids, r2t = track_index(seg["track_ids"])
        _, R = track_level(R, seg["track_ids"], normalize=p["normalize"])
        u = np.bincount(r2t, weights=u, minlength=len(tids)) / np.bincount(r2t, minlength=len(tids))
        rows = tids
    doc = _homogeneity_doc(R, rows, cols, ids, feats, channels, read_null(a.null), a.out)
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


def cmd_sweep_point(a) -> None:
    """One sensitivity grid point (SPEC §7): the method's matrix at the point's parameters, its
    reliability diagnostics and its homogeneity, written as one JSON (the matrix is not kept).
    """
    import tempfile

    from aria.attribution.scoring import score_blocks
    from aria.attribution.tracklevel import track_level
    from aria.evaluation.reliability import centred_diagnostics, gram_stats, reliability_from_stats
    from aria.io.layouts import read_null
    from aria.io.stores import ScoreWriter, open_scores, read_features
    from aria.io.tables import read_npz, write_json

    p = json.loads(a.params)
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
        doc = _homogeneity_doc(S, rows, cols, ids, ev, channels, read_null(a.null), a.features[0])
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


def _gather_scores(S, row_ids, wanted) -> np.ndarray:
    """Scores of each query's listed rows, ``wanted`` (Q, K) row ids, in one pass over S's row chunks."""
    from aria.io.stores import iter_row_chunks

    where = {r: i for i, r in enumerate(np.asarray(row_ids).astype(str))}
    idx = np.array([[where[str(t)] for t in row] for row in wanted])
    out = np.full(idx.shape, np.nan)
    need = set(idx.ravel().tolist())
    for start, block in iter_row_chunks(S):
        hit = [r for r in range(start, start + len(block)) if r in need]
        for r in hit:
            mask = idx == r
            qs = np.nonzero(mask)[0]
            out[mask] = np.asarray(block[r - start], dtype=np.float64)[qs]
    return out


def _symbolic_windows(train_npz, block: int) -> dict:
    """Each training segment's notes (block start at 0), start/end time (s) and bars (4 quarter notes)."""
    from aria.symbolic.notes import seconds_to_beats
    from aria.symbolic.tokenize import segment_notes

    d = _read_npz_cached(train_npz)
    out = {}
    for i, tid in enumerate(np.asarray(d["stream_tracks"]).astype(str)):
        stream = d["streams"][d["stream_offsets"][i] : d["stream_offsets"][i + 1]]
        tempo = d["tempo_maps"][d["tempo_offsets"][i] : d["tempo_offsets"][i + 1]]
        segs = segment_notes(stream, block=block)
        for b, (t0, notes) in enumerate(segs):
            t1 = segs[b + 1][0] if b + 1 < len(segs) else t0 + (float(notes["offset"].max()) if len(notes) else 0.0)
            beats = seconds_to_beats(np.array([t0, max(t1, t0)]), tempo)
            out[f"{tid}:{b:03d}"] = {
                "notes": notes,
                "t0": t0,
                "t1": t1,
                "bars": (int(beats[0] // 4) + 1, int(np.ceil(beats[1] / 4))),
            }
    return out


_NPZ = {}


def _read_npz_cached(path):
    from aria.io.tables import read_npz

    if path not in _NPZ:
        _NPZ[path] = read_npz(path)
    return _NPZ[path]


def cmd_cards(a) -> None:
    """One evidence card per query (README "Per-query evidence cards") and the media they play, in one folder."""
    import shutil

    from aria.evaluation.evidence import best_windows, degenerate_channels, dominant_aspect, query_similarity, rollup
    from aria.evaluation.reliability import verdict
    from aria.io.layouts import read_null
    from aria.io.stores import atomic_dir, open_scores
    from aria.io.tables import read_csv, read_json, read_manifest, read_npz, write_json
    from aria.report.cards import card_html, piano_roll_png

    spec = json.loads(a.spec)
    audio, K = spec["domain"] == "audio", int(spec["main_k"])
    ids, pool, channels = _evidence(spec["evidence"], spec.get("manifest") if audio else None)
    ids = np.asarray(ids).astype(str)
    pos = {t: i for i, t in enumerate(ids)}
    scales = read_null(spec["null"])["scales"]
    from aria.evaluation.degenerate import empty_in_channels, item_empty

    pool_empty = empty_in_channels(pool, channels)  # items with no evidence per channel (SPEC §5)
    man = read_manifest(spec["manifest"], root=spec.get("root"), check_files=False)
    genre = dict(zip(man["track_id"].astype(str), man["genre"].astype(str))) if "genre" in man else {}
    q = read_npz(spec["queries"])
    qids, q_tracks = np.asarray(q["query_ids"]).astype(str), np.asarray(q["track_ids"]).astype(str)
    sr = int(spec.get("sr", 22050))

    # the query's features, with the pool's definitions
    if audio:
        from aria.audio.features import chord_root_motion, extract_many

        paths = [str(Path(spec["query_audio"]) / f"{x}.wav") for x in qids]
        qf, failures = extract_many(paths, sr=sr, progress=True)
        ok = [str(Path(x)) for x in qf.pop("paths")]
        chords = qf.pop("chords")
        qfeat = {}
        for j, path in enumerate(ok):
            qfeat[Path(path).stem] = {f: v[j] for f, v in qf.items()} | {"chords": chord_root_motion(chords[j])}
        for path, why in failures:
            log.warning("no features for query %s: %s", path, why)
    else:
        from aria.io.midi import read_midi
        from aria.symbolic.features import extract

        qnotes = {x: read_midi(Path(spec["query_midi"]) / f"{x}.mid") for x in qids}
        qfeat = {x: extract(n, tempo_map=t) for x, (n, t) in qnotes.items()}
        windows = _symbolic_windows(spec["segments"], int(spec["block_tokens"]))

    with atomic_dir(a.out) as out:
        (out / "media").mkdir(parents=True)
        media_done: dict[str, str] = {}

        def track_audio(tid) -> str:  # a training track, copied once as MP3
            if tid not in media_done:
                from aria.io.audio import load_audio, write_mp3

                src = man.loc[man["track_id"].astype(str) == tid, "abspath"].iloc[0]
                write_mp3(out / "media" / "tracks" / f"{tid}.mp3", load_audio(src, sr=sr), sr)
                media_done[tid] = f"media/tracks/{tid}.mp3"
            return media_done[tid]

        def segment_audio(seg_id) -> str | None:  # a symbolic training segment, rendered once
            if seg_id not in media_done:
                from aria.audio.render import render_window
                from aria.io.audio import write_mp3

                w = windows[seg_id]
                try:  # the window t0-t1 it claims, plus a short faded release (not its last notes' full length)
                    y = render_window(
                        w["notes"],
                        duration_s=max(w["t1"] - w["t0"], 0.0),
                        programs={int(t): 0 for t in np.unique(w["notes"]["track"])},
                        sr=sr,
                    )
                except FileNotFoundError as e:  # no SoundFont: cards keep the time range and bars, no player
                    log.warning("no players for MIDI windows: %s", e)
                    media_done[seg_id] = None
                    return None
                name = seg_id.replace(":", "_")
                write_mp3(out / "media" / "segments" / f"{name}.mp3", y, sr)
                media_done[seg_id] = f"media/segments/{name}.mp3"
            return media_done[seg_id]

        rows = []
        for r in spec["rows"]:
            hom, diag = read_json(r["homogeneity"]), read_json(r["diagnostics"])
            top = hom["by_k"][str(K)]["top_ids"]
            z = hom["by_k"][str(K)]["z_c"]
            qcol = {x: j for j, x in enumerate(hom["query_ids"])}
            S, row_ids, _ = open_scores(r["scores"])
            if r.get("normalize"):  # symbolic pool of whole pieces (unit: track): the track-level matrix
                from aria.attribution.tracklevel import track_level

                seg_tracks = read_csv(r["segments_csv"]).set_index("segment_id").loc[np.asarray(row_ids).astype(str)]
                row_ids, S = track_level(S, seg_tracks["track_id"].to_numpy(), normalize=r["normalize"])
            scores = _gather_scores(S, row_ids, top)
            win = None
            if r.get("segment_scores"):  # the attributed window of each track: its best segment for the query
                Sseg, seg_rows, _ = open_scores(r["segment_scores"])
                seg = read_csv(r["segments_csv"]).set_index("segment_id")
                tracks = sorted({t for row in top for t in row})
                arg = best_windows(
                    Sseg,
                    seg.loc[np.asarray(seg_rows).astype(str), "track_id"].to_numpy(),
                    np.arange(len(hom["query_ids"])),
                    tracks,
                )
                win = (tracks, arg, np.asarray(seg_rows).astype(str), seg)
            rows.append(
                dict(
                    spec=r,
                    top=top,
                    z=z,
                    qcol=qcol,
                    scores=scores,
                    win=win,
                    verdict=verdict(diag, thresholds=spec.get("verdict")),
                )
            )

        index = []
        for qi, qid in enumerate(qids):
            qpath = {}
            if audio:
                from aria.io.audio import load_audio, write_mp3

                write_mp3(
                    out / "media" / "queries" / f"{qid}.mp3",
                    load_audio(Path(spec["query_audio"]) / f"{qid}.wav", sr=sr),
                    sr,
                )
                qpath["player"] = f"media/queries/{qid}.mp3"
            else:
                (out / "media" / "queries").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(spec["query_midi"]) / f"{qid}.mid", out / "media" / "queries" / f"{qid}.mid")
                qpath["midi"] = f"media/queries/{qid}.mid"
                qpath["roll_png"] = piano_roll_png(
                    qnotes[qid][0], title=f"{qid} (prompt from {q_tracks[qi]}, then generated)"
                )
            card_rows, aspects = [], {}
            for row in rows:
                r, j = row["spec"], row["qcol"].get(qid)
                if j is None:
                    continue
                item_ids = row["top"][j]
                sims = (
                    query_similarity(qfeat[qid], pool, [pos[t] for t in item_ids], channels, scales)
                    if qid in qfeat
                    else {}
                )
                items = []
                for n, t in enumerate(item_ids):
                    it = {
                        "id": t,
                        "score": float(row["scores"][j, n]),
                        "sim": {c: float(v[n]) for c, v in sims.items()},
                    }
                    if audio and row["win"] is not None:
                        tracks, arg, seg_rows, seg = row["win"]
                        sid = seg_rows[arg[j, tracks.index(t)]]
                        a0 = float(seg.loc[sid, "start_s"])
                        a1 = a0 + float(r["window_s"])
                        it["where"] = f"{t}, {a0:.1f}–{a1:.1f} s (its best {r['stage']} window for this query)"
                        it["player"] = f"{track_audio(t)}#t={a0:.2f},{a1:.2f}"
                    elif row["win"] is not None:  # a whole piece (unit: track): its best segment
                        tracks, arg, seg_rows, _ = row["win"]
                        sid = seg_rows[arg[j, tracks.index(t)]]
                        w = windows[sid]
                        it["where"] = (
                            f"{t}, its best segment for this query: {w['t0']:.1f}–{w['t1']:.1f} s, "
                            f"bars {w['bars'][0]}–{w['bars'][1]}"
                        )
                        it["player"] = segment_audio(sid)
                    elif audio:
                        it["where"] = f"{t}, whole track (track-level embedding)"
                        it["player"] = track_audio(t)
                    else:
                        w = windows[t]
                        b0, b1 = w["bars"]
                        bars = f"bar {b0}" if b1 <= b0 else f"bars {b0}–{b1}"
                        span = f"{w['t0']:.1f} s" if w["t1"] <= w["t0"] else f"{w['t0']:.1f}–{w['t1']:.1f} s"
                        it["where"] = f"{t.split(':')[0]}, {span}, {bars}"
                        if not len(w["notes"]):
                            it["where"] += " (no note starts in this segment)"
                        it["player"] = segment_audio(t)
                    items.append(it)
                zq = {c: z[c][j] for c in channels} if (z := row["z"]) else {}
                # a channel in which the group is mostly empty items is identical emptiness, not evidence
                degen = degenerate_channels([pos[t] for t in item_ids], pool_empty, threshold=EMPTY_DOMINATES)
                asp = dominant_aspect(zq, exclude=list(degen))
                aspects[r["key"]] = asp
                card_rows.append(
                    dict(
                        key=r["key"],
                        label=r["label"],
                        verdict=row["verdict"],
                        aspect=asp,
                        z=zq,
                        items=items,
                        rollup=None
                        if audio or row["win"] is not None
                        else rollup([t.split(":")[0] for t in item_ids], [i["score"] for i in items]),
                        note="" if qid in qfeat else "This query's features could not be computed: no similarities.",
                        warnings=[
                            f"{round(sh * len(item_ids))} of {len(item_ids)} items are empty in {c} (nothing "
                            f"measured, e.g. {EMPTY_EXAMPLES.get(c, 'an all-zero feature')}): they are identical "
                            f"there, so its z ({_num2(zq.get(c))}) is left out of the dominant aspect"
                            for c, sh in degen.items()
                        ],
                    )
                )
            qempty = item_empty(qfeat[qid], channels, pool=pool) if qid in qfeat else {}
            card = dict(
                query_id=qid,
                title=spec["title"],
                query={**qpath, "genre": genre.get(q_tracks[qi]), "empty": qempty},
                channels=list(channels),
                k=K,
                rows=card_rows,
            )
            (out / f"{qid}.html").write_text(card_html(card), encoding="utf-8")
            index.append(
                {
                    "query_id": qid,
                    "card": f"{qid}.html",
                    "player": qpath.get("player"),
                    "midi": qpath.get("midi"),
                    "aspects": aspects,
                }
            )
        write_json(out / "index.json", index)
    log.info(
        "%d evidence cards, %d media files -> %s",
        len(index),
        sum(1 for v in media_done.values() if v) + len(qids),
        a.out,
    )


#: compute.engine and compute.scheduler (aria/parallel.py), for the commands that take them.
_ENGINE_OPTIONS = (
    ("--engine", {"required": False, "choices": ("numpy", "dask"), "default": "numpy", "help": "compute.engine"}),
    ("--scheduler", {"required": False, "default": "threads", "help": "compute.scheduler (dask engine only)"}),
)


# --------------------------------------------------------------------------- environment
def cmd_warm_jit_cache(a) -> None:
    """Compile every numba kernel the workflow uses, once, and install them as the jobs' JIT template.

    Runs each JIT-compiled code path of the audio experiment (file loading with
    resampling, the SPEC §5 features, both tokenizers with Griffin-Lim decoding,
    the offline embedding encoders) on a synthetic 12 s signal, in this one
    process, then publishes the compiled cache as the read-only template that
    every job copies (:mod:`aria.runtime`). ``make venv`` runs it.
    """
    import os
    import tempfile

    from aria.audio.encoders import get_encoder
    from aria.audio.features import extract
    from aria.audio.tokenizers import MelRVQ, SemanticKMeans
    from aria.io.audio import load_audio, write_wav
    from aria.registry import ENCODERS
    from aria.runtime import jit_template_dir, publish_jit_template

    cache = os.environ.get("NUMBA_CACHE_DIR")
    if not cache:
        raise RuntimeError(
            "warm-jit-cache runs under the aria supervisor, which sets NUMBA_CACHE_DIR; "
            "start it as `aria warm-jit-cache`"
        )
    sr, native = 22050, 44100
    t = np.arange(12 * native) / native
    rng = np.random.default_rng(0)
    notes = sum(np.sin(2 * np.pi * f * t) * (np.floor(t * 2) % k == 0) for f, k in ((220, 2), (330, 3), (440, 5)))
    clicks = (np.mod(t, 0.5) < 0.01) * rng.standard_normal(len(t))
    with tempfile.TemporaryDirectory() as d:
        write_wav(Path(d) / "warm.wav", (0.2 * notes + 0.3 * clicks).astype(np.float32), native)
        y = load_audio(Path(d) / "warm.wav", sr=sr)  # the jobs' own path: float32, resampled
    steps = [("features", lambda: extract(y, sr=sr))]
    for cls, kw in ((SemanticKMeans, {"hop_s": 0.1}), (MelRVQ, {"hop_length": 1764})):

        def tokenizer(cls=cls, kw=kw):
            tok = cls(sr=sr, n_codes=4, **kw).fit([y], random_state=0)
            codes = tok.encode(y)
            if cls is MelRVQ:
                tok.decode(codes)

        steps.append((cls.__name__, tokenizer))
    for name in ENCODERS:
        steps.append((f"encoder {name}", lambda name=name: get_encoder(name).frames(y, sr)))
    for label, fn in progress(steps, desc="warm JIT", unit="path", name=lambda s: s[0], mininterval=0.1):
        try:
            fn()
        except (OSError, ImportError, RuntimeError) as e:  # e.g. CLAP/MERT weights absent: nothing to compile
            log.info("skipped %s: %s", label, str(e).split(": ")[1] if ": " in str(e) else e)
    target = publish_jit_template(cache, a.template or jit_template_dir())
    n = sum(1 for f in target.rglob("*") if f.suffix in (".nbi", ".nbc"))
    log.info("JIT template: %d cache files in %s", n, target)


# --------------------------------------------------------------------------- table
COMMANDS = {
    "demo-collection": (cmd_demo_collection, [("--out-dir", {}), ("--params", {})]),
    "merge-manifests": (
        cmd_merge_manifests,
        [("--parts", {"nargs": "+"}), ("--out", {}), ("--out-dropped", {"required": False, "default": None})],
    ),
    "symbolic-segments": (
        cmd_symbolic_segments,
        [
            ("--manifest", {}),
            ("--params", {}),
            ("--out-train", {}),
            ("--out-eval", {}),
            ("--out-csv", {}),
            ("--out-dropped", {"required": False, "default": None}),
        ],
    ),
    "train": (cmd_train, [("--segments", {}), ("--params", {}), ("--out", {})]),
    "symbolic-queries": (
        cmd_symbolic_queries,
        [("--model", {}), ("--eval", {}), ("--params", {}), ("--out", {}), ("--out-midi", {})],
    ),
    "symbolic-planted-queries": (
        cmd_symbolic_planted_queries,
        [("--segments", {}), ("--manifest", {}), ("--params", {}), ("--out", {}), ("--out-midi", {})],
    ),
    "audio-planted-queries": (
        cmd_audio_planted_queries,
        [
            ("--manifest", {}),
            ("--tokens", {}),
            ("--midi-manifest", {}),
            ("--tokenizers", {}),
            ("--params", {}),
            ("--out-dir", {}),
            ("--out-audio", {}),
        ],
    ),
    "planted": (
        cmd_planted,
        [
            ("--scores", {}),
            ("--queries", {}),
            ("--segments", {"required": False, "default": None}),
            ("--homogeneity", {}),
            ("--params", {}),
            ("--out", {}),
        ],
    ),
    "project": (
        cmd_project,
        [
            ("--model", {}),
            ("--segments", {}),
            ("--queries", {}),
            ("--params", {}),
            ("--out", {}),
            (
                "--cache-mib",
                {
                    "required": False,
                    "type": int,
                    "default": 1024,
                    "help": "memory for a Gaussian projection's generated blocks (MiB; numbers do not depend on it)",
                },
            ),
        ],
    ),
    "unlearning-fisher": (
        cmd_unlearning_fisher,
        [("--model", {}), ("--segments", {}), ("--params", {}), ("--out", {})],
    ),
    "unlearning-scores": (
        cmd_unlearning_scores,
        [("--model", {}), ("--segments", {}), ("--queries", {}), ("--fisher", {}), ("--params", {}), ("--out", {})],
    ),
    "unlearning-merge": (cmd_unlearning_merge, [("--chunks", {"nargs": "+"}), ("--out", {})]),
    "unlearning-selfinfluence": (
        cmd_unlearning_selfinfluence,
        [("--model", {}), ("--segments", {}), ("--queries", {}), ("--fisher", {}), ("--params", {}), ("--out", {})],
    ),
    "unlearning-compare": (cmd_unlearning_compare, [("--spec", {}), ("--out", {})]),
    "kfac-covariance": (cmd_kfac_covariance, [("--model", {}), ("--segments", {}), ("--params", {}), ("--out", {})]),
    "project-factored": (
        cmd_project_factored,
        [
            ("--method", {}),
            ("--model", {}),
            ("--segments", {}),
            ("--queries", {}),
            ("--covariance", {"required": False, "default": None}),
            ("--params", {}),
            ("--out", {}),
        ],
    ),
    "score": (
        cmd_score,
        [
            ("--method", {}),
            ("--features", {"nargs": "+"}),
            ("--params", {}),
            ("--out", {}),
            *_ENGINE_OPTIONS,
        ],
    ),
    "diagnostics": (
        cmd_diagnostics,
        [
            ("--scores", {}),
            ("--out", {}),
            ("--replica", {"nargs": 2, "default": None, "required": False}),
            ("--replica-params", {"default": None, "required": False}),
            ("--replica-note", {"default": None, "required": False}),
            *_ENGINE_OPTIONS,
        ],
    ),
    "symbolic-features": (
        cmd_symbolic_features,
        [("--segments", {}), ("--params", {}), ("--out", {}), ("--out-tracks", {"required": False, "default": None})],
    ),
    "audio-demo-corpus": (cmd_audio_demo_corpus, [("--midi-manifest", {}), ("--params", {}), ("--out-dir", {})]),
    "audio-import": (
        cmd_audio_import,
        [("--params", {}), ("--out", {}), ("--out-dropped", {"required": False, "default": None})],
    ),
    "audio-features": (
        cmd_audio_features,
        [("--manifest", {}), ("--params", {}), ("--out", {}), ("--out-failures", {})],
    ),
    "merge-audio-features": (cmd_merge_audio_features, [("--shards", {"nargs": "+"}), ("--out", {})]),
    "audio-tokenize": (
        cmd_audio_tokenize,
        [("--manifest", {}), ("--params", {}), ("--out", {}), ("--out-tokenizers", {})],
    ),
    "audio-segments": (
        cmd_audio_segments,
        [("--tokens", {}), ("--stage", {}), ("--params", {}), ("--out", {}), ("--out-csv", {})],
    ),
    "audio-queries": (
        cmd_audio_queries,
        [
            ("--tokens", {}),
            ("--tokenizers", {}),
            ("--models", {"nargs": 3}),
            ("--params", {}),
            ("--out-dir", {}),
            ("--out-audio", {}),
        ],
    ),
    "embed-corpus": (
        cmd_embed_corpus,
        [("--encoder", {}), ("--manifest", {}), ("--params", {}), ("--out", {})],
    ),
    "embed-baseline": (
        cmd_embed_baseline,
        [
            ("--encoder", {}),
            ("--corpus", {}),
            ("--queries", {}),
            ("--queries-audio", {}),
            ("--params", {}),
            ("--out", {}),
            ("--out-aaa", {}),
        ],
    ),
    "tracklevel": (
        cmd_tracklevel,
        [("--scores", {}), ("--segments", {}), ("--params", {}), ("--out", {}), *_ENGINE_OPTIONS],
    ),
    "residual": (
        cmd_residual,
        [
            ("--scores", {}),
            ("--out", {}),
            ("--params", {"required": False, "default": None}),
            ("--features", {"required": False, "default": None}),
            ("--null", {"required": False, "default": None}),
            ("--manifest", {"required": False, "default": None}),
            ("--segments", {"required": False, "default": None}),
            ("--out-homogeneity", {"required": False, "default": None}),
            ("--out-alignment", {"required": False, "default": None}),
        ],
    ),
    "cards": (cmd_cards, [("--spec", {}), ("--out", {})]),
    "sweep-point": (
        cmd_sweep_point,
        [
            ("--method", {}),
            ("--features", {"nargs": "+"}),
            ("--evidence", {}),
            ("--null", {}),
            ("--params", {}),
            ("--out", {}),
            ("--manifest", {"required": False, "default": None}),
            ("--segments", {"required": False, "default": None}),
            ("--replica-a", {"nargs": "+", "required": False, "default": None}),
            ("--replica-b", {"nargs": "+", "required": False, "default": None}),
        ],
    ),
    "check-pool": (
        cmd_check_pool,
        [
            ("--params", {}),
            ("--out", {}),
            ("--manifest", {"required": False, "default": None}),
            ("--segments", {"required": False, "default": None}),
            ("--queries", {"required": False, "default": None}),
        ],
    ),
    "null": (
        cmd_null,
        [("--features", {}), ("--params", {}), ("--out", {}), ("--manifest", {"required": False, "default": None})],
    ),
    "homogeneity": (
        cmd_homogeneity,
        [
            ("--scores", {}),
            ("--features", {}),
            ("--null", {}),
            ("--out", {}),
            ("--manifest", {"required": False, "default": None}),
            ("--segments", {"required": False, "default": None}),
            ("--queries", {"required": False, "default": None}),
            ("--params", {"required": False, "default": None}),
        ],
    ),
    "lds-retrain": (
        cmd_lds_retrain,
        [("--segments", {}), ("--queries", {}), ("--params", {}), ("--out", {})],
    ),
    "lds-ground-truth": (
        cmd_lds_ground_truth,
        [
            ("--subsets", {"nargs": "+"}),
            ("--params", {}),
            ("--out", {}),
            ("--segments", {"required": False, "default": None}),
            ("--queries", {"required": False, "default": None}),
            ("--manifest", {"required": False, "default": None}),
        ],
    ),
    "lds-references": (cmd_lds_references, [("--ground-truth", {}), ("--params", {}), ("--out", {})]),
    "lds": (cmd_lds, [("--scores", {}), ("--ground-truth", {}), ("--params", {}), ("--out", {})]),
    "report": (
        cmd_report,
        [
            ("--diagnostics", {"nargs": "+"}),
            ("--homogeneity", {"nargs": "+"}),
            ("--params", {}),
            ("--out-html", {}),
            ("--out-md", {}),
            ("--out-summary", {}),
            ("--out-figures", {"required": False, "default": None}),
            ("--out-tables", {"required": False, "default": None}),
            ("--manifest", {"required": False, "default": None}),
            ("--queries-audio", {"required": False, "default": None}),
            ("--lds", {"nargs": "+", "required": False, "default": None}),
            ("--lds-references", {"nargs": "+", "required": False, "default": None}),
            ("--homogeneity-residual", {"nargs": "+", "required": False, "default": None}),
            ("--alignment", {"nargs": "+", "required": False, "default": None}),
            ("--cost", {"required": False, "default": None}),
            ("--pool", {"required": False, "default": None}),
            ("--sensitivity", {"nargs": "*", "required": False, "default": None}),
            ("--selfinfluence", {"nargs": "*", "required": False, "default": None}),
            ("--unlearning-compare", {"nargs": "*", "required": False, "default": None}),
            ("--cards", {"required": False, "default": None}),
            ("--dropped", {"nargs": "*", "required": False, "default": None}),
            ("--feature-failures", {"nargs": "*", "required": False, "default": None}),
            ("--segments-csv", {"nargs": "+", "required": False, "default": None}),
            ("--queries", {"nargs": "+", "required": False, "default": None}),
            ("--planted", {"nargs": "*", "required": False, "default": None}),
        ],
    ),
    "warm-jit-cache": (cmd_warm_jit_cache, [("--template", {"required": False, "default": None})]),
}
