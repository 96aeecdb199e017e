"""Report tables and figures (strings and PNG bytes; the CLI writes the files).

The main table has one row per method: the reliability diagnostics r1, r2_5,
c_bar, rho_bar (docs/spec.md §4, lower = more query-dependent) followed by, for every
channel, mu_z / Pos / Sig at K = main_k (docs/spec.md §6).
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np

__all__ = [
    "DIAG_KEYS",
    "DIAG_LABELS",
    "main_table",
    "lds_cell",
    "validation_table",
    "lds_reference_table",
    "markdown_report",
    "html_report",
    "k_sweep_figure",
    "spectrum_figure",
    "residual_table",
    "residual_figure",
    "alignment_table",
]

DIAG_KEYS = ("r1", "r2_5", "c_bar", "rho_bar")
DIAG_LABELS = {"r1": "r₁", "r2_5": "r₂:₅", "c_bar": "c̄", "rho_bar": "ρ̄"}
#: the noise diagnostic's columns (aria.evaluation.agreement): median Spearman correlation of two
#: replicas' rankings over queries, and the share of score energy they have in common
REPLICA_LABELS = ("replica ρₛ", "shared")


def _label(m: str) -> str:
    """Display label of a row: a registered method's report label, else the key itself."""
    from aria import registry

    return registry.METHODS[m].label if m in registry.METHODS else m


def _fmt(x, spec):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def main_table(
    diags: dict, homs: dict, *, main_k: int, lds: dict | None = None
) -> tuple[list[str], list[list[str]], list[str]]:
    """Rows of the main table.

    Parameters
    ----------
    diags : method -> dict with DIAG_KEYS
    homs : method -> homogeneity document (``by_k[str(K)]["summary"][channel]``)
    lds : method -> LDS document (:func:`aria.evaluation.lds.lds_summary`), optional
        Adds an "LDS" column after the diagnostics (methods without one show "–").

    Returns
    -------
    (header, rows, channels): header labels, one row of strings per method,
    and the channel order.
    """
    methods = list(diags)
    channels = list(next(iter(homs.values()))["channels"])
    header = (
        ["Method"]
        + [DIAG_LABELS[k] for k in DIAG_KEYS]
        + list(REPLICA_LABELS)
        + (["LDS [95% CI]"] if lds is not None else [])
    )
    for c in channels:
        header += [f"{c} μz", f"{c} Pos", f"{c} Sig"]
    rows = []
    for m in methods:
        row = [_label(m)] + [_fmt(diags[m][k], ".3f") for k in DIAG_KEYS] + replica_cells(diags[m].get("replica"))
        if lds is not None:
            row.append(lds_cell(lds.get(m)))
        summ = homs[m]["by_k"][str(main_k)]["summary"]
        for c in channels:
            s = summ[c]
            row += [_fmt(s["mu_z"], "+.2f"), _fmt(s["pos"] * 100, ".0f") + "%", _fmt(s["sig"] * 100, ".0f") + "%"]
        rows.append(row)
    return header, rows, channels


def replica_cells(rep: dict | None) -> list[str]:
    """The main table's noise-diagnostic cells (:data:`REPLICA_LABELS`), "–" without a replica."""
    if not rep:
        return ["–", "–"]
    e = rep["shared_energy"]
    share = "–" if e is None or math.isnan(e) else f"{int(round(100 * e))}%"  # no negative zero
    return [_fmt(rep["spearman"]["q50"], "+.2f"), share]


def lds_cell(doc: dict | None) -> str:
    """``+0.123 [+0.080, +0.160]``, or "–" without ground truth."""
    if doc is None:
        return "–"
    lo, hi = doc["ci"]
    return f"{_fmt(doc['lds'], '+.3f')} [{_fmt(lo, '+.3f')}, {_fmt(hi, '+.3f')}]"


VALIDATION_LABELS = {**DIAG_LABELS, "agreement": "replica agreement (median ρₛ)", "verdict": "verdict (ordinal)"}


def validation_table(
    agreement: dict, labels: dict | None = None, *, planted: dict | None = None, planted_name: str = "planted"
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the validation table: per measure (the diagnostics, lower = better;
    the replica agreement and the verdict's ordinal, higher = better), Kendall's tau-b between
    its method order and the LDS order, whether the orders are identical, Kendall's tau-b
    against the planted-truth order (``planted``: the same measures' agreement with it, when the
    run has planted queries; ``planted_name`` heads its column), Kendall's tau-b against each
    measure of ``agreement["between"]`` (when present), and its order (best first; methods
    without the measure named as left out). ``labels`` maps row keys to display labels.
    """
    labels = labels or {}

    def _lab(m):
        return labels.get(m) or _label(m)

    bt = agreement.get("between") or {}
    between = list(bt)
    header = (
        ["Diagnostic", "Kendall τ vs LDS order", "Same order"]
        + ([f"Kendall τ vs {planted_name} order"] if planted else [])
        + [f"τ vs {VALIDATION_LABELS.get(b, b)}" for b in between]
        + ["Order by the diagnostic (best first)"]
    )
    rows = []
    for k, v in agreement["by_diagnostic"].items():
        order = " > ".join(_lab(m) for m in v["order"])
        if v.get("left_out"):
            order += f" (left out: {', '.join(_lab(m) for m in v['left_out'])})"
        rows.append(
            [VALIDATION_LABELS.get(k, k), _fmt(v["kendall_tau"], "+.2f"), "yes" if v["identical"] else "no"]
            + ([_fmt(planted["by_diagnostic"][k]["kendall_tau"], "+.2f")] if planted else [])
            + [_fmt(bt[k][b], "+.2f") if k in bt else "" for b in between]
            + [order]
        )
    rows.append(
        ["LDS", "", ""] + [""] * (len(between) + bool(planted)) + [" > ".join(_lab(m) for m in agreement["lds_order"])]
    )
    if planted:
        rows.append(
            [planted_name, "", ""] + [""] * (len(between) + 1) + [" > ".join(_lab(m) for m in planted["lds_order"])]
        )
    return header, rows


def lds_reference_table(lds: dict, references: dict | None, labels: dict | None = None) -> tuple[list, list]:
    """Per method, then per reference row: LDS [95% CI], partial LDS and the LDS on the two halves
    of the subsets. ``lds``: row key -> LDS document; ``references``: an ``aria lds-references``
    document (its ``references`` and ``skipped``), or None. Reference rows are labelled as such.
    """
    from aria.evaluation.lds import REFERENCE_NAMES

    labels = labels or {}

    def _row(name, doc):
        halves = " / ".join(_fmt(h, "+.3f") for h in doc.get("halves", []))
        return [name, lds_cell(doc), _fmt(doc.get("partial_lds"), "+.3f"), halves]

    header = ["Row", "LDS [95% CI]", "partial LDS", "LDS on halves"]
    rows = [_row(labels.get(k) or _label(k), d) for k, d in lds.items()]
    for n, d in ((references or {}).get("references") or {}).items():
        rows.append(_row(f"reference: {REFERENCE_NAMES.get(n, n)}", d))
    for n, why in ((references or {}).get("skipped") or {}).items():
        rows.append([f"reference: {REFERENCE_NAMES.get(n, n)}", f"skipped: {why}", "", ""])
    return header, rows


def residual_table(diags: dict, homs: dict, residual: dict, *, main_k: int) -> tuple[list[str], list[list[str]]]:
    """Per method: the energy share removed (r1) and, per channel, μz before -> after removing
    the leading axis, at K = main_k (docs/spec.md §7).
    """
    channels = list(next(iter(homs.values()))["channels"])
    header = ["Method", "r₁ removed"] + [f"{c} μz before → after" for c in channels]
    rows = []
    for m in diags:
        b = homs[m]["by_k"][str(main_k)]["summary"]
        a = residual[m]["by_k"][str(main_k)]["summary"]
        rows.append(
            [_label(m), _fmt(diags[m]["r1"], ".3f")]
            + [f"{_fmt(b[c]['mu_z'], '+.2f')} → {_fmt(a[c]['mu_z'], '+.2f')}" for c in channels]
        )
    return header, rows


def residual_figure(homs: dict, residual: dict, *, main_k: int) -> bytes:
    """PNG: μz before and after removing the leading axis, one panel per channel (paper Fig. 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channels = list(next(iter(homs.values()))["channels"])
    methods = list(homs)
    fig, axes = plt.subplots(1, len(channels), figsize=(3.1 * len(channels), 0.9 + 0.32 * len(methods)), sharey=True)
    axes = np.atleast_1d(axes)
    y = np.arange(len(methods))
    for ax, c in zip(axes, channels):
        before = [homs[m]["by_k"][str(main_k)]["summary"][c]["mu_z"] for m in methods]
        after = [residual[m]["by_k"][str(main_k)]["summary"][c]["mu_z"] for m in methods]
        ax.barh(y - 0.2, before, height=0.4, color="#9aa5b1", label="S")
        ax.barh(y + 0.2, after, height=0.4, color="#2f6fb0", label="residual")
        ax.axvline(0, color="grey", lw=0.8)
        ax.axvline(1.645, color="grey", lw=0.6, ls=":")
        ax.set_title(c)
        ax.set_xlabel(f"μz at K = {main_k}")
    axes[0].set_yticks(y, [_label(m) for m in methods], fontsize=8)
    axes[0].invert_yaxis()
    axes[-1].legend(fontsize=8, loc="lower right", frameon=False)
    fig.suptitle("Homogeneity before and after removing the leading singular axis", fontsize=10, y=1.02)
    return _png(fig)


def alignment_table(align: dict) -> tuple[list[str], list[list[str]]]:
    """Per method, per channel: A_max (the feature that gives it) and A_R (Eq. 8)."""
    channels = [c for c in next(iter(align.values())) if c != "_fit"]
    header = ["Method"] + [f"{c} A_max / A_R" for c in channels]
    rows = []
    for m, doc in align.items():
        cells = []
        for c in channels:
            d = doc[c]
            if d["a_max"] is None:
                cells.append("–")
            else:
                cells.append(f"{_fmt(d['a_max'], '.2f')} / {_fmt(d['a_r'], '.2f')} ({d['a_max_feature']})")
        rows.append([_label(m)] + cells)
    return header, rows


def _with_pieces(homs: dict) -> bool:
    """Whether any method's confound data has the same-piece share (a segment pool)."""
    return any("same_piece" in h.get("confounds", {}) for h in homs.values())


def _confounds(homs: dict):
    """``(method, confounds doc, plain summary, stratified summary)`` of each method with confound data."""
    for m, h in homs.items():
        c_doc = h.get("confounds")
        if not c_doc:
            continue
        yield m, c_doc, h["by_k"][str(c_doc["k"])]["summary"], c_doc["stratified"]["summary"]


def confounds_table(homs: dict, *, main_k: int) -> tuple[list[str], list[list[str]]]:
    """Per method, per channel: μz against the plain null → against the genre-stratified null,
    and the SD of the per-genre mean z; plus the same-piece share of G_K's pairs vs the null's
    when the pool is segments (docs/spec.md §7). Rows without confound data are left out.
    """
    channels = list(next(iter(homs.values()))["channels"])
    with_pieces = _with_pieces(homs)
    header = ["Method"] + [f"{c} μz → stratified (genre SD)" for c in channels]
    header += ["same-piece pairs (null)"] if with_pieces else []
    rows = []
    for m, c_doc, plain, strat in _confounds(homs):
        row = [_label(m)]
        for c in channels:
            sd = c_doc["genre"][c]["sd_mu_z"]
            row.append(f"{_fmt(plain[c]['mu_z'], '+.2f')} → {_fmt(strat[c]['mu_z'], '+.2f')} ({_fmt(sd, '.2f')})")
        if with_pieces:
            sp = c_doc.get("same_piece")
            row.append(f"{sp['mean_share']:.1%} ({sp['null_share']:.1%})" if sp else "–")
        rows.append(row)
    return header, rows


MAX_DROPPED_ROWS = 200  # the report lists at most this many dropped items; the CSVs hold them all


def counts_table(counts: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Per stage: what survived each step (training tracks and segments, held-out tracks, queries)."""
    cols = [c for c in counts[0] if c != "stage"] if counts else []
    return ["stage"] + cols, [[r["stage"]] + [str(r.get(c, "–")) for c in cols] for r in counts]


def dropped_table(dropped: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Every dropped, skipped or filtered item with the step, the reason and the measured value."""
    header = ["item", "split", "step", "reason", "measured value"]
    rows = [
        [str(r["track_id"]), str(r["split"] or "–"), str(r["step"]), str(r["reason"]), _fmt(r["value"], ".3g")]
        for r in dropped[:MAX_DROPPED_ROWS]
    ]
    return header, rows


def _point_label(point: dict) -> str:
    return ", ".join(f"{k} = {v:g}" for k, v in point.items())


def sensitivity_table(
    points: list[dict], channels, *, main_k: int, verdicts: list[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """One row per (method, stage, grid point): r1, rho_bar, the replicas' agreement, the verdict
    (``verdicts``, one per point) and μz per channel at K = main_k.
    """
    header = ["Method", "stage", "grid point", "r₁", "ρ̄", REPLICA_LABELS[0], "verdict"] + [f"{c} μz" for c in channels]
    rows = []
    for i, d in enumerate(points):
        summ = d["summary"][str(main_k)]
        rows.append(
            [_label(d["method"]), d["stage"], _point_label(d["point"])]
            + [_fmt(d["diagnostics"]["r1"], ".3f"), _fmt(d["diagnostics"]["rho_bar"], ".3f")]
            + [replica_cells(d["diagnostics"].get("replica"))[0], (verdicts[i] if verdicts else None) or "–"]
            + [_fmt(summ[c]["mu_z"], "+.2f") for c in channels]
        )
    return header, rows


def sensitivity_figure(points: list[dict], channels, *, main_k: int) -> bytes:
    """PNG heat-map (paper App. B.5): rows = method and grid point, columns = stage x channel, colour = μz."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(dict.fromkeys(d["stage"] for d in points))
    rows = list(dict.fromkeys((d["method"], _point_label(d["point"])) for d in points))
    cols = [(s, c) for s in stages for c in channels]
    M = np.full((len(rows), len(cols)), np.nan)
    for d in points:
        i = rows.index((d["method"], _point_label(d["point"])))
        for c in channels:
            v = d["summary"][str(main_k)][c]["mu_z"]
            M[i, cols.index((d["stage"], c))] = np.nan if v is None else v
    lim = max(1.0, float(np.nanmax(np.abs(M)))) if np.isfinite(M).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.0 + 0.85 * len(cols), 1.2 + 0.38 * len(rows)))
    cmap = matplotlib.colormaps["RdBu_r"].copy()
    cmap.set_bad("#eeeeee")
    im = ax.imshow(np.ma.masked_invalid(M), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isfinite(M[i, j]):
                ax.text(j, i, f"{M[i, j]:+.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), [f"{s}\n{c}" if len(stages) > 1 else c for s, c in cols], fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{_label(m)}: {p}" for m, p in rows], fontsize=7)
    fig.colorbar(im, ax=ax, label=f"μz at K = {main_k}", shrink=0.8)
    where = f" (stage {stages[0]})" if len(stages) == 1 else ""
    ax.set_title(f"Sensitivity of homogeneity to the method's hyperparameters{where}", fontsize=9)
    return _png(fig)


def _si_point(d: dict) -> str:
    p = d["point"]
    return f"lr {p['lr']:g}, {p['steps']} step{'s' if p['steps'] > 1 else ''}, {p['group']}, mask {p['mask']}"


def selfinfluence_table(grid: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One row per (stage, grid point) of the self-influence check (docs/spec.md §8; the paper's Table 1)."""
    header = ["stage", "setting", "chosen", "median R", "R = 1", "top-k sim", "bottom-k sim", "k", "FD", "targets"]
    header += ["τ round-off / spread", "float32 alone"]
    rows = []

    def share(n, key):  # τ's round-off as a share of its spread (score_numerics; older JSON: none)
        x = (n or {}).get(key)
        return "–" if x is None or not np.isfinite(x) else f"{100 * x:.2g}%"

    for d in grid:
        rows.append(
            [
                d["stage"],
                _si_point(d),
                "✓" if d.get("chosen") else "",
                _fmt(d["median_rank"], ".1f"),
                f"{100 * d['share_rank1']:.0f}%",
                _fmt(d["mean_top_sim"], ".3f"),
                _fmt(d["mean_bottom_sim"], ".3f"),
                str(d["top_k"]),
                "diverged" if d.get("diverged") else "–" if d.get("frechet") is None else _fmt(d["frechet"], ".3g"),
                f"{len(d['rank'])} of {d['n']}",
                share(d.get("numerics"), "ratio"),
                share(d.get("numerics"), "float32_ratio"),
            ]
        )
    return header, rows


def selfinfluence_figure(grid: list[dict]) -> bytes:
    """PNG (like the paper's grid figure): per stage, median R (log scale) and the Fréchet distance
    at every grid point; the chosen point marked.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(dict.fromkeys(d["stage"] for d in grid))
    fig, axes = plt.subplots(
        len(stages), 2, figsize=(11, 1.6 + 0.32 * max(len(grid) // max(len(stages), 1), 4) * len(stages)), squeeze=False
    )
    for i, st in enumerate(stages):
        pts = [d for d in grid if d["stage"] == st]
        y = np.arange(len(pts))
        labels = [_si_point(d) + (" (chosen)" if d.get("chosen") else "") for d in pts]
        colors = ["#d62728" if d.get("chosen") else "#1f77b4" for d in pts]
        ax = axes[i, 0]
        ranks = [d["median_rank"] for d in pts]
        ax.barh(y, ranks, color=colors)
        if max(ranks) > 20:  # ranks over orders of magnitude; otherwise plain numbers read better
            ax.set_xscale("log")
        else:
            ax.set_xlim(0, max(ranks) + 1)
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"median R(z_tar) (1 = best; of {pts[0]['n']} items)", fontsize=8)
        ax.set_title(f"{st}: rank of the unlearned target", fontsize=9)
        ax = axes[i, 1]
        fd = [np.nan if d.get("frechet") is None else d["frechet"] for d in pts]
        ax.barh(y, fd, color=colors)
        ax.set_yticks(y, [""] * len(pts))
        ax.invert_yaxis()
        ax.set_xlabel("Fréchet distance of generations to θ₀'s (lower = model kept)", fontsize=8)
        ax.set_title(f"{st}: model quality after unlearning", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def unlearning_compare_table(comp: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Pearson r between the unlearning scores and each other method's, per query: mean ± std."""
    header = ["stage", "compared with", "Pearson r (mean ± std over queries)", "queries", "items"]
    rows = [
        [
            c["stage"],
            c["label"],
            f"{_fmt(c['pearson_mean'], '+.3f')} ± {_fmt(c['pearson_std'], '.3f')}",
            str(sum(x is not None for x in c["pearson"])),
            str(c["n_items"]),
        ]
        for c in comp
    ]
    return header, rows


def unlearning_compare_figure(comp: list[dict]) -> bytes:
    """PNG (the paper's Fig. 1): scores in descending order of the unlearning score, min-max and
    softmax normalized per query, mean ± std over queries; one panel per stage and normalization
    (softmax on log-log axes as in the paper, cut at 1e-3 / N).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(dict.fromkeys(c["stage"] for c in comp))
    fig, axes = plt.subplots(len(stages), 2, figsize=(11, 3.0 * len(stages)), squeeze=False)
    for i, st in enumerate(stages):
        cs = [c for c in comp if c["stage"] == st]
        for j, how in enumerate(("minmax", "softmax")):
            ax = axes[i, j]
            own = cs[0]["profiles"][how]["unlearning"]
            x = np.arange(1, len(own["mean"]) + 1)
            floor = 1e-3 / len(x)
            for lab, prof, col in [("Unlearning", own, "k")] + [
                (c["label"], c["profiles"][how]["other"], None) for c in cs
            ]:
                m, sd = np.asarray(prof["mean"]), np.asarray(prof["std"])
                lo = m - sd
                if how == "softmax":  # log axis, cut at 1e-3 / N (raw scores spread over many units
                    lo = np.maximum(lo, floor)  # put almost all of a softmax's mass on one item)
                (ln,) = ax.plot(x, m, lw=1.2, label=lab, color=col)
                ax.fill_between(x, lo, m + sd, color=ln.get_color(), alpha=0.15, lw=0)
            ax.set_xlabel("training items in descending order of the unlearning score", fontsize=8)
            ax.set_ylabel(f"{how} score", fontsize=8)
            if how == "softmax":
                ax.set_yscale("log")
                ax.set_xscale("log")
                ax.set_ylim(floor, 2.0)
            ax.set_title(f"{st}: {how}", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def cost_table(cost: dict) -> tuple[list[str], list[list[str]]]:
    """Per row: attribution and training wall-clock, CPU-hours, device-hours, peak memory, disk."""
    dev = next(iter(cost.values()))["device"] if cost else "cpu"
    header = [
        "Method",
        "attribution wall (s)",
        "training wall (s)",
        "CPU-h",
        f"{'GPU' if dev == 'cuda' else 'CPU'} device-h",
        "peak RSS (MB)",
        "disk (MB)",
        "jobs",
    ]
    rows = [
        [
            _label(m),
            f"{c['wall_s']:.1f}",
            f"{c['train_wall_s']:.1f}" if c["train_wall_s"] else "–",
            f"{c['cpu_h']:.4f}",
            f"{c['device_h']:.4f}",
            f"{c['peak_rss_mb']:.0f}",
            f"{c['disk_mb']:.2f}",
            f"{c['n_jobs']}" + (f" ({c['n_missing']} missing)" if c["n_missing"] else ""),
        ]
        for m, c in cost.items()
    ]
    return header, rows


def empty_table(homs: dict) -> tuple[list[str], list[list[str]]]:
    """Per method, per channel: the mean share of G_K's items with an empty feature; the header
    gives the pool's count of such items (docs/spec.md §5, :mod:`aria.evaluation.degenerate`).
    """
    first = next((h["empty"] for h in homs.values() if h.get("empty")), None)
    if first is None:
        return [], []
    channels = list(first["pool_count"])
    header = ["Method"] + [f"{c}: {first['pool_count'][c]} of {first['n_pool']} empty" for c in channels]
    rows = []
    for m, h in homs.items():
        e = h.get("empty")
        if e:
            rows.append(
                [_label(m)] + [f"{e['group_share'][c]:.0%}" + (" ⚠" if c in e["dominated"] else "") for c in channels]
            )
    return header, rows


def genre_table(homs: dict) -> tuple[list[str], list[list[str]]]:
    """Per method and query genre: n, then μz / Pos / Sig per channel (docs/spec.md §7, App. B.6)."""
    channels = list(next(iter(homs.values()))["channels"])
    header = ["Method", "query genre", "n"] + [f"{c} μz / Pos / Sig" for c in channels]
    rows = []
    for m, h in homs.items():
        c_doc = h.get("confounds")
        if not c_doc:
            continue
        for g in next(iter(c_doc["genre"].values()))["by_genre"]:
            cells = [_label(m), g, str(c_doc["genre"][channels[0]]["by_genre"][g]["n"])]
            for c in channels:
                b = c_doc["genre"][c]["by_genre"][g]
                cells.append(f"{_fmt(b['mu_z'], '+.2f')} / {_fmt(b['pos'], '.0%')} / {_fmt(b['sig'], '.0%')}")
            rows.append(cells)
    return header, rows


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
_COLOURS += ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # matplotlib's tab10
_DASHES = ("-", "--", ":", "-.")
_MARKERS = (".", "x", "^", "s")


def line_styles(n: int) -> list[dict]:
    """``n`` distinguishable line styles, ``[{"color", "linestyle", "marker"}]``: the 10 colours of
    matplotlib's default cycle, then the same colours dashed with another marker, and so on, so
    that the 19 rows of a full audio report get 19 different legend entries (40 at most distinct).
    """
    return [
        {"color": _COLOURS[i % 10], "linestyle": _DASHES[i // 10 % 4], "marker": _MARKERS[i // 10 % 4]}
        for i in range(n)
    ]


def k_sweep_figure(homs: dict) -> bytes:
    """PNG: mu_z against K, one panel per channel, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    channels = list(next(iter(homs.values()))["channels"])
    fig, axes = plt.subplots(1, len(channels), figsize=(3.1 * len(channels), 3.0), sharey=True)
    axes = np.atleast_1d(axes)
    styles = line_styles(len(homs))
    for ax, c in zip(axes, channels):
        for (m, h), st in zip(homs.items(), styles):
            ks = sorted(int(k) for k in h["by_k"])
            ax.plot(ks, [h["by_k"][str(k)]["summary"][c]["mu_z"] for k in ks], label=_label(m), **st)
        ax.axhline(0, color="grey", lw=0.8)
        ax.axhline(1.645, color="grey", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_title(c)
        ax.set_xlabel("K")
    axes[0].set_ylabel("mean z (μz)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle("Within-group homogeneity against K (dotted: z = 1.645)", fontsize=10, y=1.03)
    return _png(fig)


def spectrum_figure(diags: dict, *, n: int = 20) -> bytes:
    """PNG: share of Frobenius energy per singular value, first ``n``, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for (m, d), st in zip(diags.items(), line_styles(len(diags))):
        e = np.asarray(d["energy"][:n])
        ax.plot(np.arange(1, len(e) + 1), e, label=_label(m), **st)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("singular value index i")
    ax.set_ylabel("σᵢ² / ‖S‖²_F")
    ax.set_title("Singular-value spectrum of each score matrix", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return _png(fig)


def markdown_report(
    title: str, header, rows, *, main_k: int, notes: list[str], sections: list[tuple[str, list, list, str]] = ()
) -> str:
    """Markdown report; ``sections``: further tables, each ``(title, header, rows, reading)``; a
    reading is a string or a list ``[text, item, ...]`` whose items are listed after the text.
    """
    lines = [
        f"# {title}",
        "",
        f"Main table (homogeneity at K = {main_k}).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [""] + [f"- {n}" for n in notes] + [""]
    for vt, vh, vr, reading in sections:
        lines += [f"## {vt}", "", "| " + " | ".join(vh) + " |", "|" + "---|" * len(vh)]
        lines += ["| " + " | ".join(r) + " |" for r in vr]
        text, items = _reading_parts(reading)
        lines += ["", text, ""] + ([f"- {w}" for w in items] + [""] if items else [])
    return "\n".join(lines)


def _reading_parts(reading) -> tuple[str, list[str]]:
    """A section's reading: a string, or a list whose first entry is the text and the rest
    separate items (warnings), each shown on its own line.
    """
    if isinstance(reading, str):
        return reading, []
    parts = list(reading)
    return (parts[0] if parts else ""), parts[1:]


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0}
table{border-collapse:collapse;font-size:.9rem;font-variant-numeric:tabular-nums}
th,td{padding:.35rem .55rem;text-align:right;border-bottom:1px solid #eee}
th{background:#f5f6f8;position:sticky;top:0}
td:first-child,th:first-child{text-align:left;font-weight:600;white-space:nowrap}
tr.grp th{background:#e9ecf1;text-align:center}
td.sep,th.sep{border-left:2px solid #ccd}
.pos{color:#0a6b2d}.neg{color:#9b1c1c}
figure{margin:1rem 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.85rem}
ul.notes{font-size:.9rem;color:#444}
details{margin:.3rem 0} code{background:#f3f3f3;padding:0 .2rem}
summary audio{height:2rem;vertical-align:middle} .clip{display:inline-block;margin:.15rem .4rem .15rem 0}
.clip audio{height:1.8rem;width:14rem;vertical-align:middle}
"""


def _section_html(title: str, header, rows, reading) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    text, items = _reading_parts(reading)
    lis = f'<ul class="notes">{"".join(f"<li>{html.escape(w)}</li>" for w in items)}</ul>' if items else ""
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table><p>{html.escape(text)}</p>{lis}"


def _player(src: str) -> str:
    return f'<audio controls preload="none" src="{html.escape(src)}"></audio>'


def html_report(
    title: str,
    header,
    rows,
    channels,
    *,
    main_k: int,
    figures: dict[str, bytes],
    notes: list[str],
    evidence: list[tuple[str, list[list]]],
    media: dict | None = None,
    cards: list | None = None,
    labels: dict | None = None,
    sections: list[tuple[str, list, list, str]] = (),
) -> str:
    """Self-contained HTML (figures embedded as base64 PNG).

    ``evidence``: per query, rows of ``[label, top-K ids]``. With ``media``
    (``{"tracks": {track_id: relative path}, "queries": relative folder}``) each
    query and each of its top-K training tracks gets an audio player; otherwise
    the query links to its generated MIDI and the ids are listed.
    """
    n_diag = len(DIAG_KEYS)
    has_lds = len(header) > 1 + n_diag + 3 * len(channels)
    grp = (
        f'<tr class="grp"><th></th><th colspan="{n_diag}">Reliability (lower = more query-dependent)</th>'
        + ('<th class="sep">Ground truth</th>' if has_lds else "")
        + "".join(f'<th class="sep" colspan="3">{html.escape(c)}</th>' for c in channels)
        + "</tr>"
    )
    sub = (
        "<tr><th>Method</th>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in header[1 : 1 + n_diag])
        + (f'<th class="sep">{html.escape(header[1 + n_diag])}</th>' if has_lds else "")
        + "".join('<th class="sep">μz</th><th>Pos</th><th>Sig</th>' for _ in channels)
        + "</tr>"
    )
    body = []
    for r in rows:
        cells = [f"<td>{html.escape(r[0])}</td>"] + [f"<td>{v}</td>" for v in r[1 : 1 + n_diag]]
        if has_lds:
            cells.append(f'<td class="sep">{html.escape(r[1 + n_diag])}</td>')
        for i, v in enumerate(r[1 + n_diag + has_lds :]):
            cls = []
            if i % 3 == 0:
                cls.append("sep")
                if v.startswith("+"):
                    cls.append("pos")
                elif v.startswith("-"):
                    cls.append("neg")
            cells.append(f'<td class="{" ".join(cls)}">{html.escape(v)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    figs = "".join(
        f'<figure><img alt="{html.escape(cap)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        for cap, png in figures.items()
    )
    ev = []
    if cards:
        labels = labels or {}
        trs = []
        for e in cards:
            asp = "; ".join(
                f"{html.escape(labels.get(k, k))}: "
                + (f"<b>{html.escape(a['channel'])}</b> {a['z']:+.1f}" if a["channel"] and a["significant"] else "–")
                for k, a in e["aspects"].items()
            )
            media_cell = (
                _player(e["player"])
                if e.get("player")
                else (f'<a href="{html.escape(e["midi"])}">MIDI</a>' if e.get("midi") else "")
            )
            trs.append(
                f'<tr><td><a href="{html.escape(e["card"])}"><code>{html.escape(e["query_id"])}</code></a></td>'
                f"<td>{media_cell}</td><td style='text-align:left'>{asp}</td></tr>"
            )
        ev.append(
            "<p>Each query's card lists its top-K items per method with scores, where they lie in their "
            "source, a player for the attributed window and their similarity to the query per channel. "
            "Dominant aspect per method: the channel with the largest z when it clears 1.645 (– none).</p>"
            "<table><tr><th>query (card)</th><th>query</th><th>dominant aspect per method</th></tr>"
            + "".join(trs)
            + "</table>"
        )
        evidence = []
    for qid, top in evidence:
        if media is None:
            lis = "".join(
                f"<tr><td>{html.escape(lab)}</td><td>{html.escape(', '.join(ids))}</td></tr>" for lab, ids in top
            )
            head = f'(<a href="{html.escape(f"queries/midi/{qid}.mid")}">generated MIDI</a>)'
        else:
            lis = "".join(
                f"<tr><td>{html.escape(lab)}</td><td>"
                + "".join(
                    f'<div class="clip"><code>{html.escape(t)}</code> {_player(media["tracks"][t])}</div>'
                    for t in ids
                    if t in media["tracks"]
                )
                + "</td></tr>"
                for lab, ids in top
            )
            head = _player(f"{media['queries']}/{qid}.wav")
        ev.append(
            f"<details><summary><code>{html.escape(qid)}</code> {head}</summary>"
            f"<table><tr><th>method</th><th>top-{main_k} training items</th></tr>{lis}</table></details>"
        )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="sub">Reliability diagnostics of each score matrix (docs/spec.md §4) and within-group musical
homogeneity of each query's top-{main_k} attributed training items against random groups (docs/spec.md §6).</p>
<h2>Main table</h2>
<table>{grp}{sub}{"".join(body)}</table>
<ul class="notes">{"".join(f"<li>{html.escape(n)}</li>" for n in notes)}</ul>
{"".join(_section_html(*v) for v in sections)}
<h2>Figures</h2>{figs}
<h2>Per-query evidence</h2>{"".join(ev)}
</body></html>
"""
