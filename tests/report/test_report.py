"""Report tables carry the numbers they are given, in the paper's column order."""

import numpy as np

from aria import report as R

CHANNELS = ["melody", "harmony", "rhythm", "dynamic", "texture"]


def _hom(mu, ks=(5, 10)):
    summ = {c: {"mu_z": mu + i, "pos": 0.25 * i, "sig": 0.1} for i, c in enumerate(CHANNELS)}
    return {
        "channels": CHANNELS,
        "query_ids": ["q1"],
        "by_k": {str(k): {"summary": summ, "top_ids": [["a:000", "b:001"]]} for k in ks},
    }


def _diag(r1):
    return {
        "r1": r1,
        "r2_5": 0.2,
        "c_bar": 0.05,
        "rho_bar": 0.4,
        "n": 100,
        "q": 10,
        "energy": list(np.linspace(r1, 0.001, 10)),
    }


def test_main_table_columns_and_values():
    rep = {"spearman": {"mean": 0.4, "q10": 0.1, "q50": 0.47, "q90": 0.6}, "shared_energy": 0.456}
    header, rows, channels = R.main_table(
        {"trak": {**_diag(0.3), "replica": rep}, "graddot": _diag(0.9)},
        {"trak": _hom(0.5), "graddot": _hom(-1.25)},
        main_k=10,
    )
    assert channels == CHANNELS
    assert header[:7] == ["Method", "r₁", "r₂:₅", "c̄", "ρ̄", "replica ρₛ", "shared"]
    assert header[7:10] == ["melody μz", "melody Pos", "melody Sig"]
    assert rows[0][:7] == ["TRAK", "0.300", "0.200", "0.050", "0.400", "+0.47", "46%"]
    assert rows[1][5:7] == ["–", "–"]  # no replica
    assert rows[1][7:10] == ["-1.25", "0%", "10%"]
    assert rows[1][10:13] == ["-0.25", "25%", "10%"]  # harmony: mu + 1


def _html(table, evidence, figures=None, notes=(), **kw):
    """The page "t" of a main table at K = 5 (no figures and no notes unless given)."""
    return R.html_report("t", *table, main_k=5, figures=figures or {}, notes=list(notes), evidence=evidence, **kw)


def test_html_and_markdown_contain_the_table():
    diags = {"trak": _diag(0.3)}
    homs = {"trak": _hom(0.5)}
    table = R.main_table(diags, homs, main_k=5)
    figs = {"K sweep": R.k_sweep_figure(homs), "spectrum": R.spectrum_figure(diags)}
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in figs.values())
    page = _html(table, [("q1", [["TRAK", ["a:000", "b:001"]]])], figures=figs, notes=["n1"])
    assert page.count("data:image/png;base64,") == 2
    assert "+0.50" in page and "queries/midi/q1.mid" in page and "a:000, b:001" in page
    header, rows, _ = table
    md = R.markdown_report("t", header, rows, main_k=5, notes=["n1"])
    assert "| TRAK | 0.300 | 0.200 | 0.050 | 0.400 | – | – | +0.50 | 0% | 10% |" in md


def test_audio_evidence_has_players():
    table = R.main_table({"TRAK · fine": _diag(0.3)}, {"TRAK · fine": _hom(0.5)}, main_k=5)
    media = {"tracks": {"a": "corpus/audio/a.wav", "b": "corpus/audio/b.wav"}, "queries": "queries/audio"}
    page = _html(table, [("q-x", [["TRAK · fine", ["a", "b"]]])], media=media)
    assert page.count("<audio") == 3
    assert 'src="queries/audio/q-x.wav"' in page and 'src="corpus/audio/b.wav"' in page


def test_residual_table_and_reading():
    from aria.report.compose import residual_reading

    diags = {"TRAK": _diag(0.05), "TracIn": _diag(0.6)}
    before = {"TRAK": _hom(2.0), "TracIn": _hom(3.0)}  # strongest channel: texture (mu + 4)
    after = {"TRAK": _hom(1.5), "TracIn": _hom(-4.2)}
    header, rows = R.residual_table(diags, before, after, main_k=10)
    assert header[:3] == ["Method", "r₁ removed", "melody μz before → after"]
    assert rows[1][:3] == ["TracIn", "0.600", "+3.00 → -4.20"]
    text = residual_reading(diags, before, after, main_k=10)
    assert "TRAK (r₁ 0.05): strongest texture μz +6.00 → +5.50, survives" in text
    assert "TracIn (r₁ 0.60): strongest texture μz +7.00 → -0.20, vanishes" in text
    png = R.residual_figure(before, after, main_k=10)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_alignment_table_names_the_feature():
    doc = {"_fit": {}, "melody": {"a_max": 0.91, "a_max_feature": "interval_hist", "a_r": 0.95}}
    doc["harmony"] = {"a_max": None, "a_max_feature": None, "a_r": None}
    header, rows = R.alignment_table({"TRAK": doc})
    assert header == ["Method", "melody A_max / A_R", "harmony A_max / A_R"]
    assert rows == [["TRAK", "0.91 / 0.95 (interval_hist)", "–"]]


def test_compose_marks_collapsed_rows_and_states_each_verdict():
    from aria.report import compose

    collapsed = {**_diag(0.8), "v1_constancy": 0.97}
    fine = {**_diag(0.1), "rho_bar": 0.1, "v1_constancy": 0.97}
    html, md, summary = compose(
        ["trak", "tracin"], [fine, collapsed], [_hom(0.5), _hom(2.3)], experiment="t", main_k=10
    )
    assert summary["methods"]["tracin"]["verdict"]["verdict"] == "collapsed"
    assert summary["methods"]["trak"]["verdict"]["verdict"] == "query-dependent"
    assert "| TracIn | 0.800 | 0.200 | 0.050 | 0.400 | – | – | (+2.30) |" in md
    assert "| TRAK | 0.100 | 0.200 | 0.050 | 0.100 | – | – | +0.50 |" in md
    assert "Verdict per setting" in html and "not interpretable as attribution" in html
    _, md2, s2 = compose(
        ["trak", "tracin"],
        [fine, collapsed],
        [_hom(0.5), _hom(2.3)],
        experiment="t",
        main_k=10,
        verdict_thresholds={"r1": 0.9, "rho_bar": 0.9},
    )
    assert s2["methods"]["tracin"]["verdict"]["verdict"] == "query-dependent" and "(+2.30)" not in md2


def test_few_queries_collapse_is_marked_not_shown_as_evidence():
    """The audio baselines with 3 queries: r1 = c_bar = 1.000, rho_bar ~ 0.97 were shown green, unbracketed."""
    from aria.evaluation.reliability import centred_diagnostics, gram_stats, reliability_from_stats
    from aria.report import compose

    rng = np.random.default_rng(0)
    shared = 0.99 + 0.005 * (np.outer(rng.normal(size=400), np.ones(3)) + 0.1 * rng.normal(size=(400, 3)))
    iid = 0.99 + 0.005 * rng.normal(size=(400, 3))
    diags = []
    for S in (shared, iid):
        st = gram_stats(S)
        diags.append({**reliability_from_stats(st), **centred_diagnostics(st), "n": 400, "q": 3, "energy": [1.0]})
    assert diags[0]["r1"] > 0.999 and diags[0]["c_bar"] > 0.999 and diags[0]["rho_bar"] > 0.95
    html, md, summary = compose(["aisfx", "trak"], diags, [_hom(2.2), _hom(0.5)], experiment="t", main_k=10)
    v = summary["methods"]["aisfx"]["verdict"]
    assert v["verdict"] == "collapsed" and v["flag"] == "few queries"
    row = next(line for line in md.splitlines() if line.startswith("| aiSFX") or line.startswith("| aisfx"))
    assert "(+2.20)" in row
    assert summary["methods"]["trak"]["verdict"]["verdict"] is None  # independent rankings: still no verdict
    assert '<td class="sep pos">(+2.20)</td>' not in html and "(+2.20)" in html  # not green


def test_data_accounting_warnings_are_separate_items():
    from html import escape

    from aria.evaluation.accounting import pool_check
    from aria.report import compose

    pool = pool_check(30, 4, [5, 20], min_queries=10, pool="training tracks", fix="lower K")
    assert len(pool["warnings"]) == 2  # K > half the pool, and too few queries
    acc = {"dropped": [], "counts": [{"stage": "s", "train": 30, "queries": 4}], "pool": pool}
    html, md, _ = compose(["trak"], [{**_diag(0.1), "q": 4}], [_hom(0.5)], experiment="t", main_k=10, accounting=acc)
    for w in pool["warnings"]:
        assert f"<li>⚠ {escape(w)}.</li>" in html
        assert f"\n- ⚠ {w}.\n" in md
    assert "hard to read only" not in html  # the two used to run together in one sentence


def test_spectrum_series_are_distinguishable(monkeypatch):
    """19 rows on a 10-colour cycle repeated colours; every (colour, linestyle, marker) must now differ."""
    import aria.report.render as render

    figs = []
    monkeypatch.setattr(render, "_png", lambda fig: figs.append(fig) or b"")
    diags = {f"m{i}": {"energy": list(np.geomspace(0.5, 1e-3, 12))} for i in range(19)}
    render.spectrum_figure(diags)
    lines = figs[0].axes[0].get_lines()
    styles = {(str(ln.get_color()), ln.get_linestyle(), ln.get_marker()) for ln in lines}
    assert len(lines) == 19 and len(styles) == 19
    render.k_sweep_figure({f"m{i}": _hom(0.1 * i) for i in range(19)})
    ax = figs[1].axes[0]
    series = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]  # not the z = 0, 1.645 lines
    assert len(series) == 19 and len({(str(ln.get_color()), ln.get_linestyle()) for ln in series}) == 19


def test_empty_reading_warns_about_constant_velocities():
    from aria.report.compose import empty_reading

    e = {
        "k": 10,
        "n_pool": 538,
        "pool_count": {"melody": 0, "dynamic": 186},
        "pool_count_f": {"velocity_std": 186, "velocity_range": 186, "velocity_change_mean": 186},
        "group_share": {"melody": 0.0, "dynamic": 0.9},
        "dominated": ["dynamic"],
    }
    text = empty_reading({"TracIn": {"empty": e}})
    assert "⚠ Pool items empty per channel: dynamic 186 of 538" in text and "one velocity throughout" in text
    assert "TracIn" in text


def test_compose_calls_a_row_noisy_from_its_replica_and_adds_the_gaussian_reference():
    """A row whose replicas disagree is noisy (μz in parentheses), whatever its r1 and rho_bar; the
    Gaussian reference row of the verdict table is noisy too and in summary.json."""
    from aria.report import compose

    noisy = {
        **_diag(0.1),
        "rho_bar": 0.1,
        "v1_constancy": 0.2,
        "replica": {"spearman": {"mean": 0.05, "q10": 0.0, "q50": 0.06, "q90": 0.1}, "shared_energy": 0.06},
    }
    fine = {**noisy, "replica": {**noisy["replica"], "spearman": {"mean": 0.5, "q10": 0.3, "q50": 0.5, "q90": 0.7}}}
    html, md, summary = compose(
        ["trak", "gradcos"], [noisy, fine], [_hom(0.5), _hom(1.0)], experiment="t", main_k=10, reference_seed=3
    )
    assert summary["methods"]["trak"]["verdict"]["verdict"] == "noisy"
    assert summary["methods"]["gradcos"]["verdict"]["verdict"] == "query-dependent"
    assert "| TRAK | 0.100 | 0.200 | 0.050 | 0.100 | +0.06 | 6% | (+0.50) |" in md
    ref = summary["reference_noise"]
    assert ref["verdict"]["verdict"] == "noisy" and (ref["n"], ref["q"]) == (100, 10)
    assert abs(ref["replica"]["spearman"]["q50"]) < 0.25
    assert "Reference: Gaussian noise (100 x 10)" in html


def test_a_diverged_grid_point_is_never_the_best_and_is_marked():
    """A step that broke the model ranks its target first by accident (its losses blow up): the
    reading names the best finite point instead, and the table says diverged, not an FD."""
    from aria.report.compose import selfinfluence_reading
    from aria.report.render import selfinfluence_table

    def pt(steps, share, R, fd, **kw):
        point = {"lr": 1e-6, "steps": steps, "group": "all", "mask": "none"}
        d = {"stage": "dit", "point": point, "median_rank": R, "share_rank1": share, "frechet": fd}
        d |= {"mean_top_sim": 0.9, "mean_bottom_sim": 0.8, "top_k": 3, "rank": [1, 2], "n": 10}
        return d | kw

    grid = [
        pt(1, 0.5, 1.5, 0.5, chosen=True),
        pt(2, 0.0, 3.0, 2.0),
        pt(4, 1.0, 1.0, None, diverged=True),
    ]
    grid[2]["numerics"] = {"ok": False, "ratio": float("nan"), "float32_ratio": float("nan")}
    text = selfinfluence_reading(grid)
    assert "It is the grid's best self-influence point." in text  # not the diverged 4-step point
    assert "lr 1e-06, 4 steps, all, mask none the unlearning step broke the model" in text
    assert "round-off exceeds" not in text  # its NaN numerics are no round-off warning
    _, rows = selfinfluence_table(grid)
    assert [r[8] for r in rows] == ["0.5", "2", "diverged"]
    assert rows[2][-2:] == ["–", "–"]
    # every point diverged: the reading still names one (nothing finite to prefer)
    assert "best self-influence" in selfinfluence_reading([pt(4, 1.0, 1.0, None, diverged=True, chosen=True)])
