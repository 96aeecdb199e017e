"""Corpus jobs: collections, manifests, segments, audio import and tokenization, queries, the pool check.

The job contract (argument dataclasses, registration, the generated command line): :mod:`.base`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from aria.io.checkpoints import load_model
from aria.io.layouts import ragged_item
from aria.runtime import progress
from aria.seeding import stable_seed
from aria.workflow.jobs.base import JobArgs, PartsArgs, SettingsArgs, arg, job, load_job_model, opt, torch_setup
from aria.workflow.jobs.settings import UNSET, Settings

log = logging.getLogger("aria")


def _stable_reason(text: str) -> str:
    """An error message without the memory addresses some libraries print (music21: ``id()=1399…``,
    ``0x7f4f…``), so that the dropped-items tables are identical from run to run.
    """
    import re

    return re.sub(r"0x[0-9a-fA-F]+", "0x…", re.sub(r"id\(\)=\d+", "id()=…", str(text)))


class DemoCollectionSettings(Settings):
    seed: int
    collection: str
    n_pieces: int
    n_eval: int
    max_duration_s: float


class DemoCollectionArgs(JobArgs):
    out_dir: str
    params: Mapping = arg(json=True)


@job("demo-collection")
def demo_collection(a: DemoCollectionArgs, p: DemoCollectionSettings) -> None:
    """Build one collection's share of the embedded demo corpus (MIDI files + part manifest)."""
    import pandas as pd

    from aria.io.midi import write_midi
    from aria.io.music21_corpus import iter_pieces
    from aria.io.stores import atomic_dir
    from aria.io.tables import write_csv
    from aria.symbolic.corpus import synthetic_dynamics, truncate_notes
    from aria.symbolic.notes import seconds_to_beats

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


class MergeManifestsArgs(PartsArgs):
    out_dropped: str | None = opt(None)


@job("merge-manifests")
def merge_manifests(a: MergeManifestsArgs) -> None:
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


class SymbolicSegmentsSettings(Settings):
    root: str | None = UNSET
    block_tokens: int
    prompt_tokens: int
    tokenizer: dict = UNSET  # config tokenizer (aria.symbolic.tokenizers); default Aria's vocabulary


class SymbolicSegmentsArgs(JobArgs):
    manifest: str
    params: Mapping = arg(json=True)
    out_train: str
    out_eval: str
    out_csv: str
    out_dropped: str | None = opt(None)


@job("symbolic-segments")
def symbolic_segments(a: SymbolicSegmentsArgs, p: SymbolicSegmentsSettings) -> None:
    """Tokenize every track; cut training tracks into blocks; take eval prompts."""
    import json

    import pandas as pd

    from aria.io.tables import read_manifest, write_csv, write_npz
    from aria.symbolic.tokenize import split_blocks
    from aria.symbolic.tokenizers import load_tokenizer

    block, prompt = p["block_tokens"], p["prompt_tokens"]
    tok = load_tokenizer(p.get("tokenizer"))
    # the files that read the segments decode them with the same tokenizer
    named = {"tokenizer": np.str_(json.dumps(p["tokenizer"], sort_keys=True))} if p.get("tokenizer") else {}
    man = read_manifest(a.manifest, root=p.get("root"))
    tr_tok, tr_mask, seg_rows = [], [], []
    streams, stream_tracks, tempos = [], [], []
    ev_prompts, ev_ids, dropped = [], [], []
    parsed, bad = {}, []
    for row in man.itertuples():  # every unreadable file is named in one pass, not just the first
        try:
            parsed[row.track_id] = tok.encode_file(row.abspath)
        except ValueError as e:  # corrupt, empty, drums only: the message starts with the path
            bad.append(str(e))
    if bad:
        raise ValueError(
            f"{a.manifest}: {len(bad)} of {len(man)} MIDI file(s) cannot be used; fix or remove them "
            "from the manifest:\n  " + "\n  ".join(bad)
        )
    for row in man.itertuples():
        toks, tempo = parsed[row.track_id]
        if row.split == "train":
            blocks, mask, starts = split_blocks(toks, block=block, pad=tok.pad)
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
        **named,
    )
    write_npz(a.out_eval, prompts=np.stack(ev_prompts), track_ids=np.array(ev_ids), **named)
    write_csv(a.out_csv, pd.DataFrame(seg_rows))
    if a.out_dropped:
        from aria.io.tables import write_dropped

        write_dropped(a.out_dropped, dropped)
    log.info("%d training segments from %d tracks; %d eval prompts", len(seg_rows), len(streams), len(ev_ids))


class SymbolicQueriesSettings(Settings):
    seed: int
    block_tokens: int
    prompt_tokens: int
    temperature: float
    top_k: int
    kind: str = UNSET
    planted: dict = UNSET


class SymbolicQueriesArgs(SettingsArgs):
    model: str
    eval: str
    out_midi: str


@job("symbolic-queries")
def symbolic_queries(a: SymbolicQueriesArgs, p: SymbolicQueriesSettings) -> None:
    """Generate one query per eval prompt with the main model; save tokens and MIDI."""
    from aria.io.tables import read_npz, write_npz
    from aria.models.training import generate
    from aria.symbolic.tokenize import data_tokenizer

    model, _ = load_job_model(a)
    ev = read_npz(a.eval)
    tok = data_tokenizer(ev)
    toks = generate(
        model,
        ev["prompts"],
        length=p["block_tokens"],
        temperature=p["temperature"],
        top_k=p["top_k"],
        random_state=p["seed"],
        pad=tok.pad,
    )
    ids = np.array([f"q-{t}" for t in ev["track_ids"]])
    loss_mask = np.zeros(toks.shape, dtype=bool)
    loss_mask[:, ev["prompts"].shape[1] :] = True  # score only the generated part
    named = {"tokenizer": ev["tokenizer"]} if "tokenizer" in ev else {}
    write_npz(
        a.out, tokens=toks, mask=toks != tok.pad, loss_mask=loss_mask, query_ids=ids, track_ids=ev["track_ids"], **named
    )
    _write_query_midi(a.out_midi, ids, toks, decode=tok.decode)
    log.info("generated %d queries of %d tokens", len(ids), toks.shape[1])


class DattriBenchmarkSettings(Settings):
    download_path: str
    n_train: int
    n_test: int


class DattriBenchmarkArgs(SettingsArgs):
    out_train: str
    out_eval: str
    out_csv: str
    out_dropped: str
    out_queries: str
    out_midi: str
    out_ground_truth: str
    out_models: list[str] = arg(nargs="+", help="models/symbolic/m<i>.pt for i = 0..M-1: models_full/<i>")


@job("dattri-benchmark")
def dattri_benchmark(a: DattriBenchmarkArgs, p: DattriBenchmarkSettings) -> None:
    """Import dattri's MAESTRO MusicTransformer benchmark folder (aria.io.dattri_benchmark): the manifest,
    the training segments and test queries in the benchmark's order, its models_full as the ensemble,
    and the published LDS ground truth.
    """
    import pandas as pd

    from aria.io import dattri_benchmark as db
    from aria.io.checkpoints import write_checkpoint
    from aria.io.stores import write_ground_truth
    from aria.io.tables import write_csv, write_dropped, write_npz
    from aria.models.dattri_mt import CLASS_PATH, DattriMusicTransformer
    from aria.symbolic.notes import DEFAULT_TEMPO_MAP
    from aria.symbolic.tokenize import DATTRI_VELOCITY_OFFSET
    from aria.symbolic.tokenizers import AriaTokenizer

    paths = db.check_folder(p["download_path"])
    if len(paths["models"]) < len(a.out_models):
        raise ValueError(
            f"{paths['models_full']}: {len(paths['models'])} model(s), but the config's methods read "
            f"{len(a.out_models)} ensemble members (lower methods.trak.ensemble or analysis.replicas.member)"
        )
    targets, indices = db.read_lds(paths, n_train=p["n_train"], n_test=p["n_test"])
    tables = {}
    for split, folder, n in (("train", paths["train"], p["n_train"]), ("eval", paths["test"], p["n_test"])):
        pieces = db.read_pieces(folder)
        try:
            win = db.piece_windows(pieces, n=n)
        except ValueError as e:
            raise ValueError(f"{folder}: {e}") from e
        used = sorted(set(win["piece"].tolist()))
        tables[split] = (pieces, win, used)
        log.info(
            "%s: %d samples from %d of %d pieces (%d first windows, which dattri draws at random)",
            folder,
            len(win["tokens"]),
            len(used),
            len(pieces),
            int(win["random_window"].sum()),
        )
    root = paths["root"]
    man = []
    for split, genre in (("train", "maestro"), ("eval", "generated")):
        pieces, _, used = tables[split]
        for i in used:
            stem, _, f = pieces[i]
            man.append(dict(track_id=stem, path=str(f.relative_to(root)), genre=genre, split=split))
    write_csv(a.out, pd.DataFrame(man))
    write_dropped(a.out_dropped, [])

    pieces, win, used = tables["train"]
    seg_tracks = np.array([pieces[i][0] for i in win["piece"]])
    seg_ids = np.array([f"{t}:{w:03d}" for t, w in zip(seg_tracks, win["window"])])
    streams = [pieces[i][1] for i in used]
    write_npz(
        a.out_train,
        tokens=win["tokens"],
        mask=win["tokens"] != db.PAD,
        segment_ids=seg_ids,
        track_ids=seg_tracks,
        streams=np.concatenate(streams),
        stream_offsets=np.cumsum([0] + [len(s) for s in streams]),
        stream_tracks=np.array([pieces[i][0] for i in used]),
        tempo_maps=np.concatenate([DEFAULT_TEMPO_MAP] * len(used)),
        tempo_offsets=np.arange(len(used) + 1) * len(DEFAULT_TEMPO_MAP),
        segment_starts=win["start"],
        segment_tokens=np.int64(db.MAX_SEQ + 1),
        velocity_offset=np.int64(DATTRI_VELOCITY_OFFSET),
        random_window=win["random_window"],
    )
    write_csv(
        a.out_csv,
        pd.DataFrame(
            dict(
                segment_id=seg_ids,
                track_id=seg_tracks,
                genre="maestro",
                block=win["window"],
                start_token=win["start"],
                n_tokens=(win["tokens"] != db.PAD).sum(1),
                random_window=win["random_window"],
            )
        ),
    )
    tpieces, twin, _ = tables["eval"]
    q_tracks = np.array([tpieces[i][0] for i in twin["piece"]])
    q_ids = np.array([f"q-{t}:{w:03d}" for t, w in zip(q_tracks, twin["window"])])
    toks = twin["tokens"]
    loss_mask = np.zeros(toks.shape, dtype=bool)
    loss_mask[:, -1] = toks[:, -1] != db.PAD  # dattri's target: the loss of the last token only
    write_npz(
        a.out_queries,
        tokens=toks,
        mask=toks != db.PAD,
        loss_mask=loss_mask,
        query_ids=q_ids,
        track_ids=q_tracks,
        random_window=twin["random_window"],
    )
    write_npz(a.out_eval, prompts=toks, track_ids=q_tracks)  # what the pool check counts: one query each
    _write_query_midi(a.out_midi, q_ids, toks, decode=AriaTokenizer(velocity_offset=DATTRI_VELOCITY_OFFSET).decode)

    masks = np.zeros((len(indices), len(seg_ids)), dtype=bool)
    np.put_along_axis(masks, indices, True, axis=1)
    nan = np.full((len(targets), 1), np.nan)
    write_ground_truth(
        a.out_ground_truth,
        masks=masks,
        targets=targets,
        target_runs=targets[:, None, :],
        train_loss=nan,
        heldout_loss=nan,
        row_ids=seg_ids,
        col_ids=q_ids,
        attrs=dict(
            source="published",
            published=str(paths["targets"].parent),
            n_subsets=len(targets),
            alpha=float(indices.shape[1] / len(seg_ids)),
            runs=1,
            collections_note="the published ground truth: one corpus (MAESTRO), no collections",
        ),
    )
    log.info("published LDS ground truth: %d subsets of %d segments each, %d queries", *indices.shape, targets.shape[1])

    for m, out in enumerate(a.out_models):
        weights = db.read_state_dict(paths["models"][m])
        try:
            model = DattriMusicTransformer(**db.state_dict_sizes(weights))
            model.mt.load_state_dict(weights)
        except (ValueError, RuntimeError) as e:
            raise ValueError(
                f"{paths['models'][m]}: the weights do not fit dattri's benchmark MusicTransformer: {e}"
            ) from e
        state = model.state_dict()
        # one saved state per model (no training trajectory): TracIn reads it as its only checkpoint, lr 1
        write_checkpoint(
            out,
            config=model.config_dict(),
            model_class=CLASS_PATH,
            checkpoints=[dict(epoch=0, lr=1.0, state=state)],
            final=state,
            source=str(paths["models"][m]),
        )
    log.info(
        "%d benchmark models (of %d in models_full; %d in models_half, not used)",
        len(a.out_models),
        len(paths["models"]),
        paths["n_half"],
    )


def _write_query_midi(folder, query_ids, tokens, *, decode=None) -> None:
    """One MIDI file per query with notes, ``<query_id>.mid``, into ``folder`` (written whole or not at all);
    ``decode``: ids -> notes (default Aria's vocabulary).
    """
    from aria.io.midi import write_midi
    from aria.io.stores import atomic_dir
    from aria.symbolic import tokenize

    decode = decode or tokenize.decode
    with atomic_dir(folder) as tmp:
        for qid, t in zip(query_ids, tokens):
            notes = decode(t)
            if len(notes):
                write_midi(Path(tmp) / f"{qid}.mid", notes)


class SymbolicPlantedQueriesSettings(Settings):
    seed: int
    block_tokens: int
    root: str | None = UNSET
    planted: dict


class SymbolicPlantedQueriesArgs(SettingsArgs):
    segments: str
    manifest: str
    out_midi: str


@job("symbolic-planted-queries")
def symbolic_planted_queries(a: SymbolicPlantedQueriesArgs, p: SymbolicPlantedQueriesSettings) -> None:
    """Planted-influence queries: training pieces' first segments copied, one aspect each, onto
    held-out pieces (aria.symbolic.plant); save tokens, sources, aspects and MIDI.
    """
    from aria.io.midi import read_midi
    from aria.io.tables import read_manifest, read_npz, write_npz
    from aria.symbolic.plant import planted_queries

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


class TokenizerSettings(Settings):
    """The audio tokenizers' settings (config audio.tokenizers, the sample rate, each stage's window
    in seconds): what cutting stage sequences needs (audio-segments), and every job that tokenizes.
    """

    sr: int
    semantic: dict
    acoustic: dict
    cond: dict
    windows: dict


class AudioPlantedQueriesSettings(TokenizerSettings):
    seed: int
    root: str | None = UNSET
    midi_root: str | None = UNSET
    planted: dict


class AudioPlantedQueriesArgs(JobArgs):
    manifest: str
    tokens: str
    midi_manifest: str
    tokenizers: str
    params: Mapping = arg(json=True)
    out_dir: str
    out_audio: str


@job("audio-planted-queries")
def audio_planted_queries(a: AudioPlantedQueriesArgs, p: AudioPlantedQueriesSettings) -> None:
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


class CheckPoolSettings(Settings):
    ks: list[int]
    min_queries: int
    unit: str = UNSET  # the symbolic pool's unit
    n_queries: int = UNSET  # audio planted queries: how many there are


class CheckPoolArgs(SettingsArgs):
    manifest: str | None = opt(None)
    segments: str | None = opt(None)
    queries: str | None = opt(None)


@job("check-pool")
def check_pool(a: CheckPoolArgs, p: CheckPoolSettings) -> None:
    """Every K against the homogeneity pool left after the filters, and the surviving queries (before training)."""
    from aria.evaluation.accounting import pool_check
    from aria.io.tables import read_csv, read_manifest, read_npz, write_json

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


class AudioDemoCorpusSettings(Settings):
    seed: int
    sr: int
    n_train: int
    n_eval: int
    duration_s: float
    min_duration_s: float
    max_silence_share: float


class AudioDemoCorpusArgs(JobArgs):
    midi_manifest: str
    params: Mapping = arg(json=True)
    out_dir: str


@job("audio-demo-corpus")
def audio_demo_corpus(a: AudioDemoCorpusArgs, p: AudioDemoCorpusSettings) -> None:
    """Render the symbolic demo's MIDI pieces to audio with varied General MIDI instruments."""
    import pandas as pd

    from aria.audio.corpus import assign_programs, select_excerpt, stable_seed
    from aria.audio.render import render_midi
    from aria.io.audio import silence_fraction, write_wav
    from aria.io.midi import read_midi
    from aria.io.stores import atomic_dir
    from aria.io.tables import read_manifest, write_csv, write_dropped

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


class AudioImportSettings(Settings):
    sr: int
    kind: str
    audio_folder: dict = UNSET
    fma: dict = UNSET
    filters: dict = UNSET


class AudioImportArgs(SettingsArgs):
    out_dropped: str | None = opt(None)


@job("audio-import")
def audio_import(a: AudioImportArgs, p: AudioImportSettings) -> None:
    """Import a user audio corpus (manifest or FMA metadata), apply the quality filters, write the manifest."""
    import pandas as pd

    from aria.audio.corpus import filter_tracks
    from aria.io.audio import load_audio, silence_fraction
    from aria.io.fma import fma_audio_path, read_audio_manifest, read_fma_tracks
    from aria.io.tables import write_csv, write_dropped

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


def _audio_vocab(p):
    from aria.audio.stages import AudioVocab

    return AudioVocab.from_config(p, sr=p["sr"], windows=p["windows"])


FIT_TRACKS = 500  # tokenizers are fitted on at most this many training tracks


class AudioTokenizeSettings(Settings):
    seed: int
    root: str | None = UNSET
    sr: int
    semantic: dict
    acoustic: dict
    cond: dict


class AudioTokenizeArgs(SettingsArgs):
    manifest: str
    out_tokenizers: str


@job("audio-tokenize")
def audio_tokenize(a: AudioTokenizeArgs, p: AudioTokenizeSettings) -> None:
    """Fit the semantic, acoustic and conditioning tokenizers on training tracks; encode every track."""
    from aria.audio.stages import ConditioningRVQ
    from aria.audio.tokenizers import MelRVQ, SemanticKMeans
    from aria.io.audio import load_audio
    from aria.io.tables import read_manifest, write_npz

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


class AudioSegmentsArgs(SettingsArgs):
    tokens: str
    stage: str
    out_csv: str


@job("audio-segments")
def audio_segments(a: AudioSegmentsArgs, p: TokenizerSettings) -> None:
    """Stage sequences (docs/spec.md §1 windows) of every training track for one stage."""
    import pandas as pd

    from aria.audio.tokenizers import stage_windows
    from aria.io.tables import read_npz, write_csv, write_npz

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


class AudioQueriesSettings(TokenizerSettings):
    seed: int
    prompt_s: float
    temperature: float


class AudioQueriesArgs(JobArgs):
    tokens: str
    tokenizers: str
    models: list[str] = arg(nargs=3)
    params: Mapping = arg(json=True)
    out_dir: str
    out_audio: str


@job("audio-queries")
def audio_queries(a: AudioQueriesArgs, p: AudioQueriesSettings) -> None:
    """Hierarchical generation for each held-out track: semantic, then coarse, then fine;
    one query per stage, and the generated codes decoded to audio.
    """
    from aria.audio.generation import generate_queries
    from aria.audio.tokenizers import MelRVQ
    from aria.io.audio import write_wav
    from aria.io.stores import atomic_dir
    from aria.io.tables import read_npz, write_npz

    torch_setup(a.threads)
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
