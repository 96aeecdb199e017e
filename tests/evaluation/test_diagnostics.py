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
    assert_close(reliability(S, row_chunk=row_chunk), brute(S))


def test_float32_with_mean_matches_brute_force():
    rng = np.random.default_rng(1)
    S = (rng.standard_normal((700, 60)) + rng.uniform(-1, 1, 60)).astype(np.float32)
    assert_close(reliability(S, row_chunk=128), brute(S))


def test_rank_one_plus_noise():
    rng = np.random.default_rng(2)
    a = rng.standard_normal(800)
    b = rng.uniform(1.0, 2.0, 30)
    S = np.outer(a, b) + 0.01 * rng.standard_normal((800, 30))
    got = reliability(S, row_chunk=97)
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
    got = reliability(S, row_chunk=300)
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
    got = reliability(S, row_chunk=256)
    assert got["c_bar"] > 0.999999
    assert_close(got, brute(S), atol=1e-8)


def test_fewer_than_five_axes():
    rng = np.random.default_rng(5)
    S = rng.standard_normal((100, 3))
    got = reliability(S)
    assert got["r1"] + got["r2_5"] == pytest.approx(1.0, abs=1e-12)
    assert_close(got, brute(S))


# --------------------------------------------------------------------------- stores


def test_zarr_store_chunk_not_dividing_n(tmp_path):
    rng = np.random.default_rng(6)
    S = (rng.standard_normal((1003, 17)) + 0.5).astype(np.float32)
    path = write_store(tmp_path / "scores" / "m.zarr", S, row_chunk=100)
    want = brute(S)
    assert_close(reliability(path), want)
    assert_close(reliability(str(path), row_chunk=300), want)
    arr, _, _ = open_scores(path)
    assert_close(reliability(arr), want)
    stats = gram_stats(path, row_chunk=100)
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
    got = reliability(lazy, row_chunk=100)
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


def test_prefetch_reads_the_same_blocks_in_order_and_stops_early(tmp_path):
    """Reading ahead in a thread changes neither the blocks, their order nor the result."""
    from aria.io.stores import iter_row_chunks

    rng = np.random.default_rng(9)
    S = rng.standard_normal((1003, 12)).astype(np.float32)
    store = open_scores(write_store(tmp_path / "s.zarr", S, row_chunk=100))[0]
    plain = list(iter_row_chunks(store, rows=100))
    for depth in (1, 3):
        ahead = list(iter_row_chunks(store, rows=100, prefetch=depth))
        assert [s for s, _ in ahead] == [s for s, _ in plain]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(ahead, plain))
    # a consumer that stops after two blocks leaves no read pending forever
    lazy = CountingArray(store, limit=100)
    it = iter_row_chunks(lazy, rows=100, prefetch=2)
    next(it), next(it)
    it.close()
    assert len(lazy.reads) <= 4
    assert reliability(store, prefetch=0) == reliability(store, prefetch=2)


def test_float32_products_within_stated_bound():
    """precision="float32": chunk Grams in float32 (means and merge in float64) stay within
    1e-6 of the brute force on the diagnostics; float64 stays within the usual 1e-10."""
    rng = np.random.default_rng(10)
    S = (rng.standard_normal((3000, 50)) + 5.0 * rng.standard_normal(50)).astype(np.float32)
    S[:, :3] += 0.8 * rng.standard_normal((3000, 1)).astype(np.float32)  # a shared axis
    want = brute(S)
    got32 = reliability(S, row_chunk=512, precision="float32")
    assert_close(got32, want, atol=1e-6)
    assert_close(reliability(S, row_chunk=512), want)
    # the float32 path really is less exact than float64 (a test that could fail)
    assert max(abs(got32[k] - want[k]) for k in KEYS) > 1e-12
    with pytest.raises(ValueError, match="precision must be"):
        reliability(S, precision="float16")


# --------------------------------------------------------------------------- axes


def test_leading_axes_match_svd():
    rng = np.random.default_rng(9)
    S = np.outer(rng.standard_normal(400), rng.uniform(1, 2, 20)) + 0.3 * rng.standard_normal((400, 20))
    ax = leading_axes(S, n=3, row_chunk=64)
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
    got = reliability(S, row_chunk=7)
    assert_close(got, brute(S))  # brute: corr with constant column -> 0, 0/0 c term -> 0
    stats = gram_stats(S, row_chunk=7)
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
    assert_close(reliability(S, row_chunk=10, progress=True), brute(S))
    assert "10/10" in capsys.readouterr().err
