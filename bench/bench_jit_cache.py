"""What each way of keeping numba's JIT cache costs one audio-feature job (issue 6).

Runs the real workflow job ``audio-features`` on a shard of ``--tracks`` demo
tracks (from ``results/demo_audio/corpus``, made by ``make demo``) as a fresh
process under each strategy, ``--repeats`` times, and prints the median wall
time of the whole job and its ratio to the reference:

reference  shared cache, already warm: the old behaviour once nothing races
           (``python -m aria.cli`` with NUMBA_CACHE_DIR at a warm shared folder).
           Unsafe in parallel (issue 6); the fastest a job can be.
cold       a private, empty cache per job: every job compiles librosa's kernels
           from scratch. Turning caching off costs the same (numba then compiles
           in memory on every run), so it is not measured separately.
template   what Aria does: the ``aria`` supervisor copies the read-only template
           built by ``aria warm-jit-cache`` into a private folder (needs the
           template; ``make venv`` builds it).
nojit      NUMBA_DISABLE_JIT=1: no compilation at all, librosa's kernels run as
           plain Python (``--nojit`` to include it; slow).

Usage::

    .venv/bin/python bench/bench_jit_cache.py [--tracks 4] [--repeats 3] [--nojit]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def job(cmd_prefix, manifest, root, out, env):
    params = json.dumps({"shard": 0, "n_shards": 1, "sr": 22050, "root": str(root)})
    cmd = [*cmd_prefix, "audio-features", "--manifest", str(manifest), "--params", params]
    cmd += ["--out", str(out / "f.npz"), "--out-failures", str(out / "f.csv")]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"job failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nojit", action="store_true")
    a = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from aria.runtime import jit_template_dir

    corpus = REPO / "results" / "demo_audio" / "corpus"
    if not (corpus / "manifest.csv").exists():
        raise SystemExit(f"{corpus}/manifest.csv not found: run `make demo` first")
    template = jit_template_dir()
    if not template.is_dir():
        raise SystemExit(f"no JIT template at {template}: run `.venv/bin/aria warm-jit-cache`")
    work = Path(tempfile.mkdtemp(prefix="bench-jit-"))
    lines = (corpus / "manifest.csv").read_text().splitlines()
    manifest = work / "manifest.csv"
    manifest.write_text("\n".join(lines[: a.tracks + 1]) + "\n")
    base = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "NUMBA_DISABLE_JIT")}
    base.update(OMP_NUM_THREADS="1", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    direct = [str(BIN / "python"), "-m", "aria.cli"]  # unsupervised: the cache is whatever env says

    warm = work / "warm"
    shutil.copytree(template, warm)

    def reference():
        return job(direct, manifest, corpus, work, dict(base, NUMBA_CACHE_DIR=str(warm)))

    def cold():
        d = Path(tempfile.mkdtemp(dir=work))
        return job(direct, manifest, corpus, work, dict(base, NUMBA_CACHE_DIR=str(d)))

    def templated():
        return job([str(BIN / "aria")], manifest, corpus, work, base)

    def nojit():
        return job(direct, manifest, corpus, work, dict(base, NUMBA_DISABLE_JIT="1"))

    cases = [
        ("reference (shared, warm; unsafe)", reference),
        ("cold (private, empty)", cold),
        ("template (private copy; Aria)", templated),
    ]
    if a.nojit:
        cases.append(("nojit (NUMBA_DISABLE_JIT=1)", nojit))
    reference()  # warm the page cache and the shared folder's entries for this machine
    times = {}
    for name, fn in cases:
        times[name] = [fn() for _ in range(a.repeats)]
    ref = statistics.median(times[cases[0][0]])
    print(f"audio-features job, {a.tracks} demo tracks of 30 s, 1 thread, median of {a.repeats}:")
    print("| strategy | seconds per job | ratio to reference | extra seconds per job |")
    print("|---|---|---|---|")
    for name, _ in cases:
        m = statistics.median(times[name])
        print(f"| {name} | {m:.2f} | {m / ref:.2f} | {m - ref:+.2f} |")
    t0 = time.perf_counter()
    for _ in range(10):
        d = Path(tempfile.mkdtemp(dir=work))
        shutil.copytree(template, d, dirs_exist_ok=True)
    n = sum(1 for _ in template.rglob("*.nb?"))
    size = sum(f.stat().st_size for f in template.rglob("*") if f.is_file())
    print(f"copying the template ({n} files, {size / 2**20:.1f} MiB): {(time.perf_counter() - t0) / 10 * 1e3:.0f} ms")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
