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
        ("trak", 2, {"lambda": 0.5}),
        ("tracin", 2, {}),
        ("gradcos", 1, {}),
        ("graddot", 1, {}),
        ("logra", 1, {"alpha": 0.1}),
        ("factgrass", 1, {"alpha": 0.1}),
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
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    if method in ("tracin", "gradcos", "graddot"):  # no sum over chunks: the very same numbers
        np.testing.assert_array_equal(got, ref)


def _cli(paths, out, *extra):
    from aria.cli import main

    params = json.dumps({"lambda": 0.5, "row_chunk": ROW_CHUNK})
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
    np.testing.assert_allclose(threaded, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
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
