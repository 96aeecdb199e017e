"""Damping of TRAK, LoGra and FactGraSS (aria.attribution.linalg.damping_lambda) against hand computations."""

import numpy as np
import pytest

from aria.attribution import trak
from aria.attribution.linalg import damping_lambda, layerwise_influence_operators


def test_relative_damping_is_alpha_times_the_mean_eigenvalue():
    K = np.diag([1.0, 2.0, 9.0])  # mean eigenvalue 4 by hand
    assert damping_lambda({"rule": "relative", "alpha": 0.5}, K) == pytest.approx(2.0)
    assert damping_lambda({"rule": "absolute", "lambda": 0.01}, K) == 0.01
    with pytest.raises(ValueError, match="alpha > 0"):
        damping_lambda({"rule": "relative"}, K)
    with pytest.raises(ValueError, match="rule"):
        damping_lambda({"rule": "scaled", "alpha": 1}, K)


def test_trak_operator_uses_the_relative_lambda():
    rng = np.random.default_rng(0)
    Phi = rng.standard_normal((40, 5))
    phi_q = rng.standard_normal((3, 5))
    K = Phi.T @ Phi
    lam = 10 * np.trace(K) / 5  # alpha = 10: by hand, from the trace
    want = np.linalg.solve(K + lam * np.eye(5), phi_q.T)
    got = trak.query_operator(Phi, phi_q, damping={"rule": "relative", "alpha": 10})
    np.testing.assert_allclose(got, want, rtol=1e-10)
    rows, ops = trak.operators([{"train": Phi, "query": phi_q}], {"damping": {"rule": "absolute", "lambda": 0.3}})
    np.testing.assert_allclose(ops[0], np.linalg.solve(K + 0.3 * np.eye(5), phi_q.T), rtol=1e-10)


def test_lambda_below_the_smallest_eigenvalue_warns(caplog):
    rng = np.random.default_rng(1)
    Phi = rng.standard_normal((200, 4)) * 3  # eigenvalues of Phi^T Phi ~ 1800, far above 0.01
    with caplog.at_level("WARNING", logger="aria.attribution.trak"):
        trak.query_operator(Phi, Phi[:2], damping={"rule": "absolute", "lambda": 0.01})
    assert "below the smallest eigenvalue" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="aria.attribution.trak"):
        trak.query_operator(Phi, Phi[:2], damping={"rule": "relative", "alpha": 1})
    assert "below the smallest eigenvalue" not in caplog.text


def test_layerwise_damping_per_layer_block():
    rng = np.random.default_rng(2)
    N = 30
    X = rng.standard_normal((N, 6))
    Xq = rng.standard_normal((2, 6))
    layers = [{"start": 0, "stop": 2}, {"start": 2, "stop": 6}]
    rows, ops = layerwise_influence_operators(X, Xq, layers, damping={"rule": "relative", "alpha": 0.1})
    for sl, op in zip(layers, ops):
        P = X[:, sl["start"] : sl["stop"]]
        F = P.T @ P / N
        lam = 0.1 * np.trace(F) / F.shape[0]
        np.testing.assert_allclose(op, np.linalg.solve(F + lam * np.eye(len(F)), Xq[:, sl["start"] : sl["stop"]].T))
