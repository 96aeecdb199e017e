"""The KFAC factor file between the covariance job and the factored projection (aria.io.layouts)."""

import numpy as np
import pytest

from aria.attribution.unlearning import mask_sides
from aria.io.layouts import read_kfac, write_kfac


def test_kfac_round_trip_keeps_layers_with_dots_and_bars(tmp_path):
    rng = np.random.default_rng(0)
    cov = {
        "blocks.0.qkv": {"A": rng.standard_normal((3, 3)), "G": rng.standard_normal((5, 5))},
        "head": {"A": rng.standard_normal((2, 2))},
    }
    write_kfac(tmp_path / "k.npz", cov)
    got = read_kfac(tmp_path / "k.npz")
    assert set(got) == set(cov)
    for n, fs in cov.items():
        assert set(got[n]) == set(fs)
        for f, v in fs.items():
            np.testing.assert_array_equal(got[n][f], v)


@pytest.mark.parametrize(
    "strategy, sides",
    # the unlearning paper's definitions: M_U masks the unlearning step's loss, M_L the measured loss
    [("none", (False, False)), ("both", (True, True)), ("mixed", (True, False))],
)
def test_mask_strategies(strategy, sides):
    assert mask_sides(strategy) == sides


def test_unknown_mask_strategy_is_named():
    with pytest.raises(ValueError, match="'half'"):
        mask_sides("half")
