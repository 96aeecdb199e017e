"""Report jobs: the HTML report, summary.json and the evidence cards.

The job contract (argument dataclasses, registration, the generated command line): :mod:`.base`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from aria.workflow.jobs.base import JobArgs, SpecArgs, arg, job, opt
from aria.workflow.jobs.evaluation import _evidence
from aria.workflow.jobs.settings import UNSET, Settings

log = logging.getLogger("aria")


def _row_costs(spec: dict, device: str) -> dict:
    """Each report row's cost from its jobs' benchmark files and its stores' bytes (docs/spec.md §7)."""
    from aria.evaluation.cost import row_cost
    from aria.io.tables import disk_usage, read_benchmark

    out = {}
    for key, files in spec.items():
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


class ReportSettings(Settings):
    experiment: str | None
    main_k: int
    rows: list[str]
    domain: str = UNSET
    stages: list[str]
    device: str = UNSET
    verdict: dict = UNSET
    reference_seed: int = UNSET
    selfinfluence_reason: str = UNSET
    root: str = UNSET  # audio: the corpus folder
    labels: dict = UNSET
    lds_rows: list[str] = UNSET
    notes: dict = UNSET  # {"unit", "channels"}: the report's own sentences for its rows (compose)


class ReportArgs(JobArgs):
    diagnostics: list[str] = arg(nargs="+")
    homogeneity: list[str] = arg(nargs="+")
    params: Mapping = arg(json=True)
    out_html: str
    out_md: str
    out_summary: str
    out_figures: str | None = opt(None)
    out_tables: str | None = opt(None)
    manifest: str | None = opt(None)
    queries_audio: str | None = opt(None)
    lds: list[str] | None = opt(None, nargs="+")
    lds_references: list[str] | None = opt(None, nargs="+")
    homogeneity_residual: list[str] | None = opt(None, nargs="+")
    alignment: list[str] | None = opt(None, nargs="+")
    cost: dict | None = opt(None, json=True)
    pool: str | None = opt(None)
    sensitivity: list[str] | None = opt(None, nargs="*")
    selfinfluence: list[str] | None = opt(None, nargs="*")
    unlearning_compare: list[str] | None = opt(None, nargs="*")
    cards: str | None = opt(None)
    dropped: list[str] | None = opt(None, nargs="*")
    feature_failures: list[str] | None = opt(None, nargs="*")
    segments_csv: list[str] | None = opt(None, nargs="+")
    queries: list[str] | None = opt(None, nargs="+")
    planted: list[str] | None = opt(None, nargs="*")


@job("report")
def report(a: ReportArgs, p: ReportSettings) -> None:
    """report.html, report.md and summary.json from diagnostics and homogeneity."""
    import os

    from aria.io.stores import atomic_file
    from aria.io.tables import read_json, read_manifest, write_json, write_report_assets
    from aria.report import compose

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
        notes=p.get("notes"),
    )
    if a.out_figures or a.out_tables:  # the pieces snakemake --report shows (rules/report.smk)
        write_report_assets(a.out_figures, a.out_tables, figures=assets["figures"], tables=assets["tables"])
    with atomic_file(a.out_html) as tmp:
        tmp.write_text(html, encoding="utf-8")
    with atomic_file(a.out_md) as tmp:
        tmp.write_text(md, encoding="utf-8")
    write_json(a.out_summary, summary)
    log.info("report for %d rows -> %s", len(keys), a.out_html)


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
    from aria.symbolic.tokenize import track_segment_notes

    out = {}
    for tid, _, tempo, segs in track_segment_notes(_read_npz_cached(train_npz), block=block):
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


@job("cards")
def cards(a: SpecArgs) -> None:
    """One evidence card per query and the media they play, in one folder.

    docs/evidence.md, "Per-query evidence cards", shows one.
    """
    import shutil

    from aria.evaluation.evidence import best_windows
    from aria.evaluation.reliability import verdict
    from aria.io.layouts import read_null
    from aria.io.stores import atomic_dir, open_scores
    from aria.io.tables import read_csv, read_json, read_manifest, read_npz, write_json
    from aria.report.cards import card_html, card_row_doc, piano_roll_png

    spec = a.spec
    audio, K = spec["domain"] == "audio", int(spec["main_k"])
    ids, pool, channels = _evidence(spec["evidence"], spec.get("manifest") if audio else None)
    ids = np.asarray(ids).astype(str)
    pos = {t: i for i, t in enumerate(ids)}
    scales = read_null(spec["null"])["scales"]
    from aria.evaluation.degenerate import empty_in_channels, item_empty

    pool_empty = empty_in_channels(pool, channels)  # items with no evidence per channel (docs/spec.md §5)
    man = read_manifest(spec["manifest"], root=spec.get("root"), check_files=False)
    genre = dict(zip(man["track_id"].astype(str), man["genre"].astype(str))) if "genre" in man else {}
    q = read_npz(spec["queries"])
    qids, q_tracks = np.asarray(q["query_ids"]).astype(str), np.asarray(q["track_ids"]).astype(str)
    sr = int(spec.get("sr", 22050))

    # the query's features, with the pool's definitions
    windows = None
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
                j = row["qcol"].get(qid)
                if j is None:
                    continue
                card_row = card_row_doc(
                    row,
                    j,
                    qfeat.get(qid),
                    pool=pool,
                    pos=pos,
                    channels=channels,
                    scales=scales,
                    pool_empty=pool_empty,
                    windows=windows,
                    audio=audio,
                    track_media=track_audio,
                    segment_media=segment_audio,
                )
                aspects[row["spec"]["key"]] = card_row["aspect"]
                card_rows.append(card_row)
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
