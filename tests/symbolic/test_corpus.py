"""Demo-corpus helpers: quotas, truncation and seeded synthetic dynamics (hand cases)."""

import numpy as np

from aria.symbolic.corpus import quotas, synthetic_dynamics, truncate_notes
from aria.symbolic.notes import make_notes


def test_quotas_split_evenly():
    assert quotas(40, 4) == [10, 10, 10, 10]
    assert quotas(10, 4) == [3, 3, 2, 2]
    assert sum(quotas(361, 7)) == 361


def test_truncate_notes_clips_offsets_and_drops_late_notes():
    notes = make_notes([0.0, 1.0, 2.5, 3.0], [1.0, 2.8, 4.0, 3.5], [60, 62, 64, 65], 80)
    out = truncate_notes(notes, 3.0)
    assert out["pitch"].tolist() == [60, 62, 64]
    assert out["offset"].tolist() == [1.0, 2.8, 3.0]


def test_synthetic_dynamics_seeded_with_downbeat_accent():
    beats = np.arange(16, dtype=float)
    notes = make_notes(beats * 0.5, beats * 0.5 + 0.4, np.full(16, 60), 64)
    a = synthetic_dynamics(notes, beats=beats, random_state=3)
    b = synthetic_dynamics(notes, beats=beats, random_state=3)
    c = synthetic_dynamics(notes, beats=beats, random_state=4)
    assert np.array_equal(a["velocity"], b["velocity"]) and not np.array_equal(a["velocity"], c["velocity"])
    assert ((a["velocity"] >= 1) & (a["velocity"] <= 127)).all()
    # reconstruct the draw: base, accent, slope, then jitter
    rng = np.random.default_rng(3)
    base, accent, slope = rng.uniform(45, 100), rng.uniform(0, 20), rng.uniform(-25, 25)
    jitter = rng.integers(-3, 4, size=16)
    t = notes["onset"] / notes["offset"].max()
    expect = np.clip(np.round(base + accent * (beats % 4 == 0) + slope * t + jitter), 1, 127)
    np.testing.assert_array_equal(a["velocity"], expect)
    assert np.array_equal(a["onset"], notes["onset"]) and np.array_equal(a["pitch"], notes["pitch"])
