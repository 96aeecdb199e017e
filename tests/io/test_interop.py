"""Interop: Aria's stores open as labelled arrays in xarray, and score matrices go to dattri's
format and back (``aria export-scores`` / ``aria import-scores``)."""

import numpy as np
import pytest
import torch

from aria.cli import main
from aria.io.stores import ScoreWriter, open_scores, write_features, write_ground_truth

xr = pytest.importorskip("xarray")


def _ids(prefix, n):
    return [f"{prefix}{i:03d}" for i in range(n)]


def _store(path, S, rows, cols, **kw):
    with ScoreWriter(path, rows, cols, attrs={"method": "trak", "lambda": 0.01}, row_chunk=4, **kw) as w:
        for start in range(0, len(rows), 4):
            w.write(start, S[start : start + 4])
    return path


# ids as the workflow writes them: segment ids "<track id>:<nnn>" (audio: "<track id>:<stage>:<nnn>"),
# query ids "q-<track id>"
ROW_IDS = [f"bach_chorales-{12 + i // 3:04d}:{i % 3:03d}" for i in range(10)] + ["fma-000140:coarse:002"]
QUERY_IDS = ["q-ryans_mammoth-0101", "q-oneills_1850-0007", "q-bach_chorales-0003"]


@pytest.mark.parametrize("row_dim", ["segment", "track"])
def test_score_store_opens_in_xarray_indexed_by_its_ids(tmp_path, row_dim):
    rng = np.random.default_rng(0)
    S = rng.standard_normal((11, 3)).astype(np.float32)
    S[0, 0] = 0.0  # zarr's fill value must not turn into a missing value
    path = _store(tmp_path / "s.zarr", S, ROW_IDS, QUERY_IDS, row_dim=row_dim)
    ds = xr.open_zarr(path)
    assert ds["scores"].dims == (row_dim, "query")
    # the ids are the index coordinates of the two dims, nothing else is a coordinate
    assert set(ds.coords) == set(ds.indexes) == {row_dim, "query"}
    assert ds[row_dim].values.tolist() == ROW_IDS and ds["query"].values.tolist() == QUERY_IDS
    np.testing.assert_array_equal(ds["scores"].values, S)
    assert ds.attrs == {"method": "trak", "lambda": 0.01}
    # labelled selection by the real ids, checked against positional numpy indexing
    for j, q in enumerate(QUERY_IDS):
        np.testing.assert_array_equal(ds.sel(query=q)["scores"].values, S[:, j])
    for i, r in enumerate(ROW_IDS):
        np.testing.assert_array_equal(ds.sel({row_dim: r})["scores"].values, S[i])
    assert float(ds["scores"].sel({row_dim: ROW_IDS[5], "query": QUERY_IDS[2]})) == S[5, 2]
    picked = ds.sel(query=[QUERY_IDS[2], QUERY_IDS[0]])["scores"].values
    np.testing.assert_array_equal(picked, S[:, [2, 0]])
    with pytest.raises(KeyError):
        ds.sel(query="no-such-query")
    # Aria's own reader gives the same ids, in order
    _, rows, cols = open_scores(path)
    assert rows.tolist() == ROW_IDS and cols.tolist() == QUERY_IDS


def test_stores_written_with_the_older_id_names_still_read(tmp_path):
    """A store from before the ids were index coordinates (ids in ``row_ids``/``col_ids``)."""
    import zarr

    from aria.io.stores import read_ground_truth, read_residual_axis

    S = np.arange(12, dtype=np.float32).reshape(4, 3)
    g = zarr.open_group(str(tmp_path / "old.zarr"), mode="w")
    g.create_array("scores", shape=S.shape, dtype="float32", dimension_names=("track", "query"))[:] = S
    u, v = np.linspace(0, 1, 4), np.linspace(1, 2, 3)
    g.create_array("axis_u", shape=(4,), dtype="float64")[:] = u
    g.create_array("axis_v", shape=(3,), dtype="float64")[:] = v
    g.attrs.update(sigma1=2.0, r1_removed=0.5)
    for name, ids, dim in (("row_ids", ROW_IDS[:4], "track"), ("col_ids", QUERY_IDS, "query")):
        g.create_array(name, shape=(len(ids),), dtype=str, dimension_names=(dim,))[:] = np.asarray(ids, dtype=object)
    arr, rows, cols = open_scores(tmp_path / "old.zarr")
    np.testing.assert_array_equal(arr[:], S)
    assert rows.tolist() == ROW_IDS[:4] and cols.tolist() == QUERY_IDS
    ax = read_residual_axis(tmp_path / "old.zarr")
    np.testing.assert_array_equal(ax["u"], u)
    assert ax["row_ids"].tolist() == ROW_IDS[:4] and ax["col_ids"].tolist() == QUERY_IDS

    gt = zarr.open_group(str(tmp_path / "gt_old.zarr"), mode="w")
    masks = np.eye(2, 4, dtype=bool)
    for name, arr in (("masks", masks), ("targets", np.ones((2, 3))), ("target_runs", np.ones((2, 1, 3)))):
        gt.create_array(name, shape=arr.shape, dtype=arr.dtype)[...] = arr
    for name in ("train_loss", "heldout_loss"):
        gt.create_array(name, shape=(2, 1), dtype="float64")[...] = 0.5
    for name, ids in (("row_ids", ROW_IDS[:4]), ("col_ids", QUERY_IDS)):
        gt.create_array(name, shape=(len(ids),), dtype=str)[:] = np.asarray(ids, dtype=object)
    got = read_ground_truth(tmp_path / "gt_old.zarr")
    np.testing.assert_array_equal(got["masks"], masks)
    assert got["row_ids"].tolist() == ROW_IDS[:4] and got["col_ids"].tolist() == QUERY_IDS


def test_a_store_without_its_ids_is_named(tmp_path):
    import zarr

    g = zarr.open_group(str(tmp_path / "bare.zarr"), mode="w")
    g.create_array("scores", shape=(2, 2), dtype="float32", dimension_names=("segment", "query"))[:] = 1.0
    g.create_array("query", shape=(2,), dtype=str, dimension_names=("query",))[:] = np.array(["a", "b"], dtype=object)
    with pytest.raises(ValueError, match=r"bare\.zarr: no 'segment' id array \(nor the older 'row_ids'\)"):
        open_scores(tmp_path / "bare.zarr")


def test_feature_and_ground_truth_stores_open_in_xarray(tmp_path):
    rng = np.random.default_rng(1)
    train, query = rng.standard_normal((7, 5)), rng.standard_normal((2, 5))
    write_features(tmp_path / "f.zarr", train=train, query=query, train_ids=_ids("t", 7), query_ids=_ids("q", 2))
    ds = xr.open_zarr(tmp_path / "f.zarr")
    assert ds["train"].dims == ("segment", "k") and ds["query"].dims == ("query", "k")
    assert ds["train_ids"].values.tolist() == _ids("t", 7) and ds["query_ids"].values.tolist() == _ids("q", 2)
    np.testing.assert_allclose(ds["train"].values, train.astype(np.float32))
    np.testing.assert_allclose(ds["query"].values, query.astype(np.float32))

    m, r, n, q = 3, 2, 7, 2
    arrays = dict(
        masks=rng.random((m, n)) > 0.5,
        targets=rng.standard_normal((m, q)),
        target_runs=rng.standard_normal((m, r, q)),
        train_loss=rng.random((m, r)),
        heldout_loss=rng.random((m, r)),
    )
    write_ground_truth(tmp_path / "gt.zarr", row_ids=_ids("t", n), col_ids=_ids("q", q), **arrays)
    gt = xr.open_zarr(tmp_path / "gt.zarr")
    assert gt["target_runs"].dims == ("subset", "run", "query") and gt["masks"].dims == ("subset", "segment")
    np.testing.assert_array_equal(gt["masks"].values, arrays["masks"])
    # the ids index the segment and query dims here too
    np.testing.assert_array_equal(gt.sel(segment="t004")["masks"].values, arrays["masks"][:, 4])
    np.testing.assert_array_equal(gt.sel(query="q001")["targets"].values, arrays["targets"][:, 1])


def test_export_to_dattri_and_back_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    S = rng.standard_normal((11, 3)).astype(np.float32)
    rows, cols = ROW_IDS, QUERY_IDS
    src = _store(tmp_path / "src.zarr", S, rows, cols)
    out = tmp_path / "exported.pt"
    assert main(["export-scores", str(src), "--to", "dattri", "--out", str(out)]) == 0
    # dattri's own orientation and type: a float32 tensor (num_train_samples, num_test_samples)
    t = torch.load(out, weights_only=True)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and tuple(t.shape) == (11, 3)
    np.testing.assert_array_equal(t.numpy(), S)
    assert (tmp_path / "exported.pt.rows.txt").read_text().split() == rows
    back = tmp_path / "back.zarr"
    rc = main(
        [
            "import-scores",
            str(out),
            "--rows",
            str(tmp_path / "exported.pt.rows.txt"),
            "--cols",
            str(tmp_path / "exported.pt.cols.txt"),
            "--out",
            str(back),
        ]
    )
    assert rc == 0
    S2, r2, c2 = open_scores(back)
    np.testing.assert_array_equal(S2[:], S)
    assert list(r2) == rows and list(c2) == cols
    # the imported store is indexed by the same ids in xarray
    np.testing.assert_array_equal(xr.open_zarr(back).sel(query=cols[1])["scores"].values, S[:, 1])


def test_export_to_npy_streams_the_store(tmp_path):
    rng = np.random.default_rng(3)
    S = rng.standard_normal((9, 3)).astype(np.float32)
    src = _store(tmp_path / "src.zarr", S, _ids("s", 9), _ids("q", 3))
    assert main(["export-scores", str(src), "--to", "npy", "--out", str(tmp_path / "m.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), S)


def test_export_names_a_wrong_extension(tmp_path, capsys):
    src = _store(tmp_path / "src.zarr", np.ones((4, 2), np.float32), _ids("s", 4), _ids("q", 2))
    assert main(["export-scores", str(src), "--to", "dattri", "--out", str(tmp_path / "m.npy")]) == 2
    assert "m.npy: --to dattri writes a .pt or .pth file" in capsys.readouterr().err
    assert not (tmp_path / "m.npy").exists()
