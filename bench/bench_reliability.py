"""Benchmark aria.evaluation.reliability.reliability against one read of its zarr score store.

Writes a random N x Q score store (default 120 000 x 1 000 float32, 0.45 GiB, row chunks of
4 096), then times, side by side, best of ``--repeat`` interleaved rounds (the reference
machine is shared and its timings noisy):

* read     - decode every chunk of the store once (``iter_row_chunks``): the I/O floor;
* product  - the pass's per-chunk work alone, on the chunks already in memory: centring,
             float32 products merged in float64, the float64 diagonal (``_chunk_moments``),
             with the pass's worker threads; and the bare float32 SYRK of every chunk;
* stream   - ``reliability(path)`` as it runs by default (float32 products, ``workers``
             threads reading and multiplying chunks at once), then with ``workers=0`` (the
             calling thread only, the BLAS pool as configured) and with float64 products;
* floor    - ``max(read, product)``: what perfect overlap of the read and the products
             would give if they did not compete for the same cores;
* brute    - numpy on the full matrix in memory: np.corrcoef + np.linalg.svd + the §4
             formulas (skipped when RAM is short, or with ``--no-brute``),

and prints the ratios to the read, the largest relative difference of each variant's
diagnostics from the brute force, and (``--profile``) the CPU time per chunk of each
step of the per-chunk work on one thread. ``--only-default`` runs just the default
streaming pass, for a peak-memory measurement at large N (``make bench`` runs it at
N = 10^6 in a process of its own).

Usage::

    python bench/bench_reliability.py                      # 120000 x 1000
    python bench/bench_reliability.py --n 20000 --q 300    # quick
    python bench/bench_reliability.py --out /tmp/s.zarr --keep --profile
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

from aria.evaluation import reliability as rel
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


def time_read(path: Path) -> float:
    """Seconds to decode every chunk of the store once, in order, in the calling thread."""
    arr, _, _ = open_scores(path)
    t = time.perf_counter()
    for _ in iter_row_chunks(arr):
        pass
    return time.perf_counter() - t


def run_parallel(fn, items, workers: int) -> None:
    """``fn`` on every item with the pass's threading: ``workers`` threads, the BLAS pool shared out."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    if workers <= 1:
        with threadpool_limits(limits=rel._blas_threads() if workers == 0 else 1, user_api="blas"):
            for it in items:
                fn(it)
        return
    with (
        threadpool_limits(limits=max(1, rel._blas_threads() // workers), user_api="blas"),
        ThreadPoolExecutor(workers) as pool,
    ):
        list(pool.map(fn, items))


def time_products(blocks: list, workers: int) -> tuple[float, float]:
    """Seconds for the per-chunk work of the pass (centring, float32 products merged in float64,
    float64 diagonal) on in-memory chunks, and for the bare float32 SYRK of every chunk."""
    from scipy.linalg.blas import ssyrk

    t = time.perf_counter()
    run_parallel(lambda b: rel._chunk_moments(b, 0, "bench", "float32"), blocks, workers)
    t_chunk = time.perf_counter() - t
    t = time.perf_counter()
    run_parallel(lambda b: ssyrk(1.0, b.T, lower=0), blocks, workers)
    return t_chunk, time.perf_counter() - t


def profile_chunk(block: np.ndarray, repeat: int = 5) -> dict[str, float]:
    """CPU milliseconds of each step of one chunk's work on one thread (BLAS limited to 1), best of ``repeat``."""
    from scipy.linalg.blas import ssyrk
    from threadpoolctl import threadpool_limits

    mb = block.mean(axis=0, dtype=np.float64)
    xc = np.subtract(block, mb.astype(np.float32))
    g = np.zeros((block.shape[1],) * 2, order="F")
    p = ssyrk(1.0, xc[: rel.F32_BLOCK_ROWS].T, lower=0)
    steps = {
        "column means (float64)": lambda: block.mean(axis=0, dtype=np.float64),
        "centring (float32)": lambda: np.subtract(block, mb.astype(np.float32)),
        f"float32 SYRK, blocks of {rel.F32_BLOCK_ROWS} rows": lambda: [
            ssyrk(1.0, xc[s : s + rel.F32_BLOCK_ROWS].T, lower=0) for s in range(0, len(xc), rel.F32_BLOCK_ROWS)
        ],
        "float32 SYRK, whole chunk": lambda: ssyrk(1.0, xc.T, lower=0),
        "merge blocks into float64": lambda: [np.add(g, p, out=g) for _ in range(0, len(xc), rel.F32_BLOCK_ROWS)],
        "diagonal (float64)": lambda: np.einsum("ij,ij->j", xc, xc, dtype=np.float64),
        "whole chunk (_chunk_moments)": lambda: rel._chunk_moments(block, 0, "bench", "float32"),
        "float64 chunk (precision='float64')": lambda: rel._chunk_moments(block, 0, "bench", "float64"),
    }
    out = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name, fn in steps.items():
            best = float("inf")
            for _ in range(repeat):
                c = time.process_time()
                fn()
                best = min(best, time.process_time() - c)
            out[name] = 1e3 * best
    return out


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


def blocks_for_profile(arr) -> np.ndarray:
    """The store's first chunk as the pass reads it."""
    return np.asarray(arr[: rel.default_row_chunk(arr)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=120_000, help="training rows N (default 120000)")
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
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds; each time is the best (default 3)")
    ap.add_argument("--profile", action="store_true", help="CPU time per chunk of each step, one thread")
    ap.add_argument("--reuse", action="store_true", help="use the store already at --out instead of writing one")
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
        if args.reuse and path.exists():
            n, q = open_scores(path)[0].shape
            print(f"reusing {path} ({n} x {q})")
        else:
            t = time.perf_counter()
            write_store(path, n, q, np.dtype(args.dtype), args.row_chunk, args.seed)
            print(f"wrote {path} in {time.perf_counter() - t:.2f} s")

        time_read(path)  # warm the page cache so 'read' and 'stream' see the same I/O
        if args.only_default:
            t_read = time_read(path)
            t = time.perf_counter()
            got = reliability(path)
            t_rel = time.perf_counter() - t
            print(f"reliability(path): {t_rel:.2f} s, read {t_read:.2f} s, ratio {t_rel / t_read:.2f}")
            print(f"peak RSS of this process (writing, reading, streaming) = {gib(max_rss())}")
            for k in KEYS:
                print(f"{k:<10}{got[k]:>16.10f}")
            return 0

        arr = open_scores(path)[0]
        workers = min(rel._blas_threads(), -(-n // rel.default_row_chunk(arr)))
        blocks = [b for _, b in iter_row_chunks(arr, rows=rel.default_row_chunk(arr))]  # the pass's chunks
        variants = {
            "reliability(path), default": {},
            "  workers=0 (calling thread only)": {"workers": 0},
            "  float64 products": {"precision": "float64"},
        }
        times = {k: [] for k in ("read", "product", "syrk", *variants)}
        results = {}
        for _ in range(max(1, args.repeat)):  # interleaved rounds: drifting load hits every step alike
            times["read"].append(time_read(path))
            t_chunk, t_syrk = time_products(blocks, workers)
            times["product"].append(t_chunk)
            times["syrk"].append(t_syrk)
            for label, kw in variants.items():
                t = time.perf_counter()
                results[label] = reliability(path, **kw)
                times[label].append(time.perf_counter() - t)
        best = {k: min(v) for k, v in times.items()}
        rss_stream = max_rss()
        del blocks

        want, t_brute = None, None
        need = 32 * n * q + (256 << 20)  # f32 load + f64 copy + svd copy + U (+ slack)
        avail = available_ram()
        if args.no_brute:
            print("brute force: skipped (--no-brute)")
        elif need > avail:
            print(f"brute force: skipped, needs ~{gib(need)} but only {gib(avail)} available")
        else:
            want, t_brute = brute_force(path)

        t_read = best["read"]
        floor = max(t_read, best["product"])
        print()
        print(f"workers = {workers} (BLAS pool {rel._blas_threads()} threads), best of {args.repeat} rounds")
        print(f"{'step':<44}{'seconds':>9}{'/ read':>9}{'/ floor':>9}")
        rows = [
            ("read the store once (decode every chunk)", t_read),
            ("product alone, chunks in memory", best["product"]),
            ("  of which bare float32 SYRK", best["syrk"]),
            ("floor max(read, product)", floor),
            *((label, best[label]) for label in variants),
        ]
        if t_brute is not None:
            rows.append(("numpy brute force (corrcoef + svd)", t_brute))
        for label, sec in rows:
            print(f"{label:<44}{sec:>9.2f}{sec / t_read:>9.2f}{sec / floor:>9.2f}")
        print("all rounds (s): " + "; ".join(f"{k} " + " ".join(f"{x:.2f}" for x in v) for k, v in times.items()))
        print(
            f"peak RSS through streaming (chunks held in memory for 'product') = {gib(rss_stream)}"
            + (f", after brute force = {gib(max_rss())}" if t_brute is not None else "")
        )
        print()
        ref, name = (want, "brute force") if want else (results["  float64 products"], "float64 products")
        print(f"{'':<10}{name:>18}" + "".join(f"{lab.strip()[:22]:>24}" for lab in variants))
        for k in KEYS:
            print(f"{k:<10}{ref[k]:>18.12f}" + "".join(f"{results[lab][k]:>24.12f}" for lab in variants))
        for label, res in results.items():
            worst = max(abs(res[k] - ref[k]) / max(abs(ref[k]), 1e-300) for k in KEYS)
            print(f"{label.strip()}: max relative difference to {name} = {worst:.2e}")
        if args.profile:
            print()
            print(f"CPU ms per chunk of {len(blocks_for_profile(arr))} rows, one thread (BLAS limited to 1):")
            for step, ms in profile_chunk(blocks_for_profile(arr)).items():
                print(f"  {step:<42}{ms:>8.1f}")
            t = time.process_time()
            np.asarray(arr[: rel.default_row_chunk(arr)])
            print(f"  {'read (decode) one chunk':<42}{1e3 * (time.process_time() - t):>8.1f}")
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        elif not args.keep:
            shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
