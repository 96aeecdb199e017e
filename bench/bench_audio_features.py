"""Benchmark the docs/spec.md §5 audio features: seconds per 30 s track, per feature.

Synthesizes one 30 s mono signal at 22050 Hz (a 112 BPM click/kick pattern
over a C-G-Am-F progression of additive sawtooth-like triads, 2 s per chord,
plus a little noise), builds :func:`aria.audio.features.build_processors` once
(timed separately), runs one untimed warm-up of everything (torch/oneDNN first
calls, librosa filter caches), then times each step ``--repeats`` times and
reports the median and min wall seconds:

* beatnet  - :func:`aria.audio.features.beat_times` (BeatNet CRNN + madmom DBN)
* onset    - :func:`aria.audio.features.onset_times` (librosa onset_detect)
* chroma   - ``librosa.feature.chroma_cqt``
* tonnetz  - ``librosa.feature.tonnetz`` from that chroma
* chords   - :func:`aria.audio.features.chord_roots` (resample to 44.1 kHz,
             madmom DeepChroma + CRF)
* mfcc     - ``librosa.feature.mfcc`` (13)
* cqt      - ``librosa.cqt`` (84 bins) + amplitude_to_db
* extract  - :func:`aria.audio.features.extract` end to end (includes the
             silence check and histogramming)

Then (``--shard N``, default 38: the demo's shard size) the issue-12 figure: one
``aria audio-features`` job on a shard of N such tracks (tempo, key and noise varied per
track), wall time from process start to exit, imports and models included, against the
shard's total audio duration; 1 thread, as the workflow runs it.

Usage::

    python bench/bench_audio_features.py                 # 3 repeats, all threads
    python bench/bench_audio_features.py --threads 1 --repeats 5
    python bench/bench_audio_features.py --shard 0       # the per-feature table only
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

SR = 22050


def synth(dur_s: float = 30.0, sr: int = SR, seed: int = 0, *, bpm: float = 112.0, shift: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(dur_s * sr)
    t = np.arange(n) / sr
    chords = [[m + shift for m in c] for c in ([48, 52, 55], [43, 47, 50], [45, 48, 52], [41, 45, 48])]
    y = np.zeros(n)
    seg = int(2.0 * sr)
    for i in range(0, n, seg):
        c = chords[(i // seg) % 4]
        tt = t[i : i + seg] - t[i]
        for m in c:
            f = 440.0 * 2 ** ((m - 69) / 12)
            for k in range(1, 9):
                y[i : i + seg] += np.sin(2 * np.pi * k * f * tt) / k / 3
    period = 60.0 / bpm
    kick_n = int(0.08 * sr)
    kt = np.arange(kick_n) / sr
    kick = np.sin(2 * np.pi * (60 + 80 * np.exp(-kt / 0.02)) * kt) * np.exp(-kt / 0.05) * 4
    k = 0
    while int(k * period * sr) + kick_n < n:
        i = int(k * period * sr)
        y[i : i + kick_n] += kick
        k += 1
    y += 0.01 * rng.standard_normal(n)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=30.0, help="signal length in seconds")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--shard", type=int, default=38, help="tracks of the shard-level run (0: skip it)")
    a = ap.parse_args()

    t0 = time.perf_counter()
    import librosa
    import torch

    import aria.audio.features as A

    t_import = time.perf_counter() - t0
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    procs = A.build_processors()
    t_build = time.perf_counter() - t0

    y = synth(a.duration)
    holder: dict = {}

    def chroma():
        holder["chroma"] = librosa.feature.chroma_cqt(y=y, sr=SR, hop_length=512)

    steps = {
        "beatnet": lambda: A.beat_times(y, sr=SR, processors=procs),
        "onset": lambda: A.onset_times(y, sr=SR),
        "chroma": chroma,
        "tonnetz": lambda: librosa.feature.tonnetz(chroma=holder["chroma"]),
        "chords": lambda: A.chord_roots(y, sr=SR, processors=procs),
        "mfcc": lambda: librosa.feature.mfcc(y=y, sr=SR, n_mfcc=13),
        "cqt": lambda: librosa.amplitude_to_db(np.abs(librosa.cqt(y=y, sr=SR, n_bins=84)), ref=np.max),
        "extract": lambda: A.extract(y, sr=SR, processors=procs),
    }
    for fn in steps.values():  # warm-up, untimed
        fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(a.repeats):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)

    f = A.extract(y, sr=SR, processors=procs)
    print(
        f"platform: {platform.platform()}, python {platform.python_version()}, "
        f"cpus={os.cpu_count()}, torch threads={torch.get_num_threads()}, "
        f"torch {torch.__version__}, librosa {librosa.__version__}"
    )
    print(f"signal: {a.duration:.0f} s synthetic mono at {SR} Hz; repeats={a.repeats} (after 1 warm-up)")
    print(f"imports {t_import:.2f} s, build_processors {t_build:.2f} s (once per process/shard)")
    edges = np.linspace(0.2, 2.0, 17)
    b = int(np.argmax(f["beat_interval_hist"]))
    print(
        f"sanity: beat-interval peak bin [{edges[b]:.3f}, {edges[b + 1]:.3f}) s "
        f"(kick period {60 / 112:.3f} s), chord root motion {A.chord_root_motion(f['chords'])[:7].tolist()}"
    )
    scale = 30.0 / a.duration
    print()
    print(f"{'feature':<10}{'median s':>10}{'min s':>10}{'s / 30 s track':>16}{'x realtime':>12}")
    print("-" * 58)
    parts = 0.0
    for name, ts in times.items():
        med = statistics.median(ts)
        if name != "extract":
            parts += med
        print(f"{name:<10}{med:>10.3f}{min(ts):>10.3f}{med * scale:>16.3f}{a.duration / med:>12.0f}")
    print("-" * 58)
    print(f"{'sum parts':<10}{parts:>10.3f}{'':>10}{parts * scale:>16.3f}{a.duration / parts:>12.0f}")
    if a.shard:
        shard_job(a.shard, a.duration, per_track_s=statistics.median(times["extract"]) if a.threads == 1 else None)


def shard_job(n_tracks: int, dur_s: float = 30.0, *, per_track_s: float | None = None) -> None:
    """One ``aria audio-features`` job on ``n_tracks`` synthetic tracks: wall time against audio duration."""
    import json
    import subprocess
    import sys
    import tempfile

    import soundfile as sf

    aria = os.path.join(os.path.dirname(sys.executable), "aria")
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for i in range(n_tracks):
            y = synth(dur_s, seed=i, bpm=90 + 3 * (i % 20), shift=i % 7)
            sf.write(os.path.join(tmp, f"t{i}.wav"), y, SR)
            rows.append(f"t{i},t{i}.wav,g,train")
        with open(os.path.join(tmp, "m.csv"), "w") as fh:
            fh.write("track_id,path,genre,split\n" + "\n".join(rows) + "\n")
        params = json.dumps({"shard": 0, "n_shards": 1, "sr": SR, "root": None})
        cmd = [aria, "audio-features", "--manifest", "m.csv", "--params", params, "--threads", "1"]
        cmd += ["--out", "f.npz", "--out-failures", "f.csv"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=tmp, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True)
        wall = time.perf_counter() - t0
    total = n_tracks * dur_s
    print()
    print(f"one shard: {n_tracks} tracks x {dur_s:.0f} s = {total:.0f} s of audio, 1 thread (as the workflow runs it)")
    print(f"aria audio-features, process start to exit: {wall:.2f} s = {total / wall:.1f} x real time (target >= 60 x)")
    if per_track_s:
        rest = wall - n_tracks * per_track_s
        print(
            f"  of which extract() per track {per_track_s:.3f} s x {n_tracks} = {n_tracks * per_track_s:.1f} s; "
            f"imports, models, file reading and writing {rest:.1f} s"
        )


if __name__ == "__main__":
    main()
