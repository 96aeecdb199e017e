"""Track-level matrix (SPEC §3) against scipy/pandas brute force on the full matrix."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata, zscore

from aria.attribution.tracklevel import track_index, track_level
from aria.io.stores import ScoreWriter, open_scores


def _case(seed=0, n=53, q=7):
    rng = np.random.default_rng(seed)
    S = rng.standard_t(3, size=(n, q)) + 1e4 * rng.normal(size=q)  # heavy tails, big offsets
    S[::5, 2] = S[0, 2]  # ties in one column
    tracks = np.array([f"t{i}" for i in rng.integers(0, 9, n)])
    return S, tracks


def _reference(S, tracks, normalize):
    if normalize == "zscore":
        Z = zscore(S, axis=0, ddof=0)
    elif normalize == "rank":
        Z = rankdata(S, axis=0, method="average")
    else:
        Z = S
    df = pd.DataFrame(Z)
    df["t"] = tracks
    g = df.groupby("t", sort=False).mean()
    return g.index.to_numpy(), g.to_numpy()


@pytest.mark.parametrize("normalize", ["zscore", "rank", "none"])
@pytest.mark.parametrize("row_chunk", [None, 4, 50])
def test_matches_brute_force(normalize, row_chunk):
    S, tracks = _case()
    ids, Sb = track_level(S, tracks, normalize=normalize, row_chunk=row_chunk, max_bytes=8 * 53 * 3)
    ref_ids, ref = _reference(S, tracks, normalize)
    assert list(ids) == list(ref_ids)
    np.testing.assert_allclose(Sb, ref, rtol=1e-9, atol=1e-9)


def test_zarr_store_input(tmp_path):
    S, tracks = _case(1, n=40, q=3)
    with ScoreWriter(tmp_path / "s.zarr", [f"r{i}" for i in range(40)], ["a", "b", "c"], row_chunk=6) as w:
        w.write(0, S)
    arr, _, _ = open_scores(tmp_path / "s.zarr")
    ids, Sb = track_level(arr, tracks, normalize="rank")
    _, ref = _reference(S.astype(np.float32).astype(np.float64), tracks, "rank")
    np.testing.assert_allclose(Sb, ref)


def test_constant_column_and_hand_case():
    S = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0], [4.0, 5.0]])
    ids, Sb = track_level(S, ["x", "y", "x", "y"], normalize="rank")
    assert list(ids) == ["x", "y"]
    np.testing.assert_allclose(Sb[:, 0], [1.5, 3.5])  # ranks 1,3,2,4
    np.testing.assert_allclose(Sb[:, 1], [2.5, 2.5])  # all tied: average rank 2.5
    _, Z = track_level(S, ["x", "y", "x", "y"], normalize="zscore")
    np.testing.assert_allclose(Z[:, 1], [0.0, 0.0])  # constant column -> zeros


def test_track_index_first_appearance():
    ids, r2t = track_index(["b", "a", "b", "c", "a"])
    assert list(ids) == ["b", "a", "c"] and list(r2t) == [0, 1, 0, 2, 1]
