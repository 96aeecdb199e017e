"""Verdict per setting (docs/spec.md §7) on planted matrices, v1 constancy against numpy's SVD."""

import numpy as np
import pytest

from aria.evaluation.reliability import reliability, v1_constancy, verdict


def _diag(S):
    d = reliability(S)
    _, _, Vt = np.linalg.svd(S, full_matrices=False)
    return {**d, "q": S.shape[1], "v1_constancy": v1_constancy(Vt[0])}


def test_v1_constancy_is_the_cosine_with_the_uniform_direction():
    assert v1_constancy(np.ones(9) / 3) == pytest.approx(1.0)
    e = np.zeros(16)
    e[3] = -1.0
    assert v1_constancy(e) == pytest.approx(0.25)  # one query: 1/sqrt(Q)


def test_planted_settings_get_their_verdicts():
    rng = np.random.default_rng(0)
    N, Q = 400, 30
    shared = np.outer(rng.normal(size=N), np.ones(Q)) * 5 + 0.3 * rng.normal(size=(N, Q))
    assert verdict(_diag(shared))["verdict"] == "collapsed"
    noise = rng.normal(size=(N, Q))
    v = verdict(_diag(noise))
    assert v["verdict"] == "query-dependent" and "can be read" in v["sentence"]
    # a per-query constant dominates each column, but the constants differ in sign: not a shared ranking
    offset = rng.normal(size=(N, Q)) + np.where(np.arange(Q) % 2, 4.0, -4.0)
    d = _diag(offset)
    assert d["c_bar"] > 0.5 and d["rho_bar"] < 0.5 and v1_constancy(np.linalg.svd(offset)[2][0]) < 0.9
    assert verdict(d)["verdict"] == "offset-dominated"
    # high r1 on a few loud queries is not collapse
    loud = rng.normal(size=(N, Q))
    loud[:, 0] *= 40
    d = _diag(loud)
    assert d["r1"] > 0.5 and d["v1_constancy"] < 0.5 and verdict(d)["verdict"] == "query-dependent"


def test_too_few_queries_get_no_verdict_and_thresholds_come_from_config():
    rng = np.random.default_rng(1)
    S = rng.normal(size=(50, 4))
    d = _diag(S)
    assert d["r1"] + d["r2_5"] == pytest.approx(1.0)  # Q = 4: r2_5 = 1 - r1 by construction
    v = verdict(d)
    assert v["verdict"] is None and v["flag"] == "too few queries" and "1 - r1" in v["sentence"]
    assert verdict(d, thresholds={"min_queries": 3})["verdict"] is not None
    d2 = {**_diag(rng.normal(size=(200, 20))), "rho_bar": 0.3}
    assert verdict(d2, thresholds={"rho_bar": 0.25})["verdict"] == "collapsed"


# ------------------------------------------------ offsets, constant matrices, few queries (issue 28)


def _brute(S):
    """The diagnostics and their centred reading by brute-force numpy (SVD and corrcoef of S in memory)."""
    N, Q = S.shape
    sv = np.linalg.svd(S, compute_uv=False)
    mu = S.mean(axis=0)
    Sc = S - mu
    _, svc, Vtc = np.linalg.svd(Sc, full_matrices=False)
    sd = Sc.std(axis=0)
    ok = sd > 1e-12 * np.abs(S).max(axis=0).clip(1e-300)
    corr = np.zeros((Q, Q))
    if ok.sum() >= 2:
        corr[np.ix_(ok, ok)] = np.corrcoef(S[:, ok].T)
    iu = np.triu_indices(Q, 1)
    return {
        "r1": sv[0] ** 2 / (sv**2).sum(),
        "c_bar": np.mean([(c.sum() ** 2 / (N * (c**2).sum())) if (c**2).sum() else 0.0 for c in S.T]),
        "rho_bar": np.abs(corr[iu]).mean() if ok.sum() >= 2 else np.nan,
        "r1_centred": svc[0] ** 2 / (svc**2).sum() if ok.any() else np.nan,
        "v1_constancy_centred": abs(Vtc[0].sum()) / np.sqrt(Q) if ok.any() else np.nan,
        "offset_share": N * (mu**2).sum() / (S**2).sum(),
        "n_constant": int((~ok).sum()),
        "q": Q,
        "n": N,
    }


def _stream(S):
    from aria.evaluation.reliability import centred_diagnostics, gram_stats, reliability_from_stats

    # several chunks: the merged centred Gram, not one product; float64 products, held to round-off
    st = gram_stats(S, row_chunk=37, precision="float64")
    return {**reliability_from_stats(st), **centred_diagnostics(st), "q": S.shape[1], "n": S.shape[0]}


def _planted(seed=0):
    rng = np.random.default_rng(seed)
    return {
        # what the user saw: i.i.d. integers, rho_bar ~ 0.08, c_bar ~ 0.7, r1 ~ 0.73 from the common offset
        "iid_int": rng.integers(0, 10, size=(100, 20)).astype(float),
        "rank1": np.outer(rng.normal(size=300) + 2.0, np.ones(20)) + 0.05 * rng.normal(size=(300, 20)),
        "constant": np.full((50, 12), 0.3),
        "offset": rng.normal(size=(300, 20)) + 10.0 * rng.normal(size=20),
    }


def test_centred_diagnostics_agree_with_brute_force():
    for name, S in _planted().items():
        got, want = _stream(S), _brute(S)
        for k, v in want.items():
            if isinstance(v, float) and np.isnan(v):
                assert np.isnan(got[k]), (name, k)
            else:  # float64 Gram and eigh against SVD: round-off ~1e-12 relative
                assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), (name, k)
        # Weyl: the leading axis carries at most the offsets plus the centred leading axis
        if not np.isnan(want["r1_centred"]):
            m = want["offset_share"]
            assert want["r1"] <= m + (1 - m) * want["r1_centred"] + 1e-12, name


def test_iid_integer_matrix_reads_as_offset_not_collapse():
    d = _brute(_planted()["iid_int"])
    # the user's numbers: r1 high and v1 near-uniform, but only because every query has the same mean
    assert d["r1"] > 0.6 and d["c_bar"] > 0.6 and d["rho_bar"] < 0.15 and d["r1_centred"] < 0.2
    _, _, Vt = np.linalg.svd(_planted()["iid_int"], full_matrices=False)
    assert v1_constancy(Vt[0]) > 0.99  # the old rule (r1 >= 0.5 with constant v1) called this collapse
    v = verdict(d)
    assert v["verdict"] == "offset-dominated"
    assert "per-query offsets'" in v["sentence"] and "collapse" not in v["sentence"].lower()
    assert verdict(_brute(_planted()["offset"]))["verdict"] == "offset-dominated"
    # a shared ranking on top of an offset is still collapse: it survives removing the means
    assert verdict(_brute(_planted()["rank1"]))["verdict"] == "collapsed"


def test_constant_matrix_has_undefined_rho_bar_and_its_own_verdict():
    S = _planted()["constant"]
    assert np.isnan(reliability(S)["rho_bar"])
    v = verdict(_stream(S))
    assert v["verdict"] == "constant" and "undefined" in v["sentence"]
    # one varying column among constants: still no defined pair
    S2 = S.copy()
    S2[:, 0] = np.arange(50.0)
    assert np.isnan(reliability(S2)["rho_bar"])
    S2[:, 1] = np.arange(50.0) ** 2  # two varying columns: defined, constant pairs count as 0 (10 of 66 pairs)
    want = abs(np.corrcoef(S2[:, 0], S2[:, 1])[0, 1]) / 66
    assert reliability(S2)["rho_bar"] == pytest.approx(want, rel=1e-12)


def test_few_queries_do_not_hide_a_collapse_beyond_doubt():
    rng = np.random.default_rng(3)
    N = 500
    # the audio baselines: cosine similarities ~ 1 (r1 = c_bar = 1.000) whose small variation is one ranking
    shared = 0.99 + 0.005 * (np.outer(rng.normal(size=N), np.ones(3)) + 0.1 * rng.normal(size=(N, 3)))
    d = _brute(shared)
    assert d["r1"] > 0.999 and d["c_bar"] > 0.999 and d["rho_bar"] > 0.95
    v = verdict(d)
    assert v["verdict"] == "collapsed" and v["flag"] == "few queries"
    # the same offsets with independent rankings: no verdict, and the high r1 is named as the offsets'
    iid = 0.99 + 0.005 * rng.normal(size=(N, 3))
    v = verdict(_brute(iid))
    assert v["verdict"] is None and v["flag"] == "too few queries" and "per-query offsets'" in v["sentence"]


def test_centred_r1_excess_equals_a_common_correlation():
    """For Q columns of equal variance and common correlation rho, (Q r1c - 1)/(Q - 1) = rho, the rule's scale."""
    rng = np.random.default_rng(4)
    N, Q = 200, 4
    X = rng.normal(size=(N, Q + 1))
    X -= X.mean(axis=0)
    B, _ = np.linalg.qr(X)  # orthonormal, centred columns (centring commutes with the span)
    z, E = B[:, 0], B[:, 1:]
    for rho in (0.3, 0.85, 0.95):
        S = 7.0 + np.sqrt(rho) * z[:, None] + np.sqrt(1 - rho) * E  # exact common correlation rho
        d = _brute(S)
        assert d["rho_bar"] == pytest.approx(rho, abs=1e-9)
        assert (Q * d["r1_centred"] - 1) / (Q - 1) == pytest.approx(rho, abs=1e-9)
        collapsed = verdict(d)["verdict"] == "collapsed"
        assert collapsed == (rho >= 0.9)  # Q = 4 < min_queries: only the sure rule can call it


def test_diagnose_prints_undefined_for_a_constant_matrix(tmp_path, capsys):
    import json

    from aria.cli import main

    np.save(tmp_path / "c.npy", np.full((30, 12), 2.5))
    assert main(["diagnose", str(tmp_path / "c.npy")]) == 0
    out = capsys.readouterr().out
    assert "0.0000" not in out.split("rho_bar")[1].splitlines()[0] and "undefined" in out
    assert "Constant" in out and "query-independent collapse" not in out
    assert main(["diagnose", str(tmp_path / "c.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rho_bar"] is None
    np.save(tmp_path / "i.npy", _planted()["iid_int"])
    assert main(["diagnose", str(tmp_path / "i.npy")]) == 0
    out = capsys.readouterr().out
    assert "Offset-dominated" in out and "collapse (" not in out


def test_config_defaults_are_the_verdicts():
    """aria.config keeps a copy of the thresholds (it must not import numpy code at workflow start)."""
    from aria.config import ANALYSIS_DEFAULTS
    from aria.evaluation.reliability import VERDICT_DEFAULTS

    assert ANALYSIS_DEFAULTS["verdict"] == VERDICT_DEFAULTS


def test_diagnose_with_a_replica_reads_noise_as_noisy(tmp_path, capsys):
    """`aria diagnose A --replica B`: the JSON's agreement equals scipy's; two independent Gaussian
    matrices (the best r1 and rho_bar there are) read noisy, a shared signal does not."""
    import json

    from scipy import stats

    from aria.cli import main

    rng = np.random.default_rng(7)
    A, B = rng.standard_normal((400, 12)), rng.standard_normal((400, 12))
    np.save(tmp_path / "a.npy", A)
    np.save(tmp_path / "b.npy", B)
    assert main(["diagnose", str(tmp_path / "a.npy"), "--replica", str(tmp_path / "b.npy"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["replica"]
    sp = [stats.spearmanr(A[:, j], B[:, j]).statistic for j in range(12)]
    np.testing.assert_allclose(rep["per_query"]["spearman"], sp, atol=1e-12)
    assert main(["diagnose", str(tmp_path / "a.npy"), "--replica", str(tmp_path / "b.npy")]) == 0
    assert "reading: Noisy" in capsys.readouterr().out
    np.save(tmp_path / "b2.npy", A + 0.5 * B)  # shares A: Spearman ~ 1 / sqrt(1.25) = 0.89
    assert main(["diagnose", str(tmp_path / "a.npy"), "--replica", str(tmp_path / "b2.npy")]) == 0
    out = capsys.readouterr().out
    assert "reading: Query-dependent" in out and "survive retraining" in out
    np.save(tmp_path / "c.npy", A[:, :5])
    assert main(["diagnose", str(tmp_path / "a.npy"), "--replica", str(tmp_path / "c.npy")]) != 0
    assert "c.npy: replica has shape (400, 5)" in capsys.readouterr().err
