"""Compose a report: main table, notes, figures, per-query evidence and the summary.

Input is one diagnostics JSON and one homogeneity JSON per report row, the rows
keyed ``"<method>/<stage>"`` (plain ``"<method>"`` in the symbolic experiment);
labels come from :func:`aria.registry.row_label` unless given.
"""

from __future__ import annotations

from aria import registry
from aria.report import render as R

__all__ = ["compose", "SYMBOLIC_CHANNEL_NOTE", "AUDIO_CHANNEL_NOTE"]

SYMBOLIC_CHANNEL_NOTE = (
    "Channels: melody = melodic-interval histogram; harmony = pitch-class and vertical-interval "
    "histograms; rhythm = note density, mean rhythmic value, rhythmic-value histogram; "
    "dynamic = velocity change, std and range; texture = polyphony mean and std, pitch range."
)
AUDIO_CHANNEL_NOTE = (
    "Channels: rhythmic = BeatNet beat-interval and librosa onset-interval histograms; harmonic = "
    "chroma, tonnetz and chord root-motion LCS (madmom); timbral = MFCC and CQT statistics. Rows are "
    "(method, stage) on the track-level matrix (z-score per query, SPEC §3), then embedding baselines: "
    "basic-pitch stands in for a pitch/harmony encoder, aiSFX for a general-audio (timbre) encoder; "
    "'avg' = time-averaged embeddings, 'all-vs-all' = max cosine over 10 s windows at 1 s hop."
)


def compose(
    keys,
    diags,
    homs,
    *,
    experiment: str,
    main_k: int,
    domain: str = "symbolic",
    labels: dict | None = None,
    media: dict | None = None,
) -> tuple[str, str, dict]:
    """``(html, markdown, summary)`` of one experiment's report.

    Parameters
    ----------
    keys : list of str
        Row keys, in report order.
    diags, homs : list of dict
        The diagnostics and homogeneity JSON of each row, in ``keys`` order.
    experiment, main_k, domain : keyword-only
        Title, the K of the main table, ``"symbolic"`` or ``"audio"``.
    labels : dict, optional
        Labels for keys the registry does not know (external matrices).
    media : dict, optional
        Audio players: ``{"tracks": {track_id: relative path}, "queries": folder}``.
    """
    labels = labels or {}
    audio = domain == "audio"
    lab = {k: labels.get(k) or registry.row_label(k) for k in keys}
    D = {lab[k]: d for k, d in zip(keys, diags)}
    H = {lab[k]: h for k, h in zip(keys, homs)}
    header, rows, channels = R.main_table(D, H, main_k=main_k)
    h0, d0 = homs[0], diags[0]
    unit = (
        "reliability on each raw score matrix (segments x queries; tracks x queries for the "
        "baselines), homogeneity on the track-level matrix"
        if audio
        else f"{d0['n']} training segments"
    )
    notes = [
        f"{unit}; {d0['q']} queries; homogeneity z against random groups of the same "
        f"size (K = {main_k}); Pos = share of queries with z > 0, Sig = share with z > 1.645.",
        "High r1 or rho_bar means the method ranks training items nearly the same for every "
        "query: its homogeneity then describes one fixed group, not per-query attribution.",
        AUDIO_CHANNEL_NOTE if audio else SYMBOLIC_CHANNEL_NOTE,
    ]
    figures = {
        "μz against K per channel and method": R.k_sweep_figure(H),
        "Singular-value spectrum per method": R.spectrum_figure(D),
    }
    evidence = [
        (qid, [[label, H[label]["by_k"][str(main_k)]["top_ids"][qi]] for label in H])
        for qi, qid in enumerate(h0["query_ids"])
    ]
    title = f"Aria report: {experiment}"
    html = R.html_report(
        title, header, rows, channels, main_k=main_k, figures=figures, notes=notes, evidence=evidence, media=media
    )
    md = R.markdown_report(title, header, rows, main_k=main_k, notes=notes)
    summary = {"experiment": experiment, "main_k": main_k, "channels": channels, "methods": {}}
    for k in keys:
        summary["methods"][k] = {
            "label": lab[k],
            **{d: D[lab[k]][d] for d in R.DIAG_KEYS},
            "homogeneity": {K: H[lab[k]]["by_k"][K]["summary"] for K in H[lab[k]]["by_k"]},
        }
    return html, md, summary
