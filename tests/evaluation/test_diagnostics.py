"""Tests for aria.evaluation.reliability: streaming reliability diagnostics vs brute-force numpy."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from aria.evaluation.reliability import (
    gram_stats,
    leading_axes,
    reliability,
    reliability_from_stats,
)
from aria.io.stores import ScoreWriter, open_scores

KEYS = ("r1", "r2_5", "c_bar", "rho_bar")
#: the tests of conventions hold the diagnostics to float64 round-off (1e-10): float64 products
F64 = {"precision": "float64"}


def brute(S: np.ndarray) -> dict[str, float]:
    """Reference: full matrix in memory, np.linalg.svd and np.corrcoef."""
    S = np.asarray(S, dtype=np.float64)
    n, q = S.shape
    sv = np.linalg.svd(S, compute_uv=False)
    total = (S**2).sum()
    colsum, colsumsq = S.sum(axis=0), (S**2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        conc = np.where(colsumsq > 0, colsum**2 / (n * colsumsq), 0.0)
        corr = np.corrcoef(S, rowvar=False)
    corr = np.nan_to_num(corr, nan=0.0)  # constant column -> correlation 0
    iu = np.triu_indices(q, 1)
    return {
        "r1": sv[0] ** 2 / total,
        "r2_5": (sv[1:5] ** 2).sum() / total,
        "c_bar": conc.mean(),
        "rho_bar": np.abs(corr[iu]).mean(),
    }


def assert_close(got: dict, want: dict, atol: float = 1e-10) -> None:
    assert set(got) == set(KEYS)
    for k in KEYS:
        assert isinstance(got[k], float), k
        assert got[k] == pytest.approx(want[k], abs=atol, rel=0), (k, got[k], want[k])


def write_store(path, S, row_chunk):
    n, q = S.shape
    with ScoreWriter(
        path, [f"r{i}" for i in range(n)], [f"q{j}" for j in range(q)], attrs={"method": "test"}, row_chunk=row_chunk
    ) as w:
        for start in range(0, n, 250):  # write blocks unrelated to the store chunk
            w.write(start, S[start : start + 250])
    return path


class CountingArray:
    """Lazy 2-D array that only allows row slices of <= ``limit`` rows and logs them."""

    def __init__(self, arr, limit):
        self._arr = arr
        self.limit = limit
        self.shape = arr.shape
        self.dtype = arr.dtype
        self.chunks = (limit, arr.shape[1])
        self.reads: list[tuple[int, int]] = []

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise AssertionError(f"non row-slice access: {key!r}")
        start, stop, _ = key.indices(self.shape[0])
        if stop - start > self.limit:
            raise AssertionError(f"read {stop - start} rows > row_chunk {self.limit}")
        self.reads.append((start, stop))
        return np.asarray(self._arr[start:stop])

    def __array__(self, *args, **kwargs):
        raise AssertionError("whole matrix materialised")


# --------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("row_chunk", [None, 1, 7, 64, 500])
def test_gaussian_matches_brute_force(row_chunk):
    rng = np.random.default_rng(0)
    S = rng.standard_normal((500, 40))
    assert_close(reliability(S, row_chunk=row_chunk, **F64), brute(S))


def test_float32_with_mean_matches_brute_force():
    rng = np.random.default_rng(1)
    S = (rng.standard_normal((700, 60)) + rng.uniform(-1, 1, 60)).astype(np.float32)
    assert_close(reliability(S, row_chunk=128, **F64), brute(S))


def test_rank_one_plus_noise():
    rng = np.random.default_rng(2)
    a = rng.standard_normal(800)
    b = rng.uniform(1.0, 2.0, 30)
    S = np.outer(a, b) + 0.01 * rng.standard_normal((800, 30))
    got = reliability(S, row_chunk=97, **F64)
    assert got["r1"] > 0.999
    assert got["rho_bar"] > 0.999
    assert got["r2_5"] < 1e-3
    assert_close(got, brute(S))


def test_large_constant_offsets_no_cancellation():
    # Columns 1e4..2e4 plus noise 1e-3: the naive centred Gram G - N mu mu^T
    # loses ~14 digits here; the chunk-merged one must still match np.corrcoef.
    rng = np.random.default_rng(3)
    n, q = 2000, 25
    S = rng.uniform(1e4, 2e4, q) + 1e-3 * rng.standard_normal((n, q))
    got = reliability(S, row_chunk=300, **F64)
    want = brute(S)
    assert got["c_bar"] == pytest.approx(1.0, abs=1e-9)
    assert got["r1"] == pytest.approx(1.0, abs=1e-9)
    assert_close(got, want, atol=1e-9)
    # independent noise: mean |corr| ~ sqrt(2 / (pi n)) ~ 0.018, far from 0 or 1
    assert 0.005 < got["rho_bar"] < 0.05

    # The test has teeth: the naive formula from the raw Gram is visibly wrong.
    G = S.T @ S
    mu = S.mean(axis=0)
    C = G - n * np.outer(mu, mu)
    d = np.sqrt(np.abs(np.diag(C)))
    with np.errstate(invalid="ignore", divide="ignore"):
        naive = np.abs(C / np.outer(d, d))[np.triu_indices(q, 1)].mean()
    assert not abs(naive - want["rho_bar"]) < 1e-3


def test_float32_offsets_c_bar_near_one():
    rng = np.random.default_rng(4)
    S = (1e4 + rng.uniform(0, 100, 50) + 1e-2 * rng.standard_normal((1500, 50))).astype(np.float32)
    got = reliability(S, row_chunk=256, **F64)
    assert got["c_bar"] > 0.999999
    assert_close(got, brute(S), atol=1e-8)


def test_fewer_than_five_axes():
    rng = np.random.default_rng(5)
    S = rng.standard_normal((100, 3))
    got = reliability(S, **F64)
    assert got["r1"] + got["r2_5"] == pytest.approx(1.0, abs=1e-12)
    assert_close(got, brute(S))


# --------------------------------------------------------------------------- stores


def test_zarr_store_chunk_not_dividing_n(tmp_path):
    rng = np.random.default_rng(6)
    S = (rng.standard_normal((1003, 17)) + 0.5).astype(np.float32)
    path = write_store(tmp_path / "scores" / "m.zarr", S, row_chunk=100)
    want = brute(S)
    assert_close(reliability(path, **F64), want)
    assert_close(reliability(str(path), row_chunk=300, **F64), want)
    arr, _, _ = open_scores(path)
    assert_close(reliability(arr, **F64), want)
    stats = gram_stats(path, row_chunk=100, **F64)
    assert (stats.n, stats.q, stats.n_chunks) == (1003, 17, 11)
    S64 = S.astype(np.float64)
    np.testing.assert_allclose(stats.gram, S64.T @ S64, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(stats.colsum, S64.sum(0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(stats.colsumsq, (S64**2).sum(0), rtol=1e-12)
    assert_close(reliability_from_stats(stats), want)


def test_nan_in_store_names_path_and_row(tmp_path):
    rng = np.random.default_rng(7)
    S = rng.standard_normal((1003, 5)).astype(np.float32)
    path = write_store(tmp_path / "bad.zarr", S, row_chunk=100)
    zarr.open_group(str(path), mode="r+")["scores"][537, 3] = np.nan
    with pytest.raises(ValueError) as exc:
        reliability(path)
    msg = str(exc.value)
    assert str(path) in msg and "row 537" in msg and "column 3" in msg
    with pytest.raises(ValueError, match="bad.zarr"):
        reliability(open_scores(path)[0])


def test_inf_in_array_names_array_and_row():
    S = np.ones((50, 4))
    S[:, 1] = np.arange(50)
    S[33, 2] = -np.inf
    with pytest.raises(ValueError, match=r"^array: .*row 33"):
        reliability(S, row_chunk=8)


# --------------------------------------------------------------------------- streaming


def test_streaming_reads_each_chunk_exactly_once(tmp_path):
    rng = np.random.default_rng(8)
    S = rng.standard_normal((1003, 12)).astype(np.float32)
    path = write_store(tmp_path / "s.zarr", S, row_chunk=100)
    lazy = CountingArray(open_scores(path)[0], limit=100)
    got = reliability(lazy, row_chunk=100, **F64)
    expected = [(s, min(s + 100, 1003)) for s in range(0, 1003, 100)]
    assert sorted(lazy.reads) == expected  # every row chunk, each exactly once
    assert_close(got, brute(S))

    # Default row_chunk: whole store chunks, still one read per row range.
    # Reads are whole store chunks, contiguous, non-overlapping.
    lazy.reads.clear()
    lazy.limit = 10**9
    stats = gram_stats(lazy)
    assert stats.row_chunk % 100 == 0 or stats.row_chunk == 1003
    covered = sorted(lazy.reads)
    assert len(covered) == stats.n_chunks
    assert covered[0][0] == 0 and covered[-1][1] == 1003
    assert all(a[1] == b[0] and a[1] % 100 == 0 for a, b in zip(covered, covered[1:]))

    # leading_axes with precomputed stats: exactly one (second) pass.
    lazy.reads.clear()
    leading_axes(lazy, n=2, stats=stats)
    assert len(lazy.reads) == stats.n_chunks
    assert sorted(lazy.reads) == covered


def rel_close(got: dict, want: dict, *, rtol: float) -> None:
    """Each diagnostic within ``rtol`` relative of the reference, or 1e-12 absolute for one below
    1e-6 (there the float64 brute force itself carries ~Q eps r1 of eigenvalue round-off)."""
    for k in KEYS:
        assert got[k] == pytest.approx(want[k], rel=rtol, abs=1e-12), (k, got[k], want[k])


def planted(kind: str, seed: int) -> np.ndarray:
    """float32 score matrices whose four diagnostics are all well away from 0 (relative errors mean something)."""
    rng = np.random.default_rng(seed)
    if kind == "mixed":  # per-query offsets, a shared axis on a third of the queries, noise
        S = rng.standard_normal((12288, 64)) + 5.0 * rng.standard_normal(64)
        S[:, :21] += 1.5 * rng.standard_normal((12288, 1))
    else:  # "collapse": one ranking for every query; off-diagonal partial sums grow like the diagonal's
        S = np.outer(rng.standard_normal(8192) + 1.0, rng.uniform(1, 2, 48)) + rng.uniform(-1, 1, 48)
        S += 0.05 * rng.standard_normal((8192, 48))
    return S.astype(np.float32)


@pytest.mark.parametrize("kind", ["mixed", "collapse"])
def test_float32_default_within_1e6_relative_of_brute_force(kind, tmp_path):
    """The default (float32 products on blocks of F32_BLOCK_ROWS = c = 1024 rows, each merged in
    float64; float64 means and diagonal) against a float64 brute force (np.linalg.svd, np.corrcoef).

    Error estimate (module docstring, "Numerics"): one block's entry is off by at most c u32 =
    6.1e-5 of sqrt(G_ii G_jj), typically sqrt(c) u32 = 1.9e-6; the m = N / c = 8 or 12 blocks'
    errors are independent and summed in float64, so the totals carry ~1.9e-6 / sqrt(m) <= 6.8e-7,
    and the diagnostics, ratios and averages of those entries, no more (measured here: <= 1.3 u32
    = 8e-8 with OpenBLAS, whose K-blocking keeps each block's error to a few u32). Hence 1e-6.
    """
    S = planted(kind, seed=12)
    want = brute(S)
    assert min(want.values()) > 0.02  # every diagnostic is a sizeable number
    store = write_store(tmp_path / "s.zarr", S, row_chunk=4096)  # the default store chunk
    got = reliability(store)
    rel_close(got, want, rtol=1e-6)
    # blocks that straddle chunk ends, and the worker threads: the same bound, the same bits for the
    # same BLAS threads per product (one: OpenBLAS's ssyrk on two threads can differ in the last
    # bits, which made this fail on a 2-core AMD EPYC when the calling thread had two)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        odd = reliability(S, row_chunk=1500, workers=0)
        assert odd == reliability(S, row_chunk=1500, workers=2)
    rel_close(odd, want, rtol=1e-6)
    rel_close(reliability(S, row_chunk=1500, workers=0), want, rtol=1e-6)  # the BLAS pool as configured
    # the float64 option: round-off only
    got64 = reliability(store, precision="float64")
    rel_close(got64, want, rtol=1e-10)
    # the default really is float32 (a test that fails if it silently became float64)
    assert max(abs(got[k] - got64[k]) / got64[k] for k in KEYS) > 1e-13


def test_float32_with_huge_offsets():
    """Offsets 1e6 times the noise: centring on the float32-rounded mean c leaves a = mean - c of
    up to u32 |mean| / 2, i.e. 0.3 of the noise; the n a aᵀ correction must be applied."""
    rng = np.random.default_rng(13)
    S = (1e4 + rng.uniform(0, 100, 40) + 1e-2 * rng.standard_normal((6000, 40))).astype(np.float32)
    want = brute(S)
    got = reliability(S, row_chunk=2000)
    rel_close(got, want, rtol=1e-6)  # r2_5 ~ 1e-12 here: held to 1e-12 absolute
    assert 0.005 < got["rho_bar"] < 0.05  # independent noise, and still resolved


@pytest.mark.parametrize("scale", [1e25, 1e-25])
def test_float32_products_that_over_or_underflow_fall_back_to_float64(scale):
    """Scores beyond float32's squares' range (|x|^2 > 3e38 or < 1e-38): the chunk is detected
    on its diagonal and multiplied in float64, so the diagnostics still match the brute force."""
    rng = np.random.default_rng(14)
    S = (rng.standard_normal((700, 20)) + rng.standard_normal(20)) * scale
    S[:, :5] += scale * rng.standard_normal((700, 1))
    x = (S - S.mean(axis=0)).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        d32 = np.diagonal(x.T @ x)  # what plain float32 products give: inf, or 0 / subnormal
    assert not np.allclose(d32, (x.astype(np.float64) ** 2).sum(axis=0), rtol=1e-3, atol=0)
    rel_close(reliability(S, row_chunk=256), brute(S), rtol=1e-10)  # float64 products: round-off only


def test_precision_and_workers_are_checked():
    S = np.random.default_rng(15).standard_normal((50, 4))
    with pytest.raises(ValueError, match="precision must be"):
        reliability(S, precision="float16")
    with pytest.raises(ValueError, match="workers must be >= 0"):
        reliability(S, workers=-1)


# --------------------------------------------------------------------------- axes


def test_leading_axes_match_svd():
    rng = np.random.default_rng(9)
    S = np.outer(rng.standard_normal(400), rng.uniform(1, 2, 20)) + 0.3 * rng.standard_normal((400, 20))
    ax = leading_axes(S, n=3, row_chunk=64, **F64)
    assert ax.sigma.shape == (3,) and ax.v.shape == (20, 3) and ax.u.shape == (400, 3)
    U, sv, Vt = np.linalg.svd(S, full_matrices=False)
    np.testing.assert_allclose(ax.sigma, sv[:3], rtol=1e-10)
    for i in range(3):
        s = np.sign(Vt[i].sum())
        np.testing.assert_allclose(ax.v[:, i], s * Vt[i], atol=1e-8)
        np.testing.assert_allclose(ax.u[:, i], s * U[:, i], atol=1e-8)
    assert ax.v[:, 0].sum() > 0  # sign convention
    np.testing.assert_allclose(ax.u.T @ ax.u, np.eye(3), atol=1e-8)


def test_leading_axes_rank_deficient_zero_sigma():
    S = np.zeros((10, 3))
    S[:, 0] = np.arange(10)
    ax = leading_axes(S, n=3)
    assert ax.sigma[0] == pytest.approx(np.sqrt((np.arange(10) ** 2).sum()))
    assert np.all(ax.u[:, 1:] == 0)
    with pytest.raises(ValueError, match="n must be"):
        leading_axes(S, n=4)


# --------------------------------------------------------------------------- edge cases


def test_constant_and_zero_columns():
    rng = np.random.default_rng(10)
    S = rng.standard_normal((300, 6))
    S[:, 1] = 0.1  # constant, not exactly representable: mean has round-off
    S[:, 4] = 0.0  # all zero
    got = reliability(S, row_chunk=7, **F64)
    assert_close(got, brute(S))  # brute: corr with constant column -> 0, 0/0 c term -> 0
    stats = gram_stats(S, row_chunk=7, **F64)
    conc = stats.colsum**2 / np.where(stats.colsumsq > 0, S.shape[0] * stats.colsumsq, 1)
    assert conc[4] == 0 and conc[1] == pytest.approx(1.0)


def test_too_few_rows_or_queries():
    with pytest.raises(ValueError, match="at least 2 queries"):
        reliability(np.arange(10.0).reshape(10, 1))
    with pytest.raises(ValueError, match="at least 2 training rows"):
        reliability(np.arange(4.0).reshape(1, 4))
    with pytest.raises(ValueError, match="all zero"):
        reliability(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="2-D"):
        reliability(np.zeros(5))
    with pytest.raises(TypeError):
        reliability(np.ones((4, 4)), 2)  # options are keyword-only


def test_progress_bar(capsys):
    rng = np.random.default_rng(11)
    S = rng.standard_normal((100, 4))
    assert_close(reliability(S, row_chunk=10, progress=True, **F64), brute(S))
    assert "10/10" in capsys.readouterr().err


def test_gram_pass_workers_give_the_same_result_to_the_bit(tmp_path):
    """Chunks read and multiplied in worker threads are merged in row order: the result does not
    depend on how many workers there are."""
    rng = np.random.default_rng(9)
    S = rng.standard_normal((1003, 12)).astype(np.float32)
    store = open_scores(write_store(tmp_path / "s.zarr", S, row_chunk=100))[0]
    assert reliability(store, row_chunk=100, workers=0) == reliability(store, row_chunk=100, workers=3)
