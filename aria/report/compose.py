"""Compose a report: main table, notes, figures, per-query evidence and the summary.

Input is one diagnostics JSON and one homogeneity JSON per report row, the rows
keyed ``"<method>/<stage>"`` (plain ``"<method>"`` in the symbolic experiment);
labels come from :func:`aria.registry.row_label` unless given.
"""

from __future__ import annotations

from aria import registry
from aria.report import render as R

__all__ = ["compose", "SYMBOLIC_CHANNEL_NOTE", "AUDIO_CHANNEL_NOTE", "LDS_NOTE"]

LDS_NOTE = (
    "LDS (SPEC §9): models retrained on random halves S_m of the training segments; target "
    "f_q = -loss of query q, prediction g_q = sum of the method's scores over S_m; LDS = mean over "
    "queries of the Spearman correlation over subsets, with a bootstrap 95% interval over queries. "
    "Higher is better; a random matrix scores about 0."
)

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
    lds: dict | None = None,
    residual: list | None = None,
    alignment: list | None = None,
    verdict_thresholds: dict | None = None,
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
    lds : dict, optional
        Row key -> LDS document (:func:`aria.evaluation.lds.lds_summary`) for the rows that
        have ground truth. Adds the LDS column and, per stage, the validation table
        (:func:`aria.evaluation.lds.order_agreement`).
    residual, alignment : list of dict, optional
        Per row (``keys`` order): the homogeneity JSON of the residual matrix and the
        alignment JSON of the removed axis (SPEC §7). Add the residual table and figure,
        the alignment table, and ``residual`` / ``alignment`` per method in the summary.
    verdict_thresholds : dict, optional
        Cut-offs of :func:`aria.evaluation.reliability.verdict` (config ``analysis.verdict``).
        Every row gets a verdict; a collapsed row's μz are shown in parentheses (not
        interpretable) and the verdict table states each one in a sentence.
    """
    from aria.evaluation.reliability import verdict

    labels = labels or {}
    audio = domain == "audio"
    lab = {k: labels.get(k) or registry.row_label(k) for k in keys}
    D = {lab[k]: d for k, d in zip(keys, diags)}
    H = {lab[k]: h for k, h in zip(keys, homs)}
    L = None if lds is None else {lab[k]: v for k, v in lds.items()}
    header, rows, channels = R.main_table(D, H, main_k=main_k, lds=L)
    V = {k: verdict(D[lab[k]], thresholds=verdict_thresholds) for k in keys}
    first_mu = 1 + len(R.DIAG_KEYS) + (L is not None)
    for k, row in zip(keys, rows):
        if V[k]["verdict"] == "collapsed":
            for i in range(first_mu, len(row), 3):
                row[i] = f"({row[i]})"
    validation, validation_summary = _validation(keys, lab, D, lds or {})
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
    sections = [
        (
            "Verdict per setting",
            ["Method", "Verdict", "Why"],
            [[lab[k], V[k]["verdict"] or f"none ({V[k]['flag']})", V[k]["sentence"]] for k in keys],
            VERDICT_NOTE,
        )
    ]
    Hres = A = None
    if residual:
        Hres = {lab[k]: h for k, h in zip(keys, residual, strict=True)}
        A = {lab[k]: a for k, a in zip(keys, alignment, strict=True)}
        sections.append(
            (
                "Residual: homogeneity after removing the leading axis",
                *R.residual_table(D, H, Hres, main_k=main_k),
                residual_reading(D, H, Hres, main_k=main_k),
            )
        )
        sections.append(("Axis–channel alignment of the removed axis (Eq. 8)", *R.alignment_table(A), ALIGNMENT_NOTE))
        figures["μz before and after removing the leading axis"] = R.residual_figure(H, Hres, main_k=main_k)
    evidence = [
        (qid, [[label, H[label]["by_k"][str(main_k)]["top_ids"][qi]] for label in H])
        for qi, qid in enumerate(h0["query_ids"])
    ]
    title = f"Aria report: {experiment}"
    if lds:
        notes.append(LDS_NOTE)
    html = R.html_report(
        title,
        header,
        rows,
        channels,
        main_k=main_k,
        figures=figures,
        notes=notes,
        evidence=evidence,
        media=media,
        sections=sections + validation,
    )
    md = R.markdown_report(title, header, rows, main_k=main_k, notes=notes, sections=sections + validation)
    summary = {"experiment": experiment, "main_k": main_k, "channels": channels, "methods": {}}
    for k in keys:
        summary["methods"][k] = {
            "label": lab[k],
            **{d: D[lab[k]][d] for d in R.DIAG_KEYS},
            **({"lds": {x: lds[k][x] for x in ("lds", "ci", "halves", "n_subsets")}} if k in (lds or {}) else {}),
            "homogeneity": {K: H[lab[k]]["by_k"][K]["summary"] for K in H[lab[k]]["by_k"]},
            "verdict": V[k],
        }
        if Hres is not None:
            summary["methods"][k]["residual"] = {
                "r1_removed": D[lab[k]]["r1"],
                "homogeneity": {K: Hres[lab[k]]["by_k"][K]["summary"] for K in Hres[lab[k]]["by_k"]},
            }
            summary["methods"][k]["alignment"] = {
                c: {x: v[x] for x in ("a_max", "a_max_feature", "a_r", "a_r_feature")}
                for c, v in A[lab[k]].items()
                if c != "_fit"
            } | {"fit": A[lab[k]]["_fit"]}
    if validation_summary:
        summary["validation"] = validation_summary
    return html, md, summary


VERDICT_NOTE = (
    "Collapsed: high r₁ with a leading axis that loads every query alike, or high ρ̄: one training "
    "ranking is shared by all queries, so the μz of that row (shown in parentheses in the main table) "
    "describe one fixed group and are left out of any comparison of methods. Offset-dominated: high c̄, "
    "compare scores within a query only. Thresholds: config analysis.verdict (README)."
)

ALIGNMENT_NOTE = (
    "u₁ (the training-item side of the removed axis) at the homogeneity pool's unit, correlated with "
    "each channel's features: A_max = the largest |corr| over features and dimensions (the feature "
    "named), A_R = the largest multiple correlation of an OLS fit on one feature (at most "
    "max_dims_fraction·(units − 1) dimensions, forward-selected). A high A_max says the axis every "
    "query is ranked by follows one feature dimension; A_R ≫ A_max says it follows a combination."
)


def residual_reading(D, H, Hres, *, main_k: int) -> str:
    """One sentence per method: does its strongest channel's μz survive removing the axis?"""
    out = [
        "If a method's homogeneity is per-query attribution it survives (or sharpens) once the "
        "leading axis is removed; if it came from the one group that axis retrieves for every "
        "query, it falls towards 0."
    ]
    for m in D:
        b = H[m]["by_k"][str(main_k)]["summary"]
        a = Hres[m]["by_k"][str(main_k)]["summary"]
        finite = [c for c in b if b[c]["mu_z"] == b[c]["mu_z"]]
        if not finite:
            continue
        c = max(finite, key=lambda c: b[c]["mu_z"])
        zb, za = b[c]["mu_z"], a[c]["mu_z"]
        if zb < 1.0:
            verdict = "no channel above μz = 1 to begin with"
        elif za >= 0.5 * zb:
            verdict = "survives"
        elif za < 0.5:
            verdict = "vanishes: it described the axis's fixed group"
        else:
            verdict = "is reduced"
        out.append(f"{m} (r₁ {D[m]['r1']:.2f}): strongest {c} μz {zb:+.2f} → {za:+.2f}, {verdict}.")
    return " ".join(out)


def _validation(keys, lab, D, lds) -> tuple[list, dict]:
    """Per stage with ground truth: the validation table (for the reports) and its summary."""
    from aria.evaluation.lds import halves_agreement, order_agreement, validation_reading

    stages = {}
    for k in keys:
        if k in lds:
            stages.setdefault(k.partition("/")[2] or "symbolic", []).append(k)
    tables, out = [], {}
    for stage, ks in stages.items():
        if len(ks) < 2:
            continue
        # keyed by row key (summary.json); labels only for display
        agree = order_agreement({k: D[lab[k]] for k in ks}, {k: lds[k]["lds"] for k in ks})
        stab = halves_agreement({k: lds[k]["halves"] for k in ks})
        reading = validation_reading(agree, stab, lab)
        header, rows = R.validation_table(agree, lab)
        title = "Validation: do the diagnostics order the methods as LDS does?"
        tables.append((title if stage == "symbolic" else f"{title} (stage {stage})", header, rows, reading))
        out[stage] = {**agree, "stability": stab, "reading": reading}
    return tables, out
