"""Verdict per setting (SPEC §7) on planted matrices, v1 constancy against numpy's SVD."""

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
