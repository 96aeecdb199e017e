"""Track-level matrix (docs/spec.md §3) against scipy/pandas brute force on the full matrix."""

import json

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


@pytest.mark.parametrize("normalize", ["zscore", "rank", "none"])
@pytest.mark.parametrize("contiguous", [True, False])
def test_dask_graph_matches_the_numpy_path(normalize, contiguous):
    """track_level_dask (compute.engine: dask) equals track_level and the brute force."""
    da = pytest.importorskip("dask.array")
    from aria.attribution.tracklevel import track_level_dask

    S, tracks = _case(2, n=211, q=5)
    if contiguous:  # the usual layout: a track's segments are adjacent rows
        order = np.argsort(np.unique(tracks, return_inverse=True)[1], kind="stable")
        S, tracks = S[order], tracks[order]
    S[:, 4] = 3.25  # a constant column: zeros under zscore, as in the numpy path
    ids, lazy = track_level_dask(
        da.from_array(S, chunks=(23, 5)), tracks, normalize=normalize, row_chunk=17, col_block=2
    )
    ids_np, Sb = track_level(S, tracks, normalize=normalize, row_chunk=23)
    ref_ids, ref = _reference(S[:, :4], tracks, normalize)  # scipy's zscore: nan for a constant column
    got = lazy.compute(scheduler="sync")
    assert list(ids) == list(ids_np) == list(ref_ids)
    np.testing.assert_allclose(got, Sb, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got[:, :4], ref, rtol=1e-9, atol=1e-9)
    if normalize == "zscore":
        assert np.all(got[:, 4] == 0)


def test_track_bounds_cut_between_tracks():
    from aria.attribution.tracklevel import _track_bounds

    r2t = np.repeat(np.arange(6), [3, 1, 4, 2, 5, 1])  # rows 16
    chunks = _track_bounds(r2t, 4)
    assert sum(chunks) == 16
    cuts = np.cumsum(chunks)[:-1]
    assert all(r2t[c - 1] != r2t[c] for c in cuts)  # never inside a track
    assert chunks == (4, 4, 7, 1)  # hand-computed: 3+1 | 4 | 2+5 | 1


@pytest.mark.parametrize("normalize", ["zscore", "rank"])
def test_cli_engines_write_the_same_track_level_store(tmp_path, normalize):
    """``aria tracklevel --engine dask`` (threads) writes the numpy engine's store."""
    pytest.importorskip("dask")
    from aria.cli import main
    from aria.io.tables import write_npz

    S, tracks = _case(4, n=300, q=6)
    rows = [f"s{i}" for i in range(len(S))]
    with ScoreWriter(tmp_path / "s.zarr", rows, [f"q{j}" for j in range(6)], row_chunk=37) as w:
        w.write(0, S)
    write_npz(tmp_path / "seg.npz", segment_ids=np.array(rows), track_ids=tracks)
    out = {}
    for engine in ("numpy", "dask"):
        args = ["tracklevel", "--scores", str(tmp_path / "s.zarr"), "--segments", str(tmp_path / "seg.npz")]
        args += ["--params", json.dumps({"normalize": normalize}), "--out", str(tmp_path / f"{engine}.zarr")]
        assert main([*args, "--engine", engine, "--threads", "2"]) == 0
        out[engine] = open_scores(tmp_path / f"{engine}.zarr")
    np.testing.assert_allclose(out["dask"][0][:], out["numpy"][0][:], rtol=1e-6, atol=1e-6)
    assert list(out["dask"][1]) == list(out["numpy"][1]) == list(_reference(S, tracks, "none")[0])


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_rank_columns_equals_scipy_rankdata(n):
    """The numpy ranking that replaced scipy's (for job start-up time): ties, runs of ties at
    either end, constant and all-NaN columns, a NaN amid finite values."""
    from aria.attribution.linalg import rank_columns

    rng = np.random.default_rng(n)
    X = np.column_stack(
        [
            rng.normal(size=n),
            rng.integers(0, 3, size=n).astype(float),  # many ties
            np.full(n, 2.5),  # constant
            np.sort(rng.integers(0, 2, size=n))[::-1].astype(float),  # ties at both ends
            np.where(np.arange(n) == n // 2, np.nan, rng.normal(size=n)),
        ]
    )
    np.testing.assert_array_equal(rank_columns(X), rankdata(X, axis=0, method="average"))
    with pytest.raises(ValueError, match="2-D"):
        rank_columns(X[:, 0])
