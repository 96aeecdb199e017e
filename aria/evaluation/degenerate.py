"""Empty features: items whose evidence for a channel is nothing at all (SPEC §5-6).

A histogram with nothing to count is all zeros (a segment with no notes, a monophonic line
with no vertical intervals, a recording in which no beat was found), and a chord sequence
with no chord change is empty. Two empty histograms are *identical* under the SPEC
similarity (distance 0, sim = 1), so a group of them looks perfectly homogeneous although
nothing was measured; two empty chord sequences have similarity 0
(:func:`aria.evaluation.homogeneity.lcs_similarity`), which pulls a group's harmony down for
the same non-reason. This module counts such items and measures how much of a top-K group
they fill, so that the report can say so.

Rule: an item's feature is *empty* when the feature is a vector of more than one dimension
(a histogram or a statistics vector) whose entries are all zero, or a sequence of length 0.
One-dimensional features (a note density, a velocity range) are never called empty: 0 is a
legitimate value there. An item is empty *in a channel* when any of the channel's features is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from aria.evaluation.homogeneity import is_sequence_feature

__all__ = ["empty_features", "empty_in_channels", "group_empty_share"]


def empty_features(features: Mapping) -> dict[str, np.ndarray]:
    """Per feature, which pool items are empty.

    Parameters
    ----------
    features : dict name -> (n_pool, d) array or list of n_pool sequences

    Returns
    -------
    dict name -> bool array (n_pool,)
        Only the features that can be empty (``d > 1`` or sequences).
    """
    out = {}
    for name, value in features.items():
        if is_sequence_feature(value):
            out[name] = np.array([len(s) == 0 for s in value], dtype=bool)
            continue
        X = np.asarray(value)
        if X.ndim == 2 and X.shape[1] > 1:
            out[name] = ~np.any(X != 0, axis=1)
    return out


def empty_in_channels(features: Mapping, channels: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """Per channel, which pool items have at least one empty feature in it: ``{channel: (n_pool,) bool}``."""
    per_f = empty_features(features)
    n = len(next(iter(features.values())))
    out = {}
    for c, feats in channels.items():
        masks = [per_f[f] for f in feats if f in per_f]
        out[c] = np.any(masks, axis=0) if masks else np.zeros(n, bool)
    return out


def group_empty_share(groups, empty: np.ndarray) -> np.ndarray:
    """Share of each group's items that are empty: ``(Q,)`` from ``groups (Q, K)`` and ``empty (n_pool,)``."""
    return np.asarray(empty, dtype=bool)[np.asarray(groups, dtype=np.int64)].mean(axis=1)
