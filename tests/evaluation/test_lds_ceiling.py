"""An honest LDS ground truth (issue 29): the seed-noise ceiling of the targets on a synthetic
datamodel with known noise, the partial LDS against an independent computation, the reference
matrices, the validation's Kendall taus against scipy, and the "not testable" reading."""

import numpy as np
import pytest
from scipy import stats

from aria.evaluation.lds import (
    VERDICT_ORDINAL,
    lds_base_seed,
    lds_controls,
    lds_per_query,
    lds_summary,
    order_agreement,
    partial_lds_per_query,
    reference_matrices,
    retrain_seeds,
    seed_noise_ceiling,
    subset_masks,
    validation_reading,
)


def test_seeds_are_per_subset_and_never_an_ensemble_members():
    base = lds_base_seed(100)
    assert base == 1100
    seeds = [s for m in range(64) for s in retrain_seeds(base, m, 2)]
    assert seeds == list(range(1100, 1100 + 128))  # base + m * R + r: all distinct, from the config
    assert not set(seeds) & {100 + m for m in range(1000)}  # ensemble member m: seeds.train + m
    assert retrain_seeds(base, 7, 3) == [1121, 1122, 1123]


def _datamodel(M=200, R=2, Q=60, N=100, s_w=0.1, sigma=0.25, common=0.0, seed=0):
    """targets[m, r, q] = masks[m] @ w_q (+ a common subset effect) + N(0, sigma^2) seed noise."""
    rng = np.random.default_rng(seed)
    masks = subset_masks(N, M, alpha=0.5, random_state=seed)
    true = masks.astype(float) @ rng.normal(0, s_w, size=(N, Q))
    true += common * rng.normal(size=(M, 1))
    runs = true[:, None, :] + rng.normal(0, sigma, size=(M, R, Q))
    return masks, true, runs


@pytest.mark.parametrize("R", [2, 3])
def test_ceiling_recovers_the_known_seed_noise_and_subset_effect(R):
    M, Q, sigma = 200, 60, 0.25
    _, true, runs = _datamodel(M=M, R=R, Q=Q, sigma=sigma)
    c = seed_noise_ceiling(runs)
    assert c["available"] and c["runs"] == R and c["n_subsets"] == M
    # Known values: the seed noise sd is sigma; the subset effect's sd is that of the noiseless
    # targets over these M subsets, v_t = mean over q of var_m(true_q) (ddof 1); the estimator
    # var_m(run mean) - seed_var / R is unbiased for exactly that (the noise is independent of it).
    v_t = true.var(0, ddof=1).mean()
    s2 = sigma**2
    # Tolerances from the sample sizes. seed_var pools Q * M * (R - 1) squared deviations of
    # normal noise: relative variance 2 / df, so sd(seed_sd) = sigma * sqrt(1 / (2 df)) (delta
    # method). Per query, var_m(true + e_bar) - v_t - seed_var / R = 2 cov_m(true, e_bar)
    # + (var_m(e_bar) - s2 / R) - (seed_var - s2) / R, with variances 4 v_t (s2 / R) / (M - 1),
    # 2 (s2 / R)^2 / (M - 1) and 2 s2^2 / (R^2 M (R - 1)); the Q queries are independent
    # (independent w_q and noise), so the mean's variance is their sum / Q, and
    # sd(subset_sd) = sd(subset_var) / (2 sqrt(v_t)). The ratio's relative sd combines the two
    # relative sds. Each check allows 5 of these standard errors.
    df = Q * M * (R - 1)
    se_seed = sigma * np.sqrt(1 / (2 * df))
    var_sub = (4 * v_t * s2 / R / (M - 1) + 2 * (s2 / R) ** 2 / (M - 1) + 2 * s2**2 / (R**2 * M * (R - 1))) / Q
    se_sub = np.sqrt(var_sub) / (2 * np.sqrt(v_t))
    assert c["seed_sd"] == pytest.approx(sigma, abs=5 * se_seed)
    assert c["subset_sd"] == pytest.approx(np.sqrt(v_t), abs=5 * se_sub)
    ratio = np.sqrt(v_t) / sigma
    rel = np.hypot(se_sub / np.sqrt(v_t), se_seed / sigma)
    assert c["ratio"] == pytest.approx(ratio, rel=5 * rel)
    # the targets LDS reads are R-run means: their seed noise is sigma / sqrt(R)
    assert c["target_noise_sd"] == pytest.approx(c["seed_sd"] / np.sqrt(R), rel=1e-12)
    assert c["target_ratio"] == pytest.approx(c["ratio"] * np.sqrt(R), rel=1e-12)
    # the other numbers against independent computations on the same runs
    ref_agree = np.mean([stats.spearmanr(runs[:, 0, q], runs[:, 1, q]).statistic for q in range(Q)])
    assert c["run_agreement"] == pytest.approx(ref_agree, abs=1e-12)
    rho = np.array(
        [
            np.mean([np.corrcoef(runs[:, a, q], runs[:, b, q])[0, 1] for a in range(R) for b in range(a + 1, R)])
            for q in range(Q)
        ]
    )
    rel_R = R * rho / (1 + (R - 1) * rho)
    assert c["between_run_r"] == pytest.approx(rho.mean(), abs=1e-12)
    assert c["split_half"] == pytest.approx(rel_R.mean(), abs=1e-12)
    assert c["lds_ceiling"] == pytest.approx(np.sqrt(np.clip(rel_R, 0, None)).mean(), abs=1e-12)
    # ... and the ceiling against the known reliability of the R-run mean, v_t / (v_t + s2 / R)
    assert c["lds_ceiling"] == pytest.approx(np.sqrt(v_t / (v_t + s2 / R)), abs=0.05)
    assert len(c["per_query"]["seed_sd"]) == Q


def test_common_share_matches_the_direct_formula():
    _, true, runs = _datamodel(R=2, common=0.5, seed=3)
    c = seed_noise_ceiling(runs)
    t = runs.mean(1)
    centred = t - t.mean(0)
    common = centred.mean(1, keepdims=True)
    ref = np.sum(np.broadcast_to(common, centred.shape) ** 2) / np.sum(centred**2)
    assert c["common_share"] == pytest.approx(ref, rel=1e-12)
    assert 0.3 < c["common_share"] < 0.7  # var(common) 0.25 against a per-query 0.25 + 0.25 + noise


def test_one_run_has_no_ceiling_and_is_not_testable():
    _, _, runs = _datamodel(R=1, M=20, Q=5)
    c = seed_noise_ceiling(runs)
    assert c == {"available": False, "reason": c["reason"], "runs": 1, "n_subsets": 20}
    assert "lds.runs >= 2" in c["reason"]


# --------------------------------------------------------------------------- partial LDS
def _partial_via_precision(x, y, Z):
    """Partial Spearman correlation from the inverse of the rank correlation matrix (an
    independent route to the same number as regressing out the covariates)."""
    ranks = np.column_stack([stats.rankdata(v) for v in (x, y, *Z.T)])
    P = np.linalg.inv(np.corrcoef(ranks, rowvar=False))
    return -P[0, 1] / np.sqrt(P[0, 0] * P[1, 1])


def test_partial_lds_against_independent_computations():
    rng = np.random.default_rng(4)
    M, Q = 40, 6
    Z = rng.normal(size=(M, 2))
    G = rng.normal(size=(M, Q)) + Z[:, [0]]
    T = rng.normal(size=(M, Q)) + Z[:, [0]] - Z[:, [1]] + 0.5 * G
    got = partial_lds_per_query(G, T, Z)
    ref = [_partial_via_precision(G[:, q], T[:, q], Z) for q in range(Q)]
    np.testing.assert_allclose(got, ref, atol=1e-12)
    # one covariate: the textbook formula on scipy's Spearman correlations
    one = partial_lds_per_query(G, T, Z[:, :1])
    for q in range(Q):
        rxy = stats.spearmanr(G[:, q], T[:, q]).statistic
        rxz = stats.spearmanr(G[:, q], Z[:, 0]).statistic
        ryz = stats.spearmanr(T[:, q], Z[:, 0]).statistic
        assert one[q] == pytest.approx((rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2)), abs=1e-12)
    # no covariates: the plain LDS
    np.testing.assert_allclose(partial_lds_per_query(G, T, np.empty((M, 0))), lds_per_query(G, T), atol=1e-12)
    # a prediction that is a function of a covariate has no partial correlation; too few subsets: NaN
    assert np.isnan(partial_lds_per_query(Z[:, :1] ** 3, T[:, :1], Z))[0]
    assert np.isnan(partial_lds_per_query(G[:5], T[:5], Z[:5])).all()


def test_controls_are_the_common_component_and_the_genre_mix():
    rng = np.random.default_rng(5)
    masks = subset_masks(30, 12, alpha=0.5, random_state=1)
    T = rng.normal(size=(12, 4))
    genre = np.array(["b", "a", "c"] * 10)
    c = lds_controls(masks, T, genre)
    assert c["names"] == ["common component", "share of b", "share of c"] and c["note"] is None
    np.testing.assert_allclose(c["covariates"][:, 0], T.mean(1))
    for m in range(12):
        assert c["covariates"][m, 1] == pytest.approx(np.mean(genre[masks[m]] == "b"))
        assert c["covariates"][m, 2] == pytest.approx(np.mean(genre[masks[m]] == "c"))
    assert lds_controls(masks, T, None)["covariates"].shape == (12, 1)
    assert "one collection" in lds_controls(masks, T, np.array(["a"] * 30))["note"]
    res = lds_summary(masks @ rng.normal(size=(30, 4)), T, n_boot=100, covariates=c["covariates"])
    ref = partial_lds_per_query(masks @ rng.normal(size=(30, 4)), T, c["covariates"])  # other G
    assert np.isfinite(res["partial_lds"]) and len(res["partial_per_query"]) == 4 and np.isfinite(ref).all()


# --------------------------------------------------------------------------- references
def test_reference_matrices():
    seg = np.array(["folk", "folk", "chorale", "unknown", "chorale"])
    qry = np.array(["chorale", "folk", "folk", "jazz"])
    mats, skipped = reference_matrices(5, 4, random_state=3, segment_collection=seg, query_collection=qry)
    assert not skipped and set(mats) == {"gaussian", "query_independent", "same_collection", "collection_prior"}
    np.testing.assert_array_equal(
        mats["same_collection"], [[0, 1, 1, 0], [0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    )
    np.testing.assert_allclose(mats["collection_prior"][:, 0], [0.5, 0.5, 0.25, 0.0, 0.25])
    assert (mats["collection_prior"] == mats["collection_prior"][:, :1]).all()  # query-independent
    assert (mats["query_independent"] == mats["query_independent"][:, :1]).all()
    assert np.std(mats["query_independent"][:, 0]) > 0
    again, _ = reference_matrices(5, 4, random_state=3)
    np.testing.assert_array_equal(again["gaussian"], mats["gaussian"])
    assert not np.array_equal(reference_matrices(5, 4, random_state=4)[0]["gaussian"], mats["gaussian"])
    _, skipped = reference_matrices(5, 4, random_state=3)
    assert set(skipped) == {"same_collection", "collection_prior"} and "no collection" in skipped["same_collection"]
    _, skipped = reference_matrices(5, 4, random_state=3, segment_collection=["a"] * 5, query_collection=qry)
    assert "fewer than two" in skipped["collection_prior"]
    # queries spread evenly over the collections: the prior is constant and is skipped, not scored
    mats, skipped = reference_matrices(5, 4, random_state=3, segment_collection=seg, query_collection=qry[[0, 0, 1, 1]])
    assert "same_collection" in mats and set(skipped) == {"collection_prior"}


# --------------------------------------------------------------------------- validation
def _flat():
    return {
        "a": {"r1": 0.1, "rho_bar": 0.3, "agreement": 0.6, "verdict": VERDICT_ORDINAL["query-dependent"]},
        "b": {"r1": 0.4, "rho_bar": 0.2, "agreement": 0.2, "verdict": VERDICT_ORDINAL["noisy"]},
        "c": {"r1": 0.3, "rho_bar": 0.5, "agreement": None, "verdict": VERDICT_ORDINAL["collapsed"]},
        "d": {"r1": 0.2, "rho_bar": 0.1, "agreement": 0.4, "verdict": VERDICT_ORDINAL["offset-dominated"]},
    }


def test_order_agreement_with_higher_is_better_keys_ties_and_left_out_methods():
    flat, lds = _flat(), {"a": 0.5, "b": 0.1, "c": 0.2, "d": 0.3}
    keys = ("r1", "rho_bar", "agreement", "verdict")
    res = order_agreement(flat, lds, keys=keys, higher_is_better=("agreement", "verdict"), between=keys)
    names = sorted(lds)
    r1 = res["by_diagnostic"]["r1"]
    assert r1["kendall_tau"] == pytest.approx(
        stats.kendalltau([flat[n]["r1"] for n in names], [-lds[n] for n in names]).statistic
    )
    ag = res["by_diagnostic"]["agreement"]
    have = ["a", "b", "d"]
    assert ag["left_out"] == ["c"] and ag["n"] == 3 and ag["order"] == ["a", "d", "b"] and ag["identical"]
    assert ag["kendall_tau"] == pytest.approx(1.0)
    v = res["by_diagnostic"]["verdict"]  # b and c tie at 0: tau-b
    ref = stats.kendalltau([flat[n]["verdict"] for n in names], [lds[n] for n in names], variant="b").statistic
    assert v["kendall_tau"] == pytest.approx(ref) and v["higher_is_better"]
    # between measures: orders best first, i.e. -r1 and -rho_bar against agreement and the verdict
    bt = res["between"]
    assert bt["r1"]["agreement"] == pytest.approx(
        stats.kendalltau([-flat[n]["r1"] for n in have], [flat[n]["agreement"] for n in have]).statistic
    )
    assert bt["r1"]["rho_bar"] == pytest.approx(
        stats.kendalltau([flat[n]["r1"] for n in names], [flat[n]["rho_bar"] for n in names]).statistic
    )
    assert bt["verdict"]["agreement"] == bt["agreement"]["verdict"] and bt["r1"]["r1"] == 1.0


def _agree_stab():
    flat, lds = _flat(), {"a": 0.5, "b": 0.1, "c": 0.2, "d": 0.3}
    agree = order_agreement(
        flat, lds, keys=("r1", "rho_bar", "agreement", "verdict"), higher_is_better=("agreement", "verdict")
    )
    stab = {"order_first_half": ["a"], "order_second_half": ["a"], "kendall_tau": 1.0, "identical": True}
    return agree, stab


def test_reading_says_not_testable_below_the_ceiling_and_reads_as_before_above_it():
    agree, stab = _agree_stab()
    refs = {"gaussian": {"lds": -0.01}, "same_collection": {"lds": 0.31}}
    low = seed_noise_ceiling(_datamodel(R=2, s_w=0.02, sigma=0.25)[2])
    assert low["ratio"] < 2
    text = validation_reading(agree, stab, ceiling=low, references=refs)
    assert "Not testable on this setting" in text and "claim holds here" not in text
    assert "would have picked a different method" not in text
    assert "a Gaussian random matrix -0.010" in text and f"{low['ratio']:.2f}" in text
    one = validation_reading(agree, stab, ceiling=seed_noise_ceiling(_datamodel(R=1, M=20, Q=5)[2]))
    assert "Not testable on this setting" in one and "lds.runs >= 2" in one
    assert "'" not in text + one  # the report's HTML escapes quotes; the readings are quoted verbatim in tests
    high = seed_noise_ceiling(_datamodel(R=2, s_w=0.2, sigma=0.1)[2])
    assert high["ratio"] >= 2
    text = validation_reading(agree, stab, ceiling=high, references=refs)
    assert "Not testable" not in text and "would have picked a different method" in text
    assert f"no method can reach an LDS above about {high['lds_ceiling']:.2f}" in text
    assert "left out: c" in text  # no replica
    how = validation_reading(agree, stab, ceiling={**high, "recipe": "steps", "init": "shared"})
    assert "Targets (recipe steps; every retraining starts from the initial weights of member 0" in how
    assert "'" not in how
    plain = validation_reading(agree, stab)  # no ceiling given: today's reading
    assert "Not testable" not in plain and "Targets:" not in plain and "different method" in plain


def report_diag(r1, rho, q50):
    """A diagnostics document for compose(): r1, rho_bar, and a replica with median Spearman q50 (None: no replica)."""
    rep = None if q50 is None else {"spearman": {"mean": q50, "q10": 0, "q50": q50, "q90": 1}, "shared_energy": 0.5}
    return {
        "r1": r1,
        "r2_5": 0.2,
        "c_bar": 0.01,
        "rho_bar": rho,
        "n": 50,
        "q": 10,
        "energy": list(np.linspace(r1, 0.001, 10)),
        "replica": rep,
    }


def report_hom(mu):
    """A homogeneity document for compose(): one channel, one query, K = 5."""
    summ = {"melody": {"mu_z": mu, "pos": 0.5, "sig": 0.1}}
    return {"channels": ["melody"], "query_ids": ["q1"], "by_k": {"5": {"summary": summ, "top_ids": [["a"]]}}}


def test_compose_validation_tables_and_summary():
    """compose(): the validation table has the replica agreement and the verdict with their taus
    against LDS and each other; the reference rows sit in their own table, never the main one."""
    from aria.report import compose

    def ldsdoc(v):
        return {"lds": v, "ci": [v - 0.05, v + 0.05], "halves": [v, v], "n_subsets": 8, "partial_lds": v / 2}

    keys = ["trak", "tracin", "gradcos"]
    high = seed_noise_ceiling(_datamodel(R=2, s_w=0.2, sigma=0.1)[2])
    refdoc = {
        "stage": "symbolic",
        "ceiling": high,
        "testable": True,
        "references": {"gaussian": ldsdoc(0.01)},
        "skipped": {"same_collection": "no labels", "collection_prior": "no labels"},
    }
    html, md, summary = compose(
        keys,
        [report_diag(0.1, 0.1, 0.5), report_diag(0.4, 0.3, None), report_diag(0.2, 0.2, 0.3)],
        [report_hom(1.0), report_hom(0.5), report_hom(0.2)],
        experiment="t",
        main_k=5,
        lds={"trak": ldsdoc(0.4), "tracin": ldsdoc(0.1), "gradcos": ldsdoc(0.2)},
        lds_references={"symbolic": refdoc},
    )
    val = summary["validation"]["symbolic"]
    assert val["testable"] and val["references"]["gaussian"]["lds"] == 0.01
    assert val["by_diagnostic"]["agreement"]["left_out"] == ["tracin"]
    assert set(val["between"]) == {"r1", "rho_bar", "agreement", "verdict"}
    assert val["partial_lds"] == {"trak": 0.2, "tracin": 0.05, "gradcos": 0.1}
    assert "| Diagnostic | Kendall τ vs LDS order | Same order | τ vs r₁ |" in md
    assert "reference: a Gaussian random matrix" in md and "skipped: no labels" in md
    main = md.split("\n## ")[0]
    assert "reference:" not in main
    assert val["reading"] in html.replace("&gt;", ">")


def test_testability_reads_the_noise_left_in_the_run_means():
    """Hand-made ceilings: one run's ratio 1.7 with R = 2 leaves targets at 1.7 * sqrt(2) = 2.40 times
    their noise (testable); 1.2 with R = 2 gives 1.70 (not testable), and (2 / 1.2)^2 = 2.78, so 3 runs
    per subset would reach 2; R = 1 has no ceiling at all."""
    from aria.evaluation.lds import runs_needed, testability

    base = {"available": True, "subset_sd": 0.012, "seed_sd": 0.007}
    ok, why = testability({**base, "runs": 2, "ratio": 1.7, "target_ratio": 1.7 * np.sqrt(2)})
    assert ok and why == ""
    low = {**base, "runs": 2, "ratio": 1.2, "target_ratio": 1.2 * np.sqrt(2)}
    ok, why = testability(low)
    assert not ok and "only 1.70 times the seed noise of the 2-run mean" in why
    assert "ratio 1.20 for one run" in why and "about 3 runs per subset would reach 2" in why
    assert runs_needed(low) == 3 and runs_needed({"ratio": 2.0}) == 1 and runs_needed({"ratio": 0.0}) is None
    assert runs_needed({"ratio": 0.4}) == 25  # the fresh-init demo: (2 / 0.4)^2
    ok, why = testability({"available": False, "reason": "1 training run per subset", "runs": 1})
    assert not ok and why == "1 training run per subset"
