"""Aria's MIDI reader (``aria.io.midi.read_midi``, on mido) against symusic, miditok's own parser.

Reads every MIDI file under a folder both ways, checks that they give the same notes (as a
multiset: onsets and offsets in seconds to 10 µs, as the two round tick-to-second conversions
differently in the last bits; pitches; velocities) and prints the time of each and their ratio.
symusic parses in C++; Aria's reader adds the checks its error messages rely on (empty files,
SMPTE division, drums-only files) and the tempo map.

Usage: python bench/bench_midi_parser.py FOLDER [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np


def symusic_notes(path) -> list[tuple]:
    import symusic

    score = symusic.Score(str(path)).to("second")
    return [
        (round(n.time, 5), round(n.time + n.duration, 5), n.pitch, n.velocity)
        for t in score.tracks
        if not t.is_drum
        for n in t.notes
    ]


def aria_notes(path) -> list[tuple]:
    from aria.io.midi import read_midi

    notes, _ = read_midi(path)
    return [(round(float(a), 5), round(float(b), 5), int(p), int(v)) for a, b, p, v, _ in notes.tolist()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    files = sorted(Path(a.folder).rglob("*.mid"))
    if not files:
        raise SystemExit(f"{a.folder}: no .mid files")
    same = sum(Counter(aria_notes(f)) == Counter(symusic_notes(f)) for f in files)
    times = {}
    for name, fn in (("aria (mido)", aria_notes), ("symusic", symusic_notes)):
        runs = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            for f in files:
                fn(f)
            runs.append(time.perf_counter() - t0)
        times[name] = float(np.median(runs))
    n_notes = sum(len(symusic_notes(f)) for f in files)
    print(f"{len(files)} files, {n_notes} notes; the same notes both ways in {same} of {len(files)} files")
    for name, t in times.items():
        print(f"{name:>14}: {t * 1000:8.1f} ms  ({t / len(files) * 1000:.2f} ms per file)")
    print(f"{'ratio':>14}: aria / symusic = {times['aria (mido)'] / times['symusic']:.1f}")


if __name__ == "__main__":
    main()
