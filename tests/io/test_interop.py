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


@pytest.mark.parametrize("row_dim", ["segment", "track"])
def test_score_store_opens_in_xarray_with_ids(tmp_path, row_dim):
    rng = np.random.default_rng(0)
    S = rng.standard_normal((11, 3)).astype(np.float32)
    S[0, 0] = 0.0  # zarr's fill value must not turn into a missing value
    rows, cols = _ids("seg", 11), _ids("q", 3)
    path = _store(tmp_path / "s.zarr", S, rows, cols, row_dim=row_dim)
    ds = xr.open_zarr(path)
    assert ds["scores"].dims == (row_dim, "query")
    assert set(ds.coords) == {"row_ids", "col_ids"}
    assert ds["row_ids"].values.tolist() == rows and ds["col_ids"].values.tolist() == cols
    np.testing.assert_array_equal(ds["scores"].values, S)
    assert ds.attrs == {"method": "trak", "lambda": 0.01}
    # labelled selection: the query "q002" column of the training item "seg005"
    picked = ds.set_coords(["row_ids", "col_ids"]).swap_dims({row_dim: "row_ids", "query": "col_ids"})
    assert float(picked["scores"].sel(row_ids="seg005", col_ids="q002")) == S[5, 2]


def test_feature_and_ground_truth_stores_open_in_xarray(tmp_path):
    rng = np.random.default_rng(1)
    train, query = rng.standard_normal((7, 5)), rng.standard_normal((2, 5))
    write_features(tmp_path / "f.zarr", train=train, query=query, train_ids=_ids("t", 7), query_ids=_ids("q", 2))
    ds = xr.open_zarr(tmp_path / "f.zarr")
    assert ds["train"].dims == ("segment", "k") and ds["query"].dims == ("query", "k")
    assert ds["train_ids"].values.tolist() == _ids("t", 7)
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


def test_export_to_dattri_and_back_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    S = rng.standard_normal((10, 4)).astype(np.float32)
    rows, cols = _ids("seg", 10), _ids("q", 4)
    src = _store(tmp_path / "src.zarr", S, rows, cols)
    out = tmp_path / "exported.pt"
    assert main(["export-scores", str(src), "--to", "dattri", "--out", str(out)]) == 0
    # dattri's own orientation and type: a float32 tensor (num_train_samples, num_test_samples)
    t = torch.load(out, weights_only=True)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and tuple(t.shape) == (10, 4)
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
