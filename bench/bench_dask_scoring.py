"""Benchmark the dask engine for score matrices against the numpy streaming path.

Writes a random feature store (N x k float32 training features, Q x k queries; default
N = 10^6, k = 512, Q = 1000: 2 GiB of features, a 3.7 GiB score matrix), then times,
in one run and side by side, what ``aria score`` does for GradDot and TRAK (the
latter adds a pass for Phi^T Phi):

* numpy - ``compute.engine: numpy``: features loaded whole, row blocks computed and
          written one after the other (:func:`aria.attribution.scoring.score_blocks`);
* dask  - ``compute.engine: dask`` on the threaded scheduler with ``--threads``
          workers: features read lazily from zarr, blocks computed and written as a
          dask graph (:func:`aria.attribution.scoring.score_dask`,
          ``ScoreWriter.store``);

and checks that the two stores hold the same numbers (GradDot bit for bit; TRAK to
float round-off). BLAS runs with its default threads in both.

Then, on the last score store (N x Q float32), the rest of the matrix work both ways:

* the diagnostics' Gram pass: :func:`aria.evaluation.reliability.gram_stats` (one
  streaming pass) against :func:`~aria.evaluation.reliability.gram_stats_dask`;
* the track-level matrix (``zscore``, ``--segments-per-track`` contiguous rows per track):
  :func:`aria.attribution.tracklevel.track_level` against
  :func:`~aria.attribution.tracklevel.track_level_dask` written with ``ScoreWriter.store``
  (the numpy path's result written with ``ScoreWriter.write``).

Usage::

    python bench/bench_dask_scoring.py                        # N=1e6, k=512, Q=1000
    python bench/bench_dask_scoring.py --n 200000 --methods graddot
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aria.attribution.scoring import score_blocks, score_dask
from aria.io.stores import ScoreWriter, iter_row_chunks, open_scores, read_features, write_features
from aria.parallel import dask_scheduler

PARAMS = {"graddot": {}, "trak": {"lambda": 0.01}}


def write_store(path: Path, n: int, k: int, q: int, seed: int, row_chunk: int) -> None:
    rng = np.random.default_rng(seed)
    train = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, 1 << 16):
        train[s : s + (1 << 16)] = rng.standard_normal((min(1 << 16, n - s), k), dtype=np.float32)
    write_features(
        path,
        train=train,
        query=rng.standard_normal((q, k), dtype=np.float32),
        train_ids=np.char.add("s", np.arange(n).astype(str)),
        query_ids=np.char.add("q", np.arange(q).astype(str)),
        attrs={"lr": 1.0},
        row_chunk=row_chunk,
    )


def run(engine: str, method: str, path: Path, out: Path, *, row_chunk: int, threads: int) -> float:
    t0 = time.perf_counter()
    lazy = engine == "dask"
    f = read_features(path, lazy=lazy, row_chunk=row_chunk)
    f["lr"] = 1.0
    with ScoreWriter(out, f["train_ids"], f["query_ids"], attrs={"method": method}, row_chunk=row_chunk) as w:
        if lazy:
            with dask_scheduler("threads", threads=threads):
                w.store(score_dask(method, [f], PARAMS[method], row_chunk=row_chunk))
        else:
            for start, block in score_blocks(method, [f], PARAMS[method], row_chunk=row_chunk):
                w.write(start, block)
    return time.perf_counter() - t0


def max_diff(a: Path, b: Path) -> tuple[float, float]:
    A, B = open_scores(a)[0], open_scores(b)[0]
    d, m = 0.0, 0.0
    for (_, x), (_, y) in zip(iter_row_chunks(A), iter_row_chunks(B)):
        d = max(d, float(np.abs(x.astype(np.float64) - y).max()))
        m = max(m, float(np.abs(x).max()))
    return d, m


def matrix_work(tmp: Path, scores: Path, *, threads: int, per_track: int) -> None:
    """The Gram pass and the track-level matrix of ``scores``, numpy streaming against dask."""
    import dask.array as da

    from aria.attribution.tracklevel import track_level, track_level_dask
    from aria.evaluation.reliability import gram_stats, gram_stats_dask, reliability_from_stats

    S, rows, cols = open_scores(scores)
    n = S.shape[0]
    print(
        f"\n{'step (on the ' + str(n) + ' x ' + str(S.shape[1]) + ' store)':<44}{'numpy s':>10}{'dask s':>10}"
        f"{'dask / numpy':>14}{'max |diff|':>14}"
    )
    t0 = time.perf_counter()
    ref = reliability_from_stats(gram_stats(scores))
    t_np = time.perf_counter() - t0
    t0 = time.perf_counter()
    with dask_scheduler("threads", threads=threads):
        got = reliability_from_stats(gram_stats_dask(da.from_zarr(S)))
    t_da = time.perf_counter() - t0
    d = max(abs(got[k] - ref[k]) for k in ("r1", "r2_5", "c_bar", "rho_bar"))
    label = "Gram pass (diagnostics r1, r2_5, c_bar, rho_bar)"
    print(f"{label:<44}{t_np:>10.1f}{t_da:>10.1f}{t_da / t_np:>14.2f}{d:>14.2e}")

    tracks = np.char.add("t", (np.arange(n) // per_track).astype(str))
    t0 = time.perf_counter()
    tids, Sb = track_level(S, tracks, normalize="zscore")
    with ScoreWriter(tmp / "tl_np.zarr", tids, cols) as w:
        w.write(0, Sb)
    t_np = time.perf_counter() - t0
    t0 = time.perf_counter()
    with dask_scheduler("threads", threads=threads):
        tids_d, lazy = track_level_dask(da.from_zarr(S), tracks, normalize="zscore")
        with ScoreWriter(tmp / "tl_da.zarr", tids_d, cols) as w:
            w.store(lazy)
    t_da = time.perf_counter() - t0
    d, _ = max_diff(tmp / "tl_np.zarr", tmp / "tl_da.zarr")
    label = f"track-level matrix, zscore ({len(tids)} tracks)"
    print(f"{label:<44}{t_np:>10.1f}{t_da:>10.1f}{t_da / t_np:>14.2f}{d:>14.2e}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=512)
    ap.add_argument("--q", type=int, default=1000)
    ap.add_argument("--row-chunk", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="dask worker threads (default: CPUs)")
    ap.add_argument("--methods", default="graddot,trak")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--segments-per-track", type=int, default=10, help="track-level rows (0: skip the matrix work)")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_dask_"))
    try:
        print(f"N={a.n} k={a.k} Q={a.q} row chunk {a.row_chunk}; {os.cpu_count()} CPUs, dask threads {a.threads}")
        t0 = time.perf_counter()
        write_store(tmp / "f.zarr", a.n, a.k, a.q, a.seed, a.row_chunk)
        print(f"wrote the feature store in {time.perf_counter() - t0:.1f} s")
        print(f"\n{'method':<10}{'numpy s':>10}{'dask s':>10}{'dask / numpy':>14}{'max |diff|':>14}{'max |S|':>10}")
        methods = a.methods.split(",")
        for method in methods:
            t_np = run("numpy", method, tmp / "f.zarr", tmp / "np.zarr", row_chunk=a.row_chunk, threads=a.threads)
            t_da = run("dask", method, tmp / "f.zarr", tmp / "da.zarr", row_chunk=a.row_chunk, threads=a.threads)
            d, m = max_diff(tmp / "np.zarr", tmp / "da.zarr")
            print(f"{method:<10}{t_np:>10.1f}{t_da:>10.1f}{t_da / t_np:>14.2f}{d:>14.2e}{m:>10.1f}")
            shutil.rmtree(tmp / "da.zarr")
            if method != methods[-1]:
                shutil.rmtree(tmp / "np.zarr")
        if a.segments_per_track:
            matrix_work(tmp, tmp / "np.zarr", threads=a.threads, per_track=a.segments_per_track)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
