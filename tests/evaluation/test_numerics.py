"""τ's round-off against its spread (aria.evaluation.numerics), against brute-force numpy."""

import numpy as np
import pytest

from aria.evaluation.numerics import ERROR_LIMIT, UNIT_ROUNDOFF, score_numerics


def test_score_numerics_by_brute_force():
    rng = np.random.default_rng(0)
    S = rng.normal(size=(40, 5)) * np.array([1.0, 2.0, 0.5, 3.0, 1.5])  # columns of different spread
    main = S[:, :2].copy()
    e = rng.normal(scale=1e-3, size=main.shape)
    spread = np.sqrt(sum(np.std(S[:, j]) ** 2 for j in range(5)) / 5)  # RMS of per-query sds (ddof 0)
    err32 = np.sqrt(sum(x * x for x in e.ravel()) / e.size)
    e_mixed = rng.normal(scale=1e-5, size=main.shape)
    checks = {"float64": main, "float32": main + e, "mixed": main + e_mixed}
    err_mixed = np.sqrt(sum(x * x for x in e_mixed.ravel()) / e.size)
    for precision in ("float64", "float32", "mixed"):
        n = score_numerics(S, checks, precision=precision)
        assert n["spread"] == pytest.approx(spread, rel=1e-12)
        assert n["float32_error"] == pytest.approx(err32, rel=1e-12) and n["n_checked"] == 2
        want = {"float64": err32 * 2.0**-29, "float32": err32, "mixed": err_mixed}[precision]  # u64/u32 = 2^-29
        assert n["error"] == pytest.approx(want, rel=1e-12)
        assert n["ratio"] == pytest.approx(want / spread) and n["float32_ratio"] == pytest.approx(err32 / spread)
        assert n["ok"] == (want / spread <= ERROR_LIMIT)
    assert UNIT_ROUNDOFF["float64"] / UNIT_ROUNDOFF["float32"] == 2.0**-29
    # float32 round-off of 2% of the spread: not ok in float32, ok in float64
    big = {"float64": main, "float32": main + 0.02 * spread}
    assert not score_numerics(S, big, precision="float32")["ok"]
    assert score_numerics(S, big, precision="float64")["ok"]


def test_score_numerics_edge_cases():
    S = np.ones((6, 3))
    n = score_numerics(S, {"float64": S[:, :1], "float32": S[:, :1] + 1e-9}, precision="float64")
    assert n["spread"] == 0 and n["ratio"] is None and n["ok"] is False  # constant τ, nonzero round-off
    n = score_numerics(S, {"float64": np.zeros((6, 0)), "float32": np.zeros((6, 0))}, precision="float64")
    assert n["n_checked"] == 0 and n["error"] is None and n["ok"] is None
    with pytest.raises(ValueError, match="checks of shapes"):
        score_numerics(S, {"float64": S[:, :1], "float32": S[:, :2]}, precision="float64")
