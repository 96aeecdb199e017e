"""Empty features (SPEC §5): which items carry no evidence, checked on real extracted features."""

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
    feats = [extract(n) for n in (empty, mono, chord, single)]
    return {k: np.stack([f[k] for f in feats]) for k in feats[0]}


def test_empty_features_of_real_extractions():
    X = _pool()
    e = empty_features(X)
    # one-dimensional features are never called empty (0 is a value there)
    assert all(X[k].reshape(len(X[k]), -1).shape[1] > 1 for k in e)
    np.testing.assert_array_equal(e["pitch_class_hist"], [True, False, False, False])
    np.testing.assert_array_equal(e["vertical_interval_hist"], [True, True, False, True])
    np.testing.assert_array_equal(e["melodic_interval_hist"], [True, False, False, True])
    by_c = empty_in_channels(X, CHANNELS)
    # brute force: a channel is empty for an item when any of its multi-dim features is all zero
    for c, feats in CHANNELS.items():
        want = [any(X[f][i].size > 1 and not np.any(X[f][i]) for f in feats) for i in range(4)]
        np.testing.assert_array_equal(by_c[c], want)


def test_sequences_and_group_share():
    feats = {"chords": [np.array([2, 5]), np.array([], dtype=int), np.array([7])], "x": np.zeros((3, 1))}
    e = empty_features(feats)
    assert set(e) == {"chords"}
    np.testing.assert_array_equal(e["chords"], [False, True, False])
    groups = np.array([[0, 1], [1, 2], [0, 2]])
    np.testing.assert_allclose(group_empty_share(groups, e["chords"]), [0.5, 0.5, 0.0])
