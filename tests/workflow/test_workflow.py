"""End-to-end: the real workflow on a tiny corpus, its rerun scope, its outputs."""

import json
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
import yaml
from conftest import BIN, REPO, run_snakemake

from aria.io.stores import open_scores, read_features


def dry_run_jobs(workdir, config: dict) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run with ``config`` would execute."""
    # a file of this call's own: two test workers may plan in the shared tiny run at once
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=workdir, prefix=".changed-", delete=False) as f:
        f.write(yaml.safe_dump(config))
    try:
        out = run_snakemake(workdir, "-n", "--configfile", f.name).stdout
    finally:
        os.unlink(f.name)
    jobs, rule = set(), None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            if rule is not None:
                jobs.add((rule, ""))
            rule = m.group(1)
            continue
        m = re.match(r"^\s+wildcards: (.*)$", line)
        if m and rule is not None:
            jobs.add((rule, m.group(1).strip()))
            rule = None
    if rule is not None:
        jobs.add((rule, ""))
    return {j for j in jobs if j[0] != "all"}


def tiny_pool(res, exp):
    """The homogeneity pool of a tiny experiment: ``(ids, features, channels)`` (audio: its training tracks)."""
    from aria.evaluation.homogeneity import evidence_pool
    from aria.io.layouts import read_evidence
    from aria.io.tables import read_manifest

    pool = None
    if exp == "tiny_audio":
        man = read_manifest(res / "corpus" / "manifest.csv", check_files=False)
        pool = man.loc[man["split"] == "train", "track_id"].to_numpy()
    name = "symbolic" if exp == "tiny" else "audio"
    return evidence_pool(read_evidence(res / "evidence" / f"{name}_features.npz"), pool=pool)


def tiny_config():
    return yaml.safe_load((REPO / "tests" / "data" / "config_tiny.yaml").read_text())


#: What a new projection in the tiny run's symbolic stage reruns after the projection itself:
#: the scores, their replicas and all that reads them (the sensitivity grid included).
SYMBOLIC_DOWNSTREAM_OF_PROJECTION = {
    "score",
    "replica_score",
    "diagnostics",
    "homogeneity",
    "residual",
    "lds",
    "sweep_point",
    "unlearning_compare",
    "cards",
    "report",
}


def test_outputs_and_report(tiny_run):
    res = tiny_run / "results" / "tiny"
    summary = json.loads((res / "summary.json").read_text())
    assert set(summary["methods"]) == {"trak", "tracin", "gradcos", "graddot", "logra", "factgrass", "unlearning"}
    assert summary["channels"] == ["melody", "harmony", "rhythm", "dynamic", "texture"]
    for s in summary["methods"].values():
        assert 0 <= s["r1"] <= 1 and 0 <= s["r2_5"] <= 1 and s["r1"] + s["r2_5"] <= 1 + 1e-9
        assert 0 <= s["c_bar"] <= 1 and 0 <= s["rho_bar"] <= 1
    html = (res / "report.html").read_text()
    for label in (
        "TRAK",
        "TracIn",
        "Grad-Cos",
        "GradDot",
        "LoGra",
        "FactGraSS",
        "melody",
        "texture",
        "data:image/png;base64",
    ):
        assert label in html
    # every rule wrote its log
    logs = list((res / "logs").rglob("*.log"))
    assert len(logs) >= 10 and all(p.stat().st_size > 0 for p in logs)


def test_score_store_matches_features(tiny_run):
    """The stored TRAK matrix is the SPEC formula applied to the cached feature stores."""
    res = tiny_run / "results" / "tiny"
    cfg = tiny_config()
    feats = [read_features(res / "features" / "symbolic" / f"m{m}_c2.zarr") for m in range(2)]
    S, rows, cols = open_scores(res / "scores" / "symbolic" / "trak.zarr")
    lam = cfg["methods"]["trak"]["damping"]["lambda"]
    ref = np.mean(
        [
            f["train"].astype(np.float64)
            @ np.linalg.inv(f["train"].T.astype(np.float64) @ f["train"] + lam * np.eye(f["train"].shape[1]))
            @ f["query"].T.astype(np.float64)
            for f in feats
        ],
        axis=0,
    )
    np.testing.assert_allclose(S[:], ref, rtol=2e-3, atol=1e-4 * np.abs(ref).max())
    assert list(rows) == list(feats[0]["train_ids"]) and list(cols) == list(feats[0]["query_ids"])
    # the tiny config names no projection type: its jobs were given the registry's default explicitly
    from aria import registry

    assert "type" not in cfg["projection"]
    assert {f["attrs"]["projection"] for f in feats} == {registry.DEFAULT_PROJECTION}


@pytest.mark.parametrize("exp, stage, method", [("tiny", "symbolic", "tracin"), ("tiny_audio", "coarse", "logra")])
def test_residual_outputs_match_brute_force(tiny_run, exp, stage, method):
    """The residual store is S minus its numpy-SVD rank-1 part; its homogeneity is the
    homogeneity of that matrix (audio: made track-level first); the alignment is recomputed
    from u_1 and the evidence features; the summary and the report carry both."""
    from aria.attribution.tracklevel import track_index, track_level
    from aria.evaluation.alignment import channel_alignment
    from aria.evaluation.homogeneity import homogeneity_table
    from aria.io.layouts import read_null
    from aria.io.stores import read_residual_axis
    from aria.io.tables import read_npz

    res = tiny_run / "results" / exp
    S, rows, cols = open_scores(res / "scores" / stage / f"{method}.zarr")
    S = np.asarray(S[:], dtype=np.float64)
    U, s, Vt = np.linalg.svd(S, full_matrices=False)
    R, _, _ = open_scores(res / "residual" / stage / f"{method}.zarr")
    np.testing.assert_allclose(R[:], S - s[0] * np.outer(U[:, 0], Vt[0]), atol=1e-5 * np.abs(S).max())
    axis = read_residual_axis(res / "residual" / stage / f"{method}.zarr")
    np.testing.assert_allclose(np.abs(axis["u"]), np.abs(U[:, 0]), atol=1e-6)

    ids, feats, chans = tiny_pool(res, exp)
    Rm, u, unit_ids = np.asarray(R[:], dtype=np.float64), axis["u"], rows
    if exp == "tiny_audio":
        seg = read_npz(res / "segments" / stage / "train.npz")
        unit_ids, r2t = track_index(seg["track_ids"])
        _, Rm = track_level(Rm, seg["track_ids"], normalize="rank")
        u = np.bincount(r2t, weights=u) / np.bincount(r2t)
    sel = [list(unit_ids).index(t) for t in ids]
    tab = homogeneity_table(Rm[sel], feats, chans, read_null(res / "evidence" / "null.json"))
    doc = json.loads((res / "homogeneity_residual" / stage / f"{method}.json").read_text())
    for K, t in tab["by_k"].items():
        for c in chans:  # a degenerate null (tiny audio pool) gives nan on both sides
            np.testing.assert_allclose(doc["by_k"][str(K)]["z_c"][c], t["z_c"][c], atol=1e-9, equal_nan=True)
    assert any(np.isfinite(t["z_c"][c]).any() for t in tab["by_k"].values() for c in chans)
    align = json.loads((res / "alignment" / stage / f"{method}.json").read_text())
    ref = channel_alignment(u[sel], feats, chans)
    for c in chans:
        assert align[c]["a_max"] == pytest.approx(ref[c]["a_max"], abs=1e-9)
        assert align[c]["a_r"] == pytest.approx(ref[c]["a_r"], abs=1e-9) and align[c]["a_r"] >= align[c]["a_max"]

    summary = json.loads((res / "summary.json").read_text())
    key = method if exp == "tiny" else f"{method}/{stage}"
    row = summary["methods"][key]
    assert row["residual"]["homogeneity"]["5"] == doc["by_k"]["5"]["summary"]
    c0 = next(iter(chans))
    assert row["alignment"][c0]["a_max"] == align[c0]["a_max"]
    html = (res / "report.html").read_text()
    assert "Residual: homogeneity after removing the leading axis" in html
    assert "Axis–channel alignment of the removed axis (Eq. 8)" in html


@pytest.mark.parametrize("exp, stage, method", [("tiny", "symbolic", "gradcos"), ("tiny_audio", "semantic", "trak")])
def test_confounds_match_the_stores(tiny_run, exp, stage, method):
    """Genre breakdown, genre-stratified z and same-piece share recomputed from the stored groups,
    manifest, segments and queries; summary.json and the report carry them."""
    from aria.evaluation.confounds import (
        genre_breakdown,
        null_same_piece_share,
        same_piece_share,
        stratified_zscores,
    )
    from aria.evaluation.homogeneity import channel_homogeneity
    from aria.io.layouts import read_null
    from aria.io.tables import read_manifest, read_npz

    cfg = tiny_config()
    res = tiny_run / "results" / exp
    man = read_manifest(res / "corpus" / "manifest.csv", check_files=False)
    genre = dict(zip(man["track_id"], man["genre"]))
    ids, feats, chans = tiny_pool(res, exp)
    doc = json.loads((res / "homogeneity" / stage / f"{method}.json").read_text())
    K = cfg["homogeneity"]["main_k"]
    c_doc = doc["confounds"]
    assert c_doc["k"] == K
    where = {t: i for i, t in enumerate(ids)}
    groups = np.array([[where[t] for t in row] for row in doc["by_k"][str(K)]["top_ids"]])
    pieces = np.asarray(ids)
    if exp == "tiny":
        seg = read_npz(res / "segments" / "symbolic" / "train.npz")
        pieces = np.asarray(seg["track_ids"])[[list(seg["segment_ids"]).index(t) for t in ids]]
    labels = np.array([genre[t] for t in pieces])
    q = read_npz(res / "queries" / ("symbolic" if exp == "tiny" else "semantic") / "queries.npz")
    q_genre = dict(zip(q["query_ids"], [genre[t] for t in q["track_ids"]]))
    q_genres = [q_genre[x] for x in doc["query_ids"]]
    assert c_doc["query_genres"] == q_genres
    null = read_null(res / "evidence" / "null.json")
    H, _ = channel_homogeneity(feats, chans, groups, null["scales"])
    ref = stratified_zscores(
        feats,
        chans,
        null["scales"],
        groups,
        labels,
        H,
        n_groups=cfg["homogeneity"]["n_null_groups"],
        random_state=cfg["seeds"]["null_groups"],
    )
    for c in chans:
        np.testing.assert_allclose(c_doc["stratified"]["z_c"][c], ref["z_c"][c], atol=1e-9, equal_nan=True)
        want = genre_breakdown(doc["by_k"][str(K)]["z_c"][c], q_genres)
        assert c_doc["genre"][c]["sd_mu_z"] == pytest.approx(want["sd_mu_z"], nan_ok=True)
        assert c_doc["genre"][c]["by_genre"].keys() == want["by_genre"].keys()
    if exp == "tiny":  # a segment pool: the same-piece share against the exact null share
        np.testing.assert_allclose(c_doc["same_piece"]["share"], same_piece_share(groups, pieces))
        assert c_doc["same_piece"]["null_share"] == pytest.approx(null_same_piece_share(pieces))
    else:
        assert "same_piece" not in c_doc
    summary = json.loads((res / "summary.json").read_text())
    row = summary["methods"][method if exp == "tiny" else f"{method}/{stage}"]["confounds"]
    assert row["stratified"] == c_doc["stratified"]["summary"]
    assert row["genre_sd_mu_z"] == {c: c_doc["genre"][c]["sd_mu_z"] for c in chans}
    html = (res / "report.html").read_text()
    assert "Confounds: genre and same piece" in html and "Homogeneity per query genre" in html


def test_cost_table_sums_the_benchmarks(tiny_run):
    """TRAK's cost = its scoring job + the projections of its ensemble's final checkpoints (+ their
    training), summed here from the benchmark files by name; LoGra's adds its covariance job."""
    cfg = tiny_config()
    res = tiny_run / "results" / "tiny"
    bench = res / "benchmarks"

    def tsv(rel):
        lines = (bench / rel).read_text().splitlines()
        head, vals = lines[0].split("\t"), lines[1].split("\t")
        return dict(zip(head, vals))

    n_c = cfg["methods"]["tracin"]["checkpoints"]
    att = ["score/symbolic/trak.tsv"] + [f"project_gradients/symbolic/m{m}_c{n_c}.tsv" for m in range(2)]
    tr = [f"train_model/symbolic/m{m}.tsv" for m in range(2)]
    cost = json.loads((res / "summary.json").read_text())["methods"]["trak"]["cost"]
    assert cost["wall_s"] == pytest.approx(sum(float(tsv(f)["s"]) for f in att))
    assert cost["train_wall_s"] == pytest.approx(sum(float(tsv(f)["s"]) for f in tr))
    assert cost["cpu_h"] == pytest.approx(sum(float(tsv(f)["cpu_time"]) for f in att + tr) / 3600)
    assert cost["peak_rss_mb"] == pytest.approx(max(float(tsv(f)["max_rss"]) for f in att + tr))
    stores = [res / "scores/symbolic/trak.zarr"] + [res / f"features/symbolic/m{m}_c{n_c}.zarr" for m in range(2)]
    nbytes = sum(p.stat().st_size for s in stores for p in s.rglob("*") if p.is_file())
    assert cost["disk_mb"] == pytest.approx(nbytes / 1e6) and cost["n_missing"] == 0
    logra = json.loads((res / "summary.json").read_text())["methods"]["logra"]["cost"]
    want = ["score/symbolic/logra.tsv", "project_factored/symbolic/logra/m0.tsv", "kfac_covariance/symbolic/m0.tsv"]
    assert logra["wall_s"] == pytest.approx(sum(float(tsv(f)["s"]) for f in want))
    assert "Cost per setting" in (res / "report.html").read_text()


def test_rerun_scope_sensitivity_grid(tiny_run):
    """Adding a λ point re-solves only (one sweep job per swept stage, the reports); adding a k point
    projects at that k and never trains."""
    cfg = tiny_config()
    cfg["sensitivity"]["grid"]["trak"]["lambda"] = [0.1, 0.5]
    assert dry_run_jobs(tiny_run, cfg) == {
        ("sweep_point", "exp=tiny, stage=symbolic, method=trak, point=k16_lambda0.5"),
        ("sweep_point", "exp=tiny_audio, stage=semantic, method=trak, point=k16_lambda0.5"),
        ("report", "exp=tiny"),
        ("report", "exp=tiny_audio"),
    }
    cfg = tiny_config()
    cfg["sensitivity"]["grid"]["trak"]["k"] = [16, 8]
    jobs = dry_run_jobs(tiny_run, cfg)
    assert {r for r, _ in jobs} == {"project_gradients_k", "sweep_point", "report"}
    assert ("project_gradients_k", "exp=tiny, stage=symbolic, k=8, m=1, c=2") in jobs


def test_sensitivity_point_matches_numpy(tiny_run):
    """A grid point's μz and r1: TRAK at k = 16, λ = 0.1 recomputed with numpy from the stores
    projected at k = 16 (the symbolic stage's own k is 32), then homogeneity as for the main row."""
    from aria.evaluation.homogeneity import evidence_pool, homogeneity_table
    from aria.io.layouts import read_evidence, read_null

    res = tiny_run / "results" / "tiny"
    feats = [read_features(res / "features" / "symbolic" / "k16" / f"m{m}_c2.zarr") for m in range(2)]
    assert feats[0]["train"].shape[1] == 16
    S = np.mean(
        [
            f["train"].astype(np.float64)
            @ np.linalg.inv(f["train"].T.astype(np.float64) @ f["train"] + 0.1 * np.eye(16))
            @ f["query"].T.astype(np.float64)
            for f in feats
        ],
        axis=0,
    )
    doc = json.loads((res / "sensitivity" / "symbolic" / "trak" / "k16_lambda0.1.json").read_text())
    assert doc["point"] == {"k": 16, "lambda": 0.1}
    assert doc["params"]["damping"] == {"rule": "absolute", "lambda": 0.1}
    s = np.linalg.svd(S, compute_uv=False)
    assert doc["diagnostics"]["r1"] == pytest.approx(s[0] ** 2 / (s**2).sum(), rel=1e-3)
    ids, ev, chans = evidence_pool(read_evidence(res / "evidence" / "symbolic_features.npz"))
    tab = homogeneity_table(S, ev, chans, read_null(res / "evidence" / "null.json"))
    for c in chans:  # float32 store vs float64 here: top-K ties aside, identical groups
        assert doc["summary"]["3"][c]["mu_z"] == pytest.approx(tab["by_k"][3]["summary"][c]["mu_z"], abs=1e-6)
    summary = json.loads((res / "summary.json").read_text())
    pts = {(d["method"], d["stage"], json.dumps(d["point"])) for d in summary["sensitivity"]}
    assert ("trak", "symbolic", json.dumps({"k": 16, "lambda": 0.1})) in pts and len(pts) == 2
    assert "Sensitivity to hyperparameters" in (res / "report.html").read_text()


def test_rerun_scope_homogeneity_unit(tiny_run):
    """homogeneity.unit: track recomputes the evidence pool, null, homogeneity, residuals and the
    symbolic report, and never trains, projects or scores."""
    cfg = tiny_config()
    cfg["homogeneity"]["unit"] = "track"
    rules = {r for r, _ in dry_run_jobs(tiny_run, cfg)}
    assert rules == {
        "symbolic_features",
        "pool_check",
        "null",
        "homogeneity",
        "residual",
        "sweep_point",
        "cards",
        "report",
    }


def test_track_unit_homogeneity_is_the_track_level_matrix(tiny_run, tmp_path):
    """With unit: track the pool is whole pieces (features of each whole piece) and S is made
    track-level with the method's normalization before G_K is formed (docs/spec.md §3, §6)."""
    from aria.attribution.tracklevel import track_level
    from aria.evaluation.homogeneity import homogeneity_table, null_distribution
    from aria.io.layouts import read_evidence, read_null
    from aria.io.tables import read_npz
    from aria.symbolic.features import CHANNELS, extract
    from aria.symbolic.tokenize import decode

    res = tiny_run / "results" / "tiny"
    seg = res / "segments" / "symbolic" / "train.npz"
    aria = [str(BIN / "aria")]
    run = lambda *a: subprocess.run(aria + list(a), check=True, capture_output=True, cwd=tmp_path)  # noqa: E731
    run("symbolic-features", "--segments", str(seg), "--params", '{"block_tokens": 64}',
        "--out", str(tmp_path / "seg.npz"), "--out-tracks", str(tmp_path / "tracks.npz"))  # fmt: skip
    run("null", "--features", str(tmp_path / "tracks.npz"), "--out", str(tmp_path / "null.json"),
        "--params", '{"ks": [3, 5], "n_groups": 50, "seed": 2024}')  # fmt: skip
    run("homogeneity", "--scores", str(res / "scores" / "symbolic" / "trak.zarr"),
        "--features", str(tmp_path / "tracks.npz"), "--null", str(tmp_path / "null.json"),
        "--manifest", str(res / "corpus" / "manifest.csv"), "--segments", str(seg),
        "--queries", str(res / "queries" / "symbolic" / "queries.npz"), "--out", str(tmp_path / "h.json"),
        "--params", json.dumps({"domain": "symbolic", "main_k": 3, "n_groups": 50, "seed": 2024,
                                "unit": "track", "normalize": "zscore"}))  # fmt: skip
    d = read_npz(seg)
    ev = read_evidence(tmp_path / "tracks.npz")
    assert list(ev["ids"]) == list(d["stream_tracks"])
    i = 1  # one piece's features are those of its whole decoded token stream
    notes = decode(d["streams"][d["stream_offsets"][i] : d["stream_offsets"][i + 1]])
    want = extract(notes, tempo_map=d["tempo_maps"][d["tempo_offsets"][i] : d["tempo_offsets"][i + 1]])
    for f, v in want.items():
        np.testing.assert_allclose(ev["features"][f][i], v)
    S, _, _ = open_scores(res / "scores" / "symbolic" / "trak.zarr")
    tids, Sb = track_level(S, d["track_ids"], normalize="zscore")
    sel = [list(tids).index(t) for t in ev["ids"]]
    null = null_distribution(ev["features"], CHANNELS, ks=[3, 5], n_groups=50, random_state=2024)
    np.testing.assert_allclose(read_null(tmp_path / "null.json")["by_k"][3]["mu_c"]["melody"],
                               null["by_k"][3]["mu_c"]["melody"])  # fmt: skip
    tab = homogeneity_table(Sb[sel], ev["features"], CHANNELS, null)
    doc = json.loads((tmp_path / "h.json").read_text())
    assert doc["unit"] == "track" and "same_piece" not in doc["confounds"]
    for c in CHANNELS:
        np.testing.assert_allclose(doc["by_k"]["3"]["z_c"][c], tab["by_k"][3]["z_c"][c], atol=1e-9, equal_nan=True)
    assert doc["by_k"]["3"]["top_ids"] == np.asarray(ev["ids"])[tab["by_k"][3]["groups"]].tolist()
    # its evidence cards: whole pieces with their track-level score and their best segment's window
    spec = {
        "domain": "symbolic",
        "title": "t",
        "main_k": 3,
        "rows": [
            {
                "key": "trak",
                "label": "TRAK",
                "homogeneity": str(tmp_path / "h.json"),
                "diagnostics": str(res / "diagnostics" / "symbolic" / "trak.json"),
                "scores": str(res / "scores" / "symbolic" / "trak.zarr"),
                "segment_scores": str(res / "scores" / "symbolic" / "trak.zarr"),
                "segments_csv": str(res / "segments" / "symbolic" / "segments.csv"),
                "normalize": "zscore",
            }
        ],
        "null": str(tmp_path / "null.json"),
        "evidence": str(tmp_path / "tracks.npz"),
        "manifest": str(res / "corpus" / "manifest.csv"),
        "root": str(res / "corpus"),
        "queries": str(res / "queries" / "symbolic" / "queries.npz"),
        "query_midi": str(res / "queries" / "midi"),
        "segments": str(seg),
        "block_tokens": 64,
        "sr": 22050,
    }
    run("cards", "--spec", json.dumps(spec), "--out", str(tmp_path / "cards"))
    qid = json.loads((tmp_path / "cards" / "index.json").read_text())[0]["query_id"]
    card = (tmp_path / "cards" / f"{qid}.html").read_text()
    tl = list(tids)
    for t in doc["by_k"]["3"]["top_ids"][0]:
        assert f"<code>{t}</code></td><td>{float(Sb[tl.index(t), 0]):.4g}</td><td>{t}, its best segment" in card


def test_rerun_scope_trak_lambda(tiny_run):
    """Changing only TRAK's lambda reruns TRAK scoring and what depends on it, nothing else."""
    cfg = tiny_config()
    cfg["methods"]["trak"]["damping"] = {"rule": "absolute", "lambda": 0.5}
    assert dry_run_jobs(tiny_run, cfg) == {
        ("score", "exp=tiny, stage=symbolic, method=trak"),
        # its noise diagnostic: members 0 and 1 scored alone at the new damping
        ("replica_score", "exp=tiny, stage=symbolic, method=trak, m=0"),
        ("replica_score", "exp=tiny, stage=symbolic, method=trak, m=1"),
        ("diagnostics", "exp=tiny, stage=symbolic, method=trak"),
        ("homogeneity", "exp=tiny, stage=symbolic, method=trak"),
        ("residual", "exp=tiny, stage=symbolic, method=trak"),
        ("lds", "exp=tiny, stage=symbolic, method=trak"),  # its LDS, never the retraining
        ("unlearning_compare", "exp=tiny"),  # unlearning is compared with every other method's scores
        ("cards", "exp=tiny"),
        ("report", "exp=tiny"),
    }


def test_rerun_scope_logra_alpha(tiny_run):
    """LoGra's damping reruns its scoring and what depends on it, never its projection."""
    cfg = tiny_config()
    cfg["methods"]["logra"]["damping"] = {"rule": "relative", "alpha": 0.5}
    w = "exp=tiny, stage=symbolic, method=logra"
    assert dry_run_jobs(tiny_run, cfg) == {
        ("score", w),
        ("replica_score", w + ", m=1"),  # the replica from member 1, at the new damping
        ("diagnostics", w),
        ("homogeneity", w),
        ("residual", w),
        ("lds", w),
        ("unlearning_compare", "exp=tiny"),
        ("cards", "exp=tiny"),
        ("report", "exp=tiny"),
    }
    cfg = tiny_config()
    cfg["methods"]["logra"]["k_in"] = 3  # a projection parameter: its projection too, not the covariance
    jobs = dry_run_jobs(tiny_run, cfg)
    assert ("project_factored", "exp=tiny, stage=symbolic, method=logra, m=0") in jobs
    # downstream: sweep_point too, as its sensitivity point reads the new features
    assert {r for r, _ in jobs} == {"project_factored", *SYMBOLIC_DOWNSTREAM_OF_PROJECTION}


def test_factored_scores_match_their_features(tiny_run):
    """The stored LoGra matrix is the block-diagonal influence formula on its feature store."""
    res = tiny_run / "results" / "tiny"
    f = read_features(res / "features" / "symbolic" / "logra" / "m0.zarr")
    S, _, _ = open_scores(res / "scores" / "symbolic" / "logra.zarr")
    ref = 0
    for sl in f["attrs"]["blocks"]:
        P = f["train"][:, sl["start"] : sl["stop"]].astype(np.float64)
        Fm = P.T @ P / len(P)
        Fm += 0.1 * np.trace(Fm) / len(Fm) * np.eye(len(Fm))
        ref = ref + P @ np.linalg.inv(Fm) @ f["query"][:, sl["start"] : sl["stop"]].T.astype(np.float64)
    np.testing.assert_allclose(S[:], ref, rtol=2e-3, atol=1e-4 * np.abs(ref).max())
    # 5 hooked layers (qkv, proj, ff1, ff2, head) of k_in x k_out = 4 x 4
    assert f["attrs"]["k_total"] == 5 * 16 == sum(s["stop"] - s["start"] for s in f["attrs"]["blocks"])


def test_rerun_scope_lds_settings(tiny_run):
    """More subsets train only the new ones (the seeds of run r of subset m are base + m R + r);
    the bootstrap size reruns only the LDS jobs and the references, never the ground truth."""
    cfg = tiny_config()
    cfg["lds"]["n_subsets"] = 7
    jobs = dry_run_jobs(tiny_run, cfg)
    assert {j for j in jobs if j[0] == "lds_retrain"} == {("lds_retrain", "exp=tiny, stage=symbolic, subset=6")}
    assert {r for r, _ in jobs} == {"lds_retrain", "lds_ground_truth", "lds", "lds_references", "report"}
    cfg = tiny_config()
    cfg["lds"]["n_boot"] = 300
    assert {r for r, _ in dry_run_jobs(tiny_run, cfg)} == {"lds", "lds_references", "report"}


def test_lds_in_report_and_summary(tiny_run):
    """The symbolic report has the LDS column and the validation table; summary.json carries
    LDS, its interval and Kendall's tau per diagnostic, recomputed here from the stores."""
    from aria.evaluation.lds import lds_per_query
    from aria.io.stores import read_ground_truth

    res = tiny_run / "results" / "tiny"
    summary = json.loads((res / "summary.json").read_text())
    gt = read_ground_truth(res / "lds" / "symbolic" / "ground_truth.zarr")
    assert gt["masks"].shape[0] == 6 and (gt["masks"].sum(1) == round(0.5 * gt["masks"].shape[1])).all()
    lds = {}
    for m, s in summary["methods"].items():
        S, _, _ = open_scores(res / "scores" / "symbolic" / f"{m}.zarr")
        ref = np.nanmean(lds_per_query(gt["masks"] @ np.asarray(S[:], dtype=np.float64), gt["targets"]))
        assert s["lds"]["lds"] == pytest.approx(ref, abs=1e-9)
        assert s["lds"]["ci"][0] <= s["lds"]["lds"] <= s["lds"]["ci"][1]
        lds[m] = ref
    from scipy import stats

    val = summary["validation"]["symbolic"]
    names = sorted(lds)
    for k in ("r1", "r2_5", "c_bar", "rho_bar"):
        tau = stats.kendalltau([summary["methods"][n][k] for n in names], [-lds[n] for n in names]).statistic
        assert val["by_diagnostic"][k]["kendall_tau"] == pytest.approx(tau)
    html = (res / "report.html").read_text()
    assert "LDS [95% CI]" in html and "Validation: do the diagnostics order the methods as LDS does?" in html
    assert val["reading"] in html.replace("&gt;", ">")
    md = (res / "report.md").read_text()
    assert "| Diagnostic | Kendall τ vs LDS order |" in md
    # the audio report: an LDS column for the semantic stage's rows only
    audio = json.loads((tiny_run / "results" / "tiny_audio" / "summary.json").read_text())
    with_lds = {k for k, v in audio["methods"].items() if "lds" in v}
    assert with_lds == {f"{m}/semantic" for m in ("trak", "gradcos", "logra", "factgrass")}
    assert set(audio["validation"]) == {"semantic"}
    # one run per subset (the tiny config): no seed-noise ceiling, so the claim is not testable;
    # the reference rows' LDS (same function, from the stored ground truth) sit in the validation
    refs = json.loads((res / "lds" / "symbolic" / "references.json").read_text())
    assert not refs["ceiling"]["available"] and not refs["testable"] and not val["testable"]
    assert "Not testable on this setting" in val["reading"]
    # two collections; the collection prior is skipped when the queries are spread evenly over them
    assert {"gaussian", "same_collection"} <= set(refs["references"])
    assert set(refs["references"]) | set(refs["skipped"]) == {
        "gaussian",
        "query_independent",
        "same_collection",
        "collection_prior",
    }
    same = (gt["segment_collection"][:, None] == gt["query_collection"][None, :]).astype(float)
    ref = np.nanmean(lds_per_query(gt["masks"] @ same, gt["targets"]))
    assert refs["references"]["same_collection"]["lds"] == pytest.approx(ref, abs=1e-9)
    assert val["references"]["same_collection"]["lds"] == refs["references"]["same_collection"]["lds"]
    assert set(val["partial_lds"]) == set(lds) and "reference: the same-collection indicator" in md
    assert {"agreement", "verdict"} <= set(val["by_diagnostic"])
    assert set(val["between"]) == {"r1", "rho_bar", "agreement", "verdict"}
    np.testing.assert_array_equal(gt["seeds"], 1100 + np.arange(6)[:, None])  # seeds.train 100 + 1000 + m


def test_rerun_scope_projection_k(tiny_run):
    """Changing k reruns every projection and every method, but not training or features."""
    cfg = tiny_config()
    cfg["projection"]["k"] = 16
    jobs = dry_run_jobs(tiny_run, cfg)
    # downstream: sweep_point too, as TRAK's k = 16 grid point now reads the main stores
    assert {r for r, _ in jobs} == {"project_gradients", *SYMBOLIC_DOWNSTREAM_OF_PROJECTION}
    assert {w for r, w in jobs if r == "project_gradients"} == {
        f"exp=tiny, stage=symbolic, m={m}, c={c}"
        for m, c in [(0, 1), (0, 2), (1, 1), (1, 2)]  # (1, 1): TracIn's replica
    }


def test_unchanged_config_is_up_to_date(tiny_run):
    assert dry_run_jobs(tiny_run, tiny_config()) == set()


def test_collection_order_does_not_matter(tiny_run):
    """Seeds and eval quotas come from collection names: listing them in another order
    changes no job (it used to reseed every collection and rebuild the whole corpus)."""
    cfg = tiny_config()
    cols = cfg["corpus"]["demo"]["collections"]
    cfg["corpus"]["demo"]["collections"] = dict(reversed(list(cols.items())))
    assert list(cfg["corpus"]["demo"]["collections"]) != list(cols)
    assert dry_run_jobs(tiny_run, cfg) == set()


def test_config_typo_is_rejected(tmp_path):
    cfg = tiny_config()
    cfg["methods"]["trak"]["dampng"] = cfg["methods"]["trak"].pop("damping")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = run_snakemake(tmp_path, "-n", check=False)
    assert res.returncode != 0
    text = res.stdout + res.stderr
    assert "unknown key 'methods.trak.dampng'" in text
    assert not (tmp_path / "results").exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (make deb)")
@pytest.mark.parametrize("experiment", ["tiny", "tiny_audio"])
def test_report_renders_in_browser(tiny_run, tmp_path, experiment):
    """Headless Chromium renders each experiment's report.html to a non-blank PNG."""
    png = tmp_path / "report.png"
    html = tiny_run / "results" / experiment / "report.html"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'prof'}",
            "--window-size=1400,1600",
            f"--screenshot={png}",
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert img.shape[0] >= 1000 and img.std() > 10  # not a blank page
    # one evidence card, rendered too (the PNG stays next to the tiny run for a look)
    card = sorted((tiny_run / "results" / experiment / "cards").glob("q-*.html"))[0]
    shot = tmp_path / f"card_{experiment}.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'prof2'}", "--window-size=1300,1800", f"--screenshot={shot}", card.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.std() > 10 and (img < 128).mean() > 0.01  # text and tables rendered


@pytest.mark.parametrize("exp", ["tiny", "tiny_audio"])
def test_evidence_cards_match_the_stores(tiny_run, exp):
    """Each card's scores are the matrix entries, its similarities the SPEC similarity of the query's
    own features to each item, its windows the best segment of each track for the query."""
    import html as H

    from aria.evaluation.evidence import query_similarity
    from aria.io.layouts import read_null
    from aria.io.tables import read_csv

    res = tiny_run / "results" / exp
    idx = json.loads((res / "cards" / "index.json").read_text())
    summary = json.loads((res / "summary.json").read_text())
    assert [e["query_id"] for e in idx] == json.loads(next((res / "homogeneity").rglob("*.json")).read_text())[
        "query_ids"
    ]
    e = idx[0]
    card = (res / "cards" / e["card"]).read_text()
    key = "gradcos" if exp == "tiny" else "trak/semantic"
    method, _, stage = key.partition("/")
    stage = stage or "symbolic"
    hom = json.loads((res / "homogeneity" / stage / f"{method}.json").read_text())
    K = str(tiny_config()["homogeneity"]["main_k"])
    top = hom["by_k"][K]["top_ids"][0]
    store = res / ("scores" if exp == "tiny" else "tracklevel") / stage / f"{method}.zarr"
    S, rows, _ = open_scores(store)
    rows = list(rows)
    label = summary["methods"][key]["label"]
    section = card.split(f"<b>{H.escape(label)}</b>")[1].split("</details>")[0]
    for t in top:
        assert f"<code>{t}</code></td><td>{float(S[rows.index(t), 0]):.4g}</td>" in section
    # similarities: the query's features against each item, recomputed here
    ids, feats, chans = tiny_pool(res, exp)
    scales = read_null(res / "evidence" / "null.json")["scales"]
    if exp == "tiny":
        from aria.io.midi import read_midi
        from aria.symbolic.features import extract

        n, tempo = read_midi(res / "queries" / "midi" / f"{e['query_id']}.mid")
        qf = extract(n, tempo_map=tempo)
    else:
        from aria.audio.features import chord_root_motion, extract_many

        f, _ = extract_many([res / "queries" / "audio" / f"{e['query_id']}.wav"], sr=22050)
        qf = {k: v[0] for k, v in f.items() if k not in ("paths", "chords")} | {
            "chords": chord_root_motion(f["chords"][0])
        }
    sims = query_similarity(qf, feats, [list(ids).index(t) for t in top], chans, scales)
    cells = [c.split("</td>")[0] for c in section.split('<td class="sim">')[1:]]
    got = np.array(cells, dtype=float).reshape(len(top), len(chans))
    np.testing.assert_allclose(got, np.stack([sims[c] for c in chans], axis=1), atol=6e-4)
    if exp == "tiny_audio":  # the window of the top track is its best semantic segment for query 0
        Sseg, seg_rows, _ = open_scores(res / "scores" / "semantic" / "trak.zarr")
        seg = read_csv(res / "segments" / "semantic" / "segments.csv").set_index("segment_id")
        mine = [i for i, r in enumerate(seg_rows) if seg.loc[r, "track_id"] == top[0]]
        best = seg_rows[mine[int(np.argmax(np.asarray(Sseg[:, 0])[mine]))]]
        a0 = float(seg.loc[best, "start_s"])
        assert f"#t={a0:.2f},{a0 + 4:.2f}" in section  # semantic window_s = 4 in the tiny config


@pytest.mark.parametrize("exp", ["tiny", "tiny_audio"])
def test_report_is_self_contained(tiny_run, tmp_path, exp):
    """Moved elsewhere, the report and its cards still find every file they link to or play."""
    moved = tmp_path / "moved"
    shutil.copytree(tiny_run / "results" / exp, moved, ignore=shutil.ignore_patterns("logs", "benchmarks"))
    pages = [moved / "report.html", *sorted((moved / "cards").glob("*.html"))]
    n_links = 0
    for page in pages:
        for ref in re.findall(r'(?:src|href)="([^"#]+)(?:#[^"]*)?"', page.read_text()):
            if ref.startswith(("data:", "http")):
                continue
            assert not ref.startswith(("/", "..")) or page.parent.name == "cards" and ref == "../report.html", ref
            assert (page.parent / ref).resolve().is_file(), f"{page.name}: {ref} is missing"
            n_links += 1
    assert n_links > len(pages)


def test_user_corpus_reproduces_demo_run(tiny_run, tmp_path):
    """The same MIDI files brought as a user corpus (kind: midi_folder) give bit-identical
    results in a fresh directory: the user-corpus path works and runs are reproducible.
    (The symbolic experiment only, TRAK (both models) and GradDot, no LDS and no sensitivity
    grid, to keep the suite fast: the audio experiment reads the same corpus and its own
    user-corpus path is tested below; the other methods, LDS and the grid read the same
    segments, models and projections.)"""
    corpus = tiny_run / "results" / "tiny" / "corpus"
    cfg = tiny_config()
    cfg["experiments"] = ["symbolic"]
    cfg["lds"]["enabled"] = False
    cfg["methods"]["run"] = ["trak", "graddot"]
    del cfg["selfinfluence"]  # no stage runs unlearning here (the config check would refuse the grid)
    del cfg["sensitivity"]
    cfg["corpus"] = {
        "kind": "midi_folder",
        "midi_folder": {"root": str(corpus), "manifest": str(corpus / "manifest.csv")},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    run_snakemake(tmp_path, "--cores", "2")
    a, b = tiny_run / "results" / "tiny", tmp_path / "results" / "tiny"
    assert not (b / "corpus").exists()  # nothing rebuilt: the user's files are read in place
    for m in ("trak", "graddot"):
        Sa, ra, ca = open_scores(a / "scores" / "symbolic" / f"{m}.zarr")
        Sb, rb, cb = open_scores(b / "scores" / "symbolic" / f"{m}.zarr")
        np.testing.assert_array_equal(Sa[:], Sb[:])
        assert list(ra) == list(rb) and list(ca) == list(cb)
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
    assert set(sb["methods"]) == {"trak", "graddot"}
    for m, row in sb["methods"].items():  # (cost is measured time and memory: not reproducible by nature)
        assert {k: v for k, v in sa["methods"][m].items() if k not in ("lds", "cost")} == {
            k: v for k, v in row.items() if k != "cost"
        }


def test_audio_corpus_and_features(tiny_run):
    """The audio demo renders the MIDI corpus and its sharded features equal extract() per file."""
    import pandas as pd

    from aria.audio.features import extract
    from aria.io.audio import load_audio

    res = tiny_run / "results" / "tiny_audio"
    man = pd.read_csv(res / "corpus" / "manifest.csv", dtype=str)
    assert (man["split"] == "train").sum() == 5 and (man["split"] == "eval").sum() == 2
    y = load_audio(res / "corpus" / man["path"][0], sr=22050)
    assert 4 <= len(y) / 22050 <= 12.0 + 1e-6
    with np.load(res / "evidence" / "audio_features.npz") as z:
        feats = {k: z[k] for k in z.files}
    assert set(feats["track_ids"]) == set(man["track_id"])
    lens = feats["chord_lengths"]
    for track_id, path in zip(man["track_id"], man["path"]):  # every file: nothing carries over between them
        row = list(feats["track_ids"]).index(track_id)
        ref = extract(res / "corpus" / path, sr=22050)
        for key in ("beat_interval_hist", "onset_interval_hist", "chroma", "tonnetz", "mfcc", "cqt"):
            # equal to round-off: the job's BLAS runs on 1 thread (bit-identical with OMP_NUM_THREADS=1)
            np.testing.assert_allclose(feats[key][row], ref[key], rtol=1e-5, atol=1e-6, err_msg=f"{track_id}: {key}")
        np.testing.assert_array_equal(feats["chords"][lens[:row].sum() : lens[: row + 1].sum()], ref["chords"])


def test_embedding_baseline_equals_the_encoder_on_the_audio(tiny_run):
    """The baseline's two jobs (corpus frames, then queries and scoring) give the cosine of
    time-averaged encoder frames computed here directly from the audio files."""
    import pandas as pd

    from aria.audio.encoders import get_encoder
    from aria.io.audio import load_audio
    from aria.io.stores import open_scores

    res = tiny_run / "results" / "tiny_audio"
    man = pd.read_csv(res / "corpus" / "manifest.csv", dtype=str)
    man = man[man["split"] == "train"]
    enc = get_encoder("aisfx")
    S, rows, cols = open_scores(res / "scores" / "baseline" / "aisfx.zarr")
    assert list(rows) == list(man["track_id"])

    def mean_frame(path):
        return np.asarray(enc.frames(load_audio(path, sr=22050), 22050), dtype=np.float64).mean(0)

    tr = np.stack([mean_frame(res / "corpus" / p) for p in man["path"]])
    qu = np.stack([mean_frame(res / "queries" / "audio" / f"{q}.wav") for q in cols])
    ref = (tr / np.linalg.norm(tr, axis=1, keepdims=True)) @ (qu / np.linalg.norm(qu, axis=1, keepdims=True)).T
    np.testing.assert_allclose(np.asarray(S[:]), ref, rtol=1e-5, atol=1e-6)


def test_rerun_scope_audio_stage(tiny_run):
    """Per stage and method: fine TRAK lambda reruns only fine TRAK; semantic k only the semantic stage."""
    cfg = tiny_config()
    cfg["audio"]["stages"]["fine"]["methods"]["trak"]["damping"] = {"rule": "absolute", "lambda": 0.5}
    fine = "exp=tiny_audio, stage=fine, method=trak"
    assert dry_run_jobs(tiny_run, cfg) == {
        ("score", fine),  # (fine has no replica in the tiny config: analysis.replicas.skip)
        ("diagnostics", fine),
        ("tracklevel", "stage=fine, method=trak"),
        ("homogeneity", fine),
        ("residual", fine),
        ("cards", "exp=tiny_audio"),
        ("report", "exp=tiny_audio"),
    }
    cfg = tiny_config()
    cfg["audio"]["stages"]["semantic"]["projection"]["k"] = 8
    jobs = dry_run_jobs(tiny_run, cfg)
    assert {r for r, _ in jobs} == {
        "project_gradients",
        "project_gradients_k",  # TRAK's k = 16 grid point is no longer the stage's own k
        "score",
        "replica_score",
        "diagnostics",
        "tracklevel",
        "homogeneity",
        "residual",
        "lds",
        "sweep_point",
        "cards",
        "report",
    }
    assert all("semantic" in w for r, w in jobs if r not in ("report", "cards"))
    assert {w for r, w in jobs if r in ("report", "cards")} == {"exp=tiny_audio"}
    assert {w for r, w in jobs if r == "project_gradients"} == {
        f"exp=tiny_audio, stage=semantic, m={m}, c=1" for m in (0, 1)
    }


def test_audio_report_and_queries(tiny_run):
    res = tiny_run / "results" / "tiny_audio"
    summary = json.loads((res / "summary.json").read_text())
    assert summary["channels"] == ["rhythmic", "harmonic", "timbral"]
    runs = {"semantic": ("trak", "gradcos", "logra", "factgrass"), "coarse": ("trak", "logra")}
    runs["fine"] = ("trak", "gradcos", "factgrass", "unlearning")
    assert set(summary["methods"]) == {f"{m}/{s}" for s, ms in runs.items() for m in ms} | {
        f"aisfx{v}/baseline" for v in ("", "_aaa")
    }
    html = (res / "report.html").read_text()
    n_q = len(list((res / "queries" / "audio").glob("*.wav")))
    assert html.count("<audio") == n_q  # each query's player; its top-K windows play in its card
    for card in (res / "cards").glob("q-*.html"):
        assert card.read_text().count("<audio") == 1 + len(summary["methods"]) * 3  # query + K = 3 per row
    import soundfile as sf

    for wav in (res / "queries" / "audio").glob("*.wav"):
        y, sr = sf.read(wav)
        assert sr == 22050 and len(y) > 0.5 * sr and np.abs(y).max() > 0.01  # decoded, audible


def test_user_audio_corpus_with_bad_files(tiny_run, tmp_path):
    """A user audio folder with a truncated, an empty, an all-silent and a 44.1 kHz file: the bad
    ones are skipped with a logged reason, the filters apply, and the run completes."""
    import pandas as pd
    import soundfile as sf

    src = tiny_run / "results" / "tiny_audio" / "corpus"
    man = pd.read_csv(src / "manifest.csv", dtype=str)
    folder = tmp_path / "my_audio"
    folder.mkdir()
    rows = []
    for r in man.itertuples():
        shutil.copy(src / r.path, folder / f"{r.track_id}.wav")
        rows.append(dict(track_id=r.track_id, path=f"{r.track_id}.wav", genre=r.genre, split=r.split))
    y, sr = sf.read(folder / f"{man.track_id[0]}.wav")
    data = (folder / f"{man.track_id[0]}.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(data[: len(data) // 3])
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "silent.wav", np.zeros_like(y), sr)
    sf.write(folder / "hires.wav", np.repeat(y, 2), 44100)  # another sample rate: kept
    for name in ("truncated", "empty", "silent", "hires"):
        rows.append(dict(track_id=name, path=f"{name}.wav", genre="x", split="train"))
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    cfg = tiny_config()
    cfg["audio"]["corpus"] = {
        "kind": "audio_folder",
        "audio_folder": {"root": str(folder), "manifest": str(folder / "manifest.csv")},
        "filters": {"max_silence_share": 0.6},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    run_snakemake(tmp_path, "--cores", "2", "results/tiny_audio/evidence/audio_features.npz")
    res = tmp_path / "results" / "tiny_audio"
    kept = pd.read_csv(res / "corpus" / "manifest.csv", dtype=str)
    assert set(kept["track_id"]) == set(man["track_id"]) | {"hires"}
    log = (res / "logs" / "audio_import.log").read_text()
    assert "skipped truncated" in log and "skipped empty" in log and "filtered out silent: silence" in log
    with np.load(res / "evidence" / "audio_features.npz") as z:
        assert set(z["track_ids"]) == set(kept["track_id"])
    # the data accounting: every track left out, with the step, the reason and the measured value
    from aria.io.tables import read_dropped

    dropped = read_dropped([res / "corpus" / "dropped.csv"]).set_index("track_id")
    assert set(dropped.index) == {"truncated", "empty", "silent"}
    assert dropped.loc["truncated", "step"] == "import" and dropped.loc["truncated", "reason"].startswith("unreadable")
    assert dropped.loc["silent", "step"] == "filter" and dropped.loc["silent", "reason"] == "silence share > 0.6"
    assert dropped.loc["silent", "value"] == pytest.approx(1.0) and dropped.loc["silent", "split"] == "train"

    # a K larger than the manifest's training rows is refused before anything runs ...
    n_listed = sum(r["split"] == "train" for r in rows)
    cfg["homogeneity"] = {**cfg["homogeneity"], "ks": [3, 5, 50]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = run_snakemake(tmp_path, "-n", check=False)
    assert out.returncode != 0 and f"K = 50 exceeds the {n_listed} training tracks listed" in out.stdout + out.stderr
    # ... and one larger than the pool left after the filters stops the run before any training
    n_train = int((kept["split"] == "train").sum())
    assert n_train < n_listed
    cfg["homogeneity"] = {**cfg["homogeneity"], "ks": [3, 5, n_listed]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = run_snakemake(tmp_path, "--cores", "2", "results/tiny_audio/report.html", check=False)
    assert out.returncode != 0
    msg = (res / "logs" / "corpus" / "pool_check.log").read_text()
    want = f"K = [{n_listed}] (homogeneity.ks) exceeds the {n_train} training tracks left after the corpus filters"
    assert want in msg
    assert not (res / "corpus" / "pool.json").exists()
    assert not list(res.glob("models/**/*.pt"))  # the pool check (priority 100) ran before any training


def test_replica_agreement_matches_the_stores(tiny_run):
    """The noise diagnostic in each diagnostics JSON equals scipy's per-query correlations of the two
    replica stores; TRAK's replicas are members 0 and 1 scored alone (numpy); every model-based row of
    both reports has a replica and its verdict uses it; the embedding rows say why they have none."""
    from scipy import stats

    res = tiny_run / "results" / "tiny"
    cfg = tiny_config()
    for method in ("trak", "tracin", "logra", "unlearning"):
        doc = json.loads((res / "diagnostics" / "symbolic" / f"{method}.json").read_text())
        rep = doc["replica"]
        a_path = res / ("replicas/symbolic/trak/m0.zarr" if method == "trak" else f"scores/symbolic/{method}.zarr")
        A = open_scores(a_path)[0][:].astype(np.float64)
        B = open_scores(res / "replicas" / "symbolic" / method / "m1.zarr")[0][:].astype(np.float64)
        sp = [stats.spearmanr(A[:, j], B[:, j]).statistic for j in range(A.shape[1])]
        np.testing.assert_allclose(rep["per_query"]["spearman"], sp, atol=1e-12)
        assert rep["shared_energy"] == pytest.approx(2 * np.sum(A * B) / (np.sum(A * A) + np.sum(B * B)), abs=1e-9)
    # TRAK's replica m1 is member 1 alone at the configured damping: (Phi^T Phi + lambda I)^-1 by numpy
    f = read_features(res / "features" / "symbolic" / "m1_c2.zarr")
    lam = cfg["methods"]["trak"]["damping"]["lambda"]
    X, Xq = f["train"].astype(np.float64), f["query"].astype(np.float64)
    ref = X @ np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), Xq.T)
    B = open_scores(res / "replicas" / "symbolic" / "trak" / "m1.zarr")[0][:]
    np.testing.assert_allclose(B, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    for exp in ("tiny", "tiny_audio"):
        summary = json.loads((tiny_run / "results" / exp / "summary.json").read_text())
        for key, m in summary["methods"].items():
            if key.split("/")[0] in ("aisfx", "aisfx_aaa"):
                assert m["replica"] is None and "embedding baseline" in m["replica_note"]
            elif key.endswith(("/coarse", "/fine")):  # skipped in the tiny config
                assert m["replica"] is None and "analysis.replicas.skip" in m["replica_note"]
            else:
                assert m["replica"]["spearman"]["q50"] == pytest.approx(
                    np.median([x for x in m["replica"]["per_query"]["spearman"] if np.isfinite(x)]), abs=1e-12
                )
                if m["verdict"]["verdict"] is not None:  # the noise check comes first
                    noisy = m["replica"]["spearman"]["q50"] < 0.25
                    assert (m["verdict"]["verdict"] == "noisy") == noisy, key
        assert summary["reference_noise"]["verdict"]["verdict"] == "noisy"
    pts = json.loads((res / "summary.json").read_text())["sensitivity"]
    assert all("replica" in p["diagnostics"] and p["verdict"]["verdict"] for p in pts if p["method"] == "trak")


def test_rerun_scope_planted_queries(tiny_run):
    """queries.kind: planted (the planted-influence benchmark) replaces the generated queries: it
    re-plans the queries and everything that reads them, adds one planted job per symbolic row and
    per audio row (the plants rendered to audio), and never retrains a model, re-cuts the segments,
    re-renders or re-tokenizes the audio corpus, or embeds it again."""
    cfg = tiny_config()
    cfg["queries"]["kind"] = "planted"
    cfg["queries"]["planted"] = {"n_sources": 3, "aspects": ["full", "melody"], "ks": [1, 5]}
    jobs = dry_run_jobs(tiny_run, cfg)
    rules = [r for r, _ in jobs]
    assert "symbolic_queries" in rules and ("report", "exp=tiny") in jobs
    planted = [w for r, w in jobs if r == "planted"]
    assert sum(w.startswith("exp=tiny,") for w in planted) == len(tiny_config()["methods"]["run"])
    assert not {"train_model", "symbolic_segments", "demo_corpus", "kfac_covariance"} & set(rules)
    audio_rows = json.loads((tiny_run / "results" / "tiny_audio" / "summary.json").read_text())["methods"]
    assert "audio_queries" in rules and ("report", "exp=tiny_audio") in jobs
    assert sum(w.startswith("exp=tiny_audio,") for w in planted) == len(audio_rows)
    assert not {"audio_demo_corpus", "audio_tokenize", "audio_segments", "embed_corpus", "audio_features"} & set(rules)
