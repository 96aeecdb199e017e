"""Compose a report: main table, notes, figures, per-query evidence and the summary.

Input is one diagnostics JSON and one homogeneity JSON per report row, the rows
keyed ``"<method>/<stage>"`` (plain ``"<method>"`` in the symbolic experiment);
labels come from :func:`aria.registry.row_label` unless given.
"""

from __future__ import annotations

import numpy as np

from aria import registry
from aria.evaluation.numerics import ERROR_LIMIT
from aria.report import render as R

__all__ = ["compose", "SYMBOLIC_CHANNEL_NOTE", "AUDIO_CHANNEL_NOTE", "LDS_NOTE", "PUBLISHED_LDS_NOTE"]

LDS_NOTE = (
    "LDS (docs/spec.md §9): models retrained on random halves S_m of the training segments; target "
    "f_q = -loss of query q, prediction g_q = sum of the method's scores over S_m; LDS = mean over "
    "queries of the Spearman correlation over subsets, with a bootstrap 95% interval over queries. "
    "Higher is better; a random matrix scores about 0."
)
PUBLISHED_LDS_NOTE = (
    "LDS against the benchmark's published ground truth (dattri, lds/target_values_lds.pt and "
    "indices_lds.pt): models retrained by the benchmark on its subsets S_m; target f_q = -loss of the "
    "last token of test sample q, prediction g_q = sum of the method's scores over S_m; LDS = mean over "
    "queries of the Spearman correlation over subsets (dattri.metric.lds), with a bootstrap 95% interval "
    "over queries. Higher is better; a random matrix scores about 0."
)

SYMBOLIC_CHANNEL_NOTE = (
    "Channels: melody = melodic-interval histogram; harmony = pitch-class and vertical-interval "
    "histograms; rhythm = note density, mean rhythmic value, rhythmic-value histogram; "
    "dynamic = velocity change, std and range; texture = polyphony mean and std, pitch range."
)
AUDIO_CHANNEL_NOTE = (
    "Channels: rhythmic = BeatNet beat-interval and librosa onset-interval histograms; harmonic = "
    "chroma, tonnetz and chord root-motion LCS (madmom); timbral = MFCC and CQT statistics. Rows are "
    "(method, stage) on the track-level matrix (z-score per query, docs/spec.md §3), then embedding baselines: "
    "basic-pitch stands in for a pitch/harmony encoder, aiSFX for a general-audio (timbre) encoder; "
    "'avg' = time-averaged embeddings, 'all-vs-all' = max cosine over 10 s windows at 1 s hop."
)


NUMERICS_NOTE = (
    "τ = L(θ′) − L(θ₀) is a difference of two nearly equal losses. Spread: root mean square over queries of "
    "τ's standard deviation over training items. The first query of each job is scored again from θ₀ in float64 "
    "and in float32; round-off = root-mean-square difference from float64 (for float64 itself: float32's times "
    "u64/u32 = 2^-29). Precision mixed keeps the hidden states in float32 and evaluates the output layer, softmax "
    "and averages in float64. Aria warns above 1% of the spread."
)


def numerics_table(numerics) -> tuple[list, list]:
    """``(header, rows)``: per unlearning row, τ's spread and round-off
    (:func:`~aria.evaluation.numerics.score_numerics`).
    """

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.2g}%"

    def g(x):
        return "n/a" if x is None else f"{x:.2g}"

    header = ["Method", "Precision", "Spread of τ", "Round-off (est.)", "of spread", "float32 alone", "of spread"]
    rows = [
        [
            label,
            n["precision"],
            g(n["spread"]),
            g(n["error"]),
            pct(n["ratio"]),
            g(n["float32_error"]),
            pct(n["float32_ratio"]),
        ]  # fmt: skip
        for label, n in numerics
    ]
    return header, rows


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
    cards: list | None = None,
    lds: dict | None = None,
    lds_references: dict | None = None,
    residual: list | None = None,
    alignment: list | None = None,
    verdict_thresholds: dict | None = None,
    reference_seed: int | None = None,
    cost: dict | None = None,
    accounting: dict | None = None,
    sensitivity: list | None = None,
    unlearning: dict | None = None,
    assets: dict | None = None,
    planted: dict | None = None,
    notes: dict | None = None,
) -> tuple[str, str, dict]:
    """``(html, markdown, summary)`` of one experiment's report.

    ``assets``, when given (a dict), receives the report's pieces for ``snakemake --report``:
    ``assets["figures"] = {title: png bytes}`` and ``assets["tables"] = {title: (header, rows)}``,
    the main table first, in the report's order.

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
    cards : list of dict, optional
        The evidence cards' index (``aria cards``), paths relative to the report: the per-query
        section then links each query's card, its player or MIDI and the dominant aspect per row.
    media : dict, optional
        Audio players: ``{"tracks": {track_id: relative path}, "queries": folder}``.
    lds : dict, optional
        Row key -> LDS document (:func:`aria.evaluation.lds.lds_summary`) for the rows that
        have ground truth. Adds the LDS column and, per stage, the validation table
        (:func:`aria.evaluation.lds.order_agreement`).
    lds_references : dict, optional
        Stage -> its ``references.json`` (``aria lds-references``: the targets' seed-noise
        ceiling and the reference rows' LDS), shown in the validation section of that stage.
    residual, alignment : list of dict, optional
        Per row (``keys`` order): the homogeneity JSON of the residual matrix and the
        alignment JSON of the removed axis (docs/spec.md §7). Add the residual table and figure,
        the alignment table, and ``residual`` / ``alignment`` per method in the summary.
    reference_seed : int, optional
        Seed of the reference row of the verdict table: two Gaussian matrices of the rows' shape
        (:func:`aria.evaluation.agreement.gaussian_reference`), which the noise diagnostic must call
        noisy although its other diagnostics are the best of all. None: no reference row.
    verdict_thresholds : dict, optional
        Cut-offs of :func:`aria.evaluation.reliability.verdict` (config ``analysis.verdict``).
        Every row gets a verdict; a collapsed row's μz are shown in parentheses (not
        interpretable) and the verdict table states each one in a sentence.
    cost : dict, optional
        Row key -> :func:`aria.evaluation.cost.row_cost` (rows without one, e.g. external
        matrices, are left out of the cost table); adds the cost table and ``cost`` per method.
    accounting : dict, optional
        ``{"dropped": [row of aria.io.tables.DROPPED_COLUMNS], "counts": [per-stage dict],
        "pool": pool-check JSON}``; adds the data-accounting tables and ``data`` in the summary.
    sensitivity : list of dict, optional
        One document per grid point (``aria sweep-point``); adds the sensitivity table and
        heat-map and ``sensitivity`` in the summary.
    unlearning : dict, optional
        ``{"grid": [self-influence point JSON], "compare": [comparison], "reason": str}``
        (``aria unlearning-selfinfluence``, ``aria unlearning-compare``); adds the self-influence
        table and figure, the chosen setting, the comparison table and figure, and ``unlearning``
        in the summary.
    notes : dict, optional
        ``{"unit": str, "channels": str}``: what the rows are and what the channels measure, in place
        of the domain's own sentences (the diffusion experiment's clip-level rows).
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
    for k in keys:
        dom = (H[lab[k]].get("empty") or {}).get("dominated")
        if dom:
            V[k] = {
                **V[k],
                "warning": f"its top-{main_k} groups are mostly items with empty {', '.join(dom)} features",
                "sentence": V[k]["sentence"]
                + f" Warning: its top-{main_k} groups are mostly items with empty {', '.join(dom)} features, "
                "so those channels' homogeneity measures missing evidence.",
            }
    first_mu = 1 + len(R.DIAG_KEYS) + len(R.REPLICA_LABELS) + (L is not None)
    for k, row in zip(keys, rows):
        if V[k]["verdict"] in ("collapsed", "constant", "noisy"):
            for i in range(first_mu, len(row), 3):
                row[i] = f"({row[i]})"
    validation, validation_summary = _validation(
        keys, lab, D, lds or {}, V=V, references=lds_references, planted=planted
    )
    planted_sections, planted_summary = _planted(keys, lab, D, V, planted) if planted else ([], None)
    validation = planted_sections + validation
    h0, d0 = homs[0], diags[0]
    unit = (
        "reliability on each raw score matrix (segments x queries; tracks x queries for the "
        "baselines), homogeneity on the track-level matrix"
        if audio
        else f"{d0['n']} training segments"
    )
    own = notes or {}
    unit = own.get("unit", unit)
    notes = [
        f"{unit}; {d0['q']} queries; homogeneity z against random groups of the same "
        f"size (K = {main_k}); Pos = share of queries with z > 0, Sig = share with z > 1.645.",
        "High r1 or rho_bar means the method ranks training items nearly the same for every "
        "query: its homogeneity then describes one fixed group, not per-query attribution.",
        own.get("channels") or (AUDIO_CHANNEL_NOTE if audio else SYMBOLIC_CHANNEL_NOTE),
    ]
    figures = {
        "μz against K per channel and method": R.k_sweep_figure(H),
        "Singular-value spectrum per method": R.spectrum_figure(D),
    }
    verdict_rows = [[lab[k], V[k]["verdict"] or f"none ({V[k]['flag']})", V[k]["sentence"]] for k in keys]
    reference = None
    if reference_seed is not None and d0.get("n") and d0.get("q"):
        from aria.evaluation.agreement import gaussian_reference

        reference = gaussian_reference(int(d0["n"]), int(d0["q"]), random_state=reference_seed)
        ref_v = verdict(reference, thresholds=verdict_thresholds)
        reference["verdict"] = ref_v
        verdict_rows.append(
            [
                f"Reference: Gaussian noise ({reference['n_used']} x {reference['q']})",
                ref_v["verdict"] or f"none ({ref_v['flag']})",
                ref_v["sentence"] + f" (r1 = {reference['r1']:.3f}, rho_bar = {reference['rho_bar']:.3f}: "
                "the best diagnostics of any row.)",
            ]
        )
    sections = [("Verdict per setting", ["Method", "Verdict", "Why"], verdict_rows, VERDICT_NOTE)]
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
    if any(h.get("confounds") for h in homs):
        sections.append(
            (
                f"Confounds: genre and same piece (K = {main_k})",
                *R.confounds_table(H, main_k=main_k),
                confounds_reading(H),
            )
        )
        sections.append(("Homogeneity per query genre", *R.genre_table(H), GENRE_NOTE))
    if any(h.get("empty") for h in homs):
        sections.append(("Empty features in the top-K groups", *R.empty_table(H), empty_reading(H)))
    if sensitivity:
        sections.append(
            (
                f"Sensitivity to hyperparameters (K = {main_k})",
                *R.sensitivity_table(
                    sensitivity,
                    channels,
                    main_k=main_k,
                    verdicts=[verdict(d["diagnostics"], thresholds=verdict_thresholds)["verdict"] for d in sensitivity]
                    if all("q" in d["diagnostics"] for d in sensitivity)
                    else None,
                ),
                SENSITIVITY_NOTE,
            )
        )
        figures["Sensitivity: μz per grid point, stage and channel"] = R.sensitivity_figure(
            sensitivity, channels, main_k=main_k
        )
    if unlearning and unlearning["grid"]:
        sections.append(
            (
                "Unlearning: train-to-train self-influence grid",
                *R.selfinfluence_table(unlearning["grid"]),
                selfinfluence_reading(unlearning["grid"], unlearning.get("reason", "")),
            )
        )
        figures["Unlearning self-influence: median R and Fréchet distance per setting"] = R.selfinfluence_figure(
            unlearning["grid"]
        )
    if unlearning and unlearning["compare"]:
        sections.append(
            (
                "Unlearning against the other attributions (test-to-train)",
                *R.unlearning_compare_table(unlearning["compare"]),
                COMPARE_NOTE,
            )
        )
        figures["Scores sorted by the unlearning score (mean ± std over queries)"] = R.unlearning_compare_figure(
            unlearning["compare"]
        )
    numerics = [(lab[k], D[lab[k]]["numerics"]) for k in keys if D[lab[k]].get("numerics")]
    if numerics:
        sections.append(("Unlearning: round-off of the scores", *numerics_table(numerics), NUMERICS_NOTE))
        notes += [
            f"Warning: {label}'s scores carry an estimated round-off of {100 * n['ratio']:.2g}% of their "
            "spread: their ranking is partly numerical noise (raise the step size or use precision: float64)."
            for label, n in numerics
            if n.get("ok") is False and n.get("ratio") is not None
        ]
    if accounting:
        sections += _accounting_sections(accounting, main_k=main_k)
    if cost:
        sections.append(("Cost per setting", *R.cost_table({lab[k]: cost[k] for k in keys if k in cost}), COST_NOTE))
    evidence = [
        (qid, [[label, H[label]["by_k"][str(main_k)]["top_ids"][qi]] for label in H])
        for qi, qid in enumerate(h0["query_ids"])
    ]
    title = f"Aria report: {experiment}"
    if lds:
        published = any(v.get("ground_truth") == "published" for v in lds.values())
        notes.append(PUBLISHED_LDS_NOTE if published else LDS_NOTE)
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
        cards=cards,
        labels={k: lab[k] for k in keys},
        sections=sections + validation,
    )
    md = R.markdown_report(title, header, rows, main_k=main_k, notes=notes, sections=sections + validation)
    if assets is not None:
        assets["figures"] = dict(figures)
        assets["tables"] = {"Main table": (header, rows)}
        assets["tables"].update({sec[0]: (sec[1], sec[2]) for sec in sections + validation})
    summary = {"experiment": experiment, "main_k": main_k, "channels": channels, "methods": {}}
    for k in keys:
        summary["methods"][k] = {
            "label": lab[k],
            **{d: D[lab[k]][d] for d in R.DIAG_KEYS},
            **({"lds": {x: lds[k][x] for x in ("lds", "ci", "halves", "n_subsets")}} if k in (lds or {}) else {}),
            "homogeneity": {K: H[lab[k]]["by_k"][K]["summary"] for K in H[lab[k]]["by_k"]},
            "verdict": V[k],
            "replica": D[lab[k]].get("replica"),
        }
        if not D[lab[k]].get("replica"):
            summary["methods"][k]["replica_note"] = D[lab[k]].get("replica_note", "no replica")
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
        if k in (cost or {}):
            summary["methods"][k]["cost"] = cost[k]
        if D[lab[k]].get("numerics"):
            summary["methods"][k]["numerics"] = D[lab[k]]["numerics"]
        if H[lab[k]].get("empty"):
            e = H[lab[k]]["empty"]
            summary["methods"][k]["empty"] = {
                x: e[x] for x in ("k", "n_pool", "pool_count", "group_share", "dominated")
            }
        c_doc = H[lab[k]].get("confounds")
        if c_doc:
            summary["methods"][k]["confounds"] = {
                "k": c_doc["k"],
                "genre_sd_mu_z": {c: v["sd_mu_z"] for c, v in c_doc["genre"].items()},
                "by_genre": {c: v["by_genre"] for c, v in c_doc["genre"].items()},
                "stratified": c_doc["stratified"]["summary"],
                **(
                    {"same_piece": {x: c_doc["same_piece"][x] for x in ("mean_share", "null_share")}}
                    if "same_piece" in c_doc
                    else {}
                ),
            }
    if validation_summary:
        summary["validation"] = validation_summary
    if planted_summary:
        summary["planted"] = planted_summary
    if sensitivity:
        summary["sensitivity"] = [
            {x: d[x] for x in ("method", "stage", "point", "diagnostics")}
            | {"homogeneity": d["summary"]}
            | ({"verdict": verdict(d["diagnostics"], thresholds=verdict_thresholds)} if "q" in d["diagnostics"] else {})
            for d in sensitivity
        ]
    if reference is not None:
        summary["reference_noise"] = {x: v for x, v in reference.items() if x != "replica"} | {
            "replica": {x: reference["replica"][x] for x in ("spearman", "pearson", "shared_energy", "shared")}
        }
    if unlearning:
        summary["unlearning"] = {
            "selfinfluence": [
                {
                    "stage": d["stage"],
                    "point": d["point"],
                    "chosen": bool(d.get("chosen")),
                    **{x: d[x] for x in ("median_rank", "share_rank1", "mean_top_sim", "mean_bottom_sim", "frechet")},
                    **({"diverged": True} if d.get("diverged") else {}),
                    **({"numerics": d["numerics"]} if "numerics" in d else {}),
                    "n_targets": len(d["rank"]),
                }
                for d in unlearning["grid"]
            ],
            "compare": [
                {x: c[x] for x in ("stage", "other", "label", "pearson_mean", "pearson_std")}
                for c in unlearning["compare"]
            ],
        }
    if accounting:
        from collections import Counter

        summary["data"] = {
            "counts": accounting["counts"],
            "pool": accounting["pool"],
            "dropped": dict(Counter(f"{r['step']}: {r['reason']}" for r in accounting["dropped"])),
            "n_dropped": len(accounting["dropped"]),
        }
    return html, md, summary


def _best_point(pts: list[dict]) -> dict:
    """The grid's best self-influence: most targets at R = 1, then lowest median R, then lowest FD;
    a point whose step broke the model (``diverged``: its generations overflow) is never the best
    unless every point diverged (its ranks come from a broken model).
    """
    pts = [d for d in pts if not d.get("diverged")] or pts
    return min(
        pts,
        key=lambda d: (-d["share_rank1"], d["median_rank"], np.inf if d.get("frechet") is None else d["frechet"]),
    )


def selfinfluence_reading(grid: list[dict], reason: str = "") -> str:
    """Which setting the test-to-train scores use, per stage, and how it fares in the grid."""
    out = [
        "Each diverse training target (the item nearest a k-means centroid of θ₀'s embeddings) is unlearned "
        "and every training item scored; R = the target's rank (1 = best; ties count against it). top-/bottom-k "
        "sim = mean cosine similarity (θ₀'s embeddings) between the target and its k highest / lowest scored "
        "items; FD = Fréchet distance between θ′'s and θ₀'s generations from the same prompts and draws "
        "(0 = unchanged)."
    ]
    for st in dict.fromkeys(d["stage"] for d in grid):
        pts = [d for d in grid if d["stage"] == st]
        ch = next((d for d in pts if d.get("chosen")), None)
        best = _best_point(pts)
        if ch is None:
            continue
        s = (
            f"{st}: the unlearning rows use {R._si_point(ch)} "
            f"(config methods.unlearning{'; ' + reason if reason else ''}): "
            f"median R {ch['median_rank']:.1f}, R = 1 for {100 * ch['share_rank1']:.0f}% of targets"
        )
        s += "." if ch.get("frechet") is None else f", FD {ch['frechet']:.3g}."
        if best is ch:
            s += " It is the grid's best self-influence point."
        else:
            s += (
                f" The grid's best self-influence is {R._si_point(best)} (median R {best['median_rank']:.1f}, "
                f"R = 1 for {100 * best['share_rank1']:.0f}%"
                + ("" if best.get("frechet") is None else f", FD {best['frechet']:.3g}")
                + ")."
            )
        out.append(s)
    loose = [d for d in grid if ((d.get("numerics") or {}).get("float32_ratio") or 0) > ERROR_LIMIT]
    if loose:
        out.append(
            "τ is computed in float64 here: in float32 alone its round-off would reach "
            + ", ".join(f"{100 * d['numerics']['float32_ratio']:.2g}% ({d['stage']}, {R._si_point(d)})" for d in loose)
            + " of its spread (measured on the first target)."
        )
    broke = [d for d in grid if d.get("diverged")]
    if broke:
        out.append(
            "At "
            + ", ".join(f"{d['stage']} {R._si_point(d)}" for d in broke)
            + " the unlearning step broke the model (its generations overflow): no FD, and its ranks are not read."
        )
    bad = [d for d in grid if (d.get("numerics") or {}).get("ok") is False and not d.get("diverged")]
    if bad:
        out.append(
            "Warning: at "
            + ", ".join(f"{d['stage']} {R._si_point(d)}" for d in bad)
            + f" τ's estimated round-off exceeds {100 * ERROR_LIMIT:g}% of its spread: its ranks are partly noise."
        )
    return " ".join(out)


COMPARE_NOTE = (
    "Each query's scores from every method, in descending order of the unlearning score, after min-max or softmax "
    "normalization per query (figure: mean ± std over queries), and the Pearson r of each method's scores with the "
    "unlearning scores per query. Audio stages are compared at track level (τ averaged over a track's segments: "
    "the loss change of the whole track) with the embedding baselines; the symbolic stage "
    "with the other methods' segment-level scores. A flat profile under the unlearning order means the two "
    "methods attribute different items. The softmax is of the raw scores, as in the paper: a method whose scores "
    "spread over many units (TracIn, GradDot) puts almost all of a query's mass on one item, one whose scores "
    "differ by much less than 1 (τ, cosines) stays near 1/N; its axis is cut at 10⁻³/N."
)


VERDICT_NOTE = (
    "Noisy: the scores of two independently trained models (ensemble members 0 and 1) rank the training "
    "items differently (median Spearman over queries below analysis.verdict.agreement, 0.25): most of a "
    "query's ranking is the training seed's, whatever r₁ and ρ̄ say (a matrix of noise has the best r₁ and "
    "ρ̄ of all: see the Gaussian reference row). Collapsed: high r₁ with a leading axis that loads every "
    "query alike, or high ρ̄: one training "
    "ranking is shared by all queries, so the μz of that row (shown in parentheses in the main table) "
    "describe one fixed group and are left out of any comparison of methods. r₁ is read with each "
    "query's mean removed: per-query offsets raise r₁ without changing a ranking. Offset-dominated: high "
    "c̄, compare scores within a query only. Constant: every query's scores are tied (ρ̄ undefined). "
    "With fewer queries than analysis.verdict.min_queries only a collapse beyond doubt is called "
    "(ρ̄ ≥ 0.9 by default); other rows get no verdict. Thresholds: config analysis.verdict (docs/evidence.md)."
)

ALIGNMENT_NOTE = (
    "u₁ (the training-item side of the removed axis) at the homogeneity pool's unit, correlated with "
    "each channel's features: A_max = the largest |corr| over features and dimensions (the feature "
    "named), A_R = the largest multiple correlation of an OLS fit on one feature (at most "
    "max_dims_fraction·(units − 1) dimensions, forward-selected). A high A_max says the axis every "
    "query is ranked by follows one feature dimension; A_R ≫ A_max says it follows a combination."
)


SENSITIVITY_NOTE = (
    "Each grid point (config sensitivity.grid) re-scores the method from its cached features (a "
    "scoring parameter such as TRAK's λ or LoGra's α only re-solves; a dense method's k reads "
    "features projected again at that k; nothing is retrained), then computes the reliability "
    "diagnostics and the homogeneity exactly as for the main row. A reading that holds across the grid "
    "does not hinge on one hyperparameter choice."
)

COST_NOTE = (
    "From Snakemake's benchmark record of every job behind a row: attribution = scoring plus the "
    "gradient projection, covariance or embedding jobs whose stores it reads; training = the models "
    "it reads (shared with other rows of the stage). Jobs shared by several rows are counted in full "
    "for each, so a row's cost is what computing it alone would take. Disk = its score store plus "
    "the feature stores it reads. Device-hours are wall-clock hours of attribution and training on "
    "the configured device."
)

GENRE_NOTE = (
    "Each query's genre is that of the held-out piece it was generated from. A method whose μz is "
    "large for one genre only (a large genre SD in the table above) finds homogeneous groups for "
    "that genre, not in general; with few queries per genre, Pos and Sig move in large steps."
)


def _accounting_sections(acc: dict, *, main_k: int) -> list:
    """The counts per stage and the dropped-items table, each with its reading."""
    pool = acc["pool"]
    n = len(acc["dropped"])
    by_step = {}
    for r in acc["dropped"]:
        by_step[r["step"]] = by_step.get(r["step"], 0) + 1
    held_out = sum(1 for r in acc["dropped"] if r["split"] == "eval")
    reading = (
        f"Homogeneity pool: {pool['n_pool']} items; {pool['n_queries']} queries; every K in {pool['ks']} fits "
        "(checked before training). "
        + (
            f"{n} item(s) were left out ({', '.join(f'{k}: {v}' for k, v in by_step.items())})"
            if n
            else "No item was left out"
        )
        + (f", {held_out} of them held-out tracks that would have been queries" if held_out else "")
        + "."
    )
    # each warning its own item (a list of strings: the first is the text, R._reading_parts)
    reading = [reading] + [f"⚠ {w.rstrip('.')}." for w in pool.get("warnings", [])]
    out = [("Data accounting: what each step kept", *R.counts_table(acc["counts"]), reading)]
    if n:
        more = (
            f" The first {R.MAX_DROPPED_ROWS} are listed; the dropped.csv files hold all {n}."
            if n > R.MAX_DROPPED_ROWS
            else ""
        )
        out.append(
            (
                "Data accounting: dropped, skipped or filtered items",
                *R.dropped_table(acc["dropped"]),
                "Each item with the step that left it out, the reason and the measured value behind it "
                "(duration in s, silence share, token count, listens)." + more,
            )
        )
    return out


def empty_reading(H) -> str:
    """What the empty-feature shares mean, and which settings carry the warning."""
    e0 = next(h["empty"] for h in H.values() if h.get("empty"))
    feats = ", ".join(f"{f} {n}" for f, n in e0["pool_count_f"].items() if n) or "none"
    out = (
        "An item's feature is empty when nothing was there to measure or nothing varied: an all-zero "
        "histogram (no notes, no vertical intervals in a monophonic line, no beats found), no chord "
        "change, or a statistic with zero variation within the segment (one velocity throughout gives "
        "velocity change, std and range 0). An item is empty in a channel when one of its histograms or "
        "sequences is, or all of its single-number features are. Empty items are identical in that "
        "channel, so groups of them look homogeneous without evidence; the evidence cards leave such a "
        "channel out of the dominant aspect. "
        f"Cells: mean share of each query's top-{e0['k']} items that are empty in the channel; "
        f"pool items empty per feature: {feats}. "
    )
    counts = {c: n for c, n in e0["pool_count"].items() if n}
    if counts:
        out += "⚠ Pool items empty per channel: " + ", ".join(f"{c} {n} of {e0['n_pool']}" for c, n in counts.items())
        out += (
            " (dynamic: MIDI with one velocity throughout has no dynamics to compare). "
            if "dynamic" in counts
            else ". "
        )
    warned = [m for m, h in H.items() if (h.get("empty") or {}).get("dominated")]
    if warned:
        out += "⚠ = more than half on average: " + ", ".join(warned) + "."
    else:
        out += "No setting's groups are more than half empty items in any channel."
    return out


def confounds_reading(H) -> str:
    """What the genre-stratified null and the same-piece share say, one sentence per method."""
    out = [
        "The genre-stratified null draws random groups with the same genre mix as each query's "
        "G_K: homogeneity that only reflects retrieving the query's genre is about 0 against it."
    ]
    if R._with_pieces(H):
        out.append(
            "Segments of one piece are similar by construction; a same-piece share far above the "
            "null's means part of the homogeneity is 'the same piece', not attribution."
        )
    for m, c_doc, plain, strat in R._confounds(H):
        high = [c for c in plain if plain[c]["mu_z"] == plain[c]["mu_z"] and plain[c]["mu_z"] >= 1.0]
        if not high:
            parts = ["no channel with μz ≥ 1"]
        else:
            genre = [c for c in high if not strat[c]["mu_z"] >= 0.5 * plain[c]["mu_z"]]
            keep = [c for c in high if c not in genre]
            parts = []
            if genre:
                parts.append("mostly genre in " + ", ".join(genre))
            if keep:
                parts.append("beyond genre in " + ", ".join(keep))
        sp = c_doc.get("same_piece")
        if sp and sp["null_share"] > 0:
            parts.append(f"same-piece pairs {sp['mean_share'] / sp['null_share']:.1f}× the null's")
        out.append(f"{m}: {'; '.join(parts)}.")
    return " ".join(out)


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


PLANTED_NOTE = (
    "Planted-influence benchmark: every query copies one aspect (full, melody, rhythm or harmony) of"
    " a known training piece's opening onto a held-out piece (aria.symbolic.plant; in the audio "
    "experiment rendered to audio, aria.audio.plant), so its right answer is that piece's training "
    "segments (in the audio experiment, whose rows are ranked on the track-level matrices, that "
    "training track). MRR: mean over queries of 1 / the rank of the best-ranked source segment or "
    "track; P@K: share of the top K that are the source's (at most 1/K for one track); channel "
    "first: share of the aspect's queries whose planted channel has the largest homogeneity z at the"
    " report's K (audio has no melodic channel). The last table orders the methods by each measure "
    "and gives Kendall tau-b against their order by MRR and by P@K at the smallest K (a larger K than "
    "a source's few segments caps P@K, and then measures how many segments the sources have)."
)


MEASURES = ("r1", "r2_5", "c_bar", "rho_bar", "agreement", "verdict")


def _measures(ks, lab, D, V) -> dict:
    """Row key -> the measures a ground truth is compared with (:data:`MEASURES`): the four
    diagnostics, the replica agreement (median Spearman; None without a replica) and the
    verdict's ordinal (:data:`aria.evaluation.lds.VERDICT_ORDINAL`).
    """
    from aria.evaluation.lds import VERDICT_ORDINAL

    out = {}
    for k in ks:
        d, rep = D[lab[k]], D[lab[k]].get("replica")
        out[k] = {x: d.get(x) for x in MEASURES[:4]}
        out[k]["agreement"] = rep["spearman"]["q50"] if rep else None
        out[k]["verdict"] = VERDICT_ORDINAL.get((V.get(k) or {}).get("verdict"))
    return out


def _agreement(ks, lab, D, V, truth: dict, **kw) -> dict:
    """:func:`aria.evaluation.lds.order_agreement` of :func:`_measures` with a ground truth's
    values (row key -> higher is better).
    """
    from aria.evaluation.lds import order_agreement

    return order_agreement(
        _measures(ks, lab, D, V), truth, keys=MEASURES, higher_is_better=("agreement", "verdict"), **kw
    )


def _planted_precision(planted: dict, ks) -> tuple[str, dict]:
    """The planted truth's precision at the smallest K: row key -> P@K, and that K. A larger K than
    a source's few segments caps P@K at n_src / K, which then measures how many segments the
    sources have more than the method.
    """
    kmin = str(min(planted[ks[0]]["ks"]))
    return kmin, {k: planted[k]["all"]["precision"][kmin] for k in ks}


def _planted(keys, lab, D, V, planted: dict) -> tuple[list, dict]:
    """The planted-influence tables and summary: retrieval per method and aspect, the planted
    channel's rank, and Kendall tau of the diagnostics, the replica agreement and the verdict
    against the order by MRR (:func:`aria.evaluation.lds.order_agreement`).
    """
    from aria.evaluation.lds import MEASURE_NAMES

    ks = [k for k in keys if k in planted]
    if not ks:
        return [], None
    first = planted[ks[0]]
    kmax = str(max(first["ks"]))
    aspects = list(first["by_aspect"])

    def f(x, spec=".3f"):
        return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)

    header = ["Method", "MRR", *(f"P@{k}" for k in first["ks"]), f"recall@{kmax}"]
    header += [f"MRR {a}" for a in aspects]
    header += [f"{a}: channel first" for a in aspects if first["by_aspect"][a].get("channel_rank") is not None]
    rows = []
    for k in ks:
        d = planted[k]
        # the documents are JSON (aria planted): their K keys are strings
        row = [lab[k], f(d["all"]["mrr"]), *(f(d["all"]["precision"][str(x)]) for x in d["ks"])]
        row.append(f(d["all"]["recall"][kmax]))
        row += [f(d["by_aspect"][a]["mrr"]) for a in aspects]
        row += [
            f(d["by_aspect"][a]["channel_first"], ".0%")
            for a in aspects
            if first["by_aspect"][a].get("channel_rank") is not None
        ]
        rows.append(row)

    def tau(v):
        return f(v["kendall_tau"], "+.2f") if v["n"] >= 2 and np.isfinite(v["kendall_tau"]) else "undefined (tied)"

    agree = _agreement(ks, lab, D, V, {k: planted[k]["all"]["mrr"] for k in ks})
    kmin, precision = _planted_precision(planted, ks)
    agree_p = _agreement(ks, lab, D, V, precision)
    tau_rows = [
        [MEASURE_NAMES.get(name, name), tau(v), "yes" if v["identical"] else "no", tau(agree_p["by_diagnostic"][name])]
        for name, v in agree["by_diagnostic"].items()
    ]
    sections = [
        ("Planted-influence benchmark: retrieval of the planted sources", header, rows, PLANTED_NOTE),
        (
            "Planted-influence benchmark: do the measures order the methods as MRR does?",
            ["Measure", "Kendall τ-b vs MRR order", "Same order", f"Kendall τ-b vs P@{kmin} order"],
            tau_rows,
            "MRR order: "
            + " > ".join(lab[k] for k in agree["lds_order"])
            + f"; P@{kmin} order: "
            + " > ".join(lab[k] for k in agree_p["lds_order"])
            + ".",
        ),
    ]

    def by_measure(ag):
        return {
            name: {x: v[x] for x in ("kendall_tau", "identical", "order", "left_out")}
            for name, v in ag["by_diagnostic"].items()
        }

    summary = {
        "methods": {k: {x: planted[k][x] for x in ("all", "by_aspect")} for k in ks},
        "mrr_order": agree["lds_order"],
        "by_measure": by_measure(agree),
        "precision_k": int(kmin),
        "precision_order": agree_p["lds_order"],
        "by_measure_precision": by_measure(agree_p),
    }
    return sections, summary


def _validation(keys, lab, D, lds, *, V=None, references=None, planted=None) -> tuple[list, dict]:
    """Per stage with ground truth: the validation tables (for the reports) and their summary.

    ``V``: row key -> :func:`aria.evaluation.reliability.verdict` (the verdict's ordinal is one of
    the measures); ``references``: stage -> ``aria lds-references`` document (the targets'
    seed-noise ceiling and the reference rows' LDS). Without ``references`` (None) the reading
    does not judge testability; with it, a stage without its document is read as not testable.
    """
    from aria.evaluation.lds import halves_agreement, validation_reading

    V = V or {}
    stages = {}
    for k in keys:
        if k in lds:
            stages.setdefault(k.partition("/")[2] or "symbolic", []).append(k)
    tables, out = [], {}
    for stage, ks in stages.items():
        if len(ks) < 2:
            continue
        # keyed by row key (summary.json); labels only for display
        agree = _agreement(
            ks, lab, D, V, {k: lds[k]["lds"] for k in ks}, between=("r1", "rho_bar", "agreement", "verdict")
        )
        stab = halves_agreement({k: lds[k]["halves"] for k in ks})
        ref = None if references is None else references.get(stage)
        ceiling = None
        if references is not None:
            ceiling = (ref or {}).get("ceiling") or {
                "available": False,
                "reason": "no seed-noise ceiling was computed for this ground truth",
            }
            # how the targets were trained, for the reading (None on documents written before lds.init)
            ceiling = {**ceiling, **{x: (ref or {}).get(x) for x in ("recipe", "init")}}
        reading = validation_reading(
            agree, stab, lab, ceiling=ceiling, references=(ref or {}).get("references") if ref else None
        )
        # the planted truth of the same run (queries.kind planted): the same measures against the
        # methods' order by precision at the smallest K, next to their agreement with LDS
        agree_p, pname = None, None
        if planted and all(k in planted for k in ks):
            kmin, precision = _planted_precision(planted, ks)
            pname = f"planted P@{kmin}"
            agree_p = _agreement(ks, lab, D, V, precision)
        header, rows = R.validation_table(agree, lab, planted=agree_p, planted_name=pname or "planted")
        title = "Validation: do the diagnostics order the methods as LDS does?"
        suffix = "" if stage == "symbolic" else f" (stage {stage})"
        tables.append((title + suffix, header, rows, reading))
        ref_header, ref_rows = R.lds_reference_table({k: lds[k] for k in ks}, ref, lab)
        controls = ", ".join(next((lds[k].get("partial_controls") for k in ks if lds[k].get("partial_controls")), []))
        ref_note = (
            "Reference rows are not methods: a Gaussian random matrix (LDS about 0), one random ranking "
            "repeated for every query (collapsed, unrelated to the data: the LDS a shared ranking gets by "
            "chance), the same-collection "
            "indicator (1 where a segment's collection is the query's) and the collection prior (the share of "
            "queries in each segment's collection, the same for every query). Partial LDS: the Spearman "
            "correlation over subsets after regressing out "
            + (controls or "the controls")
            + " (ranks, least squares), mean over queries; the same-collection indicator has none, since its "
            "prediction is the genre mix itself."
        )
        tables.append((f"LDS of the methods and reference rows{suffix}", ref_header, ref_rows, ref_note))
        out[stage] = {
            **agree,
            "stability": stab,
            "reading": reading,
            "testable": None if ceiling is None else bool(ref and ref.get("testable")),
            "ceiling": None if ceiling is None else {x: v for x, v in ceiling.items() if x != "per_query"},
            "partial_lds": {k: lds[k].get("partial_lds") for k in ks},
            "references": {
                n: {x: d.get(x) for x in ("lds", "ci", "halves", "partial_lds")}
                for n, d in ((ref or {}).get("references") or {}).items()
            },
            "references_skipped": (ref or {}).get("skipped") or {},
        }
        if agree_p:
            out[stage]["planted"] = {
                "truth": pname,
                "order": agree_p["lds_order"],
                "by_measure": {n: v["kendall_tau"] for n, v in agree_p["by_diagnostic"].items()},
            }
    return tables, out
