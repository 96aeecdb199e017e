"""Empty features (docs/spec.md §5): which items carry no evidence, checked on real extracted features."""

import numpy as np

from aria.evaluation.degenerate import empty_features, empty_in_channels, group_empty_share
from aria.symbolic.features import CHANNELS, extract
from aria.symbolic.notes import NOTE_DTYPE


def _notes(rows):
    return np.array([tuple(r) for r in rows], dtype=NOTE_DTYPE)


def _pool():
    fields = NOTE_DTYPE.names
    assert fields[:4] == ("onset", "offset", "pitch", "velocity"), fields

    def mk(rows):
        return _notes([r + (0,) * (len(fields) - 4) for r in rows])

    empty = mk([])
    mono = mk([(0.0, 0.5, 60, 80), (0.5, 1.0, 62, 80), (1.0, 1.5, 64, 90)])  # no vertical intervals
    chord = mk([(0.0, 1.0, 60, 80), (0.0, 1.0, 64, 80), (1.0, 2.0, 65, 70), (1.0, 2.0, 69, 70)])
    single = mk([(0.0, 1.0, 60, 80)])  # no melodic interval, no vertical interval
    # user MIDI without dynamics: one velocity throughout, otherwise a normal polyphonic segment
    flat = mk([(0.0, 1.0, 60, 64), (0.0, 1.0, 64, 64), (1.0, 1.5, 62, 64), (1.5, 2.0, 67, 64)])
    feats = [extract(n) for n in (empty, mono, chord, single, flat)]
    return {k: np.stack([f[k] for f in feats]) for k in feats[0]}


def test_empty_features_of_real_extractions():
    X = _pool()
    e = empty_features(X)
    assert set(e) == set(X)  # every feature, 1-D included
    np.testing.assert_array_equal(e["pitch_class_hist"], [True, False, False, False, False])
    np.testing.assert_array_equal(e["vertical_interval_hist"], [True, True, False, True, False])
    np.testing.assert_array_equal(e["melodic_interval_hist"], [True, False, False, True, False])
    # by hand: velocities 80,80,90 / 80,80,70,70 vary; the empty, single-note and flat segments do not
    for f in ("velocity_std", "velocity_range", "velocity_change_mean"):
        np.testing.assert_array_equal(e[f], [True, False, False, True, True], err_msg=f)
    # constant polyphony: 0, 1, 2 (two dyads), 1 sounding notes throughout; flat goes 2 then 1
    np.testing.assert_array_equal(e["polyphony_std"], [True, True, True, True, False])
    by_c = empty_in_channels(X, CHANNELS)
    # brute force: any multi-dim feature all zero, or every 1-D feature of the channel zero
    for c, feats in CHANNELS.items():
        want = [
            any(X[f][i].size > 1 and not np.any(X[f][i]) for f in feats)
            or (any(X[f][i].size == 1 for f in feats) and all(X[f][i][0] == 0 for f in feats if X[f][i].size == 1))
            for i in range(5)
        ]
        np.testing.assert_array_equal(by_c[c], want, err_msg=c)
    np.testing.assert_array_equal(by_c["dynamic"], [True, False, False, True, True])
    # a monophonic line has polyphony std 0 but a varying pitch range: texture still measures something
    np.testing.assert_array_equal(by_c["texture"], [True, False, False, False, False])


def test_sequences_and_group_share():
    feats = {"chords": [np.array([2, 5]), np.array([], dtype=int), np.array([7])], "x": np.zeros((3, 1))}
    e = empty_features(feats)
    assert set(e) == {"chords", "x"}
    np.testing.assert_array_equal(e["chords"], [False, True, False])
    np.testing.assert_array_equal(e["x"], [True, True, True])
    groups = np.array([[0, 1], [1, 2], [0, 2]])
    np.testing.assert_allclose(group_empty_share(groups, e["chords"]), [0.5, 0.5, 0.0])
