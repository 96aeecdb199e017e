"""Benchmark aria.evaluation.reliability.reliability on a zarr score store.

Writes a random N x Q score store (default 200 000 x 1 000 float32, 0.8 GB),
then times, in one run and side by side:

* read     - decode the store once, chunk by chunk (sum over chunks): the I/O floor;
* stream   - ``reliability(path)``: one streaming pass + Q x Q eigendecomposition,
             as it runs by default (the next chunk read in a background thread,
             float64 products), then without the read-ahead (``prefetch=0``, Aria
             before issue 12) and with float32 products (``precision="float32"``);
* brute    - numpy on the full matrix in memory: np.corrcoef +
             np.linalg.svd(full_matrices=False) + the §4 formulas (skipped when
             available RAM is too small),

and prints the ratios stream/read and brute/stream and the largest absolute
difference between the streamed and brute-force diagnostics. ``--only-default``
runs just the default streaming pass, for a peak-memory measurement at large N
(``make bench`` runs it at N = 10^6 in a process of its own).

Usage::

    python bench/bench_reliability.py                      # 200000 x 1000
    python bench/bench_reliability.py --n 20000 --q 300    # quick
    python bench/bench_reliability.py --out /tmp/s.zarr --keep
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aria.evaluation.reliability import reliability
from aria.io.stores import DEFAULT_ROW_CHUNK, ScoreWriter, iter_row_chunks, open_scores

KEYS = ("r1", "r2_5", "c_bar", "rho_bar")


def available_ram() -> int:
    """MemAvailable from /proc/meminfo in bytes (fallback: free physical pages)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def max_rss() -> int:
    """Peak resident set size of this process so far, bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def write_store(path: Path, n: int, q: int, dtype, row_chunk: int, seed: int) -> None:
    """Random scores with some structure: per-query offset + weak rank-1 + noise.

    Generated and written chunk by chunk, so the full matrix is never in memory.
    """
    rng = np.random.default_rng(seed)
    offset = rng.uniform(-0.5, 0.5, q)
    loading = rng.uniform(0.5, 1.5, q)
    with ScoreWriter(
        path, (f"seg{j}" for j in range(n)), (f"q{i}" for i in range(q)), attrs={"method": "bench"}, row_chunk=row_chunk
    ) as w:
        for start in range(0, n, row_chunk):
            r = min(row_chunk, n - start)
            block = offset + 0.3 * rng.standard_normal((r, 1)) * loading
            block += rng.standard_normal((r, q))
            w.write(start, block.astype(dtype))


def time_read(path: Path) -> tuple[float, float]:
    arr, _, _ = open_scores(path)
    t = time.perf_counter()
    total = 0.0
    for _, block in iter_row_chunks(arr):
        total += float(block.sum(dtype=np.float64))
    return time.perf_counter() - t, total


def brute_force(path: Path) -> tuple[dict, float]:
    """Full-matrix reference; returns (diagnostics, seconds incl. loading)."""
    t = time.perf_counter()
    arr, _, _ = open_scores(path)
    S = np.asarray(arr[:], dtype=np.float64)
    n, q = S.shape
    corr = np.corrcoef(S, rowvar=False)
    sv = np.linalg.svd(S, full_matrices=False, compute_uv=True)[1]
    total = np.einsum("ij,ij->", S, S)
    colsum = S.sum(axis=0)
    colsumsq = np.einsum("ij,ij->j", S, S)
    with np.errstate(invalid="ignore", divide="ignore"):
        conc = np.where(colsumsq > 0, colsum**2 / (n * colsumsq), 0.0)
    corr = np.nan_to_num(corr, nan=0.0)
    iu = np.triu_indices(q, 1)
    out = {
        "r1": float(sv[0] ** 2 / total),
        "r2_5": float((sv[1:5] ** 2).sum() / total),
        "c_bar": float(conc.mean()),
        "rho_bar": float(np.abs(corr[iu]).mean()),
    }
    return out, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="training rows N (default 200000)")
    ap.add_argument("--q", type=int, default=1000, help="queries Q (default 1000)")
    ap.add_argument("--dtype", default="float32", help="dtype of generated scores (store is float32)")
    ap.add_argument(
        "--row-chunk", type=int, default=DEFAULT_ROW_CHUNK, help=f"store row chunk (default {DEFAULT_ROW_CHUNK})"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", type=Path, default=None, help="store path (default: a temporary directory, removed afterwards)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the store written to --out")
    ap.add_argument("--no-brute", action="store_true", help="skip the numpy brute force")
    ap.add_argument("--only-default", action="store_true", help="time the default pass only; print peak RSS")
    args = ap.parse_args(argv)

    n, q = args.n, args.q
    tmpdir = None
    if args.out is None:
        tmpdir = tempfile.mkdtemp(prefix="bench_reliability_")
        path = Path(tmpdir) / "scores.zarr"
    else:
        path = args.out
    try:
        print(
            f"N={n} Q={q} dtype={args.dtype} store row_chunk={args.row_chunk} "
            f"({n * q * 4 / 2**30:.2f} GiB float32) cores={os.cpu_count()} "
            f"numpy={np.__version__}"
        )
        t = time.perf_counter()
        write_store(path, n, q, np.dtype(args.dtype), args.row_chunk, args.seed)
        print(f"wrote {path} in {time.perf_counter() - t:.2f} s")

        time_read(path)  # warm the page cache so 'read' and 'stream' see the same I/O
        t_read, _ = time_read(path)

        t = time.perf_counter()
        got = reliability(path)
        t_rel = time.perf_counter() - t
        rss_stream = max_rss()
        if args.only_default:
            print(f"reliability(path): {t_rel:.2f} s, read {t_read:.2f} s, ratio {t_rel / t_read:.2f}")
            print(f"peak RSS of this process (writing, reading, streaming) = {gib(rss_stream)}")
            for k in KEYS:
                print(f"{k:<10}{got[k]:>16.10f}")
            return 0
        variants = {}
        for label, kw in (
            ("no read-ahead, float64", dict(prefetch=0)),
            ("float32 products", dict(precision="float32")),
        ):
            t = time.perf_counter()
            variants[label] = (reliability(path, **kw), time.perf_counter() - t)

        want, t_brute = None, None
        need = 32 * n * q + (256 << 20)  # f32 load + f64 copy + svd copy + U (+ slack)
        avail = available_ram()
        if args.no_brute:
            print("brute force: skipped (--no-brute)")
        elif need > avail:
            print(f"brute force: skipped, needs ~{gib(need)} but only {gib(avail)} available")
        else:
            want, t_brute = brute_force(path)

        print()
        print(f"{'step':<34}{'seconds':>10}")
        print(f"{'read store once (sum over chunks)':<34}{t_read:>10.2f}")
        print(f"{'reliability(path), streaming':<34}{t_rel:>10.2f}")
        for label, (_, dt) in variants.items():
            print(f"{'  ' + label:<34}{dt:>10.2f}")
        if t_brute is not None:
            print(f"{'numpy brute force (corrcoef+svd)':<34}{t_brute:>10.2f}")
        print()
        print(f"ratio reliability / read  = {t_rel / t_read:8.2f}")
        for label, (_, dt) in variants.items():
            print(f"  {label + ' / read':<24}= {dt / t_read:8.2f}")
        if t_brute is not None:
            print(f"ratio brute / reliability = {t_brute / t_rel:8.2f}")
        print(
            f"peak RSS through streaming = {gib(rss_stream)}"
            + (f", after brute force = {gib(max_rss())}" if t_brute is not None else "")
        )
        print()
        print(f"{'':<10}{'streaming':>16}" + (f"{'brute force':>16}{'abs diff':>12}" if want else ""))
        for k in KEYS:
            line = f"{k:<10}{got[k]:>16.10f}"
            if want:
                line += f"{want[k]:>16.10f}{abs(got[k] - want[k]):>12.2e}"
            print(line)
        if want:
            print(f"max abs diff = {max(abs(got[k] - want[k]) for k in KEYS):.3e}")
        for label, (res, _) in variants.items():
            ref, name = (want, "brute force") if want else (got, "the default")
            print(f"{label}: max abs diff to {name} = {max(abs(res[k] - ref[k]) for k in KEYS):.3e}")
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        elif not args.keep:
            shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
