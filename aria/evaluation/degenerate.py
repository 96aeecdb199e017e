"""Empty features: items whose evidence for a channel is nothing at all (docs/spec.md §5-6).

A histogram with nothing to count is all zeros (a segment with no notes, a monophonic line
with no vertical intervals, a recording in which no beat was found), and a chord sequence
with no chord change is empty. Two empty histograms are *identical* under the docs/spec.md
similarity (distance 0, sim = 1), so a group of them looks perfectly homogeneous although
nothing was measured; two empty chord sequences have similarity 0
(:func:`aria.evaluation.homogeneity.lcs_similarity`), which pulls a group's harmony down for
the same non-reason. This module counts such items and measures how much of a top-K group
they fill, so that the report can say so.

Rule: an item's feature is *empty* (degenerate) when it measured nothing that varies: a
vector whose entries are all zero, of any dimension, or a sequence of length 0. For a
histogram that is nothing to count; for a one-dimensional statistic of the segment it is
zero variation within the segment (a single velocity throughout gives velocity change, std
and range 0; a single pitch gives pitch range 0) or no notes at all. An item is empty *in a
channel* when any of the channel's multi-dimensional or sequence features is empty, or when
*all* of its one-dimensional features are: the channel's scalars are then 0 for every such
item whatever the music, so any two of them are identical in that channel (user MIDI with one
velocity throughout makes every segment's dynamic channel identical). One zero scalar among
varying ones (polyphony std 0 in a monophonic line whose pitch range varies) leaves the
channel something to measure and is counted per feature only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from aria.evaluation.homogeneity import is_sequence_feature

__all__ = ["empty_features", "empty_in_channels", "group_empty_share", "item_empty"]


def empty_features(features: Mapping) -> dict[str, np.ndarray]:
    """Per feature, which pool items are empty.

    Parameters
    ----------
    features : dict name -> (n_pool, d) array or list of n_pool sequences

    Returns
    -------
    dict name -> bool array (n_pool,)
        Every feature: all entries zero (1-D features included), or a sequence of length 0.
    """
    out = {}
    for name, value in features.items():
        if is_sequence_feature(value):
            out[name] = np.array([len(s) == 0 for s in value], dtype=bool)
            continue
        X = np.asarray(value)
        out[name] = ~np.any(X.reshape(len(X), -1) != 0, axis=1)
    return out


def empty_in_channels(features: Mapping, channels: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """Per channel, which pool items are empty in it (module rule): ``{channel: (n_pool,) bool}``.

    True when any multi-dimensional or sequence feature of the channel is empty, or all of its
    one-dimensional features are.
    """
    per_f = empty_features(features)
    n = len(next(iter(features.values())))
    out = {}
    for c, feats in channels.items():
        feats = [f for f in feats if f in per_f]
        scalar = [f for f in feats if _is_scalar(features[f])]
        masks = [per_f[f] for f in feats if f not in scalar]
        if scalar:
            masks.append(np.all([per_f[f] for f in scalar], axis=0))
        out[c] = np.any(masks, axis=0) if masks else np.zeros(n, bool)
    return out


def _is_scalar(value) -> bool:
    """A one-dimensional numeric feature: ``(n,)`` or ``(n, 1)``."""
    if is_sequence_feature(value):
        return False
    X = np.asarray(value)
    return X.ndim == 1 or (X.ndim == 2 and X.shape[1] == 1)


def group_empty_share(groups, empty: np.ndarray) -> np.ndarray:
    """Share of each group's items that are empty: ``(Q,)`` from ``groups (Q, K)`` and ``empty (n_pool,)``."""
    return np.asarray(empty, dtype=bool)[np.asarray(groups, dtype=np.int64)].mean(axis=1)


def item_empty(item: Mapping, channels: Mapping[str, Sequence[str]], *, pool: Mapping) -> dict[str, list[str]]:
    """Channels in which one item outside the pool (a query) is empty, by the module's rule.

    Parameters
    ----------
    item : dict feature -> (d,) vector or 1-D sequence
    channels : dict channel -> feature names
    pool : dict feature -> (n_pool, d) array or list of sequences
        Tells sequence features from vectors.

    Returns
    -------
    dict channel -> list of the features that make it empty (only the empty channels)
    """
    feats = {
        f: ([item[f]] if is_sequence_feature(pool[f]) else np.asarray(item[f]).reshape(1, -1))
        for f in pool
        if f in item
    }
    per_f = empty_features(feats)
    by_c = empty_in_channels(feats, {c: [f for f in fs if f in feats] for c, fs in channels.items()})
    return {c: [f for f in channels[c] if f in per_f and per_f[f][0]] for c, m in by_c.items() if m[0]}
