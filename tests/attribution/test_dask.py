"""The dask engine (aria/parallel.py, scoring.score_dask) against the numpy streaming path.

Every gradient method is scored both ways on the same feature stores (read lazily from
zarr for dask, with row chunks that do not divide N); the blocks must agree to float
round-off (the Gram matrices of TRAK, LoGra and FactGraSS are summed over chunks in
another order). The CLI runs once on a dask.distributed LocalCluster of 2 worker
processes and once on the threaded scheduler, and must write the numpy path's store.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from aria.attribution.scoring import score_blocks, score_dask
from aria.io.stores import open_scores, read_features, write_features
from aria.parallel import dask_scheduler

N, Q, K = 1003, 7, 12
ROW_CHUNK = 128  # does not divide N


def _stores(tmp_path, n_models=2, blocks=None):
    rng = np.random.default_rng(0)
    paths = []
    for m in range(n_models):
        path = tmp_path / f"m{m}.zarr"
        attrs = {"lr": 0.1 * (m + 1)}
        if blocks:
            attrs["blocks"] = blocks
        write_features(
            path,
            train=rng.normal(size=(N, K)) * rng.uniform(0.5, 2, K),
            query=rng.normal(size=(Q, K)),
            train_ids=[f"s{i}" for i in range(N)],
            query_ids=[f"q{j}" for j in range(Q)],
            attrs=attrs,
            row_chunk=100,
        )
        paths.append(path)
    return paths


def _feats(paths, lazy):
    feats = [read_features(p, lazy=lazy, row_chunk=ROW_CHUNK) for p in paths]
    for f in feats:
        f["lr"] = f["attrs"]["lr"]
    return feats


@pytest.mark.parametrize(
    "method, n_models, params",
    [
        ("trak", 2, {"damping": {"rule": "absolute", "lambda": 0.5}}),
        ("tracin", 2, {}),
        ("gradcos", 1, {}),
        ("graddot", 1, {}),
        ("logra", 1, {"damping": {"rule": "relative", "alpha": 0.1}}),
        ("factgrass", 1, {"damping": {"rule": "relative", "alpha": 0.1}}),
    ],
)
def test_dask_scores_equal_the_numpy_blocks(tmp_path, method, n_models, params):
    blocks = [{"start": 0, "stop": 5}, {"start": 5, "stop": 12}] if method in ("logra", "factgrass") else None
    paths = _stores(tmp_path, n_models, blocks)
    ref = np.concatenate([b for _, b in score_blocks(method, _feats(paths, False), params, row_chunk=ROW_CHUNK)])
    lazy = _feats(paths, True)
    assert all(hasattr(f["train"], "dask") for f in lazy)  # nothing loaded up front
    with dask_scheduler("threads", threads=2):
        S = score_dask(method, lazy, params, row_chunk=ROW_CHUNK)
        assert S.chunks[0][0] == ROW_CHUNK and S.dtype == np.float32
        got = S.compute()
    # Both engines form the block in float64 from the same float32 features (the Gram and its
    # Cholesky solve, k = 12, kappa < 1e2, summed in another order: ~1e-14 relative) and round
    # it to float32: equal or 1 ulp = 2^-23 relative apart. rtol = 2 ulps; atol covers entries
    # near 0, whose float64 error is ~k u64 |largest term| (1e-10 of max leaves 1e4 of margin).
    np.testing.assert_allclose(got, ref, rtol=2.4e-7, atol=1e-10 * np.abs(ref).max())
    if method in ("tracin", "gradcos", "graddot"):  # no sum over chunks: the very same numbers
        np.testing.assert_array_equal(got, ref)


def _cli(paths, out, *extra):
    from aria.cli import main

    params = json.dumps({"damping": {"rule": "absolute", "lambda": 0.5}, "row_chunk": ROW_CHUNK})
    args = ["score", "--method", "trak", "--features", *map(str, paths), "--params", params, "--out", str(out)]
    assert main([*args, *extra]) == 0
    return np.asarray(open_scores(out)[0][:])


@pytest.fixture
def restore_environ():
    """distributed's nanny sets variables (MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS...) in the
    process that starts a LocalCluster; put this process's environment back afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_cli_on_a_local_cluster_of_two_workers_writes_the_numpy_store(tmp_path, restore_environ):
    distributed = pytest.importorskip("distributed")
    paths = _stores(tmp_path)
    ref = _cli(paths, tmp_path / "numpy.zarr")
    threaded = _cli(paths, tmp_path / "threads.zarr", "--engine", "dask", "--threads", "2")
    np.testing.assert_allclose(threaded, ref, rtol=2.4e-7, atol=1e-10 * np.abs(ref).max())  # as above: 2 ulps
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client, distributed.get_task_stream(client=client) as stream:
            got = _cli(paths, tmp_path / "cluster.zarr", "--engine", "dask", "--scheduler", cluster.scheduler_address)
        # the chunks really ran on the cluster's workers, on both of them
        assert len(stream.data) >= -(-N // ROW_CHUNK)
        assert len({t["worker"] for t in stream.data}) == 2
    np.testing.assert_array_equal(got, threaded)  # the scheduler changes no number
    assert open_scores(tmp_path / "cluster.zarr")[1].tolist() == [f"s{i}" for i in range(N)]


def test_bad_scheduler_and_non_finite_scores_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="compute.scheduler must be"):
        with dask_scheduler("fast"):
            pass
    with pytest.raises(RuntimeError, match="no dask scheduler answers"):
        with dask_scheduler("tcp://127.0.0.1:9", timeout="2s"):
            pass
    import dask.array as da

    from aria.io.stores import ScoreWriter

    S = da.from_array(np.ones((N, Q), np.float32), chunks=(ROW_CHUNK, Q))
    S[500, 3] = np.nan
    out = tmp_path / "bad.zarr"
    with pytest.raises(ValueError, match=r"bad.zarr: non-finite score at row 500, column 3"):
        with ScoreWriter(out, range(N), range(Q), row_chunk=ROW_CHUNK) as w:
            w.store(S)
    assert not out.exists()


def test_dask_gram_pass_equals_the_streaming_one(tmp_path):
    """The diagnostics' Gram pass as a dask graph (a tree of Chan merges) against the numpy
    streaming pass, on a store whose chunks do not divide N; and a NaN is named by its row."""
    import dask.array as da
    import zarr

    from aria.evaluation.reliability import gram_stats, gram_stats_dask, reliability_from_stats
    from aria.io.stores import ScoreWriter

    rng = np.random.default_rng(3)
    S = (rng.normal(size=(N, Q)) + 3.0 * rng.normal(size=Q)).astype(np.float32)
    path = tmp_path / "s.zarr"
    with ScoreWriter(path, range(N), range(Q), row_chunk=ROW_CHUNK) as w:
        w.write(0, S)
    ref = gram_stats(path, row_chunk=ROW_CHUNK)  # the graph's chunks, so the same float32 products
    lazy = da.from_zarr(zarr.open_group(str(path), mode="r")["scores"])
    with dask_scheduler("threads", threads=2):
        got = gram_stats_dask(lazy)
    assert (got.n, got.q, got.n_chunks) == (N, Q, -(-N // ROW_CHUNK))
    for name in ("mean", "cgram", "gram", "colsum", "colsumsq"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-12, atol=1e-9)
    want = reliability_from_stats(ref)
    for k, v in reliability_from_stats(got).items():
        assert v == pytest.approx(want[k], abs=1e-12)
    S[700, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite score .* at row 700, column 2"):
        gram_stats_dask(da.from_array(S, chunks=(ROW_CHUNK, Q)))


def test_diagnostics_cli_engines_agree(tmp_path):
    from aria.cli import main

    paths = _stores(tmp_path)
    scores = tmp_path / "trak.zarr"
    _cli(paths, scores)
    outs = {}
    for engine in ("numpy", "dask"):
        out = tmp_path / f"diag_{engine}.json"
        argv = ["diagnostics", "--scores", str(scores), "--out", str(out), "--engine", engine, "--threads", "2"]
        assert main(argv) == 0
        outs[engine] = json.loads(out.read_text())
    # the engines chunk the rows differently, so their float32 products (merged in float64) differ
    # by float32 round-off: within the 1e-6 relative of aria.evaluation.reliability's docstring
    for key in ("r1", "r2_5", "c_bar", "rho_bar", "v1_constancy"):
        assert outs["dask"][key] == pytest.approx(outs["numpy"][key], rel=1e-6, abs=1e-12), key
    np.testing.assert_allclose(outs["dask"]["energy"], outs["numpy"]["energy"], rtol=1e-6)
