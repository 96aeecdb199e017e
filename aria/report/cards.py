"""Per-query evidence cards: one self-contained HTML page per query (docs/evidence.md "Per-query evidence cards").

A card shows the query (player, or MIDI and a piano roll), then one section per report row:
the setting's verdict, the aspect that dominates the query's top-K group, and each attributed
item with its score, where it lies in its source (time range, bars for MIDI), a player for the
attributed *window* (not the whole file) and its similarity to the query per channel, with the
group's z per channel; symbolic rows also roll the segments up by piece.

Every link in a card is relative to the card's own folder (``media/...``), so the report
folder can be moved or zipped. Input is plain data (:func:`card_html`); the numbers are
computed by :mod:`aria.evaluation.evidence` and gathered by ``aria cards``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable

import numpy as np

from aria.evaluation.documents import EMPTY_DOMINATES
from aria.evaluation.evidence import degenerate_channels, dominant_aspect, query_similarity, rollup
from aria.report.render import _CSS, _fmt

__all__ = ["card_html", "card_row_doc", "piano_roll_png", "CARD_CSS", "EMPTY_EXAMPLES"]

CARD_CSS = (
    _CSS
    + """
.verdict{display:inline-block;padding:.1rem .45rem;border-radius:.3rem;font-size:.85rem;background:#eef1f5}
.verdict.collapsed,.verdict.constant{background:#fde8e8;color:#9b1c1c}.verdict.query-dependent{background:#e6f4ea;color:#0a6b2d}
.verdict.offset-dominated{background:#fff4e0;color:#8a5300}
.warn{color:#8a5300}.aspect{font-weight:600} td.sim{color:#334} .roll{font-size:.85rem;color:#444}
audio.win{height:1.8rem;width:13rem;vertical-align:middle}
img.roll{max-width:100%;border:1px solid #eee}
"""
)


def piano_roll_png(notes, *, title: str = "") -> bytes:
    """PNG piano roll of a note list (time in s on x, MIDI pitch on y, one colour per track)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aria.report.render import _png

    fig, ax = plt.subplots(figsize=(9, 2.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n in notes:
        ax.broken_barh(
            [(float(n["onset"]), max(float(n["offset"] - n["onset"]), 0.02))],
            (int(n["pitch"]) - 0.4, 0.8),
            color=colours[int(n["track"]) % len(colours)],
        )
    if len(notes):
        ax.set_ylim(int(notes["pitch"].min()) - 2, int(notes["pitch"].max()) + 2)
        ax.set_xlim(0, float(notes["offset"].max()) + 0.2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title, fontsize=9)
    return _png(fig)


def _player(src: str | None, cls: str = "win") -> str:
    if not src:
        return "–"
    return f'<audio class="{cls}" controls preload="none" src="{html.escape(src)}"></audio>'


def _verdict_badge(v: dict) -> str:
    name = v.get("verdict") or "no verdict"
    return f'<span class="verdict {html.escape(name)}">{html.escape(name)}</span> {html.escape(v.get("sentence", ""))}'


def card_html(card: dict) -> str:
    """One query's card.

    ``card``: ``{"query_id", "title", "query": {"player": src or None, "midi": src or None,
    "roll_png": bytes or None, "genre", "empty": {channel: [feature]}}, "channels": [...], "k": int,
    "rows": [{"key", "verdict", "aspect": {"channel", "z", "significant", "left_out"}, "z": {channel: z},
    "items": [{"id", "score", "where", "player", "sim": {channel: float}}], "rollup": [...] or None,
    "note": str, "warnings": [str]}]}``.

    ``query["empty"]`` (channels in which the query itself measured nothing,
    :func:`aria.evaluation.degenerate.item_empty`) and each row's ``warnings`` are shown as ⚠ lines.
    """
    q = card["query"]
    chans = card["channels"]
    head = [f"<h1>Evidence for query <code>{html.escape(card['query_id'])}</code></h1>"]
    sub = [f"{html.escape(card['title'])}"]
    if q.get("genre"):
        sub.append(f"genre of its held-out source: {html.escape(q['genre'])}")
    head.append(f'<p class="sub">{" · ".join(sub)} · <a href="../report.html">back to the report</a></p>')
    qparts = []
    if q.get("player"):
        qparts.append(f"Query audio: {_player(q['player'], 'q')}")
    if q.get("midi"):
        qparts.append(f'<a href="{html.escape(q["midi"])}">query MIDI</a>')
    head.append("<p>" + " · ".join(qparts) + "</p>")
    for c, feats in (q.get("empty") or {}).items():
        head.append(
            f'<p class="warn">⚠ The query is empty in {html.escape(c)} ({html.escape(", ".join(feats))}: '
            "nothing measured, e.g. no chord change or one velocity throughout): its similarities in that "
            "channel compare nothing with the items and are not evidence.</p>"
        )
    if q.get("roll_png"):
        b64 = base64.b64encode(q["roll_png"]).decode()
        head.append(f'<img class="roll" alt="piano roll of the query" src="data:image/png;base64,{b64}">')
    body = []
    for r in card["rows"]:
        a = r["aspect"]
        if a["channel"] is None:
            aspect = "no channel has a finite z"
        elif a["significant"]:
            aspect = f'<span class="aspect">{html.escape(a["channel"])}</span> dominates (z = {a["z"]:+.2f})'
        else:
            aspect = f"no aspect stands out (largest: {html.escape(a['channel'])}, z = {a['z']:+.2f} < 1.645)"
        if a.get("left_out"):
            aspect += f" ({html.escape(', '.join(a['left_out']))} left out: mostly empty items)"
        th = "".join(f"<th>{html.escape(c)} sim</th>" for c in chans)
        trs = []
        for rank, it in enumerate(r["items"], start=1):
            sims = "".join(f'<td class="sim">{_fmt(it["sim"].get(c), ".3f")}</td>' for c in chans)
            trs.append(
                f"<tr><td>{rank}</td><td><code>{html.escape(it['id'])}</code></td><td>{_fmt(it['score'], '.4g')}</td>"
                f"<td>{html.escape(it['where'])}</td><td>{_player(it.get('player'))}</td>{sims}</tr>"
            )
        zrow = "".join(f"<td>{_fmt(r['z'].get(c), '+.2f')}</td>" for c in chans)
        trs.append(f'<tr><td colspan="5" style="text-align:right">group z (K = {card["k"]})</td>{zrow}</tr>')
        roll = ""
        if r.get("rollup"):
            roll = (
                '<p class="roll">By piece: '
                + "; ".join(
                    f"<code>{html.escape(p['track'])}</code> {p['n']} segment{'s' if p['n'] > 1 else ''} "
                    f"(best rank {p['best_rank']})"
                    for p in r["rollup"]
                )
                + "</p>"
            )
        body.append(
            f"<details open><summary><b>{html.escape(r['label'])}</b>"
            f" — {aspect}</summary><p>{_verdict_badge(r['verdict'])}</p>"
            f"<table><tr><th>#</th><th>training item</th><th>score</th><th>where</th><th>window</th>{th}</tr>"
            f"{''.join(trs)}</table>{roll}"
            + (f'<p class="roll">{html.escape(r["note"])}</p>' if r.get("note") else "")
            + "".join(f'<p class="warn">⚠ {html.escape(w)}.</p>' for w in r.get("warnings", []))
            + "</details>"
        )
    notes = (
        "<ul class='notes'><li>Score: the row's matrix entry for this query (track-level rows: the "
        "per-query normalized mean over the track's segments, docs/spec.md §3). Similarity: 1/(1+d) with d the "
        "standardized distance over the pool's scales, chord progressions by LCS of root motions; 1 = "
        "identical. Group z: the homogeneity of the whole top-K group against random groups (docs/spec.md §6).</li>"
        "<li>A collapsed setting ranks training items nearly the same for every query: its list "
        "describes one fixed group, not this query.</li></ul>"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Evidence: '
        f"{html.escape(card['query_id'])}</title><style>{CARD_CSS}</style></head><body>"
        + "".join(head)
        + "".join(body)
        + notes
        + "</body></html>\n"
    )


#: what an empty channel usually means, for the cards' warnings (aria.evaluation.degenerate)
EMPTY_EXAMPLES = {
    "dynamic": "one velocity throughout, as in MIDI without dynamics",
    "harmony": "no vertical interval in a single line",
    "harmonic": "no chord change found",
    "rhythmic": "no beat found",
}


def _num2(x) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:+.2f}"


def card_row_doc(
    row: dict,
    j: int,
    query_features: dict | None,
    *,
    pool: dict,
    pos: dict,
    channels: dict,
    scales: dict,
    pool_empty: dict,
    windows: dict | None,
    audio: bool,
    track_media: Callable[[str], str | None],
    segment_media: Callable[[str], str | None],
) -> dict:
    """One row of a query's evidence card: the method's top-K items, their evidence and the verdict.

    Parameters
    ----------
    row : dict
        The report row: ``spec`` (its key, label, stage, window_s), ``top`` (n_queries, K) item ids,
        ``z`` (per channel, (n_queries,)) or None, ``scores`` (n_queries, K), ``win`` (the best
        window of each track for each query, or None) and ``verdict``.
    j : int
        The query's column in the row's matrices.
    query_features : dict or None
        The query's features, with the pool's definitions (None: they could not be computed).
    pool, pos, channels, scales, pool_empty
        The evidence pool's features (each (n_pool, d_f)), each item's position in it, the channels,
        the null's feature scales and, per channel, the pool items that are empty in it (n_pool,).
    windows : dict or None
        Symbolic segments' time and bar ranges and notes, by segment id (None for audio).
    audio : bool
        Audio items (tracks and their windows) or symbolic ones (segments, pieces).
    track_media, segment_media : callable
        Write (once) a training track's or a symbolic segment's audio; its path in the card
        folder, or None without a player.

    Returns
    -------
    dict
        ``key``, ``label``, ``verdict``, ``aspect`` (the dominant one, or None), ``z`` (per
        channel), ``items`` (id, score, sim per channel, where, player), ``rollup`` (symbolic
        segments: per piece), ``note`` and ``warnings`` (channels left out as mostly empty).
    """
    r = row["spec"]
    item_ids = row["top"][j]
    sims = (
        query_similarity(query_features, pool, [pos[t] for t in item_ids], channels, scales)
        if query_features is not None
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
            it["player"] = f"{track_media(t)}#t={a0:.2f},{a1:.2f}"
        elif row["win"] is not None:  # a whole piece (unit: track): its best segment
            tracks, arg, seg_rows, _ = row["win"]
            sid = seg_rows[arg[j, tracks.index(t)]]
            w = windows[sid]
            it["where"] = (
                f"{t}, its best segment for this query: {w['t0']:.1f}–{w['t1']:.1f} s, "
                f"bars {w['bars'][0]}–{w['bars'][1]}"
            )
            it["player"] = segment_media(sid)
        elif audio:
            it["where"] = f"{t}, whole track (track-level embedding)"
            it["player"] = track_media(t)
        else:
            w = windows[t]
            b0, b1 = w["bars"]
            bars = f"bar {b0}" if b1 <= b0 else f"bars {b0}–{b1}"
            span = f"{w['t0']:.1f} s" if w["t1"] <= w["t0"] else f"{w['t0']:.1f}–{w['t1']:.1f} s"
            it["where"] = f"{t.split(':')[0]}, {span}, {bars}"
            if not len(w["notes"]):
                it["where"] += " (no note starts in this segment)"
            it["player"] = segment_media(t)
        items.append(it)
    zq = {c: z[c][j] for c in channels} if (z := row["z"]) else {}
    # a channel in which the group is mostly empty items is identical emptiness, not evidence
    degen = degenerate_channels([pos[t] for t in item_ids], pool_empty, threshold=EMPTY_DOMINATES)
    asp = dominant_aspect(zq, exclude=list(degen))
    return dict(
        key=r["key"],
        label=r["label"],
        verdict=row["verdict"],
        aspect=asp,
        z=zq,
        items=items,
        rollup=None
        if audio or row["win"] is not None
        else rollup([t.split(":")[0] for t in item_ids], [i["score"] for i in items]),
        note="" if query_features is not None else "This query's features could not be computed: no similarities.",
        warnings=[
            f"{round(sh * len(item_ids))} of {len(item_ids)} items are empty in {c} (nothing "
            f"measured, e.g. {EMPTY_EXAMPLES.get(c, 'an all-zero feature')}): they are identical "
            f"there, so its z ({_num2(zq.get(c))}) is left out of the dominant aspect"
            for c, sh in degen.items()
        ],
    )
