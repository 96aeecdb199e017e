"""Hand-written code against the well-kept library function that could replace it (issue 7).

1. k-means (semantic tokenizer, RVQ codebooks): Aria's former Lloyd's k-means with
   k-means++ seeding (kept here as the reference) against scikit-learn's ``KMeans``
   (one run, greedy k-means++, one thread), which Aria now uses. Same data, same k.
2. mel -> linear power inversion (MelRVQ decoding): Aria's Richardson-Lucy
   multiplicative updates against ``librosa.feature.inverse.mel_to_stft`` (NNLS).
   Quality is the mean |log| error of the re-projected mel spectrum (what a log-mel
   comparison sees) and of the linear spectrum.

Prints a table per comparison with ratios against the first row.
"""

from __future__ import annotations

import time

import librosa
import numpy as np

from aria.audio.tokenizers import _mel_basis, _mel_to_power, kmeans, nearest


def lloyd_reference(x, k, *, random_state, n_iter=30, tol=1e-5):
    """The hand-written k-means Aria used before (k-means++ seeding, Lloyd iterations)."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    rng = np.random.default_rng(random_state)
    x2 = np.einsum("ij,ij->i", x, x)

    def sqdist(c):
        return np.maximum(x2 - 2.0 * (x @ c) + c @ c, 0.0)

    centers = np.empty((k, d))
    centers[0] = x[rng.integers(n)]
    d2 = sqdist(centers[0])
    for j in range(1, k):
        cum = np.cumsum(d2)
        idx = int(min(np.searchsorted(cum, rng.random() * cum[-1], side="right"), n - 1))
        centers[j] = x[idx]
        np.minimum(d2, sqdist(centers[j]), out=d2)
    prev = np.inf
    for _ in range(n_iter):
        labels, dist = nearest(x, centers)
        inertia = float(dist.sum())
        counts = np.bincount(labels, minlength=k)
        sums = np.stack([np.bincount(labels, weights=x[:, j], minlength=k) for j in range(d)], axis=1)
        ok = counts > 0
        centers[ok] = sums[ok] / counts[ok, None]
        empty = np.flatnonzero(~ok)
        if len(empty):
            centers[empty] = x[np.argsort(-dist, kind="stable")[: len(empty)]]
        if len(empty) == 0 and prev - inertia <= tol * max(prev, 1e-300):
            break
        prev = inertia
    return centers


def bench_kmeans():
    rng = np.random.default_rng(0)
    # 20,000 frames of 40-d features in 50 blobs (the scale of the demo's semantic tokenizer)
    x = np.concatenate([rng.standard_normal((400, 40)) * 0.5 + rng.standard_normal(40) * 3 for _ in range(50)])
    print("k-means: 20,000 x 40 frames, one thread, median of 3 seeds")
    print(f"{'k':>5} {'implementation':<34} {'inertia':>12} {'ratio':>6} {'seconds':>8} {'ratio':>6}")
    for k in (64, 256):
        rows = []
        for name, fn in (
            ("Aria's former Lloyd (reference)", lloyd_reference),
            ("scikit-learn KMeans (Aria now)", kmeans),
        ):
            res = []
            for seed in (1, 2, 3):
                t0 = time.perf_counter()
                c = fn(x, k, random_state=seed)
                res.append((nearest(x, c)[1].sum(), time.perf_counter() - t0))
            rows.append((name, np.median([r[0] for r in res]), np.median([r[1] for r in res])))
        for name, inertia, sec in rows:
            print(
                f"{k:>5} {name:<34} {inertia:>12.1f} {inertia / rows[0][1]:>6.3f} {sec:>8.2f} {sec / rows[0][2]:>6.2f}"
            )


def bench_mel_inversion():
    sr, n_fft, hop = 22050, 2048, 1764
    rng = np.random.default_rng(0)
    t = np.arange(10 * sr) / sr
    y = (
        0.3 * np.sin(2 * np.pi * 220 * t)
        + 0.2 * np.sin(2 * np.pi * 1330 * t) * (t % 1 < 0.5)
        + 0.05 * rng.standard_normal(len(t))
    ).astype(np.float32)
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)) ** 2
    B = _mel_basis(sr=sr, n_fft=n_fft, n_mels=64)
    mel = B @ S

    def errors(P):
        return (
            float(np.mean(np.abs(np.log(B @ P + 1e-10) - np.log(mel + 1e-10)))),
            float(np.mean(np.abs(np.log(P[1:] + 1e-10) - np.log(S[1:] + 1e-10)))),
        )

    rows = []
    t0 = time.perf_counter()
    P = _mel_to_power(mel, B, n_iter=100)
    rows.append(("Aria Richardson-Lucy, 100 updates", *errors(P), time.perf_counter() - t0))
    t0 = time.perf_counter()
    P = librosa.feature.inverse.mel_to_stft(mel, sr=sr, n_fft=n_fft, power=2.0) ** 2
    rows.append(("librosa mel_to_stft (NNLS)", *errors(P), time.perf_counter() - t0))
    print("\nmel -> linear power inversion: 10 s test signal, 64 mels, n_fft 2048")
    print(f"{'implementation':<36} {'log-mel err':>11} {'ratio':>6} {'log-lin err':>11} {'seconds':>8} {'ratio':>6}")
    for name, em, el, sec in rows:
        print(f"{name:<36} {em:>11.4f} {em / rows[0][1]:>6.1f} {el:>11.3f} {sec:>8.2f} {sec / rows[0][3]:>6.1f}")


if __name__ == "__main__":
    bench_kmeans()
    bench_mel_inversion()
